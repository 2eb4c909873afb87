package loadjob

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/bootfleet/bootfleet/fleet"
	"github.com/bootfleet/bootfleet/load"
)

// Errors the API maps to HTTP statuses.
var (
	ErrNotFound     = errors.New("no such load job")
	ErrUnauthorized = errors.New("job token required: the worker's BOOTFLEET_JOB_TOKEN, set in its unit")
	// ErrConflict: the share is another worker's, or the job or worker has
	// ended; the worker should exit without a retry.
	ErrConflict = errors.New("load job conflict")
)

// Defaults of Config.
const (
	DefaultStreamTimeout = 10 * time.Second
	DefaultStartTimeout  = 5 * time.Minute
)

// Units is the part of the fleet a job needs: its workers' unit.
type Units interface {
	SubmitUnits(ctx context.Context, units []fleet.Unit) error
	DestroyUnit(ctx context.Context, name string) error
}

// Config configures a Manager.
type Config struct {
	Client *clientv3.Client
	// Prefix of the keys; default "/bootfleet/".
	Prefix string
	Units  Units
	// PublicURL is the URL workers reach the server at, unless a job says.
	PublicURL string
	// StreamTimeout: a running worker whose aggregate has not come for
	// this long is lost. StartTimeout: a share nobody claimed for this
	// long is lost.
	StreamTimeout time.Duration
	StartTimeout  time.Duration
	Log           *slog.Logger
}

// Manager keeps load jobs in etcd. Every server may run one; state changes
// go through etcd transactions, so several servers agree.
type Manager struct {
	cfg Config
	log *slog.Logger
}

// New returns a Manager.
func New(cfg Config) (*Manager, error) {
	if cfg.Client == nil || cfg.Units == nil {
		return nil, errors.New("loadjob: etcd client and units are required")
	}
	cfg.Prefix = cmp.Or(cfg.Prefix, "/bootfleet/")
	if !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	cfg.StreamTimeout = cmp.Or(cfg.StreamTimeout, DefaultStreamTimeout)
	cfg.StartTimeout = cmp.Or(cfg.StartTimeout, DefaultStartTimeout)
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, log: log}, nil
}

func (m *Manager) jobKey(id string) string { return m.cfg.Prefix + "loadjobs/" + id }
func (m *Manager) jobsPrefix() string      { return m.cfg.Prefix + "loadjobs/" }
func (m *Manager) workersPrefix(id string) string {
	return m.cfg.Prefix + "loadworkers/" + id + "/"
}
func (m *Manager) workerKey(id string, n int) string {
	return fmt.Sprintf("%s%05d", m.workersPrefix(id), n)
}
func (m *Manager) reportKey(id string) string { return m.cfg.Prefix + "loadreports/" + id }
func (m *Manager) reportsPrefix() string      { return m.cfg.Prefix + "loadreports/" }

// Start stores a new job and submits the unit that runs its workers.
func (m *Manager) Start(ctx context.Context, req Request) (Job, error) {
	j, err := newJob(req, time.Now(), m.cfg.PublicURL)
	if err != nil {
		return Job{}, err
	}
	u, err := fleet.Validate(m.unit(j))
	if err != nil {
		return Job{}, fmt.Errorf("%w: the workers' unit: %v", ErrBadRequest, err)
	}
	ops := []clientv3.Op{clientv3.OpPut(m.jobKey(j.ID), mustJSON(j))}
	for i := range j.Workers {
		sh := j.ShareOf(i)
		ops = append(ops, clientv3.OpPut(m.workerKey(j.ID, i), mustJSON(Worker{Worker: i, State: WorkerPending, Offset: sh.Offset, Sessions: sh.Sessions, Updated: j.Created})))
	}
	for len(ops) > 0 {
		n := min(len(ops), 100)
		if _, err := m.cfg.Client.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			return Job{}, fmt.Errorf("loadjob: store job %s: %w", j.ID, err)
		}
		ops = ops[n:]
	}
	if err := m.cfg.Units.SubmitUnits(ctx, []fleet.Unit{u}); err != nil {
		_, _ = m.cfg.Client.Delete(ctx, m.jobKey(j.ID))
		_, _ = m.cfg.Client.Delete(ctx, m.workersPrefix(j.ID), clientv3.WithPrefix())
		return Job{}, fmt.Errorf("loadjob: submit the workers' unit: %w", err)
	}
	m.log.Info("load job started", "job", j.ID, "sessions", j.Sessions, "workers", j.Workers, "unit", j.Unit)
	return j, nil
}

