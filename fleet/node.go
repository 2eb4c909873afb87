package fleet

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/bootfleet/bootfleet/agent"
	"github.com/bootfleet/bootfleet/registry"
)

// Tokens derives and checks agent tokens: a token is an HMAC of the node's
// MAC under a secret kept in etcd, so every server of a cluster accepts it,
// it names exactly one node, and nothing per node is stored.
type Tokens struct {
	secret []byte
	cache  sync.Map // mac → token, for the boot path (bounded by cached)
	cached atomic.Int64
}

// maxCachedTokens bounds the token cache: a flood of made-up MACs costs
// HMACs, not memory.
const maxCachedTokens = 1 << 16

// LoadTokens reads the cluster's agent secret, creating it on first use.
func LoadTokens(ctx context.Context, cli *clientv3.Client, prefix string) (*Tokens, error) {
	if prefix == "" {
		prefix = "/bootfleet/"
	}
	key := strings.TrimSuffix(prefix, "/") + "/secrets/agent-token"
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	fresh := hex.EncodeToString(b[:])
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, fresh)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return nil, fmt.Errorf("fleet: agent token secret: %w", err)
	}
	if resp.Succeeded {
		return &Tokens{secret: []byte(fresh)}, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) != 1 {
		return nil, errors.New("fleet: agent token secret vanished while reading it")
	}
	return &Tokens{secret: kvs[0].Value}, nil
}

// Token is the agent token of the node with this MAC (canonical form).
func (t *Tokens) Token(mac string) string {
	if v, ok := t.cache.Load(mac); ok {
		return v.(string)
	}
	m := hmac.New(sha256.New, t.secret)
	m.Write([]byte("bootfleet-agent:" + mac))
	tok := hex.EncodeToString(m.Sum(nil))
	if t.cached.Load() < maxCachedTokens {
		if _, loaded := t.cache.LoadOrStore(mac, tok); !loaded {
			t.cached.Add(1)
		}
	}
	return tok
}

// Valid says whether token is the node's token.
func (t *Tokens) Valid(mac, token string) bool {
	return hmac.Equal([]byte(t.Token(mac)), []byte(token))
}

// Join records that the node's agent joined with these facts: the node is
// ready and alive.
func (f *Fleet) Join(ctx context.Context, mac string, facts agent.Facts) error {
	// Members are the nodes whose agent ever joined: the scheduler reads
	// only them, not the whole inventory. Recorded while the liveness
	// lease is granted: in a boot storm each etcd round trip of a join
	// is queued behind a thousand others.
	member := make(chan error, 1)
	go func() {
		_, err := f.cli.Put(ctx, f.membersPrefix()+mac, f.server)
		member <- err
	}()
	_, aliveErr := f.keepAlive(ctx, mac)
	if err := <-member; err != nil {
		return fmt.Errorf("fleet: record member %s: %w", mac, err)
	}
	if aliveErr != nil {
		return aliveErr
	}
	detail := strings.TrimSpace(fmt.Sprintf("agent %s %s %s", facts.AgentVersion, facts.Runtime, facts.RuntimeVersion))
	_, err := f.reg.Observe(ctx, registry.Observation{
		MAC: mac, Hostname: facts.Hostname, State: registry.StateReady,
		Event: registry.Event{Event: "agent.join", Detail: detail},
		Agent: &registry.AgentInfo{
			Version: facts.AgentVersion, OS: facts.OS, Kernel: facts.Kernel, CPUs: facts.CPUs, MemoryBytes: facts.MemoryBytes,
			Runtime: facts.Runtime, RuntimeVersion: facts.RuntimeVersion, RuntimeError: facts.RuntimeError, Joined: time.Now().UTC(),
		},
	})
	if err != nil {
		return fmt.Errorf("fleet: record join of %s: %w", mac, err)
	}
	f.log.Info("agent joined", "mac", mac, "hostname", facts.Hostname, "runtime", facts.Runtime)
	return nil
}

// Heartbeat keeps the node alive and records its containers' states. A
// node that was lost and heartbeats again is ready again.
func (f *Fleet) Heartbeat(ctx context.Context, mac string, hb agent.Heartbeat) error {
	revived, err := f.keepAlive(ctx, mac)
	if err != nil {
		return err
	}
	if revived {
		if _, err := f.reg.Observe(ctx, registry.Observation{MAC: mac, State: registry.StateReady,
			Event: registry.Event{Event: "agent.back", Detail: "heartbeats again"}}); err != nil {
			return fmt.Errorf("fleet: record return of %s: %w", mac, err)
		}
	}
	now := time.Now()
	states := containerStates(hb.Containers)
	f.mu.Lock()
	b := f.beats[mac]
	write := states != b.states || now.Sub(b.written) >= 15*time.Second
	f.beats[mac] = beat{at: now, containers: hb.Containers, written: b.written, states: b.states}
	f.mu.Unlock()
	if !write {
		return nil
	}
	data, err := json.Marshal(struct {
		Time       time.Time               `json:"time"`
		Containers []agent.ContainerStatus `json:"containers"`
	}{now.UTC(), hb.Containers})
	if err != nil {
		return err
	}
	if _, err := f.cli.Put(ctx, f.statusPrefix()+mac, string(data)); err != nil {
		return fmt.Errorf("fleet: record containers of %s: %w", mac, err)
	}
	f.mu.Lock()
	if cur, ok := f.beats[mac]; ok {
		cur.written, cur.states = now, states
		f.beats[mac] = cur
	}
	f.mu.Unlock()
	return nil
}

func containerStates(cs []agent.ContainerStatus) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "%s=%s/%s/%d/%s;", c.Name, c.State, c.ID, c.Restarts, c.Error)
	}
	return b.String()
}

