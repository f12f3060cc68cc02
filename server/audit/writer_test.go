package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// logConcurrently logs goroutines×each records, each with a distinct
// request id.
func logConcurrently(l *Logger, goroutines, each int) {
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r := fullRecord()
				r.RequestID = fmt.Sprint(g, "-", i)
				l.Log(r)
				if i%50 == 0 {
					time.Sleep(100 * time.Microsecond) // let rotations interleave
				}
			}
		}()
	}
	wg.Wait()
}

// countRecords reads every file and checks each line is a whole record;
// it returns how many times each request id occurs.
func countRecords(t *testing.T, files []string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range readLines(t, data) { // fails on a torn line
			if m["event"] == EventDropped {
				t.Errorf("%s: %v", f, m)
				continue
			}
			seen[m["request_id"].(string)]++
		}
	}
	return seen
}

func checkAllOnce(t *testing.T, seen map[string]int, goroutines, each int) {
	t.Helper()
	for g := range goroutines {
		for i := range each {
			if id := fmt.Sprint(g, "-", i); seen[id] != 1 {
				t.Fatalf("record %s written %d times; want once (%d distinct records)", id, seen[id], len(seen))
			}
		}
	}
	if len(seen) != goroutines*each {
		t.Errorf("%d distinct records; want %d", len(seen), goroutines*each)
	}
}

func TestSizeRotationUnderLoadLosesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	const maxBytes = 32 << 10
	l, err := Open(path, WithQueueSize(1<<16), WithRotation(maxBytes, 1000))
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 8, 1000
	logConcurrently(l, goroutines, each)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l.Dropped() != 0 || l.Failed() != 0 || l.Written() != goroutines*each {
		t.Fatalf("written %d, dropped %d, failed %d; want %d, 0, 0", l.Written(), l.Dropped(), l.Failed(), goroutines*each)
	}
	files, _ := filepath.Glob(path + "*")
	if len(files) < 10 {
		t.Fatalf("%d files after writing about %d KiB with --audit-max-bytes %d; want rotations", len(files), goroutines*each*400>>10, maxBytes)
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > maxBytes {
			t.Errorf("%s is %d bytes, over %d", f, fi.Size(), maxBytes)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", f, fi.Mode().Perm())
		}
	}
	checkAllOnce(t, countRecords(t, files), goroutines, each)
}

func TestSizeRotationKeepsN(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := Open(path, WithRotation(4<<10, 2))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		r := fullRecord()
		r.RequestID = fmt.Sprint(i)
		l.Log(r)
		l.Flush()
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	want := []string{path, path + ".1", path + ".2"}
	if strings.Join(files, " ") != strings.Join(want, " ") {
		t.Errorf("files = %v; want %v", files, want)
	}
	// The newest records are in the current file, the oldest kept in .2.
	seen := countRecords(t, []string{path})
	if seen["199"] != 1 {
		t.Errorf("the last record is not in the current file")
	}
}

func TestReopenAfterRenameUnderLoadLosesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := Open(path, WithQueueSize(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, rotations = 8, 5
	// Log until the rotations are done, each goroutine counting its own.
	stop := make(chan struct{})
	counts := make([]int, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					counts[g] = i
					return
				default:
				}
				r := fullRecord()
				r.RequestID = fmt.Sprint(g, "-", i)
				l.Log(r)
				if i%20 == 0 {
					time.Sleep(100 * time.Microsecond) // stay under the queue's size
				}
			}
		}()
	}
	files := []string{path}
	// What logrotate does (rename, then SIGHUP), five times.
	for i := range rotations {
		time.Sleep(20 * time.Millisecond)
		// Renamed only once records reached it, so that every file
		// holds some however slowly the writer runs (on a busy
		// machine it may write nothing for 20 ms).
		waitForRecords(t, path)
		old := fmt.Sprintf("%s-%d", path, i)
		if err := os.Rename(path, old); err != nil {
			t.Fatal(err)
		}
		files = append(files, old)
		l.Reopen()
	}
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l.Dropped() != 0 {
		t.Fatalf("%d records dropped", l.Dropped())
	}
	seen := countRecords(t, files)
	total := 0
	for g, n := range counts {
		total += n
		for i := range n {
			if id := fmt.Sprint(g, "-", i); seen[id] != 1 {
				t.Fatalf("record %s written %d times; want once", id, seen[id])
			}
		}
	}
	if len(seen) != total {
		t.Errorf("%d distinct records for %d logged", len(seen), total)
	}
	// Each file got records: the reopens happened under load.
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Errorf("%s is empty or missing (%v)", f, err)
		}
	}
	t.Logf("%d records across %d files", total, len(files))
}

