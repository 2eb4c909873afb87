package httpboot

import (
	"testing"
	"time"

	"github.com/bootfleet/bootfleet/examples"
	"github.com/bootfleet/bootfleet/ignition"
	"github.com/bootfleet/bootfleet/profiles"
)

// A machine's iPXE script request renders its Ignition config in the
// background, so the kernel's /ignition fetch is a cache hit and gets the
// very config it would have got without warming.
func TestIPXEWarmsIgnition(t *testing.T) {
	var r *ignition.Renderer
	f := newFixture(t, nil, func(set *profiles.Set) Renderer {
		var err error
		if r, err = ignition.New(set, ignition.Options{Inject: ignition.AgentInjector()}); err != nil {
			t.Fatal(err)
		}
		return r
	}, Config{PublicURL: public, AgentToken: func(mac string) string { return "token-" + mac }, AgentAvailable: func(string) bool { return true }})
	mac := "52:54:00:12:34:56"
	if resp, _ := fetch(t, f.ts.URL+"/ipxe?mac="+mac+"&arch=x86_64&firmware=uefi&uuid=0d0e0a0d-0000-0000-0000-000000000001"); resp.StatusCode != 200 {
		t.Fatalf("ipxe: %s", resp.Status)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, misses := r.Stats(); misses == 1 && f.srv.warm.idle() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the script request did not render the Ignition config ahead")
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, warmed := fetch(t, f.ts.URL+"/ignition?mac="+mac)
	if resp.StatusCode != 200 {
		t.Fatalf("ignition: %s %s", resp.Status, warmed)
	}
	hits, misses := r.Stats()
	if hits != 1 || misses != 1 {
		t.Fatalf("the Ignition fetch after warming: %d hits, %d misses; want the warmed config", hits, misses)
	}
	// The same bytes as a renderer that was never warmed gives.
	set, err := profiles.Load(examples.Lab(), "examples/lab")
	if err != nil {
		t.Fatal(err)
	}
	cold := newFixture(t, nil, func(*profiles.Set) Renderer {
		r, _ := ignition.New(set, ignition.Options{Inject: ignition.AgentInjector()})
		return r
	}, Config{PublicURL: public, AgentToken: func(mac string) string { return "token-" + mac }, AgentAvailable: func(string) bool { return true }})
	_, want := fetch(t, cold.ts.URL+"/ignition?mac="+mac)
	if got, exp := warmed, want; got != exp {
		t.Errorf("warmed config differs from a cold render:\n%s\nwant\n%s", got, exp)
	}
}
