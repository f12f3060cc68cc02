package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// target is one server to load and how a worker calls it.
type target struct {
	name string
	proc *child
	// open prepares the clients (connections) of one run; close releases
	// them. newWorker gives worker w its call, bound to ctx.
	open      func(concurrency int) error
	close     func()
	newWorker func(ctx context.Context, w int) func() error
	// preflight makes a first call (one per connection) and checks the
	// answer in full; it returns the answer's size in bytes (0 when not
	// known) and how many calls it made.
	preflight func(ctx context.Context) (size, calls int, err error)
	// wrk, when set, is what wrk sends this HTTP target: run drives it
	// with wrk (wrkBin, running the script at wrkScript) instead of the
	// Go workers.
	wrk               *wrkSpec
	wrkBin, wrkScript string
	// ghz, when set, is what ghz sends this gRPC target: run drives it
	// with ghz (ghzBin) instead of the Go workers (which still make the
	// first call, preflight, and check its answer in full).
	ghz    *ghzSpec
	ghzBin string
}

// generator names what drives t.
func (t target) generator() string {
	switch {
	case t.wrk != nil && t.wrkBin != "":
		return "wrk"
	case t.ghz != nil && t.ghzBin != "":
		return "ghz"
	}
	return "go"
}

// result is what one run of a target measured.
type result struct {
	name       string
	ok         hist   // latency of the calls (the Go generator: the successful ones; wrk and ghz: all they completed)
	okCount    uint64 // successful calls in the measured windows
	generator  string // "wrk", "ghz" or "go"
	errs       uint64
	errKinds   map[string]uint64
	window     time.Duration // measured window
	srvCPU     time.Duration // the server process's CPU time in the window
	srvPreempt uint64        // the server's threads' involuntary context switches in the window
	genCPU     time.Duration // the load generator's CPU time in the window
	otherCPU   time.Duration // the rest of the machine's busy CPU time in the window
	peakRSSKB  int64         // the server's VmHWM at the end of the window
	size       int           // bytes of one answer (preflight)
	answered   uint64        // successful calls in all, warm-up and preflight too
	perRound   []float64     // calls/s of each measured slice
	// perRoundCPU is the server's CPU time per successful call in each
	// measured slice (0 for a slice with none).
	perRoundCPU []time.Duration
}

// addSlice accounts one measured slice of d, whichever generator drove
// it: n successful calls, the server's usage before (u0) and after (u1),
// the generator's CPU time gen, the machine's busy CPU time busy, and the
// server's peak RSS at its end.
func (r *result) addSlice(n uint64, d time.Duration, u0, u1 usage, gen, busy time.Duration, peakRSSKB int64) {
	cpu := u1.cpu - u0.cpu
	r.okCount += n
	r.window += d
	r.perRound = append(r.perRound, float64(n)/d.Seconds())
	r.addRoundCPU(cpu, n)
	r.srvCPU += cpu
	r.srvPreempt += u1.preempt - u0.preempt
	r.genCPU += gen
	r.otherCPU += max(0, busy-cpu-gen)
	r.peakRSSKB = max(r.peakRSSKB, peakRSSKB)
}

// addRoundCPU records a measured slice's server CPU time for n
// successful calls.
func (r *result) addRoundCPU(cpu time.Duration, n uint64) {
	per := time.Duration(0)
	if n > 0 {
		per = cpu / time.Duration(n)
	}
	r.perRoundCPU = append(r.perRoundCPU, per)
}

func (r *result) rate() float64 { return float64(r.okCount) / r.window.Seconds() }

// cpuPerReq is the server's CPU time per successful call.
func (r *result) cpuPerReq() time.Duration {
	if r.okCount == 0 {
		return 0
	}
	return r.srvCPU / time.Duration(r.okCount)
}

// preemptPerReq is the server's involuntary context switches per
// successful call.
func (r *result) preemptPerReq() float64 {
	if r.okCount == 0 {
		return 0
	}
	return float64(r.srvPreempt) / float64(r.okCount)
}

// worker is what one load goroutine keeps: its own histogram, so that
// recording takes no lock.
type worker struct {
	h        hist
	answered uint64 // successful calls, warm-up included
	errs     uint64
	errKinds map[string]uint64
}

func (w *worker) fail(err error) {
	w.errs++
	msg := err.Error()
	if len(msg) > 160 {
		msg = msg[:160] + "…"
	}
	if w.errKinds == nil {
		w.errKinds = map[string]uint64{}
	}
	if _, ok := w.errKinds[msg]; ok || len(w.errKinds) < 8 {
		w.errKinds[msg]++
	}
}

