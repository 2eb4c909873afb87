// Package loadjob runs distributed browser-load jobs: a job (scenario,
// sessions split over workers) kept in etcd, the fleet unit that runs its
// workers, the workers' claims of their share and their aggregates
// streamed every second, the merged live figures, the workers lost when
// their stream stops, and the merged report kept when the job ends.
package loadjob

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/bootfleet/bootfleet/load"
)

// Job states.
const (
	StateRunning  = "running"  // workers run or are being started
	StateStopping = "stopping" // stop asked: workers end their runs and send their last aggregate
	StateFinished = "finished" // every worker done or lost; report kept
	StateStopped  = "stopped"  // ended by load stop; report kept
)

// Worker states.
const (
	WorkerPending = "pending" // no worker has claimed this share yet
	WorkerRunning = "running"
	WorkerDone    = "done"
	WorkerLost    = "lost" // its stream stopped (worker or node died), or it never started
)

// DefaultImage is the browser-load image the workers run in.
const DefaultImage = "bootfleet/browser-load:latest"

// Job is a distributed load run as stored in etcd.
type Job struct {
	ID string `json:"id"`
	// ScenarioFile names the scenario (for its error messages); Scenario
	// is its YAML text; Files are data files it names (relative path →
	// content), written next to it on the workers.
	ScenarioFile string            `json:"scenario_file"`
	Scenario     string            `json:"scenario"`
	Files        map[string]string `json:"files,omitempty"`
	ScenarioName string            `json:"scenario_name"`
	Target       string            `json:"target"`
	Steps        []string          `json:"steps"`
	Sessions     int               `json:"sessions"`
	Workers      int               `json:"workers"`
	// Selector: the nodes' labels/metadata the workers' unit asks for.
	Selector map[string]string `json:"selector,omitempty"`
	Image    string            `json:"image"`
	// Browser is the worker's --browser ("" = headless shell).
	Browser            string `json:"browser,omitempty"`
	SessionsPerBrowser int    `json:"sessions_per_browser,omitempty"`
	// Server is the URL workers stream to.
	Server  string    `json:"server"`
	Unit    string    `json:"unit"`
	Token   string    `json:"token,omitempty"` // the workers' job token; never shown by the API
	State   string    `json:"state"`
	Created time.Time `json:"created"`
	Ended   time.Time `json:"ended,omitzero"`
	Memory  string    `json:"memory,omitempty"` // each worker's container memory limit
	CPUs    float64   `json:"cpus,omitempty"`
}

// Share is the part of a job one worker runs: sessions offset+1 …
// offset+sessions.
type Share struct {
	Job                string            `json:"job"`
	Worker             int               `json:"worker"`
	Offset             int               `json:"offset"`
	Sessions           int               `json:"sessions"`
	ScenarioFile       string            `json:"scenario_file"`
	Scenario           string            `json:"scenario"`
	Files              map[string]string `json:"files,omitempty"`
	Browser            string            `json:"browser,omitempty"`
	SessionsPerBrowser int               `json:"sessions_per_browser,omitempty"`
}

// ShareOf splits the job's sessions over its workers as evenly as can be:
// the first sessions%workers workers run one more.
func (j Job) ShareOf(worker int) Share {
	base, extra := j.Sessions/j.Workers, j.Sessions%j.Workers
	s := Share{Job: j.ID, Worker: worker, Sessions: base, Offset: worker * base, ScenarioFile: j.ScenarioFile, Scenario: j.Scenario,
		Files: j.Files, Browser: j.Browser, SessionsPerBrowser: j.SessionsPerBrowser}
	if worker < extra {
		s.Sessions++
		s.Offset += worker
	} else {
		s.Offset += extra
	}
	return s
}

// Request is what load start sends: the scenario and how to spread it.
type Request struct {
	ScenarioFile       string            `json:"scenario_file"`
	Scenario           string            `json:"scenario"`
	Files              map[string]string `json:"files,omitempty"`
	Sessions           int               `json:"sessions,omitempty"` // 0: the scenario's
	Workers            int               `json:"workers,omitempty"`  // 0: 1
	Selector           map[string]string `json:"selector,omitempty"`
	Image              string            `json:"image,omitempty"`
	Browser            string            `json:"browser,omitempty"`
	SessionsPerBrowser int               `json:"sessions_per_browser,omitempty"`
	Server             string            `json:"server,omitempty"` // URL workers use; default the server's public URL
	Memory             string            `json:"memory,omitempty"`
	CPUs               float64           `json:"cpus,omitempty"`
}

// ErrBadRequest marks a request that cannot become a job.
var ErrBadRequest = errors.New("bad load job")

// maxFiles bounds what a job carries to its workers.
const maxFiles = 900 << 10

var safeFile = regexp.MustCompile(`^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$`)

