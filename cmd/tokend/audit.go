package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

// autoBool is a boolean option whose default depends on other options
// ("auto"); given without a value on the command line it is true.
type autoBool struct {
	set, v bool
}

func (b *autoBool) String() string {
	if b == nil || !b.set {
		return "auto"
	}
	return strconv.FormatBool(b.v)
}

func (b *autoBool) Set(s string) error {
	if s == "auto" || s == "" {
		*b = autoBool{}
		return nil
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("must be true, false or auto")
	}
	*b = autoBool{set: true, v: v}
	return nil
}

func (b *autoBool) IsBoolFlag() bool { return true }

// Get returns the value as the config file writes it: true, false or
// "auto".
func (b *autoBool) Get() any {
	if b.set {
		return b.v
	}
	return "auto"
}

// auditOutputs are the --audit-log values that are no file.
var auditOutputs = map[string]bool{"-": true, "stderr": true, "stdout": true, "off": true}

// auditRequired resolves --audit-required: auto is on in policy mode
// (when there is an audit log), off in development mode.
func auditRequired(o *options) bool {
	if o.auditRequired.set {
		return o.auditRequired.v
	}
	return o.policyFile != "" && auditPath(o) != ""
}

// checkAudit validates the audit options.
func checkAudit(o *options) error {
	if o.auditMaxBytes < 0 {
		return o.invalid("audit-max-bytes", "must not be negative (0: no rotation by size)")
	}
	if o.auditMaxBytes > 0 && o.auditMaxBytes < minAuditMaxBytes {
		return o.invalid("audit-max-bytes", "must be 0 (no rotation by size) or at least %d", minAuditMaxBytes)
	}
	if o.auditMaxBytes > 0 && auditOutputs[o.auditLog] {
		return o.invalid("audit-max-bytes", "rotates an audit file; --audit-log %s is none", o.auditLog)
	}
	// Each rotation renames every kept file (audit.log.1 to .2, ...): a
	// bound keeps it a few hundred renames per --audit-max-bytes.
	if o.auditMaxFiles < 1 || o.auditMaxFiles > 100 {
		return o.invalid("audit-max-files", "must be between 1 and 100")
	}
	if o.auditRequired.set && o.auditRequired.v && auditPath(o) == "" {
		return o.invalid("audit-required", "needs an audit log, and --audit-log is off")
	}
	return nil
}

// minAuditMaxBytes is the smallest --audit-max-bytes: a few records.
const minAuditMaxBytes = 4096

// reopenAuditOnSIGHUP makes tokend reopen its audit file on SIGHUP (after
// logrotate renamed it) instead of dying of the signal, in every mode; the
// policy watcher, when there is one, reloads the policy on the same
// signal. It returns a func that stops it.
func reopenAuditOnSIGHUP(ctx context.Context, reopen func()) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-hup:
				reopen()
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}
