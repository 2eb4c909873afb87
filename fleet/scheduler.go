package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/bootfleet/bootfleet/registry"
)

// IsLeader says whether this server is the elected scheduler now.
func (f *Fleet) IsLeader() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leader
}

// campaign runs for scheduler until ctx ends; while elected it schedules.
// Losing etcd or the session ends the term, and the campaign starts over.
func (f *Fleet) campaign(ctx context.Context) {
	for ctx.Err() == nil {
		err := f.term(ctx)
		if ctx.Err() != nil {
			return
		}
		f.log.Warn("fleet: scheduler term ended; campaigning again", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (f *Fleet) term(ctx context.Context) error {
	session, err := concurrency.NewSession(f.cli, concurrency.WithTTL(5), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	defer session.Close()
	election := concurrency.NewElection(session, f.prefix+"scheduler")
	if err := election.Campaign(ctx, f.server); err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	f.log.Info("fleet: elected scheduler", "server", f.server)
	f.mu.Lock()
	f.leader = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.leader = false
		f.mu.Unlock()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = election.Resign(rctx)
		cancel()
	}()
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // the term ends with the session
		select {
		case <-session.Done():
			cancel()
		case <-tctx.Done():
		}
	}()
	// Label changes of the inventory are picked up by the tick; the
	// inventory is not watched, as boot storms write to it thousands of
	// times a second.
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		f.mu.Lock()
		changed := f.changed
		f.mu.Unlock()
		if err := f.wait(tctx); err != nil {
			return err
		}
		if err := f.schedule(tctx, election); err != nil {
			f.log.Warn("fleet: scheduling failed; retrying", "error", err)
		}
		// Debounce: a burst of changes (a boot storm) schedules once.
		select {
		case <-tctx.Done():
			return tctx.Err()
		case <-changed:
		case <-tick.C:
		}
		select {
		case <-tctx.Done():
			return tctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// schedule computes placements from the current state and writes those
// that changed, fenced by the election so a deposed scheduler writes
// nothing. Nodes that stopped being alive are marked lost.
func (f *Fleet) schedule(ctx context.Context, election *concurrency.Election) error {
	members, err := f.cli.Get(ctx, f.membersPrefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return err
	}
	macs := make([]string, 0, len(members.Kvs))
	for _, kv := range members.Kvs {
		macs = append(macs, strings.TrimPrefix(string(kv.Key), f.membersPrefix()))
	}
	nodes, err := f.reg.NodesOf(ctx, macs)
	if err != nil {
		return err
	}
	// Liveness read from etcd after the inventory, not from the cache: an
	// agent's alive key is written before its node turns ready, so this
	// never sees a ready node without its key by lag alone.
	resp, err := f.cli.Get(ctx, f.alivePrefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return err
	}
	alive := map[string]bool{}
	for _, kv := range resp.Kvs {
		alive[strings.TrimPrefix(string(kv.Key), f.alivePrefix())] = true
	}
	f.mu.Lock()
	units := slices.Collect(maps.Values(f.units))
	prev := maps.Clone(f.placements)
	f.mu.Unlock()

	var candidates []Candidate
	for _, n := range nodes {
		if n.Agent == nil {
			continue // never joined: not part of the fleet
		}
		labels := map[string]string{"arch": n.Arch, "group": n.Group, "profile": n.Profile, "hostname": n.Hostname}
		maps.Copy(labels, n.Labels)
		candidates = append(candidates, Candidate{MAC: n.MAC, Ready: alive[n.MAC], Labels: labels,
			MemoryBytes: n.Agent.MemoryBytes, CPUs: float64(n.Agent.CPUs)})
		// A node that the inventory calls ready but has no liveness key
		// is lost: its heartbeats stopped (or its server died with it).
		if !alive[n.MAC] && n.State == registry.StateReady {
			f.log.Warn("fleet: node lost; moving its units", "mac", n.MAC)
			if _, err := f.reg.Observe(ctx, registry.Observation{MAC: n.MAC, State: registry.StateLost,
				Event: registry.Event{Event: "agent.lost", Detail: fmt.Sprintf("no heartbeat for %s", f.ttl)}}); err != nil {
				return err
			}
		}
	}

	next := Place(units, candidates, prev)
	fence := clientv3.Compare(clientv3.CreateRevision(election.Key()), "=", election.Rev())
	var ops []clientv3.Op
	for name, p := range next {
		if old, ok := prev[name]; ok && reflect.DeepEqual(old, p) {
			continue
		}
		b, err := json.Marshal(p)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(f.placementsPrefix()+name, string(b)))
		if p.Pending > 0 {
			f.log.Info("fleet: unit pending", "unit", name, "pending", p.Pending, "reason", p.Reason)
		}
	}
	for name := range prev {
		if _, ok := next[name]; !ok {
			ops = append(ops, clientv3.OpDelete(f.placementsPrefix()+name))
		}
	}
	for len(ops) > 0 {
		n := min(len(ops), 100)
		resp, err := f.cli.Txn(ctx).If(fence).Then(ops[:n]...).Commit()
		if err != nil {
			return fmt.Errorf("write placements: %w", err)
		}
		if !resp.Succeeded {
			return fmt.Errorf("write placements: no longer the elected scheduler")
		}
		ops = ops[n:]
	}
	return nil
}
