package profiles

import (
	"testing"
	"testing/fstest"
)

func FuzzParseMAC(f *testing.F) {
	for _, s := range []string{"52:54:00:aa:00:01", "52-54-00-AA-00-01", "525400aa0001", "", "zz", "52:54:00:aa:00:0", "::::::::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		mac, err := ParseMAC(s)
		if err != nil {
			return
		}
		// A parsed MAC round-trips through its canonical form.
		again, err := ParseMAC(mac.String())
		if err != nil || again.String() != mac.String() {
			t.Fatalf("%q → %s does not round-trip: %v", s, mac, err)
		}
	})
}

// FuzzLoad feeds arbitrary bytes as a group and a profile file: Load must
// never panic, and must either succeed or give positioned errors.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("name: a\nprofile: p\nselector: {mac: 525400aa0001}\n"), []byte("name: p\nboot: {kernel: /k, args: [\"x={{.MAC}}\"]}\n"))
	f.Add([]byte("name: [\n"), []byte("- 1\n- 2"))
	f.Add([]byte("&a name: *a\n"), []byte("name: p\nboot: !!binary aGk=\n"))
	f.Add([]byte("name: a\nprofile: p\nmetadata: {a: {b: [1, {c: d}]}}\npriority: 99999999999999999999\n"), []byte("name: p\n"))
	f.Fuzz(func(t *testing.T, group, profile []byte) {
		fsys := fstest.MapFS{
			"groups/g.yaml":   &fstest.MapFile{Data: group},
			"profiles/p.yaml": &fstest.MapFile{Data: profile},
		}
		s, err := Load(fsys, "d")
		if err != nil {
			list, ok := err.(ErrorList)
			if !ok || len(list) == 0 {
				t.Fatalf("error is %T %v, want a non-empty ErrorList", err, err)
			}
			return
		}
		if len(s.Groups) == 0 {
			t.Fatal("a valid set has no groups")
		}
		for _, g := range s.Groups {
			if s.Profiles[g.Profile] == nil {
				t.Fatalf("group %s refers to missing profile %s", g.Name, g.Profile)
			}
		}
	})
}
