#!/bin/sh
# check.sh - checks the Docker deployment (docker/) and config/civicmq-gateway.service
# without a Docker engine; `make docker-check` runs it after `make all`.
#
# Phase 1, the files. Each Dockerfile: multi-stage, every FROM a Debian 12 image pinned by
# tag, no ADD and no download (curl, wget, URLs, other apt sources, a syntax frontend),
# every apt package has a candidate in this machine's Debian 12 archive, every COPY source
# exists and holds no key, the builder stage's COPY set really builds and installs
# (replayed in a temporary copy, seeded with the host's objects so nothing recompiles),
# every COPY --from names a file that install made, the final stage installs the package of
# every library its binaries link, runs as a non-root USER, has a VOLUME and an exec-form
# CMD. compose.yaml: services broker, gateway and simulator, each with a restart policy;
# builds from the repository root; bind mounts read-only, of paths that exist, never the
# PKI; named volumes declared; ports published on 127.0.0.1 only, 8883/8884 only; no inline
# secrets. The systemd unit: the paths `make install` uses, its state directory matching
# the gateway's, and `systemd-analyze verify` silent (skipped if not installed).
#
# Phase 2, the real binaries. A temporary site made the way docker/README.md describes
# (civicmq-pki, the broker certificate naming "broker", pinned fingerprints, a gateway
# password, a pseudonym key); each service's file system assembled from compose.yaml's
# mounts; then on loopback the broker with the real plugin and docker/mosquitto.conf, the
# gateway with docker/gateway.conf (--check, then a real connection), and the simulator's
# compose command sending one reading that must come out of the gateway. Paths and ports
# are rewritten line for line, so messages name the real file and line.
#
# Each phase reports every problem it finds as FILE:LINE: what, then exits 1 if there was
# one. Every wait is bounded; every process started here is stopped by its PID.
#
# Environment: DOCKER_DIR - the directory to check (default: this script's); its parent
# stands for the repository root in compose.yaml's relative paths, so check a modified
# copy as <tmp>/docker. UNIT - the systemd unit (default config/civicmq-gateway.service).
# BUILD - build directory (default build). KEEP_TMP=1 keeps the work directory.
# compose.yaml is read as block-style YAML (no anchors, flow mappings or long-syntax
# volumes; flow sequences only for entrypoint and command); what it cannot read is reported.
set -eu

LC_ALL=C
export LC_ALL
TAB=$(printf '\t')
REPO=$(cd "$(dirname "$0")/.." && pwd)
DOCKER_DIR=$(cd "${DOCKER_DIR:-$REPO/docker}" && pwd)
UNIT=${UNIT:-$REPO/config/civicmq-gateway.service}
BUILD=${BUILD:-build}
BIN=$REPO/$BUILD
T0=$(date +%s)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/civicmq-docker-check.XXXXXX")
PROBLEMS=$TMP/problems
PIDS=""
: >"$PROBLEMS"

