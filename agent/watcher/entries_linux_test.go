//go:build linux

package watcher

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// TestEntryOverflowIsReported hands the entry group's parser the record the kernel
// queues when the group's queue overflows (16384 events are not worth queueing for
// real in a unit test): it must count as a loss like the permission group's.
func TestEntryOverflowIsReported(t *testing.T) {
	requireRoot(t)
	dir := fanotifyDir(t)
	losses := make(chan Loss, 4)
	fw, err := NewFileWatcher([]FileRule{{Name: "d", Paths: []string{dir}}}, Options{ForceMode: ModeFanotify, OnLoss: func(l Loss) {
		select {
		case losses <- l:
		default:
		}
	}})
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("fanotify unavailable (skipped outside CI only): %v", err)
		}
		t.Fatal(err)
	}
	w := fw.(*fanWatcher)
	if w.entries == nil {
		t.Fatalf("no entry group: %s", w.Degraded())
	}
	buf := make([]byte, metaLen)
	binary.NativeEndian.PutUint32(buf[offEventLen:], metaLen)
	buf[offVers] = unix.FANOTIFY_METADATA_VERSION
	binary.NativeEndian.PutUint16(buf[offMetaLen:], metaLen)
	binary.NativeEndian.PutUint64(buf[offMask:], unix.FAN_Q_OVERFLOW)
	binary.NativeEndian.PutUint32(buf[offFd:], uint32(0xffffffff)) // FAN_NOFD
	if err := w.handleEntries(buf, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	run(t, w)
	select {
	case l := <-losses:
		if l.Reason != LossKernelOverflow || !l.AtLeast || l.Count != 1 || w.Lost() != 1 {
			t.Fatalf("loss %+v, Lost() = %d; want one kernel_queue_overflow, at least", l, w.Lost())
		}
	case <-time.After(waitFor):
		t.Fatal("no loss reported")
	}
}

func TestParseFids(t *testing.T) {
	rec := func(kind uint8, handle []byte, name string) []byte {
		b := make([]byte, infoHeaderLen+fsidLen+handleHdrLen)
		b[offInfoType] = kind
		binary.NativeEndian.PutUint32(b[infoHeaderLen:], 7)
		binary.NativeEndian.PutUint32(b[infoHeaderLen+fsidLen:], uint32(len(handle)))
		binary.NativeEndian.PutUint32(b[infoHeaderLen+fsidLen+4:], 1)
		b = append(b, handle...)
		if name != "" {
			b = append(append(b, name...), 0)
		}
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		binary.NativeEndian.PutUint16(b[offInfoLen:], uint16(len(b)))
		return b
	}
	buf := append(rec(unix.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME, []byte{1, 2, 3, 4, 5, 6, 7, 8}, "old"),
		rec(unix.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME, []byte{9, 9, 9, 9, 9, 9, 9, 9}, "new")...)
	buf = append(buf, rec(unix.FAN_EVENT_INFO_TYPE_FID, []byte{5, 5, 5, 5, 5, 5, 5, 5}, "")...)
	got := parseFids(buf)
	if len(got) != 3 || got[0].name != "old" || got[1].name != "new" || got[2].name != "" ||
		got[2].kind != unix.FAN_EVENT_INFO_TYPE_FID || got[0].fsid[0] != 7 || got[1].handle[0] != 9 {
		t.Fatalf("parsed %+v", got)
	}
	if got := parseFids(buf[:len(buf)-1]); len(got) != 2 {
		t.Fatalf("a cut last record: parsed %d records, want the 2 whole ones", len(got))
	}
}

// FuzzParseFids feeds the information-record parser arbitrary bytes: it must never
// panic nor return a handle beyond its record.
func FuzzParseFids(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{2, 0, 24, 0, 1, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 1, 2, 3, 4, 'a', 0, 0, 0})
	f.Add([]byte{1, 0, 255, 255, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, r := range parseFids(b) {
			if len(r.handle) > len(b) || len(r.name) > len(b) {
				t.Fatalf("record %+v longer than its input", r)
			}
		}
	})
}

// TestAutoModeWatchesTreesAsRoot checks that auto mode as root has the name-reporting
// group and has marked every directory of a watched tree when NewFileWatcher returns.
func TestAutoModeWatchesTreesAsRoot(t *testing.T) {
	requireRoot(t)
	dir := fanotifyDir(t)
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := NewFileWatcher([]FileRule{{Name: "tree", Severity: chain.SeverityInfo, Paths: []string{dir}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	fw, ok := w.(*fanWatcher)
	if !ok || fw.entries == nil || w.Degraded() != "" {
		t.Fatalf("mode %s, degraded %q; want fanotify with its entry group", w.Mode(), w.Degraded())
	}
	if n := len(fw.treeDirs); n != 3 {
		t.Fatalf("%d directories marked under %s, want 3 (itself, a, a/b)", n, dir)
	}
}
