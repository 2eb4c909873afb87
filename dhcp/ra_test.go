package dhcp

import (
	"context"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestULAFor(t *testing.T) {
	if got := ULAFor(netip.MustParsePrefix("10.77.0.0/24")); got.String() != "fdbf:a4d::/64" {
		t.Errorf("ULAFor = %v", got)
	}
}

// A real client (rdisc6 from ndisc6) solicits and gets our advertisement.
func TestRouterAdvertisements(t *testing.T) {
	p := newNetPair(t)
	if _, err := exec.LookPath("rdisc6"); err != nil {
		t.Fatal("rdisc6 is not installed: `make test` installs ndisc6")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	prefix := ULAFor(netip.MustParsePrefix("10.77.9.0/24"))
	go func() {
		done <- inNetns(p.server, func() error {
			return (&Advertiser{Interface: p.srvIf, Prefix: prefix, Interval: time.Hour}).Run(ctx)
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("advertiser: %v", err)
		}
	})
	var out []byte
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		out, err = exec.Command("ip", "netns", "exec", p.client, "rdisc6", "-1", "-w", "1000", "-r", "3", p.cliIf).CombinedOutput()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no router advertisement within 20s: %v\n%s", err, out)
		}
	}
	s := string(out)
	if !strings.Contains(s, "Prefix                   : "+prefix.String()) ||
		!regexp.MustCompile(`Router lifetime\s+:\s+0 \(`).MatchString(s) ||
		!regexp.MustCompile(`Autonomous address conf\.:\s+Yes`).MatchString(s) {
		t.Fatalf("rdisc6 saw:\n%s\nwant prefix %v, autonomous, router lifetime 0", s, prefix)
	}
}
