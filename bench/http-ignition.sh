#!/usr/bin/env bash
# Rendered Ignition from bootfleet vs. nginx serving a static file of the
# same size, side by side in one run, alternating, on loopback only.
#   bench/http-ignition.sh [DURATION]   (default 10s per run)
# Prints a Markdown table row block on stdout; bench/run.sh collects it.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10s}
OUT=bench/out/http-ignition
rm -rf "$OUT"; mkdir -p "$OUT/www" "$OUT/data"
BF_ADDR=127.0.0.1:18080
NG_ADDR=127.0.0.1:18081
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
trap "exit 130" INT TERM  # so EXIT cleans up after Ctrl-C or timeout too

./bin/bootfleet serve --profiles examples/lab --http "$BF_ADDR" --tftp=false --data-dir "$OUT/data" --log-level warn 2>"$OUT/bootfleet.log" &
pids+=($!)
for _ in $(seq 100); do curl -fsS "http://$BF_ADDR/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

# 1000 distinct machines; the example's Butane puts the MAC in the
# hostname, so every machine's rendered config differs.
cat > "$OUT/macs.lua" <<'LUA'
local i = 0
request = function()
  i = (i + 1) % 1000
  return wrk.format("GET", string.format("/ignition?mac=52:54:00:00:%02x:%02x", math.floor(i / 256), i % 256))
end
LUA
size=$(curl -fsS "http://$BF_ADDR/ignition?mac=52:54:00:00:00:01" | wc -c)
head -c "$size" /dev/urandom | base64 -w0 | head -c "$size" > "$OUT/www/ign.json"

cat > "$OUT/nginx.conf" <<NGX
worker_processes auto;
pid $PWD/$OUT/nginx.pid;
error_log $PWD/$OUT/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  default_type application/json;
  server { listen $NG_ADDR; root $PWD/$OUT/www; }
}
NGX
nginx -c "$PWD/$OUT/nginx.conf" -g 'daemon off;' &
pids+=($!)
for _ in $(seq 100); do curl -fsS "http://$NG_ADDR/ign.json" >/dev/null 2>&1 && break; sleep 0.1; done

rps() { awk '/Requests\/sec/ {print $2}'; }
# Warm bootfleet's render cache for the 1000 machines (a real fleet asks
# again on every boot; the first render per machine is a cache miss).
wrk -t2 -c50 -d3s -s "$OUT/macs.lua" "http://$BF_ADDR" >/dev/null
declare -a bf ng
for round in 1 2; do
  ng+=("$(wrk -t2 -c50 -d"$DUR" "http://$NG_ADDR/ign.json" | tee "$OUT/nginx-$round.txt" | rps)")
  bf+=("$(wrk -t2 -c50 -d"$DUR" -s "$OUT/macs.lua" "http://$BF_ADDR" | tee "$OUT/bootfleet-$round.txt" | rps)")
done
mean() { awk '{s+=$1} END {printf "%.0f", s/NR}' <<<"$(printf '%s\n' "$@")"; }
bfm=$(mean "${bf[@]}"); ngm=$(mean "${ng[@]}")
ratio=$(awk -v a="$bfm" -v b="$ngm" 'BEGIN {printf "%.2f", a/b}')
non2xx=$(grep -h "Non-2xx" "$OUT"/bootfleet-*.txt || true)
cat <<MD
### Rendered Ignition vs. nginx static file ($size bytes)

| server | requests/s (run 1, run 2) | mean |
|---|---|---|
| nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), static file | ${ng[0]}, ${ng[1]} | $ngm |
| bootfleet \`/ignition?mac=\` (1000 MACs, cache warm) | ${bf[0]}, ${bf[1]} | $bfm |

Ratio bootfleet / nginx: **$ratio** (target ≥ 0.80). ${non2xx:-No non-2xx answers.}
Command: \`wrk -t2 -c50 -d$DUR\` on loopback, runs alternating nginx, bootfleet; bootfleet with \`--log-level warn\` (one log line per boot request at the default info level costs more), nginx with access_log off.
MD
