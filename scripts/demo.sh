#!/bin/sh
# make demo: the whole civicmq system on loopback - a real mosquitto with the plugin, the
# scrubbing gateway, simulated sensors of a trusted, a restricted and a blocked vendor, and
# dashboards - driven by build/civicmq-demo (demo/civicmq-demo.c). Installs missing Debian
# packages and builds first when run on its own; `make demo` has done both already.
# Usage: scripts/demo.sh [BUILD_DIR]   (logs and summary.json in BUILD_DIR/demo)
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}
if [ ! -x "$BUILD/civicmq-demo" ]; then
	make --no-print-directory BUILD="$BUILD" all "$BUILD/civicmq-demo"
fi
exec "$BUILD/civicmq-demo" --src . --build "$BUILD" --out "$BUILD/demo"
