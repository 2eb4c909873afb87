// Package ui serves bootfleet's web dashboard under /ui/: static assets
// embedded in the binary (plain ES modules, no build step) that call the
// /api/v1 routes. Everything except the login page needs the admin token,
// which the login form sets as an HttpOnly, SameSite=Strict cookie
// (api.AdminCookie) that the API accepts in place of a bearer token.
package ui

import (
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"strings"

	"github.com/bootfleet/bootfleet/api"
)

//go:embed static
var static embed.FS

// Handler serves the dashboard at /ui/.
type Handler struct {
	token  string
	assets http.Handler
}

// New returns the dashboard handler for the admin token.
func New(adminToken string) (*Handler, error) {
	if adminToken == "" {
		return nil, errors.New("ui: empty admin token")
	}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	return &Handler{token: adminToken, assets: http.StripPrefix("/ui/", http.FileServerFS(sub))}, nil
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bootfleet — log in</title>
<link rel="stylesheet" href="/ui/style.css"></head>
<body class="login"><form method="post" action="/ui/login">
<h1>bootfleet</h1>
{{if .}}<p class="error">{{.}}</p>{{end}}
<label>Admin token <input type="password" name="token" autofocus autocomplete="current-password"></label>
<button type="submit">Log in</button>
<p class="hint">The token is in the server's data dir (admin.token).</p>
</form></body></html>`))

// ServeHTTP serves /ui/login, /ui/logout and, for the admin, the assets.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:")
	switch {
	case r.URL.Path == "/ui/login" || r.URL.Path == "/ui/style.css":
		if r.URL.Path == "/ui/style.css" {
			h.assets.ServeHTTP(w, r)
			return
		}
		h.login(w, r)
		return
	case r.URL.Path == "/ui/logout":
		if r.Method != http.MethodPost {
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		http.SetCookie(w, h.cookie("", -1))
		http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
		return
	}
	if !api.IsAdmin(r, h.token) {
		if r.Method == http.MethodGet && (r.URL.Path == "/ui/" || r.URL.Path == "/ui") {
			http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
			return
		}
		http.Error(w, "admin token required: log in at /ui/login", http.StatusUnauthorized)
		return
	}
	if r.URL.Path == "/ui" {
		http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	h.assets.ServeHTTP(w, r)
}

func (h *Handler) cookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: api.AdminCookie, Value: value, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: maxAge}
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	switch r.Method {
	case http.MethodGet:
		_ = loginPage.Execute(w, "")
	case http.MethodPost:
		if err := r.ParseForm(); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_ = loginPage.Execute(w, "bad form")
			return
		}
		token := strings.TrimSpace(r.PostForm.Get("token"))
		probe := &http.Request{Header: http.Header{"Authorization": {"Bearer " + token}}}
		if !api.IsAdmin(probe, h.token) {
			w.WriteHeader(http.StatusUnauthorized)
			_ = loginPage.Execute(w, "wrong token")
			return
		}
		c := h.cookie(token, 0)
		c.Secure = r.TLS != nil
		http.SetCookie(w, c)
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
	default:
		http.Error(w, "use GET or POST", http.StatusMethodNotAllowed)
	}
}
