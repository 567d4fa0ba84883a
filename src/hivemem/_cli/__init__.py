"""The hivemem command line: run, status, report, bench and the demo application."""
