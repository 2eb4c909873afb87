package registry

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkRecorderWriteRate: boot events of many nodes (four steps each,
// as DHCP DISCOVER/OFFER/REQUEST/ACK arrive) through the Recorder into a
// real embedded etcd, until every one is written. Reports events/s.
func BenchmarkRecorderWriteRate(b *testing.B) {
	var c cluster
	startEtcd(b, &c)
	r := newRegistry(b, c.etcd.Endpoints(), "bench")
	rec := NewRecorder(r, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rec.Run(ctx)
	steps := []string{"dhcp.discover", "dhcp.offer", "dhcp.request", "dhcp.ack"}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		mac := fmt.Sprintf("02:bf:%02x:%02x:%02x:%02x", byte(i>>24), byte(i>>16), byte(i>>8), byte(i))
		for _, s := range steps {
			for !rec.Record(Observation{MAC: mac, Event: Event{Event: s, Detail: "10.0.0.1"}}) {
				time.Sleep(time.Millisecond) // queue full: the writer is behind
			}
		}
	}
	fctx, fcancel := context.WithTimeout(ctx, 5*time.Minute)
	defer fcancel()
	if err := rec.Flush(fctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N*len(steps))/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "nodes/s")
}