func TestReopenWhenIdle(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Log(Record{RequestID: "before"})
	l.Flush()
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	l.Reopen()
	// The idle writer reopens at once: the new file appears with no
	// record written.
	waitFor(t, path)
	l.Log(Record{RequestID: "after"})
	l.Flush()
	if seen := countRecords(t, []string{path}); seen["after"] != 1 || len(seen) != 1 {
		t.Errorf("new file holds %v; want the record after", seen)
	}
}

// waitForRecords waits until the file at path exists and is not empty.
func waitForRecords(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Error("no record reached the audit file")
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// waitFor waits until the file at path exists (the writer reopened it).
func waitFor(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Error("the audit file was not opened again")
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// failing fails every write after the first ok ones.
type failing struct {
	ok     atomic.Int32
	writes atomic.Int32
	buf    bytes.Buffer
}

func (f *failing) Write(p []byte) (int, error) {
	f.writes.Add(1)
	if f.ok.Add(-1) < 0 {
		return 0, syscall.ENOSPC
	}
	return f.buf.Write(p)
}

// stalledFIFO returns the path of a FIFO with a reader that reads
// nothing until start is called; result waits for the writer to close
// and returns what was written.
func stalledFIFO(t *testing.T) (path string, start func(), result func() []byte) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "audit.fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var data []byte
	done := make(chan struct{})
	start = func() {
		once.Do(func() {
			go func() {
				defer close(done)
				data, _ = io.ReadAll(r) // r is pollable: ReadAll waits for EOF
			}()
		})
	}
	t.Cleanup(func() { r.Close() })
	return path, start, func() []byte { start(); <-done; return data }
}

func TestCommit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		required bool
		ok       int32 // writes that succeed before the disk is full
		wantErr  bool
	}{
		{"required written", true, 1000, false},
		{"required write fails", true, 0, true},
		{"not required write fails", false, 0, false},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			w := &failing{}
			w.ok.Store(tc.ok)
			l := New(w, WithRequired(tc.required))
			err := l.Commit(context.Background(), Record{Event: EventMint, RequestID: "r1"})
			if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, ErrUnavailable)) {
				t.Errorf("Commit = %v; want error %v (ErrUnavailable)", err, tc.wantErr)
			}
			l.Close()
			if tc.ok > 0 {
				if l.Written() != 1 || !strings.Contains(w.buf.String(), `"request_id":"r1"`) {
					t.Errorf("written %d, file %q", l.Written(), w.buf.String())
				}
			} else if l.Failed() != 1 {
				t.Errorf("Failed = %d; want 1", l.Failed())
			}
		})
	}
}

