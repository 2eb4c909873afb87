package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNoBlock means every block of the pool is claimed by a live server.
var ErrNoBlock = errors.New("every address block of the pool is claimed by another server")

// SharedPool shares a DHCP pool among the bootfleet servers of one etcd
// cluster: each server claims blocks of addresses and hands out addresses
// only from its own blocks, from memory and its own durable record, so no
// DHCP packet waits for a consensus round and no two servers ever offer
// the same address. A claim is renewed while its server lives; a block
// whose claim was not renewed for StaleAfter (longer than a lease, so every
// lease in it has ended) may be claimed by another server.
type SharedPool struct {
	cli        *clientv3.Client
	prefix     string
	server     string
	staleAfter time.Duration
	now        func() time.Time

	leasePrefix string
	mu          sync.Mutex
	pending     map[string][]byte // lease key → value, not yet written
	kick        chan struct{}
}

// SharedPoolConfig configures a SharedPool.
type SharedPoolConfig struct {
	Client *clientv3.Client
	// Prefix of the keys; default "/bootfleet/".
	Prefix string
	// Pool names the pool, e.g. its subnet.
	Pool string
	// Server names this server; claims survive its restarts under the
	// same name.
	Server string
	// StaleAfter must exceed the lease time.
	StaleAfter time.Duration
}

type blockClaim struct {
	Server  string    `json:"server"`
	Renewed time.Time `json:"renewed"`
}

// NewSharedPool returns the shared state of one pool.
func NewSharedPool(cfg SharedPoolConfig) (*SharedPool, error) {
	if cfg.Client == nil || cfg.Server == "" || cfg.Pool == "" {
		return nil, errors.New("registry: blocks need a client, a server name and a pool")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "/bootfleet/"
	}
	if cfg.StaleAfter <= 0 {
		return nil, errors.New("registry: blocks need StaleAfter (longer than a lease)")
	}
	pool := strings.NewReplacer("/", "_", ":", "_").Replace(cfg.Pool)
	base := strings.TrimSuffix(cfg.Prefix, "/") + "/dhcp/"
	return &SharedPool{cli: cfg.Client, prefix: base + "blocks/" + pool + "/", leasePrefix: base + "leases/" + pool + "/",
		server: cfg.Server, staleAfter: cfg.StaleAfter, now: time.Now, pending: map[string][]byte{}, kick: make(chan struct{}, 1)}, nil
}

func (b *SharedPool) key(first netip.Addr) string { return b.prefix + first.String() }

// Owned returns the first addresses of the blocks this server holds.
func (b *SharedPool) Owned(ctx context.Context) ([]netip.Addr, error) {
	owners, err := b.Owners(ctx)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for first, server := range owners {
		if server == b.server {
			out = append(out, first)
		}
	}
	return out, nil
}

// Owners maps each claimed block to its server.
func (b *SharedPool) Owners(ctx context.Context) (map[netip.Addr]string, error) {
	resp, err := b.cli.Get(ctx, b.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("registry: read DHCP blocks: %w", err)
	}
	out := map[netip.Addr]string{}
	for _, kv := range resp.Kvs {
		first, err := netip.ParseAddr(strings.TrimPrefix(string(kv.Key), b.prefix))
		if err != nil {
			continue
		}
		var c blockClaim
		if json.Unmarshal(kv.Value, &c) == nil {
			out[first] = c.Server
		}
	}
	return out, nil
}

// Claim takes the first of candidates that is free, or whose claim is
// stale, and returns it.
func (b *SharedPool) Claim(ctx context.Context, candidates []netip.Addr) (netip.Addr, error) {
	mine, _ := json.Marshal(blockClaim{Server: b.server, Renewed: b.now().UTC()})
	for _, first := range candidates {
		key := b.key(first)
		resp, err := b.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(mine))).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return netip.Addr{}, fmt.Errorf("registry: claim DHCP block %v: %w", first, err)
		}
		if resp.Succeeded {
			return first, nil
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) != 1 {
			continue
		}
		var c blockClaim
		if json.Unmarshal(kvs[0].Value, &c) == nil && c.Server != b.server && b.now().Sub(c.Renewed) < b.staleAfter {
			continue // a live server's block
		}
		// Stale (or ours already, or corrupt): take it over unless
		// someone else does first.
		tr, err := b.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", kvs[0].ModRevision)).
			Then(clientv3.OpPut(key, string(mine))).
			Commit()
		if err != nil {
			return netip.Addr{}, fmt.Errorf("registry: claim DHCP block %v: %w", first, err)
		}
		if tr.Succeeded {
			return first, nil
		}
	}
	return netip.Addr{}, ErrNoBlock
}

