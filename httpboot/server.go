// Package httpboot serves the boot side over HTTP: the iPXE and GRUB
// scripts, Ignition and cloud-config, metadata and assets of each machine,
// chosen by its MAC. It provides an http.Handler; the caller owns the
// listener. The profiles and renderer in use are swapped atomically on
// reload.
package httpboot

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bootfleet/bootfleet/ipxe"
	"github.com/bootfleet/bootfleet/profiles"
)

// Renderer renders per-node configs; ignition.Renderer is the real one.
type Renderer interface {
	Ignition(m profiles.Match, d profiles.TemplateData) (cfg []byte, warnings []string, err error)
	CloudConfig(m profiles.Match, d profiles.TemplateData) ([]byte, error)
}

// Snapshot is the profiles set being served and its renderer.
type Snapshot struct {
	Set      *profiles.Set
	Renderer Renderer
}

// Event is one boot step served to a machine, for the registry's timeline.
type Event struct {
	Time     time.Time
	MAC      string
	IP       string
	Arch     string
	Firmware string
	UUID     string
	Group    string
	Profile  string
	Kind     string // ipxe, grub, ignition, cloud-config, kernel, initrd, unmatched
	Detail   string
}

// Config configures the handler.
type Config struct {
	// PublicURL is the base URL nodes use to reach this server; empty means
	// the scheme and Host of each request.
	PublicURL string
	Log       *slog.Logger
	// Metrics registers the handler's metrics; /metrics serves its
	// Gatherer when it is also one (a *prometheus.Registry).
	Metrics prometheus.Registerer
	// Health reports a problem for /healthz (still 200: the server serves
	// the last good profiles) or nil.
	Health func() error
	// Labels returns the operator labels of a machine, for matching.
	Labels func(mac string) map[string]string
	// NextBoot returns a profile the machine boots once instead of its
	// matched one ("" for none); ClearNextBoot is called once that boot has
	// fetched its config (or its script, for a profile without one).
	NextBoot      func(mac string) string
	ClearNextBoot func(mac string)
	// OnEvent receives every boot step served. It must not block.
	OnEvent func(Event)
	// Binaries are the iPXE binaries served at /ipxe/<name> (UEFI HTTP boot).
	Binaries ipxe.Binaries
	// AgentToken returns a machine's agent token for its templates and
	// Ignition (nil: nodes get no agent).
	AgentToken func(mac string) string
	// AgentDir holds the agent binaries served at
	// /agent/bootfleet-agent-<goarch> (amd64, arm64).
	AgentDir string
	// AgentAvailable, if set, says whether nodes of an arch get the agent;
	// by default, when its binary is in AgentDir.
	AgentAvailable func(arch string) bool
}

// Server is the boot-side HTTP handler.
type Server struct {
	cfg     Config
	snap    atomic.Pointer[Snapshot]
	log     *slog.Logger
	metrics *metrics
	etags   *etagCache
	mux     *http.ServeMux
	// agentSeen caches whether each agent binary exists (agentCheck).
	agentSeen sync.Map
	// warm and warmPending bound the background Ignition renders
	// (warmIgnition): running, and running or waiting.
	warm        chan struct{}
	warmPending atomic.Int64
}

// New returns a Server serving snap.
func New(cfg Config, snap Snapshot) (*Server, error) {
	if snap.Set == nil || snap.Renderer == nil {
		return nil, errors.New("httpboot: snapshot needs a profiles set and a renderer")
	}
	if cfg.PublicURL != "" {
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("httpboot: public URL %q: want http://host:port", cfg.PublicURL)
		}
		cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Log, metrics: m, etags: newETagCache(), warm: make(chan struct{}, runtime.GOMAXPROCS(0))}
	s.snap.Store(&snap)
	s.routes()
	return s, nil
}

// Swap makes snap the served set; requests in flight finish on the old one.
func (s *Server) Swap(snap Snapshot) { s.snap.Store(&snap) }

// Handler returns the boot-side routes.
func (s *Server) Handler() http.Handler { return s.mux }

func (s *Server) routes() {
	mux := http.NewServeMux()
	boot := func(endpoint string, h func(w http.ResponseWriter, r *http.Request, n *node) (int, error)) http.Handler {
		return s.instrument(endpoint, s.nodeHandler(endpoint, h))
	}
	mux.Handle("/boot.ipxe", s.instrument("boot.ipxe", http.HandlerFunc(s.bootIPXE)))
	mux.Handle("/ipxe", boot("ipxe", s.ipxeScript))
	mux.Handle("/grub.cfg", boot("grub", s.grubConfig))
	mux.Handle("/ignition", boot("ignition", s.ignition))
	mux.Handle("/cloud-config", boot("cloud-config", s.cloudConfig))
	mux.Handle("/metadata", boot("metadata", s.metadata))
	mux.Handle("/assets/", s.instrument("assets", http.HandlerFunc(s.assets)))
	mux.Handle("/ipxe/", s.instrument("ipxe-binary", http.HandlerFunc(s.ipxeBinary)))
	mux.Handle("/agent/", s.instrument("agent", http.HandlerFunc(s.agentBinary)))
	mux.Handle("/healthz", s.instrument("healthz", http.HandlerFunc(s.healthz)))
	if g, ok := s.cfg.Metrics.(prometheus.Gatherer); ok {
		mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	mux.Handle("/", s.instrument("other", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not found: bootfleet serves /boot.ipxe, /ipxe, /grub.cfg, /ignition, /cloud-config, /metadata, /assets/, /ipxe/<binary>, /healthz, /metrics", http.StatusNotFound)
	})))
	s.mux = mux
}

// base is the URL nodes use to reach this server.
func (s *Server) base(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return s.cfg.PublicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Server) emit(e Event) {
	if s.cfg.OnEvent != nil {
		e.Time = time.Now().UTC()
		s.cfg.OnEvent(e)
	}
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	return host
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if s.cfg.Health != nil {
		if err := s.cfg.Health(); err != nil {
			// Still serving (the last good profiles): 200, with the reason.
			fmt.Fprintf(w, "degraded\n%v\n", err)
			return
		}
	}
	fmt.Fprintln(w, "ok")
}
