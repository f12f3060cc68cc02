package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// gRPC targets are driven by ghz (https://ghz.sh, written in Go) when it
// is on $PATH and -grpc-generator allows it, else by the Go generator of
// drive.go; the report says which. ghz is the gRPC load tool most people
// reach for, and its defaults (50 calls in flight over one connection)
// are -concurrency 50 -grpc-conns 1 here.
//
// ghz runs a fixed number of calls (-n), never a fixed time (-z): at the
// end of a timed run it cancels the calls in flight, which would count as
// errors (and may have been minted and audited all the same). The count
// of each run is the target's last measured rate times the time wanted,
// so a window lasts about as long as asked; its real length is ghz's own
// total.

// ghzSpec is what ghz sends a gRPC target.
type ghzSpec struct {
	addr string
	// call is the fully qualified method (package.Service.Method).
	call string
	// bearer, when set, is sent as "authorization: Bearer <bearer>".
	bearer string
	// protoFile, when set, describes call; else ghz asks the server
	// (gRPC reflection) before its first call.
	protoFile string
	conns     int
	// rate is the calls/s of the target's last run (0 before the first):
	// the next run's count is taken from it.
	rate float64
}

// ghzRun is what one ghz run reported.
type ghzRun struct {
	total    time.Duration // the run's wall time, by ghz
	count    uint64        // calls made
	ok       uint64        // calls answered OK
	errKinds map[string]uint64
	lat      hist          // latency of every call
	cpu      time.Duration // ghz's own user+system time
}

// ghzArgs is ghz's command line for n calls of s from workers workers.
func ghzArgs(s *ghzSpec, workers int, n uint64) []string {
	args := []string{
		"--insecure", "--call", s.call, "-d", "{}",
		"-c", strconv.Itoa(workers), "--connections", strconv.Itoa(min(s.conns, workers)),
		"-n", strconv.FormatUint(n, 10), "-t", "10s", "-O", "json",
	}
	if s.bearer != "" {
		md, _ := json.Marshal(map[string]string{"authorization": "Bearer " + s.bearer})
		args = append(args, "-m", string(md))
	}
	if s.protoFile != "" {
		args = append(args, "--proto", s.protoFile)
	}
	return append(args, s.addr)
}

// runGhz makes n calls of s with ghz, workers of them in flight.
func runGhz(ctx context.Context, ghzBin string, s *ghzSpec, workers int, n uint64) (*ghzRun, error) {
	tr, err := runTool(ctx, "ghz", ghzBin, ghzArgs(s, workers, n)...)
	if err != nil {
		return nil, err
	}
	r, err := parseGhzOutput(tr.out)
	if err != nil {
		return nil, tr.with(err)
	}
	r.cpu = tr.cpu
	if r.count != n {
		return nil, fmt.Errorf("ghz: made %d calls, asked for %d", r.count, n)
	}
	if r.total > 0 {
		s.rate = float64(r.count) / r.total.Seconds()
	}
	return r, nil
}

// ghzReport is the part of ghz's JSON report (-O json) the harness reads.
// Durations are in nanoseconds.
type ghzReport struct {
	Count              uint64            `json:"count"`
	Total              int64             `json:"total"`
	StatusCodes        map[string]uint64 `json:"statusCodeDistribution"`
	ErrorDistribution  map[string]uint64 `json:"errorDistribution"`
	Details            []ghzDetail       `json:"details"`
	LatencyPercentiles []struct {
		Percentage float64 `json:"percentage"`
		Latency    int64   `json:"latency"`
	} `json:"latencyDistribution"`
}

type ghzDetail struct {
	Latency int64  `json:"latency"`
	Status  string `json:"status"`
}

