package httpboot

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bootfleet/bootfleet/internal/httpstatus"
)

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	render   *prometheus.HistogramVec
	// renderIgnition and renderCloud are render's two series.
	renderIgnition, renderCloud prometheus.Observer
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bootfleet_http_requests_total",
			Help: "Boot-side HTTP requests by endpoint and status code.",
		}, []string{"endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bootfleet_http_request_duration_seconds",
			Help:    "Time to answer boot-side HTTP requests, by endpoint (for assets: until the body is sent).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 5, 30},
		}, []string{"endpoint"}),
		render: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bootfleet_render_duration_seconds",
			Help:    "Time to render a node's config, by kind (ignition, cloud-config); cache hits included.",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05, .25},
		}, []string{"kind"}),
	}
	m.renderIgnition = m.render.WithLabelValues("ignition")
	m.renderCloud = m.render.WithLabelValues("cloud-config")
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.render} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("httpboot metrics: %w", err)
		}
	}
	return m, nil
}

// instrument counts and times requests, and refuses methods other than GET
// and HEAD: the boot side is read-only.
func (s *Server) instrument(endpoint string, h http.Handler) http.Handler {
	// Look the common series up once, not per request.
	ok := s.metrics.requests.WithLabelValues(endpoint, "200")
	duration := s.metrics.duration.WithLabelValues(endpoint)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := httpstatus.Wrap(w)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(rec, "method not allowed: the boot side is read-only (GET, HEAD)", http.StatusMethodNotAllowed)
		} else {
			h.ServeHTTP(rec, r)
		}
		if status := rec.Status(); status == http.StatusOK {
			ok.Inc()
		} else {
			s.metrics.requests.WithLabelValues(endpoint, strconv.Itoa(status)).Inc()
		}
		duration.Observe(time.Since(start).Seconds())
	})
}
