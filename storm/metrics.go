package storm

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// MetricLine is one bootfleet_ series of the server's /metrics, as the
// difference between two scrapes: a counter's increase, or a histogram's
// new observations with quantiles interpolated from its buckets.
type MetricLine struct {
	Name      string  `json:"name"` // name{labels}
	Histogram bool    `json:"histogram,omitempty"`
	Count     float64 `json:"count"`
	P50       float64 `json:"p50_seconds,omitempty"`
	P99       float64 `json:"p99_seconds,omitempty"`
	// P99Above says the p99 is beyond the highest finite bucket, whose
	// bound P99 then holds.
	P99Above bool `json:"p99_above_top_bucket,omitempty"`
}

// scrape reads the server's /metrics.
func scrape(ctx context.Context, c *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return fams, nil
}

func seriesName(name string, m *dto.Metric) string {
	var labels []string
	for _, l := range m.GetLabel() {
		labels = append(labels, l.GetName()+"="+l.GetValue())
	}
	if len(labels) == 0 {
		return name
	}
	return name + "{" + strings.Join(labels, ",") + "}"
}

// diffMetrics returns every bootfleet_ counter and histogram series that
// moved between before and after.
func diffMetrics(before, after map[string]*dto.MetricFamily) []MetricLine {
	old := map[string]*dto.Metric{}
	for name, f := range before {
		for _, m := range f.GetMetric() {
			old[seriesName(name, m)] = m
		}
	}
	var out []MetricLine
	for name, f := range after {
		if !strings.HasPrefix(name, "bootfleet_") {
			continue
		}
		for _, m := range f.GetMetric() {
			key := seriesName(name, m)
			prev := old[key]
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				d := m.GetCounter().GetValue() - prev.GetCounter().GetValue()
				if d > 0 {
					out = append(out, MetricLine{Name: key, Count: d})
				}
			case dto.MetricType_HISTOGRAM:
				h, ph := m.GetHistogram(), prev.GetHistogram()
				n := float64(h.GetSampleCount()) - float64(ph.GetSampleCount())
				if n <= 0 {
					continue
				}
				var bounds, counts []float64
				for i, b := range h.GetBucket() {
					c := float64(b.GetCumulativeCount())
					if i < len(ph.GetBucket()) {
						c -= float64(ph.GetBucket()[i].GetCumulativeCount())
					}
					bounds = append(bounds, b.GetUpperBound())
					counts = append(counts, c)
				}
				l := MetricLine{Name: key, Histogram: true, Count: n,
					P50: bucketQuantile(0.50, n, bounds, counts), P99: bucketQuantile(0.99, n, bounds, counts)}
				// Above the highest finite bound, say so (JSON has no +Inf).
				if top := topFinite(bounds); l.P99 > top {
					l.P99, l.P99Above = top, true
				}
				l.P50 = min(l.P50, topFinite(bounds))
				out = append(out, l)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// bucketQuantile interpolates a quantile linearly inside its bucket, as
// Prometheus' histogram_quantile does.
func bucketQuantile(q, total float64, bounds, cumulative []float64) float64 {
	rank := q * total
	i := slices.IndexFunc(cumulative, func(c float64) bool { return c >= rank })
	if i < 0 {
		if len(bounds) == 0 {
			return 0
		}
		return bounds[len(bounds)-1] // above the highest bucket
	}
	lower, below := 0.0, 0.0
	if i > 0 {
		lower, below = bounds[i-1], cumulative[i-1]
	}
	inBucket := cumulative[i] - below
	if inBucket <= 0 {
		return bounds[i]
	}
	return lower + (bounds[i]-lower)*(rank-below)/inBucket
}

func topFinite(bounds []float64) float64 {
	for i := len(bounds) - 1; i >= 0; i-- {
		if !math.IsInf(bounds[i], 1) {
			return bounds[i]
		}
	}
	return 0
}
