// Package images builds and keeps boot images: the lab's node image (a
// Debian kernel and a busybox initramfs, from Debian packages only), and
// container image archives for air-gapped nodes.
package images

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// LabModules are the kernel modules the lab image loads: what a QEMU
// virtio NIC needs (their dependencies are added from the modules' own
// metadata).
var LabModules = []string{"virtio_pci", "virtio_net"}

// LabConfig configures BuildLab.
type LabConfig struct {
	// Out receives vmlinuz, initrd.img and SHA256SUMS.
	Out string
	// Cache keeps downloaded packages between builds; default
	// $XDG_CACHE_HOME/bootfleet or ~/.cache/bootfleet.
	Cache string
	// Agent, when set, is a bootfleet-agent binary put in the image as
	// /usr/bin/bootfleet-agent: the image then applies its Ignition's
	// files and starts the agent, as a real node's systemd would.
	Agent string
	Log   *slog.Logger
}

// LabImage is what BuildLab made.
type LabImage struct {
	Kernel        string            `json:"kernel"`
	Initrd        string            `json:"initrd"`
	KernelVersion string            `json:"kernel_version"`
	SHA256        map[string]string `json:"sha256"`
}

// BuildLab builds the lab node image from Debian packages: the current
// linux-image-amd64 kernel, busybox-static, the virtio NIC modules, and an
// /init that brings the NIC up with DHCP, fetches the node's Ignition by
// the URL bootfleet put on the kernel command line, applies it (with the
// agent, when included), prints "BOOTFLEET-READY mac=… ip=…" on the
// console and starts the agent.
func BuildLab(ctx context.Context, cfg LabConfig) (LabImage, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Cache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return LabImage{}, fmt.Errorf("images: no cache dir (set --cache): %w", err)
		}
		cfg.Cache = filepath.Join(dir, "bootfleet")
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return LabImage{}, fmt.Errorf("images: %w", err)
	}
	unlock, err := lockCache(ctx, cfg.Cache)
	if err != nil {
		return LabImage{}, err
	}
	defer unlock()
	kernelPkg, err := kernelPackage(ctx)
	if err != nil {
		return LabImage{}, err
	}
	kernelDeb, err := fetchDeb(ctx, cfg.Cache, kernelPkg, cfg.Log)
	if err != nil {
		return LabImage{}, err
	}
	busyboxDeb, err := fetchDeb(ctx, cfg.Cache, "busybox-static", cfg.Log)
	if err != nil {
		return LabImage{}, err
	}
	pruneCache(cfg.Cache, []deb{kernelDeb, busyboxDeb}, cfg.Log)
	kroot := kernelDeb.dir
	vmlinuz, err := filepath.Glob(filepath.Join(kroot, "boot", "vmlinuz-*"))
	if err != nil || len(vmlinuz) != 1 {
		return LabImage{}, fmt.Errorf("images: %s has no single boot/vmlinuz-*", kernelPkg)
	}
	version := strings.TrimPrefix(filepath.Base(vmlinuz[0]), "vmlinuz-")
	modDir := filepath.Join(kroot, "lib", "modules", version)
	order, err := moduleOrder(modDir, LabModules)
	if err != nil {
		return LabImage{}, err
	}

	busybox, err := os.ReadFile(filepath.Join(busyboxDeb.dir, "bin", "busybox"))
	if err != nil {
		return LabImage{}, fmt.Errorf("images: busybox-static: %w", err)
	}
	entries := map[string]cpioEntry{}
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "run", "tmp", "etc", "lib", "lib/modules", "var", "etc/bootfleet"} {
		entries[d] = cpioEntry{mode: modeDir | 0o755}
	}
	entries["bin/busybox"] = cpioEntry{mode: modeFile | 0o755, data: busybox}
	entries["bin/sh"] = cpioEntry{mode: modeSymlink | 0o777, data: []byte("busybox")}
	entries["init"] = cpioEntry{mode: modeFile | 0o755, data: []byte(labInit)}
	entries["etc/udhcpc.script"] = cpioEntry{mode: modeFile | 0o755, data: []byte(labUdhcpcScript)}
	// The modules where modprobe looks for them, with their modules.dep;
	// /init loads them in order with insmod.
	kmods := "lib/modules/" + version
	for _, d := range []string{kmods, kmods + "/kernel"} {
		entries[d] = cpioEntry{mode: modeDir | 0o755}
	}
	var load []string
	for _, m := range order {
		data, err := os.ReadFile(filepath.Join(modDir, m.Path))
		if err != nil {
			return LabImage{}, fmt.Errorf("images: %w", err)
		}
		for d := filepath.Dir(m.Path); d != "." && d != "kernel"; d = filepath.Dir(d) {
			entries[kmods+"/"+d] = cpioEntry{mode: modeDir | 0o755}
		}
		entries[kmods+"/"+m.Path] = cpioEntry{mode: modeFile | 0o644, data: data}
		load = append(load, "/"+kmods+"/"+m.Path)
	}
	entries[kmods+"/modules.dep"] = cpioEntry{mode: modeFile | 0o644, data: modulesDep(order)}
	entries["etc/modules-load"] = cpioEntry{mode: modeFile | 0o644, data: []byte(strings.Join(load, "\n") + "\n")}
	if cfg.Agent != "" {
		data, err := os.ReadFile(cfg.Agent)
		if err != nil {
			return LabImage{}, fmt.Errorf("images: agent: %w", err)
		}
		entries["usr/bin/bootfleet-agent"] = cpioEntry{mode: modeFile | 0o755, data: data}
	}
	var cpio bytes.Buffer
	if err := writeCPIO(&cpio, entries); err != nil {
		return LabImage{}, err
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zw.Write(cpio.Bytes())
	if err := zw.Close(); err != nil {
		return LabImage{}, err
	}
	img := LabImage{Kernel: filepath.Join(cfg.Out, "vmlinuz"), Initrd: filepath.Join(cfg.Out, "initrd.img"), KernelVersion: version, SHA256: map[string]string{}}
	kernel, err := os.ReadFile(vmlinuz[0])
	if err != nil {
		return LabImage{}, err
	}
	for path, data := range map[string][]byte{img.Kernel: kernel, img.Initrd: gz.Bytes()} {
		if err := writeFileAtomic(path, data); err != nil {
			return LabImage{}, fmt.Errorf("images: %w", err)
		}
		sum := sha256.Sum256(data)
		img.SHA256[filepath.Base(path)] = hex.EncodeToString(sum[:])
	}
	manifest, _ := json.MarshalIndent(img, "", "  ")
	if err := writeFileAtomic(filepath.Join(cfg.Out, "image.json"), append(manifest, '\n')); err != nil {
		return LabImage{}, err
	}
	sums := fmt.Sprintf("%s  vmlinuz\n%s  initrd.img\n", img.SHA256["vmlinuz"], img.SHA256["initrd.img"])
	if err := writeFileAtomic(filepath.Join(cfg.Out, "SHA256SUMS"), []byte(sums)); err != nil {
		return LabImage{}, err
	}
	cfg.Log.Info("lab image built", "kernel", version, "initrd_bytes", gz.Len(), "modules", len(order), "agent", cfg.Agent != "")
	return img, nil
}

