package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func freeURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String()
}

type cluster struct {
	dir, client, peer string
	etcd              *Embedded
}

// startEtcd runs a real embedded etcd member in dir for the test.
func startEtcd(t testing.TB, c *cluster) {
	t.Helper()
	if c.dir == "" {
		c.dir, c.client, c.peer = t.TempDir(), freeURL(t), freeURL(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := StartEmbedded(ctx, EmbeddedConfig{Dir: c.dir, ListenClient: c.client, ListenPeer: c.peer})
	if err != nil {
		t.Fatal(err)
	}
	c.etcd = e
	t.Cleanup(e.Close)
}

func newRegistry(t testing.TB, endpoints []string, server string) *Registry {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	r, err := New(Config{Client: cli, Server: server, TimelineLength: 5})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestInventory(t *testing.T) {
	var c cluster
	startEtcd(t, &c)
	r := newRegistry(t, c.etcd.Endpoints(), "s1")
	ctx := context.Background()
	mac := "52:54:00:aa:00:01"

	if _, err := r.Node(ctx, mac); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown node: err %v, want ErrNotFound", err)
	}
	n, err := r.Observe(ctx, Observation{MAC: mac, Arch: "x86_64", UserClass: "iPXE", Event: Event{Event: "dhcp.discover"}})
	if err != nil {
		t.Fatal(err)
	}
	if n.State != StateDiscovered || n.FirstSeen.IsZero() || len(n.Timeline) != 1 || n.Timeline[0].Server != "s1" {
		t.Fatalf("after discover: %+v", n)
	}
	_, err = r.Observe(ctx, Observation{MAC: mac, IP: "10.77.0.100", State: StateBooting, Group: "g", Profile: "p", Event: Event{Event: "ipxe", Detail: "profile p"}})
	if err != nil {
		t.Fatal(err)
	}
	n, err = r.Node(ctx, mac)
	if err != nil {
		t.Fatal(err)
	}
	if n.Arch != "x86_64" || n.IP != "10.77.0.100" || n.State != StateBooting || n.Group != "g" || len(n.Timeline) != 2 {
		t.Fatalf("facts not merged: %+v", n)
	}
	// The timeline is bounded (5 in this test) and keeps the newest.
	for i := range 10 {
		if _, err := r.Observe(ctx, Observation{MAC: mac, Event: Event{Event: fmt.Sprintf("e%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	n, _ = r.Node(ctx, mac)
	if len(n.Timeline) != 5 || n.Timeline[4].Event != "e9" || n.Timeline[0].Event != "e5" {
		t.Fatalf("timeline not bounded to the newest 5: %+v", n.Timeline)
	}

	if _, err := r.Label(ctx, mac, map[string]string{"rack": "a", "role": "lg"}, nil); err != nil {
		t.Fatal(err)
	}
	n, _ = r.Label(ctx, mac, nil, []string{"role"})
	if len(n.Labels) != 1 || n.Labels["rack"] != "a" {
		t.Fatalf("labels %v, want rack=a", n.Labels)
	}
	// Labelling an unknown machine registers it, so it can be labelled before it boots.
	if _, err := r.Label(ctx, "52:54:00:aa:00:02", map[string]string{"rack": "b"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SetNextBoot(ctx, "52:54:00:aa:00:09", "rescue"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("next boot of an unknown node: %v, want ErrNotFound", err)
	}
	if n, err := r.SetNextBoot(ctx, mac, "rescue"); err != nil || n.NextBoot != "rescue" {
		t.Fatalf("next boot: %+v %v", n, err)
	}

	nodes, err := r.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || nodes[0].MAC != mac || nodes[0].Timeline != nil {
		t.Fatalf("list: %+v", nodes)
	}
	if err := r.Forget(ctx, mac); err != nil {
		t.Fatal(err)
	}
	if err := r.Forget(ctx, mac); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second forget: %v, want ErrNotFound", err)
	}
}

// Two servers (two clients) writing the same node at once lose nothing.
func TestConcurrentWriters(t *testing.T) {
	var c cluster
	startEtcd(t, &c)
	a := newRegistry(t, c.etcd.Endpoints(), "a")
	b := newRegistry(t, c.etcd.Endpoints(), "b")
	a.timeline, b.timeline = 1000, 1000
	ctx := context.Background()
	var wg sync.WaitGroup
	for i, r := range []*Registry{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				if _, err := r.Observe(ctx, Observation{MAC: "52:54:00:00:00:01", Event: Event{Event: fmt.Sprintf("w%d-%d", i, j)}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	n, err := a.Node(ctx, "52:54:00:00:00:01")
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Timeline) != 100 {
		t.Fatalf("%d events recorded, want 100", len(n.Timeline))
	}
}

// The inventory survives a restart of the embedded member on its data dir.
func TestRestartKeepsInventory(t *testing.T) {
	var c cluster
	startEtcd(t, &c)
	r := newRegistry(t, c.etcd.Endpoints(), "s")
	ctx := context.Background()
	if _, err := r.Observe(ctx, Observation{MAC: "52:54:00:00:00:07", IP: "10.0.0.7", Event: Event{Event: "dhcp.ack"}}); err != nil {
		t.Fatal(err)
	}
	c.etcd.Close()
	startEtcd(t, &c)
	r2 := newRegistry(t, c.etcd.Endpoints(), "s")
	n, err := r2.Node(ctx, "52:54:00:00:00:07")
	if err != nil || n.IP != "10.0.0.7" || len(n.Timeline) != 1 {
		t.Fatalf("after restart: %+v %v", n, err)
	}
}

func TestWatch(t *testing.T) {
	var c cluster
	startEtcd(t, &c)
	r := newRegistry(t, c.etcd.Endpoints(), "s")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := r.Watch(ctx)
	time.Sleep(100 * time.Millisecond) // let the watch start
	r.Observe(ctx, Observation{MAC: "52:54:00:00:00:01", State: StateBooting})
	r.Forget(ctx, "52:54:00:00:00:01")
	want := []Change{{Node: Node{MAC: "52:54:00:00:00:01", State: StateBooting}}, {Deleted: true, Node: Node{MAC: "52:54:00:00:00:01"}}}
	for i, w := range want {
		select {
		case got := <-ch:
			if got.Deleted != w.Deleted || got.Node.MAC != w.Node.MAC || got.Node.State != w.Node.State {
				t.Fatalf("change %d: %+v, want %+v", i, got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("change %d not seen within 10s", i)
		}
	}
}

// The recorder queues without waiting and writes one batch per node; when
// etcd goes away it retries, and catches up when etcd is back.
func TestRecorderSurvivesOutage(t *testing.T) {
	var c cluster
	startEtcd(t, &c)
	r := newRegistry(t, c.etcd.Endpoints(), "s")
	r.timeline = 1000
	rec := NewRecorder(r, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rec.Run(ctx)
	for i := range 20 {
		rec.Record(Observation{MAC: fmt.Sprintf("52:54:00:00:00:%02x", i%4), Event: Event{Event: fmt.Sprintf("a%d", i)}})
	}
	fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
	if err := rec.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	fcancel()

	c.etcd.Close()
	start := time.Now()
	for i := range 20 {
		if !rec.Record(Observation{MAC: fmt.Sprintf("52:54:00:00:00:%02x", i%4), Event: Event{Event: fmt.Sprintf("b%d", i)}}) {
			t.Fatal("Record refused while the queue has room")
		}
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Record blocked for %s while etcd was down", d)
	}
	time.Sleep(500 * time.Millisecond)
	startEtcd(t, &c)
	fctx, fcancel = context.WithTimeout(ctx, 60*time.Second)
	defer fcancel()
	if err := rec.Flush(fctx); err != nil {
		t.Fatal("recorder did not catch up after etcd came back:", err)
	}
	nodes, err := r.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 4 {
		t.Fatalf("%d nodes, want 4", len(nodes))
	}
	n, _ := r.Node(ctx, "52:54:00:00:00:00")
	if len(n.Timeline) != 10 {
		t.Fatalf("node 0 has %d events, want 10", len(n.Timeline))
	}
	// failed may be 0: the etcd client can hold a write until the member is
	// back, which is as good as a retry.
	if written, dropped, _ := rec.Stats(); written != 40 || dropped != 0 {
		t.Errorf("stats written=%d dropped=%d; want 40, 0", written, dropped)
	}
}

func TestCacheFollowsChanges(t *testing.T) {
	var c cluster
	startEtcd(t, &c)
	r := newRegistry(t, c.etcd.Endpoints(), "s")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.Label(ctx, "52:54:00:00:00:01", map[string]string{"rack": "a"}, nil)
	cache := NewCache(r)
	go cache.Run(ctx)
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("cache: %s not seen within 10s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	eventually("initial list", func() bool { n, ok := cache.Get("52:54:00:00:00:01"); return ok && n.Labels["rack"] == "a" })
	r.Label(ctx, "52:54:00:00:00:01", map[string]string{"rack": "b"}, nil)
	eventually("label change", func() bool { n, _ := cache.Get("52:54:00:00:00:01"); return n.Labels["rack"] == "b" })
	r.Forget(ctx, "52:54:00:00:00:01")
	eventually("forget", func() bool { _, ok := cache.Get("52:54:00:00:00:01"); return !ok })
}

// The same step of a node repeated within a second is recorded once.
func TestRecorderCoalescesRepeats(t *testing.T) {
	var c cluster
	startEtcd(t, &c)
	r := newRegistry(t, c.etcd.Endpoints(), "s")
	rec := NewRecorder(r, 100)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rec.Run(ctx)
	t0 := time.Now()
	for i := range 10 {
		rec.Record(Observation{MAC: "52:54:00:00:00:01", Event: Event{Event: "ignition", Time: t0.Add(time.Duration(i) * 50 * time.Millisecond)}})
	}
	rec.Record(Observation{MAC: "52:54:00:00:00:01", Event: Event{Event: "ipxe", Time: t0.Add(600 * time.Millisecond)}})
	rec.Record(Observation{MAC: "52:54:00:00:00:01", Event: Event{Event: "ignition", Time: t0.Add(2 * time.Second)}})
	fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
	defer fcancel()
	if err := rec.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	n, err := r.Node(ctx, "52:54:00:00:00:01")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range n.Timeline {
		got = append(got, e.Event)
	}
	if fmt.Sprint(got) != "[ignition ipxe ignition]" || rec.Coalesced() != 9 {
		t.Errorf("timeline %v, coalesced %d; want [ignition ipxe ignition] and 9", got, rec.Coalesced())
	}
}

// An observation written late (the boot side records its events in
// batches, the agent's join at once) neither moves the node back from the
// state a later event set nor lands out of order on the timeline.
func TestLateObservationKeepsNewerState(t *testing.T) {
	var c cluster
	startEtcd(t, &c)
	r := newRegistry(t, c.etcd.Endpoints(), "s1")
	ctx := context.Background()
	mac := "52:54:00:aa:00:03"
	t0 := time.Now().UTC().Add(-time.Minute)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	for _, o := range []Observation{
		{MAC: mac, State: StateDiscovered, Event: Event{Time: at(0), Event: "dhcp.discover"}},
		{MAC: mac, State: StateReady, Event: Event{Time: at(3 * time.Second), Event: "agent.join"}},
		// Recorded after the join, though they happened before it.
		{MAC: mac, State: StateBooting, Event: Event{Time: at(1 * time.Second), Event: "ipxe"}},
		{MAC: mac, State: StateProvisioned, Event: Event{Time: at(2 * time.Second), Event: "ignition"}},
	} {
		if _, err := r.Observe(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	n, err := r.Node(ctx, mac)
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	for _, e := range n.Timeline {
		events = append(events, e.Event)
	}
	if n.State != StateReady || !n.StateSince.Equal(at(3*time.Second)) {
		t.Errorf("state %s since %v, want ready since the join", n.State, n.StateSince)
	}
	if got := fmt.Sprint(events); got != "[dhcp.discover ipxe ignition agent.join]" {
		t.Errorf("timeline %s, want it in time order", got)
	}
	// A new boot (a later DISCOVER) starts over.
	if n, err = r.Observe(ctx, Observation{MAC: mac, State: StateDiscovered, Event: Event{Time: at(4 * time.Second), Event: "dhcp.discover"}}); err != nil || n.State != StateDiscovered {
		t.Errorf("after a new discover: %s %v", n.State, err)
	}
}
