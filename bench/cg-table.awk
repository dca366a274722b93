# cg-table.awk - one line per function from `callgrind_annotate --auto=no` output:
# "<cost>\t<function>\t<object basename>" (exclusive or inclusive, as annotated).
# Used by run.sh (where the gateway's instructions go) and cg-diff.sh (B minus A).
/file:function/ { on = 1; next }
!on || !/^ *[0-9,]+ / { next }
{
	cost = $1; gsub(",", "", cost)
	rest = $0; sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", rest)
	obj = "?"
	if (match(rest, / \[[^]]*\]$/)) {
		obj = substr(rest, RSTART + 2, RLENGTH - 3)
		rest = substr(rest, 1, RSTART - 1)
		sub(/.*\//, "", obj)
	}
	fn = rest; sub(/^.*:/, "", fn)
	printf "%s\t%s\t%s\n", cost, fn, obj
}