// prepare opens t's clients and makes its first call. The caller closes
// t when done with it.
func prepare(ctx context.Context, t target, concurrency int) (*result, error) {
	if err := t.open(concurrency); err != nil {
		return nil, fmt.Errorf("%s: %w", t.name, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	size, calls, err := t.preflight(pctx)
	cancel()
	if err != nil {
		t.close()
		return nil, fmt.Errorf("%s: first call: %w", t.name, err)
	}
	return &result{name: t.name, size: size, answered: uint64(calls), errKinds: map[string]uint64{}, generator: t.generator()}, nil
}

// run drives t closed-loop and adds what it measured to res: concurrency
// workers each call, wait for the answer and call again, for warmup (not
// measured) then duration (each call that starts in it measured). Calls
// still unanswered 10 s after the end are cancelled.
func run(ctx context.Context, t target, res *result, concurrency int, warmup, duration time.Duration) error {
	switch t.generator() {
	case "wrk":
		return runWrkTarget(ctx, t, res, concurrency, warmup, duration)
	case "ghz":
		return runGhzTarget(ctx, t, res, concurrency, warmup, duration)
	}
	startAt := time.Now()
	measureAt := startAt.Add(warmup)
	endAt := measureAt.Add(duration)
	wctx, cancel := context.WithDeadline(ctx, endAt.Add(10*time.Second))
	defer cancel()
	workers := make([]worker, concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func(w *worker, call func() error) {
			defer wg.Done()
			for {
				s := time.Now()
				if !s.Before(endAt) || wctx.Err() != nil {
					return
				}
				err := call()
				d := time.Since(s)
				if err == nil {
					w.answered++
				}
				if s.Before(measureAt) {
					continue
				}
				if err != nil {
					w.fail(err)
					continue
				}
				w.h.record(d)
			}
		}(&workers[i], t.newWorker(wctx, i))
	}

	sleepUntil(wctx, measureAt)
	var gen time.Duration
	m, err := measure(t, func() error {
		gen0 := selfCPU()
		wg.Wait()
		gen = selfCPU() - gen0
		return ctx.Err()
	})
	if err != nil {
		cancel()
		wg.Wait()
		return err
	}
	var n uint64
	for i := range workers {
		n += workers[i].h.n
	}
	res.addSlice(n, duration, m.u0, m.u1, gen, m.busy, m.peakRSSKB)
	for i := range workers {
		w := &workers[i]
		res.ok.merge(&w.h)
		res.addCounts(w.answered, w.errs, w.errKinds, "")
	}
	return nil
}

// addCounts adds a run's answered calls and errors to r, its error kinds
// marked with suffix (" (warm-up)" for an unmeasured run).
func (r *result) addCounts(answered, errs uint64, kinds map[string]uint64, suffix string) {
	r.answered += answered
	r.errs += errs
	for k, v := range kinds {
		r.errKinds[k+suffix] += v
	}
}

// window is what the harness reads around a measured window: the server
// process's usage (CPU time, preemptions) before and after, the
// machine's busy CPU time in it, and the server's peak RSS at its end.
type window struct {
	u0, u1    usage
	busy      time.Duration
	peakRSSKB int64
}

// measure runs load, the measured window of t, between two readings of
// its server's usage and of the machine's busy time, then reads the
// server's peak RSS and checks that the server still runs. An error of
// load is returned as it is.
func measure(t target, load func() error) (window, error) {
	var m window
	pid := t.proc.pid()
	var err error
	if m.u0, err = serverUsage(pid); err != nil {
		return m, fmt.Errorf("%s: %w", t.name, err)
	}
	busy0, err := machineBusy()
	if err != nil {
		return m, err
	}
	if err := load(); err != nil {
		return m, err
	}
	if m.u1, err = serverUsage(pid); err != nil {
		return m, fmt.Errorf("%s: %w (did it exit? %s)", t.name, err, t.proc.stderr)
	}
	busy1, err := machineBusy()
	if err != nil {
		return m, err
	}
	m.busy = busy1 - busy0
	mem, err := memKB(pid, "VmHWM")
	if err != nil {
		return m, fmt.Errorf("%s: %w", t.name, err)
	}
	m.peakRSSKB = mem[0]
	if t.proc.exited() {
		return m, fmt.Errorf("%s: the server exited during the run: %v\n%s", t.name, t.proc.err, t.proc.stderr)
	}
	return m, nil
}

func sleepUntil(ctx context.Context, t time.Time) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(t)):
	}
}

func (r *result) errSummary() string {
	var kinds []string
	for k, n := range r.errKinds {
		kinds = append(kinds, fmt.Sprintf("%d× %s", n, k))
	}
	sort.Strings(kinds)
	return strings.Join(kinds, "; ")
}

