package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Browsers the runner can drive (Debian's packages).
const (
	HeadlessShell = "/usr/lib/chromium/chromium-headless-shell" // chromium-headless-shell: a third of the memory per session
	Chromium      = "/usr/bin/chromium"
)

// Options tune a run.
type Options struct {
	// Browser is the executable; default HeadlessShell when installed,
	// else Chromium.
	Browser string
	// Sessions overrides the scenario's sessions when > 0.
	Sessions int
	// SessionsPerBrowser is how many sessions share one browser process,
	// each in its own browser context (cookies, storage, cache apart);
	// default 10. More browsers start as sessions grow.
	SessionsPerBrowser int
	// Out receives screenshots of failed steps (when the scenario asks).
	Out string
	// SessionOffset numbers this runner's sessions from offset+1 (a worker
	// of a distributed run).
	SessionOffset int
	// TempDir holds the browsers' fresh user data directories; default
	// os.TempDir().
	TempDir string
	Log     *slog.Logger
	// Started, if set, receives the run's aggregate as the run starts (a
	// distributed worker streams it while the run goes on).
	Started func(*Aggregate)
}

// FindBrowser returns the browser to use: the given path, else
// chromium-headless-shell, else chromium.
func FindBrowser(path string) (string, error) {
	switch path {
	case "", "headless-shell":
		if _, err := os.Stat(HeadlessShell); err == nil {
			return HeadlessShell, nil
		}
		if path == "headless-shell" {
			return "", errors.New("load: chromium-headless-shell is not installed (Debian package chromium-headless-shell)")
		}
		path = Chromium
	case "chromium":
		path = Chromium
	}
	if _, err := exec.LookPath(path); err != nil {
		return "", fmt.Errorf("load: browser %s: %w (install Debian's chromium-headless-shell or chromium)", path, err)
	}
	return path, nil
}

// browserFlags are the flags every browser runs with here: headless, no
// sandbox (root), and none of the background traffic that a closed
// network refuses (../shared/LAB.md).
func browserFlags(exe, userDataDir string, bo BrowserOptions) []chromedp.ExecAllocatorOption {
	flags := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(userDataDir),
		chromedp.NoSandbox,
		chromedp.Headless,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("mute-audio", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	return append(flags, leanFlags(bo)...)
}

// leanFlags are the flags of a scenario's lean-rendering options
// (BrowserOptions.Effects says what they change).
func leanFlags(bo BrowserOptions) []chromedp.ExecAllocatorOption {
	var flags []chromedp.ExecAllocatorOption
	if bo.Lean {
		flags = append(flags,
			chromedp.WindowSize(400, 300),
			chromedp.Flag("disable-threaded-animation", true),
			chromedp.Flag("disable-threaded-scrolling", true),
			chromedp.Flag("disable-checker-imaging", true),
			chromedp.Flag("disable-smooth-scrolling", true),
			chromedp.Flag("disable-lcd-text", true),
			chromedp.Flag("disable-image-animation-resync", true),
		)
	}
	if bo.RendererProcesses > 0 {
		flags = append(flags, chromedp.Flag("renderer-process-limit", strconv.Itoa(bo.RendererProcesses)))
	}
	return flags
}

// blockTypes maps the scenario's blockable names to DevTools resource
// types.
var blockTypes = map[string]network.ResourceType{
	"images":      network.ResourceTypeImage,
	"fonts":       network.ResourceTypeFont,
	"media":       network.ResourceTypeMedia,
	"stylesheets": network.ResourceTypeStylesheet,
}

// browser is one browser process and the sessions it hosts. It runs in a
// process group of its own, so that closing it ends every process it
// started (zygote, renderers, network service), not only the first.
type browser struct {
	ctx    context.Context
	cancel context.CancelFunc
	cmd    *exec.Cmd
	dir    string
}

// startBrowser starts a browser with a fresh user data directory under
// tmp; ctx bounds only the start.
func startBrowser(ctx context.Context, exe, tmp string, bo BrowserOptions) (*browser, error) {
	dir, err := os.MkdirTemp(tmp, "bootfleet-browser-")
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	b := &browser{dir: dir}
	opts := append(browserFlags(exe, dir, bo), chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
		b.cmd = cmd
		// Its own process group, killed with the runner (Pdeathsig) or
		// by close.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}))
	// The browser lives until close, not as long as ctx.
	actx, acancel := chromedp.NewExecAllocator(context.WithoutCancel(ctx), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	b.ctx, b.cancel = bctx, func() { bcancel(); acancel() }
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(bctx) }()
	select {
	case err = <-started:
	case <-ctx.Done():
		b.cancel()
		// chromedp reads the browser's stderr until it closes, and the
		// browser's children hold it open: end the whole group.
		// Bounded: a start that still has not returned after that is
		// left behind rather than holding up the end of the run.
		giveUp := time.After(10 * time.Second)
		for waiting := true; waiting; {
			killGroupsUsing(dir)
			select {
			case <-started: // and so b.cmd is set, or never will be
				waiting = false
			case <-giveUp:
				slog.Warn("load: a browser start did not end after the run ended", "dir", dir)
				return nil, fmt.Errorf("load: start %s: %w", exe, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
		err = ctx.Err()
	}
	if err != nil {
		b.close()
		return nil, fmt.Errorf("load: start %s: %w", exe, err)
	}
	return b, nil
}

// killGroupsUsing kills every process whose command line names dir (a
// browser's user data directory), and the whole group of those that lead
// one.
func killGroupsUsing(dir string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(b), dir) {
			continue
		}
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		// A helper in a group or session of its own (crashpad) too.
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// close ends the browser and every process of its group, and removes its
// user data directory.
func (b *browser) close() {
	b.cancel()
	if b.cmd != nil && b.cmd.Process != nil {
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	}
	_ = os.RemoveAll(b.dir)
}

// slot is the place of one browser process among a run's; a browser that
// died is replaced when the next session asks for it.
type slot struct {
	mu sync.Mutex
	b  *browser
}

func (s *slot) get(ctx context.Context, exe, tmp string, bo BrowserOptions, log *slog.Logger, i int) (*browser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b != nil && s.b.ctx.Err() == nil {
		return s.b, nil
	}
	if s.b != nil {
		log.Warn("browser died; starting another", "browser", i)
		s.b.close()
		s.b = nil
	}
	b, err := startBrowser(ctx, exe, tmp, bo)
	if err != nil {
		return nil, err
	}
	log.Info("browser started", "browser", i, "exe", exe, "pid", b.cmd.Process.Pid)
	s.b = b
	return b, nil
}

func (s *slot) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b != nil {
		s.b.close()
		s.b = nil
	}
}

// Run runs the scenario until its duration (or iterations) is done or ctx
// ends, and returns what it measured. progress, if set, is called about
// once a second.
func Run(ctx context.Context, sc *Scenario, opts Options, progress func(Live)) (*Aggregate, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.SessionsPerBrowser <= 0 {
		opts.SessionsPerBrowser = 10
	}
	exe, err := FindBrowser(opts.Browser)
	if err != nil {
		return nil, err
	}
	sessions := sc.Sessions
	if opts.Sessions > 0 {
		sessions = opts.Sessions
	}
	names := make([]string, len(sc.Steps))
	for i, s := range sc.Steps {
		names[i] = s.Name
	}
	start := time.Now()
	agg := NewAggregate(start, names)
	if opts.Started != nil {
		opts.Started(agg)
	}

	var deadline time.Time
	if sc.Duration > 0 {
		deadline = start.Add(sc.RampUp + sc.Duration)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if !deadline.IsZero() {
		runCtx, cancel = context.WithDeadline(runCtx, deadline)
		defer cancel()
	}

	// Sessions 0..N-1 of one browser, N..2N-1 of the next, and so on:
	// browsers start as the ramp-up reaches them.
	slots := make([]slot, (sessions+opts.SessionsPerBrowser-1)/opts.SessionsPerBrowser)
	defer func() {
		for i := range slots {
			slots[i].close()
		}
	}()

	done := make(chan struct{})
	go sampleGenerator(agg, done)
	if progress != nil {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case now := <-t.C:
					progress(agg.Live(now))
				}
			}
		}()
	}

	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	for i := range sessions {
		n := opts.SessionOffset + i + 1
		delay := time.Duration(0)
		if sessions > 1 {
			delay = sc.RampUp * time.Duration(i) / time.Duration(sessions)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-runCtx.Done():
				return
			case <-time.After(delay):
			}
			s := &session{n: n, sc: sc, agg: agg, opts: opts}
			if d := sc.Data; len(d) > 0 {
				s.data = d[(n-1)%len(d)]
			}
			sl := &slots[i/opts.SessionsPerBrowser]
			// A session whose browser died goes on in a new one, a few
			// times at most.
			for attempt := 0; attempt < 3 && runCtx.Err() == nil; attempt++ {
				b, err := sl.get(runCtx, exe, opts.TempDir, sc.Browser, opts.Log, i/opts.SessionsPerBrowser)
				if err != nil {
					if runCtx.Err() == nil {
						firstErr.CompareAndSwap(nil, &err)
						agg.Lost(1)
					}
					return
				}
				if !s.run(runCtx, b.ctx) {
					return
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	if errp := firstErr.Load(); errp != nil && agg.Live(time.Now()).Steps == 0 {
		return agg, *errp
	}
	return agg, nil
}

// session is one simulated user: a browser context of its own, running the
// steps over and over.
type session struct {
	n    int
	sc   *Scenario
	agg  *Aggregate
	opts Options
	data map[string]string
	iter int // the iteration running, from 1

	status     atomic.Int64 // HTTP status of the last navigation
	requests   atomic.Int64 // since the last flush
	bytes      atomic.Int64
	reqTotal   atomic.Int64 // over the session, never reset: a step's share
	bytesTotal atomic.Int64
	wsSent     atomic.Int64
	wsReceived atomic.Int64
	wsTotal    atomic.Int64 // frames received over the session, never reset
}

// run runs the session's iterations in a browser context of its own until
// they are done or ctx ends; it reports whether the browser died under it.
func (s *session) run(ctx context.Context, browserCtx context.Context) (browserDied bool) {
	sctx, cancel := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer cancel()
	// The session's target, for the event subscriptions.
	var target *chromedp.Target
	_, err := chromedp.Run(sctx, func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		target = t
		if _, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{}); err != nil {
			return chromedp.Void{}, err
		}
		if len(s.sc.Browser.Block) == 0 {
			return chromedp.Void{}, nil
		}
		var patterns []*fetch.RequestPattern
		for _, b := range s.sc.Browser.Block {
			patterns = append(patterns, &fetch.RequestPattern{ResourceType: blockTypes[b]})
		}
		_, err := cdp.Call(ctx, t, fetch.Enable, fetch.EnableParams{Patterns: patterns})
		return chromedp.Void{}, err
	})
	if err != nil {
		if ctx.Err() == nil && browserCtx.Err() == nil {
			s.opts.Log.Warn("session could not start", "session", s.n, "error", err)
			s.agg.Lost(1)
		}
		return browserCtx.Err() != nil
	}
	s.agg.Sessions(time.Now(), 1)
	defer func() { s.agg.Sessions(time.Now(), -1) }() // at the end, not now
	evCtx, stopEvents := context.WithCancel(sctx)
	defer stopEvents()
	s.watch(evCtx, target)
	go s.flushTraffic(evCtx)

	defer s.flush()
	for ctx.Err() == nil {
		s.iter++
		if s.sc.Iterations > 0 && s.iter > s.sc.Iterations {
			return false
		}
		if s.iteration(ctx, sctx) {
			s.agg.Iteration()
		}
		if sctx.Err() != nil && ctx.Err() == nil {
			s.agg.Lost(1)
			s.opts.Log.Warn("browser gone under a session", "session", s.n)
			return true
		}
	}
	return false
}

// watch counts the session's network traffic and websocket frames, and
// keeps the status of the last document response.
func (s *session) watch(ctx context.Context, t *chromedp.Target) {
	go func() {
		for ev, err := range cdp.Events(ctx, t, network.ResponseReceived) {
			if err != nil {
				return
			}
			if ev.Response == nil {
				continue
			}
			s.agg.Response(ev.Response.Status)
			if ev.Type == network.ResourceTypeDocument {
				s.status.Store(ev.Response.Status)
			}
		}
	}()
	go func() {
		for ev, err := range cdp.Events(ctx, t, network.LoadingFinished) {
			if err != nil {
				return
			}
			s.requests.Add(1)
			s.bytes.Add(int64(ev.EncodedDataLength))
			s.reqTotal.Add(1)
			s.bytesTotal.Add(int64(ev.EncodedDataLength))
		}
	}()
	go func() {
		for _, err := range cdp.Events(ctx, t, network.WebSocketFrameReceived) {
			if err != nil {
				return
			}
			s.wsReceived.Add(1)
			s.wsTotal.Add(1)
		}
	}()
	if len(s.sc.Browser.Block) > 0 {
		// Only requests of the blocked types pause: fail them as the
		// browser's own blocking would.
		go func() {
			for ev, err := range cdp.Events(ctx, t, fetch.RequestPaused) {
				if err != nil {
					return
				}
				s.agg.Blocked(time.Now(), 1)
				_, _ = cdp.Call(ctx, t, fetch.FailRequest, fetch.FailRequestParams{RequestID: ev.RequestID, ErrorReason: network.ErrorReasonBlockedByClient})
			}
		}()
	}
	go func() {
		for _, err := range cdp.Events(ctx, t, network.WebSocketFrameSent) {
			if err != nil {
				return
			}
			s.wsSent.Add(1)
		}
	}()
}

// flushTraffic moves the counters into the aggregate every second.
func (s *session) flushTraffic(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.flush()
		}
	}
}

func (s *session) flush() {
	s.agg.Traffic(time.Now(), s.requests.Swap(0), s.bytes.Swap(0), s.wsSent.Swap(0), s.wsReceived.Swap(0))
}

// iteration runs the steps once; a failed step ends it. The think time
// goes before every step but the session's first.
func (s *session) iteration(runCtx, sctx context.Context) bool {
	d := SessionData{Session: s.n, Iteration: s.iter, Data: s.data}
	for i, st := range s.sc.Steps {
		if runCtx.Err() != nil {
			return false
		}
		if (s.iter > 1 || i > 0) && s.sc.ThinkTime > 0 {
			select {
			case <-runCtx.Done():
				return false
			case <-time.After(s.sc.ThinkTime):
			}
		}
		began, req0, bytes0 := time.Now(), s.reqTotal.Load(), s.bytesTotal.Load()
		err := s.step(runCtx, sctx, st, d)
		took := time.Since(began)
		s.agg.StepTraffic(st.Name, s.reqTotal.Load()-req0, s.bytesTotal.Load()-bytes0)
		if runCtx.Err() != nil && err != nil {
			return false // the run ended mid-step: not the step's fault
		}
		reason := ""
		if err != nil {
			reason = failureReason(err)
		}
		s.agg.Step(st.Name, began, took, reason)
		if err != nil {
			if s.sc.Screenshots && s.opts.Out != "" {
				s.screenshot(sctx, st, s.iter)
			}
			return false
		}
	}
	return true
}

// failureReason makes an error a short, groupable reason on one line.
func failureReason(err error) string {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case len(msg) > 120:
		return msg[:120] + "…"
	}
	return msg
}

// stepError is a failed check (as opposed to a browser error).
type stepError string

func (e stepError) Error() string { return string(e) }

func (s *session) step(runCtx, sctx context.Context, st Step, d SessionData) error {
	ctx, cancel := context.WithTimeout(sctx, st.Timeout)
	defer cancel()
	stop := context.AfterFunc(runCtx, cancel)
	defer stop()
	text, err := st.Render(d)
	if err != nil {
		return err
	}
	switch st.Action {
	case ActNavigate:
		target := text
		if !strings.Contains(target, "://") {
			target = s.sc.Target.ResolveReference(mustParse(text)).String()
		}
		resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(target))
		if err != nil {
			return err
		}
		if resp != nil {
			s.status.Store(resp.Status)
			if resp.Status >= 400 {
				return stepError("HTTP " + strconv.FormatInt(resp.Status, 10))
			}
		}
		s.vitals(ctx)
		return nil
	case ActClick:
		return chromedp.Do(ctx, chromedp.Click(chromedp.CSS(st.Selector)))
	case ActType:
		return chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS(st.Selector), text))
	case ActWaitFor:
		if st.Selector != "" {
			return chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(st.Selector)))
		}
		return s.poll(ctx, "document.body && document.body.innerText.includes("+jsString(text)+")", "text "+strconv.Quote(text)+" did not appear")
	case ActSleep:
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(st.Sleep):
			return nil
		}
	case ActAssert:
		if st.Status != 0 {
			if got := s.status.Load(); got != int64(st.Status) {
				return stepError(fmt.Sprintf("status %d, want %d", got, st.Status))
			}
		}
		if st.Text != nil {
			ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("document.body ? document.body.innerText.includes("+jsString(text)+") : false"))
			if err != nil {
				return err
			}
			if !ok {
				return stepError("text " + strconv.Quote(text) + " not on the page")
			}
		}
		return nil
	case ActJS:
		v, err := chromedp.Run(ctx, chromedp.Evaluate[any](text, chromedp.EvalAwaitPromise))
		if err != nil {
			return fmt.Errorf("js: %w", err)
		}
		if b, ok := v.(bool); ok && !b {
			return stepError("js returned false")
		}
		return nil
	case ActWSMessages:
		// Wait for that many frames from now on.
		base := s.wsSeen()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if s.wsSeen()-base >= int64(st.Count) {
				return nil
			}
			select {
			case <-ctx.Done():
				return stepError(fmt.Sprintf("%d of %d websocket messages in %s", s.wsSeen()-base, st.Count, st.Timeout))
			case <-t.C:
			}
		}
	}
	return fmt.Errorf("unknown action %s", st.Action)
}

