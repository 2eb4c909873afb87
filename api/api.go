// Package api is bootfleet's HTTP API under /api/v1: the node inventory and
// units for operators and the CLI, and the agents' join, heartbeat and
// orders. Calls that change or reveal configuration need the admin token
// (Authorization: Bearer <token>, or the dashboard's AdminCookie); agent calls need the node's own token
// and act only on that node.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bootfleet/bootfleet/dhcp"
	"github.com/bootfleet/bootfleet/fleet"
	"github.com/bootfleet/bootfleet/loadjob"
	"github.com/bootfleet/bootfleet/profiles"
	"github.com/bootfleet/bootfleet/registry"
)

// Config configures the API handler.
type Config struct {
	Registry   *registry.Registry
	AdminToken string
	Log        *slog.Logger
	// Leases lists the DHCP leases of this server (nil: no DHCP).
	Leases func() []dhcp.Lease
	// Fleet and Tokens serve units and the agents (nil: no fleet API).
	Fleet  *fleet.Fleet
	Tokens *fleet.Tokens
	// Images finds the container image archive for an image reference,
	// for agents on air-gapped nodes (nil: none).
	Images func(ref string) (path string, ok bool)
	// Metrics receives the API's metrics (nil: a registry of its own).
	Metrics prometheus.Registerer
	// Load serves distributed load jobs (nil: none).
	Load *loadjob.Manager
}

// Server serves /api/v1.
type Server struct {
	reg     *registry.Registry
	token   string
	log     *slog.Logger
	leases  func() []dhcp.Lease
	fleet   *fleet.Fleet
	tokens  *fleet.Tokens
	images  func(ref string) (string, bool)
	metrics *metrics
	load    *loadjob.Manager
}

// New returns the API server.
func New(cfg Config) (*Server, error) {
	if cfg.Registry == nil {
		return nil, errors.New("api: no registry")
	}
	if cfg.AdminToken == "" {
		return nil, errors.New("api: empty admin token")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	leases := cfg.Leases
	if leases == nil {
		leases = func() []dhcp.Lease { return []dhcp.Lease{} }
	}
	if (cfg.Fleet == nil) != (cfg.Tokens == nil) {
		return nil, errors.New("api: fleet and tokens go together")
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	return &Server{reg: cfg.Registry, token: cfg.AdminToken, log: log, leases: leases,
		fleet: cfg.Fleet, tokens: cfg.Tokens, images: cfg.Images, metrics: m, load: cfg.Load}, nil
}

// Handler returns the /api/v1 routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/nodes", s.admin(s.listNodes))
	mux.HandleFunc("GET /api/v1/nodes/{mac}", s.admin(s.getNode))
	mux.HandleFunc("DELETE /api/v1/nodes/{mac}", s.admin(s.forgetNode))
	mux.HandleFunc("PATCH /api/v1/nodes/{mac}/labels", s.admin(s.labelNode))
	mux.HandleFunc("PUT /api/v1/nodes/{mac}/next-boot", s.admin(s.nextBoot))
	mux.HandleFunc("GET /api/v1/leases", s.admin(func(w http.ResponseWriter, r *http.Request) {
		l := s.leases()
		if l == nil {
			l = []dhcp.Lease{}
		}
		writeJSON(w, http.StatusOK, l)
	}))
	s.fleetRoutes(mux)
	s.loadRoutes(mux)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no such API call: %s %s", r.Method, r.URL.Path))
	})
	return s.metrics.instrument(mux)
}

// RequireAdmin wraps a handler outside the API (e.g. the profiler) with the
// admin-token check.
func (s *Server) RequireAdmin(h http.Handler) http.Handler { return s.admin(h.ServeHTTP) }

// AdminCookie is the cookie the web dashboard's login sets to the admin
// token; the API accepts it in place of the Authorization header.
const AdminCookie = "bootfleet_admin"

// IsAdmin reports whether r carries token, as a bearer token or in the
// AdminCookie.
func IsAdmin(r *http.Request, token string) bool {
	if token == "" {
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		c, err := r.Cookie(AdminCookie)
		if err != nil {
			return false
		}
		got = c.Value
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !IsAdmin(r, s.token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bootfleet"`)
			writeError(w, http.StatusUnauthorized, errors.New("admin token required: pass --token, set BOOTFLEET_TOKEN, or run on the server (its data dir holds admin.token)"))
			return
		}
		h(w, r)
	}
}

