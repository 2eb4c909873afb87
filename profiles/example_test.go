package profiles_test

import (
	"testing"

	"github.com/bootfleet/bootfleet/examples"
	"github.com/bootfleet/bootfleet/profiles"
)

func TestExampleLabLoads(t *testing.T) {
	s, err := profiles.Load(examples.Lab(), "examples/lab")
	if err != nil {
		t.Fatalf("examples/lab does not load:\n%v", err)
	}
	for _, w := range s.Warnings {
		t.Logf("warning: %v", w)
	}
	m, err := s.Match(profiles.Facts{MAC: "52:54:00:aa:00:02", Arch: "x86_64"})
	if err != nil || m.Group.Name != "loadgen" {
		t.Fatalf("52:54:00:aa:00:02 matched %v, %v; want group loadgen", m.Group, err)
	}
}
