package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/bootfleet/bootfleet/agent"
	"github.com/bootfleet/bootfleet/registry"
)

// ErrNotFound means there is no such unit (or container).
var ErrNotFound = errors.New("not found")

// DefaultNodeTTL is how long a node may go without a heartbeat before it
// is lost and its units move.
const DefaultNodeTTL = 10 * time.Second

// Config configures a Fleet.
type Config struct {
	// Client is a connected etcd client; the Fleet does not close it.
	Client *clientv3.Client
	// Prefix of every key; default "/bootfleet/" (as the registry's).
	Prefix   string
	Registry *registry.Registry
	// NodeTTL: see DefaultNodeTTL.
	NodeTTL time.Duration
	// Server names this bootfleet server (in the election and logs).
	Server string
	Log    *slog.Logger
}

// Fleet keeps units, their placements and node liveness in etcd. Every
// server runs one; one of them at a time is elected to schedule.
type Fleet struct {
	cli    *clientv3.Client
	prefix string
	reg    *registry.Registry
	ttl    time.Duration
	server string
	log    *slog.Logger

	mu         sync.Mutex
	loaded     chan struct{} // closed once the cache holds etcd's state
	units      map[string]Unit
	placements map[string]Placement
	alive      map[string]bool
	logReqs    map[string]map[string]agent.LogRequest // mac → id → request
	delivered  map[string]bool                        // log request IDs a poll has handed out
	changed    chan struct{}                          // closed and replaced on every change
	leases     map[string]clientv3.LeaseID            // nodes heartbeating to this server
	beats      map[string]beat                        // last heartbeat per node, this server
	leader     bool
}

// beat is the last heartbeat of a node seen by this server.
type beat struct {
	at         time.Time
	containers []agent.ContainerStatus
	written    time.Time // when it was last written to etcd
	states     string    // the container states last written
}

