package httpboot

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/bootfleet/bootfleet/profiles"
)

// node is a machine resolved from a boot request: its facts, the group and
// profile it boots, and its template data.
type node struct {
	snap  *Snapshot
	facts profiles.Facts
	match profiles.Match
	data  profiles.TemplateData
	// nextBoot is set when this boot uses a one-time profile override.
	nextBoot bool
}

// errBadRequest marks errors answered with 400.
var errBadRequest = errors.New("bad request")

// facts reads a machine's facts from the query. iPXE's ${buildarch} and
// ${platform} values are accepted as they come.
func facts(r *http.Request) (profiles.Facts, error) {
	q := r.URL.Query()
	raw := q.Get("mac")
	if raw == "" {
		return profiles.Facts{}, fmt.Errorf("%w: missing mac parameter, e.g. ?mac=52:54:00:aa:00:01", errBadRequest)
	}
	mac, err := profiles.NormalizeMAC(raw)
	if err != nil {
		return profiles.Facts{}, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	f := profiles.Facts{MAC: mac, UUID: strings.ToLower(q.Get("uuid")), Hostname: q.Get("hostname")}
	switch a := q.Get("arch"); a {
	case "":
	case "x86_64", "i386", "amd64":
		f.Arch = "x86_64"
	case "arm64", "aarch64":
		f.Arch = "arm64"
	default:
		return profiles.Facts{}, fmt.Errorf("%w: unknown arch %q (want x86_64 or arm64)", errBadRequest, a)
	}
	switch fw := q.Get("firmware"); fw {
	case "":
	case "bios", "pcbios":
		f.Firmware = "bios"
	case "uefi", "efi":
		f.Firmware = "uefi"
	default:
		return profiles.Facts{}, fmt.Errorf("%w: unknown firmware %q (want bios or uefi)", errBadRequest, fw)
	}
	if len(f.UUID) > 64 || len(f.Hostname) > 253 {
		return profiles.Facts{}, fmt.Errorf("%w: uuid or hostname too long", errBadRequest)
	}
	return f, nil
}

// resolve finds the machine's group and profile in the current snapshot.
func (s *Server) resolve(r *http.Request) (*node, error) {
	f, err := facts(r)
	if err != nil {
		return nil, err
	}
	if s.cfg.Labels != nil {
		f.Labels = s.cfg.Labels(f.MAC)
	}
	snap := s.snap.Load()
	m, err := snap.Set.Match(f)
	if err != nil {
		return nil, err
	}
	n := &node{snap: snap, facts: f, match: m}
	if s.cfg.NextBoot != nil {
		if name := s.cfg.NextBoot(f.MAC); name != "" {
			p, ok := snap.Set.Profiles[name]
			if !ok {
				s.log.Warn("next boot names an unknown profile; booting the matched one", "mac", f.MAC, "profile", name)
			} else {
				n.match.Profile, n.nextBoot = p, true
			}
		}
	}
	n.data = n.match.Data(f)
	n.data.IP = remoteIP(r)
	n.data.ServerURL = s.base(r)
	s.agentData(n)
	return n, nil
}

// agentData adds the agent's token and URL to n's template data. The agent
// goes into a node's config only when its binary is here to be fetched:
// Ignition fails the whole boot on a file it cannot fetch.
func (s *Server) agentData(n *node) {
	if s.cfg.AgentToken != nil && s.agentAvailable(n.facts.Arch) {
		n.data.AgentToken = s.cfg.AgentToken(n.facts.MAC)
		n.data.AgentURL = n.data.ServerURL + "/agent/" + AgentBinaryName(n.facts.Arch)
	}
}

// nodeHandler resolves the machine, runs h, and answers errors with the
// right status and the reason in the body.
func (s *Server) nodeHandler(endpoint string, h func(w http.ResponseWriter, r *http.Request, n *node) (int, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		n, err := s.resolve(r)
		if err != nil {
			status := http.StatusInternalServerError
			switch {
			case errors.Is(err, errBadRequest):
				status = http.StatusBadRequest
			case errors.Is(err, profiles.ErrNoMatch):
				status = http.StatusNotFound
				if f, ferr := facts(r); ferr == nil {
					s.emit(Event{MAC: f.MAC, IP: remoteIP(r), Arch: f.Arch, Firmware: f.Firmware, UUID: f.UUID, Kind: "unmatched", Detail: endpoint})
				}
			}
			s.log.Warn("boot request refused", "endpoint", endpoint, "mac", r.URL.Query().Get("mac"), "status", status, "error", err)
			http.Error(w, err.Error(), status)
			return
		}
		status, err := h(w, r, n)
		level := slog.LevelInfo
		if err != nil {
			level = slog.LevelWarn
			http.Error(w, err.Error(), status)
		}
		if s.log.Enabled(r.Context(), level) { // skip building attributes nobody reads
			attrs := []any{"endpoint", endpoint, "mac", n.facts.MAC, "group", n.match.Group.Name,
				"profile", n.match.Profile.Name, "status", status, "duration", time.Since(start)}
			if err != nil {
				attrs = append(attrs, "error", err)
			}
			s.log.Log(r.Context(), level, "boot request", attrs...)
		}
	})
}
