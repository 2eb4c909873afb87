#!/usr/bin/env bash
# Boot storm: NODES simulated machines powered on at once against a real
# `bootfleet serve` (DHCP full, TFTP, HTTP, embedded etcd) in a server
# namespace, played by `bootfleet bench storm` from a client namespace over
# a veth: DHCP as PXE firmware and as iPXE, TFTP of the iPXE binary for half
# of them, the boot scripts, kernel and initrd (KERNEL_MB, INITRD_MB of
# random bytes), Ignition, the agent download, join and heartbeats. Prints a
# RESULTS.md section. Bounded: the storm is killed after LIMIT seconds.
#   bench/storm.sh [NODES]   (default 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${1:-1000}
KERNEL_MB=${KERNEL_MB:-10}
INITRD_MB=${INITRD_MB:-40}
ARRIVAL=${ARRIVAL:-all}
PXE_SHARE=${PXE_SHARE:-0.5}
LIMIT=${LIMIT:-600}
# Two benchmarks never overlap on this shared machine.
if [ -z "${BOOTFLEET_BENCH_LOCKED:-}" ]; then
  export BOOTFLEET_BENCH_LOCKED=1
  exec flock /tmp/bootfleet-bench.lock "$0" "$@"
fi
[ -x bin/bootfleet ] && [ -x bin/bootfleet-agent-amd64 ] || make -s bin/bootfleet bin/bootfleet-agent-amd64 >&2
OUT=$PWD/bench/out/storm
rm -rf "$OUT"; mkdir -p "$OUT"
id=$RANDOM
S=bf-ss-$id C=bf-sc-$id SIF=bfss$id CIF=bfsc$id
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
  ip netns del "$S" 2>/dev/null || true
  ip netns del "$C" 2>/dev/null || true
}
trap cleanup EXIT
trap "exit 130" INT TERM
ip netns add "$S"; ip netns add "$C"
ip link add "$SIF" netns "$S" type veth peer name "$CIF" netns "$C"
ip -n "$S" addr add 10.79.0.1/16 dev "$SIF"; ip -n "$C" addr add 10.79.0.2/16 dev "$CIF"
for ns in "$S" "$C"; do ip -n "$ns" link set lo up; done
ip -n "$S" link set "$SIF" up; ip -n "$C" link set "$CIF" up

# The example profiles with assets of realistic size.
cp -r examples/lab "$OUT/profiles"
mkdir -p "$OUT/profiles/assets/flatcar/amd64"
head -c "${KERNEL_MB}M" /dev/urandom > "$OUT/profiles/assets/flatcar/amd64/flatcar_production_pxe.vmlinuz"
head -c "${INITRD_MB}M" /dev/urandom > "$OUT/profiles/assets/flatcar/amd64/flatcar_production_pxe_image.cpio.gz"

