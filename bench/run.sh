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
#
# Environment: CMQ_PKI_DIR (default BUILD/bench/pki, kept between runs), CMQ_BENCH_ROUNDS
# (default 5), CMQ_BENCH_NAGLE=1 adds a throughput run with Mosquitto's default socket
# options (Nagle on), CMQ_BENCH_QUICK=1 runs everything much shorter (a smoke test; its
# numbers mean little). Needs mosquitto, valgrind (callgrind_annotate, callgrind_control).
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
if [ "${CMQ_BENCH_QUICK:-0}" = 1 ]; then
	ROUNDS=1
	DECISIONS=100000
	MSGS0=5000
	MSGS1=2000
	CG_MSGS=500
fi

die() {
	echo "bench/run.sh: $*" >&2
	exit 1
}

for b in acl_bench throughput; do
	[ -x "$BIN/$b" ] || die "$BIN/$b is missing (make bench builds it)"
done
[ -f "$BUILD/civicmq_plugin.so" ] || die "$BUILD/civicmq_plugin.so is missing (make)"
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

left=$(pgrep -x mosquitto || true)
[ -z "$left" ] || progress "note: mosquitto processes running after the benchmarks (not started by them?): $left"
say "" "(report also written to $OUT)"