// wsSeen counts the frames received so far, flushed or not.
func (s *session) wsSeen() int64 { return s.wsTotal.Load() }

// mustParse parses a path or URL of a step (checked as a template only;
// a path that does not parse fails the step at navigation).
func mustParse(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		return &url.URL{Path: s}
	}
	return u
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// poll evaluates a JS condition until it holds.
func (s *session) poll(ctx context.Context, cond, failure string) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
		if err == nil && ok {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			return stepError(failure)
		case <-t.C:
		}
	}
}

// vitalsJS reads the navigation's Web Vitals from the Performance API:
// TTFB and FCP from the entries, LCP and CLS from buffered observers.
const vitalsJS = `new Promise(resolve => {
  const nav = performance.getEntriesByType('navigation')[0];
  let fcp = performance.getEntriesByName('first-contentful-paint')[0], lcp = 0, cls = 0;
  try { new PerformanceObserver(l => { for (const e of l.getEntries()) if (e.name === 'first-contentful-paint') fcp = e; }).observe({type: 'paint', buffered: true}); } catch (e) {}
  try { new PerformanceObserver(l => { for (const e of l.getEntries()) lcp = e.startTime; }).observe({type: 'largest-contentful-paint', buffered: true}); } catch (e) {}
  try { new PerformanceObserver(l => { for (const e of l.getEntries()) if (!e.hadRecentInput) cls += e.value; }).observe({type: 'layout-shift', buffered: true}); } catch (e) {}
  setTimeout(() => resolve({ttfb: nav ? nav.responseStart : -1, fcp: fcp ? fcp.startTime : -1, lcp: lcp || -1, cls: cls}), 100);
})`

func (s *session) vitals(ctx context.Context) {
	v, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]float64](vitalsJS, chromedp.EvalAwaitPromise))
	if err != nil {
		return
	}
	for _, k := range vitalNames {
		if x, ok := v[k]; ok && x >= 0 {
			s.agg.Vital(k, x)
		}
	}
}

func (s *session) screenshot(sctx context.Context, st Step, iter int) {
	ctx, cancel := context.WithTimeout(sctx, 5*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		return
	}
	dir := filepath.Join(s.opts.Out, "screenshots")
	_ = os.MkdirAll(dir, 0o755)
	name := fmt.Sprintf("session%d-iter%d-%s.png", s.n, iter, sanitize(st.Name))
	_ = os.WriteFile(filepath.Join(dir, name), png, 0o644)
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}
