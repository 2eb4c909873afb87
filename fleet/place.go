package fleet

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Candidate is a node as placement sees it.
type Candidate struct {
	MAC string
	// Ready nodes have a live agent; only they get new replicas, and
	// replicas on nodes that are not ready move.
	Ready bool
	// Labels are the node's operator labels plus its facts arch, group,
	// profile and hostname, for metadata constraints.
	Labels map[string]string
	// MemoryBytes and CPUs are the node's capacity; 0 means unknown, and
	// then that resource does not limit placement.
	MemoryBytes int64
	CPUs        float64
}

// Replica is one running copy of a unit on a node.
type Replica struct {
	Index int    `json:"index"`
	Node  string `json:"node"`
}

// Placement is where a unit's replicas run and, for those that could not be
// placed, why.
type Placement struct {
	Unit     string    `json:"unit"`
	Hash     string    `json:"hash"`
	Replicas []Replica `json:"replicas"`
	// Pending counts the replicas with no node; Reason says why.
	Pending int    `json:"pending,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// nodeLoad is what placement has put on one node so far.
type nodeLoad struct {
	c      Candidate
	memory int64
	cpus   float64
	units  map[string]int // unit name → replicas on the node
	count  int            // replicas on the node, all units
}

func (n *nodeLoad) fits(r Resources) bool {
	if n.c.MemoryBytes > 0 && n.memory+r.MemoryBytes() > n.c.MemoryBytes {
		return false
	}
	if n.c.CPUs > 0 && n.cpus+r.CPUs > n.c.CPUs+1e-9 {
		return false
	}
	return true
}

func (n *nodeLoad) add(u Unit) {
	n.memory += u.Resources.MemoryBytes()
	n.cpus += u.Resources.CPUs
	n.units[u.Name]++
	n.count++
}

// memoryFree is the share of the node's memory still free (1 when unknown).
func (n *nodeLoad) memoryFree() float64 {
	if n.c.MemoryBytes <= 0 {
		return 1
	}
	return float64(n.c.MemoryBytes-n.memory) / float64(n.c.MemoryBytes)
}

// Place computes where every unit runs. It is a pure function of its
// inputs, so the elected scheduler can run it on every change:
//   - a replica stays where it is while its node is ready and still meets
//     the unit's constraints (so a node that comes back never gets
//     duplicates; a changed image is replaced in place by the agent);
//   - missing replicas go to the eligible node with the fewest replicas of
//     that unit, then the most free memory, then the fewest containers;
//   - a replica with no eligible node is pending, with the reason.
func Place(units []Unit, nodes []Candidate, prev map[string]Placement) map[string]Placement {
	loads := make(map[string]*nodeLoad, len(nodes))
	order := make([]*nodeLoad, 0, len(nodes))
	for _, c := range nodes {
		l := &nodeLoad{c: c, units: map[string]int{}}
		loads[c.MAC] = l
		order = append(order, l)
	}
	slices.SortFunc(order, func(a, b *nodeLoad) int { return strings.Compare(a.c.MAC, b.c.MAC) })
	units = orderByMachineOf(units)
	out := make(map[string]Placement, len(units))
	idx := unitIndex{byName: make(map[string]*Unit, len(units))}
	for i := range units {
		idx.byName[units[i].Name] = &units[i]
		idx.anyConflicts = idx.anyConflicts || len(units[i].Constraints.Conflicts) > 0
	}

	// Keep what still holds, for all units first, so that new placements
	// see everything that stays.
	for _, u := range units {
		p := Placement{Unit: u.Name, Hash: u.Hash(), Replicas: []Replica{}}
		for _, r := range prev[u.Name].Replicas {
			l := loads[r.Node]
			if l == nil || !l.c.Ready || !staticOK(u, l.c) || !indexWanted(u, r, p.Replicas) {
				continue
			}
			p.Replicas = append(p.Replicas, r)
			l.add(u)
		}
		out[u.Name] = p
	}
	for _, u := range units {
		p := out[u.Name]
		var why reasons
		if u.Global {
			for _, l := range order {
				if l.units[u.Name] > 0 {
					continue
				}
				if reason := exclude(u, l, idx); reason != "" {
					if l.c.Ready && staticOK(u, l.c) {
						why.add(reason) // a node that should run it but cannot
					}
					continue
				}
				p.Replicas = append(p.Replicas, Replica{Index: 0, Node: l.c.MAC})
				l.add(u)
			}
			p.Pending = total(why)
		} else {
			for n := range u.Replicas {
				if slices.ContainsFunc(p.Replicas, func(r Replica) bool { return r.Index == n }) {
					continue
				}
				var best *nodeLoad
				why = reasons{}
				for _, l := range order {
					if reason := exclude(u, l, idx); reason != "" {
						why.add(reason)
						continue
					}
					if best == nil || better(u, l, best) {
						best = l
					}
				}
				if best == nil {
					p.Pending++
					continue
				}
				p.Replicas = append(p.Replicas, Replica{Index: n, Node: best.c.MAC})
				best.add(u)
			}
		}
		if p.Pending > 0 {
			p.Reason = why.String(len(order))
		}
		slices.SortFunc(p.Replicas, func(a, b Replica) int {
			return cmp.Or(cmp.Compare(a.Index, b.Index), strings.Compare(a.Node, b.Node))
		})
		out[u.Name] = p
	}
	return out
}

// indexWanted says whether a previous replica still belongs to the unit: its
// index is in range (global units use index 0 once per node) and not taken.
func indexWanted(u Unit, r Replica, kept []Replica) bool {
	if u.Global {
		return r.Index == 0 && !slices.ContainsFunc(kept, func(k Replica) bool { return k.Node == r.Node })
	}
	return r.Index >= 0 && r.Index < u.Replicas && !slices.ContainsFunc(kept, func(k Replica) bool { return k.Index == r.Index })
}

// staticOK checks the constraints that depend only on the node itself.
func staticOK(u Unit, c Candidate) bool {
	if u.Constraints.Node != "" && u.Constraints.Node != c.MAC {
		return false
	}
	for k, v := range u.Constraints.Metadata {
		if c.Labels[k] != v {
			return false
		}
	}
	return true
}

// unitIndex finds units by name, and knows whether any unit has conflicts
// at all (most fleets have none, and then no node's units need checking).
type unitIndex struct {
	byName       map[string]*Unit
	anyConflicts bool
}

// exclude says why a node cannot take one more replica of u, or "".
func exclude(u Unit, l *nodeLoad, idx unitIndex) string {
	c := l.c
	if !c.Ready {
		return "not ready"
	}
	if u.Constraints.Node != "" && u.Constraints.Node != c.MAC {
		return "not node " + u.Constraints.Node
	}
	for k, want := range u.Constraints.Metadata {
		if c.Labels[k] != want {
			// Name the first missing label in a stable order.
			for _, k := range slices.Sorted(maps.Keys(u.Constraints.Metadata)) {
				if want := u.Constraints.Metadata[k]; c.Labels[k] != want {
					return fmt.Sprintf("no label %s=%s", k, want)
				}
			}
		}
	}
	for name, n := range l.units {
		if !idx.anyConflicts {
			break
		}
		if n == 0 || name == u.Name {
			continue
		}
		if matchesAny(u.Constraints.Conflicts, name) {
			return "runs conflicting unit " + name
		}
		if other := idx.byName[name]; other != nil && matchesAny(other.Constraints.Conflicts, u.Name) {
			return "runs unit " + name + " which conflicts with it"
		}
	}
	if m := u.Constraints.MachineOf; m != "" && l.units[m] == 0 {
		return "does not run " + m
	}
	if !l.fits(u.Resources) {
		return fmt.Sprintf("not enough free resources (needs %s memory, %g CPUs; free %s, %g)",
			humanBytes(u.Resources.MemoryBytes()), u.Resources.CPUs,
			humanBytes(max(c.MemoryBytes-l.memory, 0)), max(c.CPUs-l.cpus, 0))
	}
	return ""
}

// better says whether a is a better home than b for another replica of u.
func better(u Unit, a, b *nodeLoad) bool {
	if x, y := a.units[u.Name], b.units[u.Name]; x != y {
		return x < y
	}
	if x, y := a.memoryFree(), b.memoryFree(); x != y {
		return x > y
	}
	if x, y := a.count, b.count; x != y {
		return x < y
	}
	return a.c.MAC < b.c.MAC
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// orderByMachineOf puts every unit after the unit its machine_of names, so
// the followed unit is placed first; among equals, the most constrained
// first (pinned to a node, then by the number of labels required), so that
// a unit free to go anywhere does not take the one place a pinned unit
// could go; then by name.
func orderByMachineOf(units []Unit) []Unit {
	sorted := slices.Clone(units)
	slices.SortFunc(sorted, func(a, b Unit) int { return strings.Compare(a.Name, b.Name) })
	byName := make(map[string]*Unit, len(sorted))
	for i := range sorted {
		byName[sorted[i].Name] = &sorted[i]
	}
	depth := make(map[string]int, len(sorted))
	var depthOf func(name string, seen map[string]bool) int
	depthOf = func(name string, seen map[string]bool) int {
		if d, ok := depth[name]; ok {
			return d
		}
		u := byName[name]
		if u == nil || u.Constraints.MachineOf == "" || seen[name] {
			return 0 // a cycle ends here; the unit stays pending with its reason
		}
		seen[name] = true
		d := depthOf(u.Constraints.MachineOf, seen) + 1
		depth[name] = d
		return d
	}
	type key struct{ depth, pinned, labels int }
	keys := make(map[string]key, len(sorted))
	for _, u := range sorted {
		k := key{depth: depthOf(u.Name, map[string]bool{}), pinned: 1, labels: -len(u.Constraints.Metadata)}
		if u.Constraints.Node != "" {
			k.pinned = 0
		}
		keys[u.Name] = k
	}
	slices.SortStableFunc(sorted, func(a, b Unit) int {
		x, y := keys[a.Name], keys[b.Name]
		return cmp.Or(cmp.Compare(x.depth, y.depth), cmp.Compare(x.pinned, y.pinned), cmp.Compare(x.labels, y.labels))
	})
	return sorted
}

// reasons counts why nodes were excluded, for a pending unit's Reason.
type reasons map[string]int

func (r *reasons) add(why string) {
	if *r == nil {
		*r = reasons{}
	}
	(*r)[why]++
}

func (r reasons) String(nodes int) string {
	if nodes == 0 {
		return "no nodes: no agent has joined yet"
	}
	keys := slices.Sorted(maps.Keys(r))
	slices.SortStableFunc(keys, func(a, b string) int { return cmp.Compare(r[b], r[a]) })
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		n := r[k]
		noun := "nodes"
		if n == 1 {
			noun = "node"
		}
		parts = append(parts, fmt.Sprintf("%d %s %s", n, noun, k))
	}
	return fmt.Sprintf("no node can take it: %s", strings.Join(parts, "; "))
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d KiB", n>>10)
	}
}
