package metrics

import "github.com/prometheus/client_golang/prometheus"

// Provisioning holds the metrics of keys tokend manages at Twilio:
//
//	tokend_key_provisioning_steps_total{action, result="ok|error"}
//	    Each step: provision, rotate, delete, revoke, recover,
//	    orphan_deleted, switch_active, set_twilio_credential,
//	    delete_twilio_credential.
//	tokend_twilio_requests_total{op, status}
//	    Requests to Twilio's Keys API, by op (create key, list keys,
//	    delete key) and HTTP status ("0" for no answer).
//	tokend_keys_missing_at_twilio
//	    Keys tokend holds that Twilio did not list at the last reconcile.
type Provisioning struct {
	Steps    *prometheus.CounterVec
	Requests *prometheus.CounterVec
}

// ObserveProvisioning registers the provisioning metrics; missing counts
// the keys Twilio lacks.
func (m *Metrics) ObserveProvisioning(missing func() int) *Provisioning {
	p := &Provisioning{
		Steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_key_provisioning_steps_total",
			Help: "Steps of key provisioning at Twilio, by action and result.",
		}, []string{"action", "result"}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_twilio_requests_total",
			Help: "Requests to Twilio's Keys API, by op and HTTP status (0: no answer).",
		}, []string{"op", "status"}),
	}
	m.Registry.MustRegister(p.Steps, p.Requests, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tokend_keys_missing_at_twilio",
		Help: "Keys tokend holds that Twilio did not list at the last reconcile.",
	}, func() float64 { return float64(missing()) }))
	return p
}
