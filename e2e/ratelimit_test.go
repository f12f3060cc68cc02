package e2e

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The rate limit shared by the replicas of TestRateLimitAcrossReplicas:
// all anonymous callers of development mode are one principal.
const (
	sharedLimit = 60 // mints per second, for the whole deployment
	// tolerance is how far the accepted rate across the replicas may be
	// from sharedLimit.
	tolerance = 0.10
	// measureWindow is how long each accepted rate is measured.
	measureWindow = 4 * time.Second
)

// mintLoad sends GET /token to one replica from a few workers, each at
// most one request every 20 ms (so about 150 requests per second offered
// to each replica, several times its share of sharedLimit), until stopped.
type mintLoad struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	codes  map[int]int // HTTP status (0: no response) -> count
}

func startLoad(r *replica) *mintLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &mintLoad{cancel: cancel, codes: map[int]int{}}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	for range 4 {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				code := 0
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.httpAddr+"/token", nil)
				if resp, err := client.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				} else if ctx.Err() != nil {
					return // stopped while the request was under way
				}
				l.mu.Lock()
				l.codes[code]++
				l.mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(20 * time.Millisecond):
				}
			}
		})
	}
	return l
}

func (l *mintLoad) stop() map[int]int {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.codes
}

// mintsOK reads tokend_mints_total{result="ok"} of a replica, summed over
// its other labels.
func mintsOK(t *testing.T, r *replica) float64 {
	t.Helper()
	resp, err := http.Get("http://" + r.httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics of %s: %v", r.name, err)
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "tokend_mints_total{") || !strings.Contains(line, `result="ok"`) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		total += v
	}
	return total
}

// acceptedRate measures the mints the replicas accepted together over
// measureWindow, per second, from their own counters (not from the
// client's timing): each replica's count over the time between its two
// scrapes, summed.
func acceptedRate(t *testing.T, rs []*replica) (float64, []float64) {
	t.Helper()
	before := make([]float64, len(rs))
	at := make([]time.Time, len(rs))
	for i, r := range rs {
		at[i] = time.Now()
		before[i] = mintsOK(t, r)
	}
	time.Sleep(measureWindow)
	per := make([]float64, len(rs))
	total := 0.0
	for i, r := range rs {
		n := mintsOK(t, r) - before[i]
		per[i] = n / time.Since(at[i]).Seconds()
		total += per[i]
	}
	return total, per
}

// checkRate fails the test unless rate is within tolerance of
// sharedLimit.
func checkRate(t *testing.T, what string, rate float64, per []float64) {
	t.Helper()
	t.Logf("%s: %.1f mints/s accepted across the replicas (each: %.1f), limit %d", what, rate, per, sharedLimit)
	if lo, hi := sharedLimit*(1-tolerance), sharedLimit*(1+tolerance); rate < lo || rate > hi {
		t.Errorf("%s: %.1f mints/s accepted across the replicas (each: %.1f), want %d ± %.0f%% (%.0f to %.0f)",
			what, rate, per, sharedLimit, tolerance*100, lo, hi)
	}
}

// waitReplicas waits until every replica's /readyz counts want replicas.
func waitReplicas(t *testing.T, rs []*replica, want int, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		all := true
		for _, r := range rs {
			if _, body := getJSON("http://" + r.httpAddr + "/readyz"); body["replicas"] != strconv.Itoa(want) {
				all = false
			}
		}
		if all {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			for _, r := range rs {
				_, body := getJSON("http://" + r.httpAddr + "/readyz")
				t.Logf("%s /readyz: %v", r.name, body)
			}
			t.Fatalf("the replicas do not all count %d replicas after %v", want, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRateLimitAcrossReplicas: tokend processes on one PostgreSQL store
// under the same load accept, together, the configured rate (within 10%)
// with two replicas and with three, and again within 5 s after one is
// killed with SIGKILL (its heartbeat expires; the others take its share).
// A replica stopped cleanly is counted out before its heartbeat expires.
func TestRateLimitAcrossReplicas(t *testing.T) {
	store := freshSchema(t, postgresDSN(t))
	t.Setenv("TOKEND_RATE_LIMIT_PRINCIPAL", strconv.Itoa(sharedLimit))
	// A burst of a few tenths of a second of the rate: a replica whose
	// load stalls for less than that (a loaded machine) loses nothing.
	t.Setenv("TOKEND_RATE_LIMIT_BURST", "30")
	var a, b, c *replica
	defer func() {
		// What the replicas said about their heartbeats, for the record.
		for _, r := range []*replica{a, b, c} {
			if r == nil {
				continue
			}
			for _, line := range strings.Split(r.log.String(), "\n") {
				if strings.Contains(line, "replica") && (strings.Contains(line, "heartbeat") || strings.Contains(line, "replicas changed")) {
					t.Logf("%s: %s", r.name, line)
				}
			}
		}
	}()
	var wg sync.WaitGroup
	wg.Go(func() { a = startReplica(t, "replica-a", store) })
	wg.Go(func() { b = startReplica(t, "replica-b", store) })
	wg.Wait()
	if a == nil || b == nil {
		t.FailNow()
	}
	waitReplicas(t, []*replica{a, b}, 2, 5*time.Second)

	loadA, loadB := startLoad(a), startLoad(b)
	defer loadA.stop()
	defer loadB.stop()
	time.Sleep(time.Second) // the initial bursts are spent
	rate, per := acceptedRate(t, []*replica{a, b})
	checkRate(t, "two replicas", rate, per)

	c = startReplica(t, "replica-c", store)
	loadC := startLoad(c)
	waitReplicas(t, []*replica{a, b, c}, 3, 5*time.Second)
	time.Sleep(time.Second)
	rate, per = acceptedRate(t, []*replica{a, b, c})
	checkRate(t, "three replicas", rate, per)

	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill -9 replica-c: %v", err)
	}
	killed := time.Now()
	codes := loadC.stop()
	t.Logf("replica-c killed; its load saw %v", codes)
	waitReplicas(t, []*replica{a, b}, 2, 5*time.Second-time.Since(killed))
	t.Logf("both remaining replicas count 2 replicas %v after the kill", time.Since(killed).Round(10*time.Millisecond))
	time.Sleep(5*time.Second - time.Since(killed))
	rate, per = acceptedRate(t, []*replica{a, b})
	checkRate(t, "two replicas, from 5 s after the third was killed", rate, per)
	for _, l := range []*mintLoad{loadA, loadB} {
		codes := l.stop()
		if codes[http.StatusTooManyRequests] == 0 || codes[http.StatusOK] == 0 || len(codes) != 2 {
			t.Errorf("load statuses = %v, want only 200 and 429 (the load must exceed the limit)", codes)
		}
	}

	// A replica that stops cleanly (SIGINT) removes its heartbeat: the
	// other counts it out at its next beat, well before the 3 s expiry.
	if err := b.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("SIGINT replica-b: %v", err)
	}
	stopped := time.Now()
	waitReplicas(t, []*replica{a}, 1, 2500*time.Millisecond)
	t.Logf("replica-a counts 1 replica %v after replica-b was stopped", time.Since(stopped).Round(10*time.Millisecond))
	// That could also be b's heartbeat expiring: check that b deleted its
	// row. The killed replica-c's row stays (expired) for a minute, so the
	// table holds a's and c's rows, and b's only if b did not remove it.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM replicas`).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d heartbeat rows 5 s after replica-b was stopped, want 2 (a's, and the killed c's): b did not remove its own", rows)
		}
	}
}
