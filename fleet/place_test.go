package fleet

import (
	"fmt"
	"strings"
	"testing"
)

func node(mac string, ready bool, labels map[string]string, memGiB int64, cpus float64) Candidate {
	return Candidate{MAC: mac, Ready: ready, Labels: labels, MemoryBytes: memGiB << 30, CPUs: cpus}
}

func nodesOf(p Placement) []string {
	var out []string
	for _, r := range p.Replicas {
		out = append(out, r.Node)
	}
	return out
}

func TestPlace(t *testing.T) {
	a, b, c := "52:54:00:00:00:0a", "52:54:00:00:00:0b", "52:54:00:00:00:0c"
	loadgen := map[string]string{"role": "loadgen"}
	three := []Candidate{node(a, true, loadgen, 4, 2), node(b, true, nil, 4, 2), node(c, true, loadgen, 4, 2)}
	for _, tc := range []struct {
		name        string
		units       []Unit
		nodes       []Candidate
		prev        map[string]Placement
		unit        string
		wantNodes   string // space-separated, in replica order
		wantPending int
		wantReason  string
	}{
		{name: "spread", units: []Unit{{Name: "w", Image: "x", Replicas: 3}}, nodes: three, unit: "w", wantNodes: a + " " + b + " " + c},
		{name: "more replicas than nodes", units: []Unit{{Name: "w", Image: "x", Replicas: 4}}, nodes: three[:2], unit: "w", wantNodes: a + " " + b + " " + a + " " + b},
		{name: "metadata", units: []Unit{{Name: "w", Image: "x", Replicas: 2, Constraints: Constraints{Metadata: loadgen}}}, nodes: three, unit: "w", wantNodes: a + " " + c},
		{name: "metadata unmet", units: []Unit{{Name: "w", Image: "x", Replicas: 1, Constraints: Constraints{Metadata: map[string]string{"role": "db"}}}}, nodes: three, unit: "w",
			wantPending: 1, wantReason: "3 nodes no label role=db"},
		{name: "node", units: []Unit{{Name: "w", Image: "x", Replicas: 1, Constraints: Constraints{Node: b}}}, nodes: three, unit: "w", wantNodes: b},
		{name: "not ready", units: []Unit{{Name: "w", Image: "x", Replicas: 1}}, nodes: []Candidate{node(a, false, nil, 4, 2)}, unit: "w",
			wantPending: 1, wantReason: "1 node not ready"},
		{name: "no nodes", units: []Unit{{Name: "w", Image: "x", Replicas: 1}}, unit: "w", wantPending: 1, wantReason: "no agent has joined"},
		{name: "resources", units: []Unit{{Name: "w", Image: "x", Replicas: 3, Resources: Resources{Memory: "3g"}}}, nodes: three[:2], unit: "w",
			wantNodes: a + " " + b, wantPending: 1, wantReason: "2 nodes not enough free resources (needs 3.0 GiB memory"},
		{name: "cpus", units: []Unit{{Name: "w", Image: "x", Replicas: 3, Resources: Resources{CPUs: 2}}}, nodes: three, unit: "w", wantNodes: a + " " + b + " " + c},
		{name: "conflicts", units: []Unit{{Name: "db-1", Image: "x", Replicas: 1, Constraints: Constraints{Node: a}}, {Name: "w", Image: "x", Replicas: 2, Constraints: Constraints{Conflicts: []string{"db-*"}}}},
			nodes: three, unit: "w", wantNodes: b + " " + c},
		{name: "conflicts both ways", units: []Unit{{Name: "db", Image: "x", Replicas: 1, Constraints: Constraints{Node: a, Conflicts: []string{"w"}}}, {Name: "w", Image: "x", Replicas: 1, Constraints: Constraints{Node: a}}},
			nodes: three, unit: "w", wantPending: 1, wantReason: "1 node runs unit db which conflicts with it"},
		{name: "pinned unit placed before a unit that conflicts with it", units: []Unit{{Name: "apart", Image: "x", Replicas: 1, Constraints: Constraints{Conflicts: []string{"db-*"}}},
			{Name: "db-main", Image: "x", Replicas: 1, Constraints: Constraints{Node: a}}}, nodes: three, unit: "db-main", wantNodes: a},
		{name: "machine_of", units: []Unit{{Name: "a-follower", Image: "x", Replicas: 1, Constraints: Constraints{MachineOf: "proxy"}}, {Name: "proxy", Image: "x", Replicas: 1, Constraints: Constraints{Node: c}}},
			nodes: three, unit: "a-follower", wantNodes: c},
		{name: "global", units: []Unit{{Name: "g", Image: "x", Global: true, Constraints: Constraints{Metadata: loadgen}}}, nodes: three, unit: "g", wantNodes: a + " " + c},
		{name: "global without room", units: []Unit{{Name: "g", Image: "x", Global: true, Resources: Resources{Memory: "5g"}}}, nodes: three, unit: "g", wantPending: 3, wantReason: "not enough free"},
		{name: "stays put", units: []Unit{{Name: "w", Image: "x", Replicas: 2}}, nodes: three,
			prev: map[string]Placement{"w": {Replicas: []Replica{{0, c}, {1, b}}}}, unit: "w", wantNodes: c + " " + b},
		{name: "moves off a lost node", units: []Unit{{Name: "w", Image: "x", Replicas: 2}}, nodes: []Candidate{three[0], node(b, false, nil, 4, 2), three[2]},
			prev: map[string]Placement{"w": {Replicas: []Replica{{0, a}, {1, b}}}}, unit: "w", wantNodes: a + " " + c},
		{name: "node comes back: no duplicate", units: []Unit{{Name: "w", Image: "x", Replicas: 1}}, nodes: three,
			prev: map[string]Placement{"w": {Replicas: []Replica{{0, c}}}}, unit: "w", wantNodes: c},
		{name: "scaled down", units: []Unit{{Name: "w", Image: "x", Replicas: 1}}, nodes: three,
			prev: map[string]Placement{"w": {Replicas: []Replica{{0, a}, {1, b}}}}, unit: "w", wantNodes: a},
		{name: "constraint changed", units: []Unit{{Name: "w", Image: "x", Replicas: 1, Constraints: Constraints{Node: b}}}, nodes: three,
			prev: map[string]Placement{"w": {Replicas: []Replica{{0, a}}}}, unit: "w", wantNodes: b},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Place(tc.units, tc.nodes, tc.prev)[tc.unit]
			if g := strings.Join(nodesOf(got), " "); g != tc.wantNodes {
				t.Errorf("nodes: got %q, want %q", g, tc.wantNodes)
			}
			if got.Pending != tc.wantPending {
				t.Errorf("pending: got %d, want %d (%s)", got.Pending, tc.wantPending, got.Reason)
			}
			if !strings.Contains(got.Reason, tc.wantReason) || (tc.wantReason == "" && got.Reason != "") {
				t.Errorf("reason: got %q, want %q", got.Reason, tc.wantReason)
			}
		})
	}
}

