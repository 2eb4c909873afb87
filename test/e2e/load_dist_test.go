package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/bootfleet/bootfleet/internal/podmantest"
	"github.com/bootfleet/bootfleet/load"
	"github.com/bootfleet/bootfleet/loadjob"
)

// linkNetns joins the host and a podman service's namespace with a veth
// pair (host 10.231.X.1/30, namespace .2, its default route via the host),
// so that containers there reach servers the test runs on the host side,
// and nothing else. It returns the host side's address.
func linkNetns(t *testing.T, ns string, subnet byte) string {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	host, peer := "bfd"+hex.EncodeToString(b), "bfp"+hex.EncodeToString(b)
	hostIP, nsIP := fmt.Sprintf("10.231.%d.1", subnet), fmt.Sprintf("10.231.%d.2", subnet)
	for _, args := range [][]string{
		{"link", "add", host, "type", "veth", "peer", "name", peer},
		{"link", "set", peer, "netns", ns},
		{"addr", "add", hostIP + "/30", "dev", host},
		{"link", "set", host, "up"},
		{"-n", ns, "addr", "add", nsIP + "/30", "dev", peer},
		{"-n", ns, "link", "set", peer, "up"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "route", "add", "default", "via", hostIP},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	return hostIP
}

// counterApp is a chat page (a websocket started by the page's own
// JavaScript) and a page that fails on purpose, counting what it serves.
type counterApp struct {
	URL                 string
	pages, broken, wsOK atomic.Int64
}

func startCounterApp(t *testing.T, ip string) *counterApp {
	t.Helper()
	app := &counterApp{}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		app.pages.Add(1)
		fmt.Fprint(w, `<!doctype html><html><head><title>chat</title></head><body>
<input id="user"><button id="login">log in</button><div id="room"></div><ul id="log"></ul>
<script>
document.getElementById('login').onclick = () => {
  const ws = new WebSocket('ws://' + location.host + '/ws');
  ws.onopen = () => { ws.send('hello ' + document.getElementById('user').value); document.getElementById('room').className = 'room ready'; };
  ws.onmessage = (m) => { const li = document.createElement('li'); li.textContent = m.data; document.getElementById('log').appendChild(li); };
};
</script></body></html>`)
	})
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) {
		app.broken.Add(1)
		http.Error(w, "down on purpose", http.StatusInternalServerError)
	})
	mux.Handle("/ws", websocket.Handler(func(c *websocket.Conn) {
		defer c.Close()
		var hello string
		if websocket.Message.Receive(c, &hello) != nil {
			return
		}
		app.wsOK.Add(1)
		for i := 0; ; i++ {
			if websocket.Message.Send(c, fmt.Sprintf("tick %d", i)) != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}))
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	app.URL = "http://" + ln.Addr().String()
	return app
}

