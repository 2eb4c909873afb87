package images

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The package cache of BuildLab:
//
//	<cache>/.lock                         held while a build uses the cache
//	<cache>/debs/<pkg>_<version>_<arch>.deb
//	<cache>/unpacked/<pkg>_<version>_<arch>/   (with a .unpacked marker)
//
// Downloads and unpacked trees are made under temporary names and renamed
// into place once complete, so an interrupted build never leaves a partial
// file that looks finished; the lock makes concurrent builds (parallel
// tests, two operators) take turns.

// deb is one cached Debian package.
type deb struct {
	version string
	file    string // the .deb
	dir     string // its unpacked tree
}

// lockCache takes an exclusive lock on the cache directory until unlock,
// waiting for another build that holds it (or for ctx).
func lockCache(ctx context.Context, cache string) (unlock func(), err error) {
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("images: cache: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("images: cache: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("images: cache lock: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("images: waiting for the cache lock: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// fetchDeb downloads pkg's candidate version into cache/debs and unpacks
// it into cache/unpacked, each only once per version. The caller holds
// the cache lock.
func fetchDeb(ctx context.Context, cache, pkg string, log *slog.Logger) (deb, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "show", "--no-all-versions", pkg).Output()
	if err != nil {
		return deb{}, fmt.Errorf("images: apt-cache show %s: %w (run apt-get update first)", pkg, err)
	}
	var version, arch string
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "Version: "); ok && version == "" {
			version = v
		}
		if v, ok := strings.CutPrefix(line, "Architecture: "); ok && arch == "" {
			arch = v
		}
	}
	if version == "" || arch == "" {
		return deb{}, fmt.Errorf("images: apt-cache show %s: no version or architecture", pkg)
	}
	debs := filepath.Join(cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return deb{}, fmt.Errorf("images: cache: %w", err)
	}
	// apt-get download's own file name (an epoch's colon escaped).
	name := pkg + "_" + strings.ReplaceAll(version, ":", "%3a") + "_" + arch
	file := filepath.Join(debs, name+".deb")
	if _, err := os.Stat(file); err != nil {
		log.Info("downloading Debian package", "package", pkg, "version", version)
		tmp, err := os.MkdirTemp(debs, ".download-")
		if err != nil {
			return deb{}, fmt.Errorf("images: cache: %w", err)
		}
		defer os.RemoveAll(tmp)
		_ = os.Chmod(tmp, 0o755) // apt's _apt user may write here
		cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg+"="+version)
		cmd.Dir = tmp
		if out, err := cmd.CombinedOutput(); err != nil {
			return deb{}, fmt.Errorf("images: apt-get download %s: %w\n%s", pkg, err, out)
		}
		if err := os.Rename(filepath.Join(tmp, filepath.Base(file)), file); err != nil {
			return deb{}, fmt.Errorf("images: apt-get download %s did not write %s: %w", pkg, filepath.Base(file), err)
		}
	}
	unpacked := filepath.Join(cache, "unpacked")
	dir := filepath.Join(unpacked, name)
	if _, err := os.Stat(filepath.Join(dir, ".unpacked")); err == nil {
		return deb{version: version, file: file, dir: dir}, nil
	}
	if err := os.MkdirAll(unpacked, 0o755); err != nil {
		return deb{}, fmt.Errorf("images: cache: %w", err)
	}
	tmp, err := os.MkdirTemp(unpacked, ".unpack-")
	if err != nil {
		return deb{}, fmt.Errorf("images: cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", file, tmp).CombinedOutput(); err != nil {
		return deb{}, fmt.Errorf("images: dpkg-deb -x %s: %w\n%s", file, err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".unpacked"), nil, 0o644); err != nil {
		return deb{}, fmt.Errorf("images: cache: %w", err)
	}
	_ = os.RemoveAll(dir) // an unfinished one from a build without the marker
	if err := os.Rename(tmp, dir); err != nil {
		return deb{}, fmt.Errorf("images: cache: %w", err)
	}
	return deb{version: version, file: file, dir: dir}, nil
}

// pruneCache removes other versions of the packages just used from the
// cache (an unpacked kernel is ~400 MB), leftovers of interrupted builds,
// and the trees of the cache's older layout (debs/<pkg>.tree). The caller
// holds the cache lock.
func pruneCache(cache string, keep []deb, log *slog.Logger) {
	kept := map[string]bool{}
	prefixes := map[string]bool{}
	for _, d := range keep {
		kept[d.file], kept[d.dir] = true, true
		pkg, _, _ := strings.Cut(filepath.Base(d.dir), "_")
		if strings.HasPrefix(pkg, "linux-image-") {
			pkg = "linux-image-" // every kernel, whatever its ABI
		}
		prefixes[pkg] = true
	}
	for _, sub := range []string{"debs", "unpacked"} {
		entries, _ := os.ReadDir(filepath.Join(cache, sub))
		for _, e := range entries {
			p := filepath.Join(cache, sub, e.Name())
			pkg, _, _ := strings.Cut(e.Name(), "_")
			if strings.HasPrefix(pkg, "linux-image-") {
				pkg = "linux-image-"
			}
			stale := strings.HasPrefix(e.Name(), ".download-") || strings.HasPrefix(e.Name(), ".unpack-") || strings.HasSuffix(e.Name(), ".tree")
			if kept[p] || (!stale && !prefixes[pkg]) {
				continue
			}
			if err := os.RemoveAll(p); err != nil {
				log.Warn("pruning the package cache", "path", p, "error", err)
			} else {
				log.Info("pruned from the package cache", "path", p)
			}
		}
	}
}

// kernelPackage names the versioned kernel package linux-image-amd64
// currently depends on.
func kernelPackage(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		return "", fmt.Errorf("images: apt-cache depends linux-image-amd64: %w (run apt-get update first)", err)
	}
	s := bufio.NewScanner(bytes.NewReader(out))
	for s.Scan() {
		if dep, ok := strings.CutPrefix(strings.TrimSpace(s.Text()), "Depends: "); ok && strings.HasPrefix(dep, "linux-image-") {
			return dep, nil
		}
	}
	return "", errors.New("images: linux-image-amd64 depends on no kernel package (apt-get update?)")
}

// writeFileAtomic writes a file under a temporary name and renames it
// into place: a reader (a lab serving the image) never sees half of it.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return nil
}
