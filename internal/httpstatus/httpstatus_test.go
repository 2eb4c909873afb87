package httpstatus

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStatus(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler func(w http.ResponseWriter)
		want    int
	}{
		{"nothing written", func(http.ResponseWriter) {}, 200},
		{"body only", func(w http.ResponseWriter) { io.WriteString(w, "x") }, 200},
		{"explicit", func(w http.ResponseWriter) { w.WriteHeader(404) }, 404},
		{"first code wins", func(w http.ResponseWriter) { w.WriteHeader(503); w.WriteHeader(200) }, 503},
		{"error", func(w http.ResponseWriter) { http.Error(w, "no", 400) }, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sw := Wrap(httptest.NewRecorder())
			tc.handler(sw)
			if got := sw.Status(); got != tc.want {
				t.Errorf("status %d, want %d", got, tc.want)
			}
		})
	}
}

// A file served through the wrapper reaches the connection's ReadFrom (so
// it can use sendfile) and arrives whole; flushing and the response
// controller still work through it.
func TestKeepsConnectionFeatures(t *testing.T) {
	path := filepath.Join(t.TempDir(), "asset")
	content := strings.Repeat("0123456789", 100_000)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	var readFrom, flusher, controller bool
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := Wrap(w)
		_, readFrom = any(sw).(io.ReaderFrom)
		_, flusher = any(sw).(http.Flusher)
		controller = http.NewResponseController(sw).SetWriteDeadline(timeZero()) == nil
		http.ServeFile(sw, r, path)
	}))
	defer ts.Close()
	resp, err := http.Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != content {
		t.Fatalf("body of %d bytes, want %d", len(body), len(content))
	}
	if !readFrom || !flusher || !controller {
		t.Errorf("connection ReaderFrom %v, Flusher %v, ResponseController %v: want all", readFrom, flusher, controller)
	}
}

func timeZero() (t time.Time) { return t }