// A distributed load job on two nodes: two real agents, each with its own
// podman, load the browser-load image that `images build-browser` made
// from the server, and run one worker each in it; the merged report's
// counts equal what the app served. A second job loses a worker mid-run
// (its container killed) and still finishes, reporting the lost sessions.
func TestLoadDistributed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts podman services, agents and browsers in containers")
	}
	if _, err := load.FindBrowser(""); err != nil {
		t.Fatalf("%v: `make test` installs chromium-headless-shell", err)
	}
	pmA, pmB := podmantest.Start(t), podmantest.Start(t)
	b := make([]byte, 1)
	rand.Read(b)
	subnet := 4 * (b[0] % 60)
	hostIP := linkNetns(t, pmA.Netns, subnet)
	linkNetns(t, pmB.Netns, subnet+1)

	dataDir := t.TempDir()
	archive := filepath.Join(dataDir, "container-images", "browser-load.tar")
	built := time.Now()
	if out, errOut, code := run(t, "images", "build-browser", "--out", archive, "--bootfleet", bootfleet(t)); code != 0 {
		t.Fatalf("images build-browser: exit %d\n%s%s", code, out, errOut)
	}
	fi, err := os.Stat(archive)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE browser-load image: %d MiB docker archive, built in %s", fi.Size()>>20, time.Since(built).Round(100*time.Millisecond))

	_, port, _ := net.SplitHostPort(freePort(t))
	etcdClient, etcdPeer := "http://"+freePort(t), "http://"+freePort(t)
	s := startServerIn(t, dataDir, net.JoinHostPort(hostIP, port), etcdClient, etcdPeer,
		"--profiles", filepath.Join(repoRoot(), "examples/lab"), "--agent-dir", agentBinaries(t), "--node-ttl", "3s")
	cli := func(args ...string) string {
		t.Helper()
		out, errOut, code := run(t, append(args, "--server", s.URL, "--data-dir", s.DataDir)...)
		if code != 0 {
			t.Fatalf("bootfleet %s: exit %d\n%s", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	macA, macB := "52:54:00:aa:00:11", "52:54:00:aa:00:12"
	provision(t, s, macA, pmA)
	provision(t, s, macB, pmB)
	waitUntil(t, "both nodes ready", 30*time.Second, func() bool {
		return strings.Count(cli("nodes", "list"), "ready") == 2
	})
	cli("nodes", "label", macA, "role=loadgen")
	cli("nodes", "label", macB, "role=loadgen")

	app := startCounterApp(t, hostIP)
	dir := t.TempDir()
	scenario := filepath.Join(dir, "chat.yaml")
	os.WriteFile(scenario, []byte(`name: chat
target: `+app.URL+`
sessions: 4
iterations: 3
steps:
  - name: open
    navigate: /
  - name: login
    type: {selector: "#user", text: "user{{.Session}}"}
  - click: "#login"
  - wait_for: ".room.ready"
  - name: messages
    ws_messages: {count: 3, timeout: 20s}
  - name: broken
    navigate: /broken
`), 0o644)

	status := func(id string) loadjob.Status {
		t.Helper()
		var st loadjob.Status
		if err := json.Unmarshal([]byte(cli("load", "status", id, "-o", "json")), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	started := time.Now()
	job := strings.TrimSpace(cli("load", "start", scenario, "--workers", "2"))
	waitUntil(t, "both workers running", 4*time.Minute, func() bool {
		st := status(job)
		n := 0
		for _, w := range st.Workers {
			if w.State != loadjob.WorkerPending {
				n++
			}
		}
		return n == 2
	})
	t.Logf("FIGURE 2-worker job: load start to both workers streaming (image loaded from the server into two fresh podmans): %s", time.Since(started).Round(100*time.Millisecond))
	waitUntil(t, "the job to finish", 4*time.Minute, func() bool { return status(job).Job.State == loadjob.StateFinished })

	out := filepath.Join(t.TempDir(), "report")
	table := cli("load", "report", job, "--out", out)
	var r load.Report
	data, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil || json.Unmarshal(data, &r) != nil {
		t.Fatalf("report.json: %v\n%s", err, data)
	}
	for _, f := range []string{"report.csv", "report.html"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Fatal(err)
		}
	}
	steps := map[string]load.StepReport{}
	for _, st := range r.Steps {
		steps[st.Name] = st
	}
	// Every session ran its three iterations, on two nodes.
	if steps["open"].Count != 12 || steps["open"].Count != app.pages.Load() || steps["open"].Failures != 0 {
		t.Errorf("open: %+v; the app served / %d times\n%s", steps["open"], app.pages.Load(), table)
	}
	if steps["broken"].Count != app.broken.Load() || steps["broken"].Failures != steps["broken"].Count || steps["broken"].Reasons["HTTP 500"] != steps["broken"].Count {
		t.Errorf("broken: %+v; the app failed /broken %d times\n%s", steps["broken"], app.broken.Load(), table)
	}
	if steps["messages"].Count != app.wsOK.Load() || steps["messages"].Failures != 0 {
		t.Errorf("messages: %+v; the app had %d websocket sessions\n%s", steps["messages"], app.wsOK.Load(), table)
	}
	if len(r.Workers) != 2 || r.Workers[0].Node == r.Workers[1].Node || r.LostSessions != 0 || r.Sessions < 2 || r.Sessions > 4 {
		t.Errorf("workers %+v, lost %d, sessions %d", r.Workers, r.LostSessions, r.Sessions)
	}
	for _, w := range r.Workers {
		if w.State != loadjob.WorkerDone || w.Steps == 0 || w.MemoryPeakBytes < 20<<20 || w.CPUPeakPercent <= 0 {
			t.Errorf("worker %+v", w)
		}
	}
	if list := cli("load", "list"); !strings.Contains(list, job) {
		t.Errorf("load list lacks %s:\n%s", job, list)
	}
	waitUntil(t, "the job's unit gone", 30*time.Second, func() bool { return !strings.Contains(cli("units", "list"), "load-"+job) })

	// Second job: a worker dies mid-run; the job goes on and says which
	// sessions were lost.
	os.WriteFile(scenario, []byte(`name: chat-long
target: `+app.URL+`
sessions: 4
duration: 30s
steps:
  - name: open
    navigate: /
  - click: "#login"
  - wait_for: ".room.ready"
  - name: messages
    ws_messages: {count: 5, timeout: 20s}
`), 0o644)
	started2 := time.Now()
	job2 := strings.TrimSpace(cli("load", "start", scenario, "--workers", "2"))
	var victim loadjob.WorkerStatus
	waitUntil(t, "both workers of the second job streaming", 2*time.Minute, func() bool {
		st := status(job2)
		return len(st.Workers) == 2 && st.Workers[0].State == loadjob.WorkerRunning && st.Workers[1].State == loadjob.WorkerRunning
	})
	t.Logf("FIGURE 2-worker job, image already on the nodes: load start to both workers streaming: %s", time.Since(started2).Round(100*time.Millisecond))
	waitUntil(t, "both workers of the second job streaming steps", 2*time.Minute, func() bool {
		st := status(job2)
		ok := 0
		for _, w := range st.Workers {
			if w.State == loadjob.WorkerRunning && w.Steps > 0 {
				ok++
				victim = w
			}
		}
		return ok == 2
	})
	pm := map[string]*podmantest.Service{macA: pmA, macB: pmB}[victim.Node]
	if pm == nil {
		t.Fatalf("worker %d on unknown node %q", victim.Worker, victim.Node)
	}
	container := fmt.Sprintf("load-%s-%d", job2, victim.Worker)
	if out, err := pm.Podman("kill", container); err != nil {
		t.Fatalf("podman kill %s: %v\n%s", container, err, out)
	}
	killed := time.Now()
	waitUntil(t, "the second job to finish without its killed worker", 3*time.Minute, func() bool { return status(job2).Job.State == loadjob.StateFinished })
	var r2 load.Report
	out2 := filepath.Join(t.TempDir(), "report2")
	table2 := cli("load", "report", job2, "--out", out2)
	data, _ = os.ReadFile(filepath.Join(out2, "report.json"))
	if err := json.Unmarshal(data, &r2); err != nil {
		t.Fatal(err)
	}
	lost := r2.Workers[victim.Worker]
	if r2.LostSessions != 2 || lost.State != loadjob.WorkerLost || lost.LostSessions != 2 || lost.Steps == 0 ||
		!strings.Contains(table2, fmt.Sprintf("worker %d lost (sessions %d–%d)", victim.Worker, lost.FirstSession, lost.LastSession)) {
		t.Errorf("report of the job with a killed worker: lost %d, worker %+v\n%s", r2.LostSessions, lost, table2)
	}
	if html, _ := os.ReadFile(filepath.Join(out2, "report.html")); !strings.Contains(string(html), "<h2>Workers</h2>") || !strings.Contains(string(html), `class="bad">lost`) {
		t.Errorf("report.html does not show the lost worker")
	}
	other := r2.Workers[1-victim.Worker]
	if other.State != loadjob.WorkerDone || other.LostSessions != 0 || r2.Total.Count <= lost.Steps {
		t.Errorf("the surviving worker: %+v (total %d)", other, r2.Total.Count)
	}
	t.Logf("FIGURE worker killed → marked lost and job finished: %s", time.Since(killed).Round(100*time.Millisecond))

	cmp := cli("load", "compare", job, job2)
	if !strings.Contains(cmp, "open") || !strings.Contains(cmp, "messages") {
		t.Errorf("load compare:\n%s", cmp)
	}
}
