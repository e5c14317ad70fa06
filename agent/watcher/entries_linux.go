//go:build linux

package watcher

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// entryMask is what the name-reporting group is told about a watched directory:
// entries created, removed, renamed (FAN_RENAME names both ends), attributes changed,
// for files and subdirectories alike.
const entryMask = unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_RENAME | unix.FAN_ATTRIB |
	unix.FAN_ONDIR | unix.FAN_EVENT_ON_CHILD

// entryOps maps the name-reporting group's events to Ops, in the order they are sent
// when the kernel merged several into one event.
var entryOps = []struct {
	mask uint64
	op   string
}{
	{unix.FAN_CREATE, OpCreate},
	{unix.FAN_ATTRIB, OpChmod},
	{unix.FAN_RENAME, OpRename},
	{unix.FAN_DELETE, OpRemove},
}

// entryGroup is the second fanotify group, FAN_CLASS_NOTIF with
// FAN_REPORT_DFID_NAME_TARGET (FAN_REPORT_DFID_NAME|FAN_REPORT_FID|FAN_REPORT_TARGET_FID,
// Linux 5.17): it names the directory and entry of what changed, and the object
// itself, so that an entry made for a watched file (a hard link) is recognised by inode. The kernel refuses to combine name reporting with permission events, hence
// a group of its own. Events name objects by file handle; a handle is turned into a
// path with open_by_handle_at(2), which needs a descriptor on the same file system.
type entryGroup struct {
	fd   int
	done chan struct{} // closed when the entry reader returns
	err  error         // set before done is closed

	mu     sync.Mutex
	mounts map[[2]int32]int  // a directory descriptor per file system id
	dirs   map[string]string // handle key -> the last path it resolved to
}

func newEntryGroup() (*entryGroup, error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|unix.FAN_REPORT_DFID_NAME_TARGET,
		unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("initialising fanotify with FAN_REPORT_DFID_NAME_TARGET: %w", err)
	}
	return &entryGroup{fd: fd, done: make(chan struct{}), mounts: map[[2]int32]int{}, dirs: map[string]string{}}, nil
}

// close releases the group and the mount descriptors, after the entry reader returned.
func (g *entryGroup) close() {
	unix.Close(g.fd)
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, fd := range g.mounts {
		unix.Close(fd)
	}
	clear(g.mounts)
}

// remember keeps a descriptor on dir's file system for open_by_handle_at, and dir's
// handle, to name the directory once it is gone (events of `rm -r` arrive after it).
func (g *entryGroup) remember(dir string) {
	// Not O_PATH: open_by_handle_at refuses such a descriptor as its mount.
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	var st unix.Statfs_t
	if unix.Fstatfs(fd, &st) != nil {
		unix.Close(fd)
		return
	}
	fsid := [2]int32{st.Fsid.Val[0], st.Fsid.Val[1]}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.mounts[fsid]; ok {
		unix.Close(fd)
	} else {
		g.mounts[fsid] = fd
	}
	if h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, dir, 0); err == nil {
		g.dirs[handleKey(fsid, h.Type(), h.Bytes())] = dir
	}
}

// markEntries marks a resolved target in the name-reporting group: a directory for
// its entries, a file through its parent directory (events for other entries are
// filtered out by path) and itself for attribute changes, which include a new hard
// link to it. Failures are logged and listed in Degraded.
func (w *fanWatcher) markEntries(r resolved) {
	if w.entries == nil {
		return
	}
	dir := r.real
	if !r.isDir {
		dir = filepath.Dir(r.real)
		w.markEntry(r.real, unix.FAN_ATTRIB)
	}
	w.markEntry(dir, entryMask)
	w.entries.remember(dir)
}

func (w *fanWatcher) markEntry(path string, mask uint64) {
	err := unix.FanotifyMark(w.entries.fd, unix.FAN_MARK_ADD, mask, unix.AT_FDCWD, path)
	w.degradedMu.Lock()
	defer w.degradedMu.Unlock()
	if err == nil {
		delete(w.noEntries, path)
		return
	}
	w.noEntries[path] = err
	w.opts.Logger.Warn("cannot mark path for directory entry events", "path", path, "err", err)
}

