package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Logger writes records as JSON lines. It is safe for concurrent use.
//
// The caller's goroutine encodes its record (so records are encoded in
// parallel, on the CPUs the callers run on) and appends it, under a short
// mutex, to the current batch: a buffer of whole lines bounded to the
// queue size (DefaultQueueSize records, and maxQueueBytes). One writer
// goroutine swaps the batch out for an empty one and writes it with a
// single write; records logged meanwhile gather in the next batch. It writes when a Commit waits
// on the batch, when the batch is full (batchBytes), or when records have
// been gathering for batchDelay, so a burst costs one write, not one per
// record, and a caller wakes the writer only when it sleeps, not per
// record.
//
// Log never waits for the disk: if the batch is full (the disk or the pipe
// behind the writer is stalled), the record is dropped and counted
// (Dropped), a warning says how many (at most once per dropLogInterval),
// and a record with event "audit-dropped" is written as soon as the writer
// catches up, so gaps are visible in the log itself.
//
// Commit is the fail-closed alternative (WithRequired): it waits until the
// record has been written to the file (the write returned; it is not
// fsynced) and returns an error when it was not, or was not within the
// commit timeout, or could not even be queued. Every Commit of a batch
// waits on the batch's one channel, closed after its write (group
// commit): a notification per batch, not a channel send per record. The
// commit timeout is the batch's too: one timer, started by its first
// Commit, fails the Commits of a batch not written in time, rather than a
// timer per Commit. A Commit watches its context only once its batch is
// slow (not written within ctxWatchDelay; the same timer tells it): a
// write takes microseconds, and watching a request's context on every
// Commit (a wait on two channels, and for net/http the request context's
// channel made on first use) cost about a microsecond a mint.
//
// A write that fails loses the records of its batch; they are counted
// (Failed), their Commits fail, and the Logger goes on with the next
// batch. Close drains what is queued, so records logged before Close are
// written.
type Logger struct {
	mu       sync.Mutex // guards the fields up to wake
	closed   bool
	cur      *batch // where records go; never nil
	inflight *batch // the batch being written, if any
	// inflightN is how many records inflight held when the writer took
	// it (the writer may add a drop notice after).
	inflightN int
	state     writerState
	// wake tells a sleeping writer (state idle or gathering) to look
	// again; it is sent on only by whoever changes state to busy, so at
	// most once per sleep.
	wake chan struct{}
	done chan struct{}

	queueSize int // records a batch holds at most
	sink      sink
	required  bool
	timeout   time.Duration // Commit's longest wait
	// closeWait is Close's longest wait (closeTimeout; tests shorten it).
	closeWait time.Duration
	log       *slog.Logger

	// Writer goroutine only.
	spare    *batch // the empty batch swapped in next
	torn     bool   // the last write was partial: start the next on a new line
	reported uint64 // drops already written as EventDropped

	reopen      atomic.Bool // Reopen asked for, done at the next write
	written     atomic.Uint64
	dropped     atomic.Uint64
	failed      atomic.Uint64
	writeErrors atomic.Uint64
	lastErr     atomic.Pointer[error]
	// lastWarn is when a drop or a failure was last logged (unix nanos),
	// and warnedDrops/warnedFails the counts as of then.
	lastWarn                 atomic.Int64
	warnedDrops, warnedFails atomic.Uint64
}

// writerState is what the writer goroutine is doing, as far as callers
// need to know to decide whether to wake it.
type writerState uint8

const (
	busy      writerState = iota // it looks at the batch before it sleeps again: no wake-up needed
	idle                         // asleep with nothing to write
	gathering                    // asleep for batchDelay while Log records gather
)

// batch is a buffer of encoded records and, when a Commit or a Flush waits
// on it, the signal closed after its write. The Logger keeps two and
// alternates them: callers fill one while the writer writes the other.
type batch struct {
	buf  []byte
	ends []int // where each record ends in buf
	sig  *signal
}

