package ui

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/bootfleet/bootfleet/api"
	"github.com/bootfleet/bootfleet/internal/etcdtest"
	"github.com/bootfleet/bootfleet/registry"
)

const token = "s3cret-token"

// newServer serves the API and the dashboard as `bootfleet serve` does.
func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	cli := etcdtest.Client(t)
	reg, err := registry.New(registry.Config{Client: cli, Server: "test"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := api.New(api.Config{Registry: reg, AdminToken: token})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(token)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", a.Handler())
	mux.Handle("/ui/", d)
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func do(t *testing.T, method, u string, cookie *http.Cookie, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// login posts the token to the login form and returns the cookie it sets.
func login(t *testing.T, base, tok string) (*http.Response, *http.Cookie) {
	t.Helper()
	resp, err := noRedirect.PostForm(base+"/ui/login", url.Values{"token": {tok}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == api.AdminCookie {
			return resp, c
		}
	}
	return resp, nil
}

func TestLoginSetsStrictHttpOnlyCookie(t *testing.T) {
	ts := newServer(t)
	resp, c := login(t, ts.URL, "wrong")
	if resp.StatusCode != http.StatusUnauthorized || c != nil {
		t.Fatalf("wrong token: status %d, cookie %v; want 401 and none", resp.StatusCode, c)
	}
	resp, c = login(t, ts.URL, token)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("login: status %d to %q; want 303 to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Value != token {
		t.Fatalf("login cookie %+v: want HttpOnly, SameSite=Strict, the token", c)
	}
	if r := do(t, "GET", ts.URL+"/api/v1/nodes", c, ""); r.StatusCode != http.StatusOK {
		t.Errorf("API with the login cookie: %d, want 200", r.StatusCode)
	}
	resp = do(t, "POST", ts.URL+"/ui/logout", c, "")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	var cleared bool
	for _, k := range resp.Cookies() {
		cleared = cleared || (k.Name == api.AdminCookie && k.MaxAge < 0)
	}
	if !cleared {
		t.Error("logout does not clear the cookie")
	}
}

// TestRoutesRefuseWithoutToken checks every dashboard asset and every API
// route that changes or reveals configuration, without credentials, with a
// wrong cookie and with the right one.
func TestRoutesRefuseWithoutToken(t *testing.T) {
	ts := newServer(t)
	_, good := login(t, ts.URL, token)
	bad := &http.Cookie{Name: api.AdminCookie, Value: "nope"}
	routes := []struct {
		method, path, body string
		okStatus           int // with the token: anything but 401 is fine when 0
	}{
		{"GET", "/ui/", "", 200},
		{"GET", "/ui/index.html", "", 0},
		{"GET", "/ui/app.js", "", 200},
		{"GET", "/ui/nodes.js", "", 200},
		{"GET", "/ui/node.js", "", 200},
		{"GET", "/ui/units.js", "", 200},
		{"GET", "/ui/dom.js", "", 200},
		{"GET", "/ui/load.js", "", 200},
		{"GET", "/api/v1/nodes", "", 200},
		{"GET", "/api/v1/nodes/52:54:00:00:00:01", "", 404},
		{"DELETE", "/api/v1/nodes/52:54:00:00:00:01", "", 0},
		{"PATCH", "/api/v1/nodes/52:54:00:00:00:01/labels", `{"set":{"a":"b"}}`, 0},
		{"PUT", "/api/v1/nodes/52:54:00:00:00:01/next-boot", `{"profile":"x"}`, 0},
		{"GET", "/api/v1/leases", "", 200},
	}
	for _, r := range routes {
		t.Run(r.method+r.path, func(t *testing.T) {
			for name, c := range map[string]*http.Cookie{"none": nil, "wrong": bad} {
				resp := do(t, r.method, ts.URL+r.path, c, r.body)
				refused := resp.StatusCode == http.StatusUnauthorized ||
					(resp.StatusCode == http.StatusSeeOther && resp.Header.Get("Location") == "/ui/login")
				if !refused {
					t.Errorf("%s cookie: status %d, want refused (401 or redirect to login)", name, resp.StatusCode)
				}
			}
			resp := do(t, r.method, ts.URL+r.path, good, r.body)
			if resp.StatusCode == http.StatusUnauthorized || (r.okStatus != 0 && resp.StatusCode != r.okStatus) {
				t.Errorf("with token: status %d, want %d", resp.StatusCode, r.okStatus)
			}
		})
	}
	// The login page and its stylesheet are public.
	for _, p := range []string{"/ui/login", "/ui/style.css"} {
		if resp := do(t, "GET", ts.URL+p, nil, ""); resp.StatusCode != 200 {
			t.Errorf("GET %s without token: %d, want 200", p, resp.StatusCode)
		}
	}
}