cleanup() {
	for p in $PIDS; do
		kill "$p" 2>/dev/null || true
	done
	for p in $PIDS; do
		wait "$p" 2>/dev/null || true
	done
	if [ "${KEEP_TMP:-0}" = 1 ]; then
		echo "docker-check: work directory kept: $TMP" >&2
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 2' INT TERM

# ---- reporting ----

# rel PATH: PATH relative to the repository when inside it.
rel() {
	case $1 in
	"$REPO"/*) printf '%s\n' "${1#"$REPO"/}" ;;
	*) printf '%s\n' "$1" ;;
	esac
}

# problem FILE LINE TEXT: one finding; LINE may be empty.
problem() {
	if [ -n "$2" ]; then
		printf '%s:%s: %s\n' "$(rel "$1")" "$2" "$3" >>"$PROBLEMS"
	else
		printf '%s: %s\n' "$(rel "$1")" "$3" >>"$PROBLEMS"
	fi
}

# problem_log FILE LINE TEXT LOG: a finding followed by the last lines of LOG, path-mapped.
problem_log() {
	problem "$1" "$2" "$3"
	unmap <"$4" | tail -n 25 | sed 's/^/    /' >>"$PROBLEMS"
}

# var_line NAME VALUE: NAME='VALUE' for a file read back with ".".
var_line() {
	printf "%s='%s'\n" "$1" "$(printf '%s' "$2" | sed "s/'/'\\\\''/g")"
}

# unmap: rewrite the check's temporary paths in program output back to the files they
# stand for (the rewritten configurations to docker/*.conf, container roots to nothing).
unmap() {
	sed -e "s|$TMP/mosquitto.conf|$(rel "$DOCKER_DIR/mosquitto.conf")|g" \
		-e "s|$TMP/gateway.conf|$(rel "$DOCKER_DIR/gateway.conf")|g" \
		-e "s|$TMP/root/[a-z]*/|/|g" -e "s|$TMP/|<tmp>/|g"
}

note() {
	echo "docker-check: $*"
}

end_phase() {
	if [ -s "$PROBLEMS" ]; then
		cat "$PROBLEMS" >&2
		echo "docker-check: $(grep -c '^[^ ]' "$PROBLEMS") problem(s) in $1" >&2
		exit 1
	fi
	note "$1: ok"
}

# ---- processes (each stopped by its own PID, every wait bounded) ----

# Helpers called inside loops use their own variable names (sh has no locals).
forget_pid() {
	fp_rest=""
	for fp_p in $PIDS; do
		[ "$fp_p" = "$1" ] || fp_rest="$fp_rest $fp_p"
	done
	PIDS=$fp_rest
}

# stop_pid PID: TERM, up to 5 s to exit, then KILL.
stop_pid() {
	kill "$1" 2>/dev/null || true
	sp_i=0
	while [ $sp_i -lt 50 ] && kill -0 "$1" 2>/dev/null; do
		sleep 0.1
		sp_i=$((sp_i + 1))
	done
	kill -9 "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	forget_pid "$1"
}

# wait_log FILE PATTERN PID TENTHS: 0 when FILE matches PATTERN, 1 when PID exited or
# TENTHS tenths of a second passed.
wait_log() {
	wl_i=0
	while [ $wl_i -lt "$4" ]; do
		if grep -Eq "$2" "$1" 2>/dev/null; then
			return 0
		fi
		kill -0 "$3" 2>/dev/null || return 1
		sleep 0.1
		wl_i=$((wl_i + 1))
	done
	return 1
}

# ---- Dockerfiles ----

# instructions DOCKERFILE: one "LINE<TAB>INSTRUCTION ARGS" per instruction, continuation
# lines joined, comments dropped (inside continuations too, as Docker does).
instructions() {
	awk '
	{ sub(/\r$/, "") }
	!cont && (/^[ \t]*#/ || /^[ \t]*$/) { next }
	cont && /^[ \t]*#/ { next }
	{
		if (!cont) { start = NR; buf = "" }
		line = $0
		gsub(/\t/, " ", line)
		if (line ~ /\\[ ]*$/) {
			sub(/\\[ ]*$/, "", line)
			buf = buf line " "
			cont = 1
			next
		}
		buf = buf line
		cont = 0
		gsub(/  +/, " ", buf)
		sub(/^ /, "", buf)
		print start "\t" buf
	}
	END { if (cont) print start "\t" buf }' "$1"
}

# apt_packages ARGS: the packages an "apt-get install" in a RUN line names.
apt_packages() {
	printf '%s\n' "$1" | awk '{
		n = split($0, seg, /&&|\|\||;|\|/)
		for (s = 1; s <= n; s++) {
			m = split(seg[s], t, / +/)
			apt = 0; inst = 0
			for (j = 1; j <= m; j++) {
				if (!inst) {
					if (t[j] == "apt-get" || t[j] == "apt") apt = 1
					else if (apt && t[j] == "install") inst = 1
					continue
				}
				if (t[j] == "" || t[j] ~ /^-/) continue
				if (t[j] ~ /^[<>0-9]/) break
				sub(/[=:].*/, "", t[j])
				print t[j]
			}
		}
	}'
}

DEBIAN12_RE='^(docker\.io/)?(library/)?debian:(12|12\.[0-9]+|bookworm|bookworm-[0-9]{8})(-slim)?(@sha256:[0-9a-f]{64})?$'
DOWNLOAD_RE='(^|[^a-z0-9_-])(curl|wget|git clone|add-apt-repository|apt-key)([^a-z0-9_-]|$)|(https?|ftp)://|sources\.list|/etc/apt/sources'
SECRET_RE='(PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE|_KEY)[A-Z_]*='

# check_dockerfile DOCKERFILE: phase-1 checks of one Dockerfile. Leaves, in $TMP/df.NAME.*:
# pkgs (LINE PACKAGE STAGE), ctxcopy (LINE SRC DEST STAGE; .b: the builder stage's),
# fromcopy (LINE SRC DEST), vars (FINAL_STAGE, MAKE_STAGE, MAKE_LINE, MAKE_WORKDIR,
# DESTDIR, PREFIX, CMD_CONF, CMD_LINE, for ".").
check_dockerfile() {
	df=$1
	name=${df##*/}
	out=$TMP/df.$name
	: >"$out.pkgs"
	: >"$out.ctxcopy"
	: >"$out.fromcopy"
	instructions "$df" >"$out.instr"
	if head -n 5 "$df" | grep -Eiq '^# *syntax *='; then
		problem "$df" 1 "a '# syntax=' directive pulls a BuildKit frontend image from a registry; drop it"
	fi
	stage=0
	stages=" "
	workdir=/
	make_stage=0
	destdir=""
	prefix=""
	make_line=""
	make_workdir=/
	user=""
	user_line=""
	volume=""
	cmd=""
	entry=""
	cmd_line=""
	while IFS="$TAB" read -r ln ins; do
		op=${ins%% *}
		args=${ins#"$op"}
		args=${args# }
		op=$(printf '%s' "$op" | tr '[:lower:]' '[:upper:]')
		if printf '%s\n' "$args" | grep -Eiq "$DOWNLOAD_RE"; then
			problem "$df" "$ln" "downloads from outside the Debian archive ($op $args); only apt from Debian is allowed"
		fi
		case $args in
		*"<<"*) problem "$df" "$ln" "here-documents are not read by docker/check.sh; write the commands inline" ;;
		esac
		set -f
		# shellcheck disable=SC2086
		set -- $args
		set +f
		case $op in
		FROM)
			while [ $# -gt 0 ]; do
				case $1 in
				--*) shift ;;
				*) break ;;
				esac
			done
			stage=$((stage + 1))
			user=""
			user_line=""
			volume=""
			cmd=""
			entry=""
			workdir=/
			image=${1:-}
			case " $stages " in
			*" $image "*) ;;
			*)
				if ! printf '%s\n' "$image" | grep -Eq "$DEBIAN12_RE"; then
					problem "$df" "$ln" "FROM $image is not a Debian 12 image pinned by tag (debian:12, debian:12-slim, debian:bookworm[-slim], optionally @sha256:...)"
				fi
				;;
			esac
			if [ $# -ge 3 ]; then
				case $2 in
				[Aa][Ss]) stages="$stages$3 " ;;
				esac
			fi
			stages="$stages$((stage - 1)) "
			;;
		ADD)
			problem "$df" "$ln" "ADD can fetch URLs and unpack archives; use COPY"
			;;
		WORKDIR)
			case ${1:-/} in
			/*) workdir=${1:-/} ;;
			*) workdir=${workdir%/}/$1 ;;
			esac
			;;
		USER)
			user=${1:-}
			user_line=$ln
			;;
		VOLUME) volume=$args ;;
		CMD)
			cmd=$args
			cmd_line=$ln
			;;
		ENTRYPOINT) entry=$args ;;
		ENV | ARG)
			if printf '%s\n' "$args" | tr '[:lower:]' '[:upper:]' | grep -Eq "$SECRET_RE"; then
				problem "$df" "$ln" "$op looks like it sets a secret ($args); secrets are mounted at run time, never built in"
			fi
			;;
		RUN)
			for p in $(apt_packages "$args"); do
				printf '%s\t%s\t%s\n' "$ln" "$p" "$stage" >>"$out.pkgs"
			done
			case $args in
			*make*install*)
				make_stage=$stage
				make_line=$ln
				make_workdir=$workdir
				for w in "$@"; do
					case $w in
					DESTDIR=*) destdir=${w#DESTDIR=} ;;
					PREFIX=*) prefix=${w#PREFIX=} ;;
					esac
				done
				# Every make call: install depends on all, which would run ensure-deps.sh.
				if printf '%s\n' "$args" | tr ';&|' '\n\n\n' |
					grep -E '(^| )make( |$)' | grep -qv 'SKIP_DEPS=1'; then
					problem "$df" "$ln" "a make call without SKIP_DEPS=1 runs scripts/ensure-deps.sh (the test tools) in the image"
				fi
				;;
			esac
			;;
		COPY)
			from=""
			while [ $# -gt 0 ]; do
				case $1 in
				--from=*) from=${1#--from=} ;;
				--*) ;;
				*) break ;;
				esac
				shift
			done
			case ${1:-} in
			\[*)
				problem "$df" "$ln" "COPY in JSON form is not read by docker/check.sh; use the plain form"
				continue
				;;
			esac
			if [ $# -lt 2 ]; then
				problem "$df" "$ln" "COPY needs a source and a destination"
				continue
			fi
			n=$#
			eval "dest=\${$n}"
			case $dest in
			/*) ;;
			*) dest=${workdir%/}/$dest ;;
			esac
			if [ $# -gt 2 ]; then
				case $dest in
				*/) ;;
				*) dest=$dest/ ;;
				esac
			fi
			case $dest in
			/etc/civicmq | /etc/civicmq/*)
				problem "$df" "$ln" "COPY into /etc/civicmq: configuration is mounted read-only at run time, never built in"
				;;
			esac
			i=1
			while [ $i -lt $n ]; do
				eval "src=\${$i}"
				i=$((i + 1))
				if [ -n "$from" ]; then
					case " $stages " in
					*" $from "*) ;;
					*) problem "$df" "$ln" "COPY --from=$from names no earlier stage" ;;
					esac
					printf '%s\t%s\t%s\n' "$ln" "$src" "$dest" >>"$out.fromcopy"
					continue
				fi
				check_copy_source "$df" "$ln" "$src"
				printf '%s\t%s\t%s\t%s\n' "$ln" "$src" "$dest" "$stage" >>"$out.ctxcopy"
			done
			;;
		esac
	done <"$out.instr"

	if [ "$stage" -lt 2 ]; then
		problem "$df" "" "not multi-stage: build in one stage, copy only the results into a slim runtime stage"
	fi
	case $user in
	"") problem "$df" "" "the final stage has no USER: it would run as root" ;;
	root | root:* | 0 | 0:*) problem "$df" "$user_line" "the final stage runs as root (USER $user)" ;;
	esac
	if [ -z "$volume" ]; then
		problem "$df" "" "the final stage declares no VOLUME for its writable state"
	fi
	if [ -z "$cmd" ]; then
		problem "$df" "" "the final stage has no CMD"
	fi
	for c in "$cmd" "$entry"; do
		case $c in
		"" | \[*\]) ;;
		*) problem "$df" "" "CMD/ENTRYPOINT in shell form ($c): a shell becomes PID 1 and swallows SIGTERM/SIGHUP; use the JSON form" ;;
		esac
	done
	if [ "$make_stage" = 0 ]; then
		problem "$df" "" "no builder stage runs 'make SKIP_DEPS=1 install DESTDIR=... PREFIX=...'"
	elif [ -z "$destdir" ] || [ -z "$prefix" ]; then
		problem "$df" "$make_line" "make install without DESTDIR= and PREFIX=: the final stage cannot pick the installed files"
	fi
	# The configuration file the image's CMD reads: the argument after -c.
	cmd_conf=$(printf '%s\n' "$cmd" | tr -d '[]"' | tr ',' '\n' | sed 's/^ *//; s/ *$//' |
		awk 'prev == "-c" { print; exit } { prev = $0 }')
	{
		var_line FINAL_STAGE "$stage"
		var_line MAKE_STAGE "$make_stage"
		var_line MAKE_LINE "$make_line"
		var_line MAKE_WORKDIR "$make_workdir"
		var_line DESTDIR "$destdir"
		var_line PREFIX "$prefix"
		var_line CMD_CONF "$cmd_conf"
		var_line CMD_LINE "$cmd_line"
	} >"$out.vars"
	awk -F "$TAB" -v s="$make_stage" '$4 == s' "$out.ctxcopy" >"$out.ctxcopy.b"
}

