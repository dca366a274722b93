#!/bin/sh
# ensure-deps.sh - install the Debian 12 packages civicmq builds, tests and runs with,
# if any are missing. Called by the Makefile before every build; does nothing (and
# needs no privileges) when everything is present. Nothing is downloaded from
# anywhere but the machine's configured Debian archive.
#
# Packages (see README.md "Dependencies"):
#   build/run : mosquitto mosquitto-dev libmosquitto-dev libpaho-mqtt-dev libjson-c-dev
#               libssl-dev openssl pkg-config make gcc
#   tests     : libcunit1-dev mosquitto-clients valgrind (callgrind benchmarks)
#               clang (fuzz targets, libFuzzer) clang-format (make lint)
set -eu

PKGS="mosquitto mosquitto-dev mosquitto-clients libmosquitto-dev libpaho-mqtt-dev \
libjson-c-dev libssl-dev libcunit1-dev openssl pkg-config make gcc clang clang-format valgrind"

missing=""
for p in $PKGS; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$status" in
	*"install ok installed"*) ;;
	*) missing="$missing $p" ;;
	esac
done

[ -z "$missing" ] && exit 0

echo "civicmq: installing missing Debian packages:$missing" >&2
if [ "$(id -u)" -eq 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1; then
	SUDO="sudo -n"
else
	echo "civicmq: not root and no sudo; run as root: apt-get install -y$missing" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# If the packaged mosquitto service starts, it is left alone: civicmq starts its own brokers
# on free loopback ports and never uses the system one.
if ! $SUDO apt-get install -y --no-install-recommends $missing >/dev/null 2>&1; then
	$SUDO apt-get update >/dev/null
	$SUDO apt-get install -y --no-install-recommends $missing >/dev/null
fi
echo "civicmq: packages installed." >&2
