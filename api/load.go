package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/bootfleet/bootfleet/loadjob"
)

// loadRoutes adds distributed load jobs: the operator's calls (admin
// token) and the workers' (the job's own token, for that job only).
func (s *Server) loadRoutes(mux *http.ServeMux) {
	if s.load == nil {
		return
	}
	mux.HandleFunc("POST /api/v1/load/jobs", s.admin(s.startLoadJob))
	mux.HandleFunc("GET /api/v1/load/jobs", s.admin(s.listLoadJobs))
	mux.HandleFunc("GET /api/v1/load/jobs/{id}", s.admin(s.loadJobStatus))
	mux.HandleFunc("POST /api/v1/load/jobs/{id}/stop", s.admin(s.stopLoadJob))
	mux.HandleFunc("GET /api/v1/load/jobs/{id}/report", s.admin(s.loadJobReport))
	mux.HandleFunc("GET /api/v1/load/reports", s.admin(s.listLoadReports))

	mux.HandleFunc("GET /api/v1/load/jobs/{id}/workers/{n}/share", s.loadWorker(s.claimLoadShare))
	mux.HandleFunc("POST /api/v1/load/jobs/{id}/workers/{n}", s.loadWorker(s.updateLoadWorker))
}

// loadWorker hands a worker call its job, worker number and job token.
func (s *Server) loadWorker(h func(w http.ResponseWriter, r *http.Request, id string, n int, token string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n, err := loadjob.ParseWorker(r.PathValue("n"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		h(w, r, r.PathValue("id"), n, token)
	}
}

func (s *Server) startLoadJob(w http.ResponseWriter, r *http.Request) {
	var req loadjob.Request
	dec := http.MaxBytesReader(w, r.Body, 10<<20)
	r.Body = dec
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Server == "" && !s.load.HasPublicURL() {
		// Without a public URL, workers use the address the operator did.
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		req.Server = scheme + "://" + r.Host
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	j, err := s.load.Start(ctx, req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, j.Public())
}

func (s *Server) listLoadJobs(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	jobs, err := s.load.Jobs(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for i := range jobs {
		jobs[i] = jobs[i].Public()
	}
	writeJSON(w, http.StatusOK, jobs)
}

func (s *Server) loadJobStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	id := r.PathValue("id")
	j, err := s.load.Job(ctx, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ws, err := s.load.Workers(ctx, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	st, err := loadjob.JobStatus(j, ws, time.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) stopLoadJob(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	j, err := s.load.Stop(ctx, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, j.Public())
}

func (s *Server) loadJobReport(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	rep, err := s.load.Report(ctx, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) listLoadReports(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	list, err := s.load.Reports(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) claimLoadShare(w http.ResponseWriter, r *http.Request, id string, n int, token string) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	q := r.URL.Query()
	sh, err := s.load.Claim(ctx, id, n, token, q.Get("instance"), q.Get("node"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sh)
}

func (s *Server) updateLoadWorker(w http.ResponseWriter, r *http.Request, id string, n int, token string) {
	var up loadjob.Update
	r.Body = http.MaxBytesReader(w, r.Body, 4<<20)
	if err := decodeBody(r, &up); err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	ans, err := s.load.Update(ctx, id, n, token, up)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}