// parseGhzOutput reads ghz's JSON report: the count, the run's length,
// the calls answered OK (the rest by status, then by error text) and the
// latency of every call (ghz's per-call details).
func parseGhzOutput(out []byte) (*ghzRun, error) {
	var rep ghzReport
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, fmt.Errorf("ghz: report is not JSON: %w", err)
	}
	if rep.Count == 0 || rep.Total <= 0 {
		return nil, errors.New("ghz: the report has no calls")
	}
	r := &ghzRun{total: time.Duration(rep.Total), count: rep.Count, ok: rep.StatusCodes["OK"], errKinds: map[string]uint64{}}
	var statuses uint64
	for code, n := range rep.StatusCodes {
		statuses += n
		if code != "OK" && n > 0 {
			r.errKinds["ghz: "+code] += n
		}
	}
	if statuses < rep.Count {
		// Calls with no status at all (the connection failed): ghz names
		// them in errorDistribution.
		for e, n := range rep.ErrorDistribution {
			r.errKinds["ghz: "+e] += n
		}
	}
	if r.ok > r.count {
		return nil, fmt.Errorf("ghz: %d calls answered OK out of %d", r.ok, r.count)
	}
	if len(rep.Details) > 0 {
		for _, d := range rep.Details {
			r.lat.record(time.Duration(d.Latency))
		}
		return r, nil
	}
	// No details (a ghz that leaves them out): rebuild the latency from
	// the percentiles, as for wrk, coarser.
	ps := rep.LatencyPercentiles
	sort.Slice(ps, func(i, j int) bool { return ps[i].Percentage < ps[j].Percentage })
	var given uint64
	for _, p := range ps {
		k := uint64(math.Round(p.Percentage / 100 * float64(r.count)))
		if k > given {
			r.lat.recordN(time.Duration(p.Latency), k-given)
			given = k
		}
	}
	if given < r.count && len(ps) > 0 {
		r.lat.recordN(time.Duration(ps[len(ps)-1].Latency), r.count-given)
	}
	return r, nil
}

// errs is every call of the run not answered OK.
func (g *ghzRun) errs() uint64 { return g.count - g.ok }

// ghzCalls is the count of a run meant to last d at rate calls/s (at
// least 100, and 1,000 while no rate is known).
func ghzCalls(rate float64, d time.Duration) uint64 {
	if rate <= 0 {
		return 1000
	}
	return max(100, uint64(rate*d.Seconds()))
}

// writeHealthProto writes the gRPC health service's description into dir
// for ghz (the bare gRPC server offers no reflection: it serves the
// health service alone) and returns its path.
func writeHealthProto(dir string) (string, error) {
	p := filepath.Join(dir, "health.proto")
	return p, os.WriteFile(p, []byte(healthProto), 0o600)
}

// healthProto is grpc.health.v1's service, as much of it as ghz needs.
const healthProto = `syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse {
  enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
  ServingStatus status = 1;
}
service Health { rpc Check(HealthCheckRequest) returns (HealthCheckResponse); }
`

// runGhzTarget is run (drive.go) for a target ghz drives: an unmeasured
// run of about warmup (none when 0), then a measured one of about
// duration, the server's CPU time read just before and after it. The
// first run of a target is told its count by a calibration run when no
// rate is known yet. Errors in the warm-up count too.
func runGhzTarget(ctx context.Context, t target, res *result, concurrency int, warmup, duration time.Duration) error {
	s := t.ghz
	if s.rate <= 0 {
		// A first run to learn the rate; it warms up as well.
		g, err := runGhz(ctx, t.ghzBin, s, concurrency, ghzCalls(0, 0))
		if err != nil {
			return fmt.Errorf("%s: first ghz run: %w", t.name, err)
		}
		res.addCounts(g.ok, g.errs(), g.errKinds, " (warm-up)")
	}
	if warmup > 0 {
		g, err := runGhz(ctx, t.ghzBin, s, concurrency, ghzCalls(s.rate, warmup))
		if err != nil {
			return fmt.Errorf("%s: warm-up: %w", t.name, err)
		}
		res.addCounts(g.ok, g.errs(), g.errKinds, " (warm-up)")
	}
	var g *ghzRun
	m, err := measure(t, func() (err error) {
		if g, err = runGhz(ctx, t.ghzBin, s, concurrency, ghzCalls(s.rate, duration)); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// ghz's latency covers every call, failed or not; with no failure
	// (the target) it is the successful ones.
	res.ok.merge(&g.lat)
	res.addSlice(g.ok, g.total, m.u0, m.u1, g.cpu, m.busy, m.peakRSSKB)
	res.addCounts(g.ok, g.errs(), g.errKinds, "")
	return nil
}
