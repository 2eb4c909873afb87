package ignition

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/bootfleet/bootfleet/examples"
	"github.com/bootfleet/bootfleet/profiles"
)

var update = flag.Bool("update", false, "rewrite golden files")

func loadExample(t testing.TB) (*profiles.Set, *Renderer) {
	t.Helper()
	set, err := profiles.Load(examples.Lab(), "examples/lab")
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(set, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return set, r
}

func nodeData(set *profiles.Set, t testing.TB, f profiles.Facts) (profiles.Match, profiles.TemplateData) {
	t.Helper()
	m, err := set.Match(f)
	if err != nil {
		t.Fatal(err)
	}
	d := m.Data(f)
	d.IP = "10.77.0.100"
	d.ServerURL = "http://10.77.0.1:8080"
	return m, d
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs from golden file (go test -update to accept):\n got: %s\nwant: %s", name, got, want)
	}
}

func TestExampleGolden(t *testing.T) {
	set, r := loadExample(t)
	for _, tc := range []struct {
		name  string
		facts profiles.Facts
	}{
		{"lab-loadgen", profiles.Facts{MAC: "52:54:00:aa:00:01", Arch: "x86_64"}},
		{"lab-default", profiles.Facts{MAC: "52:54:00:aa:00:99", Arch: "x86_64", Hostname: "worker-7"}},
		{"lab-arm64", profiles.Facts{MAC: "52:54:00:aa:00:98", Arch: "arm64"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, d := nodeData(set, t, tc.facts)
			cfg, _, err := r.Ignition(m, d)
			if err != nil {
				t.Fatal(err)
			}
			if err := Validate(cfg); err != nil {
				t.Fatalf("rendered config does not parse: %v", err)
			}
			golden(t, tc.name+".ign.json", cfg)
		})
	}
}

func TestCloudConfigGolden(t *testing.T) {
	set, err := profiles.Load(fstest.MapFS{
		"groups/g.yaml":   {Data: []byte("name: g\nprofile: c\n")},
		"profiles/c.yaml": {Data: []byte("name: c\ncloud_config: c.yaml\n")},
		"cloud/c.yaml":    {Data: []byte("#cloud-config\nhostname: n-{{replace \":\" \"\" .MAC}}\nwrite_files:\n  - path: /etc/group\n    content: {{.Group}}\n")},
	}, "t")
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(set, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, d := nodeData(set, t, profiles.Facts{MAC: "52:54:00:aa:00:01"})
	out, err := r.CloudConfig(m, d)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "cloud.yaml", out)
	if _, _, err := r.Ignition(m, d); !errors.Is(err, ErrNoTemplate) {
		t.Errorf("Ignition for a profile without one: %v, want ErrNoTemplate", err)
	}
}

// Broken Butane is reported at New, located in the template and naming the
// group it was rendered for.
func TestNewReportsButaneErrors(t *testing.T) {
	for _, tc := range []struct {
		name, bu, want string
	}{
		{"bad field", "variant: flatcar\nversion: 1.1.0\nstorage:\n  filez: []\n", "t/ignition/w.bu:4:3: butane warning"},
		{"bad variant", "variant: nope\nversion: 1.0.0\n", "t/ignition/w.bu"},
		{"yaml", "variant: flatcar\nversion: 1.1.0\nstorage: [\n", "t/ignition/w.bu:"},
		{"bad mode", "variant: flatcar\nversion: 1.1.0\nstorage:\n  files:\n    - path: relative/path\n", "t/ignition/w.bu:5:"},
		{"missing metadata", "variant: flatcar\nversion: 1.1.0\nstorage:\n  files:\n    - path: /x\n      contents: {inline: \"{{.Metadata.nope}}\"}\n", "rendered for group g"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := profiles.Load(fstest.MapFS{
				"groups/g.yaml":   {Data: []byte("name: g\nprofile: p\nmetadata: {role: x}\n")},
				"profiles/p.yaml": {Data: []byte("name: p\nignition: w.bu\n")},
				"ignition/w.bu":   {Data: []byte(tc.bu)},
			}, "t")
			if err != nil {
				t.Fatal(err)
			}
			r, err := New(set, Options{})
			var msg string
			if err != nil {
				msg = err.Error()
			} else {
				msg = r.Warnings.Error()
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("got %q, want it to contain %q", msg, tc.want)
			}
		})
	}
}

