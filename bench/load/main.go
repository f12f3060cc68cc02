// Command load measures the whole tokend service under load against bare
// servers of the same protocols on the same machine, in one run, and
// prints the ratios the service is held to (make load):
//
//   - tokend's REST GET /token and POST /token against a bare net/http
//     handler answering a fixed token-sized (450-byte) JSON body (and
//     reading the POST body): server CPU time per request at most 1.6x
//     the bare server's, and at least 65% of its req/s;
//   - tokend's gRPC Mint against a bare gRPC server answering
//     grpc.health.v1.Health/Check: server CPU time per call at most 1.2x
//     the bare server's, and at least 75% of its calls/s;
//   - each with a p99 at most twice its bare server's p99;
//   - tokend's peak RSS under that load at most 64 MiB, no failed
//     request, and an audit record for every mint answered.
//
// tokend runs as it would in production: caller authentication (a service
// credential, created through the admin API), a policy file and the audit
// log are on, --log-level warn, and every request presents the credential
// (the bare servers get the same header and ignore it). tokend and each
// bare server run in processes of their own (the bare servers are this
// binary re-executed with a hidden flag), and each process's CPU time
// (/proc/<pid>/stat, user+system) and peak RSS (VmHWM) are read around
// each measured window, so that CPU per request is measured the same way
// on both sides of each ratio.
//
// HTTP targets are driven by wrk (written in C) when it is on $PATH, else
// by this program's own Go workers (-http-generator chooses); gRPC
// targets by ghz when it is on $PATH, else by the Go workers
// (-grpc-generator chooses). The report says which drove each target. CPU
// per request does not depend on the generator's speed; throughput does,
// since the generator shares the machine's cores with the server: the
// slower the generator, the more both servers wait on it and the closer
// the throughput ratios get to 1.
//
// The Go workers' load is closed-loop: -concurrency workers each send a
// request, wait for the answer and send the next; wrk keeps -concurrency
// connections with one request in flight each, the same. Each target gets
// -warmup (not measured) and then -duration, split into -rounds slices run
// in turn across the targets, so that other work on the machine weighs on
// each ratio's two sides alike; the report shows the machine's CPU time no
// process of the run used ("other") and each round's ratios. See
// BENCHMARKS.md.
//
// Exit status: 0 when the harness ran (whatever the figures), 1 when
// -enforce is set and a target is missed, 2 when the harness itself failed.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// The targets.
const (
	grpcRateTarget = 0.75 // tokend gRPC Mint calls/s ÷ gRPC ceiling, at least
	grpcCPUTarget  = 1.2  // tokend gRPC Mint CPU/call ÷ gRPC ceiling's, at most
	restRateTarget = 0.65 // tokend REST /token req/s ÷ HTTP ceiling, at least
	restCPUTarget  = 1.6  // tokend REST /token CPU/request ÷ HTTP ceiling's, at most
	p99Target      = 2.0  // tokend p99 ÷ its ceiling's p99, at most
	rssTargetMiB   = 64.0 // tokend's peak RSS
)

// postBody is what POST /token sends (and the HTTP ceiling's POST target,
// which reads and ignores it): a MintRequest naming an identity the
// policy allows.
const postBody = `{"identity":"load_user"}`

// Hidden flags: this binary serving a ceiling (see ceiling.go).
const (
	serveHTTPFlag = "serve-http-ceiling"
	serveGRPCFlag = "serve-grpc-ceiling"
)

type options struct {
	concurrency      int
	duration, warmup time.Duration
	grpcConns        int
	rounds           int
	tokendBin        string
	keep, enforce    bool
	tokendArgs       string
	httpGen          string
	grpcGen          string
	serverProcs      int
}

