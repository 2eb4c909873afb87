package loadjob_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bootfleet/bootfleet/api"
	"github.com/bootfleet/bootfleet/fleet"
	"github.com/bootfleet/bootfleet/internal/etcdtest"
	"github.com/bootfleet/bootfleet/load"
	"github.com/bootfleet/bootfleet/loadjob"
	"github.com/bootfleet/bootfleet/registry"
)

// Two workers in this process, each with its own real headless browsers,
// run a job's shares against an app on loopback through the real API; the
// merged report counts what the app served.
func TestWorkersMergedReport(t *testing.T) {
	if testing.Short() {
		t.Skip("starts browsers")
	}
	if _, err := load.FindBrowser(""); err != nil {
		t.Fatalf("%v: `make test` installs chromium-headless-shell", err)
	}
	var pages, broken atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			pages.Add(1)
			fmt.Fprint(w, `<!doctype html><title>x</title><button id="b" onclick="document.body.className='done'">go</button>`)
		case "/broken":
			broken.Add(1)
			http.Error(w, "no", http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	}))
	defer app.Close()

	cli := etcdtest.Client(t)
	reg, _ := registry.New(registry.Config{Client: cli, Server: "t"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tokens, err := fleet.LoadTokens(ctx, cli, "")
	if err != nil {
		t.Fatal(err)
	}
	fl, err := fleet.New(fleet.Config{Client: cli, Registry: reg, Server: "t"})
	if err != nil {
		t.Fatal(err)
	}
	go fl.Run(ctx)
	m, err := loadjob.New(loadjob.Config{Client: cli, Units: fl})
	if err != nil {
		t.Fatal(err)
	}
	s, err := api.New(api.Config{Registry: reg, AdminToken: "admin", Fleet: fl, Tokens: tokens, Load: m})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()

	j, err := m.Start(ctx, loadjob.Request{ScenarioFile: "s.yaml", Workers: 2, Sessions: 3, Server: ts.URL, Scenario: `name: s
target: ` + app.URL + `
sessions: 1
iterations: 2
steps:
  - name: open
    navigate: /
  - click: "#b"
  - wait_for: "body.done"
  - name: broken
    navigate: /broken
`})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = loadjob.RunWorker(ctx, loadjob.WorkerConfig{Server: ts.URL, Job: j.ID, Worker: i, Token: j.Token, Node: fmt.Sprintf("node-%d", i)})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	// A third run of worker 0 (a restarted container) does not run again.
	if err := loadjob.RunWorker(ctx, loadjob.WorkerConfig{Server: ts.URL, Job: j.ID, Worker: 0, Token: j.Token}); err != nil {
		t.Fatalf("restarted worker: %v", err)
	}
	if err := m.Sweep(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	r, err := m.Report(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Job(ctx, j.ID); got.State != loadjob.StateFinished {
		t.Fatalf("job %s", got.State)
	}
	steps := map[string]load.StepReport{}
	for _, s := range r.Steps {
		steps[s.Name] = s
	}
	if steps["open"].Count != 6 || steps["open"].Count != pages.Load() || steps["broken"].Count != broken.Load() ||
		steps["broken"].Failures != broken.Load() || steps["broken"].Reasons["HTTP 503"] != broken.Load() {
		t.Fatalf("report steps %+v; app served / %d times, /broken %d", r.Steps, pages.Load(), broken.Load())
	}
	if len(r.Workers) != 2 || r.Workers[0].FirstSession != 1 || r.Workers[0].LastSession != 2 || r.Workers[1].FirstSession != 3 ||
		r.Workers[0].Node != "node-0" || r.LostSessions != 0 || r.Workers[1].Steps == 0 {
		t.Fatalf("workers %+v lost %d", r.Workers, r.LostSessions)
	}
}
