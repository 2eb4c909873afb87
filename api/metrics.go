package api

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bootfleet/bootfleet/internal/httpstatus"
)

// metrics count and time API calls by route: the agents' joins and
// heartbeats above all, which a boot storm brings all at once.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bootfleet_api_requests_total",
			Help: "API calls by method, route (e.g. /api/v1/agent/{mac}/join) and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bootfleet_api_request_duration_seconds",
			Help:    "Time to answer API calls, by method and route (long polls for orders included).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60},
		}, []string{"method", "route"}),
	}
	for i, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			if i > 0 {
				reg.Unregister(m.requests)
			}
			return nil, fmt.Errorf("api metrics: %w", err)
		}
	}
	return m, nil
}

// instrument counts and times every call to mux by the route it matched;
// calls that matched no route count as route "other".
func (m *metrics) instrument(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := httpstatus.Wrap(w)
		mux.ServeHTTP(sw, r)
		route := r.Pattern // set by the mux on this request
		if _, path, ok := strings.Cut(route, " "); ok {
			route = path
		}
		if route == "" || route == "/api/" {
			route = "other"
		}
		m.requests.WithLabelValues(r.Method, route, strconv.Itoa(sw.Status())).Inc()
		m.duration.WithLabelValues(r.Method, route).Observe(time.Since(start).Seconds())
	})
}
