"""300 MB of log-like text values (256 KiB each) in a CompressedStore: the ``compress`` strategy's case."""

from __future__ import annotations

import hashlib
import random

DESCRIPTION = "300 MB of log-like 256 KiB text values in a hivemem.CompressedStore"
TARGETED = True
TOTAL = 300 * 2**20
VALUE = 256 * 1024

_PATHS = ["/api/v1/items", "/api/v1/users", "/api/v1/orders", "/health", "/static/app.js", "/login"]
_LEVELS = ["INFO", "INFO", "INFO", "INFO", "WARN", "ERROR"]


_AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "python-requests/2.31.0",
    "curl/8.5.0",
]


def _bodies() -> list[str]:
    """Access-log lines without their timestamp (nginx-style fields, random ids and sizes)."""
    rng = random.Random(7)
    return [
        f"{rng.choice(_LEVELS)} [worker-{rng.randrange(16)}] request_id={rng.getrandbits(32):08x} "
        f"client=10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(256)} "
        f'"GET {rng.choice(_PATHS)} HTTP/1.1" status={rng.choice([200, 200, 200, 201, 404, 500])} '
        f'latency_ms={rng.randrange(500)} bytes={rng.randrange(100_000)} agent="{rng.choice(_AGENTS)}"'
        for _ in range(50_000)
    ]


def values() -> object:
    """Yield ``(key, text)``: 300 MB of consecutive 256 KiB chunks of a log, deterministically.

    Like a real log file: timestamps increase line by line; the request ids,
    sizes and latencies are random (they are what limits the ratio).
    """
    bodies = _bodies()
    rng = random.Random(11)
    ms = 1_714_564_800_000  # 2024-05-01T12:00:00Z
    for i in range(TOTAL // VALUE):
        lines, size = [], 0
        while size < VALUE:
            ms += rng.randrange(40)
            s, frac = divmod(ms, 1000)
            stamp = f"2024-05-01T{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{frac:03d}Z"
            line = f"{stamp} {rng.choice(bodies)}"
            lines.append(line)
            size += len(line) + 1
        yield i, "\n".join(lines)[:VALUE]


def build() -> object:
    import hivemem

    store = hivemem.CompressedStore()
    for key, text in values():  # type: ignore[attr-defined]
        store[key] = text
    return store


def build_floor() -> object:
    """The same store with every value compressed as soon as it is added: the compressed floor."""
    import hivemem

    store = hivemem.CompressedStore()
    for key, text in values():  # type: ignore[attr-defined]
        store[key] = text
        del text
        store.compress()
    return store


def checksum(state: object) -> str:
    h = hashlib.sha256()
    for key in sorted(state):  # type: ignore[call-overload]
        h.update(state.peek(key).encode())  # type: ignore[attr-defined]
    return h.hexdigest()