// TestCommitOnStalledFIFO: with --audit-required, a mint whose record
// cannot be written (the reader of the FIFO reads nothing) is refused,
// and every record whose Commit succeeded is in the log; without it,
// Commit never waits and the records that do not fit are dropped, counted.
func TestCommitOnStalledFIFO(t *testing.T) {
	for _, required := range []bool{true, false} {
		t.Run(fmt.Sprint("required_", required), func(t *testing.T) {
			path, startReading, result := stalledFIFO(t)
			l, err := Open(path, WithRequired(required), WithQueueSize(64), WithCommitTimeout(200*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			var (
				mu       sync.Mutex
				accepted []string
				refused  int
			)
			var wg sync.WaitGroup
			start := time.Now()
			for g := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 200; i++ {
						id := fmt.Sprint(g, "-", i)
						r := fullRecord()
						r.RequestID = id
						r.Reason = strings.Repeat("x", 900) // fill the pipe sooner
						err := l.Commit(context.Background(), r)
						mu.Lock()
						if err == nil {
							accepted = append(accepted, id)
						} else {
							if !errors.Is(err, ErrUnavailable) {
								t.Errorf("Commit = %v; want ErrUnavailable", err)
							}
							refused++
						}
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			startReading()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			data := result()
			seen := map[string]bool{}
			for _, m := range readLines(t, data) {
				if id, ok := m["request_id"].(string); ok {
					seen[id] = true
				}
			}
			if required {
				if refused == 0 {
					t.Fatalf("no Commit refused on a stalled FIFO (%d accepted)", len(accepted))
				}
				for _, id := range accepted {
					if !seen[id] {
						t.Fatalf("record %s was accepted but is not in the log", id)
					}
				}
				if l.Dropped()+l.Failed() == 0 {
					t.Errorf("dropped %d, failed %d: refused records not counted", l.Dropped(), l.Failed())
				}
			} else {
				if refused != 0 {
					t.Errorf("%d Commits refused without WithRequired", refused)
				}
				if l.Dropped() == 0 {
					t.Errorf("nothing dropped on a stalled FIFO")
				}
				if elapsed > 5*time.Second {
					t.Errorf("Commit without WithRequired waited: %v", elapsed)
				}
				if uint64(len(seen))+l.Dropped() != 16*200 {
					t.Errorf("%d written + %d dropped != %d", len(seen), l.Dropped(), 16*200)
				}
			}
		})
	}
}

// TestCloseDoesNotHangOnAStalledWriter: shutdown goes on when the
// destination accepts no writes.
func TestCloseDoesNotHangOnAStalledWriter(t *testing.T) {
	g := &gate{open: make(chan struct{}), waiting: make(chan struct{})}
	defer close(g.open)
	l := New(g, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	l.closeWait = 100 * time.Millisecond
	l.Log(Record{Event: EventMint})
	<-g.waiting // the writer is stuck writing it
	start := time.Now()
	err := l.Close()
	if err == nil || !strings.Contains(err.Error(), "not all written") {
		t.Errorf("Close = %v; want an error saying the destination is stalled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v", d)
	}
}

// countingWriter counts writes and bytes, and keeps nothing (a benchmark
// must not measure a buffer growing).
type countingWriter struct {
	writes atomic.Int64
	bytes  atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes.Add(1)
	c.bytes.Add(int64(len(p)))
	return len(p), nil
}

// TestGroupCommit: concurrent Commits share writes.
func TestGroupCommit(t *testing.T) {
	w := &countingWriter{}
	l := New(w, WithRequired(true))
	const goroutines, each = 64, 50
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if err := l.Commit(context.Background(), fullRecord()); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	writes := w.writes.Load()
	l.Close()
	if n := l.Written(); n != goroutines*each {
		t.Fatalf("written %d; want %d", n, goroutines*each)
	}
	if writes*4 > goroutines*each {
		t.Errorf("%d writes for %d committed records; want a write per batch, not per record", writes, goroutines*each)
	}
	t.Logf("%d records in %d writes", goroutines*each, writes)
}

func TestDropsAreLoggedRateLimited(t *testing.T) {
	var logBuf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logBuf, mu: &mu}, nil))
	g := &gate{open: make(chan struct{}), waiting: make(chan struct{})}
	l := New(g, WithQueueSize(4), WithLogger(log))
	l.Log(Record{Event: EventMint, RequestID: "first"})
	<-g.waiting
	for range 99 {
		l.Log(Record{Event: EventMint})
	}
	mu.Lock()
	lines := strings.Count(logBuf.String(), "audit records lost")
	mu.Unlock()
	if lines != 1 {
		t.Errorf("%d warnings for 95 drops; want 1 (rate limited):\n%s", lines, logBuf.String())
	}
	close(g.open)
	l.Close()
	out := logBuf.String()
	if strings.Count(out, "audit records lost") != 2 || !strings.Contains(out, "dropped=1 ") || !strings.Contains(out, "dropped=94 ") || !strings.Contains(out, "dropped_total=95") {
		t.Errorf("warnings do not count the drops (want 1, then 94 more at Close):\n%s", out)
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// BenchmarkCommit is a mint's wait for its record with --audit-required,
// many mints in parallel (group commit); writes/op says how many records
// share a write.
func BenchmarkCommit(b *testing.B) { benchmarkCommit(b, 16) }

// BenchmarkCommitSerial is one Commit at a time: every record is a batch
// of its own, so it pays the writer's wake-up and the batch's signal.
func BenchmarkCommitSerial(b *testing.B) { benchmarkCommit(b, 0) }

// BenchmarkCommitMany is BenchmarkCommit with 256 goroutines per CPU, as
// under a load generator with many connections.
func BenchmarkCommitMany(b *testing.B) { benchmarkCommit(b, 256) }

func benchmarkCommit(b *testing.B, parallelism int) {
	w := &countingWriter{}
	l := New(w, WithRequired(true))
	defer l.Close()
	r := fullRecord()
	b.ReportAllocs()
	if parallelism == 0 {
		for range b.N {
			if err := l.Commit(context.Background(), r); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		b.SetParallelism(parallelism)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := l.Commit(context.Background(), r); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.ReportMetric(float64(w.writes.Load())/float64(b.N), "writes/op")
}

// BenchmarkLogFlushed logs in chunks the queue holds, flushing after each:
// the handoff and the writer's encoding and writing, per record, without
// drops.
func BenchmarkLogFlushed(b *testing.B) {
	l := New(io.Discard)
	defer l.Close()
	r := Record{Time: time.Now(), Event: EventMint, Principal: "billing", Identity: "agent_7", JTI: "SK0123-1", ClientAddr: "10.0.0.1:5", RequestID: "r", Code: "OK"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		l.Log(r)
		if i%1024 == 1023 {
			l.Flush()
		}
	}
	l.Flush()
	if l.Dropped() != 0 {
		b.Fatalf("dropped %d", l.Dropped())
	}
}

// TestOpenFIFOWithoutReader: a FIFO nobody has opened for reading fails
// Open at once with an error saying so (a blocking open would hang tokend
// at start with no word), and a Reopen onto one while the first reader is
// still there keeps writing to it; with a reader, records go through.
func TestOpenFIFOWithoutReader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		l, err := Open(path)
		if err == nil {
			l.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "a FIFO with no reader") {
			t.Fatalf("Open(FIFO without a reader) = %v; want an error saying it has no reader", err)
		}
	case <-time.After(5 * time.Second):
		// Unblock the open so the goroutine ends, then fail.
		r, _ := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		defer r.Close()
		t.Fatal("Open(FIFO without a reader) still waiting after 5 s")
	}

	// With a reader: records go through, and a Reopen (SIGHUP) opens it
	// again without waiting.
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	l, err := Open(path)
	if err != nil {
		t.Fatalf("Open(FIFO with a reader) = %v", err)
	}
	// Read only once the Logger holds the write end: a FIFO that no
	// writer has opened yet reads as at its end, and the copy would stop
	// before the first record (seen under -race -shuffle in CI). The
	// Logger keeps a write end open from here to Close, across Reopen
	// (it opens the new one before closing the old).
	var buf bytes.Buffer
	read := make(chan struct{})
	go func() { io.Copy(&buf, r); close(read) }()
	l.Log(Record{Event: EventMint, RequestID: "before"})
	l.Flush()
	l.Reopen()
	l.Log(Record{Event: EventMint, RequestID: "after"})
	if err := l.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	<-read
	for _, id := range []string{"before", "after"} {
		if !strings.Contains(buf.String(), `"request_id":"`+id+`"`) {
			t.Errorf("record %s not read from the FIFO: %q", id, buf.String())
		}
	}
}

// TestRotationFailsLosesNothing: when the file cannot be rotated (here
// path.1 is a directory that is not empty, as a directory the process
// may not write to would fail the rename), the Logger says so and writes
// on to the current file: every record is there, whole, once.
func TestRotationFailsLosesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	if err := os.MkdirAll(filepath.Join(path+".1", "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var mu sync.Mutex
	l, err := Open(path, WithRotation(2048, 1), WithLogger(slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))))
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	for i := range n {
		l.Log(Record{Event: EventMint, RequestID: fmt.Sprintf("r%04d", i)})
		if i%50 == 0 {
			l.Flush()
		}
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	seen := map[string]bool{}
	for _, line := range lines {
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("torn line %q: %v", line, err)
		}
		seen[r.RequestID] = true
	}
	if len(seen) != n || len(lines) != n || l.Written() != n {
		t.Errorf("%d lines, %d distinct records, Written %d; want %d each", len(lines), len(seen), l.Written(), n)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "audit log rotation failed") {
		t.Errorf("no rotation failure logged:\n%s", logs.String())
	}
}

// heldWriter blocks each write until released, counting writes and
// keeping what was written.
type heldWriter struct {
	release chan struct{} // a receive lets one write through
	writing chan struct{} // gets a value as each write starts
	writes  atomic.Int64
	mu      sync.Mutex
	buf     bytes.Buffer
}

func newHeldWriter() *heldWriter {
	return &heldWriter{release: make(chan struct{}), writing: make(chan struct{}, 100)}
}

func (h *heldWriter) Write(p []byte) (int, error) {
	h.writes.Add(1)
	h.writing <- struct{}{}
	<-h.release
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.buf.Write(p)
}

// queued is how many records wait in the current batch.
func (l *Logger) queued() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.cur.ends)
}

