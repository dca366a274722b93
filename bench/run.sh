#!/bin/sh
# bench/run.sh BUILD - run every civicmq benchmark against the binaries in BUILD (what `make
# bench` does after building them) and print a Markdown report to stdout and to
# BUILD/bench/results.md. Copy the numbers into bench/RESULTS.md by hand, with the machine.
#
#   1. ACL decisions: ns per decision (acl_bench decisions) and instructions per decision
#      (acl_bench callgrind under valgrind --tool=callgrind --toggle-collect='bench_*') at
#      10, 1,000 and 100,000 rules, with the linear-scan reference.
#   2. Loading a policy of 10, 1,000 and 100,000 rules: time, memory (acl_bench load, one
#      process per size so each peak RSS is its own).
#   3. Broker throughput with and without the plugin (throughput -N: TCP_NODELAY on every
#      socket, so the broker's core is the bottleneck), then the broker's instructions per
#      message under callgrind (throughput -N --callgrind).
#   4. The gateway's scrub cost per message in process: µs (scrub_bench) and instructions
#      (scrub_bench callgrind under valgrind --toggle-collect='bench_*') per message for
#      four profiles, and the parse / apply / serialise parts of the typical one.
#   5. End to end through the broker and the real civicmq-gateway at QoS 1 (gateway_e2e):
#      messages/s direct (A) against through the gateway (B), latency at a fixed rate, the
#      same throughput with Mosquitto's default max_inflight_messages (20), then the
#      gateway's instructions per message under callgrind and where they go.
#
# Environment: CMQ_PKI_DIR (default BUILD/bench/pki, kept between runs), CMQ_BENCH_ROUNDS
# (default 5), CMQ_BENCH_NAGLE=1 adds a throughput run with Mosquitto's default socket
# options (Nagle on), CMQ_BENCH_GW_TMPFS=1 adds a gateway throughput run with the
# gateway's state_dir (Paho's outbox files) on /dev/shm, CMQ_BENCH_QUICK=1 runs everything
# much shorter (a smoke test; its numbers mean little). Needs mosquitto, valgrind
# (callgrind_annotate, callgrind_control).
# Every step must succeed: the first failure stops the run with a non-zero status.
set -eu

