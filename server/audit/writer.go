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
// Records go into a bounded queue (DefaultQueueSize) that one goroutine
// drains. It gathers what is queued into one buffer and writes the buffer
// with a single write when the queue has stayed empty for a moment
// (batchDelay) or the buffer is full, so a burst costs one write, not one
// per record, and a sender never wakes the writer per record.
//
// Log never waits for the disk: if the queue is full (the disk or the pipe
// behind the writer is stalled), the record is dropped and counted
// (Dropped), a warning says how many (at most once per dropLogInterval),
// and a record with event "audit-dropped" is written as soon as the writer
// catches up, so gaps are visible in the log itself.
//
// Commit is the fail-closed alternative (WithRequired): it waits until the
// record has been written to the file (the write returned; it is not
// fsynced) and returns an error when it was not, or was not within the
// commit timeout, or could not even be queued. Many waiting Commits are
// released by the one write of their batch (group commit), so the cost is
// a wake-up per waiting caller, not a write per record.
//
// A write that fails loses the records of its batch; they are counted
// (Failed), their Commits fail, and the Logger goes on with the next
// batch. Close drains the queue, so records logged before Close are
// written.
type Logger struct {
	mu     sync.RWMutex // guards closed and sending on queue
	closed bool
	queue  chan item
	done   chan struct{}

	sink     sink
	required bool
	timeout  time.Duration // Commit's longest wait
	// closeWait is Close's longest wait (closeTimeout; tests shorten it).
	closeWait time.Duration
	log       *slog.Logger

	// Writer goroutine only.
	pend    []byte       // encoded records not yet written
	pendN   uint64       // how many records pend holds
	waiters []chan error // Commits waiting on pend
	line    []byte       // the record being encoded
	torn    bool         // the last write was partial: start the next on a new line

	reopen      atomic.Bool // Reopen asked for, done at the next write
	written     atomic.Uint64
	dropped     atomic.Uint64
	failed      atomic.Uint64
	reported    uint64 // drops already written as EventDropped; writer only
	writeErrors atomic.Uint64
	lastErr     atomic.Pointer[error]
	// lastWarn is when a drop or a failure was last logged (unix nanos),
	// and warnedDrops/warnedFails the counts as of then.
	lastWarn                 atomic.Int64
	warnedDrops, warnedFails atomic.Uint64
}

type item struct {
	rec   Record
	done  chan error    // non-nil: a Commit waiting for the record
	flush chan struct{} // non-nil: a Flush request, not a record
	wake  bool          // wakes the writer (Reopen), not a record
}

// Option configures a Logger.
type Option func(*Logger)

