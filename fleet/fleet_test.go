package fleet

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/bootfleet/bootfleet/agent"
	"github.com/bootfleet/bootfleet/internal/etcdtest"
	"github.com/bootfleet/bootfleet/registry"
)

// server is one bootfleet server's fleet side over a shared real etcd.
type server struct {
	fleet  *Fleet
	reg    *registry.Registry
	cli    *clientv3.Client
	cancel context.CancelFunc
	done   chan struct{}
}

func startServer(t *testing.T, endpoints []string, name string, ttl time.Duration) *server {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	reg, err := registry.New(registry.Config{Client: cli, Server: name})
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(Config{Client: cli, Registry: reg, NodeTTL: ttl, Server: name})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{fleet: f, reg: reg, cli: cli, cancel: cancel, done: make(chan struct{})}
	go func() { f.Run(ctx); close(s.done) }()
	t.Cleanup(func() { cancel(); <-s.done })
	return s
}

func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func nodesOfUnit(f *Fleet, unit string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.placements[unit].Replicas {
		out = append(out, r.Node)
	}
	slices.Sort(out)
	return out
}

var facts = agent.Facts{Hostname: "n", CPUs: 2, MemoryBytes: 4 << 30, Runtime: "podman", AgentVersion: "test"}

func TestFleetAcrossServers(t *testing.T) {
	endpoints := etcdtest.Start(t)
	const ttl = 2 * time.Second
	s1 := startServer(t, endpoints, "s1", ttl)
	s2 := startServer(t, endpoints, "s2", ttl)
	ctx := context.Background()
	a, b := "52:54:00:00:00:0a", "52:54:00:00:00:0b"

	// Tokens: one secret for the cluster, one token per node.
	t1, err := LoadTokens(ctx, s1.cli, "")
	if err != nil {
		t.Fatal(err)
	}
	t2, err := LoadTokens(ctx, s2.cli, "")
	if err != nil {
		t.Fatal(err)
	}
	if t1.Token(a) != t2.Token(a) || !t2.Valid(a, t1.Token(a)) || t2.Valid(b, t1.Token(a)) || t1.Token(a) == t1.Token(b) {
		t.Fatal("tokens are not one per node across the cluster")
	}

	eventually(t, "one scheduler", 10*time.Second, func() bool { return s1.fleet.IsLeader() != s2.fleet.IsLeader() })

	// Both nodes join, through different servers, and keep beating.
	if err := s1.fleet.Join(ctx, a, facts); err != nil {
		t.Fatal(err)
	}
	if err := s2.fleet.Join(ctx, b, facts); err != nil {
		t.Fatal(err)
	}
	beatCtx, stopA := context.WithCancel(ctx)
	beat := func(ctx context.Context, s *server, mac string) {
		for ctx.Err() == nil {
			if err := s.fleet.Heartbeat(ctx, mac, agent.Heartbeat{}); err != nil && ctx.Err() == nil {
				t.Errorf("heartbeat %s: %v", mac, err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(s.fleet.HeartbeatInterval()):
			}
		}
	}
	go beat(beatCtx, s1, a)
	bCtx, stopB := context.WithCancel(ctx)
	defer stopB()
	go beat(bCtx, s2, b)

	units, err := Parse("web.yaml", []byte("name: web\nimage: busybox\nreplicas: 2\nresources: {memory: 1g}\n---\nname: huge\nimage: busybox\nresources: {memory: 64g}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.fleet.SubmitUnits(ctx, units); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web spread over both nodes", 10*time.Second, func() bool {
		return slices.Equal(nodesOfUnit(s1.fleet, "web"), []string{a, b})
	})
	st, err := s1.fleet.Units(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || st[0].Unit.Name != "huge" || st[0].Placement.Pending != 1 || !strings.Contains(st[0].Placement.Reason, "not enough free resources") {
		t.Fatalf("impossible unit should be pending with the reason: %+v", st[0].Placement)
	}
	o := s1.fleet.Orders(a)
	if len(o.Assignments) != 1 || o.Assignments[0].Unit != "web" || o.Assignments[0].MemoryBytes != 1<<30 || o.Generation == "" {
		t.Fatalf("orders for %s: %+v", a, o)
	}

	// A waiting agent hears of a change at once.
	changed := make(chan agent.Orders, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		changed <- s2.fleet.WaitOrders(wctx, a, o.Generation)
	}()
	units[0].Image = "busybox:2"
	if err := s1.fleet.SubmitUnits(ctx, units[:1]); err != nil {
		t.Fatal(err)
	}
	if got := <-changed; got.Generation == o.Generation || got.Assignments[0].Image != "busybox:2" {
		t.Fatalf("long poll did not see the change: %+v", got)
	}

	// Logs travel through etcd: asked on s2, the node's agent answers s1.
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		gen := s1.fleet.Orders(a).Generation
		for wctx.Err() == nil {
			o := s1.fleet.WaitOrders(wctx, a, gen)
			for _, lr := range o.LogRequests {
				if err := s1.fleet.PutLogs(wctx, a, lr.ID, agent.LogUpload{Container: "web-0", Logs: "hello from web\n"}); err != nil {
					t.Errorf("put logs: %v", err)
				}
				return
			}
		}
	}()
	replicaOnA := -1
	for _, r := range s2.fleet.placements["web"].Replicas {
		if r.Node == a {
			replicaOnA = r.Index
		}
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	up, node, err := s2.fleet.RequestLogs(lctx, "web", replicaOnA, "", 10)
	cancel()
	if err != nil || node != a || up.Logs != "hello from web\n" {
		t.Fatalf("logs: %+v from %s: %v", up, node, err)
	}
	if err := s1.fleet.PutLogs(ctx, b, "forged", agent.LogUpload{}); err == nil {
		t.Fatal("logs for a request that does not exist were accepted")
	}

	// Node a stops heartbeating: after the TTL it is lost and its replica
	// moves to b.
	stopA()
	eventually(t, "node a lost and web moved to b", 4*ttl+5*time.Second, func() bool {
		return slices.Equal(nodesOfUnit(s2.fleet, "web"), []string{b, b})
	})
	n, err := s1.reg.Node(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if n.State != registry.StateLost || n.Timeline[len(n.Timeline)-1].Event != "agent.lost" {
		t.Fatalf("lost node: state %s, timeline %+v", n.State, n.Timeline)
	}

	// It comes back: ready again, and nothing moves back (no duplicates).
	if err := s1.fleet.Heartbeat(ctx, a, agent.Heartbeat{}); err != nil {
		t.Fatal(err)
	}
	n, _ = s1.reg.Node(ctx, a)
	if n.State != registry.StateReady || n.Timeline[len(n.Timeline)-1].Event != "agent.back" {
		t.Fatalf("returning node: state %s, timeline %+v", n.State, n.Timeline)
	}
	time.Sleep(500 * time.Millisecond)
	if got := nodesOfUnit(s1.fleet, "web"); !slices.Equal(got, []string{b, b}) {
		t.Fatalf("replicas moved back: %v", got)
	}

	// The scheduler's server goes away: the other takes over and schedules.
	leader, other := s1, s2
	if s2.fleet.IsLeader() {
		leader, other = s2, s1
	}
	leader.cancel()
	<-leader.done
	eventually(t, "the other server elected", 15*time.Second, other.fleet.IsLeader)
	if err := other.fleet.SubmitUnits(ctx, []Unit{{Name: "late", Image: "busybox", Replicas: 1, Constraints: Constraints{Node: b}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "new unit placed by the new scheduler", 10*time.Second, func() bool {
		return slices.Equal(nodesOfUnit(other.fleet, "late"), []string{b})
	})
	if err := other.fleet.DestroyUnit(ctx, "late"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "destroyed unit leaves the orders", 10*time.Second, func() bool {
		for _, as := range other.fleet.Orders(b).Assignments {
			if as.Unit == "late" {
				return false
			}
		}
		return true
	})
}
