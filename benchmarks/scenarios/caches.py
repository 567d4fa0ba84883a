"""Registered caches: ~360 MB in an lru_cache and a dict cache, filled while the live data grew.

A service memoizes rendered pages (``functools.lru_cache``, ~2 KiB strings)
and parsed records (a dict cache of small dicts), both registered with
``hivemem.register_cache``. While they filled, it also built its live
sessions, one per 25 cache entries, interleaved with the cached objects in
the same arenas; the sessions list is registered with ``hivemem.compactable``.
"""

from __future__ import annotations

import functools
import hashlib
import json

DESCRIPTION = "caches: ~360 MB in a registered lru_cache and dict cache, live sessions interleaved"
TARGETED = True
ENTRIES = 150_000
EVERY = 25

PARSED: dict[int, dict[str, object]] = {}


@functools.lru_cache(maxsize=200_000)
def render(i: int) -> str:
    return (f"<tr><td>{i}</td><td>item {i}</td></tr>" * 60)[: 1800 + i % 400]


def parse(i: int) -> dict[str, object]:
    found = PARSED.get(i)
    if found is None:
        found = PARSED[i] = {"id": i, "name": f"item {i}", "tags": [f"t{i % 7}", f"g{i % 13}"]}
    return found


def _session(i: int) -> dict[str, object]:
    return {"sid": i, "user": f"user{i}", "seen": [i, i + 1]}


def build() -> list[dict[str, object]]:
    sessions = []
    for i in range(ENTRIES):
        render(i)
        parse(i)
        if i % EVERY == 0:
            sessions.append(_session(i))
    return sessions


def build_floor() -> list[dict[str, object]]:
    return [_session(i) for i in range(0, ENTRIES, EVERY)]


def prepare(state: list[dict[str, object]]) -> None:
    import hivemem

    hivemem.register_cache(render)
    hivemem.register_cache(PARSED)
    hivemem.compactable(state)


def checksum(state: list[dict[str, object]]) -> str:
    return hashlib.sha256(json.dumps(state).encode()).hexdigest()