// Distinct rendered texts are transpiled once each; a new Set re-renders.
func TestCache(t *testing.T) {
	set, r := loadExample(t)
	for round := 0; round < 3; round++ {
		for i := 0; i < 10; i++ {
			m, d := nodeData(set, t, profiles.Facts{MAC: fmt.Sprintf("52:54:00:00:00:%02x", i)})
			if _, _, err := r.Ignition(m, d); err != nil {
				t.Fatal(err)
			}
		}
	}
	if hits, misses := r.Stats(); misses != 10 || hits != 20 {
		t.Errorf("hits=%d misses=%d, want 20 and 10", hits, misses)
	}

	// The same machine under an edited template gets the new config.
	fsys := fstest.MapFS{
		"groups/g.yaml":   {Data: []byte("name: g\nprofile: p\n")},
		"profiles/p.yaml": {Data: []byte("name: p\nignition: w.bu\n")},
		"ignition/w.bu":   {Data: []byte("variant: flatcar\nversion: 1.1.0\nstorage:\n  files:\n    - path: /etc/a\n      contents: {inline: one}\n")},
	}
	render := func() string {
		set, err := profiles.Load(fsys, "t")
		if err != nil {
			t.Fatal(err)
		}
		r, err := New(set, Options{})
		if err != nil {
			t.Fatal(err)
		}
		m, d := nodeData(set, t, profiles.Facts{MAC: "52:54:00:00:00:01"})
		cfg, _, err := r.Ignition(m, d)
		if err != nil {
			t.Fatal(err)
		}
		return string(cfg)
	}
	first := render()
	fsys["ignition/w.bu"] = &fstest.MapFile{Data: []byte(strings.Replace(string(fsys["ignition/w.bu"].Data), "one", "two", 1))}
	second := render()
	if !strings.Contains(first, "data:,one") || !strings.Contains(second, "data:,two") {
		t.Errorf("edited template not re-rendered:\n%s\n%s", first, second)
	}
}

func TestInjector(t *testing.T) {
	set, err := profiles.Load(examples.Lab(), "examples/lab")
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(set, Options{Inject: func(d profiles.TemplateData) (Addition, error) {
		return Addition{
			Files: []File{
				{Path: "/etc/bootfleet/agent.env", Mode: 0o600, Contents: []byte("BOOTFLEET_SERVER=" + d.ServerURL + "\nBOOTFLEET_NODE=" + d.MAC + "\nBOOTFLEET_TOKEN=t-" + d.MAC + "\n")},
				{Path: "/opt/bin/bootfleet-agent", Mode: 0o755, Source: d.ServerURL + "/agent/bootfleet-agent-amd64"},
			},
			Units: []Unit{{Name: "bootfleet-agent.service", Contents: "[Service]\nExecStart=/opt/bin/bootfleet-agent --env-file /etc/bootfleet/agent.env\n[Install]\nWantedBy=multi-user.target\n"}},
		}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	m, d := nodeData(set, t, profiles.Facts{MAC: "52:54:00:aa:00:01"})
	cfg, _, err := r.Ignition(m, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(cfg); err != nil {
		t.Fatalf("config with injected files does not parse: %v\n%s", err, cfg)
	}
	var parsed struct {
		Storage struct{ Files []struct{ Path string } }
		Systemd struct{ Units []struct{ Name string } }
	}
	json.Unmarshal(cfg, &parsed)
	paths := fmt.Sprint(parsed.Storage.Files)
	if !strings.Contains(paths, "/etc/bootfleet/agent.env") || !strings.Contains(paths, "/etc/hostname") || !strings.Contains(fmt.Sprint(parsed.Systemd.Units), "bootfleet-agent.service") {
		t.Errorf("injected config lacks the agent's or the profile's parts: %s", cfg)
	}
	golden(t, "lab-loadgen-injected.ign.json", cfg)
}

func BenchmarkIgnitionCached(b *testing.B) {
	set, r := loadExample(b)
	type node struct {
		m profiles.Match
		d profiles.TemplateData
	}
	nodes := make([]node, 1000)
	for i := range nodes {
		m, d := nodeData(set, b, profiles.Facts{MAC: fmt.Sprintf("52:54:00:00:%02x:%02x", i/256, i%256)})
		nodes[i] = node{m, d}
		r.Ignition(m, d)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		n := nodes[i%len(nodes)]
		if _, _, err := r.Ignition(n.m, n.d); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkIgnitionMiss(b *testing.B) {
	set, r := loadExample(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m, d := nodeData(set, b, profiles.Facts{MAC: fmt.Sprintf("52:54:%02x:%02x:%02x:%02x", byte(i>>24), byte(i>>16), byte(i>>8), byte(i))})
		if _, _, err := r.Ignition(m, d); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