# check_copy_source DOCKERFILE LINE SRC: a build-context path that exists, is named (no
# wildcard), is not the build directory or .git, and holds no key or secret.
check_copy_source() {
	case $3 in
	*[*?[]*)
		problem "$1" "$2" "COPY source $3 has a wildcard; name each path so the check can see what goes in"
		return 0
		;;
	. | ./ | .. | ../* | /* | build | build/* | "$BUILD" | "$BUILD"/* | .git | .git/*)
		problem "$1" "$2" "COPY source $3: copy named source directories only, never the repository root, build/ (test PKI keys) or .git"
		return 0
		;;
	esac
	if [ ! -e "$REPO/$3" ]; then
		problem "$1" "$2" "COPY source $3 does not exist in the build context (the repository root)"
		return 0
	fi
	found=$(find "$REPO/$3" \( -name '*.key' -o -name '*.p12' -o -name '*.pfx' -o -name '*.password' \
		-o -name 'pseudonym*' -o -name '*.pem' \) -print 2>/dev/null | head -n 3)
	found=$found$(grep -rlIE -- '-----BEGIN ([A-Z]+ )?PRIVATE KEY-----' "$REPO/$3" 2>/dev/null | head -n 3 || true)
	if [ -n "$found" ]; then
		problem "$1" "$2" "COPY source $3 holds keys, certificates or secrets: $(printf '%s' "$found" | tr '\n' ' ')"
	fi
}

# replay_builder DOCKERFILE: copy the builder's COPY set into a temporary tree, seed it with
# the host's build artefacts (same sources, so make finds them up to date), and run the
# builder's make install there. Then every COPY --from source must exist in the result.
replay_builder() {
	df=$1
	name=${df##*/}
	out=$TMP/df.$name
	# shellcheck disable=SC1090
	. "$out.vars"
	[ "$MAKE_STAGE" != 0 ] && [ -n "$DESTDIR" ] && [ -n "$PREFIX" ] || return 0
	wd=$MAKE_WORKDIR
	# Both Dockerfiles share one builder stage: replay it once.
	key=$(cut -f 2- "$out.ctxcopy.b"; echo "$DESTDIR $PREFIX $wd")
	if [ "$key" = "${REPLAY_KEY:-}" ]; then
		root=$REPLAY_ROOT
	else
		root=$TMP/ctx.$name
		replay_make "$df" "$out" "$root" "$wd" || return 0
		REPLAY_KEY=$key
		REPLAY_ROOT=$root
	fi
	: >"$out.files"
	while IFS="$TAB" read -r ln src dest; do
		if [ ! -e "$root$src" ]; then
			problem "$df" "$ln" "COPY --from source $src is not something the builder's make install (DESTDIR=$DESTDIR PREFIX=$PREFIX) makes"
			continue
		fi
		case $dest in
		*/) target=$dest${src##*/} ;;
		*) target=$dest ;;
		esac
		printf '%s\t%s\t%s\n' "$ln" "$target" "$root$src" >>"$out.files"
	done <"$out.fromcopy"
}

# replay_make DOCKERFILE OUT ROOT WORKDIR: the builder's COPY set and make install in ROOT.
replay_make() {
	df=$1
	name=${df##*/}
	out=$2
	root=$3
	wd=$4
	mkdir -p "$root$wd"
	while IFS="$TAB" read -r ln src dest _; do
		[ -e "$REPO/$src" ] || continue
		case $dest in
		*/)
			mkdir -p "$root$dest"
			if [ -d "$REPO/$src" ]; then
				cp -Rp "$REPO/$src/." "$root$dest"
			else
				cp -p "$REPO/$src" "$root$dest"
			fi
			;;
		*)
			if [ -d "$REPO/$src" ]; then
				mkdir -p "$root$dest"
				cp -Rp "$REPO/$src/." "$root$dest/"
			else
				mkdir -p "$(dirname "$root$dest")"
				cp -p "$REPO/$src" "$root$dest"
			fi
			;;
		esac
	done <"$out.ctxcopy.b"
	# The host's objects and outputs: make then only links or installs what is missing.
	mkdir -p "$root$wd/build"
	for artefact in core plugin gateway tools libcivicmq_core.a civicmq_plugin.so civicmq-gateway \
		civicmq-passwd civicmq-sim civicmq-dash; do
		if [ -e "$BIN/$artefact" ]; then
			cp -Rp "$BIN/$artefact" "$root$wd/build/"
		fi
	done
	if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$root$wd" -s SKIP_DEPS=1 BUILD=build \
		install DESTDIR="$root$DESTDIR" PREFIX="$PREFIX" >"$TMP/make.$name.log" 2>&1; then
		problem_log "$df" "$MAKE_LINE" "the builder's make install fails with the files its COPY lines bring in:" \
			"$TMP/make.$name.log"
		return 1
	fi
	# Once, for the systemd unit: install with the Makefile's default PREFIX too.
	if [ ! -d "$TMP/stage-default" ]; then
		env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$root$wd" -s SKIP_DEPS=1 BUILD=build \
			install DESTDIR="$TMP/stage-default" >"$TMP/make.default.log" 2>&1 ||
			problem_log "$REPO/Makefile" "" "make install (default PREFIX) fails:" "$TMP/make.default.log"
	fi
}