// signal tells the Commits of one batch how its write went: err is set
// before done is closed, and read only after. It is finished once: by the
// writer after the write, or by its timer when the write did not end in
// time, whichever comes first. The timer of a batch's first signal fires
// after ctxWatchDelay (see slow): it finishes the signal with errSlow and
// next, a signal with watch set, takes its place on the batch, for the
// rest of the commit timeout (errExpired). A commit timeout no longer than
// ctxWatchDelay skips that step.
type signal struct {
	done     chan struct{}
	err      error
	finished atomic.Bool
	// watch: the batch is slow; its Commits watch their context too.
	watch bool
	// next is the signal that took this one's place on its batch when
	// this one was finished with errSlow (set before done is closed).
	next *signal
	// timer is the Commits' timeout, started by the first Commit that
	// waits on the signal (nil while only a Flush waits). It is set under
	// l.mu, before whoever finishes the signal can reach it (the writer
	// takes the batch under l.mu; the timer's own function locks l.mu
	// first), so finish reads it without the lock.
	timer *time.Timer
}

// finish sets err and closes done, unless the signal is finished already;
// it reports whether it did.
func (s *signal) finish(err error) bool {
	if !s.finished.CompareAndSwap(false, true) {
		return false
	}
	s.err = err
	close(s.done)
	if s.timer != nil {
		s.timer.Stop()
	}
	return true
}

// errExpired is the err of a signal whose timer finished it: its batch
// was not written within the commit timeout.
var errExpired = errors.New("not written within the commit timeout")

// errSlow is the err of a signal finished because its batch was not
// written within ctxWatchDelay: its waiters wait on next, and Commits
// watch their context from then on.
var errSlow = errors.New("not written within the context watch delay")

// ctxWatchDelay is how long a Commit waits for its batch before it
// watches its context as well: a context that ends is noticed this much
// later at most, and only while the destination is slow.
const ctxWatchDelay = 20 * time.Millisecond

// maxQueueBytes bounds the bytes of the records waiting, whatever their
// number (a record is a few hundred bytes; the queue size bounds them in
// the common case).
const maxQueueBytes = 32 << 20

// maxKeptBatch is the largest buffer a batch keeps once written; a larger
// one (after a stall) is let go rather than held for good.
const maxKeptBatch = 1 << 20

func (b *batch) reset() {
	if cap(b.buf) > maxKeptBatch {
		b.buf, b.ends = make([]byte, 0, batchBytes), nil
	}
	b.buf, b.ends, b.sig = b.buf[:0], b.ends[:0], nil
}

// waitOn returns the signal of b, making it when b has none yet.
func (b *batch) waitOn() *signal {
	if b.sig == nil {
		b.sig = &signal{done: make(chan struct{})}
	}
	return b.sig
}

// Option configures a Logger.
type Option func(*Logger)

// WithQueueSize sets how many records may wait to be written (default
// DefaultQueueSize), besides those of the write under way.
func WithQueueSize(n int) Option {
	return func(l *Logger) {
		if n > 0 {
			l.queueSize = n
		}
	}
}

// WithRequired makes Commit wait for its record to be written and fail
// when it is not (fail closed). Without it, Commit is Log.
func WithRequired(required bool) Option {
	return func(l *Logger) { l.required = required }
}

// DefaultCommitTimeout is how long Commit waits for its record at most,
// unless its context ends first.
const DefaultCommitTimeout = 2 * time.Second

// WithCommitTimeout sets how long Commit waits at most (default
// DefaultCommitTimeout).
func WithCommitTimeout(d time.Duration) Option {
	return func(l *Logger) {
		if d > 0 {
			l.timeout = d
		}
	}
}

// WithLogger sets where drops, write failures and reopens are reported
// (rate limited); default slog.Default().
func WithLogger(log *slog.Logger) Option {
	return func(l *Logger) {
		if log != nil {
			l.log = log
		}
	}
}

// WithRotation rotates the file Open opens when a write would take it past
// maxBytes (0: never), keeping the newest keep rotated files (see file.go).
func WithRotation(maxBytes int64, keep int) Option {
	return func(l *Logger) {
		if f, ok := l.sink.(*file); ok {
			f.maxBytes, f.keep = maxBytes, max(keep, 1)
		}
	}
}

