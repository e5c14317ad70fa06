// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Records every signal sent to the tripwire agent, with the sender, so that an agent
// killed or stopped leaves evidence of who did it. Each record goes to a ring buffer
// (read by the running agent) and into a small ring kept in a map pinned on bpffs,
// which outlives the agent: a SIGKILL'd agent's successor reads it at start.
//go:build ignore

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// The tracepoint's record, from /sys/kernel/tracing/events/signal/signal_generate/format.
struct signal_generate_args {
	unsigned short common_type;
	unsigned char common_flags;
	unsigned char common_preempt_count;
	int common_pid;
	int sig;
	int errno_;
	int code;
	char comm[16];  // the target's comm
	int pid;        // the target
	int group;
	int result;
};

struct record {
	__u64 boot_ns;     // CLOCK_BOOTTIME when the signal was generated
	__u32 target_pid;
	__u32 sender_pid;  // tgid of the task that generated it
	__u32 sender_uid;
	__s32 sig;
	__s32 code;        // si_code: 0 SI_USER (kill), -6 SI_TKILL, 0x80 SI_KERNEL
	__s32 result;      // 0 delivered, 1 ignored, 2 already pending, 3 overflow, 4 lost
	char sender_comm[16];
};

// The agent's pid, set before loading.
volatile const __u32 target_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} signals SEC(".maps");

#define KEPT 16

// SIGURG on every architecture Linux and Go run on.
#define SIGURG_NUM 23

// kept is the pinned ring of the last KEPT records; slot 0 of kept_next counts them.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KEPT);
	__type(key, __u32);
	__type(value, struct record);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tripwire_sig_kept SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tripwire_sig_next SEC(".maps");

// lost counts records the ring buffer had no room for.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

SEC("tracepoint/signal/signal_generate")
int on_signal_generate(struct signal_generate_args *ctx) {
	if (target_tgid == 0 || (__u32)ctx->pid != target_tgid)
		return 0;
	__u32 sender = bpf_get_current_pid_tgid() >> 32;
	// SIGURG from the agent to itself is the Go runtime preempting its own threads
	// (many a second under load): noise that would bury real senders and push them out
	// of the pinned ring.
	if (ctx->sig == SIGURG_NUM && sender == target_tgid)
		return 0;
	struct record r = {};
	r.boot_ns = bpf_ktime_get_boot_ns();
	r.target_pid = ctx->pid;
	r.sender_pid = sender;
	r.sender_uid = (__u32)bpf_get_current_uid_gid();
	r.sig = ctx->sig;
	r.code = ctx->code;
	r.result = ctx->result;
	bpf_get_current_comm(&r.sender_comm, sizeof(r.sender_comm));

	__u32 zero = 0;
	__u64 *next = bpf_map_lookup_elem(&tripwire_sig_next, &zero);
	if (next) {
		__u64 n = __sync_fetch_and_add(next, 1);
		__u32 slot = n % KEPT;
		bpf_map_update_elem(&tripwire_sig_kept, &slot, &r, BPF_ANY);
	}
	if (bpf_ringbuf_output(&signals, &r, sizeof(r), 0) != 0) {
		__u64 *l = bpf_map_lookup_elem(&lost, &zero);
		if (l)
			__sync_fetch_and_add(l, 1);
	}
	return 0;
}
