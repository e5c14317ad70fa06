//go:build ignore

// Reports TCP connections on watched ports as they reach ESTABLISHED, from the
// tracepoint sock/inet_sock_set_state. See docs/adr/0010-network-watcher.md.

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "Dual MIT/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3

#define DIR_INBOUND 1
#define DIR_OUTBOUND 2

#define TASK_COMM_LEN 16

// The tracepoint's context, as /sys/kernel/tracing/events/sock/inet_sock_set_state/format
// lays it out on 64-bit kernels (protocol since Linux 5.6). Ports are in host order.
struct inet_sock_set_state_args {
	__u64 common;
	__u64 skaddr;
	int oldstate;
	int newstate;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 protocol;
	__u8 saddr[4];
	__u8 daddr[4];
	__u8 saddr_v6[16];
	__u8 daddr_v6[16];
};

// A watched port: the local port of inbound connections, the remote port of outbound
// ones.
struct watch_key {
	__u16 port;
	__u8 direction;
	__u8 pad;
};

// The process that called connect(), kept from SYN_SENT to ESTABLISHED: the
// ESTABLISHED transition of an outbound connection runs in softirq context, where the
// current task is whoever the packet interrupted.
struct task_info {
	__u32 pid;
	__u32 uid;
	__u8 comm[TASK_COMM_LEN];
};

// One established connection. Addresses are IPv4 in the first 4 bytes when family is
// AF_INET; s is this host's end, d the peer's.
struct event {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u8 direction;
	__u8 has_task;
	struct task_info task;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct watch_key);
	__type(value, __u8);
} watched SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct task_info);
} connecting SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
	__type(value, struct event);
} events SEC(".maps");

// Ring buffer reservations that failed, per CPU.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

static __always_inline int is_watched(__u16 port, __u8 direction)
{
	struct watch_key k = {};
	k.port = port;
	k.direction = direction;
	return bpf_map_lookup_elem(&watched, &k) != 0;
}

static __always_inline void emit(struct inet_sock_set_state_args *ctx, __u8 direction, struct task_info *task)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&lost, &zero);
		if (n)
			__sync_fetch_and_add(n, 1);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	if (ctx->family == AF_INET6) {
		__builtin_memcpy(e->saddr, ctx->saddr_v6, 16);
		__builtin_memcpy(e->daddr, ctx->daddr_v6, 16);
	} else {
		__builtin_memcpy(e->saddr, ctx->saddr, 4);
		__builtin_memcpy(e->daddr, ctx->daddr, 4);
	}
	e->sport = ctx->sport;
	e->dport = ctx->dport;
	e->family = ctx->family;
	e->direction = direction;
	if (task) {
		e->has_task = 1;
		e->task = *task;
	}
	bpf_ringbuf_submit(e, 0);
}

SEC("tracepoint/sock/inet_sock_set_state")
int inet_sock_set_state(struct inet_sock_set_state_args *ctx)
{
	if (ctx->protocol != IPPROTO_TCP || (ctx->family != AF_INET && ctx->family != AF_INET6))
		return 0;
	__u64 sk = ctx->skaddr;

	if (ctx->newstate == TCP_SYN_SENT) {
		// connect(): the current task is the caller.
		if (!is_watched(ctx->dport, DIR_OUTBOUND))
			return 0;
		struct task_info t = {};
		t.pid = bpf_get_current_pid_tgid() >> 32;
		t.uid = (__u32)bpf_get_current_uid_gid();
		bpf_get_current_comm(t.comm, sizeof(t.comm));
		bpf_map_update_elem(&connecting, &sk, &t, BPF_ANY);
		return 0;
	}

	if (ctx->oldstate == TCP_SYN_SENT) {
		struct task_info *found = bpf_map_lookup_elem(&connecting, &sk);
		struct task_info t = {};
		int has_task = 0;
		if (found) {
			t = *found;
			has_task = 1;
			bpf_map_delete_elem(&connecting, &sk);
		}
		if (ctx->newstate == TCP_ESTABLISHED && is_watched(ctx->dport, DIR_OUTBOUND))
			emit(ctx, DIR_OUTBOUND, has_task ? &t : 0);
		return 0;
	}

	if (ctx->oldstate == TCP_SYN_RECV && ctx->newstate == TCP_ESTABLISHED && is_watched(ctx->sport, DIR_INBOUND))
		emit(ctx, DIR_INBOUND, 0);
	return 0;
}
