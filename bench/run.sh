#!/usr/bin/env bash
# make bench: every side-by-side benchmark, results into bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh nginx wrk curl tftpd-hpa kea-admin kea-dhcp4-server dnsmasq-base iproute2 podman runc busybox-static qemu-system-x86 ipxe-qemu ovmf jq
# The Debian packages start their daemons; the benchmarks run their own.
for svc in kea-dhcp4-server tftpd-hpa nginx; do systemctl stop "$svc" 2>/dev/null || service "$svc" stop 2>/dev/null || true; done
out=bench/out; mkdir -p "$out"
{
  echo "# Benchmark results"
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r); $(date -u +%Y-%m-%d); $(go version | cut -d' ' -f3); bootfleet $(git describe --always --dirty)."
  echo "Reproduce with \`make bench\`. Ratios are taken in the same run, peers alternating."
  echo
  ./bench/http-ignition.sh 10s
  echo
  ./bench/dhcp.sh 10
  echo
  ./bench/tftp.sh 3
  echo
  ./bench/fleet.sh
  echo
  ./bench/storm.sh 1000
  echo
  ./bench/lab.sh
  echo
  ./bench/load.sh
  echo
  echo "### Go benchmarks"
  echo
  echo '```'
  go test -run '^$' -bench . -benchtime 2s ./profiles ./ignition ./httpboot ./dhcp ./registry 2>&1 | grep -E '^(Benchmark|goos|cpu)'
  echo '```'
  echo "Command: \`go test -run '^\$' -bench . -benchtime 2s ./profiles ./ignition ./httpboot ./dhcp ./registry\`"
} > "$out/RESULTS.md.new"
mv "$out/RESULTS.md.new" bench/RESULTS.md
cat bench/RESULTS.md
