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
	sc, err := Parse(filepath.Join(dir, "s.yaml"), []byte("name: s\ntarget: http://x\ndata: users.csv\nsteps:\n  - type: {selector: \"#u\", text: \"{{.Data.user}}\"}\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if text, _ := sc.Steps[0].Render(SessionData{Session: 2, Data: sc.Data[1]}); text != "bob" {
		t.Errorf("data row of session 2: %q", text)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"unknown key", "name: s\ntarget: http://x\nsesions: 2\nsteps: [{navigate: /}]\n", []string{"s.yaml:3:1: ", `unknown field "sesions"`}},
		{"unknown step key", "name: s\ntarget: http://x\nsteps:\n  - navigate: /\n    klick: a\n", []string{"s.yaml:5:5: ", `unknown field "klick"`}},
		{"no action", "name: s\ntarget: http://x\nsteps:\n  - name: nothing\n", []string{"s.yaml:4:5: step 1 has no action"}},
		{"two actions", "name: s\ntarget: http://x\nsteps:\n  - navigate: /\n    click: a\n", []string{"s.yaml:4:5: step has 2 actions"}},
		{"bad duration", "name: s\ntarget: http://x\nduration: forever\nsteps: [{navigate: /}]\n", []string{`s.yaml:3:11: duration "forever"`}},
		{"bad target", "name: s\ntarget: ftp://x\nsteps: [{navigate: /}]\n", []string{`s.yaml:2:9: target "ftp://x"`}},
		{"both duration and iterations", "name: s\ntarget: http://x\nduration: 1m\niterations: 3\nsteps: [{navigate: /}]\n", []string{"s.yaml:4:13: duration and iterations"}},
		{"bad template", "name: s\ntarget: http://x\nsteps:\n  - type: {selector: a, text: \"{{.Session\"}\n", []string{"s.yaml:4:12: type: "}},
		{"ws count", "name: s\ntarget: http://x\nsteps:\n  - ws_messages: {count: 0}\n", []string{"s.yaml:4:19: ws_messages: count must be at least 1"}},
		{"duplicate names", "name: s\ntarget: http://x\nsteps:\n  - {name: a, navigate: /}\n  - {name: a, click: b}\n", []string{`step name "a" is used by step 1 too`}},
		{"every error", "target: ftp://x\nsessions: 0\nsteps: []\n", []string{"s.yaml:1:1: the scenario has no name", `target "ftp://x"`, "sessions: 0", "no steps"}},
		{"missing data", "name: s\ntarget: http://x\ndata: nope.csv\nsteps: [{navigate: /}]\n", []string{"s.yaml:3:7: data: "}},
		{"empty", "", []string{"s.yaml: the file is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("s.yaml", []byte(tc.src), t.TempDir())
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("name: s\ntarget: http://x\nsteps:\n  - navigate: /\n  - wait_for: {text: hi}\n"))
	f.Add([]byte("name: s\ntarget: http://x\niterations: 2\nsteps: [{ws_messages: {count: 2}}, {assert: {status: 200}}]\n"))
	f.Add([]byte("steps:\n  - type: {selector: a, text: '{{.Data.x}}'}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := Parse("f.yaml", data, t.TempDir())
		if err != nil {
			return
		}
		if sc.Name == "" || sc.Target == nil || len(sc.Steps) == 0 || sc.Sessions < 1 {
			t.Fatalf("accepted an invalid scenario: %+v", sc)
		}
		for _, st := range sc.Steps {
			if st.Name == "" || st.Action == "" || st.Timeout <= 0 {
				t.Fatalf("accepted an invalid step: %+v", st)
			}
		}
	})
}
