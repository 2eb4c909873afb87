package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config configures an Agent.
type Config struct {
	// Servers are the bootfleet servers' base URLs; the agent uses the
	// first that answers and fails over to the next.
	Servers []string
	// Node is this node's MAC (lowercase, colons), Token its agent token.
	Node  string
	Token string
	// Docker is the container runtime's Engine API.
	Docker  *Docker
	Version string
	Log     *slog.Logger
	// StopGrace is how long a container may take to stop before it is
	// killed; default 10s.
	StopGrace time.Duration
}

// Agent runs on a node: it joins, heartbeats and reconciles containers.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	hc     *http.Client // calls that answer at once
	pollHC *http.Client // long polls

	mu        sync.Mutex
	server    int // index into cfg.Servers of the server in use
	orders    Orders
	status    map[string]ContainerStatus // by container name
	prevStats map[string]Stats           // by container ID, for CPU %
	restarts  map[string]time.Time       // container ID → last restart by the agent
	work      chan []Assignment          // the latest assignments, for the reconciler
	removing  map[string]bool            // container IDs being removed in the background
}

// New checks the config and returns an Agent.
func New(cfg Config) (*Agent, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("agent: no server (set BOOTFLEET_SERVER)")
	}
	for i, s := range cfg.Servers {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("agent: server %q: want http://host:port or https://host:port", s)
		}
		cfg.Servers[i] = strings.TrimRight(s, "/")
	}
	if cfg.Node == "" || cfg.Token == "" {
		return nil, errors.New("agent: node and token are required (BOOTFLEET_NODE, BOOTFLEET_TOKEN)")
	}
	if cfg.Docker == nil {
		return nil, errors.New("agent: no container runtime")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 10 * time.Second
	}
	return &Agent{
		cfg:       cfg,
		log:       cfg.Log,
		hc:        &http.Client{Timeout: 15 * time.Second},
		pollHC:    &http.Client{Timeout: 45 * time.Second},
		status:    map[string]ContainerStatus{},
		prevStats: map[string]Stats{},
		restarts:  map[string]time.Time{},
		work:      make(chan []Assignment, 1),
		removing:  map[string]bool{},
	}, nil
}

// errAuth means the server refused the node's token: retrying the same
// token is useless until the operator fixes it, so the agent waits longer.
var errAuth = errors.New("token refused")

// call sends one request to the current server and decodes the answer. A
// server that cannot be reached makes the agent move to the next one.
func (a *Agent) call(ctx context.Context, hc *http.Client, method, path string, in, out any) error {
	a.mu.Lock()
	base := a.cfg.Servers[a.server]
	a.mu.Unlock()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+"/api/v1/agent/"+url.PathEscape(a.cfg.Node)+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.cfg.Token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			a.failover()
		}
		return fmt.Errorf("%s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return fmt.Errorf("%s: %w", base, errAuth)
	}
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		if resp.StatusCode >= 500 {
			a.failover()
		}
		return fmt.Errorf("%s %s: %d %s", base, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(out)
}

func (a *Agent) failover() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cfg.Servers) > 1 {
		a.server = (a.server + 1) % len(a.cfg.Servers)
		a.log.Info("trying the next server", "server", a.cfg.Servers[a.server])
	}
}

// Run joins and stays joined until ctx ends, reconnecting with backoff
// when the server goes away (a restart, a failover).
func (a *Agent) Run(ctx context.Context) error {
	// Reconciling (image loads, containers that take their grace period to
	// stop) never holds up heartbeats: it has a goroutine of its own.
	go a.reconciler(ctx)
	backoff := 500 * time.Millisecond
	for {
		joined, err := a.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if joined {
			backoff = 500 * time.Millisecond
		}
		wait := backoff + rand.N(backoff/2+1)
		if errors.Is(err, errAuth) {
			wait = max(wait, 30*time.Second)
		}
		a.log.Warn("disconnected from bootfleet; retrying", "error", err, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(backoff*2, 8*time.Second)
	}
}

// session joins once and then heartbeats, polls for orders and reconciles
// until a heartbeat fails. joined says whether the join succeeded.
func (a *Agent) session(ctx context.Context) (joined bool, err error) {
	var jr JoinResponse
	facts := a.facts(ctx)
	if err := a.call(ctx, a.hc, http.MethodPost, "/join", JoinRequest{Facts: facts}, &jr); err != nil {
		return false, fmt.Errorf("join: %w", err)
	}
	interval := time.Duration(jr.HeartbeatInterval)
	if interval <= 0 {
		interval = 3 * time.Second
	}
	a.log.Info("joined", "server", a.currentServer(), "heartbeat", interval)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	orders := make(chan Orders, 1)
	send := func(o Orders) {
		select {
		case orders <- o:
		default: // a newer one replaces the pending one
			select {
			case <-orders:
			default:
			}
			orders <- o
		}
	}
	go a.poll(ctx, send)

	// The first heartbeat fetches the orders; nothing is touched before.
	beat := time.NewTimer(0)
	defer beat.Stop()
	resync := time.NewTicker(10 * time.Second)
	defer resync.Stop()
	// A container runtime that did not answer at join (on a node, the
	// agent may start before the Docker or podman socket) is asked again
	// until it answers; then the node joins again with the new facts, so
	// the server sees the runtime without waiting for a reconnect.
	var runtimeCheck <-chan time.Time
	if facts.RuntimeError != "" {
		tick := time.NewTicker(runtimeRecheck)
		defer tick.Stop()
		runtimeCheck = tick.C
	}
	newFacts := make(chan Facts, 1)
	checking := false
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-runtimeCheck:
			if !checking { // in the background: a slow runtime must not delay heartbeats
				checking = true
				go func() { newFacts <- a.facts(ctx) }()
			}
		case f := <-newFacts:
			checking = false
			if f.RuntimeError != "" {
				continue
			}
			if err := a.call(ctx, a.hc, http.MethodPost, "/join", JoinRequest{Facts: f}, &jr); err != nil {
				return true, fmt.Errorf("join with the runtime's facts: %w", err)
			}
			runtimeCheck = nil
			a.log.Info("container runtime answers now; joined again with its facts", "runtime", f.Runtime, "version", f.RuntimeVersion)
		case <-beat.C:
			var o Orders
			if err := a.call(ctx, a.hc, http.MethodPost, "/heartbeat", Heartbeat{Containers: a.sample(ctx)}, &o); err != nil {
				return true, fmt.Errorf("heartbeat: %w", err)
			}
			beat.Reset(interval)
			a.handle(ctx, o)
		case o := <-orders:
			a.handle(ctx, o)
		case <-resync.C:
			a.mu.Lock()
			o := a.orders
			a.mu.Unlock()
			a.want(o.Assignments) // restarts what died, re-creates what vanished
		}
	}
}

