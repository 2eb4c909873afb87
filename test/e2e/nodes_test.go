package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNodesInventory boots a node's HTTP steps with curl, then reads the
// inventory with the CLI: the node, its state and its timeline; labels
// set with the CLI take part in matching; forget removes it.
func TestNodesInventory(t *testing.T) {
	dir := t.TempDir()
	copyDir(t, exampleDir(), dir)
	// A group selected by an operator label.
	if err := os.WriteFile(filepath.Join(dir, "groups", "rack-b.yaml"), []byte("name: rack-b\nprofile: flatcar-worker\nselector: {rack: b}\nmetadata: {role: rack-b-worker}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "--profiles", dir)
	cli := func(args ...string) string {
		t.Helper()
		out, stderr, code := run(t, append(args, "--server", s.URL, "--data-dir", s.DataDir)...)
		if code != 0 {
			t.Fatalf("bootfleet %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
		}
		return out
	}
	mac := "52:54:00:bb:00:07"
	curl(t, "-f", s.URL+"/ipxe?mac="+mac+"&arch=x86_64&firmware=bios")
	curl(t, "-f", s.URL+"/ignition?mac="+mac)

	var node struct {
		MAC, IP, State, Group, Profile string
		Timeline                       []struct {
			Time   time.Time
			Event  string
			Detail string
		}
	}
	waitFor(t, "the node to be provisioned in the inventory", func() bool {
		out, _, code := run(t, "nodes", "show", mac, "-o", "json", "--server", s.URL, "--data-dir", s.DataDir)
		return code == 0 && json.Unmarshal([]byte(out), &node) == nil && node.State == "provisioned" && len(node.Timeline) >= 2
	})
	if node.Group != "default" || node.Profile != "flatcar-worker" || node.IP == "" {
		t.Errorf("node %+v", node)
	}
	if node.Timeline[0].Event != "ipxe" || node.Timeline[1].Event != "ignition" {
		t.Errorf("timeline %+v, want ipxe then ignition", node.Timeline)
	}

	var list []map[string]any
	if err := json.Unmarshal([]byte(cli("nodes", "list", "-o", "json")), &list); err != nil || len(list) != 1 || list[0]["mac"] != mac {
		t.Fatalf("nodes list -o json: %v %v", list, err)
	}
	if table := cli("nodes", "list"); !strings.Contains(table, mac) || !strings.Contains(table, "provisioned") {
		t.Errorf("nodes list:\n%s", table)
	}
	if show := cli("nodes", "show", mac); !strings.Contains(show, "Timeline:") || !strings.Contains(show, "ignition") {
		t.Errorf("nodes show:\n%s", show)
	}

	// An operator label moves the node into the label's group.
	cli("nodes", "label", mac, "rack=b")
	waitFor(t, "the label to take part in matching", func() bool {
		_, body := get(t, s.URL+"/ipxe?mac="+mac)
		return strings.Contains(body, "bootfleet.role=rack-b-worker")
	})

	// Next boot: the rescue profile once, then back to the matched one.
	cli("nodes", "next-boot", mac, "debian-cloud")
	waitFor(t, "the next boot to be served", func() bool {
		_, body := get(t, s.URL+"/ipxe?mac="+mac)
		return strings.Contains(body, "profile=debian-cloud")
	})
	curl(t, "-f", s.URL+"/cloud-config?mac="+mac)
	waitFor(t, "the next boot to be used up", func() bool {
		_, body := get(t, s.URL+"/ipxe?mac="+mac)
		return strings.Contains(body, "profile=flatcar-worker")
	})

	// Without the token the API refuses.
	if _, stderr, code := runEnv(t, []string{"BOOTFLEET_TOKEN=wrong"}, "nodes", "list", "--server", s.URL, "--data-dir", t.TempDir()); code == 0 || !strings.Contains(stderr, "admin token required") {
		t.Errorf("nodes list with a wrong token: exit %d %q", code, stderr)
	}

	cli("nodes", "forget", mac)
	if _, stderr, code := run(t, "nodes", "show", mac, "--server", s.URL, "--data-dir", s.DataDir); code == 0 || !strings.Contains(stderr, "not found") {
		t.Errorf("show after forget: exit %d %q", code, stderr)
	}
}
