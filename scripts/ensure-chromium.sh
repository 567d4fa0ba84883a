#!/usr/bin/env bash
# Headless Chromium, which renders the HTML reports to screenshots in tests/test_htmlreport.py;
# see scripts/ensure-apt.sh.
exec "$(dirname "$0")/ensure-apt.sh" chromium chromium "the HTML reports rendered in headless Chromium"
