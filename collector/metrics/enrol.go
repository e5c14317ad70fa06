package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Results of an enrolment or a renewal, the values of the "result" label.
const (
	ResultOK        = "ok"        // a certificate was signed
	ResultRefused   = "refused"   // a bad token (enrolment) or a refused request (renewal)
	ResultThrottled = "throttled" // enrolment: too many failures from the address
	ResultInvalid   = "invalid"   // a malformed request (a bad CSR, an unsupported protocol)
	ResultError     = "error"     // the collector failed (store unavailable, signing failed)
)

// Enrolment holds the metrics of enrolment and of certificate renewal over the stream. A
// nil *Enrolment is valid and records nothing.
type Enrolment struct {
	Enrolments *prometheus.CounterVec
	Renewals   *prometheus.CounterVec
}

// NewEnrolment registers the enrolment and renewal metrics with reg.
func NewEnrolment(reg prometheus.Registerer) *Enrolment {
	f := promauto.With(reg)
	return &Enrolment{
		Enrolments: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tripwire_collector_enrolments_total",
			Help: "Enrolment attempts (join tokens redeemed for a certificate), by result: ok, refused, throttled, invalid or error.",
		}, []string{"result"}),
		Renewals: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tripwire_collector_certificate_renewals_total",
			Help: "Agent certificate renewals over the stream, by result: ok, refused, invalid or error.",
		}, []string{"result"}),
	}
}

// Enrolled records an enrolment attempt's result.
func (e *Enrolment) Enrolled(result string) {
	if e == nil {
		return
	}
	e.Enrolments.WithLabelValues(result).Inc()
}

// Renewed records a renewal's result.
func (e *Enrolment) Renewed(result string) {
	if e == nil {
		return
	}
	e.Renewals.WithLabelValues(result).Inc()
}
