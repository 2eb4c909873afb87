package images

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// testCache is the package cache the tests share (the e2e tests use the
// same one), so only a machine's first run downloads the ~70 MB.
func testCache() string { return filepath.Join(os.TempDir(), "bootfleet-test-cache") }

// TestBuildLab builds the lab image from the real Debian packages, twice
// at once (the builds take turns on the cache) and once more with an
// agent: the builds without agent are byte-identical, the initramfs
// unpacks with busybox cpio, and busybox modprobe, run inside the
// unpacked image, resolves virtio_net from the image's modules.dep in an
// order that loads.
func TestBuildLab(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads Debian packages")
	}
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (Debian's apt, dpkg and busybox are needed)", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out1, out2 := t.TempDir(), t.TempDir()
	errc := make(chan error, 1)
	go func() {
		_, err := BuildLab(ctx, LabConfig{Out: out2, Cache: testCache()})
		errc <- err
	}()
	img, err := BuildLab(ctx, LabConfig{Out: out1, Cache: testCache()})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"vmlinuz", "initrd.img", "SHA256SUMS"} { // image.json names the output paths
		a, _ := os.ReadFile(filepath.Join(out1, f))
		b, _ := os.ReadFile(filepath.Join(out2, f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s: the two builds differ (or are empty: %d bytes)", f, len(a))
		}
	}
	check := exec.Command("sha256sum", "-c", "SHA256SUMS")
	check.Dir = out1
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c: %v\n%s", err, out)
	}
	// (Under the lock: other packages' tests may be building.)
	unlock, err := lockCache(ctx, testCache())
	if err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(testCache(), "*", ".*-*"))
	unlock()
	if len(left) > 0 {
		t.Errorf("temporary files left in the cache: %v", left)
	}

	root := unpackInitrd(t, filepath.Join(out1, "initrd.img"))
	if fi, err := os.Stat(filepath.Join(root, "init")); err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Fatalf("initramfs /init: %v", err)
	}
	kmods := filepath.Join(root, "lib", "modules", img.KernelVersion)
	dep, err := os.ReadFile(filepath.Join(kmods, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dep), "kernel/drivers/net/virtio_net.ko:") {
		t.Errorf("modules.dep has no virtio_net:\n%s", dep)
	}
	load, _ := os.ReadFile(filepath.Join(root, "etc", "modules-load"))
	var names []string
	for _, p := range strings.Fields(string(load)) {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("/etc/modules-load lists a module the image lacks: %v", err)
		}
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".ko"))
	}
	for _, pair := range [][2]string{{"virtio_ring", "virtio"}, {"virtio", "virtio_pci"}, {"failover", "net_failover"}, {"net_failover", "virtio_net"}} {
		if i, j := slices.Index(names, pair[0]), slices.Index(names, pair[1]); i < 0 || j < 0 || i > j {
			t.Errorf("insmod order: %s must come before %s: %v", pair[0], pair[1], names)
		}
	}

	// busybox modprobe in the image, as the kernel's modprobe would run:
	// -D prints the insmod commands it would run, dependencies first.
	if os.Geteuid() != 0 {
		t.Log("not root: busybox modprobe in the image (chroot) not run; CI runs as root")
	} else {
		// modprobe looks under lib/modules/$(uname -r): point the host's
		// release at the image's modules.
		host, err := exec.Command("uname", "-r").Output()
		if err != nil {
			t.Fatal(err)
		}
		if rel := strings.TrimSpace(string(host)); rel != img.KernelVersion {
			if err := os.Symlink(img.KernelVersion, filepath.Join(root, "lib", "modules", rel)); err != nil {
				t.Fatal(err)
			}
		}
		for _, mod := range LabModules {
			out, err := exec.Command("chroot", root, "/bin/busybox", "modprobe", "-D", mod).CombinedOutput()
			if err != nil {
				t.Fatalf("busybox modprobe -D %s in the image: %v\n%s", mod, err, out)
			}
			var order []string
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				order = append(order, strings.TrimSuffix(filepath.Base(strings.TrimSpace(l)), ".ko"))
			}
			if order[len(order)-1] != mod {
				t.Errorf("modprobe -D %s: it is not loaded last: %v", mod, order)
			}
			for _, pair := range [][2]string{{"virtio_ring", "virtio"}, {"failover", "net_failover"}, {"net_failover", "virtio_net"}} {
				if i, j := slices.Index(order, pair[0]), slices.Index(order, pair[1]); j >= 0 && (i < 0 || i > j) {
					t.Errorf("modprobe -D %s: %s must load before %s: %v", mod, pair[0], pair[1], order)
				}
			}
			t.Logf("busybox modprobe -D %s: %v", mod, order)
		}
	}

	// With an agent, the image carries it.
	agent := filepath.Join(t.TempDir(), "bootfleet-agent")
	if err := os.WriteFile(agent, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out3 := t.TempDir()
	if _, err := BuildLab(ctx, LabConfig{Out: out3, Cache: testCache(), Agent: agent}); err != nil {
		t.Fatal(err)
	}
	root3 := unpackInitrd(t, filepath.Join(out3, "initrd.img"))
	if b, err := os.ReadFile(filepath.Join(root3, "usr", "bin", "bootfleet-agent")); err != nil || !strings.Contains(string(b), "exit 0") {
		t.Errorf("agent not in the image: %v", err)
	}
}

func unpackInitrd(t *testing.T, path string) string {
	t.Helper()
	gz, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cpio := exec.Command("busybox", "cpio", "-i", "-d")
	cpio.Dir = dir
	cpio.Stdin = bytes.NewReader(raw)
	if out, err := cpio.CombinedOutput(); err != nil {
		t.Fatalf("busybox cpio -i: %v\n%s", err, out)
	}
	return dir
}

// The cache keeps the package versions just used and removes other
// versions, leftovers of interrupted builds and the old layout's trees.
func TestPruneCache(t *testing.T) {
	cache := t.TempDir()
	mk := func(p string, dir bool) string {
		p = filepath.Join(cache, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if dir {
			os.MkdirAll(p, 0o755)
		} else {
			os.WriteFile(p, []byte("x"), 0o644)
		}
		return p
	}
	keep := []deb{
		{file: mk("debs/linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb", false), dir: mk("unpacked/linux-image-6.1.0-56-amd64_6.1.192-2_amd64", true)},
		{file: mk("debs/busybox-static_1%3a1.35.0-4+b3_amd64.deb", false), dir: mk("unpacked/busybox-static_1%3a1.35.0-4+b3_amd64", true)},
	}
	other := mk("debs/nginx_1.22.1-9_amd64.deb", false) // not ours to prune
	gone := []string{
		mk("debs/linux-image-6.1.0-55-amd64_6.1.190-1_amd64.deb", false),
		mk("unpacked/linux-image-6.1.0-55-amd64_6.1.190-1_amd64", true),
		mk("debs/busybox-static_1%3a1.35.0-4_amd64.deb", false),
		mk("unpacked/.unpack-123", true),
		mk("debs/.download-456", true),
		mk("debs/linux-image-6.1.0-56-amd64.tree", true),
	}
	pruneCache(cache, keep, slog.New(slog.DiscardHandler))
	for _, d := range keep {
		for _, p := range []string{d.file, d.dir} {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("pruned what the build uses: %v", err)
			}
		}
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("pruned another package: %v", err)
	}
	for _, p := range gone {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is still in the cache", p)
		}
	}
}
