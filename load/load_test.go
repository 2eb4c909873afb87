package load

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// chatApp is a small JavaScript- and websocket-heavy page: log in, then a
// room that shows the websocket's ticks.
func chatApp(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, `<!doctype html><html><head><title>chat</title></head><body>
<input id="user"><button id="login">log in</button><div id="room"></div><ul id="log"></ul>
<script>
document.getElementById('login').onclick = () => {
  const user = document.getElementById('user').value;
  const ws = new WebSocket('ws://' + location.host + '/ws');
  ws.onopen = () => { ws.send('hello ' + user); const room = document.getElementById('room'); room.className = 'room ready'; room.textContent = 'Welcome ' + user; };
  ws.onmessage = (m) => { const li = document.createElement('li'); li.textContent = m.data; document.getElementById('log').appendChild(li); };
};
</script></body></html>`)
	})
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down for maintenance", http.StatusInternalServerError)
	})
	mux.Handle("/ws", websocket.Handler(func(c *websocket.Conn) {
		defer c.Close()
		var hello string
		_ = websocket.Message.Receive(c, &hello)
		for i := 0; ; i++ {
			if err := websocket.Message.Send(c, fmt.Sprintf("tick %d", i)); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func needBrowser(t *testing.T) string {
	t.Helper()
	exe, err := FindBrowser("")
	if err != nil {
		t.Fatalf("%v: `make test` installs chromium-headless-shell", err)
	}
	return exe
}

func TestRunChatScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	needBrowser(t)
	app := chatApp(t)
	sc, err := Parse("chat.yaml", []byte(`name: chat
target: `+app.URL+`
sessions: 3
ramp_up: 1s
iterations: 2
steps:
  - name: open
    navigate: /
  - name: login
    type: {selector: "#user", text: "user{{.Session}}"}
  - click: "#login"
  - wait_for: ".room.ready"
  - assert: {text: "Welcome user"}
  - name: messages
    ws_messages: {count: 5, timeout: 10s}
`), ".")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	agg, err := Run(ctx, sc, Options{SessionsPerBrowser: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := agg.Report(sc, "test", time.Now())
	byName := map[string]StepReport{}
	for _, s := range r.Steps {
		byName[s.Name] = s
	}
	for _, name := range []string{"open", "login", "click #login", "wait_for .room.ready", `assert text "Welcome user"`, "messages"} {
		s, ok := byName[name]
		if !ok {
			t.Fatalf("no step %q in the report: %+v", name, r.Steps)
		}
		if s.Count != 6 || s.Failures != 0 {
			t.Errorf("step %s: count %d failures %d (%v), want 6 runs (3 sessions × 2), no failures", name, s.Count, s.Failures, s.Reasons)
		}
		if s.P95Ms < s.P50Ms || s.MaxMs < s.P99Ms || s.MinMs > s.AvgMs {
			t.Errorf("step %s: percentiles out of order: %+v", name, s)
		}
	}
	if r.WSReceived < 30 || r.WSSent < 6 {
		t.Errorf("websocket frames: received %d (want ≥ 30), sent %d (want ≥ 6)", r.WSReceived, r.WSSent)
	}
	if r.Sessions != 3 || r.Iterations != 6 || r.Requests == 0 || r.Bytes == 0 {
		t.Errorf("report: sessions %d iterations %d requests %d bytes %d", r.Sessions, r.Iterations, r.Requests, r.Bytes)
	}
	if v := r.WebVitals["ttfb"]; v.Count != 6 || v.P50 <= 0 {
		t.Errorf("TTFB: %+v", v)
	}
	if v := r.WebVitals["fcp"]; v.Count == 0 {
		t.Errorf("FCP never measured: %+v", r.WebVitals)
	}

	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Steps []map[string]any `json:"steps"`
	}
	b, _ := os.ReadFile(filepath.Join(dir, "report.json"))
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"name", "count", "failures", "avg_ms", "min_ms", "max_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms"} {
		if _, ok := back.Steps[0][field]; !ok {
			t.Errorf("report.json steps lack %q (the contract)", field)
		}
	}
	csvData, _ := os.ReadFile(filepath.Join(dir, "report.csv"))
	if !strings.HasPrefix(string(csvData), "name,count,failures,") || !strings.Contains(string(csvData), "\nmessages,6,0,") {
		t.Errorf("report.csv:\n%s", csvData)
	}
	html, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	if !strings.Contains(string(html), "<polyline points=") || strings.Contains(string(html), "http://") && strings.Contains(string(html), "<script src") {
		t.Errorf("report.html is not a self-contained page with charts")
	}
}

// A failing check counts as a failure with its reason, ends the
// iteration, and counts toward the step's runs; a 5xx page fails navigate
// with the status.
func TestRunFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	needBrowser(t)
	app := chatApp(t)
	sc, err := Parse("fail.yaml", []byte(`name: failing
target: `+app.URL+`
sessions: 2
iterations: 2
screenshots: true
steps:
  - name: home
    navigate: /
  - name: wrong text
    assert: {text: "no such text"}
  - name: never reached
    navigate: /
`), ".")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	agg, err := Run(ctx, sc, Options{Out: out}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := agg.Report(sc, "test", time.Now())
	if s := r.Steps[1]; s.Count != 4 || s.Failures != 4 || s.Reasons[`text "no such text" not on the page`] != 4 {
		t.Errorf("failing assert: %+v", s)
	}
	if s := r.Steps[2]; s.Count != 0 {
		t.Errorf("a step after a failure ran: %+v", s)
	}
	if shots, _ := filepath.Glob(filepath.Join(out, "screenshots", "*.png")); len(shots) != 4 {
		t.Errorf("%d screenshots of failures, want 4", len(shots))
	}

	sc2, err := Parse("broken.yaml", []byte("name: broken\ntarget: "+app.URL+"\nsteps:\n  - navigate: /broken\n"), ".")
	if err != nil {
		t.Fatal(err)
	}
	agg, err = Run(ctx, sc2, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r = agg.Report(sc2, "test", time.Now())
	if s := r.Steps[0]; s.Name != "navigate /broken" || s.Failures != 1 || s.Reasons["HTTP 500"] != 1 {
		t.Errorf("5xx page: %+v", s)
	}
}
