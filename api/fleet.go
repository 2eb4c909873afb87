package api

import (
	"cmp"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bootfleet/bootfleet/agent"
	"github.com/bootfleet/bootfleet/fleet"
	"github.com/bootfleet/bootfleet/profiles"
)

// fleetRoutes adds the units API (admin) and the agents' API (each node's
// own token, acting only on that node).
func (s *Server) fleetRoutes(mux *http.ServeMux) {
	if s.fleet == nil {
		return
	}
	mux.HandleFunc("GET /api/v1/units", s.admin(s.listUnits))
	mux.HandleFunc("POST /api/v1/units", s.admin(s.submitUnits))
	mux.HandleFunc("DELETE /api/v1/units/{name}", s.admin(s.destroyUnit))
	mux.HandleFunc("GET /api/v1/units/{name}/logs", s.admin(s.unitLogs))
	mux.HandleFunc("GET /api/v1/nodes/{mac}/agent-token", s.admin(s.agentToken))

	mux.HandleFunc("POST /api/v1/agent/{mac}/join", s.nodeAuth(s.agentJoin))
	mux.HandleFunc("POST /api/v1/agent/{mac}/heartbeat", s.nodeAuth(s.agentHeartbeat))
	mux.HandleFunc("GET /api/v1/agent/{mac}/orders", s.nodeAuth(s.agentOrders))
	mux.HandleFunc("POST /api/v1/agent/{mac}/logs/{id}", s.nodeAuth(s.agentLogs))
	mux.HandleFunc("GET /api/v1/agent/{mac}/image", s.nodeAuth(s.agentImage))
}

// AgentToken is the answer of GET /api/v1/nodes/{mac}/agent-token.
type AgentToken struct {
	MAC   string `json:"mac"`
	Token string `json:"token"`
}

// agentToken tells the admin a node's agent token: to install the agent by
// hand on a machine that did not boot from bootfleet, or to render its
// Ignition exactly (bootfleet render --agent-token).
func (s *Server) agentToken(w http.ResponseWriter, r *http.Request) {
	mac, err := macParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, AgentToken{MAC: mac, Token: s.tokens.Token(mac)})
}

// nodeAuth checks the node's own token (or the admin token) and hands the
// canonical MAC on.
func (s *Server) nodeAuth(h func(w http.ResponseWriter, r *http.Request, mac string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		mac, err := macParam(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !(s.tokens.Valid(mac, got) || subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) == 1) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bootfleet-agent"`)
			writeError(w, http.StatusUnauthorized, fmt.Errorf("agent token for node %s required: it is in the node's /etc/bootfleet/agent.env, written by its Ignition", mac))
			return
		}
		h(w, r, mac)
	}
}

func (s *Server) agentJoin(w http.ResponseWriter, r *http.Request, mac string) {
	var req agent.JoinRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	if err := s.fleet.Join(ctx, mac, req.Facts); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, agent.JoinResponse{
		HeartbeatInterval: agent.Duration(s.fleet.HeartbeatInterval()),
		NodeTTL:           agent.Duration(s.fleet.NodeTTL()),
	})
}

func (s *Server) agentHeartbeat(w http.ResponseWriter, r *http.Request, mac string) {
	var hb agent.Heartbeat
	if err := decodeBody(r, &hb); err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	if err := s.fleet.Heartbeat(ctx, mac, hb); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.fleet.Orders(mac))
}

// agentOrders is a long poll: it answers when the node's orders differ
// from ?generation= or a log request comes, or after ?wait= (≤ 60s).
func (s *Server) agentOrders(w http.ResponseWriter, r *http.Request, mac string) {
	wait, err := time.ParseDuration(cmp.Or(r.URL.Query().Get("wait"), "0s"))
	if err != nil || wait < 0 || wait > time.Minute {
		s.fail(w, r, fmt.Errorf("%w: wait: want a duration up to 60s", errBadRequest))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	writeJSON(w, http.StatusOK, s.fleet.WaitOrders(ctx, mac, r.URL.Query().Get("generation")))
}

func (s *Server) agentLogs(w http.ResponseWriter, r *http.Request, mac string) {
	var up agent.LogUpload
	dec := http.MaxBytesReader(w, r.Body, 2<<20)
	r.Body = dec
	if err := decodeBody(r, &up); err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	if err := s.fleet.PutLogs(ctx, mac, r.PathValue("id"), up); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// agentImage serves a container image archive for air-gapped nodes.
func (s *Server) agentImage(w http.ResponseWriter, r *http.Request, _ string) {
	ref := r.URL.Query().Get("ref")
	if s.images == nil || ref == "" {
		writeError(w, http.StatusNotFound, fmt.Errorf("no image archive for %q on this server", ref))
		return
	}
	path, ok := s.images(ref)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("no image archive for %q on this server (add one with bootfleet images import-container)", ref))
		return
	}
	f, err := os.Open(path)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	if st, err := f.Stat(); err == nil {
		w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
	}
	_, _ = io.Copy(w, f)
}

func (s *Server) listUnits(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	units, err := s.fleet.Units(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, units)
}

// submitUnits takes a unit file (YAML, one unit per document) as the body
// and answers the units stored; a bad file is a 400 with every error as
// file:line:col.
func (s *Server) submitUnits(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: body: %v", errBadRequest, err))
		return
	}
	name := cmp.Or(r.URL.Query().Get("file"), "units.yaml")
	units, err := fleet.Parse(name, body)
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	if err := s.fleet.SubmitUnits(ctx, units); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, units)
}

func (s *Server) destroyUnit(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	if err := s.fleet.DestroyUnit(ctx, r.PathValue("name")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// UnitLogs is the answer of GET /api/v1/units/{name}/logs.
type UnitLogs struct {
	Unit      string `json:"unit"`
	Replica   int    `json:"replica"`
	Node      string `json:"node"`
	Container string `json:"container"`
	Logs      string `json:"logs"`
}

func (s *Server) unitLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	replica, err := strconv.Atoi(cmp.Or(q.Get("replica"), "0"))
	if err != nil || replica < 0 {
		s.fail(w, r, fmt.Errorf("%w: replica: want a number from 0", errBadRequest))
		return
	}
	tail, err := strconv.Atoi(cmp.Or(q.Get("tail"), "100"))
	if err != nil || tail < 0 || tail > 100000 {
		s.fail(w, r, fmt.Errorf("%w: tail: want a number of lines up to 100000", errBadRequest))
		return
	}
	node := q.Get("node")
	if node != "" {
		if node, err = profiles.NormalizeMAC(node); err != nil {
			s.fail(w, r, fmt.Errorf("%w: node: %v", errBadRequest, err))
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	up, node, err := s.fleet.RequestLogs(ctx, r.PathValue("name"), replica, node, tail)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			writeError(w, http.StatusGatewayTimeout, err)
			return
		}
		s.fail(w, r, err)
		return
	}
	if up.Error != "" {
		writeError(w, http.StatusBadGateway, fmt.Errorf("node %s: %s", node, up.Error))
		return
	}
	writeJSON(w, http.StatusOK, UnitLogs{Unit: r.PathValue("name"), Replica: replica, Node: node, Container: up.Container, Logs: up.Logs})
}
