package policy

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// PollInterval is how often Watch looks at the policy file's size and
// modification time.
const PollInterval = time.Second

// Holder holds the current policy. Readers never block: the policy is
// swapped atomically, and a *Policy is immutable.
type Holder struct {
	cur     atomic.Pointer[Policy]
	reloads atomic.Uint64

	path  string
	onErr func(error)

	mu       sync.Mutex // serializes reloads; guards the fields below
	onReload func(old, cur *Policy)
	last     os.FileInfo
	failed   bool
	lastErr  string
}

// NewHolder returns a Holder of p (which may be nil: deny everything)
// that watches nothing; Store replaces its policy.
func NewHolder(p *Policy) *Holder {
	h := &Holder{}
	h.cur.Store(p)
	return h
}

// Policy returns the current policy (nil only for a Holder made with a
// nil policy).
func (h *Holder) Policy() *Policy { return h.cur.Load() }

// Store replaces the current policy.
func (h *Holder) Store(p *Policy) { h.cur.Store(p) }

// Reloads counts the successful reloads since the first load.
func (h *Holder) Reloads() uint64 { return h.reloads.Load() }

// Decide decides with the current policy; see Policy.Decide.
func (h *Holder) Decide(c Caller, r *Reach, ttl int64) Decision {
	return h.cur.Load().Decide(c, r, ttl)
}

// MayMintFor is Policy.MayMintFor with the current policy.
func (h *Holder) MayMintFor(c Caller, app string) bool {
	return h.cur.Load().MayMintFor(c, app)
}

// Watch loads the policy file at path and keeps it current: it reloads
// the file when the process receives SIGHUP and when the file's size,
// modification time or identity (a rename over it) changes, checked every
// PollInterval, until ctx is done. A file that fails to load keeps the
// previous policy in force and is reported to onErr (which may be nil),
// once per distinct error when polling and on every SIGHUP. Atomic
// replacement (write a temporary file, then rename it over the policy) is
// the safe way to edit a watched policy; a file caught half written is
// retried on the next poll.
//
// Watch fails if the first load fails.
func Watch(ctx context.Context, path string, onErr func(error)) (*Holder, error) {
	return watch(ctx, path, onErr, PollInterval, true)
}

func watch(ctx context.Context, path string, onErr func(error), interval time.Duration, sighup bool) (*Holder, error) {
	h := &Holder{path: path, onErr: onErr}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	p, err := Load(path)
	if err != nil {
		return nil, err
	}
	h.last = fi
	h.cur.Store(p)

	var hup chan os.Signal
	if sighup {
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
	}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		if hup != nil {
			defer signal.Stop(hup)
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				h.reload(true)
			case <-t.C:
				h.reload(false)
			}
		}
	}()
	return h, nil
}

// OnReload sets a function told of every policy installed from the
// watched file after the first (old is the policy it replaced).
func (h *Holder) OnReload(f func(old, cur *Policy)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.onReload = f
}

// Reload reads the watched file now, whether or not it changed, and
// installs it if it is valid. It reports an error (also to onErr) and
// keeps the current policy otherwise.
func (h *Holder) Reload() error {
	if h.path == "" {
		return errors.New("policy: this holder watches no file")
	}
	return h.reload(true)
}

// reload loads the file if forced, if it changed since the last look, or
// if the last load failed.
func (h *Holder) reload(force bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	fi, err := os.Stat(h.path)
	if err == nil && !force && !h.failed && h.last != nil &&
		os.SameFile(fi, h.last) && fi.Size() == h.last.Size() && fi.ModTime().Equal(h.last.ModTime()) {
		return nil
	}
	if err == nil {
		h.last = fi
		var p *Policy
		if p, err = Load(h.path); err == nil {
			old := h.cur.Swap(p)
			h.reloads.Add(1)
			if h.onReload != nil {
				h.onReload(old, p)
			}
			h.failed, h.lastErr = false, ""
			return nil
		}
	}
	h.failed = true
	if msg := err.Error(); force || msg != h.lastErr {
		h.lastErr = msg
		if h.onErr != nil {
			h.onErr(err)
		}
	}
	return err
}