// runtimeRecheck is how often a container runtime that did not answer at
// join is asked again.
const runtimeRecheck = 2 * time.Second

func (a *Agent) currentServer() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg.Servers[a.server]
}

// poll waits for new orders with a long poll, so assignments and log
// requests arrive at once without frequent requests.
func (a *Agent) poll(ctx context.Context, send func(Orders)) {
	gen := ""
	for ctx.Err() == nil {
		var o Orders
		err := a.call(ctx, a.pollHC, http.MethodGet, "/orders?wait=30s&generation="+url.QueryEscape(gen), nil, &o)
		if err != nil {
			select { // the heartbeat notices a dead server; just slow down
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			continue
		}
		gen = o.Generation
		send(o)
	}
}

// handle applies orders: a new generation reconciles; log requests are
// answered in the background.
func (a *Agent) handle(ctx context.Context, o Orders) {
	a.mu.Lock()
	changed := o.Generation != a.orders.Generation || a.orders.Assignments == nil
	a.orders = o
	if a.orders.Assignments == nil {
		a.orders.Assignments = []Assignment{}
	}
	a.mu.Unlock()
	for _, lr := range o.LogRequests {
		go a.sendLogs(ctx, lr)
	}
	if changed {
		a.log.Info("new orders", "generation", o.Generation, "assignments", len(o.Assignments))
		a.want(o.Assignments)
	}
}

// want hands the reconciler the latest assignments; ones it has not
// started on yet are replaced.
func (a *Agent) want(as []Assignment) {
	if as == nil {
		return
	}
	for {
		select {
		case a.work <- as:
			return
		default:
			select {
			case <-a.work:
			default:
			}
		}
	}
}

// reconciler applies assignments one set at a time, the newest first.
func (a *Agent) reconciler(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case as := <-a.work:
			a.reconcile(ctx, as)
		}
	}
}

func (a *Agent) sendLogs(ctx context.Context, lr LogRequest) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	up := LogUpload{Container: containerName(lr.Unit, lr.Replica)}
	id, err := a.containerID(ctx, up.Container)
	if err == nil {
		up.Logs, err = a.cfg.Docker.Logs(ctx, id, lr.Tail)
	}
	if err != nil {
		up.Error = err.Error()
	}
	// The server takes a body of up to 1 MiB: send the last 512 KiB.
	if n := len(up.Logs); n > maxLogUpload {
		up.Logs = up.Logs[n-maxLogUpload:]
	}
	if err := a.call(ctx, a.hc, http.MethodPost, "/logs/"+url.PathEscape(lr.ID), up, nil); err != nil {
		a.log.Warn("sending logs failed", "unit", lr.Unit, "error", err)
	}
}

func (a *Agent) containerID(ctx context.Context, name string) (string, error) {
	cs, err := a.cfg.Docker.Containers(ctx, LabelNode+"="+a.cfg.Node)
	if err != nil {
		return "", err
	}
	for _, c := range cs {
		if c.Name() == name {
			return c.ID, nil
		}
	}
	return "", fmt.Errorf("no container %s on this node", name)
}

// maxLogUpload bounds the logs sent for one request.
const maxLogUpload = 512 << 10

func containerName(unit string, replica int) string { return unit + "-" + strconv.Itoa(replica) }

// facts describes this node.
func (a *Agent) facts(ctx context.Context) Facts {
	f := Facts{Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), AgentVersion: a.cfg.Version}
	f.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		f.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "PRETTY_NAME="); ok {
				f.OS = strings.Trim(v, `"`)
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				f.MemoryBytes = kb << 10
			}
		}
	}
	vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := a.cfg.Docker.Version(vctx)
	if err != nil {
		f.RuntimeError = err.Error()
		return f
	}
	f.Runtime, f.RuntimeVersion = "docker", v.Version
	for _, c := range v.Components {
		if strings.Contains(strings.ToLower(c.Name), "podman") {
			f.Runtime = "podman"
		}
	}
	return f
}
