package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/spf13/cobra"

	"github.com/bootfleet/bootfleet/load"
	"github.com/bootfleet/bootfleet/loadjob"
)

// loadDistCmds are the distributed load commands: start, status, stop,
// report, list and the worker the fleet runs.
func loadDistCmds() []*cobra.Command {
	return []*cobra.Command{newLoadStartCmd(), newLoadStatusCmd(), newLoadStopCmd(), newLoadReportCmd(), newLoadListCmd(), newLoadWorkerCmd()}
}

func newLoadStartCmd() *cobra.Command {
	var cf clientFlags
	var req loadjob.Request
	var selector []string
	var follow bool
	cmd := &cobra.Command{
		Use:   "start SCENARIO --sessions N [--workers W] [--selector k=v]",
		Short: "Start a distributed load job: its sessions split over workers that the fleet runs on load nodes",
		Long: `start stores the job on the server and submits the fleet unit of its
workers: W replicas of the browser-load image running
"bootfleet load worker", on nodes whose labels/metadata match --selector
(default role=loadgen; --selector "" for any node). Each worker runs its
share of the sessions and streams its figures every second; follow them
with "load status JOB", end the job early with "load stop JOB", and get
the merged report with "load report JOB --out DIR".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			// Check the scenario here first: its errors point at the file.
			if _, err := load.LoadFile(args[0]); err != nil {
				printErrors(cmd.ErrOrStderr(), err)
				return exitError{code: 1}
			}
			text, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			req.ScenarioFile, req.Scenario = filepath.Base(args[0]), string(text)
			if req.Files, err = scenarioFiles(args[0], text); err != nil {
				return err
			}
			req.Selector = map[string]string{}
			for _, kv := range selector {
				if kv == "" {
					continue
				}
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("--selector %q: want key=value", kv)
				}
				req.Selector[k] = v
			}
			ctx, cancel := timeout(cmd)
			defer cancel()
			var j loadjob.Job
			if err := c.do(ctx, "POST", "/api/v1/load/jobs", req, &j); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", j.ID)
			fmt.Fprintf(cmd.ErrOrStderr(), "load: job %s: %d sessions of %s over %d workers (unit %s, image %s); workers report to %s\n",
				j.ID, j.Sessions, j.ScenarioName, j.Workers, j.Unit, j.Image, j.Server)
			if follow {
				return followJob(cmd.Context(), c, j.ID, cmd.ErrOrStderr())
			}
			return nil
		},
	}
	cf.register(cmd, false)
	cmd.Flags().IntVar(&req.Sessions, "sessions", 0, "sessions in total (default: the scenario's)")
	cmd.Flags().IntVar(&req.Workers, "workers", 1, "workers (unit replicas, one per node) to split the sessions over")
	cmd.Flags().StringArrayVar(&selector, "selector", []string{"role=loadgen"}, "node label/metadata the workers need (key=value, repeatable; \"\" for any node)")
	cmd.Flags().StringVar(&req.Image, "image", loadjob.DefaultImage, "the workers' container image")
	cmd.Flags().StringVar(&req.Browser, "browser", "", "the workers' browser: headless-shell (default), chromium, or a path in the image")
	cmd.Flags().IntVar(&req.SessionsPerBrowser, "sessions-per-browser", 0, "sessions sharing one browser process (default 10)")
	cmd.Flags().StringVar(&req.Server, "worker-server", "", "URL workers reach the server at (default: the server's http.public_url, else --server)")
	cmd.Flags().StringVar(&req.Memory, "memory", "", "each worker's memory limit (e.g. 2g)")
	cmd.Flags().Float64Var(&req.CPUs, "cpus", 0, "each worker's CPU limit")
	cmd.Flags().BoolVar(&follow, "follow", false, "show the live figures until the job ends")
	return cmd
}

// scenarioFiles reads the data file the scenario names, to ship it to the
// workers with the scenario.
func scenarioFiles(path string, text []byte) (map[string]string, error) {
	var top struct {
		Data string `yaml:"data"`
	}
	if err := yaml.Unmarshal(text, &top); err != nil || top.Data == "" {
		return nil, nil
	}
	name := filepath.ToSlash(filepath.Clean(top.Data))
	if filepath.IsAbs(top.Data) || strings.HasPrefix(name, "../") {
		return nil, fmt.Errorf("%s: data: %s: a distributed job ships its data file to the workers, so it must be below the scenario's directory", path, top.Data)
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(path), top.Data))
	if err != nil {
		return nil, err
	}
	return map[string]string{name: string(b)}, nil
}

func newLoadStatusCmd() *cobra.Command {
	var cf clientFlags
	var follow bool
	cmd := &cobra.Command{
		Use:   "status [JOB]",
		Short: "Show a load job's merged live figures and its workers, or list the jobs",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			ctx, cancel := timeout(cmd)
			defer cancel()
			if len(args) == 0 {
				var jobs []loadjob.Job
				if err := c.do(ctx, "GET", "/api/v1/load/jobs", nil, &jobs); err != nil {
					return err
				}
				if cf.output == "json" {
					return printJSON(cmd.OutOrStdout(), jobs)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "JOB\tSCENARIO\tSTATE\tSESSIONS\tWORKERS\tCREATED")
				for _, j := range jobs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", j.ID, j.ScenarioName, j.State, j.Sessions, j.Workers, j.Created.Format(time.RFC3339))
				}
				return tw.Flush()
			}
			if follow {
				return followJob(cmd.Context(), c, args[0], cmd.OutOrStdout())
			}
			var st loadjob.Status
			if err := c.do(ctx, "GET", "/api/v1/load/jobs/"+url.PathEscape(args[0]), nil, &st); err != nil {
				return err
			}
			if cf.output == "json" {
				return printJSON(cmd.OutOrStdout(), st)
			}
			printStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	cf.register(cmd, true)
	cmd.Flags().BoolVar(&follow, "follow", false, "print the live figures every second until the job ends")
	return cmd
}

// printStatus writes a job's figures and its workers as a table.
func printStatus(w io.Writer, st loadjob.Status) {
	fmt.Fprintf(w, "job %s (%s): %s, %.0fs  sessions %d  steps %d  %.1f steps/s  failures %d  p95 %.1f ms  ws received %d  lost sessions %d\n",
		st.Job.ID, st.Job.ScenarioName, st.Job.State, st.ElapsedS, st.Sessions, st.Steps, st.StepsPerS, st.Failures, st.P95Ms, st.WSReceived, st.LostSessions)
	if st.Hot {
		fmt.Fprintln(w, "WARNING: a load generator runs near its CPU limit: its figures may show its own saturation, not the app's")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tNODE\tSTATE\tSHARE\tSESSIONS\tSTEPS\tSTEPS/S\tFAILURES\tP95 ms\tCPU %\tMEM MiB\tNOTE")
	for _, wk := range st.Workers {
		note := wk.Reason
		if wk.Hot {
			note = strings.TrimSpace("HOT " + note)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%d\t%.1f\t%d\t%.1f\t%.0f\t%d\t%s\n", wk.Worker, cmp.Or(wk.Node, "-"), wk.State, wk.Share, wk.Sessions,
			wk.Steps, wk.StepsPerS, wk.Failures, wk.P95Ms, wk.CPUPercent, wk.MemoryBytes>>20, note)
	}
	tw.Flush()
}

// followJob prints one live line a second until the job ends.
func followJob(ctx context.Context, c *apiClient, id string, w io.Writer) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var st loadjob.Status
		err := c.do(cctx, "GET", "/api/v1/load/jobs/"+url.PathEscape(id), nil, &st)
		cancel()
		if err != nil {
			return err
		}
		hot := ""
		if st.Hot {
			hot = "  GENERATOR HOT"
		}
		fmt.Fprintf(w, "%6.0fs  %-8s sessions %4d  steps %7d  %6.1f steps/s  failures %5d  p95 %8.1f ms  lost %d%s\n",
			st.ElapsedS, st.Job.State, st.Sessions, st.Steps, st.StepsPerS, st.Failures, st.P95Ms, st.LostSessions, hot)
		if st.Job.State == loadjob.StateFinished || st.Job.State == loadjob.StateStopped {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func newLoadStopCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "stop JOB",
		Short: "Stop a load job: its workers end their runs, the job keeps its report and its unit goes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			ctx, cancel := timeout(cmd)
			defer cancel()
			var j loadjob.Job
			if err := c.do(ctx, "POST", "/api/v1/load/jobs/"+url.PathEscape(args[0])+"/stop", nil, &j); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "job %s: %s\n", j.ID, j.State)
			return nil
		},
	}
	cf.register(cmd, false)
	return cmd
}

func newLoadReportCmd() *cobra.Command {
	var cf clientFlags
	var out string
	cmd := &cobra.Command{
		Use:   "report JOB --out DIR",
		Short: "Write a load job's merged report (report.json, report.csv, report.html), as a local run's",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			ctx, cancel := timeout(cmd)
			defer cancel()
			var r load.Report
			if err := c.do(ctx, "GET", "/api/v1/load/jobs/"+url.PathEscape(args[0])+"/report", nil, &r); err != nil {
				return err
			}
			if err := r.Write(out); err != nil {
				return err
			}
			printSteps(cmd.OutOrStdout(), r)
			for _, w := range r.Workers {
				if w.State == loadjob.WorkerLost {
					fmt.Fprintf(cmd.OutOrStdout(), "worker %d lost (sessions %d–%d): %s\n", w.Worker, w.FirstSession, w.LastSession, w.Reason)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "report: %s/report.html (and report.json, report.csv)\n", out)
			return nil
		},
	}
	cf.register(cmd, false)
	cmd.Flags().StringVar(&out, "out", "load-report", "directory for the report")
	return cmd
}

// printSteps writes the report's step table.
func printSteps(w io.Writer, r load.Report) {
	fmt.Fprintf(w, "%-32s %8s %8s %9s %9s %9s %9s\n", "STEP", "COUNT", "FAILED", "AVG ms", "P50", "P95", "P99")
	for _, s := range append(r.Steps, r.Total) {
		fmt.Fprintf(w, "%-32s %8d %8d %9.1f %9.1f %9.1f %9.1f\n", s.Name, s.Count, s.Failures, s.AvgMs, s.P50Ms, s.P95Ms, s.P99Ms)
	}
	if r.LostSessions > 0 {
		fmt.Fprintf(w, "lost sessions: %d\n", r.LostSessions)
	}
}

func newLoadListCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the load reports the server keeps",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			ctx, cancel := timeout(cmd)
			defer cancel()
			var list []loadjob.ReportSummary
			if err := c.do(ctx, "GET", "/api/v1/load/reports", nil, &list); err != nil {
				return err
			}
			if cf.output == "json" {
				return printJSON(cmd.OutOrStdout(), list)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tSCENARIO\tSTATE\tSTARTED\tDURATION\tWORKERS\tSESSIONS\tLOST\tSTEPS\tFAILURES\tP95 ms")
			for _, r := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0fs\t%d\t%d\t%d\t%d\t%d\t%.1f\n", r.Job, r.Scenario, r.State, r.Started.Format(time.RFC3339),
					r.DurationS, r.Workers, r.Sessions, r.LostSessions, r.Steps, r.Failures, r.P95Ms)
			}
			return tw.Flush()
		},
	}
	cf.register(cmd, true)
	return cmd
}

func newLoadWorkerCmd() *cobra.Command {
	var cfg loadjob.WorkerConfig
	var worker string
	cmd := &cobra.Command{
		Use:   "worker --job ID --server URL",
		Short: "Run one worker's share of a load job (the fleet runs this in the browser-load image)",
		Long: `worker claims its share of the job's sessions (worker number --worker,
default the unit replica BOOTFLEET_REPLICA the agent sets), runs them in
local headless browsers and streams its figures to the server every
second. It authenticates with the job's token, BOOTFLEET_JOB_TOKEN, which
the job's unit carries. A share runs once: a restarted worker whose share
was already claimed exits at once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(worker)
			if err != nil || n < 0 {
				return fmt.Errorf("--worker %q: want a number from 0 (or BOOTFLEET_REPLICA)", worker)
			}
			cfg.Worker = n
			cfg.Token = os.Getenv("BOOTFLEET_JOB_TOKEN")
			cfg.Node = os.Getenv("BOOTFLEET_NODE")
			// Under an agent, an exited container is started again: stay.
			cfg.Park = os.Getenv("BOOTFLEET_UNIT") != ""
			cfg.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			err = loadjob.RunWorker(ctx, cfg)
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	cmd.Flags().StringVar(&cfg.Job, "job", "", "the load job's ID")
	cmd.Flags().StringVar(&cfg.Server, "server", envOr("BOOTFLEET_SERVER", "http://127.0.0.1:8080"), "bootfleet server URL")
	cmd.Flags().StringVar(&worker, "worker", envOr("BOOTFLEET_REPLICA", "0"), "this worker's number (default BOOTFLEET_REPLICA)")
	cmd.Flags().StringVar(&cfg.Browser, "browser", "", "override the job's browser (a path on this machine)")
	return cmd
}
