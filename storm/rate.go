package storm

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// rateProbeMAC is the machine whose script names the assets the rate is
// measured with; it shows in the inventory as booting.
const rateProbeMAC = "02:bf:ff:ff:ff:fe"

// measureRate downloads the kernel and initrds of a probe machine's script
// over cfg.RateStreams connections for cfg.RateDuration (finishing the
// files under way), with the storm's own client code and no storm.
func measureRate(ctx context.Context, cfg Config, c *http.Client, bufs *sync.Pool) (*Rate, error) {
	m := &machine{s: &storm{cfg: cfg, bufs: bufs}}
	script, err := m.get(ctx, c, cfg.Server+"/ipxe?mac="+rateProbeMAC+"&arch=x86_64&firmware=bios", io.Discard)
	if err != nil {
		return nil, fmt.Errorf("rate: the probe script: %w", err)
	}
	kernel, initrds, _, err := parseIPXE(script)
	if err != nil {
		return nil, fmt.Errorf("rate: %w", err)
	}
	var urls []string
	for _, u := range append([]string{kernel}, initrds...) {
		// Without ?mac=, the downloads are not events on any timeline.
		p, err := url.Parse(u)
		if err != nil {
			return nil, fmt.Errorf("rate: %w", err)
		}
		p.RawQuery = ""
		urls = append(urls, p.String())
	}
	var total atomic.Int64
	var firstErr error
	var once sync.Once
	start := time.Now()
	deadline := start.Add(cfg.RateDuration)
	var wg sync.WaitGroup
	for range cfg.RateStreams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mc := &http.Client{Transport: newTransport(), Timeout: cfg.RequestTimeout}
			defer mc.CloseIdleConnections()
			for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				n, _, err := m.download(ctx, mc, urls[i%len(urls)])
				total.Add(n)
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("rate: %w", firstErr)
	}
	secs := time.Since(start).Seconds()
	return &Rate{Streams: cfg.RateStreams, Bytes: total.Load(), Seconds: secs, BytesPerSec: float64(total.Load()) / secs}, nil
}