// TestCommitsReleasedByOneWrite: the Commits that gather while the
// writer is busy are all released, with nil, by the one write of their
// batch, and only after it returned.
func TestCommitsReleasedByOneWrite(t *testing.T) {
	h := newHeldWriter()
	l := New(h, WithRequired(true))
	defer l.Close()
	first := make(chan error, 1)
	go func() { first <- l.Commit(context.Background(), Record{Event: EventMint, RequestID: "first"}) }()
	<-h.writing // the writer is in the first write

	const n = 50
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- l.Commit(context.Background(), Record{Event: EventMint, RequestID: fmt.Sprint("r", i)})
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d Commits queued", l.queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-errs:
		t.Fatalf("a Commit returned (%v) before its record was written", err)
	case <-time.After(20 * time.Millisecond):
	}
	h.release <- struct{}{} // the first write returns
	if err := <-first; err != nil {
		t.Fatalf("first Commit = %v", err)
	}
	<-h.writing // the second write, of the 50, has started
	select {
	case err := <-errs:
		t.Fatalf("a Commit returned (%v) before its record was written", err)
	case <-time.After(20 * time.Millisecond):
	}
	h.release <- struct{}{}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("Commit = %v", err)
		}
	}
	if w := h.writes.Load(); w != 2 {
		t.Errorf("%d writes for 1+%d records; want 2 (one per batch)", w, n)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if got := len(readLines(t, h.buf.Bytes())); got != n+1 {
		t.Errorf("%d records written; want %d", got, n+1)
	}
}

