package fleet

import (
	"strings"
	"testing"
)

func TestParseContractExample(t *testing.T) {
	src := `name: browsers
image: bootfleet/browser-load:latest
command: ["bootfleet", "load", "worker", "--job", "chat"]
env: {TARGET: "http://10.77.0.1:3000"}
replicas: 4
constraints:
  metadata: {role: loadgen}
  conflicts: ["db-*"]
  machine_of: "proxy"
  node: "52-54-00-AA-00-01"
resources: {memory: 2g, cpus: 1}
---
name: proxy
image: nginx
global: true
`
	units, err := Parse("units.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(units) != 2 {
		t.Fatalf("got %d units, want 2", len(units))
	}
	u := units[0]
	if u.Replicas != 4 || u.Constraints.Node != "52:54:00:aa:00:01" || u.Resources.MemoryBytes() != 2<<30 || u.Env["TARGET"] == "" {
		t.Errorf("unit decoded wrong: %+v", u)
	}
	if !units[1].Global || units[1].Replicas != 0 {
		t.Errorf("global unit: %+v", units[1])
	}
}

func TestParseDefaultsAndZero(t *testing.T) {
	units, err := Parse("a.yaml", []byte("name: a\nimage: x\n---\nname: b\nimage: x\nreplicas: 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if units[0].Replicas != 1 || units[1].Replicas != 0 {
		t.Errorf("replicas: got %d and %d, want 1 (default) and 0 (stopped)", units[0].Replicas, units[1].Replicas)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"unknown key", "name: a\nimage: x\nreplica: 2\n", []string{`u.yaml:3:1: `, `unknown field "replica"`}},
		{"wrong type", "name: a\nimage: x\nreplicas: many\n", []string{`u.yaml:3:11: `}},
		{"no image", "name: a\n", []string{"u.yaml:1:1: unit a has no image"}},
		{"bad name", "name: A B\nimage: x\n", []string{`u.yaml:1:7: name "A B"`}},
		{"global and replicas", "name: a\nimage: x\nglobal: true\nreplicas: 2\n", []string{"u.yaml:4:11: replicas and global"}},
		{"bad memory", "name: a\nimage: x\nresources:\n  memory: lots\n", []string{`u.yaml:4:11: memory: size "lots"`}},
		{"bad node", "name: a\nimage: x\nconstraints:\n  node: nope\n", []string{"u.yaml:4:9: node: "}},
		{"bad glob", "name: a\nimage: x\nconstraints:\n  conflicts: [\"[\"]\n", []string{"u.yaml:4:15: conflicts: \"[\""}},
		{"duplicate", "name: a\nimage: x\n---\nname: a\nimage: y\n", []string{`u.yaml:4:7: unit "a" is defined twice (first at line 1, column 7)`}},
		{"every error", "name: a\n---\nname: b\nimage: x\nresources: {memory: x}\n", []string{"u.yaml:1:1: unit a has no image", "u.yaml:5:21: memory"}},
		{"empty", "# nothing\n", []string{"u.yaml: no unit in the file"}},
		{"syntax", "name: [a\n", []string{"u.yaml:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("u.yaml", []byte(tc.src))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "512": 512, "1k": 1024, "512m": 512 << 20, "2g": 2 << 30, "2GiB": 2 << 30, "1.5g": 3 << 29, "64Mb": 64 << 20} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"x", "-1g", "1q", "g"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q): no error", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("name: a\nimage: x\nreplicas: 2\nconstraints: {metadata: {a: b}, conflicts: ['x*']}\n"))
	f.Add([]byte("name: a\nimage: x\nglobal: true\n---\nname: b\n"))
	f.Add([]byte("resources: {memory: 1g, cpus: 0.5}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		units, err := Parse("f.yaml", data)
		if err == nil {
			for _, u := range units {
				if u.Name == "" || u.Image == "" || u.Replicas < 0 {
					t.Fatalf("accepted an invalid unit: %+v", u)
				}
			}
		}
	})
}