// WithQueueSize sets how many records may wait to be written (default
// DefaultQueueSize).
func WithQueueSize(n int) Option {
	return func(l *Logger) {
		if n > 0 {
			l.queue = make(chan item, n)
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
	l := &Logger{sink: s, done: make(chan struct{}), timeout: DefaultCommitTimeout, closeWait: closeTimeout, log: slog.Default()}
	for _, o := range opts {
		o(l)
	}
	if l.queue == nil {
		l.queue = make(chan item, DefaultQueueSize)
	}
	l.pend = make([]byte, 0, batchBytes)
	go l.run()
	return l
}

// Log queues r for writing and returns at once. When the queue is full or
// the Logger is closed, r is dropped and counted.
func (l *Logger) Log(r Record) {
	if l == nil {
		return
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.drop()
		return
	}
	select {
	case l.queue <- item{rec: r}:
	default:
		l.drop()
	}
}

// Commit writes r. With WithRequired it waits until r has been written and
// returns an error wrapping ErrUnavailable when r could not be queued (the
// queue is full or the Logger closed), its write failed, or it was not
// written within the commit timeout or before ctx ended. Without
// WithRequired it is Log and returns nil.
//
// A Commit that gave up waiting leaves its record queued: it may still be
// written later, so the log can hold a record of a mint that was refused,
// never a mint without its record.
func (l *Logger) Commit(ctx context.Context, r Record) error {
	if l == nil {
		return nil
	}
	if !l.required {
		l.Log(r)
		return nil
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	done := donePool.Get().(chan error)
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		donePool.Put(done)
		l.drop()
		return fmt.Errorf("%w: closed", ErrUnavailable)
	}
	select {
	case l.queue <- item{rec: r, done: done}:
		l.mu.RUnlock()
	default:
		l.mu.RUnlock()
		donePool.Put(done)
		l.drop()
		return fmt.Errorf("%w: its queue is full (the audit destination is stalled)", ErrUnavailable)
	}
	t := time.NewTimer(l.timeout)
	defer t.Stop()
	select {
	case err := <-done:
		donePool.Put(done)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return nil
	case <-t.C:
		// done is not reused: the writer may still send on it.
		return fmt.Errorf("%w: record not written within %v", ErrUnavailable, l.timeout)
	case <-ctx.Done():
		return fmt.Errorf("%w: record not written before the request ended", ErrUnavailable)
	}
}

// donePool holds the channels Commits wait on (buffered, so the writer
// never blocks on a caller that gave up).
var donePool = sync.Pool{New: func() any { return make(chan error, 1) }}

// Flush waits until every record queued before it is written to the
// underlying writer.
func (l *Logger) Flush() {
	if l == nil {
		return
	}
	c := make(chan struct{})
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return
	}
	l.queue <- item{flush: c}
	l.mu.RUnlock()
	<-c
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
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return
	}
	select {
	case l.queue <- item{wake: true}:
	default: // the writer is busy: it reopens at its next write
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
	close(l.queue)
	l.mu.Unlock()
	t := time.NewTimer(l.closeWait)
	defer t.Stop()
	select {
	case <-l.done:
	case <-t.C:
		l.warn(true)
		// The writer is stuck in a write: leave it (and the file) be.
		return fmt.Errorf("audit: close: the records queued were not all written within %v (the destination is stalled or slow); at least %d are lost", l.closeWait, len(l.queue))
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

// batchDelay is how long the writer lets records gather, once the queue
// runs empty, before it writes what it has buffered. Under load this turns
// a write and a goroutine wake-up per record or two into one per batch;
// records reach the file at most this much later. The writer does not
// wait when a Commit waits on the batch.
const batchDelay = 2 * time.Millisecond

// batchBytes is how much the writer buffers before it writes anyway.
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

// run is the writer goroutine.
func (l *Logger) run() {
	defer close(l.done)
	waited := false
	for {
		var it item
		var ok bool
		select {
		case it, ok = <-l.queue:
		default:
			// The queue is empty: wait once for more records (senders do
			// not wake a sleeping writer), then write the batch and block.
			if !waited && len(l.pend) > 0 {
				waited = true
				if len(l.waiters) > 0 {
					// Commits wait on this batch: do not make them wait
					// batchDelay too, only let the mints already running
					// queue their records. Under load the batch still
					// grows while the writer writes the last one (group
					// commit).
					runtime.Gosched()
				} else {
					time.Sleep(batchDelay)
				}
				continue
			}
			l.flush()
			waited = false
			it, ok = <-l.queue
		}
		if !ok {
			break
		}
		l.reportDrops()
		switch {
		case it.flush != nil:
			l.flush()
			close(it.flush)
		case it.wake:
			if len(l.pend) == 0 {
				l.flush() // reopens
			}
		default:
			l.write(it.rec, it.done)
		}
	}
	l.reportDrops()
	l.flush()
}

func (l *Logger) reportDrops() {
	n := l.dropped.Load()
	if n == l.reported {
		return
	}
	l.write(Record{Time: time.Now(), Event: EventDropped, Reason: fmt.Sprintf("%d audit records dropped", n-l.reported)}, nil)
	l.reported = n
}

// write adds r to the batch, writing the batch first when r would take the
// file past its rotation size, and after when the batch is full.
func (l *Logger) write(r Record, done chan error) {
	r = clean(r)
	l.line = appendRecord(l.line[:0], &r)
	if l.sink.full(len(l.pend), len(l.line)) {
		l.flush()
		if err := l.sink.rotate(); err != nil {
			l.log.Error("audit log rotation failed: writing on to the current file", "error", err)
		}
	}
	if l.torn && len(l.pend) == 0 {
		l.pend = append(l.pend, '\n')
	}
	l.pend = append(l.pend, l.line...)
	l.pendN++
	if done != nil {
		l.waiters = append(l.waiters, done)
	}
	if len(l.pend) >= batchBytes {
		l.flush()
	}
}

// flush writes the batch in one write and releases its Commits, then
// reopens the file if asked to.
func (l *Logger) flush() {
	if len(l.pend) > 0 {
		n, err := l.sink.Write(l.pend)
		if err == nil && n < len(l.pend) {
			err = io.ErrShortWrite
		}
		l.torn = err != nil && n > 0
		if err != nil {
			l.failed.Add(l.pendN)
			l.writeErrors.Add(1)
			err = fmt.Errorf("audit: write: %w", err)
			l.lastErr.Store(&err)
			l.warn(false)
		} else {
			l.written.Add(l.pendN)
			l.torn = false
		}
		for _, c := range l.waiters {
			c <- err
		}
		clear(l.waiters)
		l.waiters = l.waiters[:0]
		l.pend = l.pend[:0]
		l.pendN = 0
	}
	if l.reopen.Swap(false) {
		if err := l.sink.reopen(); err != nil {
			l.log.Error("audit log reopen failed: writing on to the old file", "error", err)
		} else {
			l.log.Info("audit log reopened")
		}
	}
}
