package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bootfleet/bootfleet/registry"
)

// dialIn opens TCP connections from inside the named namespace (the lab's
// server listens only on its bridge).
func dialIn(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			// A thread of its own, which is thrown away after: its
			// namespace is never restored into the pool.
			runtime.LockOSThread()
			f, err := os.Open("/run/netns/" + ns)
			if err != nil {
				ch <- result{nil, err}
				return
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				ch <- result{nil, fmt.Errorf("enter netns %s: %w", ns, err)}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}

// Client is an HTTP client whose connections start in the lab's namespace.
func Client(ns string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dialIn(ns), DisableKeepAlives: true}}
}

func waitHTTP(ctx context.Context, ns, url string, timeout time.Duration) error {
	hc := Client(ns)
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("%s: %s", url, resp.Status)
		} else {
			last = err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return last
}

// Progress is how far one node has come, with the time since the lab
// started at which it reached each step (zero: not yet).
type Progress struct {
	Node     Node
	State    string
	IP       string
	DHCP     time.Duration
	IPXE     time.Duration
	Kernel   time.Duration
	Ignition time.Duration
	// Ready is when the image's ready marker was first seen on the
	// console (zero when the caller kept no record: see Status).
	Ready   time.Duration
	IsReady bool
	// Refused is when a stranger was refused (no group selects it).
	Refused time.Duration
	Joined  time.Duration // the agent joined
	// Failed is the image's "BOOTFLEET-FAILED <reason>" console line:
	// its /init gave up (no NIC, no lease, no Ignition).
	Failed string
}

// Done says whether the node got where it can: up (the image said so on
// its console), failed (it said that), or, for a stranger, refused.
func (p Progress) Done() bool {
	if p.Node.Stranger {
		return p.Refused > 0
	}
	return p.IsReady || p.Failed != ""
}

// Console markers of the lab image's /init.
const (
	ReadyMarker  = "BOOTFLEET-READY"
	FailedMarker = "BOOTFLEET-FAILED"
)

// Status reads each node's progress from the server's inventory and the
// VMs' consoles. With record (the caller watches the lab), the time a
// node's ready marker is first seen is kept in st and its state file.
func Status(ctx context.Context, st *State, record bool) ([]Progress, error) {
	token, err := os.ReadFile(filepath.Join(st.Dir, "data", "admin.token"))
	if err != nil {
		return nil, fmt.Errorf("lab: admin token: %w", err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ServerURL+"/api/v1/nodes", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	known := map[string]bool{}
	if resp, err := Client(st.Netns).Do(req); err == nil {
		var nodes []registry.Node
		if resp.StatusCode == http.StatusOK {
			_ = json.NewDecoder(resp.Body).Decode(&nodes)
		}
		resp.Body.Close()
		for _, n := range nodes {
			known[n.MAC] = true
		}
	}
	out := make([]Progress, 0, len(st.Nodes))
	changed := false
	for i, n := range st.Nodes {
		p := Progress{Node: n, State: "off"}
		if known[n.MAC] {
			if err := nodeSteps(ctx, st, strings.TrimSpace(string(token)), &p); err != nil {
				return nil, err
			}
		}
		if b, err := os.ReadFile(n.Console); err == nil {
			console := string(b)
			if strings.Contains(console, ReadyMarker) {
				p.IsReady = true
				if record && n.ReadyAt == 0 {
					st.Nodes[i].ReadyAt = max(time.Since(st.Started), time.Millisecond)
					changed = true
				}
				p.Ready = st.Nodes[i].ReadyAt
			}
			if j := strings.Index(console, FailedMarker); j >= 0 {
				line, _, _ := strings.Cut(console[j+len(FailedMarker):], "\n")
				p.Failed = strings.TrimSpace(line)
				if p.Failed == "" {
					p.Failed = "(no reason given)"
				}
			}
		}
		out = append(out, p)
	}
	if changed {
		if err := st.save(); err != nil {
			return out, err
		}
	}
	return out, nil
}

func nodeSteps(ctx context.Context, st *State, token string, p *Progress) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ServerURL+"/api/v1/nodes/"+p.Node.MAC, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := Client(st.Netns).Do(req)
	if err != nil {
		return nil // the server may be starting; the next poll tells
	}
	defer resp.Body.Close()
	var n registry.Node
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&n) != nil {
		return nil
	}
	p.State, p.IP = string(n.State), n.IP
	at := func(t time.Time) time.Duration { return max(t.Sub(st.Started), time.Millisecond) }
	for _, e := range n.Timeline {
		switch {
		case e.Event == "dhcp.ack" && p.DHCP == 0:
			p.DHCP = at(e.Time)
		case e.Event == "ipxe" && p.IPXE == 0:
			p.IPXE = at(e.Time)
		case e.Event == "asset" && p.Kernel == 0:
			p.Kernel = at(e.Time)
		case e.Event == "ignition" && p.Ignition == 0:
			p.Ignition = at(e.Time)
		case e.Event == "agent.join" && p.Joined == 0:
			p.Joined = at(e.Time)
		case e.Event == "unmatched" && p.Refused == 0:
			p.Refused = at(e.Time)
		}
	}
	return nil
}

// Line renders a node's progress as one line.
func (p Progress) Line() string {
	if p.Node.Stranger {
		refused := "refused …"
		if p.Refused > 0 {
			refused = fmt.Sprintf("refused %.1fs (no group selects it)", p.Refused.Seconds())
		}
		dhcp := "DHCP …"
		if p.DHCP > 0 {
			dhcp = fmt.Sprintf("DHCP %.1fs", p.DHCP.Seconds())
		}
		return fmt.Sprintf("%s %-8s  %s → %s", p.Node.MAC, "stranger", dhcp, refused)
	}
	step := func(name string, d time.Duration) string {
		if d == 0 {
			return name + " …"
		}
		return fmt.Sprintf("%s %.1fs", name, d.Seconds())
	}
	ready := step("ready", p.Ready)
	if p.IsReady && p.Ready == 0 {
		ready = "ready ✓"
	}
	if p.Failed != "" && !p.IsReady {
		ready = "FAILED: " + p.Failed
	}
	return fmt.Sprintf("%s %-8s  %s → %s → %s → %s → %s → %s",
		p.Node.MAC, p.Node.Firmware, step("DHCP", p.DHCP), step("iPXE", p.IPXE), step("kernel", p.Kernel),
		step("Ignition", p.Ignition), ready, step("agent", p.Joined))
}