// httpTarget loads method url (with body, as JSON, when not empty) with
// "Authorization: Bearer <bearer>": with wrk when wrkBin is set, else over
// a shared keep-alive Go client (one idle connection per worker). check,
// if set, vets the preflight answer's body (always made with the Go
// client).
func httpTarget(name string, proc *child, method, url, body, bearer string, check func([]byte) error) target {
	var client *http.Client
	var transport *http.Transport
	newReq := func(ctx context.Context) *http.Request {
		req, _ := http.NewRequestWithContext(ctx, method, url, nil)
		req.Header.Set("Authorization", "Bearer "+bearer)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		return req
	}
	// withBody gives req a fresh copy of the body for one send.
	withBody := func(req *http.Request) *http.Request {
		if body != "" {
			req.Body = io.NopCloser(strings.NewReader(body))
			req.ContentLength = int64(len(body))
		}
		return req
	}
	return target{
		name: name,
		proc: proc,
		wrk:  &wrkSpec{url: url, method: method, body: body, bearer: bearer},
		open: func(concurrency int) error {
			transport = http.DefaultTransport.(*http.Transport).Clone()
			transport.MaxIdleConns = concurrency
			transport.MaxIdleConnsPerHost = concurrency
			transport.DisableCompression = true
			client = &http.Client{Transport: transport}
			return nil
		},
		close: func() { transport.CloseIdleConnections() },
		preflight: func(ctx context.Context) (int, int, error) {
			resp, err := client.Do(withBody(newReq(ctx)))
			if err != nil {
				return 0, 0, err
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return 0, 0, err
			}
			if resp.StatusCode != http.StatusOK {
				return 0, 0, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
			}
			if check != nil {
				if err := check(body); err != nil {
					return 0, 0, err
				}
			}
			return len(body), 1, nil
		},
		newWorker: func(ctx context.Context, _ int) func() error {
			// One request per worker, reused once each answer is read
			// and closed.
			req := newReq(ctx)
			return func() error {
				resp, err := client.Do(withBody(req))
				if err != nil {
					return err
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("HTTP %s", resp.Status)
				}
				if err != nil {
					return err
				}
				if n < 100 {
					return fmt.Errorf("short answer: %d bytes", n)
				}
				return nil
			}
		},
	}
}

// checkTokenJSON vets a REST /token answer: JSON with a JWT in "token".
func checkTokenJSON(body []byte) error {
	var v struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("answer is not JSON: %w", err)
	}
	if strings.Count(v.Token, ".") != 2 || !strings.HasPrefix(v.Token, "eyJ") {
		return fmt.Errorf("answer has no JWT: %.200s", body)
	}
	return nil
}

// grpcTarget loads a unary call over conns connections shared by the
// workers (worker w uses connection w mod conns), each call carrying
// "authorization: Bearer <bearer>" metadata. newCall binds the call to a
// connection.
func grpcTarget(name string, proc *child, addr, bearer string, conns int, newCall func(*grpc.ClientConn) func(context.Context) error) target {
	var ccs []*grpc.ClientConn
	withAuth := func(ctx context.Context) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+bearer)
	}
	t := target{name: name, proc: proc, ghz: &ghzSpec{addr: addr, bearer: bearer, conns: conns}}
	t.open = func(int) error {
		for range conns {
			cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.close()
				return err
			}
			ccs = append(ccs, cc)
		}
		return nil
	}
	t.close = func() {
		for _, cc := range ccs {
			cc.Close()
		}
		ccs = nil
	}
	t.preflight = func(ctx context.Context) (int, int, error) {
		// Every connection: each must be up before the clock starts.
		for _, cc := range ccs {
			if err := newCall(cc)(withAuth(ctx)); err != nil {
				return 0, 0, err
			}
		}
		return 0, len(ccs), nil
	}
	t.newWorker = func(ctx context.Context, w int) func() error {
		call, ctx := newCall(ccs[w%len(ccs)]), withAuth(ctx)
		return func() error { return call(ctx) }
	}
	return t
}

// tokendMint is what a load worker sends tokend's gRPC API: an empty
// MintRequest, the gRPC twin of GET /token (the default identity and
// application, an outgoing voice grant).
func tokendMint(cc *grpc.ClientConn) func(ctx context.Context) error {
	c := tokenv1.NewTokenServiceClient(cc)
	req := &tokenv1.MintRequest{}
	return func(ctx context.Context) error {
		resp, err := c.Mint(ctx, req)
		if err != nil {
			return err
		}
		if strings.Count(resp.GetToken(), ".") != 2 {
			return fmt.Errorf("answer has no JWT")
		}
		return nil
	}
}
