package loadjob

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/bootfleet/bootfleet/fleet"
	"github.com/bootfleet/bootfleet/internal/etcdtest"
	"github.com/bootfleet/bootfleet/load"
	"github.com/bootfleet/bootfleet/registry"
)

const scenario = `name: Chat test
target: http://127.0.0.1:3000
sessions: 5
duration: 10s
steps:
  - name: open
    navigate: /
  - name: login
    click: "#login"
`

// setup starts a real embedded etcd, a real fleet on it, and a Manager.
func setup(t *testing.T) (*Manager, *fleet.Fleet, *clientv3.Client) {
	t.Helper()
	cli := etcdtest.Client(t)
	reg, err := registry.New(registry.Config{Client: cli, Server: "t"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := fleet.New(fleet.Config{Client: cli, Registry: reg, Server: "t"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	m, err := New(Config{Client: cli, Units: f, PublicURL: "http://10.77.0.1:8080", StreamTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return m, f, cli
}

// unitOf waits (up to 5s) for the fleet's view to have the unit or, with
// present false, not to have it; it returns the unit and whether it is there.
func unitOf(t *testing.T, f *fleet.Fleet, name string, present bool) (fleet.Unit, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		us, err := f.Units(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var found *fleet.Unit
		for _, u := range us {
			if u.Unit.Name == name {
				found = &u.Unit
			}
		}
		if (found != nil) == present || time.Now().After(deadline) {
			if found == nil {
				return fleet.Unit{}, false
			}
			return *found, true
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// workerAggregate is what a worker that ran n steps of "open" (fail of
// them failed) and the given sessions still running would stream.
func workerAggregate(t *testing.T, start time.Time, n, fail int, running int64) json.RawMessage {
	t.Helper()
	a := load.NewAggregate(start, []string{"open", "login"})
	a.Sessions(start, running)
	for i := range n {
		reason := ""
		if i < fail {
			reason = "HTTP 500"
		}
		a.Step("open", start.Add(time.Duration(i)*100*time.Millisecond), time.Duration(10+i)*time.Millisecond, reason)
	}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestShareOf(t *testing.T) {
	j := Job{Sessions: 11, Workers: 3}
	var got [][2]int
	total := 0
	for i := range 3 {
		s := j.ShareOf(i)
		got = append(got, [2]int{s.Offset, s.Sessions})
		total += s.Sessions
	}
	want := [][2]int{{0, 4}, {4, 4}, {8, 3}}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("shares %v, want %v", got, want)
		}
	}
	if total != 11 {
		t.Fatalf("shares sum to %d", total)
	}
}

func TestStartRefusesBadJobs(t *testing.T) {
	m, _, _ := setup(t)
	ctx := context.Background()
	for _, c := range []struct {
		req  Request
		want string
	}{
		{Request{Scenario: "name: x\nsteps: [{bogus: 1}]\n"}, "bogus"},
		{Request{Scenario: scenario, Workers: 6}, "6 workers for 5 sessions"},
		{Request{Scenario: scenario, Files: map[string]string{"../etc/passwd": "x"}}, "relative path"},
		{Request{Scenario: scenario, Memory: "lots"}, "memory"},
	} {
		_, err := m.Start(ctx, c.req)
		if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Start(%+v): %v, want a bad request about %q", c.req, err, c.want)
		}
	}
	if jobs, _ := m.Jobs(ctx); len(jobs) != 0 {
		t.Fatalf("refused jobs were stored: %+v", jobs)
	}
}

func TestJobWithLostWorker(t *testing.T) {
	m, f, _ := setup(t)
	ctx := context.Background()
	j, err := m.Start(ctx, Request{ScenarioFile: "chat.yaml", Scenario: scenario, Workers: 2, Selector: map[string]string{"role": "loadgen"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(j.ID, "chat-test-") || j.Sessions != 5 || j.Token == "" {
		t.Fatalf("job %+v", j)
	}
	u, ok := unitOf(t, f, j.Unit, true)
	if !ok {
		t.Fatalf("no unit %s in the fleet", j.Unit)
	}
	if u.Replicas != 2 || u.Image != DefaultImage || u.Constraints.Metadata["role"] != "loadgen" || u.Env["BOOTFLEET_JOB_TOKEN"] != j.Token ||
		strings.Join(u.Command, " ") != "bootfleet load worker --job "+j.ID+" --server http://10.77.0.1:8080" {
		t.Fatalf("unit %+v", u)
	}

	if _, err := m.Claim(ctx, j.ID, 0, "wrong", "a", "n1"); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("claim with a wrong token: %v", err)
	}
	s0, err := m.Claim(ctx, j.ID, 0, j.Token, "a", "52:54:00:aa:00:01")
	if err != nil || s0.Offset != 0 || s0.Sessions != 3 || s0.Scenario != scenario {
		t.Fatalf("claim 0: %+v %v", s0, err)
	}
	s1, err := m.Claim(ctx, j.ID, 1, j.Token, "b", "52:54:00:aa:00:02")
	if err != nil || s1.Offset != 3 || s1.Sessions != 2 {
		t.Fatalf("claim 1: %+v %v", s1, err)
	}
	// A restarted worker cannot run the share again.
	if _, err := m.Claim(ctx, j.ID, 0, j.Token, "c", "52:54:00:aa:00:01"); !errors.Is(err, ErrConflict) {
		t.Fatalf("second claim: %v", err)
	}
	if _, err := m.Claim(ctx, j.ID, 2, j.Token, "c", "n"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim of a worker beyond the job's: %v", err)
	}

	start := time.Now()
	if _, err := m.Update(ctx, j.ID, 0, j.Token, Update{Instance: "a", Aggregate: workerAggregate(t, start, 20, 2, 3), CPUPercent: 50, Cores: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Update(ctx, j.ID, 1, j.Token, Update{Instance: "b", Aggregate: workerAggregate(t, start.Add(300*time.Millisecond), 7, 1, 2), CPUPercent: 190, Cores: 2}); err != nil {
		t.Fatal(err)
	}
	// Another instance's stream, and a bad aggregate, are refused.
	if ans, err := m.Update(ctx, j.ID, 1, j.Token, Update{Instance: "x"}); !errors.Is(err, ErrConflict) || !ans.Stop {
		t.Fatalf("foreign update: %+v %v", ans, err)
	}
	if _, err := m.Update(ctx, j.ID, 1, j.Token, Update{Instance: "b", Aggregate: json.RawMessage(`{"buckets":[{"second":5}]}`)}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("bad aggregate: %v", err)
	}

	ws, err := m.Workers(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	st, err := JobStatus(j, ws, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if st.Steps != 27 || st.Failures != 3 || st.Sessions != 5 || len(st.Workers) != 2 || st.Workers[0].Steps != 20 || st.Workers[1].Steps != 7 ||
		!st.Workers[1].Hot || st.Workers[0].Hot || !st.Hot || st.Job.Token != "" {
		t.Fatalf("status %+v", st)
	}

	// Worker 0 finishes; worker 1's stream stops (its node died).
	if _, err := m.Update(ctx, j.ID, 0, j.Token, Update{Instance: "a", Aggregate: workerAggregate(t, start, 30, 2, 0), Done: true}); err != nil {
		t.Fatal(err)
	}
	if err := m.Sweep(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if j2, _ := m.Job(ctx, j.ID); j2.State != StateRunning {
		t.Fatalf("job ended while worker 1 still streams: %s", j2.State)
	}
	later := time.Now().Add(6 * time.Second)
	if err := m.Sweep(ctx, later); err != nil {
		t.Fatal(err)
	}
	if ws, _ := m.Workers(ctx, j.ID); ws[1].State != WorkerLost || !strings.Contains(ws[1].Reason, "52:54:00:aa:00:02") {
		t.Fatalf("worker 1 not lost: %+v", ws[1])
	}
	// A lost worker that comes back is told to stop.
	if ans, err := m.Update(ctx, j.ID, 1, j.Token, Update{Instance: "b"}); err != nil || !ans.Stop {
		t.Fatalf("lost worker's update: %+v %v", ans, err)
	}
	if err := m.Sweep(ctx, later); err != nil {
		t.Fatal(err)
	}
	j2, err := m.Job(ctx, j.ID)
	if err != nil || j2.State != StateFinished {
		t.Fatalf("job after every worker ended: %+v %v", j2, err)
	}
	if _, ok := unitOf(t, f, j.Unit, false); ok {
		t.Fatalf("unit %s still there after the job ended", j.Unit)
	}
	r, err := m.Report(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Total.Count != 37 || r.Total.Failures != 3 || r.Steps[0].Name != "open" || r.Steps[0].Count != 37 || r.Steps[1].Name != "login" ||
		r.LostSessions != 2 || len(r.Workers) != 2 || r.Scenario != "Chat test" || r.Target != "http://127.0.0.1:3000" {
		t.Fatalf("report %+v", r)
	}
	if w := r.Workers[1]; w.State != WorkerLost || w.FirstSession != 4 || w.LastSession != 5 || w.LostSessions != 2 || w.Steps != 7 {
		t.Fatalf("lost worker in the report: %+v", w)
	}
	if w := r.Workers[0]; w.State != WorkerDone || w.FirstSession != 1 || w.LastSession != 3 || w.LostSessions != 0 {
		t.Fatalf("done worker in the report: %+v", w)
	}
	// The lost worker's sessions do not run on after its last aggregate.
	if last := r.Timeline[len(r.Timeline)-1]; last.Sessions != 0 {
		t.Fatalf("sessions still running at the end of the merged timeline: %+v", last)
	}
	list, err := m.Reports(ctx)
	if err != nil || len(list) != 1 || list[0].Job != j.ID || list[0].Steps != 37 || list[0].LostSessions != 2 || list[0].State != StateFinished {
		t.Fatalf("reports: %+v %v", list, err)
	}
}

func TestStopJob(t *testing.T) {
	m, f, _ := setup(t)
	ctx := context.Background()
	j, err := m.Start(ctx, Request{Scenario: scenario, Sessions: 2, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Claim(ctx, j.ID, 0, j.Token, "a", "n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Stop(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	// A worker that had not started yet cannot start any more.
	if _, err := m.Claim(ctx, j.ID, 1, j.Token, "b", "n2"); !errors.Is(err, ErrConflict) {
		t.Fatalf("claim after stop: %v", err)
	}
	ans, err := m.Update(ctx, j.ID, 0, j.Token, Update{Instance: "a", Aggregate: workerAggregate(t, time.Now(), 4, 0, 1)})
	if err != nil || !ans.Stop {
		t.Fatalf("update after stop: %+v %v", ans, err)
	}
	if _, err := m.Update(ctx, j.ID, 0, j.Token, Update{Instance: "a", Aggregate: workerAggregate(t, time.Now(), 4, 0, 0), Done: true}); err != nil {
		t.Fatal(err)
	}
	// Worker 1 never started: lost at once, as the job is stopping.
	for range 2 {
		if err := m.Sweep(ctx, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	j2, _ := m.Job(ctx, j.ID)
	if j2.State != StateStopped {
		t.Fatalf("job state %s, want stopped", j2.State)
	}
	r, err := m.Report(ctx, j.ID)
	if err != nil || r.Total.Count != 4 || r.LostSessions != 1 || r.Workers[1].State != WorkerLost || !strings.Contains(r.Workers[1].Reason, "stopped before this worker started") {
		t.Fatalf("report %+v %v", r, err)
	}
	if _, ok := unitOf(t, f, j.Unit, false); ok {
		t.Fatalf("unit %s still there after stop", j.Unit)
	}
}

// A share nobody claims (no node for the unit) is lost after the start
// timeout, and the job ends with every session lost.
func TestWorkerNeverStarts(t *testing.T) {
	m, _, _ := setup(t)
	ctx := context.Background()
	j, err := m.Start(ctx, Request{Scenario: scenario, Sessions: 2, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Sweep(ctx, time.Now().Add(DefaultStartTimeout-time.Second)); err != nil {
		t.Fatal(err)
	}
	if ws, _ := m.Workers(ctx, j.ID); ws[0].State != WorkerPending {
		t.Fatalf("worker lost before the start timeout: %+v", ws[0])
	}
	for range 2 {
		if err := m.Sweep(ctx, time.Now().Add(DefaultStartTimeout+time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := m.Report(ctx, j.ID)
	if err != nil || r.LostSessions != 2 || r.Total.Count != 0 || !strings.Contains(r.Workers[0].Reason, "never started") {
		t.Fatalf("report %+v %v", r, err)
	}
	if got, _ := m.Job(ctx, j.ID); got.State != StateFinished {
		t.Fatalf("job %s", got.State)
	}
}
