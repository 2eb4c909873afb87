package profiles

import (
	"errors"
	"testing"
	"testing/fstest"
)

func mapFS(files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for name, data := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(data), Mode: 0o644}
	}
	return fsys
}

func TestMatch(t *testing.T) {
	fsys := mapFS(map[string]string{
		"profiles/p.yaml":      "name: p\n",
		"groups/default.yaml":  "name: default\nprofile: p\n",
		"groups/uefi.yaml":     "name: uefi\nprofile: p\nselector: {firmware: uefi}\n",
		"groups/arm.yaml":      "name: arm\nprofile: p\nselector: {arch: arm64}\n",
		"groups/two.yaml":      "name: two\nprofile: p\nselector: {mac: [\"52:54:00:00:00:01\", \"52-54-00-00-00-02\"]}\n",
		"groups/two-uefi.yaml": "name: two-uefi\nprofile: p\nselector: {mac: [\"52:54:00:00:00:02\"], firmware: uefi}\n",
		"groups/rack-a.yaml":   "name: rack-a\nprofile: p\nselector: {rack: a}\n",
		// Same number of keys as rack-a; the higher priority wins.
		"groups/role-lg.yaml": "name: role-lg\nprofile: p\npriority: 5\nselector: {role: loadgen}\n",
		// Ties on keys and priority break by name: aa-host before zz-host.
		"groups/zz-host.yaml": "name: zz-host\nprofile: p\nselector: {hostname: [n1, n9]}\n",
		"groups/aa-host.yaml": "name: aa-host\nprofile: p\nselector: {hostname: n1, rack: [b]}\n",
		"groups/aa-h2.yaml":   "name: aa-h2\nprofile: p\nselector: {uuid: ABCDEF}\n",
	})
	s, err := Load(fsys, "t")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		facts Facts
		want  string
	}{
		{"nothing known → default", Facts{MAC: "52:54:00:00:00:09"}, "default"},
		{"firmware", Facts{MAC: "52:54:00:00:00:09", Firmware: "uefi"}, "uefi"},
		{"arch", Facts{MAC: "52:54:00:00:00:09", Arch: "arm64"}, "arm"},
		{"mac list first value", Facts{MAC: "52:54:00:00:00:01"}, "two"},
		{"mac list dash form in YAML", Facts{MAC: "52:54:00:00:00:02"}, "two"},
		{"two keys beat one", Facts{MAC: "52:54:00:00:00:02", Firmware: "uefi"}, "two-uefi"},
		{"label", Facts{MAC: "52:54:00:00:00:09", Labels: map[string]string{"rack": "a"}}, "rack-a"},
		{"priority breaks tie", Facts{MAC: "52:54:00:00:00:09", Labels: map[string]string{"rack": "a", "role": "loadgen"}}, "role-lg"},
		{"more keys beat priority", Facts{MAC: "52:54:00:00:00:09", Hostname: "n1", Labels: map[string]string{"rack": "b", "role": "loadgen"}}, "aa-host"},
		{"hostname list", Facts{MAC: "52:54:00:00:00:09", Hostname: "n9"}, "zz-host"},
		{"uuid any case", Facts{MAC: "52:54:00:00:00:09", UUID: "abcdef"}, "aa-h2"},
		{"empty fact never matches", Facts{MAC: "52:54:00:00:00:09", Labels: map[string]string{"rack": ""}}, "default"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := s.Match(tc.facts)
			if err != nil {
				t.Fatal(err)
			}
			if m.Group.Name != tc.want {
				t.Errorf("matched %s, want %s", m.Group.Name, tc.want)
			}
			if m.Profile == nil || m.Profile.Name != "p" {
				t.Errorf("profile %v, want p", m.Profile)
			}
		})
	}
}

func TestMatchNoDefault(t *testing.T) {
	s, err := Load(mapFS(map[string]string{
		"profiles/p.yaml": "name: p\n",
		"groups/a.yaml":   "name: a\nprofile: p\nselector: {arch: arm64}\n",
	}), "t")
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Match(Facts{MAC: "52:54:00:00:00:01", Arch: "x86_64"})
	if !errors.Is(err, ErrNoMatch) {
		t.Fatalf("err = %v, want ErrNoMatch", err)
	}
}

func TestParseMAC(t *testing.T) {
	for _, in := range []string{"52:54:00:AA:00:01", "52-54-00-aa-00-01", "525400aa0001", "525400AA0001", " 52:54:00:aa:00:01 "} {
		got, err := NormalizeMAC(in)
		if err != nil || got != "52:54:00:aa:00:01" {
			t.Errorf("NormalizeMAC(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "52:54:00:aa:00", "52:54:00-aa:00:01", "52:54:00:aa:00:0g", "5254.00aa.0001", "52:54:00:aa:00:01:02", "0x525400aa0001", "52::54:00:aa:00:1"} {
		if got, err := ParseMAC(in); err == nil {
			t.Errorf("ParseMAC(%q) = %v, want an error", in, got)
		}
	}
}

func TestRenderArgs(t *testing.T) {
	s, err := Load(mapFS(map[string]string{
		"profiles/p.yaml": "name: p\nboot:\n  kernel: /k\n  args: [\"a={{.MAC}}\", \"r={{.Metadata.role}}\", \"h={{default \\\"none\\\" .Hostname}}\"]\n",
		"groups/a.yaml":   "name: a\nprofile: p\nmetadata: {role: lg}\n",
	}), "t")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := s.Match(Facts{MAC: "52:54:00:00:00:01"})
	d := m.Data(Facts{MAC: "52:54:00:00:00:01"})
	args, err := m.Profile.RenderArgs(d)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a=52:54:00:00:00:01", "r=lg", "h=none"}
	if len(args) != 3 || args[0] != want[0] || args[1] != want[1] || args[2] != want[2] {
		t.Errorf("args = %q, want %q", args, want)
	}
	d.Metadata = map[string]any{}
	if _, err := m.Profile.RenderArgs(d); err == nil {
		t.Error("missing metadata key rendered without error; want missingkey=error")
	}
}
