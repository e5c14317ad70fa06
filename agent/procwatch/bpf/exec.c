// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// exec.c reports every successful execve(2) to user space: it runs on the
// sched_process_exec raw tracepoint, after the new image is in place, and copies
// the new program's identity, the file name it was executed by and its argument
// vector into a ring buffer. Kernel structures are read with CO-RE relocations
// against the running kernel's BTF, so one object serves every kernel with BTF.

// Minimal kernel types: enough for bpf_helpers.h, without arch-specific headers.
typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

enum {
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_RINGBUF = 27,
};

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

// Only the fields read below; CO-RE finds them in the running kernel's layout.
struct super_block {
	__u32 s_dev;
} __attribute__((preserve_access_index));

struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct linux_binprm {
	struct file *file;
	const char *filename;
} __attribute__((preserve_access_index));

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
} __attribute__((preserve_access_index));

struct task_struct {
	int tgid;
	struct task_struct *real_parent;
	struct mm_struct *mm;
} __attribute__((preserve_access_index));

struct bpf_raw_tracepoint_args {
	__u64 args[0];
};

#define FILENAME_MAX 4096 // PATH_MAX
#define ARGS_MAX 4096     // bytes of argv kept; more is flagged

// Flags in event.flags.
#define FLAG_ARGS_TRUNCATED 1  // argv was longer than ARGS_MAX
#define FLAG_ARGS_UNREADABLE 2 // argv could not be read
#define FLAG_FILENAME_TRUNCATED 4
#define FLAG_FILENAME_UNREADABLE 8

// event is one exec. It is followed by filename_len bytes of file name (with its
// NUL) and args_len bytes of NUL-separated argv; only that much is sent.
struct event {
	__u64 cgroup_id;
	__u64 ino;   // inode of the executed file
	__u32 dev;   // its device, in the kernel's encoding (major << 20 | minor)
	__u32 pid;   // tgid
	__u32 ppid;  // real parent's tgid
	__u32 uid;   // real uid
	__u32 gid;   // real gid
	__u32 flags;
	__u32 filename_len;
	__u32 args_len;
	char comm[16];
};

struct scratch {
	struct event ev;
	// Twice the largest part, so that the verifier can bound the second part's
	// start (masked with FILENAME_MAX - 1) plus its length (at most ARGS_MAX).
	char data[FILENAME_MAX + ARGS_MAX];
};

// Force the generation of Go types for event.
const struct event *unused_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

// lost counts events the ring buffer had no room for, per CPU.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
}

// sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
SEC("raw_tracepoint/sched_process_exec")
int on_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx->args[0];
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s) {
		count_lost();
		return 0;
	}
	struct event *ev = &s->ev;

	__u64 ugid = bpf_get_current_uid_gid();
	ev->uid = (__u32)ugid;
	ev->gid = ugid >> 32;
	ev->pid = bpf_get_current_pid_tgid() >> 32;
	ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
	ev->cgroup_id = bpf_get_current_cgroup_id();
	ev->ino = BPF_CORE_READ(bprm, file, f_inode, i_ino);
	ev->dev = BPF_CORE_READ(bprm, file, f_inode, i_sb, s_dev);
	ev->flags = 0;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));

	const char *filename = BPF_CORE_READ(bprm, filename);
	long n = bpf_probe_read_kernel_str(s->data, FILENAME_MAX, filename);
	if (n <= 0) {
		ev->flags |= FLAG_FILENAME_UNREADABLE;
		n = 0;
	} else if (n == FILENAME_MAX) {
		ev->flags |= FLAG_FILENAME_TRUNCATED;
	}
	__u32 flen = n & (FILENAME_MAX - 1);
	if (n == FILENAME_MAX)
		flen = FILENAME_MAX - 1;
	ev->filename_len = flen;

	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	unsigned long start = BPF_CORE_READ(mm, arg_start);
	unsigned long end = BPF_CORE_READ(mm, arg_end);
	__u64 alen = end > start ? end - start : 0;
	if (alen > ARGS_MAX) {
		alen = ARGS_MAX;
		ev->flags |= FLAG_ARGS_TRUNCATED;
	}
	// Keep the verifier's bounds: alen is in [0, ARGS_MAX].
	alen &= (ARGS_MAX << 1) - 1;
	if (alen > ARGS_MAX)
		alen = ARGS_MAX;
	if (alen > 0 && bpf_probe_read_user(&s->data[flen], alen, (const void *)start) != 0) {
		ev->flags |= FLAG_ARGS_UNREADABLE;
		alen = 0;
	}
	ev->args_len = alen;

	__u64 size = sizeof(struct event) + flen + alen;
	if (size > sizeof(struct scratch))
		size = sizeof(struct scratch);
	if (bpf_ringbuf_output(&events, s, size, 0) != 0)
		count_lost();
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
