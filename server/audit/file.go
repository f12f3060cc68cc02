package audit

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"syscall"
)

// sink is what the writer goroutine writes to; only it calls the methods.
type sink interface {
	io.WriteCloser
	// full reports whether the batch of pend bytes and the record of line
	// bytes after it would take the file past its size: then the batch is
	// written and the file rotated before the record.
	full(pend, line int) bool
	// rotate moves the file aside and starts a new one.
	rotate() error
	// reopen opens the path again.
	reopen() error
}

// stream is a plain writer: it never rotates nor reopens.
type stream struct{ w io.Writer }

func (s *stream) Write(p []byte) (int, error) { return s.w.Write(p) }
func (s *stream) Close() error                { return nil }
func (s *stream) full(int, int) bool          { return false }
func (s *stream) rotate() error               { return nil }
func (s *stream) reopen() error               { return nil }

// file is an audit file that rotates by size and reopens on request.
//
// Rotation renames the file to path.1, after shifting path.1 to path.2
// and so on, removing the oldest beyond keep; rotated files are not
// compressed, so that rotating never costs the writer (and the mints
// sharing its CPU) more than a few renames: compress them with logrotate
// or leave that to the collector. tokenctl audit find reads them either
// way (path.N or path.N.gz).
//
// Records are whole lines in one file: the writer writes whole batches,
// and rotates between two batches.
type file struct {
	path     string
	f        *os.File
	size     int64
	maxBytes int64 // 0: never rotate
	keep     int
}

func openFile(path string) (*file, error) {
	f := &file{path: path, keep: 1}
	if err := f.open(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *file) open() error {
	flag := os.O_WRONLY | os.O_APPEND | os.O_CREATE
	if fi, err := os.Stat(f.path); err == nil && fi.Mode()&fs.ModeNamedPipe != 0 {
		// Opening a FIFO for writing waits for a reader: without one,
		// tokend would hang at start, or its writer on a reopen, with no
		// word. Non-blocking, the open fails at once (ENXIO); writes
		// still wait for the reader (the file is pollable).
		flag |= syscall.O_NONBLOCK
	}
	fd, err := os.OpenFile(f.path, flag, 0o600)
	if errors.Is(err, syscall.ENXIO) {
		return fmt.Errorf("open %s: a FIFO with no reader (start the program that reads it first)", f.path)
	}
	if err != nil {
		return err
	}
	var size int64
	if fi, err := fd.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	old := f.f
	f.f, f.size = fd, size
	if old != nil {
		old.Sync()
		old.Close()
	}
	return nil
}

func (f *file) Write(p []byte) (int, error) {
	n, err := f.f.Write(p)
	f.size += int64(n)
	return n, err
}

func (f *file) Close() error {
	f.f.Sync()
	return f.f.Close()
}

func (f *file) full(pend, line int) bool {
	// A record longer than maxBytes alone in a file is written whole.
	return f.maxBytes > 0 && f.size+int64(pend) > 0 && f.size+int64(pend+line) > f.maxBytes
}

// rotated names the i-th rotated file.
func (f *file) rotated(i int) string { return f.path + "." + strconv.Itoa(i) }

func (f *file) rotate() error {
	var errs []error
	rename := func(from, to string) {
		if err := os.Rename(from, to); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	// Rotated files are numbered without gaps: shift only those there.
	n := 0
	for n < f.keep && (exists(f.rotated(n+1)) || exists(f.rotated(n+1)+".gz")) {
		n++
	}
	for _, ext := range []string{"", ".gz"} {
		if n == f.keep {
			if err := os.Remove(f.rotated(f.keep) + ext); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		for i := min(n, f.keep-1); i >= 1; i-- {
			rename(f.rotated(i)+ext, f.rotated(i+1)+ext)
		}
	}
	if err := os.Rename(f.path, f.rotated(1)); err != nil {
		// Keep writing to the file as it is rather than lose records;
		// try again after another maxBytes.
		f.size = 0
		return fmt.Errorf("rotate %s: %w", f.path, errors.Join(append(errs, err)...))
	}
	if err := f.open(); err != nil {
		f.size = 0
		return fmt.Errorf("rotate %s: %w", f.path, err)
	}
	return errors.Join(errs...)
}

func (f *file) reopen() error { return f.open() }

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
