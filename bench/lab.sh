#!/usr/bin/env bash
# VM power-on → ready: QEMU VMs (the lab's image and QEMU settings) network-
# booting from bootfleet beside the same VMs booting from a stand-in —
# dnsmasq (DHCP, TFTP, RAs) + nginx serving the same kernel/initrd, the
# iPXE scripts and the Ignition configs bootfleet renders for each MAC —
# in one run, servers alternating, for BIOS (iPXE ROM) and UEFI (OVMF's
# own PXE → TFTP ipxe.efi → iPXE), 1, 4 and 8 VMs at once. Prints a
# RESULTS.md section; raw figures in bench/out/lab/.
#   bench/lab.sh [REPS]   (rounds per case and server; default 1, 2× for 1 VM)
#   bench/lab.sh --report (the section again from bench/out/lab)
# Environment: FIRMWARES="bios uefi-pxe", COUNTS="1 4 8", ACCEL=tcg.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=run; [ "${1:-}" = --report ] && { MODE=report; shift; }
REPS=${1:-1}
REPS1=${REPS1:-$((REPS * 2))}  # one VM gives one sample a round: more rounds
FIRMWARES=${FIRMWARES:-"bios uefi-pxe"}
COUNTS=${COUNTS:-"1 4 8"}
ACCEL=${ACCEL:-tcg}
ROUND_TIMEOUT=${ROUND_TIMEOUT:-180}
OUT=$PWD/bench/out/lab
BIN=$PWD/bin/bootfleet
# The section, from the raw figures (bench/lab.sh --report re-renders it).
report() {
echo "### Lab VMs: power-on → ready, bootfleet vs dnsmasq + nginx"
echo
echo "QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}') ($ACCEL, 512 MiB, 1 vCPU each), the lab image (Debian kernel $(awk -F'"' '/kernel_version/ {print $4}' "$OUT/image/image.json"), $(( $(stat -c %s "$OUT/image/initrd.img") / 1024 )) KiB busybox initrd, no agent), all VMs of a round started at once;"
echo "bootfleet (\`serve\`: DHCP full with RAs, TFTP, HTTP, embedded etcd) beside dnsmasq $(dnsmasq --version | head -1 | awk '{print $3}') (DHCP, TFTP, RAs, option 175, no ping) + nginx $(nginx -v 2>&1 | cut -d/ -f2) serving the same files and the scripts and Ignition bootfleet renders per MAC."
echo "$REPS1 rounds per server for 1 VM, $REPS for 4 and 8; servers alternating. (bootfleet's embedded iPXE says user class Tinkerbell; dnsmasq is told that is iPXE too.)"
echo "BIOS: SeaBIOS → the NIC's iPXE ROM → HTTP. UEFI: OVMF's own PXE (NIC without ROM) → TFTP ipxe.efi → iPXE → HTTP."
echo
echo "Seconds from QEMU's start, medians over the VMs of the case (*ready*: median [min–max]). *kernel*: the kernel's first console line (firmware, PXE, iPXE and the downloads come before it);"
echo "*script*, *kernel req*, *Ignition*: when the server got iPXE's script request, the kernel download request and the Ignition request (bootfleet: its registry timeline; stand-in: nginx's log)."
echo "*server ms/boot*: the server's own time per boot — bootfleet: DHCP handling + answering boot.ipxe, /ipxe and /ignition, from its metrics; nginx: \$request_time of those requests (ms resolution; dnsmasq's own time not measured)."
echo "*kernel boot*: a control with no server in it — the kernel's first console line to its running /init (guest CPU only); how much it differs between the servers' rounds is how much the machine's load differed."
echo "*CPU ms/boot*: the server processes' CPU time (user+system, 10 ms ticks) over the round divided by its VMs — etcd writes, transfers and idle work included; *idle*: their CPU ms per second before the VMs start."
echo
echo "| firmware | VMs | server | ready | kernel | script | kernel req | Ignition | kernel boot | server ms/boot | CPU ms/boot | ready vs stand-in | kernel boot vs stand-in |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
awk -F'\t' '
  function med(k, j,   n, i, m, x, a) {
    n = cnt[k, j]; if (!n) return ""
    for (i = 1; i <= n; i++) a[i] = v[k, j, i]
    for (i = 2; i <= n; i++) { x = a[i]; for (m = i - 1; m >= 1 && a[m] > x; m--) a[m + 1] = a[m]; a[m + 1] = x }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function f(k, j,   m) { m = med(k, j); return m == "" ? "–" : sprintf("%.2f", m) }
  NR == FNR { if (FNR > 1) { k = $2 SUBSEP $3 SUBSEP $1; sm[k] += $5; cpu[k] += $7; idle[k] += $8; nr[k]++ } ; next }
  FNR > 1 {
    k = $2 SUBSEP $3 SUBSEP $1
    if (!(k in mn) || $6 < mn[k]) mn[k] = $6; if ($6 > mx[k]) mx[k] = $6
    for (j = 6; j <= 11; j++) if ($j != "-" && $j != "") v[k, j, ++cnt[k, j]] = $j
    if (!(($2 SUBSEP $3) in seen)) { seen[$2 SUBSEP $3] = 1; order[++no] = $2 SUBSEP $3 }
  }
  END {
    for (o = 1; o <= no; o++) {
      split(order[o], fn, SUBSEP)
      b = order[o] SUBSEP "bootfleet"; d = order[o] SUBSEP "standin"
      for (w = 1; w <= 2; w++) {
        k = (w == 1) ? b : d; if (!cnt[k, 6]) continue
        ratio = (w == 1 && cnt[d, 6]) ? sprintf("%+.1f%%", (med(b, 6) / med(d, 6) - 1) * 100) : ""
        cratio = (w == 1 && cnt[d, 11] && cnt[b, 11]) ? sprintf("%+.1f%%", (med(b, 11) / med(d, 11) - 1) * 100) : ""
        printf "| %s | %s | %s | %.2f [%.2f–%.2f] | %s | %s | %s | %s | %s | %.1f | %.0f (idle %.0f/s) | %s | %s |\n", (fn[1] == "bios" ? "BIOS" : "UEFI PXE"), fn[2], (w == 1 ? "bootfleet" : "dnsmasq+nginx"),
          med(k, 6), mn[k], mx[k], f(k, 7), f(k, 8), f(k, 9), f(k, 10), f(k, 11), sm[k] / nr[k], cpu[k] / nr[k], idle[k] / nr[k], ratio, cratio
      }
    }
  }' "$RUNS" "$VMS"
echo
echo "Command: \`flock /tmp/bootfleet-bench.lock bench/lab.sh $REPS\` (as root; raw figures in bench/out/lab/{vms,rounds}.tsv). Taken on a shared 2-core machine (other work running), QEMU under TCG: 8 VMs on 2 cores are CPU-bound, which both servers share."
echo "Targets (issue 7): ready no later than the stand-in's + 5%; bootfleet's own time under 50 ms per boot."
}
VMS=$OUT/vms.tsv RUNS=$OUT/rounds.tsv
if [ "$MODE" = report ]; then
  . "$OUT/params"
  report
  exit
fi
rm -rf "$OUT"; mkdir -p "$OUT"
echo "REPS=$REPS REPS1=$REPS1 ACCEL=$ACCEL" >"$OUT/params"
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/bootfleet
NS=bf-blab-$RANDOM
URL=http://10.77.0.1:8080
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # VMs of an interrupted round: every process in the namespace.
  for p in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
trap "exit 130" INT TERM

# The lab image without an agent: /init is ready right after its Ignition
# fetch, and with bootfleet.poweroff=1 the VM then powers off.
"$BIN" images build-lab --out "$OUT/image" --agent "" >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log" >&2; exit 1; }

# The lab's network: a namespace, a bridge, one tap per VM.
max=0; for n in $COUNTS; do [ "$n" -gt "$max" ] && max=$n; done
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add br0 type bridge
ip -n "$NS" addr add 10.77.0.1/24 dev br0
ip -n "$NS" addr add fdbf:a4d::1/64 dev br0 nodad   # the prefix bootfleet advertises; dnsmasq needs it on br0 to advertise it
ip -n "$NS" link set br0 up
for i in $(seq 0 $((max - 1))); do
  ip -n "$NS" tuntap add dev "tap$i" mode tap
  ip -n "$NS" link set "tap$i" master br0 up
done
mac() { printf '52:54:00:bf:%02x:%02x' $(( ($1 + 1) >> 8 )) $(( ($1 + 1) & 255 )); }

# The lab's profiles (as bootfleet lab up writes them), plus poweroff.
P=$OUT/profiles
mkdir -p "$P/groups" "$P/profiles" "$P/ignition" "$P/assets/lab" "$OUT/noagent"
printf 'name: lab\nprofile: lab-node\nmetadata:\n  role: lab\n' >"$P/groups/lab.yaml"
printf 'name: lab-node\nboot:\n  kernel: /assets/lab/vmlinuz\n  initrd: [/assets/lab/initrd.img]\n  args: ["console=ttyS0", "panic=10", "bootfleet.poweroff=1"]\nignition: node.bu\n' >"$P/profiles/lab-node.yaml"
printf 'variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: /etc/hostname\n      mode: 0644\n      contents:\n        inline: "lab-{{.MAC}}"\n' >"$P/ignition/node.bu"
cp "$OUT/image/vmlinuz" "$OUT/image/initrd.img" "$P/assets/lab/"

# The stand-in's files: the same assets, bootfleet's iPXE binary for TFTP,
# and for each MAC the iPXE script and Ignition bootfleet renders.
for fw in bios uefi; do
  W=$OUT/www-$fw
  mkdir -p "$W/by-mac/ipxe" "$W/by-mac/ignition"
  ln -s "$P/assets" "$W/assets"
  for i in $(seq 0 $((max - 1))); do
    m=$(mac "$i"); hyp=${m//:/-}
    "$BIN" render --profiles "$P" --mac "$m" --arch x86_64 --firmware "$fw" --kind ipxe --public-url "$URL" >"$W/by-mac/ipxe/$hyp"
    "$BIN" render --profiles "$P" --mac "$m" --kind ignition --public-url "$URL" >"$W/by-mac/ignition/$hyp"
  done
done
# boot.ipxe as bootfleet serves it (it names no machine).
mkdir -p "$OUT/tftp"

metric_sum() { # name regex of label set → sum of matching series
  awk -v re="$1" '$1 ~ re {s += $2} END {printf "%.6f", s}'
}
cpu_ms() { # pids → their CPU time (user+system) in ms, with their children's
  local t=0 p c
  for p in "$@"; do
    for c in $p $(pgrep -P "$p" 2>/dev/null); do
      [ -r /proc/$c/stat ] || continue
      t=$(( t + $(awk '{sub(/.*\) /, ""); print $12 + $13}' /proc/$c/stat) ))
    done
  done
  echo $(( t * 1000 / $(getconf CLK_TCK) ))
}

start_bootfleet() { # fw
  rm -rf "$OUT/bf-data"
  ip netns exec "$NS" "$BIN" serve --profiles "$P" --data-dir "$OUT/bf-data" --http 10.77.0.1:8080 --public-url "$URL" \
    --dhcp full --interface br0 --dhcp-pool-start 10.77.0.100 --dhcp-pool-end 10.77.0.250 --dhcp-router 10.77.0.1 \
    --agent-dir "$OUT/noagent" >"$OUT/bootfleet.log" 2>&1 &
  server_pids=($!); pids+=($!)
  for _ in $(seq 150); do ip netns exec "$NS" curl -sf "$URL/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  ip netns exec "$NS" curl -sf "$URL/healthz" >/dev/null || { echo "bootfleet did not start" >&2; cat "$OUT/bootfleet.log" >&2; exit 1; }
  [ -s "$OUT/tftp/ipxe.efi" ] || ip netns exec "$NS" curl -sf -o "$OUT/tftp/ipxe.efi" "$URL/ipxe/ipxe.efi"
  [ -s "$OUT/boot.ipxe" ] || ip netns exec "$NS" curl -sf -o "$OUT/boot.ipxe" "$URL/boot.ipxe"
}
start_standin() { # fw
  local fw=$1 W=$OUT/www-${1%-pxe}
  cp "$OUT/boot.ipxe" "$W/boot.ipxe"
  rm -f "$OUT/dnsmasq.leases" "$OUT/nginx-access.log"
  cat >"$OUT/dnsmasq.conf" <<EOF
port=0
interface=br0
bind-interfaces
dhcp-authoritative
no-ping
dhcp-range=10.77.0.100,10.77.0.250,255.255.255.0,1h
dhcp-leasefile=$OUT/dnsmasq.leases
dhcp-option=option:router,10.77.0.1
enable-ra
dhcp-range=::,constructor:br0,ra-only,64
ra-param=br0,10,0
dhcp-userclass=set:ipxe,iPXE
dhcp-userclass=set:ipxe,Tinkerbell
dhcp-match=set:efi64,option:client-arch,7
dhcp-match=set:efi64,option:client-arch,9
dhcp-option=tag:ipxe,encap:175,176,1b
dhcp-boot=tag:ipxe,$URL/boot.ipxe
dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi
enable-tftp
tftp-root=$OUT/tftp
EOF
  cat >"$OUT/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $OUT/nginx.pid;
error_log $OUT/nginx-error.log;
events { worker_connections 256; }
http {
  log_format bench '\$msec \$request_time \$request_uri \$arg_mac';
  access_log $OUT/nginx-access.log bench;
  map \$arg_mac \$ignmac {
    "~^(?<a>..)(%3A|:)(?<b>..)(%3A|:)(?<c>..)(%3A|:)(?<d>..)(%3A|:)(?<e>..)(%3A|:)(?<f>..)\$" "\$a-\$b-\$c-\$d-\$e-\$f";
    default \$arg_mac;
  }
  sendfile on;
  types { application/octet-stream img; }
  default_type text/plain;
  server {
    listen 10.77.0.1:8080;
    root $W;
    location = /ipxe { set \$m \$arg_mac; try_files /by-mac/ipxe/\$m =404; }
    location = /ignition { default_type application/json; try_files /by-mac/ignition/\$ignmac =404; }
  }
}
EOF
  ip netns exec "$NS" dnsmasq --keep-in-foreground --conf-file="$OUT/dnsmasq.conf" --pid-file="$OUT/dnsmasq.pid" --user=root 2>"$OUT/dnsmasq.log" &
  server_pids=($!); pids+=($!)
  ip netns exec "$NS" nginx -c "$OUT/nginx.conf" -p "$OUT" 2>>"$OUT/nginx-error.log" &
  server_pids+=($!); pids+=($!)
  for _ in $(seq 50); do ip netns exec "$NS" curl -sf "$URL/boot.ipxe" >/dev/null 2>&1 && break; sleep 0.1; done
  ip netns exec "$NS" curl -sf "$URL/boot.ipxe" >/dev/null || { echo "nginx did not start" >&2; cat "$OUT/nginx-error.log" >&2; exit 1; }
  : >"$OUT/nginx-access.log"
}
stop_server() {
  for p in "${server_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${server_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  server_pids=()
}

# One VM, as lab.qemuArgs starts it; its console lines stamped on arrival
# ($EPOCHREALTIME), the first line its power-on.
stamp() { while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done; }
start_vm() { # i fw dir
  local i=$1 fw=$2 d=$3 m args nic
  m=$(mac "$i")
  nic="virtio-net-pci,netdev=n0,mac=$m,bootindex=1"
  args=(-accel "$ACCEL" -m 512 -smp 1 -display none -monitor none -no-reboot -serial stdio
    -netdev "tap,id=n0,ifname=tap$i,script=no,downscript=no")
  case $fw in
  bios) args=(-machine pc -boot n "${args[@]}") ;;
  *) cp /usr/share/OVMF/OVMF_VARS_4M.fd "$d/vars-$i.fd"
     args=(-machine q35 -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd
       -drive "if=pflash,format=raw,unit=1,file=$d/vars-$i.fd" "${args[@]}")
     [ "$fw" = uefi-pxe ] && nic+=",romfile=" ;;
  esac
  { echo "POWER-ON"; exec timeout "$ROUND_TIMEOUT" ip netns exec "$NS" qemu-system-x86_64 "${args[@]}" -device "$nic" </dev/null 2>"$d/qemu-$i.err"; } | stamp >"$d/vm-$i.log" &
}

