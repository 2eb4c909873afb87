package dhcp

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bootfleet/bootfleet/internal/netnstest"
)

// Reservations set at run time (as a profiles reload does) with real
// udhcpc clients: the reserved client always gets its address, nobody else
// gets it even when asking for it, a changed reservation moves the client,
// and bad reservations are refused whole, naming where they were written.
func TestReservationsWithRealClients(t *testing.T) {
	p := newNetPair(t)
	s, _ := p.startServer(t, testConfig(), filepath.Join(t.TempDir(), "leases"))
	setMAC := func(mac string) {
		t.Helper()
		if out, err := netnstest.Command(p.client, "ip", "link", "set", "dev", p.cliIf, "address", mac).CombinedOutput(); err != nil {
			t.Fatalf("set MAC: %v\n%s", err, out)
		}
		netnstest.Command(p.client, "ip", "addr", "flush", "dev", p.cliIf).Run()
	}
	const reservedMAC, otherMAC = "52:54:00:77:00:01", "52:54:00:77:00:02"
	res := func(ip string) []Reservation {
		return []Reservation{{MAC: reservedMAC, IP: netip.MustParseAddr(ip), At: "groups/db.yaml:4:12"}}
	}

	// Another client holds an address first; then it becomes reserved.
	setMAC(otherMAC)
	if env := p.udhcpc(t, "-r", "10.77.9.120"); env["ip"] != "10.77.9.120" {
		t.Fatalf("before the reservation, asked for .120 and got %v", env["ip"])
	}
	if err := s.SetReservations(res("10.77.9.120")); err != nil {
		t.Fatal(err)
	}
	// The reserved client gets it (inside the pool) at once.
	setMAC(reservedMAC)
	if env := p.udhcpc(t); env["ip"] != "10.77.9.120" {
		t.Fatalf("reserved client got %v, want 10.77.9.120", env["ip"])
	}
	// The other client, asking for it again, gets another address.
	setMAC(otherMAC)
	if env := p.udhcpc(t, "-r", "10.77.9.120"); env["ip"] == "10.77.9.120" || !strings.HasPrefix(env["ip"], "10.77.9.") {
		t.Fatalf("other client asking for the reserved address got %v", env["ip"])
	}

	// A reload moves the reservation outside the pool.
	if err := s.SetReservations(res("10.77.9.20")); err != nil {
		t.Fatal(err)
	}
	setMAC(reservedMAC)
	if env := p.udhcpc(t, "-r", "10.77.9.120"); env["ip"] != "10.77.9.20" {
		t.Fatalf("after the change the reserved client got %v, want 10.77.9.20", env["ip"])
	}

	// Bad reservations: nothing changes, every problem is named.
	err := s.SetReservations([]Reservation{
		{MAC: reservedMAC, IP: netip.MustParseAddr("10.77.10.5"), At: "groups/a.yaml:4:12"},
		{MAC: otherMAC, IP: netip.MustParseAddr("10.77.9.1"), At: "groups/b.yaml:4:12"},
		{MAC: "52:54:00:77:00:03", IP: netip.MustParseAddr("10.77.9.255"), At: "groups/c.yaml:4:12"},
	})
	for _, want := range []string{
		"groups/a.yaml:4:12: reservation for 52:54:00:77:00:01: 10.77.10.5 is outside the DHCP subnet 10.77.9.0/24",
		"groups/b.yaml:4:12: reservation for 52:54:00:77:00:02: 10.77.9.1 is the DHCP server's own address",
		"groups/c.yaml:4:12: reservation for 52:54:00:77:00:03: 10.77.9.255 is the subnet's broadcast address",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad reservations: %v\nwant it to contain %q", err, want)
		}
	}
	if env := p.udhcpc(t); env["ip"] != "10.77.9.20" {
		t.Fatalf("after refused reservations the client got %v, want still 10.77.9.20", env["ip"])
	}
}

// Reservations from outside the config cannot contradict the config's own.
func TestReservationsAgainstConfig(t *testing.T) {
	cfg := testConfig()
	cfg.Reservations = map[string]netip.Addr{"52:54:00:00:00:01": netip.MustParseAddr("10.77.0.50")}
	s, _ := newTestServer(t, cfg, "", &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	err := s.SetReservations([]Reservation{
		{MAC: "52:54:00:00:00:02", IP: netip.MustParseAddr("10.77.0.50"), At: "g/x.yaml:1:2"},
		{MAC: "52:54:00:00:00:01", IP: netip.MustParseAddr("10.77.0.51"), At: "g/y.yaml:3:4"},
		{MAC: "52:54:00:00:00:03", IP: netip.MustParseAddr("10.77.0.60"), At: "g/z.yaml:5:6"},
		{MAC: "52:54:00:00:00:04", IP: netip.MustParseAddr("10.77.0.60"), At: "g/w.yaml:7:8"},
	})
	want := "g/w.yaml:7:8: reservation 10.77.0.60 for 52:54:00:00:00:04: already reserved for 52:54:00:00:00:03 (g/z.yaml:5:6)\n" +
		"g/x.yaml:1:2: reservation 10.77.0.50 for 52:54:00:00:00:02: already reserved for 52:54:00:00:00:01 (the DHCP config)\n" +
		"g/y.yaml:3:4: reservation 10.77.0.51 for 52:54:00:00:00:01: it already has the reservation 10.77.0.50 (the DHCP config)"
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}
	// The reserved client still gets the config's address.
	if ack := dora(t, s, "52:54:00:00:00:01"); ack.YourIPAddr.String() != "10.77.0.50" {
		t.Errorf("reserved client got %v", ack.YourIPAddr)
	}
}