func TestHashChangesWithSpec(t *testing.T) {
	u := Unit{Name: "w", Image: "x", Env: map[string]string{"A": "1", "B": "2"}}
	h := u.Hash()
	if h != (Unit{Name: "other", Image: "x", Env: map[string]string{"B": "2", "A": "1"}, Replicas: 5}).Hash() {
		t.Error("hash depends on name, replicas or map order")
	}
	u.Image = "y"
	if u.Hash() == h {
		t.Error("hash does not change with the image")
	}
}

// BenchmarkPlace1000Units100Nodes: the scheduler placing 1,000 units (one
// to four replicas, a third with label constraints, some with memory) over
// 100 nodes from nothing, as after a restart of the whole fleet.
func BenchmarkPlace1000Units100Nodes(b *testing.B) {
	var nodes []Candidate
	for i := range 100 {
		labels := map[string]string{"rack": fmt.Sprintf("r%d", i%4)}
		nodes = append(nodes, Candidate{MAC: fmt.Sprintf("52:54:00:00:%02x:%02x", i/256, i%256), Ready: true, Labels: labels, MemoryBytes: 64 << 30, CPUs: 32})
	}
	var units []Unit
	for i := range 1000 {
		u := Unit{Name: fmt.Sprintf("u%04d", i), Image: "x", Replicas: 1 + i%4, Resources: Resources{Memory: "256m", CPUs: 0.25}}
		if i%3 == 0 {
			u.Constraints.Metadata = map[string]string{"rack": fmt.Sprintf("r%d", i%4)}
		}
		units = append(units, u)
	}
	b.ResetTimer()
	for b.Loop() {
		p := Place(units, nodes, nil)
		if p["u0999"].Pending != 0 {
			b.Fatal(p["u0999"].Reason)
		}
	}
	b.ReportMetric(float64(len(units))*float64(b.N)/b.Elapsed().Seconds(), "units/s")
}