// markTree marks root and every directory under it in both groups, on behalf of rules,
// and calls found (if not nil) for every entry under root: those of a directory that
// was filled before its mark was in place. The caller holds fdMu and reindexes.
func (w *fanWatcher) markTree(root string, rules []ruleRef, found func(path string)) {
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // gone already, or unreadable: nothing to mark
		}
		if path != root && found != nil {
			found(path)
		}
		if !d.IsDir() {
			return nil
		}
		r, err := resolve(path)
		if err != nil || !r.isDir {
			return nil
		}
		id := fileIDOf(r)
		if _, err := w.mark(r, id); err != nil {
			w.opts.Logger.Warn("cannot mark directory under a watched directory", "path", path, "err", err)
			return nil
		}
		w.markEntries(r)
		w.treeDirs[id] = appendRules(w.treeDirs[id], rules)
		return nil
	})
}

// readEntries is the entry reader goroutine: see fanWatcher. Unlike the permission
// reader, it holds no process up and may take its time.
func (w *fanWatcher) readEntries() {
	g := w.entries
	defer close(g.done)
	buf := make([]byte, 16<<10)
	fds := []unix.PollFd{{Fd: int32(g.fd), Events: unix.POLLIN}, {Fd: int32(w.wake), Events: unix.POLLIN}}
	lk := &lookuper{timer: time.NewTimer(time.Hour)}
	lk.timer.Stop()
	for !w.stopping.Load() {
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			g.err = fmt.Errorf("polling fanotify entry group: %w", err)
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		for !w.stopping.Load() {
			n, err := unix.Read(g.fd, buf)
			if errors.Is(err, unix.EAGAIN) {
				break
			}
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				g.err = fmt.Errorf("reading fanotify entry events: %w", err)
				return
			}
			if err := w.handleEntries(buf[:n], time.Now(), lk); err != nil {
				g.err = err
				return
			}
		}
	}
}

// Offsets in struct fanotify_event_info_fid, after its 4-byte header.
const (
	infoHeaderLen = 4
	offInfoType   = 0
	offInfoLen    = 2
	fsidLen       = 8
	handleHdrLen  = 8 // struct file_handle: handle_bytes, handle_type
)

// fid is one information record: an object named by file system id and handle, and
// for the directory records the name of the entry in it.
type fid struct {
	kind   uint8
	fsid   [2]int32
	htype  int32
	handle []byte
	name   string
}

// handleEntries processes one read(2) of the entry group. Snapshots are taken once per
// process per read: a `rm -r` of many files costs one /proc lookup.
func (w *fanWatcher) handleEntries(buf []byte, now time.Time, lk *lookuper) error {
	snaps := map[int32]*snapshot{}
	for off := 0; off < len(buf); {
		if len(buf)-off < metaLen {
			return fmt.Errorf("reading fanotify entry events: %d stray bytes", len(buf)-off)
		}
		b := buf[off:]
		evLen := int(binary.NativeEndian.Uint32(b[offEventLen:]))
		mLen := int(binary.NativeEndian.Uint16(b[offMetaLen:]))
		if b[offVers] != unix.FANOTIFY_METADATA_VERSION {
			return fmt.Errorf("reading fanotify entry events: metadata version %d, want %d", b[offVers], unix.FANOTIFY_METADATA_VERSION)
		}
		if evLen < metaLen || evLen > len(b) || mLen < metaLen || mLen > evLen {
			return fmt.Errorf("reading fanotify entry events: bad event length %d", evLen)
		}
		off += evLen
		mask := binary.NativeEndian.Uint64(b[offMask:])
		pid := int32(binary.NativeEndian.Uint32(b[offPid:]))
		if fd := int(int32(binary.NativeEndian.Uint32(b[offFd:]))); fd >= 0 {
			unix.Close(fd) // not expected with FID reporting, but never leaked
		}
		if mask&unix.FAN_Q_OVERFLOW != 0 {
			w.overflows.Add(1)
			w.signalLoss()
			continue
		}
		if int(pid) == w.opts.ExcludePID {
			continue
		}
		w.handleEntry(mask, pid, parseFids(b[mLen:evLen]), now, lk, snaps)
	}
	return nil
}

// parseFids reads the information records of one event; a malformed record ends the
// list (the event is then reported with what was read, or dropped for lack of a path).
func parseFids(b []byte) []fid {
	var out []fid
	for len(b) >= infoHeaderLen {
		n := int(binary.NativeEndian.Uint16(b[offInfoLen:]))
		if n < infoHeaderLen+fsidLen+handleHdrLen || n > len(b) {
			return out
		}
		rec := b[:n]
		b = b[n:]
		f := fid{kind: rec[offInfoType]}
		p := rec[infoHeaderLen:]
		f.fsid = [2]int32{int32(binary.NativeEndian.Uint32(p)), int32(binary.NativeEndian.Uint32(p[4:]))}
		p = p[fsidLen:]
		hlen := int(binary.NativeEndian.Uint32(p))
		f.htype = int32(binary.NativeEndian.Uint32(p[4:]))
		p = p[handleHdrLen:]
		if hlen > len(p) {
			return out
		}
		f.handle = p[:hlen]
		if name := p[hlen:]; len(name) > 0 {
			if i := indexNUL(name); i >= 0 {
				f.name = string(name[:i])
			}
		}
		out = append(out, f)
	}
	return out
}

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

