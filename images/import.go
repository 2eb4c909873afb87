package images

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Imported is one file of an imported image.
type Imported struct {
	Image  string `json:"image"`
	File   string `json:"file"`
	Path   string `json:"path"`  // on disk
	Asset  string `json:"asset"` // as profiles name it: /assets/<image>/<file>
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

var imageNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// Import copies files (a kernel, initrds, a rootfs: e.g. the Flatcar or
// Fedora CoreOS PXE images a user downloaded) into assets/<name>/ of a
// profiles directory, where bootfleet serves them at /assets/<name>/, and
// records their sha256 in assets/<name>/SHA256SUMS. An existing image of
// that name gets the files added or replaced.
func Import(profilesDir, name string, files []string) ([]Imported, error) {
	if !imageNameRE.MatchString(name) {
		return nil, fmt.Errorf("images: name %q: use lowercase letters, digits, '.', '_' and '-'", name)
	}
	if len(files) == 0 {
		return nil, errors.New("images: no files to import")
	}
	dir := filepath.Join(profilesDir, "assets", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	sums, _ := readSums(dir)
	var out []Imported
	for _, src := range files {
		base := filepath.Base(src)
		if base == "SHA256SUMS" || strings.HasPrefix(base, ".") {
			return nil, fmt.Errorf("images: %s: that file name is reserved", src)
		}
		sum, size, err := copyHashed(src, filepath.Join(dir, base))
		if err != nil {
			return nil, fmt.Errorf("images: import %s: %w", src, err)
		}
		sums[base] = sum
		out = append(out, Imported{Image: name, File: base, Path: filepath.Join(dir, base), Asset: "/assets/" + name + "/" + base, Size: size, SHA256: sum})
	}
	if err := writeSums(dir, sums); err != nil {
		return nil, err
	}
	return out, nil
}

// List returns the imported images of a profiles directory (every
// assets/<name>/ with a SHA256SUMS), each file checked against its sum.
func List(profilesDir string) ([]Imported, error) {
	root := filepath.Join(profilesDir, "assets")
	entries, err := os.ReadDir(root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("images: %w", err)
	}
	var out []Imported
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		sums, err := readSums(dir)
		if err != nil || len(sums) == 0 {
			continue
		}
		for _, file := range slices.Sorted(func(yield func(string) bool) {
			for k := range sums {
				if !yield(k) {
					return
				}
			}
		}) {
			im := Imported{Image: e.Name(), File: file, Path: filepath.Join(dir, file), Asset: "/assets/" + e.Name() + "/" + file, SHA256: sums[file]}
			if fi, err := os.Stat(im.Path); err == nil {
				im.Size = fi.Size()
			}
			out = append(out, im)
		}
	}
	return out, nil
}

// Verify recomputes a file's sha256 and says whether it matches.
func (im Imported) Verify() (bool, error) {
	f, err := os.Open(im.Path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, err
	}
	return hex.EncodeToString(h.Sum(nil)) == im.SHA256, nil
}

func copyHashed(src, dst string) (string, int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", 0, err
	}
	defer in.Close()
	tmp := dst + ".import-tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", 0, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func readSums(dir string) (map[string]string, error) {
	sums := map[string]string{}
	f, err := os.Open(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		return sums, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, file, ok := strings.Cut(sc.Text(), "  ")
		if ok && len(sum) == 64 {
			sums[file] = sum
		}
	}
	return sums, sc.Err()
}

func writeSums(dir string, sums map[string]string) error {
	var b strings.Builder
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range sums {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(&b, "%s  %s\n", sums[k], k)
	}
	return os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(b.String()), 0o644)
}
