package keystore

import (
	"log/slog"
	"sync"
	"time"
)

// OutageReportInterval is the longest a failing store operation stays
// silent in the log: its first failure is logged at once, then at most one
// line per interval with the count of failures since the last one.
const OutageReportInterval = time.Minute

// outageLog logs the state of one periodic store operation (reading the
// revision, flushing key usage) rather than each failure: during an outage
// the operation fails on every tick, four times a second for the watch,
// and one line per failure would flood the log. It logs the change of
// state (failing, then reachable again) once, and while the failure lasts
// at most one reminder per OutageReportInterval with the count.
type outageLog struct {
	log    *slog.Logger
	what   string // "read the store's revision"
	impact string // what the outage costs meanwhile, "" if nothing to say: "changes made by other replicas are not seen"
	now    func() time.Time

	mu         sync.Mutex
	failing    bool
	since      time.Time // the first failure of the outage
	lastReport time.Time
	total      int // failures since the outage began
	unreported int // failures since the last line
}

func newOutageLog(log *slog.Logger, what, impact string) *outageLog {
	return &outageLog{log: log, what: what, impact: impact, now: time.Now}
}

// failure is what is failing, and what that costs: "read the store's
// revision (changes made by other replicas are not seen)".
func (o *outageLog) failure() string {
	if o.impact == "" {
		return o.what
	}
	return o.what + " (" + o.impact + ")"
}

// fail records a failure of the operation.
func (o *outageLog) fail(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	o.total++
	if !o.failing {
		o.failing, o.since, o.lastReport, o.unreported = true, now, now, 0
		o.log.Warn("store unavailable: cannot "+o.failure()+"; retrying, and logging the failure at most once a minute until it recovers",
			"error", err)
		return
	}
	o.unreported++
	if now.Sub(o.lastReport) < OutageReportInterval {
		return
	}
	o.log.Warn("store still unavailable: cannot "+o.failure(),
		"error", err, "failures", o.unreported, "failures_total", o.total, "since", o.since.UTC().Format(time.RFC3339), "for", now.Sub(o.since).Round(time.Second).String())
	o.lastReport, o.unreported = now, 0
}

// ok records a success: the end of an outage, if one was going on.
func (o *outageLog) ok() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.failing {
		return
	}
	now := o.now()
	o.log.Info("store available again: "+o.what+" works",
		"failures_total", o.total, "since", o.since.UTC().Format(time.RFC3339), "for", now.Sub(o.since).Round(time.Second).String())
	o.failing, o.total, o.unreported = false, 0, 0
}