// Renew refreshes this server's claims and returns the blocks it still
// holds (a claim taken over while this server was away is lost to it).
func (b *SharedPool) Renew(ctx context.Context) ([]netip.Addr, error) {
	resp, err := b.cli.Get(ctx, b.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("registry: renew DHCP blocks: %w", err)
	}
	mine, _ := json.Marshal(blockClaim{Server: b.server, Renewed: b.now().UTC()})
	var held []netip.Addr
	for _, kv := range resp.Kvs {
		var c blockClaim
		first, perr := netip.ParseAddr(strings.TrimPrefix(string(kv.Key), b.prefix))
		if perr != nil || json.Unmarshal(kv.Value, &c) != nil || c.Server != b.server {
			continue
		}
		tr, err := b.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
			Then(clientv3.OpPut(string(kv.Key), string(mine))).
			Commit()
		if err != nil {
			return nil, fmt.Errorf("registry: renew DHCP block %v: %w", first, err)
		}
		if tr.Succeeded {
			held = append(held, first)
		}
	}
	return held, nil
}

// PublishLease queues a lease (JSON, keyed by address) for the cluster's
// lease table; Run writes the queue in batches. A newer value for the same
// key replaces a queued one. It never blocks: the local durable record is
// what an ACK waits for.
func (b *SharedPool) PublishLease(key string, value []byte) {
	b.mu.Lock()
	b.pending[key] = value
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Run writes published leases to etcd until ctx ends, in batches of up to
// 100, retrying what failed.
func (b *SharedPool) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = b.flush(fctx)
			cancel()
			return nil
		case <-b.kick:
		}
		select { // let a burst gather
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
		if err := b.flush(ctx); err != nil && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			select {
			case b.kick <- struct{}{}:
			default:
			}
		}
	}
}

func (b *SharedPool) flush(ctx context.Context) error {
	b.mu.Lock()
	batch := b.pending
	b.pending = map[string][]byte{}
	b.mu.Unlock()
	ops := make([]clientv3.Op, 0, len(batch))
	for k, v := range batch {
		ops = append(ops, clientv3.OpPut(b.leasePrefix+k, string(v)))
	}
	for len(ops) > 0 {
		n := min(len(ops), 100)
		if _, err := b.cli.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			// Put back what was not written, unless newer values came.
			b.mu.Lock()
			for _, op := range ops {
				k := strings.TrimPrefix(string(op.KeyBytes()), b.leasePrefix)
				if _, newer := b.pending[k]; !newer {
					b.pending[k] = batch[k]
				}
			}
			b.mu.Unlock()
			return fmt.Errorf("registry: publish DHCP leases: %w", err)
		}
		ops = ops[n:]
	}
	return nil
}

// Leases returns the cluster's lease table (key → value) and the revision
// it was read at, for WatchLeases.
func (b *SharedPool) Leases(ctx context.Context) (map[string][]byte, int64, error) {
	resp, err := b.cli.Get(ctx, b.leasePrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("registry: read DHCP leases: %w", err)
	}
	out := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), b.leasePrefix)] = kv.Value
	}
	return out, resp.Header.Revision, nil
}

// WatchLeases streams changes of the lease table after rev (values of
// every server, this one's included) until ctx ends; a watch that fails
// resumes from the last revision seen.
func (b *SharedPool) WatchLeases(ctx context.Context, rev int64) <-chan []byte {
	out := make(chan []byte, 256)
	go func() {
		defer close(out)
		for ctx.Err() == nil {
			wch := b.cli.Watch(clientv3.WithRequireLeader(ctx), b.leasePrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
			for resp := range wch {
				if resp.Err() != nil {
					break
				}
				for _, ev := range resp.Events {
					rev = ev.Kv.ModRevision
					if ev.Type != clientv3.EventTypePut {
						continue
					}
					select {
					case out <- ev.Kv.Value:
					case <-ctx.Done():
						return
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	return out
}
