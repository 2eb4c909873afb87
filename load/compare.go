package load

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"
)

// StepDiff compares one step across two reports: A is the baseline, B the
// run compared with it. InA/InB say whether the step ran in each.
type StepDiff struct {
	Name     string     `json:"name"`
	InA, InB bool       `json:"-"`
	A        StepReport `json:"a"`
	B        StepReport `json:"b"`
}

// Compare pairs the steps of two reports by name: A's steps in order, then
// those only B has, then the totals.
func Compare(a, b Report) []StepDiff {
	as, bs := a.StepsByName(), b.StepsByName()
	var out []StepDiff
	for _, s := range a.Steps {
		d := StepDiff{Name: s.Name, InA: true, A: s}
		d.B, d.InB = bs[s.Name]
		out = append(out, d)
	}
	for _, s := range b.Steps {
		if _, inA := as[s.Name]; !inA {
			out = append(out, StepDiff{Name: s.Name, InB: true, B: s})
		}
	}
	return append(out, StepDiff{Name: "total", InA: true, InB: true, A: a.Total, B: b.Total})
}

// delta writes b−a with its percentage of a ("+12.5 (+8.3%)").
func delta(a, b float64, integer bool) string {
	d := b - a
	num := fmt.Sprintf("%+.1f", d)
	if integer {
		num = fmt.Sprintf("%+d", int64(math.Round(d)))
	}
	if a == 0 {
		if d == 0 {
			return num
		}
		return num + " (new)"
	}
	return fmt.Sprintf("%s (%+.1f%%)", num, d/a*100)
}

// WriteComparison writes the per-step differences as a table: counts,
// failures, and p50/p95/p99 latency in ms, each A, B and B−A (with %).
func WriteComparison(w io.Writer, nameA, nameB string, a, b Report) error {
	fmt.Fprintf(w, "A: %s (%s, %s, %.1f s)\nB: %s (%s, %s, %.1f s)\n\n", nameA, a.Scenario, a.Started.Format("2006-01-02 15:04:05"), a.DurationS,
		nameB, b.Scenario, b.Started.Format("2006-01-02 15:04:05"), b.DurationS)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "STEP\tCOUNT A\tCOUNT B\tΔ COUNT\tFAIL A\tFAIL B\tΔ FAIL\tP50 A\tP50 B\tΔ P50\tP95 A\tP95 B\tΔ P95\tP99 A\tP99 B\tΔ P99\t")
	var only []string
	for _, d := range Compare(a, b) {
		if !d.InA || !d.InB {
			side, s := "B", d.B
			if d.InA {
				side, s = "A", d.A
			}
			only = append(only, fmt.Sprintf("step %q only in %s: %d runs, %d failed, p50 %.1f, p95 %.1f, p99 %.1f ms\n",
				d.Name, side, s.Count, s.Failures, s.P50Ms, s.P95Ms, s.P99Ms))
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%d\t%s\t%.1f\t%.1f\t%s\t%.1f\t%.1f\t%s\t%.1f\t%.1f\t%s\t\n", d.Name,
			d.A.Count, d.B.Count, delta(float64(d.A.Count), float64(d.B.Count), true),
			d.A.Failures, d.B.Failures, delta(float64(d.A.Failures), float64(d.B.Failures), true),
			d.A.P50Ms, d.B.P50Ms, delta(d.A.P50Ms, d.B.P50Ms, false),
			d.A.P95Ms, d.B.P95Ms, delta(d.A.P95Ms, d.B.P95Ms, false),
			d.A.P99Ms, d.B.P99Ms, delta(d.A.P99Ms, d.B.P99Ms, false))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, l := range only {
		if _, err := io.WriteString(w, l); err != nil {
			return err
		}
	}
	return nil
}
