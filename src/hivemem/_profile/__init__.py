"""Finding where memory goes: the profiler, leak checks, REPL inspection, advice and rendering."""
