#!/bin/sh
# bench/cg-diff.sh A B N [TOP] - where the instructions that callgrind dump B has beyond dump A
# go, per message: by object (the plugin, mosquitto, libc, OpenSSL, ...) and the functions
# that differ most. A and B are broker dumps of the same workload of N messages without and
# with the plugin, e.g. the pair `throughput --callgrind N` names on stderr when run with
# CMQ_KEEP_TMP=1. Functions are told apart by name and object (exclusive cost); the TOP
# (default 25) that grew most are listed.
set -eu

if [ $# -ne 3 ] && [ $# -ne 4 ]; then
	echo "usage: bench/cg-diff.sh A.callgrind B.callgrind MESSAGES [TOP]" >&2
	exit 2
fi
for f in "$1" "$2"; do
	[ -r "$f" ] || { echo "bench/cg-diff.sh: cannot read $f" >&2; exit 1; }
done
TOP=${4:-25}
for v in "$3" "$TOP"; do
	case $v in
	'' | *[!0-9]*) echo "bench/cg-diff.sh: MESSAGES and TOP must be numbers" >&2; exit 2 ;;
	esac
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cmq-cg-diff-XXXXXX")
HERE=$(cd "$(dirname "$0")" && pwd)
trap 'rm -rf "$TMP"' EXIT
trap 'exit 1' INT TERM

# "<cost> (<pct>)  <file>:<function> [<object>]" -> "<function>\t<object basename>\t<cost>"
table() {
	callgrind_annotate --auto=no --threshold=100 "$1" |
		awk -f "$HERE/cg-table.awk" | awk -F '\t' -v OFS='\t' '{ print $2, $3, $1 }'
}

table "$1" >"$TMP/a"
table "$2" >"$TMP/b"
awk -F '\t' -v n="$3" '
	FNR == NR { a[$1 "\t" $2] += $3; next }
	{ b[$1 "\t" $2] += $3 }
	END {
		for (k in a) keys[k] = 1
		for (k in b) keys[k] = 1
		for (k in keys) {
			d = b[k] - a[k]
			total += d
			split(k, p, "\t")
			byobj[p[2]] += d
			printf "FN\t%s\t%.0f\n", k, d / n
		}
		for (o in byobj)
			printf "OBJ\t%s\t%.0f\n", o, byobj[o] / n
		printf "TOTAL\t%.0f\n", total / n
	}' "$TMP/a" "$TMP/b" >"$TMP/d"

tab=$(printf '\t')
printf 'B - A: %s instructions per message\n\n' "$(awk -F "$tab" '$1 == "TOTAL" { print $2 }' "$TMP/d")"
printf '| object | per message |\n|---|---:|\n'
awk -F "$tab" '$1 == "OBJ" { print $2 "\t" $3 }' "$TMP/d" | sort -t "$tab" -k2,2nr |
	awk -F "$tab" '{ printf "| %s | %s |\n", $1, $2 }'
printf '\n| function | object | per message |\n|---|---|---:|\n'
awk -F "$tab" '$1 == "FN" { print $2 "\t" $3 "\t" $4 }' "$TMP/d" | sort -t "$tab" -k3,3nr |
	head -n "$TOP" | awk -F "$tab" '{ printf "| %s | %s | %s |\n", $1, $2, $3 }'