// statusOf maps registry errors to HTTP status codes, in one place.
func statusOf(err error) int {
	switch {
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, fleet.ErrNotFound), errors.Is(err, loadjob.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, loadjob.ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, loadjob.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, errBadRequest), errors.Is(err, loadjob.ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

var errBadRequest = errors.New("bad request")

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Error is the body of every failed API call.
type Error struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, Error{Error: err.Error()})
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	if status >= 500 {
		s.log.Error("api", "method", r.Method, "path", r.URL.Path, "error", err)
	}
	writeError(w, status, err)
}

func macParam(r *http.Request) (string, error) {
	mac, err := profiles.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		return "", fmt.Errorf("%w: %v", errBadRequest, err)
	}
	return mac, nil
}

func ctxTimeout(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 10*time.Second)
}

// listNodes answers GET /api/v1/nodes, or with ?watch=1 streams the list
// and then every change as newline-delimited JSON.
func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("watch") != "" {
		s.watchNodes(w, r)
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	nodes, err := s.reg.Nodes(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, nodes)
}

func (s *Server) watchNodes(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, errors.New("streaming unsupported"))
		return
	}
	// Watch first, then list, so no change falls between the two.
	changes := s.reg.Watch(r.Context())
	ctx, cancel := ctxTimeout(r)
	nodes, err := s.reg.Nodes(ctx)
	cancel()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	for _, n := range nodes {
		_ = enc.Encode(registry.Change{Node: n})
	}
	flusher.Flush()
	for c := range changes {
		if err := enc.Encode(c); err != nil {
			return
		}
		flusher.Flush()
	}
}

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) {
	mac, err := macParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	n, err := s.reg.Node(ctx, mac)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if n.Timeline == nil {
		n.Timeline = []registry.Event{}
	}
	writeJSON(w, http.StatusOK, n)
}

func (s *Server) forgetNode(w http.ResponseWriter, r *http.Request) {
	mac, err := macParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	if err := s.reg.Forget(ctx, mac); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// LabelRequest is the body of PATCH /api/v1/nodes/{mac}/labels.
type LabelRequest struct {
	Set    map[string]string `json:"set,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

func (s *Server) labelNode(w http.ResponseWriter, r *http.Request) {
	updateNode(s, w, r, func(ctx context.Context, mac string, req *LabelRequest) (registry.Node, error) {
		for k := range req.Set {
			if err := checkLabelKey(k); err != nil {
				return registry.Node{}, err
			}
		}
		return s.reg.Label(ctx, mac, req.Set, req.Remove)
	})
}

// updateNode serves a call that changes one node: the MAC from the path,
// the JSON body decoded strictly into a Req, then change within the
// request's timeout; it answers the changed node or the error.
func updateNode[Req any](s *Server, w http.ResponseWriter, r *http.Request, change func(ctx context.Context, mac string, req *Req) (registry.Node, error)) {
	mac, err := macParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var req Req
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	n, err := change(ctx, mac, &req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, n)
}

// checkLabelKey refuses label names that selectors could not name or that
// shadow a fact.
func checkLabelKey(k string) error {
	switch k {
	case profiles.KeyMAC, profiles.KeyArch, profiles.KeyFirmware, profiles.KeyUUID, profiles.KeyHostname:
		return fmt.Errorf("%w: label %q would shadow the node fact of that name", errBadRequest, k)
	}
	if k == "" || len(k) > 63 || strings.ContainsFunc(k, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}) {
		return fmt.Errorf("%w: label %q: use letters, digits, '.', '_' and '-' (at most 63)", errBadRequest, k)
	}
	return nil
}

// NextBootRequest is the body of PUT /api/v1/nodes/{mac}/next-boot.
type NextBootRequest struct {
	Profile string `json:"profile"`
}

func (s *Server) nextBoot(w http.ResponseWriter, r *http.Request) {
	updateNode(s, w, r, func(ctx context.Context, mac string, req *NextBootRequest) (registry.Node, error) {
		return s.reg.SetNextBoot(ctx, mac, req.Profile)
	})
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: body: %v", errBadRequest, err)
	}
	return nil
}
