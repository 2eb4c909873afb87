package httpboot

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// readFromRecorder is a ResponseWriter that can take a body with ReadFrom,
// as net/http's own does (it then uses sendfile for files).
type readFromRecorder struct {
	*httptest.ResponseRecorder
	readFrom int
}

func (r *readFromRecorder) ReadFrom(src io.Reader) (int64, error) {
	r.readFrom++
	return io.Copy(r.ResponseRecorder, src)
}

// Asset bodies reach the connection's ReadFrom through the metrics
// wrapper, so that net/http can send files with sendfile(2).
func TestAssetsKeepReadFrom(t *testing.T) {
	f := newFixture(t, nil, nil, Config{})
	w := &readFromRecorder{ResponseRecorder: httptest.NewRecorder()}
	f.srv.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/assets/README.txt", nil))
	if w.Code != 200 || w.readFrom != 1 || !strings.Contains(w.Body.String(), "bootfleet example asset") {
		t.Errorf("status %d, ReadFrom called %d times, body %q", w.Code, w.readFrom, w.Body.String())
	}
	if n := testutil.ToFloat64(f.srv.metrics.requests.WithLabelValues("assets", "200")); n != 1 {
		t.Errorf("assets 200 counted %v times, want 1", n)
	}
}
