package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// HTTP targets are driven by wrk (https://github.com/wg/wrk, Debian's
// package) when it is installed: a load generator written in C that
// spends a fraction of the CPU per request of Go's net/http client, so
// that the generator, sharing the machine's cores with the server, weighs
// less on the throughput figures and cannot bring two servers of
// different cost closer together by keeping both waiting. Without wrk
// (or with -generator go) the Go generator of drive.go is used, and the
// report says so.

// wrkSpec is what wrk sends an HTTP target.
type wrkSpec struct {
	url, method, body, bearer string
}

// wrkScript is the Lua script wrk runs: the request (method, body,
// headers, fixed for the whole run, so wrk formats it once), and a done()
// that prints the summary and the latency at a grid of percentiles, for
// the harness to parse (the "WRK" and "P" lines; see wrkPercentiles).
func wrkScript(s wrkSpec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "wrk.method = %q\n", s.method)
	fmt.Fprintf(&b, "wrk.headers[\"Authorization\"] = %q\n", "Bearer "+s.bearer)
	if s.body != "" {
		fmt.Fprintf(&b, "wrk.body = %q\n", s.body)
		b.WriteString("wrk.headers[\"Content-Type\"] = \"application/json\"\n")
	}
	b.WriteString(`function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %d %d %d %d %d %d %d %d\n", summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout))
  for _, p in ipairs({` + wrkPercentileList() + `}) do
    io.write(string.format("P %g %d\n", p, latency:percentile(p)))
  end
end
`)
	return b.String()
}

// wrkPercentileList is the grid of percentiles wrk's script prints: every
// half percent to 99, every tenth to 99.9, then 99.95, 99.99 and 100.
func wrkPercentileList() string {
	var ps []string
	for k := 1; k <= 198; k++ {
		ps = append(ps, strconv.FormatFloat(float64(k)/2, 'f', -1, 64))
	}
	for k := 991; k <= 999; k++ {
		ps = append(ps, strconv.FormatFloat(float64(k)/10, 'f', -1, 64))
	}
	ps = append(ps, "99.95", "99.99", "100")
	return strings.Join(ps, ", ")
}

// wrkRun is what one wrk run reported.
type wrkRun struct {
	duration             time.Duration
	requests, bytes      uint64
	connect, read, write uint64
	status, timeout      uint64
	lat                  hist
	cpu                  time.Duration // wrk's own user+system time
}

// answered is how many requests got a 2xx or 3xx answer.
func (w *wrkRun) answered() uint64 {
	if w.status > w.requests {
		return 0
	}
	return w.requests - w.status
}

// wrkSeconds rounds d up to whole seconds, wrk's unit, at least 1.
func wrkSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// runWrk runs wrk once against s for secs seconds with conns connections.
func runWrk(ctx context.Context, wrkBin, scriptPath, url string, conns, secs int) (*wrkRun, error) {
	threads := max(1, min(runtime.NumCPU(), conns))
	tr, err := runTool(ctx, "wrk", wrkBin,
		"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", strconv.Itoa(secs)+"s",
		"--timeout", "10s", "-s", scriptPath, url)
	if err != nil {
		return nil, err
	}
	r, err := parseWrkOutput(string(tr.out))
	if err != nil {
		return nil, tr.with(err)
	}
	r.cpu = tr.cpu
	return r, nil
}

// parseWrkOutput reads what wrkScript's done() printed: the "WRK" summary
// line and the "P <percentile> <µs>" lines, the latter turned back into a
// histogram.
func parseWrkOutput(out string) (*wrkRun, error) {
	r := &wrkRun{}
	sawSummary := false
	var pcts []float64
	var lats []time.Duration
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 9 && f[0] == "WRK":
			var v [8]uint64
			for i := range v {
				n, err := strconv.ParseUint(f[i+1], 10, 64)
				if err != nil {
					return nil, fmt.Errorf("wrk: bad summary line %q", sc.Text())
				}
				v[i] = n
			}
			r.duration = time.Duration(v[0]) * time.Microsecond
			r.requests, r.bytes = v[1], v[2]
			r.connect, r.read, r.write, r.status, r.timeout = v[3], v[4], v[5], v[6], v[7]
			sawSummary = true
		case len(f) == 3 && f[0] == "P":
			p, err1 := strconv.ParseFloat(f[1], 64)
			us, err2 := strconv.ParseUint(f[2], 10, 64)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("wrk: bad latency line %q", sc.Text())
			}
			pcts = append(pcts, p)
			lats = append(lats, time.Duration(us)*time.Microsecond)
		}
	}
	if !sawSummary {
		return nil, errors.New("wrk printed no summary (is the script's done() run?)")
	}
	// Rebuild a histogram from the percentiles: the latency at percentile
	// p stands for the requests between the previous grid point and p.
	// Merged over rounds, its quantiles are those of all the requests to
	// within the grid's step (0.5% of the requests; 0.1% above p99).
	var given uint64
	for i, p := range pcts {
		n := uint64(math.Round(p / 100 * float64(r.requests)))
		if n > given {
			r.lat.recordN(lats[i], n-given)
			given = n
		}
	}
	return r, nil
}

// errs is every failed request wrk counted: socket errors and answers
// with a status above 399.
func (w *wrkRun) errs() uint64 {
	return w.connect + w.read + w.write + w.status + w.timeout
}

func (w *wrkRun) errSummary() map[string]uint64 {
	m := map[string]uint64{}
	for _, e := range []struct {
		what string
		n    uint64
	}{{"connect error", w.connect}, {"read error", w.read}, {"write error", w.write}, {"HTTP status > 399", w.status}, {"timeout", w.timeout}} {
		if e.n > 0 {
			m["wrk: "+e.what] = e.n
		}
	}
	return m
}

// writeWrkScript writes s's script into dir under name and returns its path.
func writeWrkScript(dir, name string, s wrkSpec) (string, error) {
	p := filepath.Join(dir, strings.NewReplacer(" ", "-", "/", "-").Replace(name)+".lua")
	return p, os.WriteFile(p, []byte(wrkScript(s)), 0o600)
}

// runWrkTarget is run (drive.go) for a target wrk drives: an unmeasured
// wrk run of warmup (rounded up to whole seconds; none when 0), then a
// measured one of duration (the same), the server's CPU time read just
// before and after the measured run. Errors in the warm-up count too.
func runWrkTarget(ctx context.Context, t target, res *result, concurrency int, warmup, duration time.Duration) error {
	if warmup > 0 {
		w, err := runWrk(ctx, t.wrkBin, t.wrkScript, t.wrk.url, concurrency, wrkSeconds(warmup))
		if err != nil {
			return fmt.Errorf("%s: warm-up: %w", t.name, err)
		}
		res.addCounts(w.answered(), w.errs(), w.errSummary(), " (warm-up)")
	}
	var w *wrkRun
	m, err := measure(t, func() (err error) {
		if w, err = runWrk(ctx, t.wrkBin, t.wrkScript, t.wrk.url, concurrency, wrkSeconds(duration)); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if w.duration <= 0 {
		return fmt.Errorf("%s: wrk reported a run of %v", t.name, w.duration)
	}
	// wrk's latency histogram holds every completed request, failed or
	// not; with no failure (the target) it is the successful ones.
	res.ok.merge(&w.lat)
	res.addSlice(w.answered(), w.duration, m.u0, m.u1, w.cpu, m.busy, m.peakRSSKB)
	res.addCounts(w.answered(), w.errs(), w.errSummary(), "")
	return nil
}
