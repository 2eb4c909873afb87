package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// BlockClaimer shares a pool among the servers of a cluster in blocks of
// addresses (the registry implements it over etcd). Each server hands out
// only addresses of its own blocks, so a DHCP exchange never waits for the
// cluster and no two servers offer one address.
type BlockClaimer interface {
	// Owned returns the first addresses of the blocks this server holds.
	Owned(ctx context.Context) ([]netip.Addr, error)
	// Claim takes the first free (or stale) block among candidates.
	Claim(ctx context.Context, candidates []netip.Addr) (netip.Addr, error)
	// Renew keeps this server's claims alive and returns those it holds.
	Renew(ctx context.Context) ([]netip.Addr, error)
}

// blockRenewInterval is how often claims are renewed; the registry treats
// a claim as stale only after far longer (more than a lease time).
const blockRenewInterval = time.Minute

// initBlocks loads this server's blocks, claiming a first one when it has
// none, before the server answers anything.
func (s *Server) initBlocks(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	owned, err := s.opts.Blocks.Owned(ctx)
	if err != nil {
		return fmt.Errorf("dhcp: load address blocks: %w", err)
	}
	s.mu.Lock()
	s.pool.setOwned(owned)
	s.mu.Unlock()
	if len(owned) == 0 {
		if err := s.claimBlock(ctx); err != nil {
			return fmt.Errorf("dhcp: claim a first address block: %w (is the pool used up by other servers of this etcd cluster?)", err)
		}
	}
	return nil
}

// claimBlock claims one more block, preferring the lowest free one.
func (s *Server) claimBlock(ctx context.Context) error {
	s.mu.Lock()
	firsts, owned := s.pool.blocks()
	s.mu.Unlock()
	var candidates []netip.Addr
	for i, f := range firsts {
		if !owned[i] {
			candidates = append(candidates, f)
		}
	}
	if len(candidates) == 0 {
		return errors.New("this server owns every block already")
	}
	first, err := s.opts.Blocks.Claim(ctx, candidates)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.pool.owned[(u32(first)-s.pool.start)/s.pool.blockSize] = true
	s.mu.Unlock()
	s.log.Debug("dhcp: claimed an address block", "first", first, "size", s.cfg.BlockSize)
	return nil
}

// manageBlocks keeps enough free addresses in this server's blocks: it
// claims ahead of demand (what the last interval used, at least a block),
// at once when an offer found none, and renews the claims.
func (s *Server) manageBlocks(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	renew := time.NewTicker(blockRenewInterval)
	defer renew.Stop()
	s.mu.Lock()
	lastFree := s.pool.freeOwned()
	s.mu.Unlock()
	exhausted := false
	var lastTry time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-renew.C:
			held, err := s.opts.Blocks.Renew(ctx)
			if err != nil {
				s.log.Warn("dhcp: renewing address blocks failed", "error", err)
				continue
			}
			s.mu.Lock()
			s.pool.setOwned(held)
			s.mu.Unlock()
			continue
		case <-tick.C:
		case <-s.claim:
		}
		s.mu.Lock()
		free := s.pool.freeOwned()
		s.mu.Unlock()
		used := max(lastFree-free, 0)
		want := max(s.cfg.BlockSize, 2*used)
		if exhausted && time.Since(lastTry) < 10*time.Second {
			lastFree = free
			continue // every block is taken: ask the cluster again later
		}
		lastTry = time.Now()
		for free < want {
			if err := s.claimBlock(ctx); err != nil {
				if !exhausted {
					s.log.Warn("dhcp: no more address blocks; reusing expired leases of this server's blocks", "error", err, "free", free)
				}
				exhausted = true
				break
			}
			exhausted = false
			free += s.cfg.BlockSize // about: a claimed block may hold old leases
		}
		lastFree = free
	}
}
