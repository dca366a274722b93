#!/bin/sh
# make demo: the end-to-end demonstration (broker + plugin + gateway + simulated city).
# The gateway and the demo itself are not built yet (issues 3 and 4); until then this says
# so and fails, rather than pretending.
set -eu
echo "civicmq: 'make demo' needs the scrubbing gateway and the sensor simulator, which are" >&2
echo "not built yet. What works today: 'make test' (broker plugin, real TLS, real broker)." >&2
exit 2
