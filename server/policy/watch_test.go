package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// rulePolicy allows credential callers any identity under a rule named
// name. Every proper prefix of it is invalid, so even a reader that
// catches an in-place write half done never installs a different policy.
func rulePolicy(name string) string {
	return fmt.Sprintf("rules:\n- name: %s\n  kinds: [credential]\n  applications: [\"*\"]\n  identities: {pattern: \".*\"}\n", name)
}

const badPolicy = "rules:\n- name: broken\n  kinds: [credential]\n  applications: [\"*\"]\n  identities: {pattern: \"(\"}\n"

var ci = Caller{Kind: KindCredential, Name: "ci"}

func writeAtomic(t testing.TB, path, data string) {
	t.Helper()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".policy-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
}

func ruleOf(h *Holder) string {
	r := ReachOf(app1, "anyone", nil)
	return h.Decide(ci, &r, 60).Rule
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type errSink struct {
	mu   sync.Mutex
	errs []error
}

func (s *errSink) add(err error) { s.mu.Lock(); s.errs = append(s.errs, err); s.mu.Unlock() }
func (s *errSink) len() int      { s.mu.Lock(); defer s.mu.Unlock(); return len(s.errs) }
func (s *errSink) last() error   { s.mu.Lock(); defer s.mu.Unlock(); return s.errs[len(s.errs)-1] }

func TestWatchInitialLoad(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := Watch(ctx, filepath.Join(dir, "missing.yaml"), nil); err == nil {
		t.Error("Watch of a missing file succeeded")
	}
	bad := filepath.Join(dir, "bad.yaml")
	writeAtomic(t, bad, badPolicy)
	if _, err := Watch(ctx, bad, nil); err == nil || !strings.Contains(err.Error(), bad+":5: rules[0].identities.pattern") {
		t.Errorf("Watch(bad) = %v", err)
	}
	good := filepath.Join(dir, "good.yaml")
	writeAtomic(t, good, rulePolicy("a"))
	h, err := Watch(ctx, good, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := ruleOf(h); got != "a" {
		t.Errorf("rule = %q", got)
	}
}

func TestWatchPollsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeAtomic(t, path, rulePolicy("a"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sink errSink
	h, err := watch(ctx, path, sink.add, 5*time.Millisecond, false)
	if err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name, data string
		inPlace    bool
		want       string // rule in force afterwards
		wantErr    string // error reported, if any
	}{
		{"rename", rulePolicy("b"), false, "b", ""},
		{"in place", rulePolicy("c"), true, "c", ""},
		{"bad keeps old", badPolicy, false, "c", "rules[0].identities.pattern: invalid regexp"},
		{"empty keeps old", "", true, "c", "empty document"},
		{"recovers", rulePolicy("d"), true, "d", ""},
	}
	for _, s := range steps {
		errsBefore := sink.len()
		reloadsBefore := h.Reloads()
		if s.inPlace {
			if err := os.WriteFile(path, []byte(s.data), 0o600); err != nil {
				t.Fatal(err)
			}
		} else {
			writeAtomic(t, path, s.data)
		}
		if s.wantErr != "" {
			waitFor(t, s.name+": error report", func() bool { return sink.len() > errsBefore })
			if err := sink.last(); !strings.Contains(err.Error(), s.wantErr) || !strings.HasPrefix(err.Error(), path+":") {
				t.Errorf("%s: reported %v", s.name, err)
			}
		} else {
			waitFor(t, s.name+": reload", func() bool { return h.Reloads() > reloadsBefore })
		}
		if got := ruleOf(h); got != s.want {
			t.Errorf("%s: rule in force = %q; want %q", s.name, got, s.want)
		}
	}

	// A bad file is reported once, not on every poll. (Counts are relative:
	// a poll may also have caught an in-place write above half done.)
	before := sink.len()
	writeAtomic(t, path, badPolicy)
	waitFor(t, "error report", func() bool { return sink.len() > before })
	n := sink.len()
	time.Sleep(50 * time.Millisecond)
	if got := sink.len(); got != n {
		t.Errorf("bad file reported %d more times; want once", got-n)
	}
	// Reload forces a read and reports again.
	if err := h.Reload(); err == nil {
		t.Error("Reload of a bad file succeeded")
	}
	if got := sink.len(); got != n+1 {
		t.Errorf("forced reload: %d reports; want %d", got, n+1)
	}

	// Removing the file keeps the policy.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "missing file report", func() bool { return sink.len() == n+2 })
	if err := sink.last(); !os.IsNotExist(errors.Unwrap(err)) && !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file reported as %v", err)
	}
	if got := ruleOf(h); got != "d" {
		t.Errorf("after removal rule = %q", got)
	}
}

func TestWatchSIGHUP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeAtomic(t, path, rulePolicy("a"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Polling is too slow to matter: only SIGHUP reloads.
	h, err := watch(ctx, path, nil, time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, path, rulePolicy("b"))
	if got := ruleOf(h); got != "a" {
		t.Fatalf("reloaded without a signal: %q", got)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reload on SIGHUP", func() bool { return ruleOf(h) == "b" })
}

// TestWatchConcurrentDecide decides from many goroutines while the file is
// rewritten (atomically, in place, and with bad versions) many times:
// every decision is made by one whole policy or the other.
func TestWatchConcurrentDecide(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeAtomic(t, path, rulePolicy("a"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var reported atomic.Int64
	h, err := watch(ctx, path, func(error) { reported.Add(1) }, time.Millisecond, false)
	if err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var decisions atomic.Int64
	errs := make(chan string, 16)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := ReachOf(app1, "anyone", nil)
			for {
				select {
				case <-stop:
					return
				default:
				}
				d := h.Decide(ci, &r, 60)
				decisions.Add(1)
				runtime.Gosched() // let the writer and the poller run on small machines
				if !d.Allowed || (d.Rule != "a" && d.Rule != "b") {
					select {
					case errs <- fmt.Sprintf("%+v", d):
					default:
					}
				}
			}
		}()
	}

	start := time.Now()
	for i := range 200 {
		data := rulePolicy([]string{"a", "b"}[i%2])
		switch {
		case i%10 == 9:
			data = badPolicy
			fallthrough
		case i%3 == 0:
			writeAtomic(t, path, data)
		default:
			if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if i%5 == 0 {
			_ = h.Reload() // racing the poller is fine too
		}
		time.Sleep(100 * time.Microsecond)
	}
	t.Logf("writes done after %v", time.Since(start))
	writeAtomic(t, path, rulePolicy("b"))
	waitFor(t, "final policy", func() bool { return ruleOf(h) == "b" })
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("bad decision during reloads: %s", e)
	}
	if decisions.Load() == 0 || h.Reloads() == 0 {
		t.Errorf("%d decisions, %d reloads", decisions.Load(), h.Reloads())
	}
	t.Logf("%d decisions, %d reloads, %d load errors reported", decisions.Load(), h.Reloads(), reported.Load())
}

func TestHolderStore(t *testing.T) {
	h := NewHolder(mustParse(t, rulePolicy("a")))
	if got := ruleOf(h); got != "a" {
		t.Errorf("rule = %q", got)
	}
	h.Store(mustParse(t, rulePolicy("b")))
	if got := ruleOf(h); got != "b" {
		t.Errorf("rule = %q", got)
	}
	if err := h.Reload(); err == nil {
		t.Error("Reload without a file succeeded")
	}
}
