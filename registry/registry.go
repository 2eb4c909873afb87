package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNotFound means the registry has no such node.
var ErrNotFound = errors.New("not found")

// State is where a node is in its life.
type State string

// Node states, in the order a boot goes through them.
const (
	StateDiscovered  State = "discovered"  // seen by DHCP
	StateBooting     State = "booting"     // fetched its iPXE script
	StateProvisioned State = "provisioned" // fetched its Ignition or cloud-config
	StateReady       State = "ready"       // its agent joined
	StateLost        State = "lost"        // its agent stopped heartbeating
)

// DefaultTimelineLength bounds the events kept per node.
const DefaultTimelineLength = 64

// Node is one machine in the inventory.
type Node struct {
	MAC         string            `json:"mac"`
	IP          string            `json:"ip,omitempty"`
	Arch        string            `json:"arch,omitempty"`
	Firmware    string            `json:"firmware,omitempty"`
	UUID        string            `json:"uuid,omitempty"`
	VendorClass string            `json:"vendor_class,omitempty"`
	UserClass   string            `json:"user_class,omitempty"`
	Hostname    string            `json:"hostname,omitempty"`
	Group       string            `json:"group,omitempty"`
	Profile     string            `json:"profile,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	State       State             `json:"state"`
	// StateSince is the time of the event that set State. An observation
	// recorded late (the boot side writes its events in batches) does not
	// move the node back from a state a later event set.
	StateSince time.Time `json:"state_since,omitzero"`
	// NextBoot, when set, is a profile the node boots once instead of its
	// matched one; the boot side clears it when it serves that profile.
	NextBoot string `json:"next_boot,omitempty"`
	// Agent is what the node's agent reported when it last joined.
	Agent     *AgentInfo `json:"agent,omitempty"`
	FirstSeen time.Time  `json:"first_seen"`
	LastSeen  time.Time  `json:"last_seen"`
	// Timeline holds the most recent boot steps, oldest first.
	Timeline []Event `json:"timeline,omitempty"`
}

// AgentInfo describes a node as its agent sees it.
type AgentInfo struct {
	Version        string    `json:"version,omitempty"`
	OS             string    `json:"os,omitempty"`
	Kernel         string    `json:"kernel,omitempty"`
	CPUs           int       `json:"cpus,omitempty"`
	MemoryBytes    int64     `json:"memory_bytes,omitempty"`
	Runtime        string    `json:"runtime,omitempty"`
	RuntimeVersion string    `json:"runtime_version,omitempty"`
	RuntimeError   string    `json:"runtime_error,omitempty"`
	Joined         time.Time `json:"joined"`
}

// Event is one step of a node's boot.
type Event struct {
	Time   time.Time `json:"time"`
	Event  string    `json:"event"` // e.g. dhcp.discover, dhcp.ack, tftp, ipxe, ignition, agent.join
	Detail string    `json:"detail,omitempty"`
	Server string    `json:"server,omitempty"` // which bootfleet server saw it
}

// Observation is what one part of bootfleet learnt about a node: non-empty
// facts replace the stored ones, a non-empty State moves the node there,
// and a non-empty Event.Event is appended to the timeline.
type Observation struct {
	MAC         string
	IP          string
	Arch        string
	Firmware    string
	UUID        string
	VendorClass string
	UserClass   string
	Hostname    string
	Group       string
	Profile     string
	State       State
	Event       Event
	// Agent, when set, replaces what the node's agent reported.
	Agent *AgentInfo
}

// Config configures a Registry.
type Config struct {
	// Client is a connected etcd client; the Registry does not close it.
	Client *clientv3.Client
	// Prefix under which keys live; default "/bootfleet/".
	Prefix string
	// Server names this bootfleet server in events.
	Server string
	// TimelineLength bounds each node's timeline; default 64.
	TimelineLength int
	Log            *slog.Logger
}

// Registry is the node inventory in etcd.
type Registry struct {
	cli      *clientv3.Client
	prefix   string
	server   string
	timeline int
	log      *slog.Logger
}

// New returns a Registry over a connected client.
func New(cfg Config) (*Registry, error) {
	if cfg.Client == nil {
		return nil, errors.New("registry: no etcd client")
	}
	r := &Registry{cli: cfg.Client, prefix: cfg.Prefix, server: cfg.Server, timeline: cfg.TimelineLength, log: cfg.Log}
	if r.prefix == "" {
		r.prefix = "/bootfleet/"
	}
	if !strings.HasSuffix(r.prefix, "/") {
		r.prefix += "/"
	}
	if r.timeline <= 0 {
		r.timeline = DefaultTimelineLength
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

func (r *Registry) nodeKey(mac string) string { return r.prefix + "nodes/" + mac }
func (r *Registry) nodesPrefix() string       { return r.prefix + "nodes/" }

// update applies fn to the node stored under mac (a zero Node with only MAC
// set when absent) and writes it back, retrying when another writer got
// there first. create says whether an absent node may be created.
func (r *Registry) update(ctx context.Context, mac string, create bool, fn func(n *Node) error) (Node, error) {
	key := r.nodeKey(mac)
	for attempt := 0; ; attempt++ {
		resp, err := r.cli.Get(ctx, key)
		if err != nil {
			return Node{}, fmt.Errorf("registry: get node %s: %w", mac, err)
		}
		var n Node
		var rev int64
		if len(resp.Kvs) == 1 {
			if err := json.Unmarshal(resp.Kvs[0].Value, &n); err != nil {
				return Node{}, fmt.Errorf("registry: node %s is corrupt in etcd: %w", mac, err)
			}
			rev = resp.Kvs[0].ModRevision
		} else if !create {
			return Node{}, fmt.Errorf("node %s: %w", mac, ErrNotFound)
		} else {
			n = Node{MAC: mac}
		}
		if err := fn(&n); err != nil {
			return Node{}, err
		}
		data, err := json.Marshal(n)
		if err != nil {
			return Node{}, fmt.Errorf("registry: encode node %s: %w", mac, err)
		}
		txn, err := r.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, string(data))).
			Commit()
		if err != nil {
			return Node{}, fmt.Errorf("registry: write node %s: %w", mac, err)
		}
		if txn.Succeeded {
			return n, nil
		}
		if attempt >= 50 {
			return Node{}, fmt.Errorf("registry: write node %s: too much contention", mac)
		}
	}
}

// Observe records what was learnt about a node, creating it when new.
func (r *Registry) Observe(ctx context.Context, o Observation) (Node, error) {
	return r.ObserveAll(ctx, o.MAC, []Observation{o})
}

// ObserveAll applies several observations of one node in one write.
func (r *Registry) ObserveAll(ctx context.Context, mac string, obs []Observation) (Node, error) {
	return r.update(ctx, mac, true, func(n *Node) error {
		for _, o := range obs {
			r.apply(n, o)
		}
		return nil
	})
}

// maxTxnOps stays under etcd's default limit of 128 operations per
// transaction.
const maxTxnOps = 100

// ObserveBatch applies observations of many nodes with two etcd round trips
// per 100 nodes (read all, then write all if none changed meanwhile),
// instead of two per node; on a conflict it falls back to node by node.
// Written nodes are deleted from obs, so after an error obs holds exactly
// what is left to write.
func (r *Registry) ObserveBatch(ctx context.Context, obs map[string][]Observation) error {
	macs := make([]string, 0, len(obs))
	for mac := range obs {
		macs = append(macs, mac)
	}
	slices.Sort(macs)
	for len(macs) > 0 {
		chunk := macs[:min(len(macs), maxTxnOps)]
		macs = macs[len(chunk):]
		if err := r.observeChunk(ctx, chunk, obs); err != nil {
			return err
		}
		for _, mac := range chunk {
			delete(obs, mac)
		}
	}
	return nil
}

func (r *Registry) observeChunk(ctx context.Context, macs []string, obs map[string][]Observation) error {
	gets := make([]clientv3.Op, len(macs))
	for i, mac := range macs {
		gets[i] = clientv3.OpGet(r.nodeKey(mac))
	}
	resp, err := r.cli.Txn(ctx).Then(gets...).Commit()
	if err != nil {
		return fmt.Errorf("registry: read %d nodes: %w", len(macs), err)
	}
	cmps := make([]clientv3.Cmp, len(macs))
	puts := make([]clientv3.Op, len(macs))
	for i, mac := range macs {
		var n Node
		var rev int64
		if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) == 1 {
			if err := json.Unmarshal(kvs[0].Value, &n); err != nil {
				return fmt.Errorf("registry: node %s is corrupt in etcd: %w", mac, err)
			}
			rev = kvs[0].ModRevision
		} else {
			n = Node{MAC: mac}
		}
		for _, o := range obs[mac] {
			r.apply(&n, o)
		}
		data, err := json.Marshal(n)
		if err != nil {
			return fmt.Errorf("registry: encode node %s: %w", mac, err)
		}
		key := r.nodeKey(mac)
		cmps[i] = clientv3.Compare(clientv3.ModRevision(key), "=", rev)
		puts[i] = clientv3.OpPut(key, string(data))
	}
	txn, err := r.cli.Txn(ctx).If(cmps...).Then(puts...).Commit()
	if err != nil {
		return fmt.Errorf("registry: write %d nodes: %w", len(macs), err)
	}
	if txn.Succeeded {
		return nil
	}
	// Another writer touched one of them: node by node, each with retries.
	for _, mac := range macs {
		if _, err := r.ObserveAll(ctx, mac, obs[mac]); err != nil {
			return err
		}
		delete(obs, mac)
	}
	return nil
}

func (r *Registry) apply(n *Node, o Observation) {
	now := o.Event.Time
	if now.IsZero() {
		now = time.Now().UTC()
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&n.IP, o.IP)
	set(&n.Arch, o.Arch)
	set(&n.Firmware, o.Firmware)
	set(&n.UUID, o.UUID)
	set(&n.VendorClass, o.VendorClass)
	set(&n.UserClass, o.UserClass)
	set(&n.Hostname, o.Hostname)
	set(&n.Group, o.Group)
	set(&n.Profile, o.Profile)
	if o.State != "" && !now.Before(n.StateSince) {
		n.State, n.StateSince = o.State, now
	}
	if o.Agent != nil {
		a := *o.Agent
		n.Agent = &a
	}
	if n.State == "" {
		n.State = StateDiscovered
	}
	if n.FirstSeen.IsZero() {
		n.FirstSeen = now
	}
	if now.After(n.LastSeen) {
		n.LastSeen = now
	}
	if o.Event.Event != "" {
		e := o.Event
		e.Time = now
		if e.Server == "" {
			e.Server = r.server
		}
		// In time order, also when an observation comes late.
		i := len(n.Timeline)
		for i > 0 && n.Timeline[i-1].Time.After(e.Time) {
			i--
		}
		n.Timeline = slices.Insert(n.Timeline, i, e)
		if extra := len(n.Timeline) - r.timeline; extra > 0 {
			n.Timeline = slices.Delete(n.Timeline, 0, extra)
		}
	}
}

// Node returns one node with its timeline.
func (r *Registry) Node(ctx context.Context, mac string) (Node, error) {
	resp, err := r.cli.Get(ctx, r.nodeKey(mac))
	if err != nil {
		return Node{}, fmt.Errorf("registry: get node %s: %w", mac, err)
	}
	if len(resp.Kvs) == 0 {
		return Node{}, fmt.Errorf("node %s: %w", mac, ErrNotFound)
	}
	var n Node
	if err := json.Unmarshal(resp.Kvs[0].Value, &n); err != nil {
		return Node{}, fmt.Errorf("registry: node %s is corrupt in etcd: %w", mac, err)
	}
	return n, nil
}

// Nodes returns every node, sorted by MAC, without timelines.
func (r *Registry) Nodes(ctx context.Context) ([]Node, error) {
	resp, err := r.cli.Get(ctx, r.nodesPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("registry: list nodes: %w", err)
	}
	nodes := make([]Node, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var n Node
		if err := json.Unmarshal(kv.Value, &n); err != nil {
			r.log.Error("registry: skipping corrupt node", "key", string(kv.Key), "error", err)
			continue
		}
		n.Timeline = nil
		nodes = append(nodes, n)
	}
	slices.SortFunc(nodes, func(a, b Node) int { return strings.Compare(a.MAC, b.MAC) })
	return nodes, nil
}

// NodesOf returns the nodes with these MACs that exist, without
// timelines, reading them in batches.
func (r *Registry) NodesOf(ctx context.Context, macs []string) ([]Node, error) {
	nodes := make([]Node, 0, len(macs))
	for len(macs) > 0 {
		chunk := macs[:min(len(macs), maxTxnOps)]
		macs = macs[len(chunk):]
		ops := make([]clientv3.Op, len(chunk))
		for i, mac := range chunk {
			ops[i] = clientv3.OpGet(r.nodeKey(mac))
		}
		resp, err := r.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, fmt.Errorf("registry: read %d nodes: %w", len(chunk), err)
		}
		for _, rr := range resp.Responses {
			for _, kv := range rr.GetResponseRange().Kvs {
				n, err := decodeWithoutTimeline(kv.Value)
				if err != nil {
					r.log.Error("registry: skipping corrupt node", "key", string(kv.Key), "error", err)
					continue
				}
				nodes = append(nodes, n)
			}
		}
	}
	return nodes, nil
}

// Label sets and removes operator labels of a node, creating the node when
// it is not known yet (so machines can be labelled before they boot).
func (r *Registry) Label(ctx context.Context, mac string, set map[string]string, remove []string) (Node, error) {
	return r.update(ctx, mac, true, func(n *Node) error {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		maps.Copy(n.Labels, set)
		for _, k := range remove {
			delete(n.Labels, k)
		}
		if n.State == "" {
			n.State = StateDiscovered
		}
		return nil
	})
}

// SetNextBoot makes the node boot profile once on its next boot; an empty
// profile clears it.
func (r *Registry) SetNextBoot(ctx context.Context, mac, profile string) (Node, error) {
	return r.update(ctx, mac, false, func(n *Node) error {
		n.NextBoot = profile
		return nil
	})
}

// Forget removes a node and its timeline.
func (r *Registry) Forget(ctx context.Context, mac string) error {
	resp, err := r.cli.Delete(ctx, r.nodeKey(mac))
	if err != nil {
		return fmt.Errorf("registry: forget node %s: %w", mac, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("node %s: %w", mac, ErrNotFound)
	}
	return nil
}

// decodeWithoutTimeline decodes a node but leaves its timeline undecoded:
// watchers need the node, and decoding every event of every change would
// cost more than the rest together.
func decodeWithoutTimeline(b []byte) (Node, error) {
	var v struct {
		Node
		Timeline json.RawMessage `json:"timeline"` // shadows Node.Timeline
	}
	err := json.Unmarshal(b, &v)
	return v.Node, err
}

// Change is one change to the inventory seen by Watch.
type Change struct {
	// Deleted is set when the node was forgotten; Node then has only MAC.
	Deleted bool `json:"deleted,omitempty"`
	Node    Node `json:"node"`
}

// Watch streams changes to the inventory until ctx ends. The channel is
// closed when the watch ends; a watch that loses etcd resumes by itself.
// Nodes in changes carry no timeline (Node returns it).
func (r *Registry) Watch(ctx context.Context) <-chan Change {
	out := make(chan Change, 64)
	go func() {
		defer close(out)
		wch := r.cli.Watch(clientv3.WithRequireLeader(ctx), r.nodesPrefix(), clientv3.WithPrefix())
		for resp := range wch {
			if err := resp.Err(); err != nil {
				r.log.Warn("registry watch", "error", err)
				continue
			}
			for _, ev := range resp.Events {
				var c Change
				var err error
				if ev.Type == clientv3.EventTypeDelete {
					c = Change{Deleted: true, Node: Node{MAC: strings.TrimPrefix(string(ev.Kv.Key), r.nodesPrefix())}}
				} else if c.Node, err = decodeWithoutTimeline(ev.Kv.Value); err != nil {
					continue
				}
				select {
				case out <- c:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}