// TestCommitGivesUp: a Commit on a stalled destination fails with
// ErrUnavailable after the commit timeout or when its context ends, and
// its batch's timer does not fail a later Commit.
func TestCommitGivesUp(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ctx    func() (context.Context, context.CancelFunc)
		expect string
	}{
		{"timeout", func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }, "not written within"},
		{"context_ends", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}, "before the request ended"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHeldWriter()
			l := New(h, WithRequired(true), WithCommitTimeout(100*time.Millisecond))
			l.Log(Record{Event: EventMint, RequestID: "stuck"})
			<-h.writing
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			err := l.Commit(ctx, Record{Event: EventMint, RequestID: "late"})
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tc.expect) {
				t.Errorf("Commit on a stalled writer = %v; want ErrUnavailable, %q", err, tc.expect)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Commit took %v", d)
			}
			close(h.release) // the destination catches up
			for range 3 {
				if err := l.Commit(context.Background(), Record{Event: EventMint, RequestID: "after"}); err != nil {
					t.Errorf("Commit after the stall = %v", err)
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			// The record of the Commit that gave up is written late.
			if got := len(readLines(t, h.buf.Bytes())); got != 5 {
				t.Errorf("%d records written; want 5", got)
			}
		})
	}
}

// stalledCommit returns a fail-closed Logger (commit timeout timeout)
// whose writer is stuck in the write of a first record ("stuck") on h,
// and a Commit of a second ("first") queued behind it, whose result
// arrives on first.
func stalledCommit(timeout time.Duration) (*heldWriter, *Logger, chan error) {
	h := newHeldWriter()
	l := New(h, WithRequired(true), WithCommitTimeout(timeout))
	l.Log(Record{Event: EventMint, RequestID: "stuck"})
	<-h.writing // the writer is stuck in its first write
	first := make(chan error, 1)
	go func() { first <- l.Commit(context.Background(), Record{Event: EventMint, RequestID: "first"}) }()
	for l.queued() < 1 {
		time.Sleep(time.Millisecond)
	}
	return h, l, first
}

