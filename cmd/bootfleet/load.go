package main

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/bootfleet/bootfleet/load"
)

func newLoadCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Real-browser load tests: scenarios in YAML driven through headless Chromium",
	}
	cmd.AddCommand(newLoadRunCmd())
	cmd.AddCommand(loadDistCmds()...)
	cmd.AddCommand(newLoadCompareCmd())
	return cmd
}

func newLoadRunCmd() *cobra.Command {
	var local bool
	var out, browser string
	var opts load.Options
	cmd := &cobra.Command{
		Use:   "run SCENARIO --local",
		Short: "Run a scenario with browsers on this machine and write the report",
		Long: `run starts headless Chromium (Debian's chromium-headless-shell by default,
--browser chromium for the full browser), runs the scenario's sessions as
isolated browser contexts, several per browser process, shows live figures
every second (sessions, steps/s, failures, p95) and writes OUT/report.json,
OUT/report.csv and OUT/report.html.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !local {
				return errors.New("run takes --local; to run on the fleet's load nodes use: bootfleet load start SCENARIO --sessions N --workers W")
			}
			sc, err := load.LoadFile(args[0])
			if err != nil {
				printErrors(cmd.ErrOrStderr(), err)
				return exitError{code: 1}
			}
			exe, err := load.FindBrowser(browser)
			if err != nil {
				return err
			}
			opts.Browser, opts.Out = exe, out
			opts.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			stderr := cmd.ErrOrStderr()
			fmt.Fprintf(stderr, "load: %s against %s with %s\n", sc.Name, sc.Target, exe)
			agg, err := load.Run(cmd.Context(), sc, opts, func(l load.Live) {
				hot := ""
				if l.Hot {
					hot = "  GENERATOR HOT"
				}
				fmt.Fprintf(stderr, "%6.0fs  sessions %4d  steps %7d  %6.1f steps/s  failures %5d  p95 %8s  ws received %d  generator cpu %.0f%% pss %.0f MiB%s\n",
					l.Elapsed.Seconds(), l.Sessions, l.Steps, l.StepsPerS, l.Failures, l.P95.Round(time.Millisecond), l.WSReceived, l.GenCPU, l.GenPSSMiB, hot)
			})
			if err != nil {
				return err
			}
			r := agg.Report(sc, exe, time.Now())
			if err := r.Write(out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%-32s %8s %8s %9s %9s %9s %9s\n", "STEP", "COUNT", "FAILED", "AVG ms", "P50", "P95", "P99")
			for _, s := range append(r.Steps, r.Total) {
				fmt.Fprintf(cmd.OutOrStdout(), "%-32s %8d %8d %9.1f %9.1f %9.1f %9.1f\n", s.Name, s.Count, s.Failures, s.AvgMs, s.P50Ms, s.P95Ms, s.P99Ms)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "report: %s/report.html (and report.json, report.csv)\n", out)
			if r.Total.Count == 0 {
				fmt.Fprintln(stderr, "load: no step ran")
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&local, "local", false, "run the browsers on this machine")
	cmd.Flags().StringVar(&out, "out", "load-report", "directory for the report")
	cmd.Flags().StringVar(&browser, "browser", "", "headless-shell (default when installed), chromium, or a path")
	cmd.Flags().IntVar(&opts.Sessions, "sessions", 0, "override the scenario's sessions")
	cmd.Flags().IntVar(&opts.SessionsPerBrowser, "sessions-per-browser", 10, "sessions sharing one browser process (each in its own browser context)")
	return cmd
}
