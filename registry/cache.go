package registry

import (
	"context"
	"sync"
	"time"
)

// Cache is an in-memory copy of the inventory, kept current by a watch, so
// the boot path can read a node's labels and next-boot override without a
// round trip to etcd. Timelines are not cached.
type Cache struct {
	reg *Registry

	mu    sync.RWMutex
	nodes map[string]Node
	ready bool
}

// NewCache returns an empty cache; Run fills it and keeps it current.
func NewCache(reg *Registry) *Cache {
	return &Cache{reg: reg, nodes: map[string]Node{}}
}

// Get returns the cached node and whether it is known.
func (c *Cache) Get(mac string) (Node, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n, ok := c.nodes[mac]
	return n, ok
}

// Ready reports whether the cache has loaded the inventory at least once.
func (c *Cache) Ready() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.ready
}

// Run loads the inventory and follows changes until ctx ends, starting over
// (watch, then list) whenever the watch breaks.
func (c *Cache) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(ctx)
		changes := c.reg.Watch(wctx)
		lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
		nodes, err := c.reg.Nodes(lctx)
		lcancel()
		if err != nil {
			cancel()
			c.reg.log.Warn("registry cache: list failed; retrying", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		fresh := make(map[string]Node, len(nodes))
		for _, n := range nodes {
			fresh[n.MAC] = n
		}
		c.mu.Lock()
		c.nodes, c.ready = fresh, true
		c.mu.Unlock()
		for ch := range changes {
			c.mu.Lock()
			if ch.Deleted {
				delete(c.nodes, ch.Node.MAC)
			} else {
				c.nodes[ch.Node.MAC] = ch.Node
			}
			c.mu.Unlock()
		}
		cancel()
	}
	return nil
}
