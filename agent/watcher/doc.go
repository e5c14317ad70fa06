// Package watcher sets file tripwires and turns what the kernel reports about them into
// chain.Event values: who (pid, user, executable, command line) read, wrote, executed,
// created, removed, renamed or changed the attributes of which watched path.
//
// A rule path is a file, or a directory that covers everything under it, subdirectories
// created later included. Two modes sit behind one FileWatcher interface:
//
//   - fanotify (Linux, root), two groups. The permission group sees opens, reads,
//     writes, closes and executions with the acting process. It subscribes to
//     FAN_OPEN_PERM and FAN_OPEN_EXEC_PERM so that the opener is held in open(2) or
//     execve(2) while its identity is copied from /proc, then always allows it: a
//     process that exits right after reading is still named. See
//     docs/adr/0005-fanotify-permission-events.md. The entry group
//     (FAN_REPORT_DFID_NAME_TARGET, which the kernel will not combine with permission
//     events) sees creations, removals, renames with both names, and attribute changes
//     in watched directories and of watched files; it is a notification group, so an
//     actor that has exited when its event is read keeps its pid but may lack the rest
//     (named in chain.Event.Missing). Every directory of a watched tree is marked in
//     both groups, and a directory created or moved into a tree is marked when its
//     creation is read; what was already in it by then is reported as created, with no
//     actor.
//   - fsnotify (every platform, no privilege): sees writes, creations, removals,
//     renames and mode changes of watched paths, but no reads, no executions and no
//     process identity. Its events name those fields in chain.Event.Missing.
//     Subdirectories of a watched directory are added at each rescan.
//
// In fanotify mode, accesses are first coalesced per session — one process's use of
// one file, from its open to its last close. The first read of a session becomes one
// OpRead event, sent when the file is closed or Options.CoalesceWindow after that read,
// whichever comes first, with Count the number of read notifications seen until then;
// later reads in the session are counted but not sent again. Writes are handled the
// same way, as OpWrite. A session with neither read nor write — an mmap, a descriptor
// opened and held, `touch` — is still an access to a tripwire and is reported once, as
// OpOpen (OpCloseWrite if it was opened for writing), when closed or twice the window
// after the open. A session that executes the file is one OpExec, sent at once.
//
// Bursts are then coalesced across sessions: per (pid, file, op) — the file by inode
// for accesses, by path for entry changes — the first event is sent at once and opens
// a window of Options.BurstWindow (5 s by default); the events of the same key within
// it are counted, and sent as one summary event carrying their count when it ends,
// which opens the next window. A process that opens, reads and closes a watched file
// 10,000 times yields one event at once and one per window while it goes on, and their
// Count fields add up to the 10,000 reads. See docs/watchers/file.md.
//
// NewFileWatcher picks fanotify and falls back to fsnotify, and has every watch in
// place when it returns. Events that cannot be delivered are never dropped silently:
// they are counted (FileWatcher.Lost) and reported through Options.OnLoss so that the
// pipeline can write a gap entry into the audit chain; both fanotify groups count their
// kernel queue overflows this way.
package watcher
