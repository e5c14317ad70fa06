package storage

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/google/uuid"

	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
)

// alertNamespace scopes alert ids; changing it would change every alert id.
var alertNamespace = uuid.MustParse("6f1c9a52-4c1e-4b8e-9a57-7d3f2b0c5e11")

// AlertID is the stable id of the alert recorded by entry seq of host hostID: the same
// entry resent, or stored by another backend, has the same id.
func AlertID(hostID string, seq uint64) string {
	return uuid.NewSHA1(alertNamespace, []byte(hostID+"/"+strconv.FormatUint(seq, 10))).String()
}

// AlertFromEntry builds the alert an event entry records. ok is false for entries that
// are not events.
func AlertFromEntry(hostname, hostID string, e batch.Entry) (a Alert, ok bool, err error) {
	if e.Kind != string(chain.KindEvent) {
		return Alert{}, false, nil
	}
	detail, err := EventDetail(e.Payload)
	if err != nil {
		return Alert{}, false, fmt.Errorf("decoding payload of seq %d: %w", e.Seq, err)
	}
	return Alert{
		AlertID:      AlertID(hostID, e.Seq),
		Host:         hostname,
		HostID:       hostID,
		Seq:          e.Seq,
		Timestamp:    e.Time.UTC(),
		TripwireType: e.Type,
		RuleName:     e.Rule,
		Severity:     e.Severity,
		EventDetail:  detail,
		TriageStatus: TriageOpen,
	}, true, nil
}

// EventDetail returns the exact text of a payload's "event" member (nil when it has
// none): the alert's event_detail, byte for byte as hashed, on every backend and on the
// live stream alike.
func EventDetail(payload []byte) (RawJSON, error) {
	var p struct {
		Event json.RawMessage `json:"event"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, err
	}
	if len(p.Event) == 0 {
		return nil, nil
	}
	return RawJSON(p.Event), nil
}
