package agent

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// SkippedError lists the parts of an Ignition config that ApplyIgnition
// does not apply (disks, users, …): a minimal node image has no use for
// them, and a real Ignition does them on real distributions.
type SkippedError struct{ Parts []string }

func (e *SkippedError) Error() string {
	return "not applied (only real Ignition does these): " + strings.Join(e.Parts, ", ")
}

// ApplyIgnition applies the parts of an Ignition 3.x config that a minimal
// node image (the lab's busybox initramfs) needs: storage.directories,
// storage.files (data: and http(s) sources, optional gzip), storage.links
// and systemd.units (written to etc/systemd/system). Paths are taken under
// root and may not escape it. It returns the paths written.
func ApplyIgnition(ctx context.Context, config []byte, root string) ([]string, error) {
	var cfg struct {
		Ignition struct {
			Version string `json:"version"`
		} `json:"ignition"`
		Storage struct {
			Directories []struct {
				Path string `json:"path"`
				Mode *int   `json:"mode"`
			} `json:"directories"`
			Files []struct {
				Path     string `json:"path"`
				Mode     *int   `json:"mode"`
				Contents struct {
					Source      *string `json:"source"`
					Compression *string `json:"compression"`
				} `json:"contents"`
			} `json:"files"`
			Links []struct {
				Path   string `json:"path"`
				Target string `json:"target"`
				Hard   *bool  `json:"hard"`
			} `json:"links"`
			Disks       []json.RawMessage `json:"disks"`
			Filesystems []json.RawMessage `json:"filesystems"`
			Raid        []json.RawMessage `json:"raid"`
		} `json:"storage"`
		Systemd struct {
			Units []struct {
				Name     string  `json:"name"`
				Contents *string `json:"contents"`
				Enabled  *bool   `json:"enabled"`
			} `json:"units"`
		} `json:"systemd"`
		Passwd struct {
			Users  []json.RawMessage `json:"users"`
			Groups []json.RawMessage `json:"groups"`
		} `json:"passwd"`
	}
	if err := json.Unmarshal(config, &cfg); err != nil {
		return nil, fmt.Errorf("ignition config: %w", err)
	}
	if !strings.HasPrefix(cfg.Ignition.Version, "3.") {
		return nil, fmt.Errorf("ignition config: version %q: want 3.x", cfg.Ignition.Version)
	}
	var written []string
	under := func(p string) (string, error) {
		if !filepath.IsAbs(p) {
			return "", fmt.Errorf("path %q is not absolute", p)
		}
		full := filepath.Join(root, filepath.Clean(p))
		if rel, err := filepath.Rel(root, full); err != nil || strings.HasPrefix(rel, "..") {
			return "", fmt.Errorf("path %q escapes %s", p, root)
		}
		return full, nil
	}
	modeOf := func(m *int, def os.FileMode) os.FileMode {
		if m == nil {
			return def
		}
		return os.FileMode(*m) & 0o7777
	}
	for _, d := range cfg.Storage.Directories {
		full, err := under(d.Path)
		if err != nil {
			return written, err
		}
		if err := os.MkdirAll(full, modeOf(d.Mode, 0o755)); err != nil {
			return written, err
		}
	}
	for _, f := range cfg.Storage.Files {
		full, err := under(f.Path)
		if err != nil {
			return written, err
		}
		var data []byte
		if f.Contents.Source != nil {
			if data, err = fetchSource(ctx, *f.Contents.Source); err != nil {
				return written, fmt.Errorf("file %s: %w", f.Path, err)
			}
		}
		if f.Contents.Compression != nil && *f.Contents.Compression == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				return written, fmt.Errorf("file %s: %w", f.Path, err)
			}
			if data, err = io.ReadAll(zr); err != nil {
				return written, fmt.Errorf("file %s: %w", f.Path, err)
			}
		}
		if err := writeFile(full, data, modeOf(f.Mode, 0o644)); err != nil {
			return written, err
		}
		written = append(written, f.Path)
	}
	for _, l := range cfg.Storage.Links {
		full, err := under(l.Path)
		if err != nil {
			return written, err
		}
		_ = os.MkdirAll(filepath.Dir(full), 0o755)
		_ = os.Remove(full)
		if l.Hard != nil && *l.Hard {
			target, err := under(l.Target)
			if err != nil {
				return written, err
			}
			err = os.Link(target, full)
			if err != nil {
				return written, err
			}
		} else if err := os.Symlink(l.Target, full); err != nil {
			return written, err
		}
		written = append(written, l.Path)
	}
	for _, u := range cfg.Systemd.Units {
		if u.Contents == nil || strings.ContainsAny(u.Name, "/\\") || u.Name == "" {
			continue
		}
		p := "/etc/systemd/system/" + u.Name
		full, _ := under(p)
		if err := writeFile(full, []byte(*u.Contents), 0o644); err != nil {
			return written, err
		}
		written = append(written, p)
	}
	var skipped []string
	for name, n := range map[string]int{"storage.disks": len(cfg.Storage.Disks), "storage.filesystems": len(cfg.Storage.Filesystems),
		"storage.raid": len(cfg.Storage.Raid), "passwd.users": len(cfg.Passwd.Users), "passwd.groups": len(cfg.Passwd.Groups)} {
		if n > 0 {
			skipped = append(skipped, name)
		}
	}
	if len(skipped) > 0 {
		return written, &SkippedError{Parts: skipped}
	}
	return written, nil
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".bootfleet-tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// fetchSource reads an Ignition contents source: a data: URL or an
// http(s) URL.
func fetchSource(ctx context.Context, src string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(src, "data:"); ok {
		meta, payload, ok := strings.Cut(rest, ",")
		if !ok {
			return nil, fmt.Errorf("data URL without a comma")
		}
		if strings.HasSuffix(meta, ";base64") {
			return base64.StdEncoding.DecodeString(payload)
		}
		s, err := url.PathUnescape(payload)
		return []byte(s), err
	}
	u, err := url.Parse(src)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("source %q: only data:, http and https are supported", src)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", src, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<30))
}
