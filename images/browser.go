package images

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// BrowserImage is the tag of the browser-load image.
const BrowserImage = "bootfleet/browser-load:latest"

// BrowserConfig says what goes into the browser-load image.
type BrowserConfig struct {
	// Tag of the image; default BrowserImage.
	Tag string
	// Bootfleet is the bootfleet binary to put at /usr/bin/bootfleet.
	Bootfleet string
	// Chromium adds Debian's full chromium beside chromium-headless-shell.
	Chromium bool
	// Root is the filesystem the installed packages are read from
	// (default "/"); dpkg's database is Root/var/lib/dpkg.
	Root string
}

// browserPackages are copied whole (but their docs): the headless shell,
// the resources it shares with chromium, NSS (whose modules are loaded at
// run time, not linked), and a font with its configuration so pages render
// text.
var browserPackages = []string{"chromium-headless-shell", "chromium-common", "libnss3", "fontconfig-config", "fonts-dejavu-core"}

// libDirs are where the dynamic linker looks (Debian amd64, merged /usr).
var libDirs = []string{"/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib", "/lib", "/usr/lib64", "/lib64"}

// BrowserStats describes a built image.
type BrowserStats struct {
	Files     int   // regular files in the layer
	LayerSize int64 // bytes of the uncompressed layer tar
}

