package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bootfleet/bootfleet/load"
)

var updateCompare = flag.Bool("update-compare", false, "rewrite testdata/compare.golden")

func writeReport(t *testing.T, dir string, r load.Report) string {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "report.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// load compare of two report files (and a report directory): the golden
// table of per-step differences.
func TestLoadCompareGolden(t *testing.T) {
	start := time.Date(2026, 11, 25, 7, 0, 0, 0, time.UTC)
	a := load.Report{Scenario: "chat", Started: start, DurationS: 60,
		Steps: []load.StepReport{
			{Name: "open", Count: 1200, Failures: 0, P50Ms: 42.5, P95Ms: 120, P99Ms: 250.4},
			{Name: "login", Count: 1200, Failures: 12, P50Ms: 80, P95Ms: 200, P99Ms: 410},
			{Name: "messages", Count: 1188, Failures: 3, P50Ms: 900, P95Ms: 1500, P99Ms: 2100},
		},
		Total: load.StepReport{Name: "total", Count: 3588, Failures: 15, P50Ms: 80, P95Ms: 1200, P99Ms: 1900}}
	b := load.Report{Scenario: "chat", Started: start.Add(time.Hour), DurationS: 61.5,
		Steps: []load.StepReport{
			{Name: "open", Count: 1500, Failures: 5, P50Ms: 40, P95Ms: 150, P99Ms: 250.4},
			{Name: "messages", Count: 1400, Failures: 0, P50Ms: 950.5, P95Ms: 1800, P99Ms: 3000},
			{Name: "logout", Count: 1400, Failures: 1, P50Ms: 10, P95Ms: 20, P99Ms: 30},
		},
		Total: load.StepReport{Name: "total", Count: 4300, Failures: 6, P50Ms: 60, P95Ms: 1500, P99Ms: 2500}}
	dir := t.TempDir()
	pa := writeReport(t, filepath.Join(dir, "a"), a)
	writeReport(t, filepath.Join(dir, "b"), b)
	// Run from dir so the golden output holds relative names.
	wd, _ := os.Getwd()
	golden := filepath.Join(wd, "testdata", "compare.golden")
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	rel, _ := filepath.Rel(dir, pa)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"load", "compare", rel, "b"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if *updateCompare {
		if err := os.WriteFile(golden, stdout.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if stdout.String() != string(want) {
		t.Fatalf("load compare output differs from %s (rerun with -update-compare after checking):\n%s", golden, stdout.String())
	}
	// Neither a report nor a job the server knows: a clear error.
	stderr.Reset()
	if code := run(context.Background(), []string{"load", "compare", "nosuch", "b", "--server", "http://127.0.0.1:1", "--token", "x"}, &stdout, &stderr); code == 0 ||
		!bytes.Contains(stderr.Bytes(), []byte("nosuch is neither a report file nor a directory")) {
		t.Fatalf("compare with a missing report: exit %d, %s", code, stderr.String())
	}
}

// load start checks the scenario before it calls the server: a bad one
// fails with its positions, and nothing is sent.
func TestLoadStartInvalidScenario(t *testing.T) {
	p := writeScenario(t, "name: s\ntarget: http://127.0.0.1:1\nsteps:\n  - klick: a\n")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"load", "start", p, "--workers", "2", "--server", "http://127.0.0.1:1", "--token", "x"}, &stdout, &stderr)
	if code != 1 || !bytes.Contains(stderr.Bytes(), []byte(p+":4:5: steps[0]: unknown key \"klick\"")) || bytes.Contains(stderr.Bytes(), []byte("cannot reach")) {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	// A data file outside the scenario's directory cannot travel with the job.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "users.csv"), []byte("user\na\n"), 0o644)
	sub := filepath.Join(dir, "s")
	os.Mkdir(sub, 0o755)
	sp := filepath.Join(sub, "s.yaml")
	os.WriteFile(sp, []byte("name: s\ntarget: http://127.0.0.1:1\ndata: ../users.csv\nsteps:\n  - navigate: /\n"), 0o644)
	stderr.Reset()
	code = run(context.Background(), []string{"load", "start", sp, "--server", "http://127.0.0.1:1", "--token", "x"}, &stdout, &stderr)
	if code == 0 || !bytes.Contains(stderr.Bytes(), []byte("must be below the scenario's directory")) {
		t.Fatalf("data file outside: exit %d, stderr:\n%s", code, stderr.String())
	}
}
