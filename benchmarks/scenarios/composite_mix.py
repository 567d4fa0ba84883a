"""The composite app in other proportions: 1.2 GB, 4% of events kept, more cache, more buffers kept.

A variant of ``composite`` (the demo's app) so the one-liner is not tuned to
one shape: 1 event in 25 kept, a rendered page every 4 events, a buffer every
4 (1 in 48 kept), a session every 10, 1 CSV row in 6 kept. Registered like
the demo app; the optimize baseline is ``hivemem.optimize(target_mb=90)``.
"""

from __future__ import annotations

from hivemem._cli.demo import App, answers, build_app, register
from hivemem._cli.demo import build_floor as _floor

DESCRIPTION = "composite app, other proportions: 1.2 GB, 4% of events kept, more cache and buffers"
TARGETED = True
SIZE = 1200 * 2**20
MIX = {
    "event_keep": 25,
    "page_every": 4,
    "buffer_every": 4,
    "buffer_keep": 48,
    "session_every": 10,
    "row_keep": 6,
}


def build() -> App:
    return build_app(SIZE, mix=MIX)


def build_floor() -> App:
    return _floor(SIZE, mix=MIX)


def checksum(state: App) -> str:
    return answers(state)


def prepare(state: App) -> None:
    register(state)
