"""Built-in strategies, one module each.

Every module's docstring says what memory the strategy returns, to whom (the
OS, or only Python's allocator), when it does nothing, and what it costs.
The governor never imports these directly: the registry loads them by name
from ``hivemem._engine.registry.BUILTINS``.
"""