# check_libraries DOCKERFILE: every library the final stage's binaries link comes from a
# package that stage installs, or from one of their dependencies, or libc6. One dpkg -S and
# one dpkg-query for all (each dpkg -S call reads the whole package database).
check_libraries() {
	df=$1
	out=$TMP/df.${df##*/}
	[ -s "$out.files" ] || return 0
	# shellcheck disable=SC1090
	. "$out.vars"
	: >"$out.needed"
	while IFS="$TAB" read -r ln target file; do
		readelf -d "$file" >/dev/null 2>&1 || continue
		readelf -d "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' |
			sed "s|^|$ln$TAB${target##*/}$TAB|" >>"$out.needed"
	done <"$out.files"
	[ -s "$out.needed" ] || return 0
	set -f
	# shellcheck disable=SC2046
	dpkg -S $(cut -f 3 "$out.needed" | sort -u | sed 's|^|*/|') 2>/dev/null |
		awk '{ pkg = $1; sub(/[:,].*/, "", pkg); so = $NF; sub(/.*\//, "", so); if (!(so in seen)) print so "\t" pkg; seen[so] = 1 }' \
			>"$out.owners"
	set +f
	pkgs=$(awk -F "$TAB" -v s="$FINAL_STAGE" '$3 == s { print $2 }' "$out.pkgs" | sort -u)
	{
		echo libc6
		printf '%s\n' "$pkgs"
		# Dependencies from the installed packages' control data (the -dev packages the
		# build needs pull every runtime library in); apt-cache for any not installed.
		for pkg in $pkgs; do
			deps=$(dpkg-query -W -f='${Pre-Depends}, ${Depends}' "$pkg" 2>/dev/null) ||
				deps=$(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
					--no-replaces --no-enhances "$pkg" 2>/dev/null |
					sed -n 's/^ *|\{0,1\}\(Pre\)\{0,1\}Depends: \([^ <>]*\).*/\2,/p')
			printf '%s\n' "$deps" | tr ',|' '\n\n' | sed 's/(.*//; s/:.*//; s/ //g'
		done
	} | grep -v '^$' | sort -u >"$out.allowed"
	while IFS="$TAB" read -r ln bin so; do
		pkg=$(awk -F "$TAB" -v so="$so" '$1 == so { print $2 }' "$out.owners")
		if [ -z "$pkg" ]; then
			problem "$df" "$ln" "$bin links $so, which no installed Debian package provides here"
		elif ! grep -qx "$pkg" "$out.allowed"; then
			problem "$df" "$ln" "$bin links $so from package $pkg, which the final stage does not install"
		fi
	done <"$out.needed"
}

# check_packages: every apt package of both Dockerfiles has a candidate version here.
check_packages() {
	cat "$TMP"/df.*.pkgs >/dev/null 2>&1 || return 0
	codename=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>/dev/null || true)
	if [ "$codename" != bookworm ] || ! command -v apt-cache >/dev/null 2>&1; then
		note "skipped the package check: this machine is not Debian 12 (bookworm) with apt"
		return 0
	fi
	# shellcheck disable=SC2046
	apt-cache policy $(cut -f 2 "$TMP"/df.*.pkgs | sort -u) 2>/dev/null |
		awk '/^[^ ]/ { p = $1; sub(/:$/, "", p) } /^  Candidate:/ && $2 != "(none)" { print p }' \
			>"$TMP/candidates"
	for f in "$TMP"/df.*.pkgs; do
		df=$DOCKER_DIR/${f#"$TMP"/df.}
		df=${df%.pkgs}
		while IFS="$TAB" read -r ln p _; do
			grep -qx "$p" "$TMP/candidates" ||
				problem "$df" "$ln" "apt package $p has no installation candidate in Debian 12 (apt-cache policy $p)"
		done <"$f"
	done
}

# ---- compose.yaml ----

# compose_tsv: compose.yaml as "LINE<TAB>PATH<TAB>key|item|bad<TAB>VALUE" records, where
# PATH is the dotted key path (services.broker.volumes) and VALUE is unquoted.
compose_tsv() {
	awk '
	function unq(v) {
		if (v ~ /^".*"$/ || v ~ /^\047.*\047$/) v = substr(v, 2, length(v) - 2)
		return v
	}
	function path(   i, p) {
		p = ""
		for (i = 1; i <= nk; i++) p = p (p == "" ? "" : ".") kname[i]
		return p
	}
	{ sub(/\r$/, "") }
	/^[ ]*#/ || /^[ ]*$/ { next }
	/\t/ { print NR "\t\tbad\ta tab character"; next }
	{
		match($0, /^ */)
		ind = RLENGTH
		s = substr($0, ind + 1)
		sub(/ +#.*$/, "", s)
		if (s ~ /^- /) {
			while (nk > 0 && kind[nk] > ind) nk--
			v = substr(s, 3)
			if (v ~ /^[A-Za-z0-9_.-]+:( |$)/ || v ~ /^[{&*]/)
				print NR "\t" path() "\tbad\ta long-syntax or mapping item"
			else
				print NR "\t" path() "\titem\t" unq(v)
			next
		}
		if (match(s, /^[A-Za-z0-9_.-]+:( |$)/)) {
			k = substr(s, 1, RLENGTH)
			sub(/: ?$/, "", k)
			v = substr(s, RLENGTH + 1)
			sub(/^ +/, "", v)
			while (nk > 0 && kind[nk] >= ind) nk--
			if (v ~ /^[{&*|>]/ || k == "<<") {
				print NR "\t" path() "." k "\tbad\tanchors, aliases, flow mappings and block scalars"
				next
			}
			print NR "\t" path() (nk ? "." : "") k "\tkey\t" unq(v)
			if (v == "") { nk++; kind[nk] = ind; kname[nk] = k }
			next
		}
		print NR "\t" path() "\tbad\tnot a key, a list item or a comment"
	}' "$1"
}

# cval SERVICE KEY: "LINE<TAB>VALUE" of services.SERVICE.KEY (empty if absent).
cval() {
	awk -F "$TAB" -v p="services.$1.$2" '$2 == p && $3 == "key" { print $1 "\t" $4; exit }' "$CTSV"
}

# citems SERVICE KEY: "LINE<TAB>VALUE" per item of the list services.SERVICE.KEY.
citems() {
	awk -F "$TAB" -v p="services.$1.$2" '$2 == p && $3 == "item" { print $1 "\t" $4 }' "$CTSV"
}

# flow_tokens VALUE: the items of a one-line flow sequence ["a", "b"], one per line.
flow_tokens() {
	printf '%s\n' "$1" | sed 's/^ *\[//; s/\] *$//' | tr ',' '\n' |
		sed 's/^ *//; s/ *$//; s/^"\(.*\)"$/\1/; s/^'"'"'\(.*\)'"'"'$/\1/'
}

# resolve_source SRC: the host path a bind mount source names; "site:REL" for the site
# directory (made only in phase 2); "named" for a named volume; "bad:WHY" otherwise.
resolve_source() {
	case $1 in
	'${CIVICMQ_SITE:?'*'}'*)
		r=${1#*\}}
		printf 'site:%s\n' "${r#/}"
		;;
	'${'*) printf 'bad:only ${CIVICMQ_SITE:?...} may be used, and it must be required (:?)\n' ;;
	/* | ~*) printf 'bad:absolute host paths tie the file to one machine; use ${CIVICMQ_SITE:?...}/...\n' ;;
	./* | ../* | . | ..) printf '%s\n' "$DOCKER_DIR/$1" ;;
	*) printf 'named\n' ;;
	esac
}

check_compose() {
	cf=$DOCKER_DIR/compose.yaml
	CTSV=$TMP/compose.tsv
	if [ ! -f "$cf" ]; then
		problem "$cf" "" "missing"
		: >"$CTSV"
		return 0
	fi
	compose_tsv "$cf" >"$CTSV"
	awk -F "$TAB" '$3 == "bad" { print $1 "\t" $4 }' "$CTSV" >"$TMP/compose.bad"
	while IFS="$TAB" read -r ln why; do
		problem "$cf" "$ln" "not read by docker/check.sh: $why (write block-style YAML)"
	done <"$TMP/compose.bad"
	# Secrets never inline: no environment, no password/secret/token anywhere.
	grep -n -Ei '(password|passwd|secret|token|private)' "$cf" | grep -v '^[0-9]*: *#' |
		while IFS=: read -r ln rest; do
			problem "$cf" "$ln" "looks like an inline secret; mount it from the site directory instead"
		done
	awk -F "$TAB" '$3 == "key" && $2 ~ /^services\.[^.]+$/ { sub(/^services\./, "", $2); print $2 }' "$CTSV" \
		>"$TMP/services"
	awk -F "$TAB" '$3 == "key" && $2 ~ /^volumes\.[^.]+$/ { sub(/^volumes\./, "", $2); print $2 }' "$CTSV" \
		>"$TMP/volumes"
	for s in broker gateway simulator; do
		grep -qx "$s" "$TMP/services" || problem "$cf" "" "service $s is missing"
	done
	while read -r s; do
		check_service "$cf" "$s"
	done <"$TMP/services"
	# The images: broker and gateway build them, the simulator reuses the gateway's.
	expect_build "$cf" broker Dockerfile.broker
	expect_build "$cf" gateway Dockerfile.gateway
	sim_image=$(cval simulator image | cut -f 2)
	gw_image=$(cval gateway image | cut -f 2)
	if [ -n "$(cval simulator build)" ]; then
		:
	elif [ -z "$gw_image" ] || [ "$sim_image" != "$gw_image" ]; then
		problem "$cf" "$(cval simulator image | cut -f 1)" "simulator: without a build it must use the image the gateway service builds (image: $gw_image)"
	elif [ "$(cval simulator pull_policy | cut -f 2)" != never ]; then
		problem "$cf" "$(cval simulator image | cut -f 1)" "simulator: set pull_policy: never, or compose tries to pull $sim_image from a registry"
	fi
	for s in gateway simulator; do
		citems "$s" depends_on | cut -f 2 | grep -qx broker ||
			problem "$cf" "$(cval "$s" depends_on | cut -f 1)" "$s: depends_on must list broker"
	done
}

# expect_build FILE SERVICE DOCKERFILE: the service builds DOCKERFILE from the repo root.
expect_build() {
	ctx=$(cval "$2" build.context)
	dfl=$(cval "$2" build.dockerfile)
	if [ -z "$ctx" ] || [ -z "$dfl" ]; then
		problem "$1" "$(cval "$2" build | cut -f 1)" "$2: needs build: with context: and dockerfile: ($3)"
		return 0
	fi
	cdir=${ctx#*"$TAB"}
	case $cdir in
	/*) ;;
	*) cdir=$DOCKER_DIR/$cdir ;;
	esac
	if [ ! -d "$cdir" ] || [ "$(cd "$cdir" && pwd)" != "$(cd "$DOCKER_DIR/.." && pwd)" ]; then
		problem "$1" "${ctx%%"$TAB"*}" "$2: the build context must be the repository root (..), which the Dockerfile's COPY lines assume"
	fi
	if [ ! -f "$cdir/${dfl#*"$TAB"}" ]; then
		problem "$1" "${dfl%%"$TAB"*}" "$2: dockerfile ${dfl#*"$TAB"} does not exist under the build context"
	elif [ "${dfl##*/}" != "$3" ]; then
		problem "$1" "${dfl%%"$TAB"*}" "$2: expected to build $3, not ${dfl#*"$TAB"}"
	fi
}

check_service() {
	cf=$1
	s=$2
	r=$(cval "$s" restart)
	case ${r#*"$TAB"} in
	always | unless-stopped | on-failure*) ;;
	*) problem "$cf" "${r%%"$TAB"*}" "$s: needs a restart policy (unless-stopped, always or on-failure)" ;;
	esac
	priv=$(cval "$s" privileged | cut -f 2)
	[ "$priv" != true ] || problem "$cf" "$(cval "$s" privileged | cut -f 1)" "$s: privileged"
	u=$(cval "$s" user)
	case ${u#*"$TAB"} in
	root | root:* | 0 | 0:*) problem "$cf" "${u%%"$TAB"*}" "$s: runs as root (user: ${u#*"$TAB"})" ;;
	esac
	[ -z "$(cval "$s" environment)" ] ||
		problem "$cf" "$(cval "$s" environment | cut -f 1)" "$s: environment: configuration and secrets come from mounted files"
	citems "$s" ports >"$TMP/ports.$s"
	while IFS="$TAB" read -r ln p; do
		if [ "$s" != broker ]; then
			problem "$cf" "$ln" "$s: only the broker publishes ports"
			continue
		fi
		case $p in
		127.0.0.1:8883:8883 | 127.0.0.1:8884:8884 | 127.0.0.1:8883:8883/tcp | 127.0.0.1:8884:8884/tcp) ;;
		*) problem "$cf" "$ln" "port $p: publish only 8883 and 8884, on 127.0.0.1 (127.0.0.1:8883:8883)" ;;
		esac
	done <"$TMP/ports.$s"
	citems "$s" volumes >"$TMP/mounts.$s"
	while IFS="$TAB" read -r ln v; do
		src=${v%%:/*}
		rest=${v#"$src":}
		dst=${rest%%:*}
		mode=""
		[ "$dst" = "$rest" ] || mode=${rest#"$dst":}
		case $v in
		*:/*) ;;
		*)
			problem "$cf" "$ln" "volume $v: expected SOURCE:/container/path[:ro]"
			continue
			;;
		esac
		res=$(resolve_source "$src")
		case $res in
		bad:*)
			problem "$cf" "$ln" "volume source $src: ${res#bad:}"
			;;
		named)
			grep -qx "$src" "$TMP/volumes" ||
				problem "$cf" "$ln" "named volume $src is not declared under the top-level volumes:"
			;;
		*)
			case ,$mode, in
			*,ro,*) ;;
			*) problem "$cf" "$ln" "bind mount $src must be read-only (append :ro)" ;;
			esac
			case $res in
			site:pki | site:pki/* | site: | site:.)
				problem "$cf" "$ln" "never mount the whole site or its pki/ (it holds the CA keys); mount the service's subdirectory"
				;;
			site:*) ;;
			*)
				[ -e "$res" ] || problem "$cf" "$ln" "bind mount source $src does not exist ($(rel "$res"))"
				;;
			esac
			;;
		esac
		printf '%s\t%s\t%s\n' "$ln" "$res" "$dst" >>"$TMP/mounts.$s.resolved"
	done <"$TMP/mounts.$s"
}

# ---- the systemd unit ----

check_unit() {
	u=$UNIT
	if [ ! -f "$u" ]; then
		problem "$u" "" "missing"
		return 0
	fi
	exec_ln=$(grep -n '^ExecStart=' "$u" | tail -n 1 | cut -d: -f 1)
	exec_val=$(grep '^ExecStart=' "$u" | tail -n 1 | sed 's/^ExecStart=[-@:+!]*//')
	if [ -z "$exec_val" ]; then
		problem "$u" "" "no ExecStart="
		return 0
	fi
	set -f
	# shellcheck disable=SC2086
	set -- $exec_val
	set +f
	binary=$1
	conf=""
	statedir_opt=""
	while [ $# -gt 1 ]; do
		case $1 in
		-c) conf=$2 ;;
		--state_dir) statedir_opt=$2 ;;
		esac
		shift
	done
	stage=$TMP/stage-default
	if [ -d "$stage" ]; then
		[ -x "$stage$binary" ] ||
			problem "$u" "$exec_ln" "ExecStart runs $binary, which 'make install' (default PREFIX) does not install"
		[ -z "$conf" ] || [ -e "$stage$conf" ] ||
			problem "$u" "$exec_ln" "-c $conf is not where 'make install' puts gateway.conf"
	fi
	sd=$(sed -n 's/^StateDirectory=//p' "$u" | tail -n 1)
	sd_ln=$(grep -n '^StateDirectory=' "$u" | tail -n 1 | cut -d: -f 1)
	if [ -z "$sd" ]; then
		problem "$u" "" "no StateDirectory=: systemd would not make the gateway's state_dir"
	else
		want=/var/lib/$sd
		have=$statedir_opt
		if [ -z "$have" ]; then
			have=$("$BIN/civicmq-gateway" --help 2>/dev/null |
				sed -n 's/.*--state_dir .*\[default: \(.*\)\]$/\1/p')
		fi
		[ "$have" = "$want" ] ||
			problem "$u" "$sd_ln" "StateDirectory=$sd is $want, but the gateway's state_dir is $have (pass --state_dir $want in ExecStart)"
		rw=$(sed -n 's/^ReadWritePaths=//p' "$u" | tail -n 1)
		[ -z "$rw" ] || [ "$rw" = "$want" ] ||
			problem "$u" "$(grep -n '^ReadWritePaths=' "$u" | tail -n 1 | cut -d: -f 1)" "ReadWritePaths=$rw: only the state directory $want"
	fi
	case $(sed -n 's/^User=//p' "$u" | tail -n 1) in
	"" | root | 0) problem "$u" "" "User= must name the unprivileged civicmq account" ;;
	esac
	grep -q '^ExecReload=.*HUP' "$u" ||
		problem "$u" "" "ExecReload= must send SIGHUP (the gateway reloads on it)"
	if ! command -v systemd-analyze >/dev/null 2>&1; then
		note "skipped systemd-analyze verify: not installed"
		return 0
	fi
	# verify insists that ExecStart's binary exists: point it at the built one.
	mkdir -p "$TMP/unit"
	sed "s|^\(ExecStart=[-@:+!]*\)$binary|\1$BIN/civicmq-gateway|" "$u" >"$TMP/unit/${u##*/}"
	# It warns (exit 0) about what it ignores, so any output is a problem.
	if ! systemd-analyze verify "$TMP/unit/${u##*/}" >"$TMP/unit.log" 2>&1 || [ -s "$TMP/unit.log" ]; then
		while IFS= read -r l; do
			case $l in
			"$TMP/unit/${u##*/}":[0-9]*:*)
				l=${l#"$TMP/unit/${u##*/}":}
				problem "$u" "${l%%:*}" "systemd-analyze verify:${l#*:}"
				;;
			*) problem "$u" "" "systemd-analyze verify: $l" ;;
			esac
		done <"$TMP/unit.log"
	fi
}

