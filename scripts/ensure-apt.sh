#!/usr/bin/env bash
# Make sure COMMAND exists, installing Debian PACKAGE with apt-get when it is missing and that is
# possible (root, apt-get present, the archive reachable). Never fails the build: without the
# command the tests that need it skip and say why.
#   usage: scripts/ensure-apt.sh COMMAND PACKAGE "what needs it"
set -u
command_name=$1 package=$2 purpose=$3
if command -v "$command_name" >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure: $command_name is missing and cannot be installed here (needs root and apt-get);" \
         "$purpose will be skipped"
    exit 0
fi
echo "ensure: installing $package with apt-get for $purpose"
install() {
    # other checkouts may run apt-get at the same time: wait for the dpkg lock instead of failing
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=600 "$package" >/dev/null 2>&1
}
if ! install; then
    apt-get update -qq -o DPkg::Lock::Timeout=600 >/dev/null 2>&1 && install
fi
if ! command -v "$command_name" >/dev/null 2>&1; then
    echo "ensure: could not install $package (offline?); $purpose will be skipped"
fi
exit 0
