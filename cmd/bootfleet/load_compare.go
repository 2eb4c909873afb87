package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/bootfleet/bootfleet/load"
)

func newLoadCompareCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "compare A B",
		Short: "Compare two load reports step by step (report files, report directories or job IDs)",
		Long: `compare shows, per step, the counts, failures and p50/p95/p99 latency of A
(the baseline) and B with B−A and its percentage. A and B are report.json
files, directories holding one, or the IDs of jobs whose reports the
server keeps.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var reps [2]load.Report
			for i, arg := range args {
				r, err := readReport(cmd, &cf, arg)
				if err != nil {
					return err
				}
				reps[i] = r
			}
			if cf.output == "json" {
				return printJSON(cmd.OutOrStdout(), load.Compare(reps[0], reps[1]))
			}
			return load.WriteComparison(cmd.OutOrStdout(), args[0], args[1], reps[0], reps[1])
		},
	}
	cf.register(cmd, true)
	return cmd
}

// readReport reads a report from a file or directory, else asks the
// server for the job's.
func readReport(cmd *cobra.Command, cf *clientFlags, arg string) (load.Report, error) {
	var r load.Report
	path := arg
	if st, err := os.Stat(arg); err == nil && st.IsDir() {
		path = filepath.Join(arg, "report.json")
	}
	data, err := os.ReadFile(path)
	if err == nil {
		if err := json.Unmarshal(data, &r); err != nil {
			return r, fmt.Errorf("%s: not a load report: %w", path, err)
		}
		return r, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return r, err
	}
	c, cerr := cf.client()
	if cerr != nil {
		return r, fmt.Errorf("%s is neither a report file nor a directory, and no server to ask for a job of that ID: %w", arg, cerr)
	}
	ctx, cancel := timeout(cmd)
	defer cancel()
	if err := c.do(ctx, "GET", "/api/v1/load/jobs/"+url.PathEscape(arg)+"/report", nil, &r); err != nil {
		return r, fmt.Errorf("%s is neither a report file nor a directory; as a job: %w", arg, err)
	}
	return r, nil
}
