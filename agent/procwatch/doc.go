// Package procwatch sets process tripwires: it reports every execution of a watched
// program as a chain.Event saying who ran it (pid, parent, user, group), what exactly
// ran (executable, its SHA-256, the full command line) and where (working directory,
// cgroup or container, parent's executable).
//
// Three modes sit behind one Watcher interface, tried in this order:
//
//   - ebpf (Linux, root, BTF): a raw tracepoint on sched_process_exec copies the new
//     program's identity, the file name it was executed by and its argv into a BPF ring
//     buffer. Nothing depends on the process still being alive when user space reads
//     the record, so a program that exits at once is still reported in full. See
//     docs/adr/0009-ebpf-process-watcher.md.
//   - netlink (Linux; CAP_NET_ADMIN on older kernels): the kernel's process
//     connector announces each exec by pid only; the rest is read from /proc at once,
//     and a process that exits first loses those fields (named in
//     chain.Event.Missing).
//   - proc (every platform): the process table — /proc on Linux, kern.proc.all and
//     kern.procargs2 on macOS, a Toolhelp snapshot on Windows — is polled every
//     Options.PollInterval; a program that runs for less than that is not seen at all.
//
// In every mode the agent enriches what is still readable from /proc, hashes the
// executable when a rule needs it (MatchContent), matches the rules and sends one
// event per matching rule. Events lost on the way (ring buffer full, netlink ENOBUFS,
// a full queue) are counted (Watcher.Lost) and reported through Options.OnLoss, never
// dropped silently. Secrets are not redacted and allowlists are not applied here: the
// agent pipeline does both after the watcher.
package procwatch
