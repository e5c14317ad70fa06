//go:build linux

package watcher

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// kernelHelpers are the child actions of the evasion tests: each reads a watched file
// in a way that is not a plain read(2) of its configured path.
var kernelHelpers = map[string]func(args []string) error{
	// link-read FILE LINK: hard-link FILE as LINK, then read through LINK.
	"link-read": func(args []string) error {
		if err := os.Link(args[0], args[1]); err != nil {
			return err
		}
		return readAll(args[1])
	},
	// rename-read FILE NEW: rename FILE to NEW, then read NEW.
	"rename-read": func(args []string) error {
		if err := os.Rename(args[0], args[1]); err != nil {
			return err
		}
		return readAll(args[1])
	},
	// rename-later-read FILE NEW: rename FILE to NEW, wait half a second (longer than
	// the test's rescan period), then read NEW.
	"rename-later-read": func(args []string) error {
		if err := os.Rename(args[0], args[1]); err != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond)
		return readAll(args[1])
	},
	// symlink-read FILE LINK: make LINK a symlink to FILE, then read through LINK.
	"symlink-read": func(args []string) error {
		if err := os.Symlink(args[0], args[1]); err != nil {
			return err
		}
		return readAll(args[1])
	},
	"mmap":      withFile(mmapRead),
	"sendfile":  withFile(sendfileRead),
	"copyrange": withFile(copyRangeRead),
	"iouring":   withFile(ioUringRead),
}

func readAll(path string) error {
	b, err := os.ReadFile(path)
	if err == nil && len(b) == 0 {
		err = fmt.Errorf("%s is empty", path)
	}
	return err
}

// withFile opens args[0] read-only and hands its descriptor and size to read.
func withFile(read func(fd, size int) error) func(args []string) error {
	return func(args []string) error {
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if fi.Size() == 0 {
			return fmt.Errorf("%s is empty", args[0])
		}
		return read(int(f.Fd()), int(fi.Size()))
	}
}

// mmapRead maps the file and reads it through the mapping: page faults, no read(2).
func mmapRead(fd, size int) error {
	m, err := unix.Mmap(fd, 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	defer unix.Munmap(m)
	var sum byte
	for _, b := range m {
		sum += b
	}
	if sum == 0 {
		return errors.New("mapping read as zeros")
	}
	return nil
}

// sendfileRead copies the file into a pipe with sendfile(2).
func sendfileRead(fd, size int) error {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return err
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	n, err := unix.Sendfile(p[1], fd, nil, size)
	if err == nil && n != size {
		err = fmt.Errorf("sendfile moved %d of %d bytes", n, size)
	}
	return err
}

// copyRangeRead copies the file into a temporary file with copy_file_range(2).
func copyRangeRead(fd, size int) error {
	out, err := os.CreateTemp("", "tripwire-copy-*")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	n, err := unix.CopyFileRange(fd, nil, int(out.Fd()), nil, size, 0)
	if err == nil && n != size {
		err = fmt.Errorf("copy_file_range copied %d of %d bytes", n, size)
	}
	return err
}

// io_uring ABI (include/uapi/linux/io_uring.h).
const (
	ioringOpRead         = 22
	ioringOffSqRing      = 0
	ioringOffCqRing      = 0x8000000
	ioringOffSqes        = 0x10000000
	ioringEnterGetevents = 1
	sqeSize              = 64
	cqeSize              = 16
)

type ioSqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type ioCqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, Cqes, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type ioUringParams struct {
	SqEntries, CqEntries, Flags, SqThreadCPU, SqThreadIdle, Features, WqFd uint32
	Resv                                                                   [3]uint32
	SqOff                                                                  ioSqringOffsets
	CqOff                                                                  ioCqringOffsets
}

// ioUringRead reads the file with one IORING_OP_READ through a ring set up with raw
// system calls. errRefused if the kernel will not set up a ring.
func ioUringRead(fd, size int) error {
	var p ioUringParams
	r, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return fmt.Errorf("io_uring_setup: %w: %w", errno, errRefused)
	}
	ring := int(r)
	defer unix.Close(ring)
	sq, err := unix.Mmap(ring, ioringOffSqRing, int(p.SqOff.Array+p.SqEntries*4), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mapping the submission ring: %w", err)
	}
	defer unix.Munmap(sq)
	cq, err := unix.Mmap(ring, ioringOffCqRing, int(p.CqOff.Cqes+p.CqEntries*cqeSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mapping the completion ring: %w", err)
	}
	defer unix.Munmap(cq)
	sqes, err := unix.Mmap(ring, ioringOffSqes, int(p.SqEntries*sqeSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mapping the submission entries: %w", err)
	}
	defer unix.Munmap(sqes)

	buf := make([]byte, size)
	sqe := sqes[:sqeSize]
	clear(sqe)
	sqe[0] = ioringOpRead
	*(*int32)(unsafe.Pointer(&sqe[4])) = int32(fd)
	*(*uint64)(unsafe.Pointer(&sqe[16])) = uint64(uintptr(unsafe.Pointer(&buf[0])))
	*(*uint32)(unsafe.Pointer(&sqe[24])) = uint32(size)
	*(*uint64)(unsafe.Pointer(&sqe[32])) = 42 // user_data

	tail := (*uint32)(unsafe.Pointer(&sq[p.SqOff.Tail]))
	mask := *(*uint32)(unsafe.Pointer(&sq[p.SqOff.RingMask]))
	t := atomic.LoadUint32(tail)
	*(*uint32)(unsafe.Pointer(&sq[p.SqOff.Array+4*(t&mask)])) = 0
	atomic.StoreUint32(tail, t+1)

	if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(ring), 1, 1, ioringEnterGetevents, 0, 0); errno != 0 {
		return fmt.Errorf("io_uring_enter: %w", errno)
	}
	cqHead := (*uint32)(unsafe.Pointer(&cq[p.CqOff.Head]))
	cqTail := (*uint32)(unsafe.Pointer(&cq[p.CqOff.Tail]))
	h := atomic.LoadUint32(cqHead)
	if atomic.LoadUint32(cqTail) == h {
		return errors.New("io_uring_enter returned without a completion")
	}
	cqMask := *(*uint32)(unsafe.Pointer(&cq[p.CqOff.RingMask]))
	cqe := cq[p.CqOff.Cqes+cqeSize*(h&cqMask):]
	res := *(*int32)(unsafe.Pointer(&cqe[8]))
	atomic.StoreUint32(cqHead, h+1)
	if res < 0 {
		return fmt.Errorf("IORING_OP_READ: %w", unix.Errno(-res))
	}
	if int(res) != size {
		return fmt.Errorf("IORING_OP_READ read %d of %d bytes", res, size)
	}
	runtime.KeepAlive(buf)
	return nil
}
