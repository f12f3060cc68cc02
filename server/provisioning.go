package server

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/tokend/tokend/server/provision"
	"github.com/tokend/tokend/server/twilioapi"
)

// initProvisioning builds the provisioner: a Twilio Keys API client (at
// TwilioAPIURL if set) and its metrics. It does not call Twilio: that
// happens only for applications given a provisioning credential.
func (s *Server) initProvisioning() error {
	if s.cfg.ProvisionInterval <= 0 {
		s.cfg.ProvisionInterval = ProvisionIntervalDefault
	}
	var prov *provision.Provisioner
	pm := s.metrics.ObserveProvisioning(func() int {
		if prov == nil {
			return 0
		}
		return len(prov.Missing())
	})
	client, err := twilioapi.New(twilioapi.Config{
		BaseURL: s.cfg.TwilioAPIURL,
		Timeout: s.cfg.TwilioTimeout,
		OnAttempt: func(op string, status int, _ bool) {
			pm.Requests.WithLabelValues(op, strconv.Itoa(status)).Inc()
		},
	})
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	prov = provision.New(provision.Config{
		Keys: s.keys, Twilio: client, Grace: s.cfg.ProvisionGrace,
		// Renewed every pass and while a pass runs: three missed
		// passes, or a minute with a long interval, and another replica
		// takes over (a lease that lapses between two passes only lets
		// another replica run the next one).
		LeaseTTL: min(3*s.cfg.ProvisionInterval, time.Minute),
		// A revoke waits for every replica to serve the fresh key before
		// it deletes the old one (they reload within a watch interval
		// and say so in their next heartbeat, at once), for this long at
		// most.
		Settle: RevokeSettle,
		Holder: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:])),
		Logger: s.log, Audit: s.audit,
		OnStep: func(action, result string) { pm.Steps.WithLabelValues(action, result).Inc() },
	})
	s.prov = prov
	return nil
}

// Provisioner returns the key provisioner (tests drive its scheduled work
// with Tick).
func (s *Server) Provisioner() *provision.Provisioner { return s.prov }