// ErrUnavailable is what Commit returns, wrapped, when its record was not
// written.
var ErrUnavailable = errors.New("audit log unavailable")

// New returns a Logger writing to w. Close it to write what is queued.
func New(w io.Writer, opts ...Option) *Logger {
	return start(&stream{w: w}, opts)
}

// Open returns a Logger appending to the file at path, created with mode
// 0600 if it does not exist. Reopen opens the path again (after a rename
// by logrotate); WithRotation makes the Logger rotate it by size. Close
// closes the file.
func Open(path string, opts ...Option) (*Logger, error) {
	f, err := openFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return start(f, opts), nil
}

func start(s sink, opts []Option) *Logger {
	l := &Logger{
		sink: s, done: make(chan struct{}), wake: make(chan struct{}, 1), state: busy,
		queueSize: DefaultQueueSize, timeout: DefaultCommitTimeout, closeWait: closeTimeout, log: slog.Default(),
	}
	for _, o := range opts {
		o(l)
	}
	l.cur = &batch{buf: make([]byte, 0, batchBytes)}
	l.spare = &batch{buf: make([]byte, 0, batchBytes)}
	go l.run()
	return l
}

// Log queues r for writing and returns at once. When the queue is full or
// the Logger is closed, r is dropped and counted.
func (l *Logger) Log(r Record) {
	if l == nil {
		return
	}
	l.add(&r, false)
}

// Commit writes r. With WithRequired it waits until r has been written and
// returns an error wrapping ErrUnavailable when r could not be queued (the
// queue is full or the Logger closed), its write failed, or it was not
// written within the commit timeout or before ctx ended. ctx is watched
// once the wait has lasted ctxWatchDelay (a record written sooner is
// committed whatever ctx did meanwhile), so a context that ends is
// noticed at most that much later. Without WithRequired it is Log and
// returns nil.
//
// A Commit that gave up waiting leaves its record queued: it may still be
// written later, so the log can hold a record of a mint that was refused,
// never a mint without its record.
func (l *Logger) Commit(ctx context.Context, r Record) error {
	if l == nil {
		return nil
	}
	if !l.required {
		l.add(&r, false)
		return nil
	}
	sig, err := l.add(&r, true)
	if err != nil {
		return err
	}
	if !sig.watch {
		<-sig.done
		if sig.err != errSlow {
			return l.commitErr(sig.err)
		}
		sig = sig.next
	}
	select {
	case <-sig.done:
		return l.commitErr(sig.err)
	case <-ctx.Done():
		return fmt.Errorf("%w: record not written before the request ended", ErrUnavailable)
	}
}