// TestCommitWatchesContextOnceSlow: a Commit watches its context only
// once its batch has waited ctxWatchDelay. A Commit that joins a batch
// already slow watches it at once and gives up when its context ends,
// long before the commit timeout, while the other Commits of the batch
// wait on and succeed once the destination catches up.
func TestCommitWatchesContextOnceSlow(t *testing.T) {
	h, l, first := stalledCommit(30 * time.Second)
	// The batch turns slow after ctxWatchDelay: wait until its signal is
	// the one with watch set.
	for {
		l.mu.Lock()
		watching := l.cur.sig != nil && l.cur.sig.watch
		l.mu.Unlock()
		if watching {
			break
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	late := make(chan error, 1)
	go func() { late <- l.Commit(ctx, Record{Event: EventMint, RequestID: "late"}) }()
	for l.queued() < 2 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-late:
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "before the request ended") {
			t.Errorf("Commit whose context ended = %v; want ErrUnavailable, before the request ended", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a Commit joining a slow batch did not give up when its context ended")
	}
	select {
	case err := <-first:
		t.Fatalf("the first Commit returned (%v) before its record was written", err)
	default:
	}
	close(h.release) // the destination catches up
	if err := <-first; err != nil {
		t.Errorf("first Commit = %v, want nil", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// stuck, first, and late (written after its Commit gave up).
	if got := len(readLines(t, h.buf.Bytes())); got != 3 {
		t.Errorf("%d records written; want 3", got)
	}
}

// TestCommitTimeoutOfTheBatch: the commit timeout is the batch's, started
// by its first Commit. When it ends, the batch's Commits fail, but a Flush
// waiting on the same batch waits on for the write, and a Commit queued
// in the batch after that gets a timeout of its own, not an early
// failure.
func TestCommitTimeoutOfTheBatch(t *testing.T) {
	const timeout = 150 * time.Millisecond
	h, l, first := stalledCommit(timeout)
	flushed := make(chan struct{})
	go func() { l.Flush(); close(flushed) }()

	if err := <-first; !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "not written within") {
		t.Fatalf("Commit on a stalled writer = %v; want ErrUnavailable, not written within", err)
	}
	start := time.Now()
	err := l.Commit(context.Background(), Record{Event: EventMint, RequestID: "second"})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "not written within") {
		t.Errorf("second Commit on a stalled writer = %v; want ErrUnavailable, not written within", err)
	}
	if d := time.Since(start); d < timeout*2/3 {
		t.Errorf("second Commit of the batch gave up after %v; want its own timeout (%v)", d, timeout)
	}
	select {
	case <-flushed:
		t.Fatal("Flush returned before the batch it waits on was written")
	default:
	}

	close(h.release) // the destination catches up
	select {
	case <-flushed:
	case <-time.After(5 * time.Second):
		t.Fatal("Flush still waiting after the writes")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// The records of the Commits that gave up are written late.
	if got := len(readLines(t, h.buf.Bytes())); got != 3 {
		t.Errorf("%d records written; want 3", got)
	}
}

// TestAllocations: in steady state a Log allocates nothing, and a Commit
// no more than the signal of its batch (a struct and its channel) and the
// batch's commit timer (the timer and its function), which many Commits
// share under load.
func TestAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts mean nothing under the race detector")
	}
	l := New(&countingWriter{}, WithRequired(true))
	defer l.Close()
	r := fullRecord()
	r.Time = time.Time{} // Log sets it
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		f    func()
		max  float64
	}{
		{"Log", func() { l.Log(r) }, 0},
		{"Commit", func() {
			if err := l.Commit(ctx, r); err != nil {
				t.Fatal(err)
			}
		}, 4},
		{"GrantsSummary", func() {
			GrantsSummary(&tokenv1.Grants{Voice: &tokenv1.VoiceGrant{Incoming: &tokenv1.VoiceGrant_Incoming{Allow: true}}, Video: &tokenv1.VideoGrant{}})
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.f() // warm the pools
			if got := testing.AllocsPerRun(1000, tc.f); got > tc.max {
				t.Errorf("%s allocates %v times per call; want at most %v", tc.name, got, tc.max)
			}
		})
	}
}

