// Package replicas counts the tokend replicas that share a store, so that
// each can enforce its share of limits meant for the whole deployment.
//
// Each replica beats: every Interval it writes a heartbeat row with an
// expiry TTL ahead (storage.Store.Heartbeat, by the store's clock) and
// learns from the same statement how many replicas have a row not yet
// expired. A replica that joins is counted by the others at their next
// beat, within Interval; one that stops cleanly removes its row and is
// counted out within Interval too; one that dies (kill -9, a lost node)
// is counted out once its row expires, within TTL + Interval. Nothing of
// this is on the path of a request: a mint reads the count from memory.
//
// While the store does not answer, a replica keeps the last count it
// learned (the replicas most likely still run) and retries every
// Interval.
package replicas

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tokend/tokend/server/storage"
)

// Default intervals: a replica beats every second with a 3 s expiry, so a
// dead replica is counted out within about 4 s, and one slow or lost beat
// (a store hiccup, a GC pause) does not count a live replica out.
const (
	DefaultInterval = time.Second
	DefaultTTL      = 3 * time.Second
)

// Store is what a Membership needs of the store.
type Store interface {
	Heartbeat(ctx context.Context, id string, ttl time.Duration) (live int, err error)
	RemoveReplica(ctx context.Context, id string) error
	AckRevision(ctx context.Context, id string, rev int64) error
}

var _ Store = storage.Store(nil)

// Config configures a Membership.
type Config struct {
	// Store keeps the heartbeats.
	Store Store
	// ID names this replica in the store; empty: NewID().
	ID string
	// Interval is how often the replica beats (default DefaultInterval);
	// TTL how long a beat keeps it counted (default DefaultTTL). TTL
	// should be at least twice Interval, so that one late beat does not
	// count a live replica out.
	Interval, TTL time.Duration
	// OnChange is called with the number of live replicas after every
	// beat that changed it, the first successful beat included (the
	// count before any is 1). It runs on the beating goroutine.
	OnChange func(live int)
	// Revision, if set, returns the store revision the replica serves
	// its keys at (the keystore's): every beat acknowledges it
	// (storage.Store.AckRevision), so that a revoke on any replica can
	// wait until all of them have stopped signing with the revoked key.
	// Poke makes a beat at once, after a reload.
	Revision func() int64
	// OnError is called with every failed beat (for a metric).
	OnError func(error)
	// Logger receives a line when the count changes and when beats start
	// or stop failing; nil: slog.Default().
	Logger *slog.Logger
}

// Membership is one replica's heartbeat and its view of how many replicas
// are alive. Its methods are safe for concurrent use.
type Membership struct {
	cfg     Config
	live    atomic.Int64
	failing atomic.Bool
	// ackFailing: the last acknowledgement of the revision failed.
	ackFailing atomic.Bool
	// started is set by the first successful beat.
	started atomic.Bool
	// poke asks Run for a beat now (see Poke).
	poke chan struct{}
}

// New returns a Membership that has not beaten yet: Live is 1 until the
// first successful Beat.
func New(cfg Config) *Membership {
	if cfg.ID == "" {
		cfg.ID = NewID()
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Membership{cfg: cfg, poke: make(chan struct{}, 1)}
	m.live.Store(1)
	return m
}

// NewID returns a replica ID: the host name (at most 64 bytes of it) and
// 8 random hex digits, unique even for replicas on one host.
func NewID() string {
	host, _ := os.Hostname()
	host = strings.ToValidUTF8(strings.ReplaceAll(host, "\x00", ""), "")
	if len(host) > 64 {
		host = strings.ToValidUTF8(host[:64], "")
	}
	if host == "" {
		host = "tokend"
	}
	var b [4]byte
	rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// Interval returns how often the replica beats.
func (m *Membership) Interval() time.Duration { return m.cfg.Interval }

// TTL returns how long a beat keeps the replica counted.
func (m *Membership) TTL() time.Duration { return m.cfg.TTL }

// ID returns the replica's ID.
func (m *Membership) ID() string { return m.cfg.ID }

// Live returns the number of live replicas, this one included, as of the
// last successful beat (1 before the first).
func (m *Membership) Live() int { return int(m.live.Load()) }

// Beat writes one heartbeat and updates Live (calling OnChange if it
// changed). On an error Live keeps its value. It waits for a slow store
// up to TTL - Interval (at least Interval): a beat that lands late still
// renews the replica's expiry, while one given up on too soon would let
// the others count a live replica out when the store is merely slow (and
// allow more than the limit meanwhile).
func (m *Membership) Beat(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(m.cfg.Interval, m.cfg.TTL-m.cfg.Interval))
	defer cancel()
	n, err := m.cfg.Store.Heartbeat(ctx, m.cfg.ID, m.cfg.TTL)
	if err != nil {
		if m.cfg.OnError != nil {
			m.cfg.OnError(err)
		}
		if !m.failing.Swap(true) {
			m.cfg.Logger.Warn("replica heartbeat failed: keeping the last count of replicas for the rate limits", "replica", m.cfg.ID, "replicas", m.Live(), "error", err)
		}
		return err
	}
	if m.failing.Swap(false) {
		m.cfg.Logger.Info("replica heartbeat works again", "replica", m.cfg.ID)
	}
	old := m.live.Swap(int64(n))
	if old != int64(n) || !m.started.Swap(true) {
		if old != int64(n) {
			m.cfg.Logger.Info("replicas changed: rate limits rebalanced", "replica", m.cfg.ID, "replicas", n, "was", old)
		}
		if m.cfg.OnChange != nil {
			m.cfg.OnChange(n)
		}
	}
	if m.cfg.Revision != nil {
		// After the heartbeat, which makes the row when it is missing
		// (a replica counted out and back).
		if err := m.cfg.Store.AckRevision(ctx, m.cfg.ID, m.cfg.Revision()); err != nil {
			if m.cfg.OnError != nil {
				m.cfg.OnError(err)
			}
			if !m.ackFailing.Swap(true) {
				m.cfg.Logger.Warn("replica revision not acknowledged: a revoke on another replica may wait for this one", "replica", m.cfg.ID, "error", err)
			}
			return err
		}
		if m.ackFailing.Swap(false) {
			m.cfg.Logger.Info("replica revision acknowledged again", "replica", m.cfg.ID)
		}
	}
	return nil
}

// Poke asks Run to beat now rather than at the next Interval: the
// keystore calls it after a reload, so that the revision it now serves is
// acknowledged at once. It never blocks; pokes before a beat count once.
func (m *Membership) Poke() {
	select {
	case m.poke <- struct{}{}:
	default:
	}
}

// Run beats every Interval, and when poked (Poke), until ctx ends, then
// removes the replica's heartbeat (waiting at most Interval), so that the
// others count it out at their next beat rather than after TTL.
func (m *Membership) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.Interval)
			defer cancel()
			if err := m.cfg.Store.RemoveReplica(rctx, m.cfg.ID); err != nil {
				m.cfg.Logger.Warn("replica heartbeat not removed: the other replicas count this one out when it expires", "replica", m.cfg.ID, "ttl", m.cfg.TTL, "error", err)
			}
			return
		case <-t.C:
			m.Beat(ctx)
		case <-m.poke:
			m.Beat(ctx)
		}
	}
}
