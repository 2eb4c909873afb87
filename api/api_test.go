package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/bootfleet/bootfleet/registry"
)

func freeURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String()
}

func newAPI(t *testing.T) (*httptest.Server, *registry.Registry) {
	t.Helper()
	return newAPIWith(t, nil)
}

// newAPIWith is newAPI with the API's metrics going to metrics (nil: its own).
func newAPIWith(t *testing.T, metrics prometheus.Registerer) (*httptest.Server, *registry.Registry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := registry.StartEmbedded(ctx, registry.EmbeddedConfig{Dir: t.TempDir(), ListenClient: freeURL(t), ListenPeer: freeURL(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	reg, err := registry.New(registry.Config{Client: cli, Server: "test"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Registry: reg, AdminToken: "secret", Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts, reg
}

func call(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

func TestNodesAPI(t *testing.T) {
	ts, reg := newAPI(t)
	ctx := context.Background()
	if _, err := reg.Observe(ctx, registry.Observation{MAC: "52:54:00:aa:00:01", IP: "10.77.0.100", Group: "g", Profile: "p", Event: registry.Event{Event: "dhcp.ack", Detail: "10.77.0.100"}}); err != nil {
		t.Fatal(err)
	}

	// Every route refuses without the right token.
	for _, rt := range []struct{ method, path string }{
		{"GET", "/api/v1/nodes"}, {"GET", "/api/v1/nodes/52:54:00:aa:00:01"}, {"DELETE", "/api/v1/nodes/52:54:00:aa:00:01"},
		{"PATCH", "/api/v1/nodes/52:54:00:aa:00:01/labels"}, {"PUT", "/api/v1/nodes/52:54:00:aa:00:01/next-boot"},
	} {
		for _, tok := range []string{"", "wrong"} {
			if code, _ := call(t, rt.method, ts.URL+rt.path, tok, "{}"); code != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d, want 401", rt.method, rt.path, tok, code)
			}
		}
	}

	code, body := call(t, "GET", ts.URL+"/api/v1/nodes", "secret", "")
	var nodes []map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &nodes) != nil || len(nodes) != 1 {
		t.Fatalf("list: %d %s", code, body)
	}
	for _, k := range []string{"mac", "ip", "state", "group", "profile"} {
		if _, ok := nodes[0][k]; !ok {
			t.Errorf("list entry lacks %q: %v", k, nodes[0])
		}
	}

	code, body = call(t, "GET", ts.URL+"/api/v1/nodes/52-54-00-AA-00-01", "secret", "")
	var node struct {
		MAC      string
		Timeline []struct{ Time, Event, Detail string }
	}
	if code != 200 || json.Unmarshal([]byte(body), &node) != nil || len(node.Timeline) != 1 || node.Timeline[0].Event != "dhcp.ack" {
		t.Fatalf("show: %d %s", code, body)
	}

	if code, body := call(t, "PATCH", ts.URL+"/api/v1/nodes/525400aa0001/labels", "secret", `{"set":{"rack":"a"}}`); code != 200 || !strings.Contains(body, `"rack": "a"`) {
		t.Errorf("label: %d %s", code, body)
	}
	for _, bad := range []string{`{"set":{"mac":"x"}}`, `{"set":{"a b":"x"}}`, `{"sett":{}}`, `not json`} {
		if code, _ := call(t, "PATCH", ts.URL+"/api/v1/nodes/525400aa0001/labels", "secret", bad); code != http.StatusBadRequest {
			t.Errorf("label with %s: %d, want 400", bad, code)
		}
	}
	if code, _ := call(t, "GET", ts.URL+"/api/v1/nodes/zz", "secret", ""); code != http.StatusBadRequest {
		t.Errorf("bad MAC: %d, want 400", code)
	}
	if code, _ := call(t, "GET", ts.URL+"/api/v1/nodes/52:54:00:aa:00:09", "secret", ""); code != http.StatusNotFound {
		t.Errorf("unknown node: %d, want 404", code)
	}
	if code, _ := call(t, "DELETE", ts.URL+"/api/v1/nodes/52:54:00:aa:00:01", "secret", ""); code != http.StatusNoContent {
		t.Errorf("forget: %d, want 204", code)
	}
	if code, _ := call(t, "DELETE", ts.URL+"/api/v1/nodes/52:54:00:aa:00:01", "secret", ""); code != http.StatusNotFound {
		t.Errorf("forget again: %d, want 404", code)
	}
}

func TestWatchNodes(t *testing.T) {
	ts, reg := newAPI(t)
	ctx := context.Background()
	reg.Observe(ctx, registry.Observation{MAC: "52:54:00:aa:00:01"})
	req, _ := http.NewRequest("GET", ts.URL+"/api/v1/nodes?watch=1", nil)
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() registry.Change {
		select {
		case l := <-lines:
			var c registry.Change
			if err := json.Unmarshal([]byte(l), &c); err != nil {
				t.Fatalf("bad line %q: %v", l, err)
			}
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("no change within 10s")
		}
		return registry.Change{}
	}
	if c := next(); c.Node.MAC != "52:54:00:aa:00:01" {
		t.Fatalf("first line %+v, want the existing node", c)
	}
	reg.Observe(ctx, registry.Observation{MAC: "52:54:00:aa:00:02", State: registry.StateBooting})
	if c := next(); c.Node.MAC != "52:54:00:aa:00:02" || c.Node.State != registry.StateBooting {
		t.Fatalf("change %+v, want node 02 booting", c)
	}
}

// Every call is counted by route and status and timed, so an operator sees
// a storm of agent joins on /metrics; unknown calls count as "other".
func TestAPIMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	ts, _ := newAPIWith(t, reg)
	call(t, "GET", ts.URL+"/api/v1/nodes", "secret", "")
	call(t, "GET", ts.URL+"/api/v1/nodes", "wrong", "")
	call(t, "GET", ts.URL+"/api/v1/nodes/52:54:00:aa:00:01", "secret", "")
	call(t, "GET", ts.URL+"/api/v1/nope", "secret", "")
	want := `
# HELP bootfleet_api_requests_total API calls by method, route (e.g. /api/v1/agent/{mac}/join) and status code.
# TYPE bootfleet_api_requests_total counter
bootfleet_api_requests_total{code="200",method="GET",route="/api/v1/nodes"} 1
bootfleet_api_requests_total{code="401",method="GET",route="/api/v1/nodes"} 1
bootfleet_api_requests_total{code="404",method="GET",route="/api/v1/nodes/{mac}"} 1
bootfleet_api_requests_total{code="404",method="GET",route="other"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "bootfleet_api_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "bootfleet_api_request_duration_seconds"); n != 3 {
		t.Errorf("%d duration series, want 3 (one per route)", n)
	}
}