// keepAlive refreshes the node's liveness lease, granting a new one when
// this server holds none or it expired; revived says the node was not
// alive before.
func (f *Fleet) keepAlive(ctx context.Context, mac string) (revived bool, err error) {
	f.mu.Lock()
	id, ok := f.leases[mac]
	f.mu.Unlock()
	if ok {
		_, err := f.cli.KeepAliveOnce(ctx, id)
		if err == nil {
			return false, nil // our lease lives, so the node's alive key does
		}
		if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return false, fmt.Errorf("fleet: keep node %s alive: %w", mac, err)
		}
	}
	lease, err := f.cli.Grant(ctx, int64((f.ttl+time.Second-1)/time.Second))
	if err != nil {
		return false, fmt.Errorf("fleet: lease for node %s: %w", mac, err)
	}
	key := f.alivePrefix() + mac
	// Was the node alive through another server's lease? Then this is a
	// failover, not a return.
	resp, err := f.cli.Txn(ctx).Then(clientv3.OpGet(key), clientv3.OpPut(key, f.server, clientv3.WithLease(lease.ID))).Commit()
	if err != nil {
		return false, fmt.Errorf("fleet: mark node %s alive: %w", mac, err)
	}
	f.mu.Lock()
	if old, had := f.leases[mac]; had && old != lease.ID {
		go f.cli.Revoke(context.WithoutCancel(ctx), old) //nolint:errcheck // best effort
	}
	f.leases[mac] = lease.ID
	f.mu.Unlock()
	return len(resp.Responses[0].GetResponseRange().Kvs) == 0, nil
}

// RequestLogs asks the agent of the node running the unit's replica for
// the tail of its container's logs, and waits for the answer (the agent
// may heartbeat to another server: the request travels through etcd).
func (f *Fleet) RequestLogs(ctx context.Context, unit string, replica int, node string, tail int) (agent.LogUpload, string, error) {
	if err := f.wait(ctx); err != nil {
		return agent.LogUpload{}, "", err
	}
	f.mu.Lock()
	p, ok := f.placements[unit]
	_, known := f.units[unit]
	f.mu.Unlock()
	if !known {
		return agent.LogUpload{}, "", fmt.Errorf("unit %s: %w", unit, ErrNotFound)
	}
	if node == "" {
		for _, r := range p.Replicas {
			if r.Index == replica {
				node = r.Node
				break
			}
		}
		if !ok || node == "" {
			return agent.LogUpload{}, "", fmt.Errorf("unit %s replica %d runs on no node (see units status): %w", unit, replica, ErrNotFound)
		}
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	req, _ := json.Marshal(agent.LogRequest{ID: id, Unit: unit, Replica: replica, Tail: tail})
	lease, err := f.cli.Grant(ctx, 60)
	if err != nil {
		return agent.LogUpload{}, node, fmt.Errorf("fleet: log request: %w", err)
	}
	respKey := f.logRespPrefix() + id
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := f.cli.Watch(wctx, respKey)
	if _, err := f.cli.Put(ctx, f.logReqPrefix()+node+"/"+id, string(req), clientv3.WithLease(lease.ID)); err != nil {
		return agent.LogUpload{}, node, fmt.Errorf("fleet: log request: %w", err)
	}
	defer f.cli.Delete(context.WithoutCancel(ctx), f.logReqPrefix()+node+"/"+id) //nolint:errcheck // the lease removes it anyway
	for resp := range wch {
		for _, ev := range resp.Events {
			if ev.Type != clientv3.EventTypePut {
				continue
			}
			var up agent.LogUpload
			if err := json.Unmarshal(ev.Kv.Value, &up); err != nil {
				return agent.LogUpload{}, node, fmt.Errorf("fleet: log answer: %w", err)
			}
			return up, node, nil
		}
	}
	if ctx.Err() != nil {
		return agent.LogUpload{}, node, fmt.Errorf("node %s did not send the logs in time (is its agent connected? see nodes show): %w", node, ctx.Err())
	}
	return agent.LogUpload{}, node, errors.New("fleet: watch for the logs ended")
}

// PutLogs stores an agent's answer to a log request of its own node.
func (f *Fleet) PutLogs(ctx context.Context, mac, id string, up agent.LogUpload) error {
	resp, err := f.cli.Get(ctx, f.logReqPrefix()+mac+"/"+id, clientv3.WithKeysOnly())
	if err != nil {
		return fmt.Errorf("fleet: log answer: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return fmt.Errorf("log request %s for node %s: %w", id, mac, ErrNotFound)
	}
	if len(up.Logs) > 1<<20 {
		up.Logs = up.Logs[len(up.Logs)-1<<20:]
	}
	data, _ := json.Marshal(up)
	lease, err := f.cli.Grant(ctx, 60)
	if err != nil {
		return fmt.Errorf("fleet: log answer: %w", err)
	}
	_, err = f.cli.Txn(ctx).Then(
		clientv3.OpPut(f.logRespPrefix()+id, string(data), clientv3.WithLease(lease.ID)),
		clientv3.OpDelete(f.logReqPrefix()+mac+"/"+id),
	).Commit()
	if err != nil {
		return fmt.Errorf("fleet: log answer: %w", err)
	}
	return nil
}

// LastHeartbeats returns the last heartbeat of each node that beats to this
// server (for metrics).
func (f *Fleet) LastHeartbeats() map[string][]agent.ContainerStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string][]agent.ContainerStatus, len(f.beats))
	for mac, b := range f.beats {
		if time.Since(b.at) <= f.ttl {
			out[mac] = b.containers
		}
	}
	return out
}
