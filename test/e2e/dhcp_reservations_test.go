package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bootfleet/bootfleet/internal/netnstest"
)

// TestDHCPReservationsFromGroups: a group whose selector is one MAC
// reserves an address with `dhcp: {ip: ...}`; real udhcpc gets it, a
// profiles edit moves it without a restart, and an edit with an address
// outside the subnet is refused (the last good reservation stays) with its
// path:line:col in /healthz. A config file reservation outside the subnet
// stops serve with its own path:line:col.
func TestDHCPReservationsFromGroups(t *testing.T) {
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Fatal("busybox is not installed: `make test` installs it")
	}
	p := netnstest.New(t, "10.77.7.1/24")
	mac := macOf(t, p.Client, p.ClientIf)
	dir := t.TempDir()
	copyDir(t, exampleDir(), dir)
	group := filepath.Join(dir, "groups", "db.yaml")
	writeGroup := func(ip string) {
		t.Helper()
		body := "name: db\nprofile: flatcar-worker\nselector: {mac: \"" + strings.ToUpper(mac) + "\"}\nmetadata: {role: db}\ndhcp:\n  ip: " + ip + "\n"
		if err := os.WriteFile(group, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeGroup("10.77.7.42")
	serverURL := "http://10.77.7.1:8080"
	args := []string{"serve", "--profiles", dir, "--data-dir", t.TempDir(),
		"--http", "10.77.7.1:8080", "--tftp=false", "--dhcp", "full", "--interface", p.ServerIf,
		"--dhcp-pool-start", "10.77.7.100", "--dhcp-pool-end", "10.77.7.150", "--dhcp-router", "10.77.7.1",
		"--etcd-listen-client", "http://127.0.0.1:2379", "--etcd-listen-peer", "http://127.0.0.1:2380"}

	// A config file's reservation outside the subnet: serve refuses, naming its place.
	cfgFile := filepath.Join(t.TempDir(), "bootfleet.yaml")
	os.WriteFile(cfgFile, []byte("dhcp:\n  mode: full\n  reservations:\n    \"52:54:00:99:00:01\": 10.99.0.5\n"), 0o644)
	out, err := netnstest.Command(p.Server, bootfleet(t), append(args, "--config", cfgFile)...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), cfgFile+":4:26: reservation for 52:54:00:99:00:01: 10.99.0.5 is outside the DHCP subnet 10.77.7.0/24") {
		t.Fatalf("serve with a reservation outside the subnet: %v\n%s", err, out)
	}

	srv := netnstest.Command(p.Server, bootfleet(t), args...)
	var log syncBuffer
	srv.Stdout, srv.Stderr = &log, &log
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	t.Cleanup(func() {
		srv.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("server log:\n%s", log.String())
		}
	})
	inServer := func(args ...string) string {
		out, _ := netnstest.Command(p.Server, "curl", append([]string{"-s", "--max-time", "2"}, args...)...).CombinedOutput()
		return string(out)
	}
	waitFor(t, "serve in the namespace", func() bool { return strings.Contains(inServer(serverURL+"/healthz"), "ok") })
	okReloads := func() string {
		for _, l := range strings.Split(inServer(serverURL+"/metrics"), "\n") {
			if strings.HasPrefix(l, `bootfleet_profiles_reloads_total{result="ok"}`) {
				return l
			}
		}
		return ""
	}

	if env := netnstest.Udhcpc(t, p.Client, p.ClientIf); env["ip"] != "10.77.7.42" {
		t.Fatalf("reserved client got %v, want 10.77.7.42", env["ip"])
	}
	// Hot reload moves the reservation.
	before := okReloads()
	writeGroup("10.77.7.43")
	waitFor(t, "the profiles reload", func() bool { return okReloads() != before })
	if env := netnstest.Udhcpc(t, p.Client, p.ClientIf); env["ip"] != "10.77.7.43" {
		t.Fatalf("after the edit the reserved client got %v, want 10.77.7.43", env["ip"])
	}
	// A reservation outside the subnet is refused; the last good one stays.
	writeGroup("10.99.0.7")
	want := group + ":6:7: reservation for " + mac + ": 10.99.0.7 is outside the DHCP subnet 10.77.7.0/24"
	waitFor(t, "/healthz to report the bad reservation", func() bool { return strings.Contains(inServer(serverURL+"/healthz"), want) })
	if env := netnstest.Udhcpc(t, p.Client, p.ClientIf); env["ip"] != "10.77.7.43" {
		t.Fatalf("after a refused edit the reserved client got %v, want still 10.77.7.43", env["ip"])
	}
}
