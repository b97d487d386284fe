#!/usr/bin/env bash
# The bench module's short check, run by .ci/run: every peer echo server is
# built and checked against the echo service of wire-v1.md by a raw client
# (servers/peer_test.go). The comparison itself (run.sh) is not run here: it
# takes minutes and wants a quiet machine.
set -euo pipefail
cd "$(dirname "$0")"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then echo "gofmt would change:"; echo "$unformatted"; exit 1; fi

go vet ./...
# -count=1: the peers are built by the test itself, out of sight of the
# test cache, so a cached pass could hide a broken peer.
go test -count=1 -timeout 100s ./...
go run ./soak --duration 30s  # mixed traffic with 1% hostile peers; exit 1 if RSS, goroutines, fds, pooled bytes or conns trend upward, or fds and goroutines are not back to their start once it stops (soak/main.go)
go test -count=1 -race -timeout 300s ./faults/...  # the fault suite (faults/doc.go) again, under the race detector