// newJob checks a request and makes the job of it.
func newJob(req Request, now time.Time, defaultServer string) (Job, error) {
	bad := func(format string, args ...any) (Job, error) {
		return Job{}, fmt.Errorf("%w: "+format, append([]any{ErrBadRequest}, args...)...)
	}
	if req.ScenarioFile == "" {
		req.ScenarioFile = "scenario.yaml"
	}
	size := len(req.Scenario)
	for name, content := range req.Files {
		if !safeFile.MatchString(name) || strings.Contains("/"+name+"/", "/../") || strings.Contains("/"+name+"/", "/./") {
			return bad("data file %q: want a relative path below the scenario's directory", name)
		}
		size += len(content)
	}
	if size > maxFiles {
		return bad("scenario and data files are %d bytes, at most %d", size, maxFiles)
	}
	sc, err := parseScenario(req.ScenarioFile, req.Scenario, req.Files)
	if err != nil {
		return bad("%v", err)
	}
	if req.Sessions < 0 || req.Workers < 0 {
		return bad("sessions and workers must not be negative")
	}
	if req.Sessions == 0 {
		req.Sessions = sc.Sessions
	}
	if req.Workers == 0 {
		req.Workers = 1
	}
	if req.Workers > req.Sessions {
		return bad("%d workers for %d sessions: each worker needs at least one session", req.Workers, req.Sessions)
	}
	if req.Workers > 1000 {
		return bad("%d workers, at most 1000", req.Workers)
	}
	server := req.Server
	if server == "" {
		server = defaultServer
	}
	if server == "" {
		return bad("no URL for the workers to reach the server: set http.public_url on the server or pass --worker-server")
	}
	id := strings.Trim(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '-'
	}, sc.Name), "-")
	if len(id) > 30 {
		id = id[:30]
	}
	if id == "" {
		id = "job"
	}
	id += "-" + randomHex(3)
	names := make([]string, len(sc.Steps))
	for i, s := range sc.Steps {
		names[i] = s.Name
	}
	j := Job{ID: id, ScenarioFile: path.Base(req.ScenarioFile), Scenario: req.Scenario, Files: req.Files, ScenarioName: sc.Name,
		Steps: names, Sessions: req.Sessions, Workers: req.Workers, Selector: req.Selector, Image: req.Image,
		Browser: req.Browser, SessionsPerBrowser: req.SessionsPerBrowser, Server: strings.TrimSuffix(server, "/"),
		Unit: "load-" + id, Token: randomHex(24), State: StateRunning, Created: now.UTC(), Memory: req.Memory, CPUs: req.CPUs}
	if sc.Target != nil {
		j.Target = sc.Target.String()
	}
	if j.Image == "" {
		j.Image = DefaultImage
	}
	return j, nil
}

// parseScenario checks the scenario as the workers will read it, with its
// data files in a scratch directory.
func parseScenario(file, text string, files map[string]string) (*load.Scenario, error) {
	dir, cleanup, err := WriteFiles(files)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	return load.Parse(path.Base(file), []byte(text), dir)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// validToken compares a job token in constant time.
func (j Job) validToken(token string) bool {
	return j.Token != "" && subtle.ConstantTimeCompare([]byte(j.Token), []byte(token)) == 1
}

// Public is the job without its token, as the API shows it.
func (j Job) Public() Job {
	j.Token = ""
	j.Scenario = ""
	j.Files = nil
	return j
}

// Worker is one worker's state and its latest aggregate.
type Worker struct {
	Worker   int    `json:"worker"`
	State    string `json:"state"`
	Instance string `json:"instance,omitempty"` // which process claimed the share
	Node     string `json:"node,omitempty"`
	Offset   int    `json:"offset"`
	Sessions int    `json:"sessions"`
	// Claimed and Updated: when the share was claimed and when the last
	// aggregate came.
	Claimed time.Time `json:"claimed,omitzero"`
	Updated time.Time `json:"updated,omitzero"`
	LostAt  time.Time `json:"lost_at,omitzero"`
	Reason  string    `json:"reason,omitempty"` // why lost, or the worker's error
	// CPUPercent and MemoryBytes (summed PSS): the generator's own use (worker and its
	// browsers); Cores is how many the generator's machine has.
	CPUPercent  float64 `json:"cpu_percent"`
	MemoryBytes int64   `json:"memory_bytes"`
	Cores       int     `json:"cores,omitempty"`
	// Peaks over the run, and the seconds the generator ran hot (at 85%
	// or more of its cores).
	CPUPeakPercent  float64         `json:"cpu_peak_percent"`
	MemoryPeakBytes int64           `json:"memory_peak_bytes"`
	HotSeconds      int             `json:"hot_seconds"`
	Aggregate       json.RawMessage `json:"aggregate,omitempty"`
}

// hotCPU says whether a CPU figure is near the generator's limit.
func hotCPU(cpu float64, cores int) bool { return cpu >= 85*float64(max(cores, 1)) }

// Hot says whether the generator runs near its CPU limit now, so its
// figures may show the generator's saturation rather than the app's.
func (w Worker) Hot() bool {
	return w.State == WorkerRunning && hotCPU(w.CPUPercent, w.Cores)
}

// RanHot says whether the generator ran hot long enough to matter to its
// figures: 5 seconds, or a tenth of its run.
func (w Worker) RanHot() bool {
	run := w.Updated.Sub(w.Claimed).Seconds()
	return w.HotSeconds >= 5 || (w.HotSeconds > 0 && float64(w.HotSeconds) >= run/10)
}

// Update is the body a worker streams every second.
type Update struct {
	Instance    string          `json:"instance"`
	Node        string          `json:"node,omitempty"`
	Aggregate   json.RawMessage `json:"aggregate"`
	CPUPercent  float64         `json:"cpu_percent"`
	MemoryBytes int64           `json:"memory_bytes"`
	Cores       int             `json:"cores,omitempty"`
	Done        bool            `json:"done,omitempty"`
	Error       string          `json:"error,omitempty"`
}

// UpdateAnswer tells the worker whether to stop.
type UpdateAnswer struct {
	Stop   bool   `json:"stop"`
	Reason string `json:"reason,omitempty"`
}