// commitErr is what Commit returns for err, the err of the signal it
// waited on to the end.
func (l *Logger) commitErr(err error) error {
	switch {
	case err == errExpired:
		return fmt.Errorf("%w: record not written within %v", ErrUnavailable, l.timeout)
	case err != nil:
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// lines holds the buffers callers encode their record into before they
// take the mutex.
var lines = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// add encodes r in the caller's goroutine, appends it to the current
// batch and, for wait, returns the signal of that batch. It wakes the
// writer only when the writer sleeps and has reason to write now.
func (l *Logger) add(r *Record, wait bool) (*signal, error) {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	clean(r)
	lp := lines.Get().(*[]byte)
	line := appendRecord((*lp)[:0], r)
	defer func() {
		if cap(line) <= 64<<10 {
			*lp = line[:0]
			lines.Put(lp)
		}
	}()

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.drop()
		return nil, errClosed
	}
	b := l.cur
	if len(b.ends) >= l.queueSize || len(b.buf)+len(line) > maxQueueBytes {
		if l.state == gathering {
			l.wakeLocked()
		}
		l.mu.Unlock()
		l.drop()
		return nil, errFull
	}
	b.buf = append(b.buf, line...)
	b.ends = append(b.ends, len(b.buf))
	var sig *signal
	if wait {
		sig = b.waitOn()
		if sig.timer == nil {
			if l.timeout <= ctxWatchDelay {
				sig.timer = time.AfterFunc(l.timeout, func() { l.expire(b, sig) })
			} else {
				sig.timer = time.AfterFunc(ctxWatchDelay, func() { l.slow(b, sig) })
			}
		}
	}
	switch {
	case l.state == idle:
		l.wakeLocked()
	case l.state == gathering && (wait || len(b.buf) >= batchBytes):
		l.wakeLocked()
	}
	l.mu.Unlock()
	return sig, nil
}

// slow hands the Commits waiting on sig, the signal of b, on to a new
// signal with watch set, when b has not been written within
// ctxWatchDelay: the new one takes sig's place on b (a later Commit of b
// waits on it), with a timer for the rest of the commit timeout, and sig
// is finished with errSlow. Nothing is done when b no longer has sig (it
// was written, or expired).
func (l *Logger) slow(b *batch, sig *signal) {
	l.mu.Lock()
	if b.sig != sig {
		l.mu.Unlock()
		return
	}
	next := &signal{done: make(chan struct{}), watch: true}
	next.timer = time.AfterFunc(l.timeout-ctxWatchDelay, func() { l.expire(b, next) })
	b.sig, sig.next = next, next
	l.mu.Unlock()
	sig.finish(errSlow)
}

// expire fails the Commits waiting on sig, the signal of b, whose write
// has not ended within the commit timeout: sig is taken off b (if b still
// has it), so that a later Commit of b waits on a signal of its own, with
// a timeout of its own; b's records stay queued.
func (l *Logger) expire(b *batch, sig *signal) {
	l.mu.Lock()
	if b.sig == sig {
		b.sig = nil
	}
	l.mu.Unlock()
	sig.finish(errExpired)
}

// The errors of a record that could not be queued, made once: under a
// stall every Log is dropped, and a drop should cost no allocation.
var (
	errClosed = fmt.Errorf("%w: closed", ErrUnavailable)
	errFull   = fmt.Errorf("%w: its queue is full (the audit destination is stalled)", ErrUnavailable)
)

// wakeLocked wakes the sleeping writer; l.mu is held.
func (l *Logger) wakeLocked() {
	l.state = busy
	select {
	case l.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// Flush waits until every record queued before it is written to the
// underlying writer.
func (l *Logger) Flush() {
	if l == nil {
		return
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	for {
		// Batches are written in order: waiting on the last one with
		// records waits for all.
		var sig *signal
		switch {
		case len(l.cur.ends) > 0:
			sig = l.cur.waitOn()
			if l.state != busy {
				l.wakeLocked()
			}
		case l.inflight != nil:
			sig = l.inflight.waitOn()
		}
		l.mu.Unlock()
		if sig == nil {
			return
		}
		<-sig.done
		if sig.err != errExpired && sig.err != errSlow {
			return
		}
		// The Commits' timers ended the wait, not the write: wait on
		// (Close drains the batches, so they are still there to wait on).
		l.mu.Lock()
	}
}

// Reopen asks the Logger to close its file and open the path again before
// its next write, and returns at once: records written before go to the
// old file (renamed by logrotate, say), later ones to the new. Nothing is
// lost or torn. It does nothing for a Logger of New.
func (l *Logger) Reopen() {
	if l == nil {
		return
	}
	if _, ok := l.sink.(*file); !ok {
		return
	}
	l.reopen.Store(true)
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed && l.state != busy {
		l.wakeLocked()
	}
}

// closeTimeout bounds how long Close waits for the writer: a destination
// that accepts no writes (a pipe nobody reads) must not hang shutdown.
const closeTimeout = 10 * time.Second

// Close writes what is queued, stops the Logger and closes the file Open
// opened. It returns the last write error, if any, or an error when the
// writer did not finish within closeTimeout (the records still queued are
// then lost). Records logged after Close are dropped.
func (l *Logger) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	if l.state != busy {
		l.wakeLocked()
	}
	l.mu.Unlock()
	t := time.NewTimer(l.closeWait)
	defer t.Stop()
	select {
	case <-l.done:
	case <-t.C:
		l.warn(true)
		l.mu.Lock()
		n := len(l.cur.ends)
		if l.inflight != nil {
			n += l.inflightN
		}
		l.mu.Unlock()
		// The writer is stuck in a write: leave it (and the file) be.
		return fmt.Errorf("audit: close: the records queued were not all written within %v (the destination is stalled or slow); at least %d are lost", l.closeWait, n)
	}
	l.warn(true)
	var err error
	if p := l.lastErr.Load(); p != nil {
		err = *p
	}
	if cerr := l.sink.Close(); err == nil {
		err = cerr
	}
	return err
}

// Written counts the records written to the underlying writer.
func (l *Logger) Written() uint64 { return l.written.Load() }

// Dropped counts the records dropped because the queue was full or the
// Logger closed.
func (l *Logger) Dropped() uint64 { return l.dropped.Load() }

// Failed counts the records lost because their write failed.
func (l *Logger) Failed() uint64 { return l.failed.Load() }

// WriteErrors counts failed writes to the underlying writer (each loses
// the records of its batch, counted by Failed).
func (l *Logger) WriteErrors() uint64 { return l.writeErrors.Load() }

// batchDelay is how long the writer lets Log records gather before it
// writes them. Under load this turns a write and a goroutine wake-up per
// record or two into one per batch; records reach the file at most this
// much later. The writer does not wait when a Commit waits on the batch.
const batchDelay = 2 * time.Millisecond

// maxYields bounds how many times the writer yields to let a batch of
// Commits grow before it writes it.
const maxYields = 4

// batchBytes is how much a batch of Log records holds before the writer
// writes it without waiting for batchDelay to end.
const batchBytes = 64 << 10

// dropLogInterval is the least time between two warnings about drops or
// failed writes.
const dropLogInterval = 10 * time.Second

func (l *Logger) drop() {
	l.dropped.Add(1)
	l.warn(false)
}

// warn logs the drops and failures since the last warning, at most once
// per dropLogInterval unless forced (at Close).
func (l *Logger) warn(force bool) {
	now := time.Now().UnixNano()
	last := l.lastWarn.Load()
	if !force && (now-last < int64(dropLogInterval) || !l.lastWarn.CompareAndSwap(last, now)) {
		return
	}
	d, f := l.dropped.Load(), l.failed.Load()
	pd, pf := l.warnedDrops.Swap(d), l.warnedFails.Swap(f)
	if d == pd && f == pf {
		return
	}
	attrs := []any{"dropped", d - pd, "failed", f - pf, "dropped_total", d, "failed_total", f}
	if p := l.lastErr.Load(); p != nil && f > pf {
		attrs = append(attrs, "error", (*p).Error())
	}
	l.log.Warn("audit records lost: the audit destination is stalled or failing", attrs...)
}

// run is the writer goroutine: it takes the current batch when there is
// something to do, writes it, and releases its Commits.
func (l *Logger) run() {
	defer close(l.done)
	gather := time.NewTimer(time.Hour)
	gather.Stop()
	var written *signal // the last batch's, to release once l.mu is let go
	var writtenErr error
	l.mu.Lock()
	for {
		b := l.next(gather, written, writtenErr)
		if b == nil {
			return
		}
		if l.reopen.Swap(false) {
			// Before the write: the batch may hold records logged after
			// Reopen was called, and none logged after it may go to the
			// old file once it has been renamed and left behind.
			if err := l.sink.reopen(); err != nil {
				l.log.Error("audit log reopen failed: writing on to the old file", "error", err)
			} else {
				l.log.Info("audit log reopened")
			}
		}
		l.reportDrops(b)
		err := l.write(b)
		l.mu.Lock()
		l.inflight = nil
		written, writtenErr = b.sig, err
		b.reset()
		l.spare = b
	}
}

// next waits until there is something to write (records, drops to
// report, a reopen) and swaps the current batch out for the spare one. It
// is called with l.mu held, and returns with it released, after
// finishing written (the last batch's signal) with err, its write's
// error. It returns nil when the Logger is closed and everything is
// written.
func (l *Logger) next(gather *time.Timer, written *signal, err error) *batch {
	release := func() {
		l.mu.Unlock()
		if written != nil {
			written.finish(err)
			written = nil
		}
	}
	gathered := false
	yields, seen := 0, 0
	for {
		cur := l.cur
		pending := len(cur.ends) > 0 || l.dropped.Load() != l.reported || l.reopen.Load()
		switch {
		case !pending && l.closed:
			release()
			return nil
		case !pending:
			l.state = idle
			gathered = false
		case !l.closed && !gathered && cur.sig == nil && len(cur.buf) < batchBytes && len(cur.ends) > 0:
			// Only Log records: let more gather, unless a Commit or a
			// full batch wakes the writer first.
			l.state = gathering
			gathered = true
		case cur.sig != nil && !gathered:
			// Commits wait on this batch: do not make them wait
			// batchDelay, only let the callers already running (and
			// those the last write released) add their records first,
			// for as long as the batch grows (a few yields at most).
			// Under load the batch grows anyway while the writer writes
			// the last one.
			yields++
			if yields >= maxYields || len(cur.ends) == seen {
				gathered = true
			}
			seen = len(cur.ends)
			release()
			runtime.Gosched()
			l.mu.Lock()
			continue
		default:
			l.state = busy
			l.cur, l.spare = l.spare, nil
			l.inflight, l.inflightN = cur, len(cur.ends)
			release()
			return cur
		}
		sleeping := l.state
		release()
		if sleeping == gathering {
			gather.Reset(batchDelay)
			select {
			case <-l.wake:
			case <-gather.C:
			}
			gather.Stop()
		} else {
			<-l.wake
		}
		l.mu.Lock()
		l.state = busy
	}
}

// reportDrops adds to b a record of the drops not reported yet.
func (l *Logger) reportDrops(b *batch) {
	n := l.dropped.Load()
	if n == l.reported {
		return
	}
	r := Record{Time: time.Now(), Event: EventDropped, Reason: fmt.Sprintf("%d audit records dropped", n-l.reported)}
	clean(&r)
	b.buf = appendRecord(b.buf, &r)
	b.ends = append(b.ends, len(b.buf))
	l.reported = n
}

// write writes b, in one write unless the file must be rotated within it
// (then in one write before each rotation and one after), and returns the
// first error.
func (l *Logger) write(b *batch) error {
	var first error
	start, prev := 0, 0
	for i, end := range b.ends {
		if l.sink.full(prev-start, end-prev) {
			if err := l.writeOut(b.buf[start:prev], b.ends[:i], start); err != nil && first == nil {
				first = err
			}
			if err := l.sink.rotate(); err != nil {
				l.log.Error("audit log rotation failed: writing on to the current file", "error", err)
			}
			start = prev
		}
		prev = end
	}
	if err := l.writeOut(b.buf[start:prev], b.ends, start); err != nil && first == nil {
		first = err
	}
	return first
}

// writeOut writes p, the records of ends after offset start, and counts
// them written or failed.
func (l *Logger) writeOut(p []byte, ends []int, start int) error {
	if len(p) == 0 {
		return nil
	}
	n := uint64(0)
	for i := len(ends) - 1; i >= 0 && ends[i] > start; i-- {
		n++
	}
	var err error
	if l.torn {
		// Start on a new line after a partial write.
		if _, err = l.sink.Write(newline); err == nil {
			l.torn = false
		}
	}
	if err == nil {
		var w int
		w, err = l.sink.Write(p)
		if err == nil && w < len(p) {
			err = io.ErrShortWrite
		}
		l.torn = err != nil && w > 0
	}
	if err != nil {
		l.failed.Add(n)
		l.writeErrors.Add(1)
		werr := fmt.Errorf("audit: write: %w", err)
		l.lastErr.Store(&werr)
		l.warn(false)
		return werr
	}
	l.written.Add(n)
	return nil
}

var newline = []byte{'\n'}
