// Package watcher sets file tripwires and turns what the kernel reports about them into
// chain.Event values: who (pid, user, executable, command line) read or wrote which
// watched path.
//
// Two modes sit behind one FileWatcher interface:
//
//   - fanotify (Linux, root): sees reads, writes and opens with the acting process.
//     It subscribes to FAN_OPEN_PERM so that the opener is held in open(2) while its
//     identity is copied from /proc, then always allows the open: a process that
//     exits right after reading is still named. See
//     docs/adr/0005-fanotify-permission-events.md.
//   - fsnotify (every platform, no privilege): sees writes, creations, removals,
//     renames and mode changes of watched paths, but no reads and no process identity.
//     Its events name those fields in chain.Event.Missing.
//
// In fanotify mode, accesses are coalesced per session — one process's use of one file,
// from its open to its last close. The first read of a session becomes one OpRead
// event, sent when the file is closed or Options.CoalesceWindow after that read,
// whichever comes first, with Count the number of read notifications seen until then;
// later reads in the session are counted but not sent again (full burst coalescing is
// later work). Writes are handled the same way, as OpWrite. A session with neither read
// nor write — an mmap, an exec, a descriptor opened and held, `touch` — is still an
// access to a tripwire and is reported once, as OpOpen (OpCloseWrite if it was opened
// for writing), when closed or twice the window after the open.
//
// NewFileWatcher picks fanotify and falls back to fsnotify, and has every watch in
// place when it returns. Events that cannot be delivered are never dropped silently:
// they are counted (FileWatcher.Lost) and reported through Options.OnLoss so that the
// pipeline can write a gap entry into the audit chain.
package watcher
