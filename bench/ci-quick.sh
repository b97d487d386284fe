#!/usr/bin/env bash
# A short run of the comparison for CI: every server, scenarios 1 (latency),
# 3 (throughput and server CPU) and 6 (1000 idle connections), one 2 s run
# each (run.sh --quick). It checks that the whole pipeline works (builds,
# every server starts and answers, the tables and charts are written), not
# the numbers: a CI machine is too noisy for those, so nothing here fails
# on a slow result, only on a run that failed or a missing output.
# Takes about a minute.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

"$here/run.sh" --quick --scenarios 1,3,6 --out "$out" "$@"

for f in results.md results.json latency-s1.svg; do
	[ -s "$out/$f" ] || { echo "ci-quick: $f was not written" >&2; exit 1; }
done
if grep -q '"failed"' "$out/results.json"; then
	echo "ci-quick: a run failed:" >&2
	grep '"failed"' "$out/results.json" >&2
	exit 1
fi
echo "ci-quick: the comparison ran"