func main() {
	if len(os.Args) == 2 {
		switch strings.TrimLeft(os.Args[1], "-") {
		case serveHTTPFlag:
			exitOn(serveHTTPCeiling())
		case serveGRPCFlag:
			exitOn(serveGRPCCeiling())
		}
	}
	var o options
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.IntVar(&o.concurrency, "concurrency", 32, "closed-loop workers per target (1 to 1024)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per target (at most 2m)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load per target before -duration (at most 1m)")
	fs.IntVar(&o.grpcConns, "grpc-conns", 2, "gRPC connections the workers share, for both gRPC targets (1 to 64)")
	fs.IntVar(&o.rounds, "rounds", 5, "split -duration into this many slices per target, run in turn (http ceiling, REST, grpc ceiling, Mint, again...), so that other work on the machine coming and going weighs on both sides of each ratio alike; each target's first slice comes after -warmup, its others after -warmup/rounds (1 to 20)")
	fs.StringVar(&o.tokendBin, "tokend", "", "tokend binary to run; empty: build github.com/tokend/tokend/cmd/tokend")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (tokend's data, policy, audit log)")
	fs.BoolVar(&o.enforce, "enforce", false, "exit 1 when a target is missed")
	fs.StringVar(&o.httpGen, "http-generator", "auto", "what drives the HTTP targets: wrk, go (this program's own workers), or auto (wrk when it is on $PATH, else go)")
	fs.StringVar(&o.grpcGen, "grpc-generator", "auto", "what drives the gRPC targets: ghz, go (this program's own workers), or auto (ghz when it is on $PATH, else go)")
	fs.IntVar(&o.serverProcs, "server-gomaxprocs", 0, "GOMAXPROCS for the servers measured, tokend and the bare servers alike (not the generators); 0: each server's Go default (the CPU count, or its cgroup's limit). See BENCHMARKS.md: on two CPUs shared with the generator, 1 costs tokend far fewer preemptions")
	fs.StringVar(&o.tokendArgs, "tokend-args", "", "more flags for tokend, space-separated (e.g. '--gc-headroom-mib 0' to measure with Go's default collector pacing)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./load [flags]   (from bench/; or make load ARGS='...')\n\n"+
			"Loads tokend (auth, policy, audit on) and bare gRPC and HTTP ceilings, and prints the ratios.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	switch {
	case fs.NArg() > 0:
		fatalf("unexpected argument %q", fs.Arg(0))
	case o.concurrency < 1 || o.concurrency > 1024:
		fatalf("-concurrency must be 1 to 1024")
	case o.duration < 100*time.Millisecond || o.duration > 2*time.Minute:
		fatalf("-duration must be 100ms to 2m")
	case o.warmup < 0 || o.warmup > time.Minute:
		fatalf("-warmup must be 0 to 1m")
	case o.grpcConns < 1 || o.grpcConns > 64:
		fatalf("-grpc-conns must be 1 to 64")
	case o.serverProcs < 0 || o.serverProcs > 1024:
		fatalf("-server-gomaxprocs must be 0 to 1024")
	case o.rounds < 1 || o.rounds > 20:
		fatalf("-rounds must be 1 to 20")
	case o.httpGen != "auto" && o.httpGen != "wrk" && o.httpGen != "go":
		fatalf("-http-generator must be auto, wrk or go")
	case o.grpcGen != "auto" && o.grpcGen != "ghz" && o.grpcGen != "go":
		fatalf("-grpc-generator must be auto, ghz or go")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	missed, err := loadAll(ctx, o)
	stop()
	if err != nil {
		fatalf("%v", err)
	}
	if missed && o.enforce {
		os.Exit(1)
	}
}

func exitOn(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(2)
	}
	os.Exit(0)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "load: "+format+"\n", args...)
	os.Exit(2)
}

