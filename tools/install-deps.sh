#!/bin/sh
# Installs the Debian packages ferry builds and tests with, if any is
# missing. The one list: the Makefile runs this before the first configure,
# and .ci/run before `make check`. Needs root (or sudo) only when something
# is missing.
set -eu
packages="build-essential meson ninja-build pkg-config
          libjson-c-dev libcmocka-dev libzstd-dev zlib1g-dev
          libisal-dev libxxhash-dev
          linux-libc-dev python3"
missing=
for p in $packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-deps: not a Debian system; please install:$missing" >&2
	exit 1
fi
sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "install-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing
