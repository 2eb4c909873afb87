#!/usr/bin/env bash
# Agent and fleet figures: the real agents on real podman (the fleet e2e
# test, which logs each figure as FIGURE) and the scheduler's placement
# throughput. Prints a RESULTS.md section.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "### Node agent and fleet"
echo
echo "Two real agents (built stripped, CGO off) on two podman 4 Docker-API services, one bootfleet server with embedded etcd, node TTL 3 s (heartbeat every 1 s), on loopback:"
echo
go test -count=1 -run 'TestFleetEndToEnd$' -v ./test/e2e 2>&1 | sed -n 's/.*FIGURE /- /p'
echo
echo "Scheduler: placing 1,000 units (1–4 replicas each, a third with label constraints, all with memory and CPU) over 100 nodes from nothing:"
echo
echo '```'
go test -run '^$' -bench Place -benchtime 20x ./fleet 2>&1 | grep -E '^Benchmark'
echo '```'
echo "Targets (issue 8): binary ≤ 12 MB, idle RSS ≤ 15 MB, idle CPU ≈ 0, replicas running elsewhere within TTL + 2 s of a kill."
echo "Commands: \`go test -run TestFleetEndToEnd -v ./test/e2e\`, \`go test -run '^\$' -bench Place -benchtime 20x ./fleet\`."
