package profiles

import (
	"fmt"
	"testing"

	"testing/fstest"
)

func BenchmarkMatch(b *testing.B) {
	fsys := fstest.MapFS{"profiles/p.yaml": &fstest.MapFile{Data: []byte("name: p\n")}}
	for i := range 200 {
		fsys[fmt.Sprintf("groups/g%03d.yaml", i)] = &fstest.MapFile{Data: []byte(fmt.Sprintf("name: g%03d\nprofile: p\nselector: {mac: \"52:54:00:00:%02x:%02x\"}\n", i, i/256, i%256))}
	}
	fsys["groups/default.yaml"] = &fstest.MapFile{Data: []byte("name: default\nprofile: p\n")}
	s, err := Load(fsys, "b")
	if err != nil {
		b.Fatal(err)
	}
	f := Facts{MAC: "52:54:00:00:ff:ff", Arch: "x86_64"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Match(f); err != nil {
			b.Fatal(err)
		}
	}
}
