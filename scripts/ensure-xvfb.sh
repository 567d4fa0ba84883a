#!/usr/bin/env bash
# Make sure Xvfb (a virtual X display) is available for the real tkinter widget test.
# Installs it with apt-get when missing and possible (root on Debian/Ubuntu). Never fails the build:
# without Xvfb the widget test skips and says why.
if command -v Xvfb >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-xvfb: installing xvfb with apt-get"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb) >/dev/null 2>&1 \
        || echo "ensure-xvfb: could not install xvfb; the tkinter widget test will be skipped"
else
    echo "ensure-xvfb: Xvfb is missing and cannot be installed here (needs root and apt-get);" \
         "the tkinter widget test will be skipped"
fi
exit 0