// labModule is a kernel module picked for the image.
type labModule struct {
	Name    string   // canonical, e.g. virtio_net
	Path    string   // relative to lib/modules/<version>, e.g. kernel/drivers/net/virtio_net.ko
	Depends []string // from its .modinfo
}

// moduleOrder finds the modules and everything they depend on (read from
// each module's .modinfo section, so no depmod is needed) and returns
// them in an order insmod can load them: dependencies first.
func moduleOrder(modDir string, want []string) ([]labModule, error) {
	paths := map[string]string{} // canonical name → path relative to modDir
	err := filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".ko") {
			rel, _ := filepath.Rel(modDir, p)
			paths[canonicalModule(strings.TrimSuffix(d.Name(), ".ko"))] = filepath.ToSlash(rel)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("images: modules: %w", err)
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(modDir, "modules.builtin")); err == nil {
		for line := range strings.Lines(string(b)) {
			builtin[canonicalModule(strings.TrimSuffix(filepath.Base(strings.TrimSpace(line)), ".ko"))] = true
		}
	}
	var order []labModule
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string) error
	visit = func(name string) error {
		name = canonicalModule(name)
		if builtin[name] || state[name] == 2 {
			return nil
		}
		if state[name] == 1 {
			return fmt.Errorf("images: module dependency cycle at %s", name)
		}
		rel, ok := paths[name]
		if !ok {
			return fmt.Errorf("images: module %s is not in %s", name, modDir)
		}
		state[name] = 1
		deps, err := moduleDepends(filepath.Join(modDir, rel))
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, labModule{Name: name, Path: rel, Depends: deps})
		return nil
	}
	for _, m := range want {
		if err := visit(m); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// modulesDep renders modules.dep for the picked modules as depmod writes
// it — "path: dep-path dep-path …", each module's whole dependency
// closure, listed so that loading from the last entry to the first works
// (what modprobe does). mods is in load order, as moduleOrder returns.
func modulesDep(mods []labModule) []byte {
	byName := map[string]labModule{}
	for _, m := range mods {
		byName[m.Name] = m
	}
	var b strings.Builder
	for _, m := range mods {
		closure := map[string]bool{}
		var walk func(names []string)
		walk = func(names []string) {
			for _, d := range names {
				d = canonicalModule(d)
				if dm, ok := byName[d]; ok && !closure[d] {
					closure[d] = true
					walk(dm.Depends)
				}
			}
		}
		walk(m.Depends)
		b.WriteString(m.Path + ":")
		for i := len(mods) - 1; i >= 0; i-- { // the closure in reverse load order
			if closure[mods[i].Name] {
				b.WriteString(" " + mods[i].Path)
			}
		}
		b.WriteString("\n")
	}
	return []byte(b.String())
}

func canonicalModule(name string) string { return strings.ReplaceAll(name, "-", "_") }

// moduleDepends reads "depends=" from a module's .modinfo section.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("images: module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, nil
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("images: module %s: %w", path, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// labInit is the lab image's /init (busybox sh). Its console markers:
// "BOOTFLEET-READY mac=… ip=…" when the node is up, "BOOTFLEET-FAILED
// <reason>" when it cannot get there (the lab reports that line). With
// bootfleet.poweroff=1 on the kernel command line it powers off once
// ready (benchmarks time whole boots by it).
const labInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /run /tmp /var/run
say() { echo "bootfleet-lab: $*"; }
fail() { echo "BOOTFLEET-FAILED $*"; while true; do sleep 3600; done; }
URL=""
POWEROFF=""
set -f # the command line is split into words, never globbed
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	ignition.config.url=*) URL=${arg#ignition.config.url=} ;;
	bootfleet.poweroff=1) POWEROFF=1 ;;
	esac
done
set +f
for m in $(cat /etc/modules-load); do insmod "$m" || say "insmod $m failed"; done
ip link set lo up
IF=""
for i in 1 2 3 4 5 6 7 8 9 10; do
	for d in /sys/class/net/*; do
		n=$(basename "$d")
		[ "$n" = lo ] && continue
		IF=$n
		break
	done
	[ -n "$IF" ] && break
	sleep 0.5
done
[ -n "$IF" ] || fail "no network interface after loading the NIC modules"
MAC=$(cat /sys/class/net/$IF/address)
say "kernel up, $IF mac=$MAC"
udhcpc -i "$IF" -s /etc/udhcpc.script -q -n -t 10 -T 2 || fail "mac=$MAC no DHCP lease"
IP=$(cat /run/ip 2>/dev/null)
if [ -n "$URL" ]; then
	n=0
	until timeout 15 wget -q -O /run/ignition.json "$URL"; do
		n=$((n + 1))
		[ $n -ge 5 ] && fail "mac=$MAC ip=$IP cannot fetch $URL"
		sleep 1
	done
	say "ignition fetched from $URL sha256 $(sha256sum /run/ignition.json | cut -d' ' -f1)"
	if [ -x /usr/bin/bootfleet-agent ]; then
		/usr/bin/bootfleet-agent ignition-apply /run/ignition.json || fail "mac=$MAC ip=$IP bootfleet-agent ignition-apply failed"
	fi
fi
echo "BOOTFLEET-READY mac=$MAC ip=$IP"
[ -n "$POWEROFF" ] && poweroff -f
AGENT=/opt/bootfleet/bin/bootfleet-agent
[ -x "$AGENT" ] || AGENT=/usr/bin/bootfleet-agent
if [ -f /etc/bootfleet/agent.env ] && [ -x "$AGENT" ]; then
	"$AGENT" --env-file /etc/bootfleet/agent.env --docker-host unix:///run/docker.sock &
	say "agent started"
fi
while true; do sleep 3600; done
`

// labUdhcpcScript configures the address udhcpc got.
const labUdhcpcScript = `#!/bin/sh
case "$1" in
deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	[ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
	echo "$ip" > /run/ip
	;;
esac
exit 0
`