# ---- phase 2: the site, the containers' file systems, the real binaries ----

# make_site DIR: the site directory of docker/README.md ("Preparing the site"); keep the
# two in step. Ownership (chown to the containers' uids) is left out: it needs root.
make_site() {
	S=$1
	PKI=$S/pki
	mkdir -p "$S/policy" "$S/broker" "$S/gateway" "$S/simulator"
	# Start from a copy of the test PKI when there is one: civicmq-pki then only completes
	# it (half a second instead of four). The copy is changed below, the original never.
	if [ -f "$BIN/pki/manifest.json" ]; then
		cp -Rp "$BIN/pki" "$PKI"
	fi
	if ! "$REPO/certs/civicmq-pki" "$PKI" >"$TMP/pki.log" 2>&1; then
		problem_log "$REPO/certs/civicmq-pki" "" "failed:" "$TMP/pki.log"
		return 1
	fi
	# The broker's certificate, from the city root, naming "broker" (README step 2).
	(umask 077 && mkdir -p "$PKI/broker")
	CMQ_CA_DIR=$PKI/root
	export CMQ_CA_DIR
	cat >"$PKI/broker/broker.ext" <<'EOF'
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:broker, DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
	if ! {
		openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/broker/broker.key" &&
			openssl req -new -config "$PKI/openssl.cnf" -key "$PKI/broker/broker.key" \
				-subj "/O=Example City/CN=broker" -out "$PKI/broker/broker.csr" &&
			openssl ca -batch -config "$PKI/openssl.cnf" -extfile "$PKI/broker/broker.ext" -notext \
				-days 825 -in "$PKI/broker/broker.csr" -out "$PKI/broker/broker.pem"
	} >"$TMP/broker-cert.log" 2>&1; then
		problem_log "$DOCKER_DIR/README.md" "" "issuing the broker certificate as described fails:" "$TMP/broker-cert.log"
		return 1
	fi
	# Pinned fingerprints (README step 3), with awk instead of the README's jq.
	vfps=""
	for ca in "$PKI"/vendors/*/ca.pem; do
		v=${ca%/ca.pem}
		vfps="$vfps ${v##*/}=$(openssl x509 -noout -fingerprint -sha256 -in "$ca" | cut -d= -f 2)"
	done
	opfp=$(openssl x509 -noout -fingerprint -sha256 -in "$PKI/operator-ca/ca.pem" | cut -d= -f 2)
	cp "$REPO/config/policy.json" "$S/policy/policy.json"
	awk -v list="$vfps" '
	BEGIN { n = split(list, a, " "); for (i = 1; i <= n; i++) { split(a[i], kv, "="); fp[kv[1]] = kv[2] } }
	/"id":/ { id = $0; sub(/.*"id": *"/, "", id); sub(/".*/, "", id) }
	/"ca_sha256":/ && (id in fp) { sub(/\[[^]]*\]/, "[\"" fp[id] "\"]") }
	{ print }' "$REPO/config/vendors.json" >"$S/policy/vendors.json"
	# The gateway's password (README step 4).
	gen=$("$BIN/civicmq-passwd" --generate </dev/null)
	(umask 077 && printf '%s\n' "$gen" | sed -n 1p >"$S/gateway/gateway.password")
	gwhash=$(printf '%s\n' "$gen" | sed -n 2p)
	awk -v op="$opfp" -v gw="$gwhash" '
	/"operator_ca_sha256":/ { sub(/\[[^]]*\]/, "[\"" op "\"]") }
	/"username":/ { u = $0; sub(/.*"username": *"/, "", u); sub(/".*/, "", u) }
	/"password_hash":/ && u == "gateway" {
		i = index($0, "\"password_hash\"")
		rest = substr($0, i)
		match(rest, /^"password_hash": *"[^"]*"/)
		print substr($0, 1, i - 1) "\"password_hash\": \"" gw "\"" substr(rest, RLENGTH + 1)
		next
	}
	{ print }' "$REPO/config/operators.json" >"$S/broker/operators.json"
	# The pseudonym key and consent (README step 5).
	(umask 077 && openssl rand -hex 32 >"$S/gateway/pseudonym.key")
	cp "$REPO/config/consent.json" "$S/gateway/consent.json"
	# What each service mounts (README step 6).
	cp "$PKI/ca-bundle.pem" "$S/broker/ca-bundle.pem"
	cp "$PKI/broker/broker.pem" "$S/broker/broker.pem"
	(umask 077 && cp "$PKI/broker/broker.key" "$S/broker/broker.key")
	cp "$PKI/root/ca.pem" "$S/gateway/root-ca.pem"
	cp "$PKI/root/ca.pem" "$S/simulator/root-ca.pem"
	cp "$PKI/vendors/civitas/devices/civitas-air-001.pem" "$S/simulator/"
	(umask 077 && cp "$PKI/vendors/civitas/devices/civitas-air-001.key" "$S/simulator/")
}