# A round: the server up, N VMs at once, each until it powers off after
# its ready marker; then each VM's times and the server's own time.
printf 'server\tfw\tn\trep\tvm\ttotal\tkernel_at\tscript_at\tkernel_req_at\tignition_at\tkernel_boot\n' >"$VMS"
printf 'server\tfw\tn\trep\tserver_ms\tassets_ms\tcpu_ms\tidle_cpu_ms_per_s\n' >"$RUNS"
round() { # server fw n rep
  local server=$1 fw=$2 n=$3 rep=$4 d=$OUT/$1-$2-$3-$4 i before after cpu0 cpu1
  mkdir -p "$d"
  "start_$server" "$fw"
  [ "$server" = bootfleet ] && before=$(ip netns exec "$NS" curl -sf "$URL/metrics")
  # Two idle seconds (the RA advertiser waits for br0's link-local
  # address), for the server's idle CPU.
  cpu0=$(cpu_ms "${server_pids[@]}"); sleep 2; cpu1=$(cpu_ms "${server_pids[@]}")
  local idle=$(( (cpu1 - cpu0) / 2 ))
  cpu0=$cpu1
  local vm_pids=()
  for i in $(seq 0 $((n - 1))); do start_vm "$i" "$fw" "$d"; vm_pids+=($!); done
  # Each VM's console ends when it powers off (or its timeout kills it).
  for j in "${vm_pids[@]}"; do wait "$j" 2>/dev/null || true; done
  cpu1=$(cpu_ms "${server_pids[@]}")
  local server_s=0 assets_s=0
  if [ "$server" = bootfleet ]; then
    after=$(ip netns exec "$NS" curl -sf "$URL/metrics")
    printf '%s\n' "$before" >"$d/metrics-before.txt"; printf '%s\n' "$after" >"$d/metrics-after.txt"
    # The server's own time: DHCP handling, and answering iPXE's and
    # Ignition's requests (render included). Asset and TFTP transfers
    # last as long as the client takes to receive; listed apart.
    local re='^bootfleet_(dhcp_handle_duration_seconds_sum|http_request_duration_seconds_sum\{endpoint="(boot.ipxe|ipxe|ignition)"\})'
    server_s=$(awk -v a="$(metric_sum "$re" <<<"$after")" -v b="$(metric_sum "$re" <<<"$before")" 'BEGIN {print a - b}')
    re='^bootfleet_http_request_duration_seconds_sum\{endpoint="assets"\}'
    assets_s=$(awk -v a="$(metric_sum "$re" <<<"$after")" -v b="$(metric_sum "$re" <<<"$before")" 'BEGIN {print a - b}')
    for i in $(seq 0 $((n - 1))); do
      ip netns exec "$NS" "$BIN" nodes show "$(mac "$i")" -o json --server "$URL" --data-dir "$OUT/bf-data" >"$d/node-$i.json" 2>/dev/null || true
    done
  else
    cp "$OUT/nginx-access.log" "$d/access.log"
    server_s=$(awk '{sub(/\?.*/, "", $3)} $3 == "/ipxe" || $3 == "/ignition" || $3 == "/boot.ipxe" {s += $2} END {print s + 0}' "$d/access.log")
    assets_s=$(awk '{sub(/\?.*/, "", $3)} $3 ~ /^\/assets\// {s += $2} END {print s + 0}' "$d/access.log")
  fi
  stop_server
  printf '%s\t%s\t%s\t%s\t%.3f\t%.3f\t%s\t%s\n' "$server" "$fw" "$n" "$rep" "$(awk -v s="$server_s" -v n="$n" 'BEGIN {print s * 1000 / n}')" \
    "$(awk -v s="$assets_s" -v n="$n" 'BEGIN {print s * 1000 / n}')" "$(( (cpu1 - cpu0) / n ))" "$idle" >>"$RUNS"
  for i in $(seq 0 $((n - 1))); do
    local m on kern ready s k g hyp
    m=$(mac "$i"); hyp=${m//:/-}
    on=$(awk '$2 == "POWER-ON" {print $1; exit}' "$d/vm-$i.log")
    kern=$(awk '/Linux version/ {print $1; exit}' "$d/vm-$i.log")
    ready=$(awk '/BOOTFLEET-READY/ {print $1; exit}' "$d/vm-$i.log")
    # A control with no server in it: the kernel's own boot, from its
    # first console line to running /init (guest CPU only).
    kboot=$(awk '/Linux version/ && !k {k = $1} /Run \/init/ && k {printf "%.3f", $1 - k; exit}' "$d/vm-$i.log")
    if [ -z "$ready" ]; then echo "$server $fw n=$n: VM $i not ready (see $d/vm-$i.log)" >&2; continue; fi
    if [ "$server" = bootfleet ]; then
      # From the registry timeline: when bootfleet saw iPXE's script
      # request, the kernel download and the Ignition request.
      read -r s k g < <(jq -r 'def ep: (.[0:19] + "Z" | fromdateiso8601) + ((.[19:] | capture("^\\.(?<f>[0-9]+)").f // "0") | "0." + . | tonumber);
        [ ([.timeline[] | select(.event == "ipxe")][0].time // "" ),
          ([.timeline[] | select(.event == "asset")][0].time // ""),
          ([.timeline[] | select(.event == "ignition")][0].time // "") ] | map(if . == "" then "-" else (ep | tostring) end) | join(" ")' "$d/node-$i.json")
    else
      # The same three requests from nginx's log (start = end − duration).
      read -r s k g < <(awk -v hyp="$hyp" -v m="$m" '
        { a = $4; gsub(/%3A|%3a/, ":", a); gsub(/-/, ":", a); t = $1 - $2; sub(/\?.*/, "", $3) }
        a == m && $3 == "/ipxe" && !s { s = t }
        a == m && $3 ~ /^\/assets\// && !k { k = t }
        a == m && $3 == "/ignition" && !g { g = t }
        function o(x) { return x ? sprintf("%.3f", x) : "-" }
        END { printf "%s %s %s\n", o(s), o(k), o(g) }' "$d/access.log")
    fi
    awk -v sv="$server" -v fw="$fw" -v n="$n" -v rep="$rep" -v i="$i" -v on="$on" -v kern="$kern" -v ready="$ready" -v s="$s" -v k="$k" -v g="$g" -v kb="${kboot:--}" '
      function rel(x) { return x == "-" || x == "" ? "-" : sprintf("%.3f", x - on) }
      BEGIN { printf "%s\t%s\t%s\t%s\t%s\t%.3f\t%s\t%s\t%s\t%s\t%s\n", sv, fw, n, rep, i, ready - on, rel(kern), rel(s), rel(k), rel(g), kb }' >>"$VMS"
  done
  echo "round $server $fw n=$n rep=$rep done" >&2
}

for fw in $FIRMWARES; do
  for n in $COUNTS; do
    reps=$REPS; [ "$n" -eq 1 ] && reps=$REPS1
    for rep in $(seq "$reps"); do
      # Alternate which server goes first.
      if [ $(( rep % 2 )) -eq 1 ]; then order="bootfleet standin"; else order="standin bootfleet"; fi
      for server in $order; do round "$server" "$fw" "$n" "$rep"; done
    done
  done
done

report
