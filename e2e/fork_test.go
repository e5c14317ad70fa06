package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// forkAlert is an alert of /api/v1/alerts with the fields a fork sets.
type forkAlert struct {
	TripwireType string `json:"tripwire_type"`
	AlertID      string `json:"alert_id"`
	HostID       string `json:"host_id"`
	Host         string `json:"host"`
	Seq          uint64 `json:"seq"`
	ForkOf       string `json:"fork_of"`
	EventDetail  struct {
		PID int `json:"pid"`
	} `json:"event_detail"`
}

// An agent whose audit directory was wiped (reinstalled, or replaced by an intruder)
// starts a new chain under the same certificate. The collector keeps it as a fork of
// the host instead of refusing it or dropping its first entries as "already held": the
// new read arrives flagged, the old alerts are unchanged, one INTEGRITY event says what
// happened, the agent delivers everything, and the fork exports and verifies from
// genesis.
func TestWipedChainIsKeptAsAFork(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	e.startCollector()
	decoy, cfg, hz := e.decoyAgentConfig("web-08", "WARN")
	agent := e.startAgent(cfg, hz)
	for range 3 {
		asNobody(t, "cat", decoy)
	}
	var before []forkAlert
	waitFor(t, 5*time.Second, "3 alerts", func() (bool, string) {
		var err error
		before, err = e.forkAlerts("host=web-08")
		return err == nil && len(before) == 3, fmt.Sprint(len(before), err)
	})
	hostID := before[0].HostID
	agent.stop(syscall.SIGTERM)
	if err := os.RemoveAll(filepath.Join(e.dir, "audit-web-08")); err != nil {
		t.Fatal(err)
	}
	agent = e.startAgent(cfg, hz)
	pid := asNobody(t, "cat", decoy)

	var read forkAlert
	waitFor(t, 10*time.Second, "the new read, flagged as a fork of web-08", func() (bool, string) {
		alerts, err := e.forkAlerts("host=web-08")
		for _, a := range alerts {
			if a.EventDetail.PID == pid {
				read = a
				return a.ForkOf == hostID && a.HostID != hostID && a.Host == "web-08", fmt.Sprintf("%+v", a)
			}
		}
		return false, fmt.Sprint(len(alerts), err)
	})
	forkID := read.HostID
	after, err := e.forkAlerts("host=" + hostID)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the host's own alerts changed:\n got %+v\nwant %+v", after, before)
	}

	waitFor(t, 10*time.Second, "the agent connected with nothing left to send", func() (bool, string) {
		var h struct {
			QueueDepth uint64 `json:"queue_depth"`
			Collector  struct {
				Connected bool   `json:"connected"`
				LastError string `json:"last_error"`
			} `json:"collector"`
		}
		err := getJSON("http://"+hz+"/healthz", "", &h)
		return err == nil && h.Collector.Connected && h.QueueDepth == 0, fmt.Sprintf("%+v %v", h, err)
	})

	var events struct {
		Events []struct{ Kind, Host, HostID, Severity, Message string } `json:"events"`
	}
	if err := getJSON("http://"+e.httpAddr+"/api/v1/host-events", e.token, &events); err != nil {
		t.Fatal(err)
	}
	var integrity int
	for _, ev := range events.Events {
		if ev.Kind != "INTEGRITY" {
			continue
		}
		integrity++
		if ev.Severity != "CRITICAL" || ev.Host != "web-08" || !strings.Contains(ev.Message, forkID) || !strings.Contains(ev.Message, "at seq 1") || !strings.Contains(ev.Message, "--new-host-id") {
			t.Errorf("integrity event = %+v, want CRITICAL for web-08 naming fork %s, seq 1 and pki issue --new-host-id", ev, forkID)
		}
	}
	if integrity != 1 {
		t.Errorf("host events = %+v, want exactly one INTEGRITY event", events.Events)
	}
	var hosts struct {
		Hosts []struct {
			HostID   string `json:"host_id"`
			Hostname string `json:"hostname"`
			ForkOf   string `json:"fork_of"`
			ForkSeq  uint64 `json:"fork_seq"`
		} `json:"hosts"`
	}
	if err := getJSON("http://"+e.httpAddr+"/api/v1/hosts", e.token, &hosts); err != nil {
		t.Fatal(err)
	}
	if h := hosts.Hosts; len(h) != 2 || h[0].Hostname != "web-08" || h[1].Hostname != "web-08" ||
		!((h[0].HostID == forkID && h[0].ForkOf == hostID && h[0].ForkSeq == 1 && h[1].ForkOf == "") ||
			(h[1].HostID == forkID && h[1].ForkOf == hostID && h[1].ForkSeq == 1 && h[0].ForkOf == "")) {
		t.Errorf("/api/v1/hosts = %+v, want web-08 and its fork %s (fork_of %s, fork_seq 1)", h, forkID, hostID)
	}

	// The fork, exported from the collector's store, verifies from genesis in SQL.
	agent.stop(syscall.SIGTERM)
	e.coll.stop(syscall.SIGTERM)
	db := loadExport(t, "export", "--duckdb", filepath.Join(e.dir, "data", "tripwire.duckdb"), "--host", forkID)
	var breaks, recomputed, total, first, reads int
	if err := db.QueryRow(`SELECT (SELECT count(*) FROM chain_breaks),
		(SELECT count(*) FROM entries WHERE sha256(prev_hash || payload) = hash),
		(SELECT count(*) FROM entries), (SELECT min(seq) FROM entries),
		(SELECT count(*) FROM entries WHERE CAST(json_extract(payload, '$.event.pid') AS INTEGER) = ?)`, pid).
		Scan(&breaks, &recomputed, &total, &first, &reads); err != nil {
		t.Fatal(err)
	}
	if breaks != 0 || recomputed != total || first != 1 || reads != 1 {
		t.Fatalf("fork export: %d breaks, %d of %d hashes recompute, first seq %d, %d reads by pid %d; want a whole chain from seq 1 with the read", breaks, recomputed, total, first, reads, pid)
	}
	// And it says what it is: a fork of web-08 from seq 1, on its events too.
	var forkOf string
	var forkSeq, forkEvents int
	if err := db.QueryRow(`SELECT fork_of, fork_seq, (SELECT count(*) FROM events WHERE fork_of = h.fork_of)
		FROM hosts AS h WHERE host_id = ?`, forkID).Scan(&forkOf, &forkSeq, &forkEvents); err != nil || forkOf != hostID || forkSeq != 1 || forkEvents == 0 {
		t.Errorf("the fork's export names fork_of %q, fork_seq %d, %d events flagged (%v); want %s, 1, its events", forkOf, forkSeq, forkEvents, err, hostID)
	}
}

// forkAlerts lists the tripwires' alerts query selects (not the collector's own, type
// HOST, such as the integrity alert the fork raises).
func (e *env) forkAlerts(query string) ([]forkAlert, error) {
	return listAlerts(e, query, func(a forkAlert) string { return a.TripwireType })
}
