// Package netwatch sets network tripwires and turns the TCP connections that trip them
// into chain.Event values: who (source address and port) connected to which watched
// port, and which local process owns the socket.
//
// Two kinds of rule share one Watcher:
//
//   - decoy (every platform): the agent listens on the rule's ports itself, accepts each
//     caller, keeps what it sends first (Options.FirstBytes within
//     Options.FirstBytesWait) and closes. Nobody legitimate connects to a decoy, so
//     every connection is an event.
//   - monitor (Linux): connections reaching ESTABLISHED on an existing service's port,
//     accepted here (inbound: the local port is watched) or made from here (outbound:
//     the remote port is watched), with the owning process. Two modes:
//     ModeEBPF, a program on the tracepoint sock/inet_sock_set_state that filters by
//     port in the kernel and reports through a ring buffer, sees every connection;
//     ModeSockDiag lists the host's sockets over NETLINK_SOCK_DIAG every
//     Options.PollInterval and misses connections shorter than that.
//
// New picks eBPF and falls back to sockdiag; on macOS and Windows the monitor polls
// the connection table (ModePoll: netstat, GetExtendedTcpTable) instead. A port that has a decoy is never monitored inbound,
// so a caller is reported once. Events that cannot be delivered are counted (Lost) and
// reported through Options.OnLoss. See docs/adr/0010-network-watcher.md and
// docs/watchers/network.md.
package netwatch