// loadAll starts the servers, runs every target and prints the report. It
// reports whether a target was missed.
func loadAll(ctx context.Context, o options) (missed bool, err error) {
	dir, err := os.MkdirTemp("", "tokend-load-")
	if err != nil {
		return false, err
	}
	if o.keep {
		fmt.Fprintf(os.Stderr, "load: keeping %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	bin := o.tokendBin
	if bin == "" {
		fmt.Fprintln(os.Stderr, "load: building tokend…")
		if bin, err = buildTokend(ctx, dir); err != nil {
			return false, err
		}
	}

	var children []*child
	defer func() {
		for _, c := range children {
			c.stop(5 * time.Second)
		}
	}()
	httpCeil, httpAddr, err := startCeiling("http ceiling", serveHTTPFlag, o.serverProcs)
	if err != nil {
		return false, err
	}
	children = append(children, httpCeil)
	grpcCeilProc, grpcAddr, err := startCeiling("grpc ceiling", serveGRPCFlag, o.serverProcs)
	if err != nil {
		return false, err
	}
	children = append(children, grpcCeilProc)
	tk, err := startTokend(ctx, bin, dir, strings.Fields(o.tokendArgs), o.serverProcs)
	if err != nil {
		return false, err
	}
	children = append(children, tk.child)

	wrkBin := ""
	if o.httpGen != "go" {
		if wrkBin, err = exec.LookPath("wrk"); err != nil {
			if o.httpGen == "wrk" {
				return false, fmt.Errorf("-http-generator wrk: %w (apt-get install wrk)", err)
			}
			fmt.Fprintln(os.Stderr, "load: wrk is not installed: the Go generator drives the HTTP targets (apt-get install wrk)")
			wrkBin = ""
		}
	}
	ghzBin := ""
	if o.grpcGen != "go" {
		if ghzBin, err = exec.LookPath("ghz"); err != nil {
			if o.grpcGen == "ghz" {
				return false, fmt.Errorf("-grpc-generator ghz: %w (go install github.com/bojand/ghz/cmd/ghz@v0.93.0)", err)
			}
			ghzBin = ""
		}
	}
	healthProto := ""
	if ghzBin != "" {
		if healthProto, err = writeHealthProto(dir); err != nil {
			return false, err
		}
	}
	cred := tk.credential
	targets := []target{
		httpTarget(httpCeilGET, httpCeil, http.MethodGet, "http://"+httpAddr+"/token", "", cred, nil),
		httpTarget(restGET, tk.child, http.MethodGet, "http://"+tk.httpAddr+"/token", "", cred, checkTokenJSON),
		httpTarget(httpCeilPOST, httpCeil, http.MethodPost, "http://"+httpAddr+"/token", postBody, cred, nil),
		httpTarget(restPOST, tk.child, http.MethodPost, "http://"+tk.httpAddr+"/token", postBody, cred, checkTokenJSON),
		grpcTarget(grpcCeil, grpcCeilProc, grpcAddr, cred, o.grpcConns, grpcCeilingCheck),
		grpcTarget(grpcMint, tk.child, tk.grpcAddr, cred, o.grpcConns, tokendMint),
	}
	for i := range targets {
		t := &targets[i]
		if t.ghz == nil || ghzBin == "" {
			continue
		}
		t.ghzBin = ghzBin
		switch t.name {
		case grpcCeil:
			t.ghz.call, t.ghz.protoFile = "grpc.health.v1.Health.Check", healthProto
		case grpcMint:
			t.ghz.call = "token.v1.TokenService.Mint" // described by tokend's reflection
		}
	}
	for i := range targets {
		if targets[i].wrk != nil && wrkBin != "" {
			targets[i].wrkBin = wrkBin
			if targets[i].wrkScript, err = writeWrkScript(dir, targets[i].name, *targets[i].wrk); err != nil {
				return false, err
			}
		}
	}
	total := time.Duration(len(targets)) * (o.warmup + o.duration + time.Duration(o.rounds-1)*o.warmup/time.Duration(o.rounds))
	fmt.Fprintf(os.Stderr, "load: %d targets × (%v warm-up + %v) in %d round(s), %d workers each: about %v\n",
		len(targets), o.warmup, o.duration, o.rounds, o.concurrency, total.Round(time.Second))
	withLog := func(err error) error {
		if tk.stderr.Lines() > 0 {
			return fmt.Errorf("%w\ntokend's log:\n%s", err, tk.stderr)
		}
		return err
	}
	results := map[string]*result{}
	var order []*result
	for _, t := range targets {
		r, err := prepare(ctx, t, o.concurrency)
		if err != nil {
			return false, withLog(err)
		}
		defer t.close()
		results[t.name] = r
		order = append(order, r)
	}
	dur := o.duration / time.Duration(o.rounds)
	for round := range o.rounds {
		warm := o.warmup
		if round > 0 {
			warm /= time.Duration(o.rounds)
		}
		for i, t := range targets {
			if o.rounds > 1 {
				fmt.Fprintf(os.Stderr, "load: round %d/%d: %s…\n", round+1, o.rounds, t.name)
			} else {
				fmt.Fprintf(os.Stderr, "load: %s…\n", t.name)
			}
			if err := run(ctx, t, order[i], o.concurrency, warm, dur); err != nil {
				return false, withLog(err)
			}
		}
	}
	tk.stop(10 * time.Second)

	w := os.Stdout
	rg, rp, cg, cp := results[restGET], results[restPOST], results[httpCeilGET], results[httpCeilPOST]
	gm, gc := results[grpcMint], results[grpcCeil]
	printHeader(w, o, rg, cg, gm)
	printTable(w, order)
	fmt.Fprintln(w)
	checks := []check{
		cpuCheck("REST GET /token CPU/req vs HTTP ceiling", rg, cg, restCPUTarget),
		cpuCheck("REST POST /token CPU/req vs ceiling", rp, cp, restCPUTarget),
		rateCheck("REST GET /token req/s vs HTTP ceiling", rg, cg, restRateTarget),
		rateCheck("REST POST /token req/s vs ceiling", rp, cp, restRateTarget),
		p99Check("REST GET /token p99 vs ceiling p99", rg, cg),
		p99Check("REST POST /token p99 vs ceiling p99", rp, cp),
		cpuCheck("gRPC Mint CPU/call vs gRPC ceiling", gm, gc, grpcCPUTarget),
		rateCheck("gRPC Mint calls/s vs gRPC ceiling", gm, gc, grpcRateTarget),
		p99Check("gRPC Mint p99 vs gRPC ceiling p99", gm, gc),
	}
	peak := max(rg.peakRSSKB, rp.peakRSSKB, gm.peakRSSKB)
	checks = append(checks, check{
		what: "tokend peak RSS (VmHWM)", got: fmt.Sprintf("%.1f MiB", float64(peak)/1024),
		want: fmt.Sprintf("≤ %.0f MiB", rssTargetMiB), ok: float64(peak)/1024 <= rssTargetMiB,
	})
	tokendErrs := rg.errs + rp.errs + gm.errs
	checks = append(checks, check{
		what: "tokend errors under load", got: fmt.Sprint(tokendErrs), want: "0", ok: tokendErrs == 0,
	})
	mints := rg.answered + rp.answered + gm.answered
	a, err := readAudit(tk.auditLog)
	if err != nil {
		return missed, err
	}
	// wrk stops with a request in flight on each connection: tokend may
	// have minted (and audited) it without wrk counting the answer. So
	// there may be up to that many more records than answers, never fewer.
	inFlight := uint64(0)
	for _, r := range []*result{rg, rp} {
		if r.generator == "wrk" {
			inFlight += uint64(o.concurrency) * uint64(2*o.rounds)
		}
	}
	unaudited := int64(mints) - int64(a.mintsAllowed)
	checks = append(checks, check{
		what: "answered mints without an audit record", got: fmt.Sprint(max(0, unaudited)), want: "0",
		ok: unaudited <= 0 && a.mintsAllowed-mints <= inFlight && a.dropped == 0,
	})
	for _, c := range checks {
		mark := "PASS"
		if !c.ok {
			mark, missed = "MISS", true
		}
		fmt.Fprintf(w, "%-40s %12s   target %-8s %s\n", c.what, c.got, c.want, mark)
	}
	if o.rounds > 1 {
		fmt.Fprintln(w)
		perRound(w, "REST GET /token / HTTP ceiling, each round", rg, cg)
		perRound(w, "REST POST /token / ceiling, each round", rp, cp)
		perRound(w, "gRPC Mint / gRPC ceiling, each round", gm, gc)
		perRoundCPU(w, "REST GET /token CPU/req / ceiling's, each round", rg, cg)
		perRoundCPU(w, "REST POST /token CPU/req / ceiling's, each round", rp, cp)
		perRoundCPU(w, "gRPC Mint CPU/call / ceiling's, each round", gm, gc)
	}

	// What else the run saw: errors by kind, tokend's own log, the audit.
	for _, r := range order {
		if r.errs > 0 {
			fmt.Fprintf(w, "\n%s errors: %s\n", r.name, r.errSummary())
		}
	}
	if n := tk.stderr.Lines(); n > 0 {
		fmt.Fprintf(w, "\ntokend logged %d lines at warn or above; the last of them:\n%s", n, lastLines(tk.stderr.String(), 10))
	}
	fmt.Fprintf(w, "\naudit log: %d records (%.1f MiB): %d mints allowed for the %d tokend answered, %d records reported dropped\n",
		a.records, float64(a.size)/(1<<20), a.mintsAllowed, mints, a.dropped)
	switch {
	case a.mintsAllowed < mints || a.dropped > 0:
		fmt.Fprintf(w, "audit log: MISMATCH: %d mints answered but %d recorded and %d dropped\n", mints, a.mintsAllowed, a.dropped)
	case a.mintsAllowed > mints+inFlight:
		fmt.Fprintf(w, "audit log: MISMATCH: %d more mints recorded than answered, more than the %d wrk can leave in flight\n", a.mintsAllowed-mints, inFlight)
	case a.mintsAllowed > mints:
		fmt.Fprintf(w, "audit log: %d more records than answers: requests wrk left in flight when it stopped (at most %d)\n", a.mintsAllowed-mints, inFlight)
	}
	return missed, nil
}

type check struct {
	what, got, want string
	ok              bool
}

// The targets' names.
const (
	httpCeilGET  = "http ceiling GET"
	restGET      = "tokend GET /token"
	httpCeilPOST = "http ceiling POST"
	restPOST     = "tokend POST /token"
	grpcCeil     = "grpc ceiling"
	grpcMint     = "tokend gRPC Mint"
)

// cpuCheck compares the server CPU time per successful call of r and its
// ceiling: ratio at most target.
func cpuCheck(what string, r, ceil *result, target float64) check {
	ratio := float64(r.cpuPerReq()) / float64(ceil.cpuPerReq())
	return check{what: what, got: fmt.Sprintf("%.2fx", ratio), want: fmt.Sprintf("≤ %.1fx", target), ok: ratio <= target}
}

func rateCheck(what string, r, ceil *result, target float64) check {
	ratio := r.rate() / ceil.rate()
	return check{what: what, got: fmt.Sprintf("%.1f%%", 100*ratio), want: fmt.Sprintf("≥ %.0f%%", 100*target), ok: ratio >= target}
}

func perRound(w io.Writer, what string, r, ceil *result) {
	fmt.Fprintf(w, "%-49s", what)
	for i := range min(len(r.perRound), len(ceil.perRound)) {
		fmt.Fprintf(w, " %5.1f%%", 100*r.perRound[i]/ceil.perRound[i])
	}
	fmt.Fprintln(w)
}

// perRoundCPU prints the ratio of r's server CPU per call to its
// ceiling's, round by round: how much of a ratio's distance to its target
// is the noise of one slice.
func perRoundCPU(w io.Writer, what string, r, ceil *result) {
	fmt.Fprintf(w, "%-49s", what)
	for i := range min(len(r.perRoundCPU), len(ceil.perRoundCPU)) {
		if ceil.perRoundCPU[i] == 0 {
			fmt.Fprintf(w, " %6s", "-")
			continue
		}
		fmt.Fprintf(w, " %5.2fx", float64(r.perRoundCPU[i])/float64(ceil.perRoundCPU[i]))
	}
	fmt.Fprintln(w)
}

func p99Check(what string, r, ceil *result) check {
	ratio := float64(r.ok.quantile(0.99)) / float64(ceil.ok.quantile(0.99))
	return check{what: what, got: fmt.Sprintf("%.2fx", ratio), want: fmt.Sprintf("≤ %.0fx", p99Target), ok: ratio <= p99Target}
}

func printHeader(w io.Writer, o options, rest, ceil, mint *result) {
	fmt.Fprintf(w, "\nmachine: %d CPUs (%s), GOMAXPROCS %d, %s %s/%s\n",
		runtime.NumCPU(), cpuModel(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	httpGen := "the Go generator (net/http client, closed loop, one worker per connection)"
	if rest.generator == "wrk" {
		httpGen = "wrk (one thread per CPU, one request in flight per connection)"
	}
	fmt.Fprintf(w, "load: %d connections (HTTP/1.1 keep-alive) or workers (gRPC, over %d connection(s)) per target, %v warm-up + %v measured per target in %d interleaved round(s); generator and servers share the CPUs\n",
		o.concurrency, o.grpcConns, o.warmup, o.duration, o.rounds)
	grpcGen := "the Go generator (grpc-go client, closed loop)"
	if mint.generator == "ghz" {
		grpcGen = "ghz (a fixed count of calls per window, as many in flight as workers)"
	}
	fmt.Fprintf(w, "generators: HTTP: %s; gRPC: %s\n", httpGen, grpcGen)
	extra := ""
	if o.tokendArgs != "" {
		extra = "; extra flags: " + o.tokendArgs
	}
	if o.serverProcs > 0 {
		fmt.Fprintf(w, "servers: GOMAXPROCS=%d for tokend and the bare servers alike (-server-gomaxprocs)\n", o.serverProcs)
	}
	fmt.Fprintf(w, "tokend: credential auth + policy file + audit log on, --log-level warn%s; REST /token answers %d bytes, the HTTP ceiling %d\n\n", extra, rest.size, ceil.size)
}

func printTable(w io.Writer, rs []*result) {
	fmt.Fprintf(w, "%-19s %4s %9s %9s %9s %9s %7s %7s %9s %7s %8s %7s %7s\n",
		"target", "gen", "req/s", "p50", "p99", "p99.9", "errors", "CPU s", "CPU/req", "pre/req", "RSS MiB", "gen CPU", "other")
	for _, r := range rs {
		perReq, preempt := "-", "-"
		if r.okCount > 0 {
			perReq = fmtDur(r.cpuPerReq())
			preempt = fmt.Sprintf("%.2f", r.preemptPerReq())
		}
		fmt.Fprintf(w, "%-19s %4s %9.0f %9s %9s %9s %7d %7.2f %9s %7s %8.1f %7.2f %7.2f\n",
			r.name, r.generator, r.rate(), fmtDur(r.ok.quantile(0.5)), fmtDur(r.ok.quantile(0.99)), fmtDur(r.ok.quantile(0.999)),
			r.errs, r.srvCPU.Seconds(), perReq, preempt, float64(r.peakRSSKB)/1024, r.genCPU.Seconds(), r.otherCPU.Seconds())
	}
	fmt.Fprintf(w, "(gen: what drove the target; CPU s: the server process's user+system time in the measured window; CPU/req: that per answered request;\n"+
		" pre/req: the server's threads' involuntary context switches (preemptions, /proc/<pid>/task/*/status) per answered request;\n"+
		" RSS MiB: the server's peak RSS (VmHWM), tokend's covering both its APIs; gen CPU: the load generator's own CPU s;\n"+
		" other: CPU s the rest of the machine kept busy in the window, other processes and steal)\n")
	var other, avail float64
	for _, r := range rs {
		other += r.otherCPU.Seconds()
		avail += r.window.Seconds() * float64(runtime.NumCPU())
	}
	if other > 0.05*avail {
		fmt.Fprintf(w, "WARNING: other work took %.0f%% of the machine's CPU during the measured windows: the figures are noisy\n", 100*other/avail)
	}
}

func fmtDur(d time.Duration) string {
	us := float64(d) / float64(time.Microsecond)
	switch {
	case us < 10:
		return fmt.Sprintf("%.2fµs", us)
	case us < 1000:
		return fmt.Sprintf("%.0fµs", us)
	case us < 10000:
		return fmt.Sprintf("%.2fms", us/1000)
	case us < 100000:
		return fmt.Sprintf("%.1fms", us/1000)
	}
	return fmt.Sprintf("%.0fms", us/1000)
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

type auditCounts struct {
	records, mintsAllowed, dropped uint64
	size                           int64
}

// readAudit counts tokend's audit records: all, allowed mints, and the
// records its "audit-dropped" records say were lost.
func readAudit(path string) (auditCounts, error) {
	var a auditCounts
	f, err := os.Open(path)
	if err != nil {
		return a, fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		line := s.Bytes()
		a.records++
		a.size += int64(len(line)) + 1
		var r struct {
			Event, Decision, Reason string
		}
		if err := json.Unmarshal(line, &r); err != nil {
			return a, fmt.Errorf("audit log: record %d: %w", a.records, err)
		}
		switch {
		case r.Event == "mint" && r.Decision == "allow":
			a.mintsAllowed++
		case r.Event == "audit-dropped":
			var n uint64
			fmt.Sscanf(r.Reason, "%d", &n)
			a.dropped += n
		}
	}
	if err := s.Err(); err != nil {
		return a, fmt.Errorf("audit log: %w", err)
	}
	return a, nil
}

func lastLines(s string, n int) string {
	lines := strings.SplitAfter(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "") + "\n"
}