# assemble SERVICE: $TMP/root/SERVICE, the service's view of its mounts: symlinks to the
# bind sources, directories for named volumes (the writable places: $TMP/writable.SERVICE).
assemble() {
	s=$1
	r=$TMP/root/$s
	mkdir -p "$r"
	: >"$TMP/writable.$s"
	[ -f "$TMP/mounts.$s.resolved" ] || return 0
	while IFS="$TAB" read -r ln res dst; do
		case $res in
		bad:*) continue ;;
		named)
			mkdir -p "$r$dst"
			echo "$dst" >>"$TMP/writable.$s"
			continue
			;;
		site:*) src=$SITE/${res#site:} ;;
		*) src=$res ;;
		esac
		if [ ! -e "$src" ]; then
			problem "$DOCKER_DIR/compose.yaml" "$ln" "$s: mounts ${res#site:} from the site, which the site layout of docker/README.md does not have"
			continue
		fi
		if [ -e "$r$dst" ] || [ -L "$r$dst" ]; then
			problem "$DOCKER_DIR/compose.yaml" "$ln" "$s: $dst is mounted twice"
			continue
		fi
		mkdir -p "$(dirname "$r$dst")"
		ln -s "$src" "$r$dst"
	done <"$TMP/mounts.$s.resolved"
}

