package httpboot

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// AgentBinaryName is the file name of the agent binary for a machine
// architecture (x86_64 or arm64, as in facts): bootfleet-agent-<goarch>.
func AgentBinaryName(arch string) string {
	if arch == "arm64" {
		return "bootfleet-agent-arm64"
	}
	return "bootfleet-agent-amd64"
}

// agentAvailable says whether the agent binary for arch is in the agent
// dir, looking again at most every few seconds (binaries may be added
// while the server runs).
func (s *Server) agentAvailable(arch string) bool {
	if s.cfg.AgentAvailable != nil {
		return s.cfg.AgentAvailable(arch)
	}
	if s.cfg.AgentDir == "" {
		return false
	}
	name := AgentBinaryName(arch)
	now := time.Now()
	if v, ok := s.agentSeen.Load(name); ok {
		if e := v.(agentCheck); now.Sub(e.at) < 5*time.Second {
			return e.ok
		}
	}
	fi, err := os.Stat(filepath.Join(s.cfg.AgentDir, name))
	ok := err == nil && fi.Mode().IsRegular()
	s.agentSeen.Store(name, agentCheck{ok: ok, at: now})
	return ok
}

type agentCheck struct {
	ok bool
	at time.Time
}

// agentBinary serves /agent/bootfleet-agent-<goarch> from the agent dir.
func (s *Server) agentBinary(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/agent/")
	if name != "bootfleet-agent-amd64" && name != "bootfleet-agent-arm64" {
		http.Error(w, fmt.Sprintf("no agent binary %q: there are bootfleet-agent-amd64 and bootfleet-agent-arm64", name), http.StatusNotFound)
		return
	}
	if s.cfg.AgentDir == "" {
		http.Error(w, "this server serves no agent binaries (start it with --agent-dir)", http.StatusNotFound)
		return
	}
	path := filepath.Join(s.cfg.AgentDir, name)
	f, err := os.Open(path)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, fs.ErrNotExist) {
			status = http.StatusNotFound
		}
		s.log.Warn("agent binary not served", "path", path, "error", err)
		http.Error(w, fmt.Sprintf("agent binary %s is missing on the server (build it with make build, or set --agent-dir)", name), status)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		http.Error(w, "agent binary is not a file", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, name, st.ModTime(), f)
}