serve=(./bin/bootfleet serve --profiles "$OUT/profiles" --data-dir "$OUT/data" --http 10.79.0.1:8080
  --tftp-listen 10.79.0.1:69 --log-level warn --dhcp full --interface "$SIF"
  --dhcp-pool-start 10.79.1.0 --dhcp-pool-end 10.79.255.254 --dhcp-router 10.79.0.1 --router-advertisements=false
  --etcd-listen-client http://127.0.0.1:2379 --etcd-listen-peer http://127.0.0.1:2380 --node-ttl 2m)
ip netns exec "$S" "${serve[@]}" 2>"$OUT/server.log" &
pid=$!  # ip netns exec execs the server: same pid
for _ in $(seq 100); do ip netns exec "$S" curl -sf http://10.79.0.1:8080/healthz >/dev/null 2>&1 && break; sleep 0.1; done
ip netns exec "$S" curl -sf http://10.79.0.1:8080/healthz >/dev/null || { echo "bootfleet did not start" >&2; cat "$OUT/server.log" >&2; exit 1; }

storm=(./bin/bootfleet bench storm --server http://10.79.0.1:8080 --interface "$CIF" --nodes "$NODES" --arrival "$ARRIVAL"
  --pxe-share "$PXE_SHARE" --heartbeats 3 --heartbeat-interval 1s --rate-streams 32 --rate-duration 5s --server-pid "$pid" --json "$OUT/storm.json")
status=0
if [ -n "${PROFILE:-}" ]; then  # a CPU profile of the server, 20 s from 10 s into the storm
  (sleep $((10 + 5 + 1)); ip netns exec "$S" curl -sf -o "$OUT/cpu.pprof" -H "Authorization: Bearer $(cat "$OUT/data/admin.token")" \
    "http://10.79.0.1:8080/debug/pprof/profile?seconds=20") &
  profiler=$!
fi
timeout "$LIMIT" ip netns exec "$C" "${storm[@]}" >"$OUT/storm.md" 2>"$OUT/storm.log" || status=$?
[ -n "${profiler:-}" ] && wait "$profiler"
# UDP datagrams the kernel dropped because a socket's buffer was full.
rcvbuf_errors() { ip netns exec "$1" cat /proc/net/snmp | awk '/^Udp:/ {if (!h) {for (i=1;i<=NF;i++) n[$i]=i; h=1} else print $n["RcvbufErrors"]}'; }

# The inventory's view: every machine ready, its timeline complete.
ip netns exec "$S" ./bin/bootfleet nodes list -o json --server http://10.79.0.1:8080 --data-dir "$OUT/data" >"$OUT/nodes.json" 2>>"$OUT/storm.log" || true
ready=$(grep -o '"mac": *"02:bf:00:[^"]*"[^}]*"state": *"ready"' "$OUT/nodes.json" | wc -l || true)
if command -v python3 >/dev/null; then
  ready=$(python3 -c 'import json,sys; print(sum(1 for n in json.load(open(sys.argv[1])) if n["mac"].startswith("02:bf:00:") and n["state"]=="ready"))' "$OUT/nodes.json" 2>/dev/null || echo "$ready")
fi

echo "### Boot storm: $NODES machines ($ARRIVAL, PXE share $PXE_SHARE), kernel ${KERNEL_MB} MiB + initrd ${INITRD_MB} MiB"
echo
if [ "$status" -ne 0 ]; then
  echo "**The storm did not complete cleanly (exit $status$( [ "$status" = 124 ] && echo ", killed after ${LIMIT}s")).** Last log lines:"
  echo; echo '```'; tail -5 "$OUT/storm.log"; echo '```'; echo
fi
cat "$OUT/storm.md"
echo
echo "UDP datagrams dropped for a full socket buffer: server namespace $(rcvbuf_errors "$S"), client namespace $(rcvbuf_errors "$C")."
echo "Inventory after the storm (\`bootfleet nodes list -o json\`): $ready of $NODES machines \`ready\`."
echo "Server and simulator share one 2-core machine (and the machine with other work): client CPU competes with the server's."
echo "Commands (server in namespace S, simulator in namespace C, veth 10.79.0.1/16 ↔ 10.79.0.2/16):"
echo
echo '```'
echo "ip netns exec S ${serve[*]}" | sed "s|$OUT|\$OUT|g; s|$SIF|SIF|g"
echo "ip netns exec C ${storm[*]}" | sed "s|$OUT|\$OUT|g; s|$CIF|CIF|g; s|--server-pid $pid|--server-pid \$SERVER_PID|"
echo '```'
cat <<'MD'

Targets (issue 10): every machine ready with zero failed requests, server p99 per request under 50 ms for scripts and Ignition (the server's own histogram rows above), the whole fleet ready within 1.10× the time the asset bytes need at the rate this client gets alone.

How far beyond 1,000 machines, on paper (where the bottleneck moves):
- **Asset bytes** are nearly all of a storm: 50 MiB per machine here. With sendfile the server spends about a third of a core on 1,000 machines' downloads; on this machine the wall is the simulator's own reads and the kernel's veth path on 2 shared cores. On a real 10 GbE link (~1.2 GB/s) 1,000 machines need ~45 s and 10,000 ~7 min: the NIC is the limit, so beyond a few thousand at once the assets move off the server — profiles may name kernel and initrd by absolute URL on an HTTP cache per rack (the files are immutable, with ETag and Range), or several bootfleet servers on one etcd (they already share the DHCP pool in blocks and the inventory) each serve a share of the segment.
- **Scripts and Ignition** cost CPU per machine (an Ignition render ~2.3 ms: Butane translate and validation), taken off the request path by rendering each machine's config when it fetches its iPXE script; 10,000 machines are ~25 s of one core over a storm — not the limit before the NIC.
- **etcd** takes ~10 timeline events per machine (batched every 50 ms), a lease write per DHCP ACK with the shared pool, and 4 writes per agent join. Joins are the slowest API call in a storm (seconds at p50 here, with etcd's raft loop sharing 2 cores with everything else); at ~10,000 joins a minute the embedded single-member etcd is the next wall: an external etcd on its own cores and disk (`--etcd-endpoints`), and `--dhcp-shared-pool=false` to take etcd off the DHCP path.
- **DHCP** answers two DORAs per PXE machine; the burst of 1,500 DISCOVERs waits in a 4 MiB socket buffer instead of being dropped; its per-packet time is bounded by its etcd writes (the DHCP performance work is separate).
- **TFTP** is lockstep: ipxe.efi (1 MiB at blksize 1432) is ~730 round trips, which under a storm's load take tens of seconds, so PXE-firmware machines are the fleet's tail. For more than a few hundred PXE machines at once, iPXE in ROM or UEFI HTTP boot (bootfleet serves `/ipxe/ipxe.efi` over HTTP) avoid TFTP.
MD
exit 0
