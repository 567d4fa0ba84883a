"""Built-in strategies, one module each.

A module's file name is its strategy's name, and its ``STRATEGY`` constant
is the strategy class (instantiated with no arguments) or a ready instance:
adding a built-in strategy is adding one module here. The registry lists
this package's modules and imports them the first time it is used, never at
``import hivemem`` (see ``hivemem._engine.registry``).

Every module's docstring says what memory the strategy returns, to whom (the
OS, or only Python's allocator), when it does nothing, and what it costs.
"""
