package profiles

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

var update = flag.Bool("update", false, "rewrite the want sections of testdata files")

// Each testdata/load/*.txt file is a case: a comment line, then files as
// "-- path --" sections, then a "-- want --" section with the expected
// errors, one per line (empty for a valid directory).
func TestLoadCases(t *testing.T) {
	files, err := filepath.Glob("testdata/load/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			fsys, want, head := parseCase(t, string(raw))
			var got string
			_, err = Load(fsys, "d")
			if err != nil {
				var list ErrorList
				if !errors.As(err, &list) {
					t.Fatalf("Load returned %T, want ErrorList: %v", err, err)
				}
				got = list.Error() + "\n"
			}
			if *update {
				if err := os.WriteFile(file, []byte(head+"-- want --\n"+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("errors differ\n got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func parseCase(t *testing.T, raw string) (fstest.MapFS, string, string) {
	t.Helper()
	fsys := fstest.MapFS{}
	head, rest, ok := strings.Cut(raw, "-- want --\n")
	if !ok {
		t.Fatal("case has no -- want -- section")
	}
	var name string
	var body strings.Builder
	flush := func() {
		if name != "" {
			fsys[name] = &fstest.MapFile{Data: []byte(body.String()), Mode: 0o644}
		}
		body.Reset()
	}
	for _, line := range strings.SplitAfter(head, "\n") {
		trimmed := strings.TrimSuffix(line, "\n")
		if strings.HasPrefix(trimmed, "-- ") && strings.HasSuffix(trimmed, " --") {
			flush()
			name = strings.TrimSuffix(strings.TrimPrefix(trimmed, "-- "), " --")
			continue
		}
		if name != "" {
			body.WriteString(line)
		}
	}
	flush()
	return fsys, rest, head
}

// A group with one MAC may reserve a DHCP address; Set.Reservations lists it
// with the MAC normalized and the value's position.
func TestGroupReservations(t *testing.T) {
	fsys := fstest.MapFS{
		"profiles/p.yaml": {Data: []byte("name: p\n")},
		"groups/a.yaml":   {Data: []byte("name: a\nprofile: p\nselector: {mac: \"52-54-00-AA-00-01\"}\ndhcp: {ip: 10.77.0.50}\nmetadata: {role: db}\n")},
		"groups/b.yaml":   {Data: []byte("name: b\nprofile: p\n")},
	}
	s, err := Load(fsys, "d")
	if err != nil {
		t.Fatal(err)
	}
	got := s.Reservations()
	if len(got) != 1 || got[0].MAC != "52:54:00:aa:00:01" || got[0].IP.String() != "10.77.0.50" || got[0].Group != "a" || got[0].At != "d/groups/a.yaml:4:12" {
		t.Fatalf("reservations: %+v", got)
	}
}
