package load

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseContractExample(t *testing.T) {
	sc, err := Parse("chat.yaml", []byte(`name: chat
target: http://10.77.0.1:3000
sessions: 200
ramp_up: 30s
duration: 5m
steps:
  - name: open
    navigate: /
  - name: login
    type: {selector: "#user", text: "user{{.Session}}"}
  - click: "#login"
  - wait_for: ".room.ready"
  - name: messages
    ws_messages: {count: 10, timeout: 10s}
`), ".")
	if err != nil {
		t.Fatal(err)
	}
	if sc.Sessions != 200 || sc.RampUp != 30*time.Second || sc.Duration != 5*time.Minute || sc.Iterations != 0 || len(sc.Steps) != 5 {
		t.Fatalf("scenario: %+v", sc)
	}
	if got := sc.Steps[2].Name; got != "click #login" {
		t.Errorf("unnamed click step is %q, want click #login", got)
	}
	if text, _ := sc.Steps[1].Render(SessionData{Session: 7}); text != "user7" {
		t.Errorf("type text for session 7: %q", text)
	}
	if sc.Steps[4].Count != 10 || sc.Steps[4].Timeout != 10*time.Second {
		t.Errorf("ws_messages step: %+v", sc.Steps[4])
	}
}

func TestParseDataFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "users.csv"), []byte("user,password\nalice,a1\nbob,b2\n"), 0o644)
	sc, err := Parse(filepath.Join(dir, "s.yaml"), []byte("name: s\ntarget: http://127.0.0.1:1\ndata: users.csv\nsteps:\n  - type: {selector: \"#u\", text: \"{{.Data.user}}\"}\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if text, _ := sc.Steps[0].Render(SessionData{Session: 2, Data: sc.Data[1]}); text != "bob" {
		t.Errorf("data row of session 2: %q", text)
	}
}

// TestParseErrors runs every case in testdata/errors: a scenario, a line
// of dashes, then every error Parse reports for it, one per line, as
// path:line:col: message. UPDATE_TESTDATA=1 rewrites the expectations.
func TestParseErrors(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "errors", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases in testdata/errors: %v", err)
	}
	const sep = "\n-----\n"
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			src, want, ok := strings.Cut(string(b), sep)
			if !ok {
				t.Fatalf("%s has no %q line", file, strings.TrimSpace(sep))
			}
			_, err = Parse("scenario.yaml", []byte(src), filepath.Dir(file))
			if err == nil {
				t.Fatalf("no error for\n%s", src)
			}
			got := err.Error() + "\n"
			if os.Getenv("UPDATE_TESTDATA") != "" {
				if err := os.WriteFile(file, []byte(src+sep+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("errors for %s:\n%s\nwant:\n%s", file, got, want)
			}
		})
	}
}

// TestParseStepNames: unnamed steps are named from their action; a
// repeated action gets a row of its own.
func TestParseStepNames(t *testing.T) {
	sc, err := Parse("s.yaml", []byte(`name: s
target: http://127.0.0.1:1
steps:
  - navigate: /
  - click: "#next"
  - click: "#next"
  - name: "click #back"
    click: "#back"
  - click: "#back"
  - wait_for: {text: "Hello {{.Session}}"}
  - assert: {status: 200}
  - sleep: 1s
  - js: "true"
  - ws_messages: {count: 3}
`), ".")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, st := range sc.Steps {
		got = append(got, st.Name)
	}
	want := []string{"navigate /", "click #next", "click #next (2)", "click #back", "click #back (2)",
		`wait_for text "Hello {{.Session}}"`, "assert status 200", "sleep 1s", "js", "ws_messages 3"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("step names:\n got %q\nwant %q", got, want)
	}
	if sc.Iterations != 1 || sc.Sessions != 1 || sc.Steps[0].Timeout != DefaultStepTimeout {
		t.Errorf("defaults: iterations %d sessions %d timeout %s", sc.Iterations, sc.Sessions, sc.Steps[0].Timeout)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("name: s\ntarget: http://127.0.0.1:1\nsessions: 3\nthink_time: 1s\nsteps:\n  - navigate: /\n  - wait_for: {text: hi}\n  - click: a\n  - click: a\n"))
	f.Add([]byte("name: s\ntarget: http://127.0.0.1:1\niterations: 2\nsteps: [{ws_messages: {count: 2}}, {assert: {status: 200}}]\n"))
	f.Add([]byte("steps:\n  - type: {selector: a, text: '{{.Data.x}}'}\n"))
	f.Add([]byte("&a name: *a\ntarget: !!str http://h\nsteps: [{js: '{{range 3}}x{{end}}'}]\n"))
	for _, file := range must(filepath.Glob(filepath.Join("testdata", "errors", "*.txt"))) {
		if b, err := os.ReadFile(file); err == nil {
			src, _, _ := strings.Cut(string(b), "\n-----\n")
			f.Add([]byte(src))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := Parse("f.yaml", data, t.TempDir())
		if err != nil {
			return
		}
		if sc.Name == "" || sc.Target == nil || len(sc.Steps) == 0 || sc.Sessions < 1 {
			t.Fatalf("accepted an invalid scenario: %+v", sc)
		}
		names := map[string]bool{}
		for _, st := range sc.Steps {
			if st.Name == "" || st.Action == "" || st.Timeout <= 0 || names[st.Name] {
				t.Fatalf("accepted an invalid step: %+v", st)
			}
			names[st.Name] = true
			if _, err := st.Render(SessionData{Session: 1, Data: map[string]string{}}); err != nil {
				t.Fatalf("step %s does not render for session 1: %v", st.Name, err)
			}
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestREADMEScenario checks that the README's example scenario is valid.
func TestREADMEScenario(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n# chat.yaml\n")
	src, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README.md has no ```yaml block starting with # chat.yaml")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "users.csv"), []byte("user\nalice\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sc, err := Parse("README.md", []byte(src), dir)
	if err != nil {
		t.Fatalf("the README's scenario:\n%v", err)
	}
	if len(sc.Steps) < 5 {
		t.Errorf("the README's scenario has %d steps", len(sc.Steps))
	}
}