BUILD=${1:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$BUILD" && pwd)
BIN=$BUILD/bench
OUT=$BIN/results.md

CMQ_SRC=$SRC
CMQ_BUILD=$BUILD
CMQ_PKI_DIR=${CMQ_PKI_DIR:-$BIN/pki}
export CMQ_SRC CMQ_BUILD CMQ_PKI_DIR

ROUNDS=${CMQ_BENCH_ROUNDS:-5}
RULES="10 1000 100000"
CG_DECISIONS=20000
CG_MSGS=2000
DECISIONS=1000000
MSGS0=50000
MSGS1=20000
SCRUB_BATCH=20000   # messages per timed batch (scrub_bench)
SCRUB_BATCHES=7
CG_SCRUB=2000       # messages per function under callgrind (scrub_bench)
GW_MSGS=20000       # messages per throughput run (gateway_e2e)
GW_RATE=1000        # msg/s in the latency runs
GW_SECONDS=10       # seconds per latency run
GW_LAT_ROUNDS=3     # latency rounds (A and B each), pooled
CG_GW_MSGS=2000     # messages through the gateway under callgrind
GW_MSGS_20=2000     # messages per run with the broker's default max_inflight_messages (slow)
if [ "${CMQ_BENCH_QUICK:-0}" = 1 ]; then
	ROUNDS=1
	DECISIONS=100000
	MSGS0=5000
	MSGS1=2000
	CG_MSGS=500
	SCRUB_BATCH=2000
	SCRUB_BATCHES=3
	CG_SCRUB=200
	GW_MSGS=2000
	GW_SECONDS=2
	GW_LAT_ROUNDS=1
	CG_GW_MSGS=300
	GW_MSGS_20=300
fi

die() {
	echo "bench/run.sh: $*" >&2
	exit 1
}

for b in acl_bench throughput scrub_bench gateway_e2e; do
	[ -x "$BIN/$b" ] || die "$BIN/$b is missing (make bench builds it)"
done
[ -f "$BUILD/civicmq_plugin.so" ] || die "$BUILD/civicmq_plugin.so is missing (make)"
[ -x "$BUILD/civicmq-gateway" ] || die "$BUILD/civicmq-gateway is missing (make)"
for t in mosquitto valgrind callgrind_annotate callgrind_control; do
	command -v "$t" >/dev/null 2>&1 || die "$t is not installed"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cmq-bench-run-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
trap 'exit 1' INT TERM
mkdir -p "$CMQ_PKI_DIR"
: >"$OUT"

# Append a finished step's output to the report and show it.
emit() {
	cat "$1" >>"$OUT"
	cat "$1"
}

say() {
	printf '%s\n' "$@" >"$TMP/say"
	emit "$TMP/say"
}

progress() {
	echo "bench/run.sh: $*" >&2
}

# ---- header ----
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
commit=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$SRC" status --porcelain 2>/dev/null | grep -c . || true)
dirty_list=$(git -C "$SRC" status --porcelain 2>/dev/null | awk '{ print $2 }' | tr '\n' ' ' || true)
say "# civicmq benchmarks" "" \
	"- date: $(date -u '+%Y-%m-%d %H:%M UTC')" \
	"- machine: $(nproc) CPUs, ${cpu:-unknown CPU}, $(uname -sr)" \
	"- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
	"- mosquitto $(mosquitto -h 2>&1 | sed -n 's/^mosquitto version //p' | head -n 1)," \
	"  libmosquitto $(dpkg-query -W -f '${Version}' libmosquitto1 2>/dev/null || echo '?')," \
	"  Paho MQTT C $(dpkg-query -W -f '${Version}' libpaho-mqtt1.3 2>/dev/null || echo '?')," \
	"  json-c $(pkg-config --modversion json-c 2>/dev/null || echo '?')," \
	"  $(openssl version 2>/dev/null | cut -d' ' -f1-2)," \
	"  $(valgrind --version), $(${CC:-cc} --version 2>/dev/null | head -n 1)" \
	"- civicmq: commit $commit; $dirty path(s) changed or untracked: ${dirty_list:-none}" \
	"- rounds: $ROUNDS; build: $BUILD" ""

# ---- 1. ACL decisions ----
progress "ACL decisions: timing"
say "## 1. Cost per ACL decision" "" \
	"Goal: flat, 100,000 rules within 2x of 10 rules. The linear scan is the acl_file /" \
	"dynamic-security model (libmosquitto's mosquitto_topic_matches_sub over the raw patterns" \
	"in file order until one matches; the matching rule is the last one, as for any denial)." ""
"$BIN/acl_bench" decisions -n "$DECISIONS" -r "$(echo "$RULES" | tr ' ' ',')" >"$TMP/ns.md"
emit "$TMP/ns.md"

progress "ACL decisions: callgrind"
# Instructions per decision: each bench_* function's inclusive cost / its decisions.
{
	printf '\nInstructions per decision (callgrind, %s decisions per column; the linear scan\n' \
		"$CG_DECISIONS"
	printf 'at most 1,000,000 pattern comparisons in total, at least 10 decisions)\n\n'
} >"$TMP/ir.md"
first=""
for n in $RULES; do
	valgrind --tool=callgrind --instr-atstart=no --toggle-collect='bench_*' \
		--callgrind-out-file="$TMP/cg.$n" "$BIN/acl_bench" callgrind "$n" "$CG_DECISIONS" \
		>"$TMP/cg.$n.calls" 2>"$TMP/cg.$n.log" ||
		{ cat "$TMP/cg.$n.log" >&2; die "acl_bench callgrind $n failed"; }
	callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$TMP/cg.$n" >"$TMP/cg.$n.txt"
	# Lines "<function> <decisions> <column title>".
	grep '^bench_' "$TMP/cg.$n.calls" >"$TMP/cg.$n.list" || die "acl_bench callgrind $n printed nothing"
	if [ -z "$first" ]; then
		first=$n
		{
			printf '| topic rules |'
			while read -r fn calls title; do printf ' %s |' "$title"; done <"$TMP/cg.$n.list"
			printf '\n|---:|'
			while read -r fn calls title; do printf '%s' '---:|'; done <"$TMP/cg.$n.list"
			printf '\n'
		} >>"$TMP/ir.md"
	fi
	printf '| %s |' "$n" >>"$TMP/ir.md"
	while read -r fn calls title; do
		ir=$(grep -F ":$fn [" "$TMP/cg.$n.txt" | head -n 1 | awk '{ gsub(",", "", $1); print $1 }')
		if [ -z "$ir" ] || [ "$ir" -le 0 ]; then
			die "callgrind counted nothing for $fn at $n rules (was valgrind/callgrind.h missing at build time?)"
		fi
		per=$(awk -v a="$ir" -v b="$calls" 'BEGIN { printf "%.0f", a / b }')
		echo "$n $fn $per" >>"$TMP/ir.values"
		printf ' %s |' "$per" >>"$TMP/ir.md"
	done <"$TMP/cg.$n.list"
	printf '\n' >>"$TMP/ir.md"
done
last=$n
awk -v f="$first" -v l="$last" '
	$1 == f { a[$2] = $3 } $1 == l { b[$2] = $3 }
	END {
		printf "\nFlatness in instructions (goal: <= 2.00): mix at %s rules / mix at %s rules = %.2f; linear scan: %.0fx\n",
			l, f, b["bench_decisions"] / a["bench_decisions"],
			b["bench_linear_scan"] / a["bench_linear_scan"]
	}' "$TMP/ir.values" >>"$TMP/ir.md"
emit "$TMP/ir.md"

# ---- 2. Load ----
progress "policy load"
say "" "## 2. Loading a policy" "" \
	"Goal: 100,000 rules in <= 1 s. Each sample is a fresh process (as at broker start) that" \
	"loads, frees and loads again (as at a reload, the heap already grown), then parses the" \
	"file with json-c alone. \"Held\" counts the bytes the loaded policy keeps through the" \
	"core allocator (cmq_set_allocator); json-c's parse tree is not counted there but is in" \
	"the peak RSS." ""
hdr=--header
for n in $RULES; do
	"$BIN/acl_bench" load "$n" $hdr >>"$TMP/load.md"
	hdr=""
done
emit "$TMP/load.md"

# ---- 3. Throughput ----
progress "broker throughput (TCP_NODELAY)"
say "" "## 3. Broker throughput with the plugin (B) and without it (A)" "" \
	"Same run, alternating A B per round, broker pinned to CPU 0 and the clients to CPU 1," \
	"TCP_NODELAY on every socket (set_tcp_nodelay true in both brokers) so that the broker's" \
	"core, not Nagle's algorithm, limits the rate. Goal: ratio B/A >= 0.95."
"$BIN/throughput" -N -r "$ROUNDS" -0 "$MSGS0" -1 "$MSGS1" >"$TMP/tp.md"
emit "$TMP/tp.md"

if [ "${CMQ_BENCH_NAGLE:-0}" = 1 ]; then
	progress "broker throughput (default socket options)"
	say "" "### The same with Mosquitto's default socket options (Nagle on)"
	"$BIN/throughput" -r "$ROUNDS" -0 "$MSGS0" -1 "$MSGS1" >"$TMP/tp-nagle.md"
	emit "$TMP/tp-nagle.md"
fi

progress "broker instructions per message (callgrind)"
"$BIN/throughput" -N --callgrind "$CG_MSGS" >"$TMP/tp-cg.md" 2>"$TMP/tp-cg.log" ||
	{ cat "$TMP/tp-cg.log" >&2; die "throughput --callgrind failed"; }
emit "$TMP/tp-cg.md"

# Instructions per measured function from a callgrind dump: lines "<function> <count>
# <title>" in $2 (what the program printed) -> Markdown rows "| title | per count |".
per_call_rows() {
	callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$1" >"$1.txt"
	grep '^bench_' "$2" >"$2.list" || die "$2: the program printed no bench_ lines"
	while read -r fn calls title; do
		ir=$(grep -F ":$fn [" "$1.txt" | head -n 1 | awk '{ gsub(",", "", $1); print $1 }')
		if [ -z "$ir" ] || [ "$ir" -le 0 ]; then
			die "callgrind counted nothing for $fn (was valgrind/callgrind.h missing at build time?)"
		fi
		awk -v t="$title" -v a="$ir" -v b="$calls" 'BEGIN { printf "| %s | %.0f |\n", t, a / b }'
	done <"$2.list"
}

# ---- 4. The scrub in process ----
progress "gateway scrub cost in process"
say "" "## 4. The gateway's scrub cost per message, in process" "" \
	"cmq_pipeline_run on FIWARE-like documents of the example city (config/policy.json," \
	"config/vendors.json; a pseudonym key from a fixed secret; a consent table in which" \
	"resident-0001 opted in to energy): rule lookup, provenance check, parse, consent where" \
	"the category is resident-linked, the profile, serialisation, identifier guard. Every" \
	"message is checked first (FORWARD, the fields kept, the identifiers gone). Goal: <= 10" \
	"µs per message for the typical profile (air-quality)." ""
"$BIN/scrub_bench" -n "$SCRUB_BATCH" -k "$SCRUB_BATCHES" >"$TMP/scrub.md"
emit "$TMP/scrub.md"

progress "gateway scrub cost: callgrind"
valgrind --tool=callgrind --instr-atstart=no --toggle-collect='bench_*' \
	--callgrind-out-file="$TMP/cg.scrub" "$BIN/scrub_bench" callgrind "$CG_SCRUB" \
	>"$TMP/cg.scrub.calls" 2>"$TMP/cg.scrub.log" ||
	{ cat "$TMP/cg.scrub.log" >&2; die "scrub_bench callgrind failed"; }
{
	printf '\nInstructions per message (callgrind, %s messages per row)\n\n' "$CG_SCRUB"
	printf '| message | instructions per message |\n|---|---:|\n'
	per_call_rows "$TMP/cg.scrub" "$TMP/cg.scrub.calls"
} >"$TMP/scrub-ir.md"
emit "$TMP/scrub-ir.md"

# ---- 5. End to end through the gateway ----
progress "end to end through the gateway"
say "" "## 5. End to end through the gateway at QoS 1" "" \
	"A (direct): the device civitas-air-001 (mutual TLS) publishes the typical document to" \
	"raw/north/air/civitas-air-001 and a subscriber with the gateway account (TLS) reads raw/#:" \
	"one hop through the broker. B (through the gateway): the real civicmq-gateway consumes" \
	"\$share/civicmq/raw/# and republishes city/north/air, which a dashboard (TLS) reads; each" \
	"message crosses the broker twice, so B/A = 0.5 is the ceiling. A fresh broker with the" \
	"plugin per run (set_tcp_nodelay true), pinned to CPU 0; the gateway, the clients and" \
	"the benchmark on CPU 1. Every QoS 1 message must arrive exactly once, scrubbed in B," \
	"and the gateway's counters must show none dropped. Goals: B/A >= 0.4; at 1,000 msg/s" \
	"the gateway adds <= 1 ms at p50 and <= 5 ms at p99."
"$BIN/gateway_e2e" -r "$ROUNDS" -n "$GW_MSGS" -R "$GW_RATE" -d "$GW_SECONDS" \
	-L "$GW_LAT_ROUNDS" >"$TMP/gw.md"
emit "$TMP/gw.md"

progress "end to end through the gateway, gateway not pinned"
say "" "### The same throughput with the gateway free to run on either CPU (-G any)" "" \
	"The gateway no longer shares one CPU with the load generator; the broker keeps CPU 0."
"$BIN/gateway_e2e" -r "$ROUNDS" -n "$GW_MSGS" --only throughput -G any >"$TMP/gw-any.md"
emit "$TMP/gw-any.md"

progress "end to end through the gateway, max_inflight_messages 20"
say "" "### The same with Mosquitto's default max_inflight_messages (20; config/mosquitto.conf sets 1000)" "" \
	"One round of $GW_MSGS_20 messages. Mosquitto announces max_inflight_messages as its Receive" \
	"Maximum; Paho 1.3 caps the gateway's unacknowledged publishes at it and its send thread" \
	"is woken by the next message or a 1 s timer, not by a PUBACK (eclipse-paho/paho.mqtt.c" \
	"pull request 1457). With more messages waiting than that, B stalls."
"$BIN/gateway_e2e" -r 1 -n "$GW_MSGS_20" -i 20 --only throughput >"$TMP/gw-20.md"
emit "$TMP/gw-20.md"

if [ "${CMQ_BENCH_GW_TMPFS:-0}" = 1 ]; then
	progress "end to end through the gateway, state_dir on /dev/shm"
	say "" "### The same throughput with the gateway's state_dir on /dev/shm (tmpfs)" "" \
		"What the gateway's outbox log (one writev per message) costs when it never reaches a disk."
	"$BIN/gateway_e2e" -r "$ROUNDS" -n "$GW_MSGS" --only throughput -s /dev/shm \
		>"$TMP/gw-shm.md"
	emit "$TMP/gw-shm.md"
fi

progress "gateway instructions per message (callgrind)"
"$BIN/gateway_e2e" --callgrind "$CG_GW_MSGS" --cg-out "$TMP/cg.gw" >"$TMP/gw-cg.md" \
	2>"$TMP/gw-cg.log" || { cat "$TMP/gw-cg.log" >&2; die "gateway_e2e --callgrind failed"; }
callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$TMP/cg.gw" >"$TMP/cg.gw.incl"
callgrind_annotate --auto=no --threshold=100 "$TMP/cg.gw" >"$TMP/cg.gw.excl"
# Inclusive cost per message of a function (0 if callgrind did not see it).
incl() {
	grep -F ":$1 [" "$TMP/cg.gw.incl" | head -n 1 |
		awk -v n="$CG_GW_MSGS" '{ gsub(",", "", $1); printf "%.0f", $1 / n } END { if (NR == 0) printf "0" }'
}
# "<cost>\t<function>\t<object>" for every function, exclusive.
awk -f "$SRC/bench/cg-table.awk" "$TMP/cg.gw.excl" >"$TMP/cg.gw.tab"
tab=$(printf '\t')
{
	cat "$TMP/gw-cg.md"
	printf '\nWhere they go (inclusive instructions per message; the rows overlap as indented):\n\n'
	printf '| part | instructions per message |\n|---|---:|\n'
	printf '| the callback (gateway/mqtt.c on_message) | %s |\n' "$(incl on_message)"
	printf '| - the pipeline (cmq_pipeline_run) | %s |\n' "$(incl cmq_pipeline_run)"
	printf '| - - JSON parse (cmq_scrub_parse) | %s |\n' "$(incl cmq_scrub_parse)"
	printf '| - - the profile (cmq_scrub_apply) | %s |\n' "$(incl cmq_scrub_apply)"
	printf '| - hand-over to Paho (MQTTAsync_sendMessage: command queued and written to the outbox file) | %s |\n' \
		"$(incl MQTTAsync_sendMessage)"
	printf '| TLS record reads (SSL_read) | %s |\n' "$(incl SSL_read)"
	printf '| TLS record writes (SSL_write) | %s |\n' "$(incl SSL_write)"
	printf '| formatted printing (vsnprintf: mostly the trace entries Paho formats into its in-memory trace buffer) | %s |\n' \
		"$(incl __vsnprintf_internal)"
	awk -F "$tab" -v n="$CG_GW_MSGS" '
		$3 ~ /^libc/ && $2 ~ /^(_int_)?(malloc|free|calloc|realloc|malloc_consolidate|unlink_chunk|tcache.*)$/ { m += $1 }
		$2 ~ /pthread_mutex_(un)?lock/ { x += $1 }
		END {
			printf "| malloc and free, exclusive (libc) | %.0f |\n", m / n
			printf "| pthread mutex lock and unlock, exclusive | %.0f |\n", x / n
		}' "$TMP/cg.gw.tab"
	printf '\nBy object (exclusive instructions per message):\n\n| object | per message | share |\n|---|---:|---:|\n'
	awk -F "$tab" -v n="$CG_GW_MSGS" '
		{ by[$3] += $1; t += $1 }
		END { for (o in by) printf "%s\t%.0f\t%.1f\n", o, by[o] / n, 100 * by[o] / t }' \
		"$TMP/cg.gw.tab" | sort -t "$tab" -k2,2nr |
		awk -F "$tab" '{ printf "| %s | %s | %s %% |\n", $1, $2, $3 }'
	printf '\nThe 15 functions with the most exclusive instructions (Paho'"'"'s internal functions have no\n'
	printf 'symbols and show as addresses; in Debian'"'"'s build most of them are its heap tracking - a\n'
	printf 'tree of every allocation, under a mutex - and its function entry/exit tracing):\n\n'
	printf '| function | object | per message |\n|---|---|---:|\n'
	sort -t "$tab" -k1,1nr "$TMP/cg.gw.tab" | head -n 15 |
		awk -F "$tab" -v n="$CG_GW_MSGS" '{ printf "| %s | %s | %.0f |\n", $2, $3, $1 / n }'
} >"$TMP/gw-ir.md"
emit "$TMP/gw-ir.md"

left=$(pgrep -x mosquitto || true)
[ -z "$left" ] || progress "note: mosquitto processes running after the benchmarks (not started by them?): $left"
left=$(pgrep -x civicmq-gateway || true)
[ -z "$left" ] || progress "note: civicmq-gateway processes running after the benchmarks (not started by them?): $left"
say "" "(report also written to $OUT)"
