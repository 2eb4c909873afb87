package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bootfleet/bootfleet/load"
)

func writeScenario(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "scenario.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// An invalid scenario: exit status 1 and every problem on stderr, no
// browser started, no report written.
func TestLoadRunInvalidScenario(t *testing.T) {
	p := writeScenario(t, "name: s\ntarget: ftp://x\nsesions: 3\nsteps:\n  - klick: a\n")
	out := filepath.Join(t.TempDir(), "report")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"load", "run", p, "--local", "--out", out}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("exit status %d, want 1; stderr:\n%s", code, stderr.String())
	}
	for _, want := range []string{p + ":2:9: target", p + ":3:1: scenario: unknown key \"sesions\"", p + ":5:5: steps[0]: unknown key \"klick\""} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("an invalid scenario wrote %s", out)
	}
	code = run(context.Background(), []string{"load", "run", p}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "--local") {
		t.Errorf("without --local: exit status %d, stderr:\n%s", code, stderr.String())
	}
}

// bootfleet load run --local against a page on 127.0.0.1, in real
// headless Chromium: the live line, the step table and the three reports.
func TestLoadRunLocal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	if _, err := load.FindBrowser(""); err != nil {
		t.Fatalf("%v: `make test` installs chromium-headless-shell", err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><title>t</title><button id="go" onclick="document.body.insertAdjacentHTML('beforeend','<p class=done>done</p>')">go</button>`)
	}))
	defer srv.Close()
	p := writeScenario(t, "name: cli\ntarget: "+srv.URL+"\nsessions: 3\nduration: 6s\nthink_time: 100ms\nsteps:\n  - navigate: /\n  - click: \"#go\"\n  - wait_for: .done\n")
	out := filepath.Join(t.TempDir(), "report")
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := run(ctx, []string{"load", "run", p, "--local", "--out", out, "--sessions", "2"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, stderr.String())
	}
	// The live line, once a second (how many sessions it catches running
	// depends on how fast the browser starts on a busy machine).
	if !strings.Contains(stderr.String(), "sessions ") || !strings.Contains(stderr.String(), "steps/s") {
		t.Errorf("no live line on stderr:\n%s", stderr.String())
	}
	if !strings.Contains(stdout.String(), "click #go") || !strings.Contains(stdout.String(), "report.html") {
		t.Errorf("stdout:\n%s", stdout.String())
	}
	var r load.Report
	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Steps) != 3 || r.Steps[2].Name != "wait_for .done" || r.Steps[2].Count == 0 || r.Total.Failures != 0 || r.Sessions != 2 {
		t.Errorf("report.json: %+v", r)
	}
	for _, f := range []string{"report.csv", "report.html"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}
