#!/usr/bin/env bash
# Xvfb (a virtual X display) for the real tkinter widget test; see scripts/ensure-apt.sh.
exec "$(dirname "$0")/ensure-apt.sh" Xvfb xvfb "the tkinter widget test"
