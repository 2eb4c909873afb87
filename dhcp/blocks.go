package dhcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// blockRenewInterval is how often claims are renewed; the registry treats
// a claim as stale only after far longer (more than a lease time).
const blockRenewInterval = time.Minute

// initShared joins the cluster's pool before the server answers anything:
// this server's blocks (a first one claimed when it has none) and every
// server's leases; then it keeps both up to date in the background.
func (s *Server) initShared(ctx context.Context) error {
	ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.initBlocks(ictx); err != nil {
		return err
	}
	table, rev, err := s.opts.Shared.Leases(ictx)
	if err != nil {
		return fmt.Errorf("dhcp: load the cluster's leases: %w", err)
	}
	published := map[netip.Addr]bool{}
	s.mu.Lock()
	for _, v := range table {
		var l Lease
		if json.Unmarshal(v, &l) == nil {
			s.pool.merge(l)
			if l.Server == s.opts.ServerName {
				published[l.IP] = true
			}
		}
	}
	// Leases of this server that the table misses (a crash before they
	// were published) go out now.
	var missing []Lease
	for _, l := range s.pool.leases() {
		if l.Server == s.opts.ServerName && !published[l.IP] {
			missing = append(missing, l)
		}
	}
	s.mu.Unlock()
	for _, l := range missing {
		s.publish(l)
	}
	go s.manageBlocks(ctx)
	go s.opts.Shared.Run(ctx)
	go func() {
		for v := range s.opts.Shared.WatchLeases(ctx, rev) {
			var l Lease
			if json.Unmarshal(v, &l) != nil || l.Server == s.opts.ServerName {
				continue
			}
			s.mu.Lock()
			s.pool.merge(l)
			s.mu.Unlock()
		}
	}()
	return nil
}

// publish hands a lease to the cluster's lease table (write-behind).
func (s *Server) publish(l Lease) {
	if s.opts.Shared == nil {
		return
	}
	b, err := json.Marshal(l)
	if err != nil {
		return
	}
	s.opts.Shared.PublishLease(l.IP.String(), b)
}

// initBlocks loads this server's blocks, claiming a first one when it has
// none.
func (s *Server) initBlocks(ctx context.Context) error {
	owned, err := s.opts.Shared.Owned(ctx)
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
	first, err := s.opts.Shared.Claim(ctx, candidates)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.pool.addOwned(first)
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
	lastFree := s.pool.freeAhead()
	s.mu.Unlock()
	exhausted := false
	var lastTry time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-renew.C:
			held, err := s.opts.Shared.Renew(ctx)
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
			// An offer found no address, whatever the scan position says.
			s.mu.Lock()
			lastFree = s.pool.freeAhead()
			s.mu.Unlock()
			if !exhausted || time.Since(lastTry) >= 10*time.Second {
				lastTry = time.Now()
				if err := s.claimBlock(ctx); err != nil {
					exhausted = true
				} else {
					exhausted = false
				}
			}
			continue
		}
		s.mu.Lock()
		free := s.pool.freeAhead()
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