// halfWriter writes half of its first write and fails it.
type halfWriter struct {
	n   int
	buf bytes.Buffer
}

func (h *halfWriter) Write(p []byte) (int, error) {
	h.n++
	if h.n == 1 {
		h.buf.Write(p[:len(p)/2])
		return len(p) / 2, syscall.ENOSPC
	}
	return h.buf.Write(p)
}

// TestPartialWriteStartsANewLine: after a write that wrote part of its
// batch, the Commit of that batch fails, and the next record starts on a
// line of its own, whole.
func TestPartialWriteStartsANewLine(t *testing.T) {
	h := &halfWriter{}
	l := New(h, WithRequired(true))
	if err := l.Commit(context.Background(), Record{Event: EventMint, RequestID: "torn"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Commit of a partly written record = %v; want ErrUnavailable", err)
	}
	if err := l.Commit(context.Background(), Record{Event: EventMint, RequestID: "whole"}); err != nil {
		t.Errorf("Commit after = %v", err)
	}
	l.Close()
	lines := strings.Split(strings.TrimSuffix(h.buf.String(), "\n"), "\n")
	if len(lines) != 2 || strings.Contains(lines[0], "whole") {
		t.Fatalf("lines = %q; want the torn fragment, then the next record on its own line", lines)
	}
	var r Record
	if err := json.Unmarshal([]byte(lines[1]), &r); err != nil || r.RequestID != "whole" {
		t.Errorf("second line %q = %+v, %v; want the whole record", lines[1], r, err)
	}
	if l.Failed() != 1 || l.Written() != 1 {
		t.Errorf("failed %d, written %d; want 1, 1", l.Failed(), l.Written())
	}
}

// BenchmarkCommitRequestContext is BenchmarkCommit with a context of its
// own per Commit, cancelled after it, as net/http gives every request.
func BenchmarkCommitRequestContext(b *testing.B) {
	w := &countingWriter{}
	l := New(w, WithRequired(true))
	defer l.Close()
	r := fullRecord()
	parent, stop := context.WithCancel(context.Background())
	defer stop()
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ctx, cancel := context.WithCancel(parent)
			err := l.Commit(ctx, r)
			cancel()
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(w.writes.Load())/float64(b.N), "writes/op")
}