// unit is the fleet unit of the job's workers.
func (m *Manager) unit(j Job) fleet.Unit {
	cmd := []string{"bootfleet", "load", "worker", "--job", j.ID, "--server", j.Server}
	return fleet.Unit{
		Name: j.Unit, Image: j.Image, Command: cmd, Replicas: j.Workers,
		Env:         map[string]string{"BOOTFLEET_JOB_TOKEN": j.Token},
		Constraints: fleet.Constraints{Metadata: j.Selector, Conflicts: []string{j.Unit}},
		Resources:   fleet.Resources{Memory: j.Memory, CPUs: j.CPUs},
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own plain structs always marshal
	}
	return string(b)
}

// Job returns a stored job.
func (m *Manager) Job(ctx context.Context, id string) (Job, error) {
	j, _, err := m.job(ctx, id)
	return j, err
}

func (m *Manager) job(ctx context.Context, id string) (Job, int64, error) {
	if id == "" || strings.Contains(id, "/") {
		return Job{}, 0, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	resp, err := m.cfg.Client.Get(ctx, m.jobKey(id))
	if err != nil {
		return Job{}, 0, fmt.Errorf("loadjob: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return Job{}, 0, fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	var j Job
	if err := json.Unmarshal(resp.Kvs[0].Value, &j); err != nil {
		return Job{}, 0, fmt.Errorf("loadjob: job %s: %w", id, err)
	}
	return j, resp.Kvs[0].ModRevision, nil
}

// Jobs returns every stored job, newest first.
func (m *Manager) Jobs(ctx context.Context) ([]Job, error) {
	resp, err := m.cfg.Client.Get(ctx, m.jobsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("loadjob: %w", err)
	}
	jobs := []Job{}
	for _, kv := range resp.Kvs {
		var j Job
		if json.Unmarshal(kv.Value, &j) == nil {
			jobs = append(jobs, j)
		}
	}
	slices.SortFunc(jobs, func(a, b Job) int { return b.Created.Compare(a.Created) })
	return jobs, nil
}

type workerKV struct {
	Worker
	rev int64
}

// Workers returns the job's workers in order, with their aggregates.
func (m *Manager) Workers(ctx context.Context, id string) ([]Worker, error) {
	ws, err := m.workers(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make([]Worker, len(ws))
	for i, w := range ws {
		out[i] = w.Worker
	}
	return out, nil
}

func (m *Manager) workers(ctx context.Context, id string) ([]workerKV, error) {
	resp, err := m.cfg.Client.Get(ctx, m.workersPrefix(id), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("loadjob: %w", err)
	}
	ws := make([]workerKV, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var w Worker
		if err := json.Unmarshal(kv.Value, &w); err != nil {
			return nil, fmt.Errorf("loadjob: worker %s: %w", kv.Key, err)
		}
		ws = append(ws, workerKV{w, kv.ModRevision})
	}
	return ws, nil
}

func (m *Manager) worker(ctx context.Context, id string, n int) (workerKV, error) {
	resp, err := m.cfg.Client.Get(ctx, m.workerKey(id, n))
	if err != nil {
		return workerKV{}, fmt.Errorf("loadjob: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return workerKV{}, fmt.Errorf("job %s has no worker %d: %w", id, n, ErrNotFound)
	}
	var w Worker
	if err := json.Unmarshal(resp.Kvs[0].Value, &w); err != nil {
		return workerKV{}, fmt.Errorf("loadjob: worker %d: %w", n, err)
	}
	return workerKV{w, resp.Kvs[0].ModRevision}, nil
}

// putWorker writes a worker's state if nobody changed it since it was read.
func (m *Manager) putWorker(ctx context.Context, id string, w workerKV) (bool, error) {
	key := m.workerKey(id, w.Worker.Worker)
	resp, err := m.cfg.Client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", w.rev)).
		Then(clientv3.OpPut(key, mustJSON(w.Worker))).Commit()
	if err != nil {
		return false, fmt.Errorf("loadjob: %w", err)
	}
	return resp.Succeeded, nil
}

// Claim hands worker n its share, once: a second claim by another
// instance (a restarted container) is a conflict, so a lost share is
// reported lost rather than run twice.
func (m *Manager) Claim(ctx context.Context, id string, n int, token, instance, node string) (Share, error) {
	j, _, err := m.job(ctx, id)
	if err != nil {
		return Share{}, err
	}
	if !j.validToken(token) {
		return Share{}, ErrUnauthorized
	}
	if instance == "" {
		return Share{}, fmt.Errorf("%w: no worker instance", ErrBadRequest)
	}
	if j.State != StateRunning {
		return Share{}, fmt.Errorf("%w: job %s is %s", ErrConflict, id, j.State)
	}
	for range 5 {
		w, err := m.worker(ctx, id, n)
		if err != nil {
			return Share{}, err
		}
		switch {
		case w.State == WorkerPending:
		case w.Instance == instance && w.State == WorkerRunning:
			return j.ShareOf(n), nil // a retried claim
		default:
			return Share{}, fmt.Errorf("%w: worker %d of job %s is %s (instance %s); a share runs once", ErrConflict, n, id, w.State, w.Instance)
		}
		now := time.Now().UTC()
		w.State, w.Instance, w.Node, w.Claimed, w.Updated = WorkerRunning, instance, node, now, now
		ok, err := m.putWorker(ctx, id, w)
		if err != nil {
			return Share{}, err
		}
		if ok {
			return j.ShareOf(n), nil
		}
	}
	return Share{}, fmt.Errorf("loadjob: worker %d of job %s: claim kept conflicting", n, id)
}

// Update stores a worker's latest aggregate and tells it whether to stop.
func (m *Manager) Update(ctx context.Context, id string, n int, token string, up Update) (UpdateAnswer, error) {
	j, _, err := m.job(ctx, id)
	if err != nil {
		return UpdateAnswer{}, err
	}
	if !j.validToken(token) {
		return UpdateAnswer{}, ErrUnauthorized
	}
	if len(up.Aggregate) > 0 {
		var a load.Aggregate
		if err := json.Unmarshal(up.Aggregate, &a); err != nil {
			return UpdateAnswer{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
	}
	for range 5 {
		w, err := m.worker(ctx, id, n)
		if err != nil {
			return UpdateAnswer{}, err
		}
		if w.Instance != up.Instance {
			return UpdateAnswer{Stop: true, Reason: "this share is another worker's"}, fmt.Errorf("%w: worker %d of job %s belongs to instance %s", ErrConflict, n, id, w.Instance)
		}
		if w.State != WorkerRunning {
			return UpdateAnswer{Stop: true, Reason: "worker is " + w.State}, nil
		}
		w.Updated = time.Now().UTC()
		if len(up.Aggregate) > 0 {
			w.Aggregate = up.Aggregate
		}
		if !up.Done {
			// The last word comes once the browsers are gone: keep the
			// figures of the run.
			w.CPUPercent, w.MemoryBytes, w.Cores = up.CPUPercent, up.MemoryBytes, up.Cores
			w.CPUPeakPercent, w.MemoryPeakBytes = max(w.CPUPeakPercent, up.CPUPercent), max(w.MemoryPeakBytes, up.MemoryBytes)
			if hotCPU(up.CPUPercent, up.Cores) {
				w.HotSeconds++
			}
		}
		if up.Node != "" {
			w.Node = up.Node
		}
		if up.Done {
			w.State, w.Reason = WorkerDone, up.Error
		}
		ok, err := m.putWorker(ctx, id, w)
		if err != nil {
			return UpdateAnswer{}, err
		}
		if ok {
			if j.State != StateRunning {
				return UpdateAnswer{Stop: true, Reason: "job is " + j.State}, nil
			}
			return UpdateAnswer{}, nil
		}
	}
	return UpdateAnswer{}, fmt.Errorf("loadjob: worker %d of job %s: update kept conflicting", n, id)
}

// Stop asks the job's workers to stop: they end their runs and send their
// last aggregate; the job then ends (Sweep) with its report.
func (m *Manager) Stop(ctx context.Context, id string) (Job, error) {
	for range 5 {
		j, rev, err := m.job(ctx, id)
		if err != nil {
			return Job{}, err
		}
		if j.State != StateRunning {
			return j, nil
		}
		j.State = StateStopping
		ok, err := m.putJob(ctx, j, rev)
		if err != nil {
			return Job{}, err
		}
		if ok {
			return j, nil
		}
	}
	return Job{}, fmt.Errorf("loadjob: stop %s: kept conflicting", id)
}

func (m *Manager) putJob(ctx context.Context, j Job, rev int64, more ...clientv3.Op) (bool, error) {
	key := m.jobKey(j.ID)
	resp, err := m.cfg.Client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(append([]clientv3.Op{clientv3.OpPut(key, mustJSON(j))}, more...)...).Commit()
	if err != nil {
		return false, fmt.Errorf("loadjob: job %s: %w", j.ID, err)
	}
	return resp.Succeeded, nil
}

// Run sweeps the jobs every second until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if err := m.Sweep(ctx, now); err != nil && ctx.Err() == nil {
				m.log.Warn("load jobs: sweep failed", "error", err)
			}
		}
	}
}

// Sweep marks lost the workers whose stream stopped (or that never
// started), and ends the jobs whose workers are all done or lost: their
// merged report is kept and their unit destroyed.
func (m *Manager) Sweep(ctx context.Context, now time.Time) error {
	jobs, err := m.Jobs(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, j := range jobs {
		if j.State != StateRunning && j.State != StateStopping {
			continue
		}
		if err := m.sweepJob(ctx, j, now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) sweepJob(ctx context.Context, j Job, now time.Time) error {
	id := j.ID
	ws, err := m.workers(ctx, id)
	if err != nil {
		return err
	}
	ended := true
	for _, w := range ws {
		var why string
		switch {
		case w.State == WorkerRunning && now.Sub(w.Updated) > m.cfg.StreamTimeout:
			why = fmt.Sprintf("no aggregate from %s for %s (worker or node died)", cmp.Or(w.Node, "its node"), now.Sub(w.Updated).Round(time.Second))
		case w.State == WorkerPending && now.Sub(w.Updated) > m.cfg.StartTimeout:
			why = fmt.Sprintf("never started within %s (no node for the unit, or the image failed)", m.cfg.StartTimeout)
		case w.State == WorkerPending && j.State == StateStopping:
			why = "the job was stopped before this worker started"
		}
		if why != "" {
			w.State, w.Reason, w.LostAt = WorkerLost, why, now.UTC()
			if w.Updated.IsZero() {
				w.Updated = w.LostAt
			}
			if _, err := m.putWorker(ctx, id, w); err != nil {
				return err
			}
			m.log.Warn("load worker lost", "job", id, "worker", w.Worker.Worker, "node", w.Node, "sessions", w.Sessions, "reason", why)
			continue // the next sweep ends the job if need be
		}
		if w.State == WorkerPending || w.State == WorkerRunning {
			ended = false
		}
	}
	if !ended {
		return nil
	}
	return m.finish(ctx, id, now)
}

// finish ends a job whose workers are all done or lost: its state, its
// merged report kept, its unit destroyed.
func (m *Manager) finish(ctx context.Context, id string, now time.Time) error {
	j, rev, err := m.job(ctx, id)
	if err != nil {
		return err
	}
	if j.State != StateRunning && j.State != StateStopping {
		return nil
	}
	ws, err := m.Workers(ctx, id)
	if err != nil {
		return err
	}
	if j.State == StateStopping {
		j.State = StateStopped
	} else {
		j.State = StateFinished
	}
	j.Ended = now.UTC()
	r, err := MergedReport(j, ws, now)
	if err != nil {
		return err
	}
	ok, err := m.putJob(ctx, j, rev, clientv3.OpPut(m.reportKey(id), mustJSON(r)))
	if err != nil || !ok {
		return err
	}
	if err := m.cfg.Units.DestroyUnit(ctx, j.Unit); err != nil && !errors.Is(err, fleet.ErrNotFound) {
		m.log.Warn("load job: destroying its unit failed", "job", id, "unit", j.Unit, "error", err)
	}
	m.log.Info("load job ended", "job", id, "state", j.State, "steps", r.Total.Count, "lost_sessions", r.LostSessions)
	return nil
}

// Report returns the job's report: the kept one when the job has ended,
// else the merge of what the workers sent so far.
func (m *Manager) Report(ctx context.Context, id string) (load.Report, error) {
	j, _, err := m.job(ctx, id)
	if err != nil {
		return load.Report{}, err
	}
	if j.State == StateFinished || j.State == StateStopped {
		resp, err := m.cfg.Client.Get(ctx, m.reportKey(id))
		if err != nil {
			return load.Report{}, fmt.Errorf("loadjob: %w", err)
		}
		if len(resp.Kvs) > 0 {
			var r load.Report
			if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
				return load.Report{}, fmt.Errorf("loadjob: report %s: %w", id, err)
			}
			return r, nil
		}
	}
	ws, err := m.Workers(ctx, id)
	if err != nil {
		return load.Report{}, err
	}
	return MergedReport(j, ws, time.Now())
}

// ReportSummary is one kept report in load list.
type ReportSummary struct {
	Job          string    `json:"job"`
	Scenario     string    `json:"scenario"`
	State        string    `json:"state"`
	Started      time.Time `json:"started"`
	DurationS    float64   `json:"duration_s"`
	Workers      int       `json:"workers"`
	Sessions     int64     `json:"sessions"`
	LostSessions int64     `json:"lost_sessions"`
	Steps        int64     `json:"steps"`
	Failures     int64     `json:"failures"`
	P95Ms        float64   `json:"p95_ms"`
}

// Reports lists the kept reports, newest first.
func (m *Manager) Reports(ctx context.Context) ([]ReportSummary, error) {
	jobs, err := m.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := m.cfg.Client.Get(ctx, m.reportsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("loadjob: %w", err)
	}
	byID := map[string]Job{}
	for _, j := range jobs {
		byID[j.ID] = j
	}
	out := []ReportSummary{}
	for _, kv := range resp.Kvs {
		id := strings.TrimPrefix(string(kv.Key), m.reportsPrefix())
		var r load.Report
		if json.Unmarshal(kv.Value, &r) != nil {
			continue
		}
		j := byID[id]
		out = append(out, ReportSummary{Job: id, Scenario: r.Scenario, State: j.State, Started: r.Started, DurationS: r.DurationS,
			Workers: len(r.Workers), Sessions: r.Sessions, LostSessions: r.LostSessions, Steps: r.Total.Count, Failures: r.Total.Failures, P95Ms: r.Total.P95Ms})
	}
	slices.SortFunc(out, func(a, b ReportSummary) int { return b.Started.Compare(a.Started) })
	return out, nil
}

// ParseWorker reads a worker number from a path.
func ParseWorker(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 100000 {
		return 0, fmt.Errorf("%w: worker %q: want a number from 0", ErrBadRequest, s)
	}
	return n, nil
}

// HasPublicURL says whether the server was given the URL workers use.
func (m *Manager) HasPublicURL() bool { return m.cfg.PublicURL != "" }
