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
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
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
	debs := filepath.Join(cfg.Cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return LabImage{}, fmt.Errorf("images: %w", err)
	}
	kernelPkg, err := kernelPackage(ctx)
	if err != nil {
		return LabImage{}, err
	}
	unpacked := map[string]string{}
	for _, pkg := range []string{kernelPkg, "busybox-static"} {
		dir, err := fetchPackage(ctx, debs, pkg, cfg.Log)
		if err != nil {
			return LabImage{}, err
		}
		unpacked[pkg] = dir
	}
	kroot := unpacked[kernelPkg]
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

	busybox, err := os.ReadFile(filepath.Join(unpacked["busybox-static"], "bin", "busybox"))
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
	var load []string
	for _, m := range order {
		data, err := os.ReadFile(m)
		if err != nil {
			return LabImage{}, fmt.Errorf("images: %w", err)
		}
		name := "lib/modules/" + filepath.Base(m)
		entries[name] = cpioEntry{mode: modeFile | 0o644, data: data}
		load = append(load, "/"+name)
	}
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
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return LabImage{}, fmt.Errorf("images: %w", err)
		}
		sum := sha256.Sum256(data)
		img.SHA256[filepath.Base(path)] = hex.EncodeToString(sum[:])
	}
	manifest, _ := json.MarshalIndent(img, "", "  ")
	if err := os.WriteFile(filepath.Join(cfg.Out, "image.json"), append(manifest, '\n'), 0o644); err != nil {
		return LabImage{}, err
	}
	sums := fmt.Sprintf("%s  vmlinuz\n%s  initrd.img\n", img.SHA256["vmlinuz"], img.SHA256["initrd.img"])
	if err := os.WriteFile(filepath.Join(cfg.Out, "SHA256SUMS"), []byte(sums), 0o644); err != nil {
		return LabImage{}, err
	}
	cfg.Log.Info("lab image built", "kernel", version, "initrd_bytes", gz.Len(), "modules", len(order), "agent", cfg.Agent != "")
	return img, nil
}

// kernelPackage names the versioned kernel package linux-image-amd64
// currently depends on.
func kernelPackage(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		return "", fmt.Errorf("images: apt-cache depends linux-image-amd64: %w (run apt-get update first)", err)
	}
	for line := range strings.Lines(string(out)) {
		if dep, ok := strings.CutPrefix(strings.TrimSpace(line), "Depends: "); ok && strings.HasPrefix(dep, "linux-image-") {
			return dep, nil
		}
	}
	return "", errors.New("images: linux-image-amd64 depends on no kernel package (apt-get update?)")
}

// fetchPackage downloads a Debian package into debs (once) and unpacks it
// (once), returning the unpacked tree.
func fetchPackage(ctx context.Context, debs, pkg string, log *slog.Logger) (string, error) {
	tree := filepath.Join(debs, pkg+".tree")
	if _, err := os.Stat(filepath.Join(tree, ".complete")); err == nil {
		return tree, nil
	}
	matches, _ := filepath.Glob(filepath.Join(debs, pkg+"_*.deb"))
	if len(matches) == 0 {
		log.Info("downloading Debian package", "package", pkg)
		cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg)
		cmd.Dir = debs
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("images: apt-get download %s: %w\n%s", pkg, err, out)
		}
		if matches, _ = filepath.Glob(filepath.Join(debs, pkg+"_*.deb")); len(matches) == 0 {
			return "", fmt.Errorf("images: apt-get download %s left no .deb", pkg)
		}
	}
	_ = os.RemoveAll(tree)
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", matches[len(matches)-1], tree).CombinedOutput(); err != nil {
		return "", fmt.Errorf("images: dpkg-deb -x %s: %w\n%s", matches[0], err, out)
	}
	if err := os.WriteFile(filepath.Join(tree, ".complete"), nil, 0o644); err != nil {
		return "", err
	}
	return tree, nil
}

// moduleOrder finds the modules and everything they depend on (read from
// each module's .modinfo section, so no depmod is needed) and returns
// their paths in an order insmod can load them.
func moduleOrder(modDir string, want []string) ([]string, error) {
	paths := map[string]string{} // canonical name → path
	err := filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".ko") {
			paths[canonicalModule(strings.TrimSuffix(d.Name(), ".ko"))] = p
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
	var order []string
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
		path, ok := paths[name]
		if !ok {
			return fmt.Errorf("images: module %s is not in %s", name, modDir)
		}
		state[name] = 1
		deps, err := moduleDepends(path)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, path)
		return nil
	}
	for _, m := range want {
		if err := visit(m); err != nil {
			return nil, err
		}
	}
	return order, nil
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
