package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bootfleet/bootfleet/fleet"
	"github.com/bootfleet/bootfleet/internal/etcdtest"
	"github.com/bootfleet/bootfleet/loadjob"
	"github.com/bootfleet/bootfleet/registry"
)

// newLoadAPI is the API with a real fleet and load jobs on a real etcd.
func newLoadAPI(t *testing.T) *httptest.Server {
	t.Helper()
	cli := etcdtest.Client(t)
	reg, err := registry.New(registry.Config{Client: cli, Server: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	tokens, err := fleet.LoadTokens(ctx, cli, "")
	if err != nil {
		t.Fatal(err)
	}
	fl, err := fleet.New(fleet.Config{Client: cli, Registry: reg, Server: "test"})
	if err != nil {
		t.Fatal(err)
	}
	go fl.Run(ctx)
	lj, err := loadjob.New(loadjob.Config{Client: cli, Units: fl})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Registry: reg, AdminToken: "secret", Fleet: fl, Tokens: tokens, Load: lj})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts
}

// Load jobs: operators need the admin token, workers the job's own token
// (which only the unit carries, never an API answer), and a share runs once.
func TestLoadJobsAPI(t *testing.T) {
	ts := newLoadAPI(t)
	body, _ := json.Marshal(loadjob.Request{ScenarioFile: "s.yaml", Scenario: "name: s\ntarget: http://127.0.0.1:1\nsessions: 3\niterations: 1\nsteps:\n  - navigate: /\n", Workers: 2})
	if code, _ := call(t, "POST", ts.URL+"/api/v1/load/jobs", "", string(body)); code != http.StatusUnauthorized {
		t.Fatalf("start without the admin token: %d", code)
	}
	code, out := call(t, "POST", ts.URL+"/api/v1/load/jobs", "secret", string(body))
	if code != http.StatusCreated || strings.Contains(out, `"token"`) {
		t.Fatalf("start: %d %s", code, out)
	}
	var j loadjob.Job
	json.Unmarshal([]byte(out), &j)
	// Without public_url the workers use the address the operator used.
	if j.Server != ts.URL || j.Workers != 2 {
		t.Fatalf("job %+v", j)
	}
	if code, out := call(t, "POST", ts.URL+"/api/v1/load/jobs", "secret", `{"scenario":"name: s\nsteps: []\n"}`); code != http.StatusBadRequest {
		t.Fatalf("bad scenario: %d %s", code, out)
	}
	// The job token is in the unit (admin only).
	var token string
	deadline := time.Now().Add(5 * time.Second)
	for token == "" && time.Now().Before(deadline) {
		_, units := call(t, "GET", ts.URL+"/api/v1/units", "secret", "")
		var us []fleet.UnitStatus
		json.Unmarshal([]byte(units), &us)
		for _, u := range us {
			if u.Unit.Name == j.Unit {
				token = u.Unit.Env["BOOTFLEET_JOB_TOKEN"]
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if token == "" {
		t.Fatal("no job token in the job's unit")
	}
	share := ts.URL + "/api/v1/load/jobs/" + j.ID + "/workers/0/share?instance=a"
	for _, tok := range []string{"", "secret-not", "secret"} {
		if code, _ := call(t, "GET", share, tok, ""); code != http.StatusUnauthorized {
			t.Errorf("claim with token %q: %d, want 401", tok, code)
		}
	}
	if code, out := call(t, "GET", share, token, ""); code != http.StatusOK || !strings.Contains(out, `"sessions": 2`) {
		t.Fatalf("claim: %d %s", code, out)
	}
	if code, _ := call(t, "GET", strings.Replace(share, "instance=a", "instance=b", 1), token, ""); code != http.StatusConflict {
		t.Fatalf("second claim by another instance: %d, want 409", code)
	}
	upd := ts.URL + "/api/v1/load/jobs/" + j.ID + "/workers/0"
	if code, _ := call(t, "POST", upd, "", `{"instance":"a"}`); code != http.StatusUnauthorized {
		t.Fatalf("update without a token: %d", code)
	}
	if code, out := call(t, "POST", upd, token, `{"instance":"a","cpu_percent":12}`); code != http.StatusOK || !strings.Contains(out, `"stop": false`) {
		t.Fatalf("update: %d %s", code, out)
	}
	if code, _ := call(t, "GET", ts.URL+"/api/v1/load/jobs/"+j.ID, token, ""); code != http.StatusUnauthorized {
		t.Fatalf("status with the job token: %d, want 401 (admin only)", code)
	}
	code, out = call(t, "GET", ts.URL+"/api/v1/load/jobs/"+j.ID, "secret", "")
	var st loadjob.Status
	if code != http.StatusOK || json.Unmarshal([]byte(out), &st) != nil || len(st.Workers) != 2 || st.Workers[0].State != loadjob.WorkerRunning || st.Workers[0].CPUPercent != 12 {
		t.Fatalf("status: %d %s", code, out)
	}
	if code, _ := call(t, "POST", ts.URL+"/api/v1/load/jobs/nosuch/stop", "secret", ""); code != http.StatusNotFound {
		t.Fatalf("stop of an unknown job: %d", code)
	}
	if code, out := call(t, "POST", ts.URL+"/api/v1/load/jobs/"+j.ID+"/stop", "secret", ""); code != http.StatusOK || !strings.Contains(out, "stopping") {
		t.Fatalf("stop: %d %s", code, out)
	}
	if code, out := call(t, "POST", upd, token, `{"instance":"a"}`); code != http.StatusOK || !strings.Contains(out, `"stop": true`) {
		t.Fatalf("update after stop: %d %s", code, out)
	}
}

// Every operator route — what changes or reveals configuration, nodes,
// units (their env), load jobs — refuses callers without the admin token
// or with a wrong one.
func TestOperatorRoutesNeedTheAdminToken(t *testing.T) {
	ts := newLoadAPI(t)
	for _, r := range []struct{ method, path string }{
		{"GET", "/api/v1/nodes"},
		{"GET", "/api/v1/nodes?watch=1"},
		{"GET", "/api/v1/nodes/52:54:00:00:00:01"},
		{"DELETE", "/api/v1/nodes/52:54:00:00:00:01"},
		{"PATCH", "/api/v1/nodes/52:54:00:00:00:01/labels"},
		{"PUT", "/api/v1/nodes/52:54:00:00:00:01/next-boot"},
		{"GET", "/api/v1/nodes/52:54:00:00:00:01/agent-token"},
		{"GET", "/api/v1/leases"},
		{"GET", "/api/v1/units"},
		{"POST", "/api/v1/units"},
		{"DELETE", "/api/v1/units/u"},
		{"GET", "/api/v1/units/u/logs"},
		{"POST", "/api/v1/load/jobs"},
		{"GET", "/api/v1/load/jobs"},
		{"GET", "/api/v1/load/jobs/j"},
		{"POST", "/api/v1/load/jobs/j/stop"},
		{"GET", "/api/v1/load/jobs/j/report"},
		{"GET", "/api/v1/load/reports"},
	} {
		for _, token := range []string{"", "wrong"} {
			if code, _ := call(t, r.method, ts.URL+r.path, token, "{}"); code != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d, want 401", r.method, r.path, token, code)
			}
		}
	}
}
