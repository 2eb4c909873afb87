package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNoBlock means every block of the pool is claimed by a live server.
var ErrNoBlock = errors.New("every address block of the pool is claimed by another server")

// Blocks shares a DHCP pool among the bootfleet servers of one etcd
// cluster: each server claims blocks of addresses and hands out addresses
// only from its own blocks, from memory and its own durable record, so no
// DHCP packet waits for a consensus round and no two servers ever offer
// the same address. A claim is renewed while its server lives; a block
// whose claim was not renewed for StaleAfter (longer than a lease, so every
// lease in it has ended) may be claimed by another server.
type Blocks struct {
	cli        *clientv3.Client
	prefix     string
	server     string
	staleAfter time.Duration
	now        func() time.Time
}

// BlocksConfig configures Blocks.
type BlocksConfig struct {
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

// NewBlocks returns the block claims of one pool.
func NewBlocks(cfg BlocksConfig) (*Blocks, error) {
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
	return &Blocks{cli: cfg.Client, prefix: strings.TrimSuffix(cfg.Prefix, "/") + "/dhcp/blocks/" + pool + "/",
		server: cfg.Server, staleAfter: cfg.StaleAfter, now: time.Now}, nil
}

func (b *Blocks) key(first netip.Addr) string { return b.prefix + first.String() }

// Owned returns the first addresses of the blocks this server holds.
func (b *Blocks) Owned(ctx context.Context) ([]netip.Addr, error) {
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
func (b *Blocks) Owners(ctx context.Context) (map[netip.Addr]string, error) {
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
func (b *Blocks) Claim(ctx context.Context, candidates []netip.Addr) (netip.Addr, error) {
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
func (b *Blocks) Renew(ctx context.Context) ([]netip.Addr, error) {
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
