#!/usr/bin/env bash
# TFTP throughput: bootfleet beside tftpd-hpa, same 30 MiB file, curl as the
# client, blksize 512 and 1468 and 20 clients at once, alternating, on
# loopback only.
#   bench/tftp.sh [ROUNDS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
OUT=$PWD/bench/out/tftp
rm -rf "$OUT"; mkdir -p "$OUT/profiles/assets" "$OUT/profiles/groups" "$OUT/profiles/profiles" "$OUT/hpa"
printf 'name: p\n' > "$OUT/profiles/profiles/p.yaml"
printf 'name: g\nprofile: p\n' > "$OUT/profiles/groups/g.yaml"
head -c $((30 << 20)) /dev/urandom > "$OUT/profiles/assets/big.bin"
cp "$OUT/profiles/assets/big.bin" "$OUT/hpa/big.bin"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
trap "exit 130" INT TERM  # so EXIT cleans up after Ctrl-C or timeout too

./bin/bootfleet serve --profiles "$OUT/profiles" --data-dir "$OUT/data" --http 127.0.0.1:18090 --log-level warn \
  --tftp-listen 127.0.0.1:16969 --etcd-listen-client http://127.0.0.1:23790 --etcd-listen-peer http://127.0.0.1:23800 2>"$OUT/bootfleet.log" &
pids+=($!)
/usr/sbin/in.tftpd -L -s "$OUT/hpa" -a 127.0.0.1:16970 2>"$OUT/hpa.log" &
pids+=($!)
for _ in $(seq 100); do curl -sf http://127.0.0.1:18090/healthz >/dev/null 2>&1 && break; sleep 0.1; done

# mbps URL BLKSIZE → MB/s of one download
mbps() {
  curl -s -o /dev/null --tftp-blksize "$2" -w '%{speed_download}\n' "$1" | awk '{printf "%.1f", $1/1e6}'
}
# parallel URL N → aggregate MB/s of N downloads at blksize 1468
parallel() {
  local start end
  start=$(date +%s.%N)
  for _ in $(seq "$2"); do curl -s -o /dev/null --tftp-blksize 1468 "$1" & done
  wait
  end=$(date +%s.%N)
  awk -v n="$2" -v s="$start" -v e="$end" 'BEGIN {printf "%.1f", n*30*1.048576/(e-s)}'
}
BF=tftp://127.0.0.1:16969/assets/big.bin
HPA=tftp://127.0.0.1:16970/big.bin
declare -A r
for round in $(seq "$ROUNDS"); do
  for size in 512 1468; do
    r[hpa-$size]+="$(mbps $HPA $size) "
    r[bf-$size]+="$(mbps $BF $size) "
  done
  r[hpa-20]+="$(parallel $HPA 20) "
  r[bf-20]+="$(parallel $BF 20) "
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
row() {
  local h b
  h=$(median "${r[hpa-$1]}"); b=$(median "${r[bf-$1]}")
  echo "| $2 | ${r[bf-$1]}| ${r[hpa-$1]}| $(awk -v a="$b" -v c="$h" 'BEGIN {printf "%.2f", a/c}') |"
}
cat <<MD
### TFTP vs tftpd-hpa (30 MiB, curl, loopback, $ROUNDS rounds alternating)

| case | bootfleet MB/s | tftpd-hpa MB/s | ratio of medians |
|---|---|---|---|
$(row 512 "blksize 512")
$(row 1468 "blksize 1468")
$(row 20 "20 clients at once, blksize 1468 (aggregate)")

Target: ratio ≥ 1.0 in every row. tftpd-hpa $(dpkg-query -W -f='${Version}' tftpd-hpa), bootfleet on pin/tftp v3.2.0.
Command: \`curl --tftp-blksize N tftp://127.0.0.1:PORT/FILE\`; tftpd-hpa as \`in.tftpd -L -s DIR -a 127.0.0.1:PORT\`.
MD
