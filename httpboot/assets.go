package httpboot

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/bootfleet/bootfleet/profiles"
)

// assets serves the profiles' assets/ with Range, ETag and If-None-Match
// (http.ServeContent). Names are resolved inside assets/ only: ".." is
// refused by fs.ValidPath, and symlinks leading out are refused by
// profiles.ResolveFile. A ?mac= query (which bootfleet's scripts add)
// records the download on the machine's timeline.
func (s *Server) assets(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "assets are read-only", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/assets/")
	snap := s.snap.Load()
	fsys := snap.Set.Assets()
	if !fs.ValidPath(name) || name == "." {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	real, err := profiles.ResolveFile(fsys, name)
	if err != nil {
		if errors.Is(err, profiles.ErrOutsideTree) {
			s.log.Warn("asset request refused: outside assets/", "path", name, "remote", r.RemoteAddr)
			http.Error(w, "forbidden: outside assets/", http.StatusForbidden)
			return
		}
		http.Error(w, "not found: "+name, http.StatusNotFound)
		return
	}
	f, err := fsys.Open(real)
	if err != nil {
		http.Error(w, "not found: "+name, http.StatusNotFound)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.Error(w, "not found: "+name, http.StatusNotFound)
		return
	}
	rs, ok := f.(io.ReadSeeker)
	if !ok {
		http.Error(w, "asset not seekable", http.StatusInternalServerError)
		return
	}
	etag, err := s.etags.get(fsys, real, st)
	if err != nil {
		http.Error(w, "read asset: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("ETag", etag)
	if mac := r.URL.Query().Get("mac"); mac != "" && r.Method == http.MethodGet && r.Header.Get("Range") == "" {
		if norm, err := profiles.NormalizeMAC(mac); err == nil {
			s.emit(Event{MAC: norm, IP: remoteIP(r), Kind: "asset", Detail: fmt.Sprintf("/assets/%s (%d bytes)", name, st.Size())})
		}
	}
	http.ServeContent(w, r, name, st.ModTime(), rs)
}

// etagCache keeps strong ETags per file. Files with a modification time get
// one from size and mtime; files without (embedded ones) are hashed once.
type etagCache struct {
	mu   sync.Mutex
	tags map[etagKey]string
}

type etagKey struct {
	fsys  any
	name  string
	size  int64
	mtime time.Time
}

func newETagCache() *etagCache { return &etagCache{tags: map[etagKey]string{}} }

func (c *etagCache) get(fsys fs.FS, name string, st fs.FileInfo) (string, error) {
	if !st.ModTime().IsZero() {
		return fmt.Sprintf(`"%x-%x"`, st.Size(), st.ModTime().UnixNano()), nil
	}
	key := etagKey{fsys: fsys, name: name, size: st.Size()}
	c.mu.Lock()
	tag, ok := c.tags[key]
	c.mu.Unlock()
	if ok {
		return tag, nil
	}
	f, err := fsys.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	tag = `"` + hex.EncodeToString(h.Sum(nil)[:16]) + `"`
	c.mu.Lock()
	if len(c.tags) > 10000 { // bounded: reloads make new FS values
		clear(c.tags)
	}
	c.tags[key] = tag
	c.mu.Unlock()
	return tag, nil
}

// ipxeBinary serves the embedded iPXE binaries (UEFI HTTP boot fetches
// ipxe.efi this way) and their GPL source offer.
func (s *Server) ipxeBinary(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/ipxe/")
	if !s.cfg.Binaries.Has(name) {
		http.Error(w, "not found: no iPXE binary "+name, http.StatusNotFound)
		return
	}
	rs, _, mtime, err := s.cfg.Binaries.Open(name)
	if err != nil {
		http.Error(w, "not found: "+err.Error(), http.StatusNotFound)
		return
	}
	if strings.HasSuffix(name, ".md") {
		w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	http.ServeContent(w, r, name, mtime, rs)
}