// New returns a Fleet; Run starts it.
func New(cfg Config) (*Fleet, error) {
	if cfg.Client == nil || cfg.Registry == nil {
		return nil, errors.New("fleet: etcd client and registry are required")
	}
	f := &Fleet{
		cli: cfg.Client, prefix: cfg.Prefix, reg: cfg.Registry, ttl: cfg.NodeTTL, server: cfg.Server, log: cfg.Log,
		loaded: make(chan struct{}), units: map[string]Unit{}, placements: map[string]Placement{}, alive: map[string]bool{},
		logReqs: map[string]map[string]agent.LogRequest{}, delivered: map[string]bool{}, changed: make(chan struct{}),
		leases: map[string]clientv3.LeaseID{}, beats: map[string]beat{},
	}
	if f.prefix == "" {
		f.prefix = "/bootfleet/"
	}
	if !strings.HasSuffix(f.prefix, "/") {
		f.prefix += "/"
	}
	if f.ttl <= 0 {
		f.ttl = DefaultNodeTTL
	}
	if f.ttl < 2*time.Second {
		return nil, fmt.Errorf("fleet: node TTL %s is too short (at least 2s)", f.ttl)
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	return f, nil
}

func (f *Fleet) unitsPrefix() string      { return f.prefix + "units/" }
func (f *Fleet) placementsPrefix() string { return f.prefix + "placements/" }
func (f *Fleet) alivePrefix() string      { return f.prefix + "alive/" }
func (f *Fleet) statusPrefix() string     { return f.prefix + "status/" }
func (f *Fleet) logReqPrefix() string     { return f.prefix + "logreq/" }
func (f *Fleet) logRespPrefix() string    { return f.prefix + "logresp/" }
func (f *Fleet) membersPrefix() string    { return f.prefix + "members/" }

// NodeTTL is how long a node may be silent before it is lost.
func (f *Fleet) NodeTTL() time.Duration { return f.ttl }

// HeartbeatInterval is how often agents should heartbeat: three beats
// per TTL, so one lost beat does not lose the node.
func (f *Fleet) HeartbeatInterval() time.Duration { return f.ttl / 3 }

// Run keeps the local view of units, placements, liveness and log requests
// in step with etcd, and campaigns to be the scheduler, until ctx ends.
func (f *Fleet) Run(ctx context.Context) error {
	go f.campaign(ctx)
	for ctx.Err() == nil {
		rev, err := f.load(ctx)
		if err != nil {
			f.log.Warn("fleet: loading state from etcd failed; retrying", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		f.watch(ctx, rev)
	}
	return nil
}

// load reads everything the cache holds and returns the revision read.
func (f *Fleet) load(ctx context.Context) (int64, error) {
	resp, err := f.cli.Txn(ctx).Then(
		clientv3.OpGet(f.unitsPrefix(), clientv3.WithPrefix()),
		clientv3.OpGet(f.placementsPrefix(), clientv3.WithPrefix()),
		clientv3.OpGet(f.alivePrefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		clientv3.OpGet(f.logReqPrefix(), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.units, f.placements, f.alive, f.logReqs = map[string]Unit{}, map[string]Placement{}, map[string]bool{}, map[string]map[string]agent.LogRequest{}
	for i, r := range resp.Responses {
		for _, kv := range r.GetResponseRange().Kvs {
			f.applyLocked(i, string(kv.Key), kv.Value, false)
		}
	}
	f.notifyLocked()
	select {
	case <-f.loaded:
	default:
		close(f.loaded)
	}
	return resp.Header.Revision, nil
}

func (f *Fleet) watch(ctx context.Context, rev int64) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	// One watch per prefix the fleet owns: a watch on all of /bootfleet/
	// would wake on every node and lease write of a boot storm.
	type batch struct {
		kind int
		resp clientv3.WatchResponse
	}
	merged := make(chan batch)
	for kind, prefix := range []string{f.unitsPrefix(), f.placementsPrefix(), f.alivePrefix(), f.logReqPrefix()} {
		wch := f.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		go func() {
			for resp := range wch {
				select {
				case merged <- batch{kind, resp}:
				case <-wctx.Done():
					return
				}
			}
			select { // a watch that ends makes the fleet reload
			case merged <- batch{kind: -1}:
			case <-wctx.Done():
			}
		}()
	}
	for {
		var b batch
		select {
		case <-wctx.Done():
			return
		case b = <-merged:
		}
		if b.kind < 0 {
			return
		}
		if err := b.resp.Err(); err != nil {
			f.log.Warn("fleet: watch ended; reloading", "error", err)
			return
		}
		f.mu.Lock()
		for _, ev := range b.resp.Events {
			f.applyLocked(b.kind, string(ev.Kv.Key), ev.Kv.Value, ev.Type == clientv3.EventTypeDelete)
		}
		f.notifyLocked()
		f.mu.Unlock()
	}
}

// applyLocked updates the cache with one key: kind 0 units, 1 placements,
// 2 alive, 3 log requests.
func (f *Fleet) applyLocked(kind int, key string, value []byte, deleted bool) {
	switch kind {
	case 0:
		name := strings.TrimPrefix(key, f.unitsPrefix())
		var u Unit
		if deleted || json.Unmarshal(value, &u) != nil {
			delete(f.units, name)
			return
		}
		f.units[name] = u
	case 1:
		name := strings.TrimPrefix(key, f.placementsPrefix())
		var p Placement
		if deleted || json.Unmarshal(value, &p) != nil {
			delete(f.placements, name)
			return
		}
		f.placements[name] = p
	case 2:
		mac := strings.TrimPrefix(key, f.alivePrefix())
		if deleted {
			delete(f.alive, mac)
		} else {
			f.alive[mac] = true
		}
	case 3:
		mac, id, ok := strings.Cut(strings.TrimPrefix(key, f.logReqPrefix()), "/")
		if !ok {
			return
		}
		var lr agent.LogRequest
		if deleted || json.Unmarshal(value, &lr) != nil {
			delete(f.delivered, id)
			delete(f.logReqs[mac], id)
			if len(f.logReqs[mac]) == 0 {
				delete(f.logReqs, mac)
			}
			return
		}
		if f.logReqs[mac] == nil {
			f.logReqs[mac] = map[string]agent.LogRequest{}
		}
		f.logReqs[mac][id] = lr
	}
}

func (f *Fleet) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// SubmitUnits stores units, replacing those of the same name. The
// scheduler places them at once.
func (f *Fleet) SubmitUnits(ctx context.Context, units []Unit) error {
	ops := make([]clientv3.Op, 0, len(units))
	for _, u := range units {
		b, err := json.Marshal(u)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(f.unitsPrefix()+u.Name, string(b)))
	}
	for len(ops) > 0 {
		n := min(len(ops), 100)
		if _, err := f.cli.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			return fmt.Errorf("fleet: store units: %w", err)
		}
		ops = ops[n:]
	}
	return nil
}

// DestroyUnit removes a unit; agents stop its containers.
func (f *Fleet) DestroyUnit(ctx context.Context, name string) error {
	resp, err := f.cli.Delete(ctx, f.unitsPrefix()+name)
	if err != nil {
		return fmt.Errorf("fleet: destroy unit %s: %w", name, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("unit %s: %w", name, ErrNotFound)
	}
	return nil
}

// UnitStatus is a unit with where it runs and how its containers are.
type UnitStatus struct {
	Unit       Unit                    `json:"unit"`
	Placement  Placement               `json:"placement"`
	Containers []agent.ContainerStatus `json:"containers"`
	// Nodes maps each container (by name) to its node.
	Nodes map[string]string `json:"nodes"`
}

// Units returns every unit with its placement and the containers' last
// reported states, sorted by name.
func (f *Fleet) Units(ctx context.Context) ([]UnitStatus, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	resp, err := f.cli.Get(ctx, f.statusPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("fleet: read container states: %w", err)
	}
	type nodeStatus struct {
		Containers []agent.ContainerStatus `json:"containers"`
	}
	byUnit := map[string][]agent.ContainerStatus{}
	nodeOf := map[string]map[string]string{}
	for _, kv := range resp.Kvs {
		mac := strings.TrimPrefix(string(kv.Key), f.statusPrefix())
		var ns nodeStatus
		if json.Unmarshal(kv.Value, &ns) != nil {
			continue
		}
		for _, c := range ns.Containers {
			byUnit[c.Unit] = append(byUnit[c.Unit], c)
			if nodeOf[c.Unit] == nil {
				nodeOf[c.Unit] = map[string]string{}
			}
			nodeOf[c.Unit][c.Name+"@"+mac] = mac
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]UnitStatus, 0, len(f.units))
	for _, name := range slices.Sorted(maps.Keys(f.units)) {
		st := UnitStatus{Unit: f.units[name], Placement: f.placements[name], Containers: byUnit[name], Nodes: nodeOf[name]}
		if st.Containers == nil {
			st.Containers = []agent.ContainerStatus{}
		}
		if st.Nodes == nil {
			st.Nodes = map[string]string{}
		}
		if st.Placement.Replicas == nil {
			st.Placement = Placement{Unit: name, Replicas: []Replica{}, Pending: max(st.Unit.Replicas, 1), Reason: "not scheduled yet"}
		}
		out = append(out, st)
	}
	return out, nil
}

// wait blocks until the cache has been loaded once.
func (f *Fleet) wait(ctx context.Context) error {
	select {
	case <-f.loaded:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("fleet: state not loaded from etcd yet: %w", ctx.Err())
	}
}

// Orders returns what the node must run, from the local view.
func (f *Fleet) Orders(mac string) agent.Orders {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ordersLocked(mac)
}

func (f *Fleet) ordersLocked(mac string) agent.Orders {
	o := agent.Orders{Assignments: []agent.Assignment{}}
	for _, name := range slices.Sorted(maps.Keys(f.placements)) {
		p := f.placements[name]
		u, ok := f.units[name]
		if !ok {
			continue
		}
		for _, r := range p.Replicas {
			if r.Node != mac {
				continue
			}
			o.Assignments = append(o.Assignments, agent.Assignment{
				Unit: u.Name, Replica: r.Index, Hash: u.Hash(), Image: u.Image, Command: u.Command, Env: u.Env,
				MemoryBytes: u.Resources.MemoryBytes(), CPUs: u.Resources.CPUs,
			})
		}
	}
	b, _ := json.Marshal(o.Assignments)
	sum := sha256.Sum256(b)
	o.Generation = hex.EncodeToString(sum[:8])
	for _, id := range slices.Sorted(maps.Keys(f.logReqs[mac])) {
		o.LogRequests = append(o.LogRequests, f.logReqs[mac][id])
	}
	return o
}

// WaitOrders returns the node's orders once they differ from generation
// or a log request for it has not been handed out yet, or when ctx ends
// (then the current orders).
func (f *Fleet) WaitOrders(ctx context.Context, mac, generation string) agent.Orders {
	for {
		f.mu.Lock()
		o := f.ordersLocked(mac)
		ch := f.changed
		fresh := false
		for _, lr := range o.LogRequests {
			if !f.delivered[lr.ID] {
				f.delivered[lr.ID] = true
				fresh = true
			}
		}
		f.mu.Unlock()
		if o.Generation != generation || fresh {
			return o
		}
		select {
		case <-ctx.Done():
			return o
		case <-ch:
		}
	}
}
