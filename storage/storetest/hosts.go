package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/tripwire-project/tripwire/storage"
)

func hostWeb() storage.Host {
	return storage.Host{
		HostID: "8d1e0c7a-web-1", Hostname: "web-1", OS: "linux", Arch: "amd64",
		Kernel: "6.18.0-1-amd64", AgentVersion: "0.3.0", ProtocolVersion: 1,
		Watchers:  `[{"kind":"file","mode":"fanotify","ok":true},{"kind":"network","mode":"netlink","ok":true}]`,
		FirstSeen: seen(-time.Hour), LastSeen: seen(-time.Hour),
	}
}

func hostDB() storage.Host {
	return storage.Host{
		HostID: "2f6b9e41-db-1", Hostname: "db-1", OS: "linux", Arch: "arm64",
		Kernel: "6.1.0-31-arm64", AgentVersion: "0.2.9", ProtocolVersion: 1,
		Watchers:  `[{"kind":"file","mode":"fsnotify","ok":true,"missing":["pid"]}]`,
		FirstSeen: seen(-2 * time.Hour), LastSeen: seen(-30 * time.Minute),
	}
}

func wantHost(t *testing.T, got, want storage.Host) {
	t.Helper()
	wantTime(t, want.Hostname+" first_seen", got.FirstSeen, want.FirstSeen)
	wantTime(t, want.Hostname+" last_seen", got.LastSeen, want.LastSeen)
	got.FirstSeen, got.LastSeen, want.FirstSeen, want.LastSeen = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if want.Status == "" {
		want.Status = storage.HostOnline // a registered host is online until the dead-man switch says otherwise
	}
	if got != want {
		t.Errorf("host\n got %+v\nwant %+v", got, want)
	}
}

func hosts(t *testing.T, s storage.Store) []storage.Host {
	t.Helper()
	hs, err := s.Hosts(t.Context())
	if err != nil {
		t.Fatalf("Hosts: %v", err)
	}
	return hs
}

func testRegisterAndList(t *testing.T, s storage.Store) {
	if hs := hosts(t, s); len(hs) != 0 {
		t.Fatalf("empty store lists %d hosts", len(hs))
	}
	web, db := hostWeb(), hostDB()
	mustRegister(t, s, web)
	mustRegister(t, s, db)
	hs := hosts(t, s)
	if len(hs) != 2 {
		t.Fatalf("Hosts returned %d hosts, want 2", len(hs))
	}
	// By name: db-1 before web-1.
	wantHost(t, hs[0], db)
	wantHost(t, hs[1], web)
}

func testReregister(t *testing.T, s storage.Store) {
	first := hostWeb()
	mustRegister(t, s, first)
	again := hostWeb()
	again.AgentVersion, again.Kernel, again.ProtocolVersion = "0.4.0", "6.18.1-1-amd64", 2
	again.Watchers = `[]`
	again.FirstSeen, again.LastSeen = seen(time.Hour), seen(time.Hour)
	mustRegister(t, s, again)
	hs := hosts(t, s)
	if len(hs) != 1 {
		t.Fatalf("Hosts returned %d hosts after registering one twice, want 1", len(hs))
	}
	want := again
	want.FirstSeen = first.FirstSeen
	wantHost(t, hs[0], want)
}

func testTouch(t *testing.T, s storage.Store) {
	h := hostWeb()
	mustRegister(t, s, h)
	if err := s.TouchHost(t.Context(), h.HostID, seen(time.Minute)); err != nil {
		t.Fatalf("TouchHost: %v", err)
	}
	// An older time (a late heartbeat) does not move last_seen back.
	if err := s.TouchHost(t.Context(), h.HostID, seen(-time.Minute)); err != nil {
		t.Fatalf("TouchHost: %v", err)
	}
	hs := hosts(t, s)
	if len(hs) != 1 {
		t.Fatalf("Hosts returned %d hosts, want 1", len(hs))
	}
	wantTime(t, "last_seen", hs[0].LastSeen, seen(time.Minute))
	wantTime(t, "first_seen", hs[0].FirstSeen, h.FirstSeen)

	err := s.TouchHost(t.Context(), "no-such-host", seen(0))
	if !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("TouchHost of an unknown host: got %v, want an error wrapping storage.ErrNotFound", err)
	}
}