# writable SERVICE PATH: 0 if PATH lies on one of the service's named volumes.
writable() {
	while read -r w; do
		case ${2%/}/ in
		"${w%/}"/*) return 0 ;;
		esac
	done <"$TMP/writable.$1"
	return 1
}

# conf_paths SERVICE CONF SOURCE: every absolute path a "name value" file names must exist
# in the service's file system; those it writes must be on a volume.
conf_paths() {
	awk '!/^[ \t]*(#|$)/ && $2 ~ /^\// { print NR "\t" $1 "\t" $2 }' "$2" >"$TMP/paths.$1"
	while IFS="$TAB" read -r ln key p; do
		case $key in
		plugin) continue ;;
		state_dir | persistence_location)
			if [ ! -d "$TMP/root/$1$p" ] || ! writable "$1" "$p"; then
				problem "$3" "$ln" "$key $p is not on a volume of the $1 service (compose.yaml): the container's root file system is read-only"
			fi
			;;
		*)
			[ -e "$TMP/root/$1$p" ] ||
				problem "$3" "$ln" "$key $p does not exist in the $1 container (mounts in compose.yaml, site layout in docker/README.md)"
			;;
		esac
	done <"$TMP/paths.$1"
}

# image_conf SERVICE DOCKERFILE: the service's copy of the configuration its image's CMD
# reads (-c FILE), or nothing (and a problem) if compose.yaml mounts none there.
image_conf() {
	# shellcheck disable=SC1090
	. "$TMP/df.$2.vars"
	if [ -z "$CMD_CONF" ]; then
		problem "$DOCKER_DIR/$2" "$CMD_LINE" "CMD names no configuration file (-c FILE)"
		return 0
	fi
	if [ ! -f "$TMP/root/$1$CMD_CONF" ]; then
		problem "$DOCKER_DIR/compose.yaml" "" "$1: the image reads $CMD_CONF ($2 CMD), but nothing is mounted there"
		return 0
	fi
	readlink -f "$TMP/root/$1$CMD_CONF"
}

# run_broker CONF: start mosquitto with the container's mosquitto.conf rewritten line for
# line: listeners on free loopback ports, the built plugin, paths into the broker's root,
# the log to stderr (a wrong log_dest is reported above, and the run goes on).
# Sets BROKER_PID and PORTMAP ("8883=P0 8884=P1"). Tries three sets of ports.
run_broker() {
	conf=$1
	# The plugin must be where Dockerfile.broker puts it.
	plugin=$(awk '$1 == "plugin" { print $2 }' "$conf" | head -n 1)
	if [ -z "$plugin" ]; then
		problem "$conf" "" "no plugin line: civicmq would not run"
		return 1
	fi
	cut -f 2 "$TMP/df.Dockerfile.broker.files" 2>/dev/null | grep -qx "$plugin" ||
		problem "$conf" "$(grep -n '^plugin ' "$conf" | head -n 1 | cut -d: -f 1)" "plugin $plugin is not where Dockerfile.broker copies civicmq_plugin.so"
	# Docker shows what goes to stdout and stderr; Mosquitto flushes only stderr.
	awk '$1 == "log_dest" { print NR "\t" $2 }' "$conf" >"$TMP/logdest"
	[ -s "$TMP/logdest" ] || problem "$DOCKER_DIR/mosquitto.conf" "" "no log_dest: set log_dest stderr"
	while IFS="$TAB" read -r ln d; do
		case $d in
		stderr) ;;
		stdout) problem "$DOCKER_DIR/mosquitto.conf" "$ln" "log_dest stdout: Mosquitto never flushes stdout, so Docker's pipe gets the log in 4 KiB bursts; use log_dest stderr" ;;
		*) problem "$DOCKER_DIR/mosquitto.conf" "$ln" "log_dest $d: a container has no syslog or log files to read; use log_dest stderr" ;;
		esac
	done <"$TMP/logdest"
	asroot=0
	[ "$(id -u)" != 0 ] || asroot=1
	attempt=0
	while [ $attempt -lt 3 ]; do
		base=$((20000 + (($$ * 7 + attempt * 331) % 4000) * 10))
		awk -v root="$TMP/root/broker" -v plugin="$BIN/civicmq_plugin.so" -v base="$base" \
			-v asroot="$asroot" -v mapfile="$TMP/portmap" '
		/^[ \t]*(#|$)/ { print; next }
		$1 == "listener" { map = map $2 "=" (base + k) " "; print "listener " (base + k) " 127.0.0.1"; k++; next }
		$1 == "plugin" { print "plugin " plugin; next }
		$1 == "log_dest" { print "log_dest stderr"; next }
		$2 ~ /^\// { v = $0; sub(/^[ \t]*[^ \t]+[ \t]+/, "", v); print $1 " " root v; next }
		{ print }
		END {
			# As root Mosquitto would switch to user mosquitto, who cannot read the 0700
			# temporary directories; in the container it runs as uid 10002 and never switches.
			if (asroot) print "user root"
			print map > mapfile
		}' "$conf" >"$TMP/mosquitto.conf"
		PORTMAP=$(cat "$TMP/portmap")
		PORTMAP=${PORTMAP% }
		mosquitto -c "$TMP/mosquitto.conf" >"$TMP/broker.log" 2>&1 &
		BROKER_PID=$!
		PIDS="$PIDS $BROKER_PID"
		if wait_log "$TMP/broker.log" 'mosquitto version [0-9.]+ running' "$BROKER_PID" 50; then
			return 0
		fi
		stop_pid "$BROKER_PID"
		grep -q 'Address already in use' "$TMP/broker.log" || break
		attempt=$((attempt + 1))
	done
	problem_log "$DOCKER_DIR/mosquitto.conf" "" "the broker does not start with this configuration:" "$TMP/broker.log"
	return 1
}

# port_of CONTAINER_PORT: the loopback port the check's broker listens on instead.
port_of() {
	for m in $PORTMAP; do
		[ "${m%%=*}" != "$1" ] || {
			echo "${m#*=}"
			return 0
		}
	done
	echo "$1"
}

# rewrite_gateway CONF: docker/gateway.conf line for line, paths into the gateway's root,
# the broker URI to localhost and the check's port (the host name is checked separately).
rewrite_gateway() {
	awk -v root="$TMP/root/gateway" -v map="$PORTMAP" '
	BEGIN { n = split(map, m, " "); for (i = 1; i <= n; i++) { split(m[i], kv, "="); port[kv[1]] = kv[2] } }
	/^[ \t]*(#|$)/ { print; next }
	$1 == "broker" && match($2, /^(ssl|tcp):\/\/[^:\/]+:[0-9]+$/) {
		scheme = substr($2, 1, index($2, "://") + 2)
		p = $2
		sub(/.*:/, "", p)
		print "broker " scheme "localhost:" ((p in port) ? port[p] : p)
		next
	}
	$2 ~ /^\// { v = $0; sub(/^[ \t]*[^ \t]+[ \t]+/, "", v); print $1 " " root v; next }
	{ print }' "$1" >"$TMP/gateway.conf"
}

# check_host FILE LINE HOST: the name clients use must be a compose service and be in the
# broker certificate that the README's procedure issues.
check_host() {
	grep -qx "$3" "$TMP/services" ||
		problem "$1" "$2" "connects to $3, which is no service of compose.yaml"
	if ! openssl verify -CAfile "$SITE/pki/root/ca.pem" -verify_hostname "$3" \
		"$SITE/broker/broker.pem" >"$TMP/verify.log" 2>&1; then
		problem "$1" "$2" "connects to $3, which the broker certificate of docker/README.md does not name ($(sed -n '/^error [0-9]/{p;q;}' "$TMP/verify.log"))"
	fi
}

phase2() {
	for b in civicmq_plugin.so civicmq-gateway civicmq-sim civicmq-passwd; do
		[ -e "$BIN/$b" ] || problem "$BIN/$b" "" "missing; run make first"
	done
	command -v mosquitto >/dev/null 2>&1 || problem mosquitto "" "not installed (apt-get install mosquitto)"
	command -v openssl >/dev/null 2>&1 || problem openssl "" "not installed"
	end_phase "phase 2 prerequisites"

	SITE=$TMP/site
	make_site "$SITE" || end_phase "phase 2 (site)"
	for s in $(cat "$TMP/services"); do
		assemble "$s"
	done
	end_phase "phase 2 (containers' mounts)"

	# The configuration files the images' CMDs read, as compose.yaml mounts them.
	bconf=$(image_conf broker Dockerfile.broker)
	gconf=$(image_conf gateway Dockerfile.gateway)
	end_phase "phase 2 (configuration files)"
	conf_paths broker "$bconf" "$DOCKER_DIR/mosquitto.conf"
	conf_paths gateway "$gconf" "$DOCKER_DIR/gateway.conf"
	end_phase "phase 2 (paths in the configuration files)"
	# The broker with the plugin; the README's site must load without a warning.
	run_broker "$bconf" || end_phase "phase 2 (broker)"
	if ! grep -q 'civicmq: start: policy .* loaded' "$TMP/broker.log"; then
		problem_log "$DOCKER_DIR/mosquitto.conf" "" "the civicmq plugin did not load its policy:" "$TMP/broker.log"
	fi
	if grep -Eq 'civicmq: (error|warning)|Error' "$TMP/broker.log"; then
		grep -E 'civicmq: (error|warning)|Error' "$TMP/broker.log" >"$TMP/broker.bad"
		problem_log "$DOCKER_DIR/mosquitto.conf" "" "the broker reports problems with the README's site:" "$TMP/broker.bad"
	fi
	note "broker: plugin loaded, listening on $PORTMAP (container port=check port)"

	# The gateway: --check, then for real.
	gw_ln=$(grep -n '^broker ' "$gconf" | head -n 1 | cut -d: -f 1)
	gw_host=$(sed -n 's|^broker [a-z]*://\([^:/]*\):.*|\1|p' "$gconf" | head -n 1)
	[ -z "$gw_host" ] || check_host "$DOCKER_DIR/gateway.conf" "$gw_ln" "$gw_host"
	rewrite_gateway "$gconf"
	if ! "$BIN/civicmq-gateway" -c "$TMP/gateway.conf" --check >"$TMP/gateway-check.log" 2>&1; then
		problem_log "$DOCKER_DIR/gateway.conf" "" "civicmq-gateway --check fails:" "$TMP/gateway-check.log"
		end_phase "phase 2 (gateway --check)"
	fi
	note "gateway --check: $(grep 'configuration ok' "$TMP/gateway-check.log" | sed 's/^civicmq-gateway: //')"
	"$BIN/civicmq-gateway" -c "$TMP/gateway.conf" >"$TMP/gateway.log" 2>&1 &
	GW_PID=$!
	PIDS="$PIDS $GW_PID"
	if ! wait_log "$TMP/gateway.log" 'subscribed|connect to .* failed' "$GW_PID" 100 ||
		! grep -q 'subscribed' "$TMP/gateway.log"; then
		problem_log "$DOCKER_DIR/gateway.conf" "" "the gateway did not connect and subscribe:" "$TMP/gateway.log"
		tail -n 5 "$TMP/broker.log" >"$TMP/broker.tail"
		problem_log "$DOCKER_DIR/mosquitto.conf" "" "meanwhile the broker logged:" "$TMP/broker.tail"
		end_phase "phase 2 (gateway)"
	fi

	# The simulator: its compose command, one reading, through the broker and the gateway.
	sim_entry=$(cval simulator entrypoint | cut -f 2)
	sim_cmd_ln=$(cval simulator command | cut -f 1)
	sim_exe=$(flow_tokens "$sim_entry" | head -n 1)
	cut -f 2 "$TMP/df.Dockerfile.gateway.files" 2>/dev/null | grep -qx "$sim_exe" ||
		problem "$DOCKER_DIR/compose.yaml" "$(cval simulator entrypoint | cut -f 1)" "simulator: entrypoint $sim_exe is not a file of the gateway image"
	flow_tokens "$(cval simulator command | cut -f 2)" >"$TMP/sim.args"
	set --
	prev=""
	while IFS= read -r a; do
		orig=$a
		case $prev in
		--host)
			check_host "$DOCKER_DIR/compose.yaml" "$sim_cmd_ln" "$a"
			a=localhost
			;;
		--port) a=$(port_of "$a") ;;
		--count) a=1 ;;
		*)
			case $a in
			/*) a=$TMP/root/simulator$a ;;
			esac
			;;
		esac
		set -- "$@" "$a"
		prev=$orig
	done <"$TMP/sim.args"
	if ! timeout 20 "$BIN/${sim_exe##*/}" "$@" >"$TMP/sim.log" 2>&1; then
		problem_log "$DOCKER_DIR/compose.yaml" "$sim_cmd_ln" "the simulator's command fails against the broker:" "$TMP/sim.log"
		tail -n 5 "$TMP/broker.log" >"$TMP/broker.tail"
		problem_log "$DOCKER_DIR/mosquitto.conf" "" "meanwhile the broker logged:" "$TMP/broker.tail"
		end_phase "phase 2 (simulator)"
	fi
	# The reading must come out of the gateway: ask for metrics until it shows (5 s at most).
	n=0
	while [ $n -lt 5 ] && ! grep -q '"forwarded":[1-9]' "$TMP/gateway.log"; do
		kill -USR1 "$GW_PID" 2>/dev/null || true
		wait_log "$TMP/gateway.log" '"forwarded":[1-9]' "$GW_PID" 10 || true
		n=$((n + 1))
	done
	if ! grep -q '"forwarded":[1-9]' "$TMP/gateway.log"; then
		problem_log "$DOCKER_DIR/gateway.conf" "" "the simulator's reading never came out of the gateway:" "$TMP/gateway.log"
	fi
	stop_pid "$GW_PID"
	stop_pid "$BROKER_PID"
	end_phase "phase 2 (device -> broker -> gateway)"
}

# ---- main ----

note "checking $(rel "$DOCKER_DIR") and $(rel "$UNIT")"
for file in Dockerfile.broker Dockerfile.gateway mosquitto.conf gateway.conf compose.yaml README.md; do
	[ -f "$DOCKER_DIR/$file" ] || problem "$DOCKER_DIR/$file" "" "missing"
done
end_phase "phase 1 (files present)"

for dockerfile in Dockerfile.broker Dockerfile.gateway; do
	check_dockerfile "$DOCKER_DIR/$dockerfile"
done
check_packages
for dockerfile in Dockerfile.broker Dockerfile.gateway; do
	replay_builder "$DOCKER_DIR/$dockerfile"
	check_libraries "$DOCKER_DIR/$dockerfile"
done
check_compose
check_unit
end_phase "phase 1 (Dockerfiles, compose.yaml, systemd unit)"

phase2
note "all checks passed in $(($(date +%s) - T0)) s"
