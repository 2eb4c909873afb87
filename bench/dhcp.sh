#!/usr/bin/env bash
# DHCP DORA rate: bootfleet beside Kea (memfile, single thread) and dnsmasq,
# in one run, with perfdhcp acting as a relay from a client namespace over
# a veth (the recipe of BASELINES.md). Each server answers the same rates;
# the figure is the highest rate with < 1% drops, leases persisted to disk.
#   bench/dhcp.sh [SECONDS_PER_RATE]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
RATES=${RATES:-"2000 4000 6000 8000"}
OUT=$PWD/bench/out/dhcp
rm -rf "$OUT"; mkdir -p "$OUT"
id=$RANDOM
S=bf-bs-$id C=bf-bc-$id SIF=bfbs$id CIF=bfbc$id
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$S" 2>/dev/null || true
  ip netns del "$C" 2>/dev/null || true
}
trap cleanup EXIT
trap "exit 130" INT TERM  # so EXIT cleans up after Ctrl-C or timeout too
ip netns add "$S"; ip netns add "$C"
ip link add "$SIF" netns "$S" type veth peer name "$CIF" netns "$C"
ip -n "$S" addr add 10.78.0.1/16 dev "$SIF"; ip -n "$C" addr add 10.78.0.2/16 dev "$CIF"
for ns in "$S" "$C"; do ip -n "$ns" link set lo up; done
ip -n "$S" link set "$SIF" up; ip -n "$C" link set "$CIF" up

stop_server() { kill "${pids[-1]}" 2>/dev/null || true; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; sleep 0.5; }

start_bootfleet() { start_bootfleet_with --dhcp-shared-pool=true; }
# bootfleet-local: the pool and leases not shared in etcd (one server per
# segment); the inventory is still recorded in etcd.
start_bootfleet-local() { start_bootfleet_with --dhcp-shared-pool=false; }
start_bootfleet_with() {
  rm -rf "$OUT/bf-data"
  ip netns exec "$S" ./bin/bootfleet serve "$@" --profiles examples/lab --data-dir "$OUT/bf-data" --http 10.78.0.1:8080 --tftp=false \
    --log-level warn --dhcp full --interface "$SIF" --dhcp-pool-start 10.78.1.0 --dhcp-pool-end 10.78.255.254 \
    --dhcp-router 10.78.0.1 --router-advertisements=false \
    --etcd-listen-client http://127.0.0.1:2379 --etcd-listen-peer http://127.0.0.1:2380 2>"$OUT/bootfleet.log" &
  pids+=($!)
  for _ in $(seq 100); do ip netns exec "$S" curl -sf http://10.78.0.1:8080/healthz >/dev/null 2>&1 && return; sleep 0.1; done
  echo "bootfleet did not start" >&2; cat "$OUT/bootfleet.log" >&2; exit 1
}
start_kea() {
  rm -f "$OUT/kea-leases.csv"
  cat > "$OUT/kea.json" <<JSON
{"Dhcp4": {
  "interfaces-config": {"interfaces": ["$SIF"], "dhcp-socket-type": "udp"},
  "lease-database": {"type": "memfile", "persist": true, "name": "$OUT/kea-leases.csv", "lfc-interval": 0},
  "valid-lifetime": 3600,
  "multi-threading": {"enable-multi-threading": false},
  "subnet4": [{"subnet": "10.78.0.0/16", "pools": [{"pool": "10.78.1.0 - 10.78.255.254"}],
               "option-data": [{"name": "routers", "data": "10.78.0.1"}]}],
  "loggers": [{"name": "kea-dhcp4", "severity": "WARN", "output_options": [{"output": "$OUT/kea.log"}]}]
}}
JSON
  KEA_PIDFILE_DIR=$OUT KEA_LOCKFILE_DIR=$OUT ip netns exec "$S" kea-dhcp4 -c "$OUT/kea.json" >"$OUT/kea.out" 2>&1 &
  pids+=($!); sleep 1
}
start_dnsmasq() {
  rm -f "$OUT/dnsmasq.leases"
  ip netns exec "$S" dnsmasq --no-daemon --conf-file=/dev/null --port=0 --interface="$SIF" --bind-interfaces \
    --dhcp-range=10.78.1.0,10.78.255.254,255.255.0.0,1h --dhcp-lease-max=100000 --no-ping \
    --dhcp-leasefile="$OUT/dnsmasq.leases" --pid-file= 2>"$OUT/dnsmasq.log" &
  pids+=($!); sleep 0.5
}

# run_rate NAME RATE → prints "ack_rate drops%"
run_rate() {
  local out="$OUT/$1-$2.txt"
  ip netns exec "$C" perfdhcp -4 -l "$CIF" -r "$2" -R 20000 -p "$SECS" -W 2000000 -x t 10.78.0.1 >"$out" 2>&1 || true
  awk '
    /^\*\*\*Statistics for: REQUEST-ACK/ {ra=1}
    ra && /^sent packets:/ {sent=$3}
    ra && /^received packets:/ {recv=$3}
    /^\*\*\*Statistics for: DISCOVER-OFFER/ {ra=0}
    END { if (sent>0) printf "%.0f %.2f\n", recv/'"$SECS"', (sent-recv)*100/sent; else print "0 100" }' "$out"
}

declare -A best
for server in bootfleet bootfleet-local kea dnsmasq; do
  best[$server]=0
done
results=""
for rate in $RATES; do
  for server in bootfleet bootfleet-local kea dnsmasq; do
    "start_$server"
    read -r acks drops < <(run_rate "$server" "$rate")
    stop_server
    results+="| $server | $rate | $acks | $drops% |"$'\n'
    if awk -v d="$drops" 'BEGIN {exit !(d < 1)}'; then best[$server]=$acks; fi
  done
done
ratio=$(awk -v a="${best[bootfleet]}" -v b="${best[kea]}" 'BEGIN { if (b>0) printf "%.2f", a/b; else print "n/a" }')
cat <<MD
### DHCP DORA rate vs Kea and dnsmasq (perfdhcp as a relay over a veth, ${SECS}s per rate)

| server | offered DORA/s | ACKs/s | drops |
|---|---|---|---|
${results}
Highest rate with < 1% drops: bootfleet ${best[bootfleet]}/s (pool and leases shared through etcd, the default), bootfleet-local ${best[bootfleet-local]}/s (\`--dhcp-shared-pool=false\`: leases only in its own file), Kea $(kea-dhcp4 -v) memfile single-thread ${best[kea]}/s, dnsmasq $(dnsmasq -v | head -1 | awk '{print $3}') ${best[dnsmasq]}/s.
Ratio bootfleet / Kea: **$ratio** (target ≥ 1.5). Every server persists leases to disk (bootfleet: ACK after write(2) to its lease file, fsync every 200 ms, every DHCP step recorded in its embedded etcd, and by default every lease published to etcd's lease table; Kea memfile persist, no fsync; dnsmasq lease file).
Command: \`perfdhcp -4 -l IF -r RATE -R 20000 -p $SECS -W 2000000 -x t 10.78.0.1\`, rates $RATES, servers alternating at each rate.
MD
