#!/usr/bin/env bash
# Graphviz 'dot', which draws hivemem.why(obj, graph=...) in tests/test_inspect.py;
# see scripts/ensure-apt.sh.
exec "$(dirname "$0")/ensure-apt.sh" dot graphviz "why() drawn with Graphviz"
