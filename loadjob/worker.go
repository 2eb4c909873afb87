package loadjob

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bootfleet/bootfleet/load"
)

// WorkerConfig configures one worker of a job.
type WorkerConfig struct {
	Server string // the bootfleet server's URL
	Job    string
	Worker int    // the unit's replica (BOOTFLEET_REPLICA)
	Token  string // the job token (BOOTFLEET_JOB_TOKEN)
	Node   string // the node's MAC (BOOTFLEET_NODE), for the report
	// Browser overrides the job's browser (a path on this machine).
	Browser string
	// Interval between two aggregates sent; default 1s.
	Interval time.Duration
	Log      *slog.Logger
	// Progress, if set, gets the worker's live figures every second.
	Progress func(load.Live)
	// Park: once its share is done (or not its to run), wait until ctx
	// ends instead of returning, so a container engine or agent that
	// restarts exited containers does not start it over and over; the
	// job's unit is destroyed when the job ends.
	Park bool
}

// errConflict is a share the worker must not run (another worker's, or
// the job ended): the worker exits without error, so it is not restarted.
type errConflict struct{ msg string }

func (e errConflict) Error() string { return e.msg }

// RunWorker claims the worker's share of the job, runs it with the local
// browser runner, and streams its aggregate to the server every second
// until the share is done or the server says stop. A share that is not
// this worker's to run (already claimed, job ended) is not run.
func RunWorker(ctx context.Context, cfg WorkerConfig) error {
	err := runWorker(ctx, cfg)
	if cfg.Park && ctx.Err() == nil {
		if cfg.Log != nil {
			cfg.Log.Info("load worker: share ended; idle until the job's unit goes")
		}
		<-ctx.Done()
	}
	return err
}

func runWorker(ctx context.Context, cfg WorkerConfig) error {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Server == "" || cfg.Job == "" || cfg.Token == "" {
		return errors.New("load worker: --server, --job and the job token (BOOTFLEET_JOB_TOKEN) are required")
	}
	host, _ := os.Hostname()
	instance := host + "-" + randomHex(4)
	c := &workerClient{cfg: cfg, hc: &http.Client{Timeout: 15 * time.Second}, instance: instance, gen: load.TreeSampler{Root: os.Getpid()}}

	var share Share
	q := url.Values{"instance": {instance}, "node": {cfg.Node}}
	err := c.retry(ctx, time.Minute, func() error {
		return c.call(ctx, http.MethodGet, c.workerPath()+"/share?"+q.Encode(), nil, &share)
	})
	var conflict errConflict
	if errors.As(err, &conflict) {
		cfg.Log.Warn("load worker: not running this share", "job", cfg.Job, "worker", cfg.Worker, "reason", conflict.msg)
		return nil
	}
	if err != nil {
		return err
	}
	cfg.Log.Info("load worker: running share", "job", cfg.Job, "worker", cfg.Worker, "sessions", share.Sessions, "first_session", share.Offset+1)

	dir, cleanup, err := WriteFiles(share.Files)
	if err != nil {
		return err
	}
	defer cleanup()
	sc, err := load.Parse(path.Base(share.ScenarioFile), []byte(share.Scenario), dir)
	if err != nil {
		c.final(ctx, nil, err)
		return nil
	}
	browser := cfg.Browser
	if browser == "" {
		browser = share.Browser
	}
	exe, err := load.FindBrowser(browser)
	if err != nil {
		c.final(ctx, nil, err)
		return err
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var agg atomic.Pointer[load.Aggregate]
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		c.stream(runCtx, &agg, stop)
	}()
	a, runErr := load.Run(runCtx, sc, load.Options{Browser: exe, Sessions: share.Sessions, SessionOffset: share.Offset,
		SessionsPerBrowser: share.SessionsPerBrowser, Out: dir, Log: cfg.Log, Started: func(a *load.Aggregate) { agg.Store(a) }}, cfg.Progress)
	stop()
	<-streamDone
	if a == nil {
		a = agg.Load()
	}
	c.final(ctx, a, runErr)
	if runErr != nil {
		cfg.Log.Error("load worker: run failed", "error", runErr)
	}
	return nil
}

type workerClient struct {
	cfg      WorkerConfig
	hc       *http.Client
	instance string
	// gen samples the worker and its browsers (CPU, PSS).
	gen load.TreeSampler
}

func (c *workerClient) workerPath() string {
	return "/api/v1/load/jobs/" + url.PathEscape(c.cfg.Job) + "/workers/" + strconv.Itoa(c.cfg.Worker)
}

// call does one API call; 409 becomes errConflict.
func (c *workerClient) call(ctx context.Context, method, p string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.cfg.Server, "/")+p, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("load worker: %s %s: %w", method, p, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		if resp.StatusCode == http.StatusConflict {
			return errConflict{e.Error}
		}
		return fmt.Errorf("load worker: %s %s: HTTP %d: %s", method, p, resp.StatusCode, e.Error)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("load worker: %s %s: bad answer: %w", method, p, err)
		}
	}
	return nil
}

// retry calls f until it succeeds, returns a conflict, or the time is up.
func (c *workerClient) retry(ctx context.Context, within time.Duration, f func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := f()
		var conflict errConflict
		if err == nil || errors.As(err, &conflict) || time.Now().After(deadline) {
			return err
		}
		c.cfg.Log.Warn("load worker: server call failed; retrying", "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (c *workerClient) update(a *load.Aggregate, done bool, runErr error) (Update, error) {
	up := Update{Instance: c.instance, Node: c.cfg.Node, Done: done, Cores: runtime.NumCPU()}
	if u, err := c.gen.Sample(); err == nil {
		up.CPUPercent, up.MemoryBytes = u.CPUPercent, u.PSS
	}
	if a != nil {
		b, err := json.Marshal(a)
		if err != nil {
			return Update{}, err
		}
		up.Aggregate = b
	}
	if runErr != nil {
		up.Error = runErr.Error()
	}
	return up, nil
}

// stream sends the aggregate every interval; the server's stop ends the
// run.
func (c *workerClient) stream(ctx context.Context, agg *atomic.Pointer[load.Aggregate], stop func()) {
	c.gen.Sample() // the first sample only starts the CPU interval
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		up, err := c.update(agg.Load(), false, nil)
		if err != nil {
			c.cfg.Log.Error("load worker: aggregate", "error", err)
			continue
		}
		var ans UpdateAnswer
		err = c.call(ctx, http.MethodPost, c.workerPath(), up, &ans)
		var conflict errConflict
		switch {
		case errors.As(err, &conflict):
			c.cfg.Log.Warn("load worker: the server refuses this worker's aggregates; stopping", "reason", conflict.msg)
			stop()
			return
		case err != nil:
			if ctx.Err() == nil {
				c.cfg.Log.Warn("load worker: sending the aggregate failed", "error", err)
			}
		case ans.Stop:
			c.cfg.Log.Info("load worker: the server says stop", "reason", ans.Reason)
			stop()
			return
		}
	}
}

// final sends the last aggregate with done set, retrying for a while.
func (c *workerClient) final(ctx context.Context, a *load.Aggregate, runErr error) {
	up, err := c.update(a, true, runErr)
	if err != nil {
		c.cfg.Log.Error("load worker: aggregate", "error", err)
		return
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := c.retry(fctx, 25*time.Second, func() error { return c.call(fctx, http.MethodPost, c.workerPath(), up, nil) }); err != nil {
		c.cfg.Log.Error("load worker: the last aggregate did not reach the server", "error", err)
	}
}
