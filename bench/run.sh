#!/usr/bin/env bash
# The comparison of zerowire against gnet, netpoll and Go's net: builds zw,
# the peer servers and the tools that drive them into bench/bin/, then runs
# every scenario against every server (bench/cmd/benchrun) and writes
# results.md, results.json, the latency charts and the raw zw bench output
# to OUT (default bench/results/DATE). See "The comparison" in README.md.
#
#   bench/run.sh [--quick] [--duration 10s] [--servers a,b] [--scenarios 1,3,6] [--out DIR]
#
# Every other option is benchrun's: bench/run.sh --help lists them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
bin="$here/bin"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

mkdir -p "$bin"
echo "building zw, the peers, benchrun, idlehold and plotcmp into $bin" >&2
(cd "$root" && go build -o "$bin/zw" ./cmd/zw)
(cd "$here" && go build -o "$bin/" ./servers/gnet ./servers/netpoll ./servers/stdnet \
	./cmd/benchrun ./cmd/idlehold ./cmd/plotcmp)

# A relative --out is taken from where run.sh was called, not from bin/.
args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--out | -out)
		[ $# -ge 2 ] || { echo "run.sh: $1 needs a directory" >&2; exit 2; }
		case "$2" in /*) args+=("--out" "$2") ;; *) args+=("--out" "$PWD/$2") ;; esac
		shift 2
		;;
	--out=* | -out=*)
		d="${1#*=}"
		case "$d" in /*) args+=("--out" "$d") ;; *) args+=("--out" "$PWD/$d") ;; esac
		shift
		;;
	*)
		args+=("$1")
		shift
		;;
	esac
done

cd "$root"
exec "$bin/benchrun" --bin "$bin" ${args[@]+"${args[@]}"}