// BuildBrowser writes a docker-archive image (docker load, podman load and
// the agent take it) of Debian's installed chromium-headless-shell (and
// chromium, if asked) and the bootfleet binary: the packages' files, the
// shared libraries they link (their ELF closure), fonts, CA certificates
// and /bin/sh — built from this machine's files, with no registry.
func BuildBrowser(w io.Writer, cfg BrowserConfig) (BrowserStats, error) {
	if cfg.Tag == "" {
		cfg.Tag = BrowserImage
	}
	if cfg.Root == "" {
		cfg.Root = "/"
	}
	pkgs := slices.Clone(browserPackages)
	if cfg.Chromium {
		pkgs = append(pkgs, "chromium")
	}
	b := &layerBuilder{root: cfg.Root, files: map[string]layerFile{}}
	for _, p := range pkgs {
		paths, err := packageFiles(cfg.Root, p)
		if err != nil {
			return BrowserStats{}, err
		}
		for _, path := range paths {
			if skipDoc(path) {
				continue
			}
			if err := b.add(path); err != nil {
				return BrowserStats{}, err
			}
		}
	}
	// The Debian wrappers in /usr/bin are shell scripts.
	if err := b.add("/bin/sh"); err != nil {
		return BrowserStats{}, err
	}
	if err := b.add("/usr/bin/dash"); err != nil {
		return BrowserStats{}, err
	}
	for _, f := range []string{"/etc/ssl/certs/ca-certificates.crt"} {
		if _, err := os.Stat(filepath.Join(cfg.Root, f)); err == nil {
			if err := b.add(f); err != nil {
				return BrowserStats{}, err
			}
		}
	}
	if cfg.Bootfleet == "" {
		return BrowserStats{}, errors.New("images: no bootfleet binary for the browser image")
	}
	b.files["/usr/bin/bootfleet"] = layerFile{src: cfg.Bootfleet, mode: 0o755}
	if err := b.closure(cfg.Bootfleet); err != nil {
		return BrowserStats{}, err
	}
	if err := b.elfClosure(); err != nil {
		return BrowserStats{}, err
	}

	tmp, err := os.CreateTemp("", "bootfleet-browser-layer-")
	if err != nil {
		return BrowserStats{}, fmt.Errorf("images: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	st, err := b.write(tmp)
	if err != nil {
		return BrowserStats{}, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return BrowserStats{}, err
	}
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8"}
	err = writeDockerArchiveFrom(w, cfg.Tag, tmp, st.LayerSize, ImageConfig{Cmd: []string{"bootfleet", "load", "worker"}, Env: env, WorkingDir: "/tmp"})
	return st, err
}

// skipDoc leaves out what a container never reads.
func skipDoc(p string) bool {
	for _, pre := range []string{"/usr/share/doc/", "/usr/share/man/", "/usr/share/lintian/", "/usr/share/bug/", "/usr/share/menu/", "/usr/share/applications/", "/usr/share/icons/", "/usr/share/appdata/", "/usr/share/metainfo/"} {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}

// packageFiles lists an installed package's paths from dpkg's database.
func packageFiles(root, pkg string) ([]string, error) {
	var data []byte
	var err error
	for _, name := range []string{pkg + ":amd64.list", pkg + ".list"} {
		data, err = os.ReadFile(filepath.Join(root, "var/lib/dpkg/info", name))
		if err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("images: package %s is not installed (apt-get install %s): %w", pkg, pkg, err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" && l != "/." {
			out = append(out, l)
		}
	}
	return out, nil
}

type layerFile struct {
	src  string // host path of a regular file
	link string // symlink target
	dir  bool
	mode os.FileMode
}

type layerBuilder struct {
	root  string
	files map[string]layerFile // image path → what it is
}

// canonical resolves the directories of p (merged /usr: /lib → /usr/lib),
// keeping its last element.
func (b *layerBuilder) canonical(p string) string {
	dir, err := filepath.EvalSymlinks(filepath.Join(b.root, filepath.Dir(p)))
	if err != nil {
		return p
	}
	rel, err := filepath.Rel(b.root, dir)
	if err != nil {
		return p
	}
	return filepath.Join("/", rel, filepath.Base(p))
}

// add puts a host path into the image: directories, regular files, and
// symlinks with what they point to.
func (b *layerBuilder) add(p string) error {
	for range 40 {
		cp := b.canonical(p)
		if _, ok := b.files[cp]; ok {
			return nil
		}
		host := filepath.Join(b.root, cp)
		fi, err := os.Lstat(host)
		if err != nil {
			return nil // listed by dpkg but gone (e.g. a diverted file)
		}
		switch {
		case fi.IsDir():
			b.files[cp] = layerFile{dir: true, mode: fi.Mode().Perm()}
			return nil
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(host)
			if err != nil {
				return fmt.Errorf("images: %w", err)
			}
			b.files[cp] = layerFile{link: target}
			if filepath.IsAbs(target) {
				p = target
			} else {
				p = filepath.Join(filepath.Dir(cp), target)
			}
		case fi.Mode().IsRegular():
			b.files[cp] = layerFile{src: host, mode: fi.Mode().Perm()}
			return nil
		default:
			return nil
		}
	}
	return fmt.Errorf("images: %s: too many symlinks", p)
}

// elfClosure adds the shared libraries every ELF file in the image needs,
// until nothing new comes.
func (b *layerBuilder) elfClosure() error {
	done := map[string]bool{}
	for {
		var todo []string
		for p, f := range b.files {
			if f.src != "" && !done[p] {
				todo = append(todo, p)
			}
		}
		if len(todo) == 0 {
			return nil
		}
		slices.Sort(todo)
		for _, p := range todo {
			done[p] = true
			if err := b.closureAt(b.files[p].src, p); err != nil {
				return err
			}
		}
	}
}

// closure adds what a host binary outside the image tree links.
func (b *layerBuilder) closure(host string) error { return b.closureAt(host, host) }

func (b *layerBuilder) closureAt(host, imagePath string) error {
	f, err := elf.Open(host)
	if err != nil {
		return nil // not ELF
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			data, err := io.ReadAll(p.Open())
			if err == nil {
				if err := b.add(strings.TrimRight(string(data), "\x00")); err != nil {
					return err
				}
			}
		}
	}
	needed, err := f.ImportedLibraries()
	if err != nil || len(needed) == 0 {
		return nil
	}
	dirs := []string{}
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		vals, _ := f.DynString(tag)
		for _, v := range vals {
			for _, d := range strings.Split(v, ":") {
				dirs = append(dirs, strings.ReplaceAll(d, "$ORIGIN", filepath.Dir(imagePath)))
			}
		}
	}
	dirs = append(dirs, libDirs...)
	for _, lib := range needed {
		found := false
		for _, d := range dirs {
			if _, err := os.Stat(filepath.Join(b.root, d, lib)); err == nil {
				if err := b.add(filepath.Join(d, lib)); err != nil {
					return err
				}
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("images: %s needs %s, which is not on this machine", imagePath, lib)
		}
	}
	return nil
}

// write writes the layer tar: parent directories first, in path order,
// with the merged-/usr links of Debian (/bin → usr/bin, …).
func (b *layerBuilder) write(w io.Writer) (BrowserStats, error) {
	for _, l := range [][2]string{{"/bin", "usr/bin"}, {"/sbin", "usr/sbin"}, {"/lib", "usr/lib"}, {"/lib64", "usr/lib64"}} {
		if _, ok := b.files[l[0]]; !ok {
			b.files[l[0]] = layerFile{link: l[1]}
		}
	}
	for _, d := range []string{"/tmp", "/etc", "/proc", "/sys", "/dev", "/run", "/var/tmp", "/usr/local/bin"} {
		mode := os.FileMode(0o755)
		if d == "/tmp" || d == "/var/tmp" {
			mode = 0o1777 | os.ModeSticky
		}
		b.files[d] = layerFile{dir: true, mode: mode}
	}
	extra := map[string]string{
		"/etc/passwd":   "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
		"/etc/group":    "root:x:0:\nnogroup:x:65534:\n",
		"/etc/hostname": "browser-load\n",
	}
	// Parents of everything.
	for p := range b.files {
		for d := filepath.Dir(p); d != "/"; d = filepath.Dir(d) {
			if _, ok := b.files[d]; !ok {
				b.files[d] = layerFile{dir: true, mode: 0o755}
			}
		}
	}
	cw := &countWriter{w: w}
	bw := bufio.NewWriterSize(cw, 1<<20)
	tw := tar.NewWriter(bw)
	epoch := time.Unix(0, 0)
	var st BrowserStats
	paths := slices.Sorted(func(yield func(string) bool) {
		for p := range b.files {
			if !yield(p) {
				return
			}
		}
	})
	for _, p := range paths {
		f := b.files[p]
		name := strings.TrimPrefix(p, "/")
		h := &tar.Header{Name: name, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case f.dir:
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, name+"/", int64(f.mode.Perm())
			if f.mode&os.ModeSticky != 0 {
				h.Mode |= 0o1000
			}
		case f.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.link, 0o777
		default:
			fi, err := os.Stat(f.src)
			if err != nil {
				return st, fmt.Errorf("images: %w", err)
			}
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, int64(f.mode.Perm()), fi.Size()
		}
		if err := tw.WriteHeader(h); err != nil {
			return st, err
		}
		if h.Typeflag == tar.TypeReg {
			if err := copyFile(tw, f.src); err != nil {
				return st, err
			}
			st.Files++
		}
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range extra {
			if !yield(k) {
				return
			}
		}
	}) {
		if _, ok := b.files[name]; ok {
			continue
		}
		data := extra[name]
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(name, "/"), Mode: 0o644, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return st, err
		}
		if _, err := io.WriteString(tw, data); err != nil {
			return st, err
		}
		st.Files++
	}
	if err := tw.Close(); err != nil {
		return st, err
	}
	if err := bw.Flush(); err != nil {
		return st, err
	}
	st.LayerSize = cw.n
	return st, nil
}

func copyFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("images: %s: %w", path, err)
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeDockerArchiveFrom is WriteDockerArchive for a layer too big to hold
// in memory: read twice from a seekable file (once for its digest).
func writeDockerArchiveFrom(w io.Writer, tag string, layer io.ReadSeeker, size int64, cfg ImageConfig) error {
	h := sha256.New()
	if _, err := io.Copy(h, layer); err != nil {
		return err
	}
	if _, err := layer.Seek(0, io.SeekStart); err != nil {
		return err
	}
	layerHex := hex.EncodeToString(h.Sum(nil))
	created := time.Unix(0, 0).UTC()
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux", "created": created, "config": cfg,
		"rootfs":  map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerHex}},
		"history": []map[string]any{{"created": created, "created_by": "bootfleet images build-browser"}},
	})
	if err != nil {
		return err
	}
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	layerName := layerHex + "/layer.tar"
	manifest, err := json.Marshal([]map[string]any{{"Config": configName, "RepoTags": []string{tag}, "Layers": []string{layerName}}})
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	tw := tar.NewWriter(bw)
	if err := tw.WriteHeader(&tar.Header{Name: layerHex + "/", Mode: 0o755, ModTime: created, Typeflag: tar.TypeDir, Format: tar.FormatPAX}); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: layerName, Mode: 0o644, Size: size, ModTime: created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, layer); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{configName, config}, {"manifest.json", manifest}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}