func handleKey(fsid [2]int32, htype int32, handle []byte) string {
	k := make([]byte, 12, 12+len(handle))
	binary.NativeEndian.PutUint32(k, uint32(fsid[0]))
	binary.NativeEndian.PutUint32(k[4:], uint32(fsid[1]))
	binary.NativeEndian.PutUint32(k[8:], uint32(htype))
	return string(append(k, handle...))
}

// handleEntry matches one entry event to rules and hands it to Run, one record per
// operation it carries.
func (w *fanWatcher) handleEntry(mask uint64, pid int32, fids []fid, now time.Time, lk *lookuper, snaps map[int32]*snapshot) {
	idx := w.index.Load()
	if idx == nil {
		return
	}
	var path, from string
	var obj *fid
	for i := range fids {
		f := &fids[i]
		switch f.kind {
		case unix.FAN_EVENT_INFO_TYPE_DFID_NAME, unix.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME:
			path = w.entries.entryPath(f)
		case unix.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME:
			from = w.entries.entryPath(f)
		case unix.FAN_EVENT_INFO_TYPE_FID:
			obj = f
		}
	}
	var objID fileID
	haveID := false
	if obj != nil && (path == "" || len(idx.m.match(path)) == 0 && (from == "" || len(idx.m.match(from)) == 0)) {
		// Not covered by name: the object may be a watched file by inode (a rename
		// target elsewhere, the link count of a watched file).
		var p string
		p, objID, haveID = w.entries.object(obj)
		if path == "" {
			path = p
		}
	}
	if path == "" {
		return
	}
	rules := idx.m.match(path)
	if from != "" {
		rules = appendRules(rules, idx.m.match(from))
	}
	if haveID {
		rules = appendRules(rules, idx.byFile[objID])
	}
	if len(rules) == 0 {
		return
	}
	snap := snaps[pid]
	if snap == nil {
		snap = lk.lookup(pid, &w.lookupTimeouts)
		snaps[pid] = snap
	}
	for _, o := range entryOps {
		if mask&o.mask == 0 {
			continue
		}
		ch := &entryChange{op: o.op, isDir: mask&unix.FAN_ONDIR != 0, rules: rules}
		if o.op == OpRename {
			ch.from = from
		}
		select {
		case w.records <- rawEvent{pid: pid, path: path, at: now, snap: snap, entry: ch}:
		default:
			w.dropped.Add(1)
			w.signalLoss()
		}
	}
}

// entryPath is the path of the entry a directory record names: the directory as it is
// now, or as it was last seen if it is gone, joined with the entry's name.
func (g *entryGroup) entryPath(f *fid) string {
	dir := g.path(f)
	if dir == "" {
		return ""
	}
	if f.name == "" || f.name == "." {
		return dir
	}
	return filepath.Join(dir, f.name)
}

// path resolves a directory handle, falling back to its last known path.
func (g *entryGroup) path(f *fid) string {
	key := handleKey(f.fsid, f.htype, f.handle)
	fd, err := g.open(f)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		return g.dirs[key]
	}
	defer unix.Close(fd)
	p := fdPath(fd)
	if p != "" {
		g.dirs[key] = p
	}
	return p
}

// object resolves the handle of the object an event is about to a path and an inode.
func (g *entryGroup) object(f *fid) (string, fileID, bool) {
	fd, err := g.open(f)
	if err != nil {
		return "", fileID{}, false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return fdPath(fd), fileID{}, false
	}
	return fdPath(fd), fileID{dev: uint64(st.Dev), ino: st.Ino}, true
}

// open opens a handle with O_PATH, which raises no fanotify event of its own.
func (g *entryGroup) open(f *fid) (int, error) {
	g.mu.Lock()
	mfd, ok := g.mounts[f.fsid]
	g.mu.Unlock()
	if !ok {
		return -1, unix.ESTALE
	}
	return unix.OpenByHandleAt(mfd, unix.NewFileHandle(f.htype, f.handle), unix.O_PATH|unix.O_CLOEXEC)
}
