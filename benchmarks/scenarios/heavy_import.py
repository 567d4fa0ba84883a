"""A heavy pure-Python import (http.server and its dependencies) used once, then released.

The ``unload_modules`` strategy's case: the program allowlists the modules it
imported for one command. What comes back is measured, and often little:
modules that other modules, caches or registries still reference stay.
"""

from __future__ import annotations

import hashlib

DESCRIPTION = "http.server and its imports (http.client, email, html, socketserver, mimetypes) used once"
WHY = (
    "the import adds only a few MB, and unload_modules frees its objects inside pymalloc arenas that "
    "other live objects share, so RSS does not fall; hivemem.lazy_import prevents the cost instead "
    "(13.8 MiB saved for numpy, 8.3 MiB for asyncio in benchmarks/bench_cooperative.py)"
)
TARGETED = True
PATTERNS = ("http", "http.*", "socketserver", "html", "html.*", "email", "email.*", "mimetypes")


def build() -> object:
    import hivemem

    server = hivemem.lazy_import("http.server")
    answer = server.BaseHTTPRequestHandler.date_time_string(None, 0)  # type: ignore[arg-type]
    del server
    return {"answer": answer}


def prepare(state: object) -> None:
    import hivemem

    hivemem.allow_unload(*PATTERNS)


def build_floor() -> object:
    return {"answer": "Thu, 01 Jan 1970 00:00:00 GMT"}


def checksum(state: object) -> str:
    return hashlib.sha256(state["answer"].encode()).hexdigest()  # type: ignore[index]
