"""The composite "hive mind" application: the demo's app, as a scenario.

About 1.7 GB of RSS from a mix of every cause (application and lru caches,
1.9M events of which 1 in 50 is kept, 1-4 KiB buffers of which 1 in 64 is
kept, cyclic session garbage, CSV rows full of duplicate strings) while the
data the program truly keeps is under 50 MB. ``prepare`` registers the caches
and containers the way the application would at start-up (where this build
of hivemem has the APIs). The app is defined once, in ``hivemem._cli.demo``, so
``hivemem demo`` and this scenario measure the same program.
"""

from __future__ import annotations

from hivemem._cli.demo import DEFAULT_SIZE, App, answers, build_app, register
from hivemem._cli.demo import build_floor as _floor

DESCRIPTION = "composite 'hive mind' app: caches, events, cycles, buffers, duplicate strings; <50 MB live"
TARGETED = True
TARGET_MB = 90


def build() -> App:
    return build_app(DEFAULT_SIZE)


def build_floor() -> App:
    return _floor(DEFAULT_SIZE)


def checksum(state: App) -> str:
    return answers(state)


def prepare(state: App) -> None:
    register(state)
