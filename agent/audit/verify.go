package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// verifyChunk is the size of the blocks Verify reads; it must exceed maxLineBytes.
const verifyChunk = 4 << 20

// Report summarises what Verify read.
type Report struct {
	Segments int    // segment files opened
	Bytes    int64  // bytes read
	Entries  uint64 // entries that verified, from seq 1 up to LastSeq
	LastSeq  uint64 // last entry that verified (0 if none)
	LastHash string // hash of LastSeq
}

// Verify checks the whole audit log in dir without opening it for writing and without
// repairing anything; it may run while an agent appends. It checks that every line
// parses, that seqs run from 1 without gap, that every prev equals the previous entry's
// hash and every hash recomputes from its prev and payload, and that every segment but
// the first opens with an anchor naming the previous segment and its last seq and hash.
//
// The first problem is returned as a *VerifyError naming the seq expected there, the
// segment and the byte offset; the Report then covers what verified before it. On a live
// log the final line may be caught mid-write and reported with Incomplete set.
//
// Hashes are recomputed on GOMAXPROCS goroutines: links are checked in order, hashes in
// any order, and the first error in chain order wins.
func Verify(dir string) (Report, error) {
	var rep Report
	files, err := listSegments(dir)
	if err != nil {
		return rep, err
	}
	if len(files) == 0 {
		return rep, fmt.Errorf("verifying %s: %w", dir, ErrNoSegments)
	}

	workers := min(max(runtime.GOMAXPROCS(0), 1), 8)
	nJobs := 2*workers + 2
	free := make(chan *vjob, nJobs)
	for range nJobs {
		free <- &vjob{buf: make([]byte, verifyChunk), done: make(chan struct{}, 1)}
	}
	work := make(chan *vjob, nJobs)
	order := make(chan *vjob, nJobs)
	var stop atomic.Bool

	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hashJobs(work, &stop)
		}()
	}
	verr := make(chan *VerifyError, 1)
	go func() { verr <- collectJobs(order, free, &stop, &rep) }()

	s := splitter{dir: dir, free: free, work: work, order: order, stop: &stop, expSeq: 1}
	copy(s.prevHash[:], chain.GenesisPrev)
	splitErr := s.run(files)
	close(work)
	close(order)
	wg.Wait()
	ve := <-verr
	rep.Segments, rep.Bytes = s.segs, s.bytes
	if ve != nil {
		return rep, ve
	}
	if splitErr != nil {
		return rep, splitErr
	}
	return rep, nil
}

// vjob is one block of whole lines: the splitter fills it and checks the links, a hash
// worker recomputes its hashes, the collector takes the results in chain order.
type vjob struct {
	buf   []byte
	lines []vline
	first uint64 // seq of lines[0]
	seg   string
	base  int64        // file offset of buf[0]
	serr  *VerifyError // a link or framing error right after lines
	herr  *VerifyError // the first hash mismatch among lines
	done  chan struct{}
}

// vline locates one line in vjob.buf.
type vline struct{ off, end int32 }

func (j *vjob) line(i int) []byte { return j.buf[j.lines[i].off:j.lines[i].end] }

// errStopped ends the splitter once it has handed on an error.
var errStopped = errors.New("verification stopped")

// splitter reads segments in order, cuts them into lines and checks everything but the
// hashes: framing, seq continuity, prev links and anchors.
type splitter struct {
	dir         string
	free        <-chan *vjob
	work, order chan<- *vjob
	stop        *atomic.Bool

	carry    []byte
	expSeq   uint64
	prevHash [chain.HashLen]byte
	prevSeg  string
	segs     int
	bytes    int64
}

func (s *splitter) run(files []segFile) error {
	for i, sf := range files {
		err := s.segment(sf, i == 0, i == len(files)-1)
		if errors.Is(err, errStopped) {
			return nil
		}
		if err != nil {
			return err
		}
		s.prevSeg = sf.name
	}
	return nil
}

func (s *splitter) send(j *vjob) {
	s.order <- j
	s.work <- j
}

func (s *splitter) segment(sf segFile, firstSeg, lastSeg bool) error {
	f, err := os.Open(segPath(s.dir, sf.name))
	if err != nil {
		return fmt.Errorf("verifying: opening segment %s: %w", sf.name, err)
	}
	defer f.Close()
	s.segs++

	var base int64 // file offset of the carried bytes, then of the next block
	s.carry = s.carry[:0]
	firstLine := true
	for {
		if s.stop.Load() {
			return errStopped
		}
		job := <-s.free
		job.lines, job.serr, job.herr = job.lines[:0], nil, nil
		job.first, job.seg, job.base = s.expSeq, sf.name, base
		n := copy(job.buf, s.carry)
		m, rerr := io.ReadFull(f, job.buf[n:])
		eof := errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF)
		if rerr != nil && !eof {
			return fmt.Errorf("verifying: reading segment %s: %w", sf.name, rerr)
		}
		s.bytes += int64(m)
		data := job.buf[:n+m]
		end := bytes.LastIndexByte(data, '\n') + 1

		for off := 0; off < end; {
			nl := bytes.IndexByte(data[off:end], '\n')
			line := data[off : off+nl+1]
			if reason := s.check(line, sf, firstSeg, firstLine); reason != "" {
				job.serr = &VerifyError{Seq: s.expSeq, Segment: sf.name, Offset: base + int64(off), Reason: reason}
				s.send(job)
				return errStopped
			}
			firstLine = false
			job.lines = append(job.lines, vline{off: int32(off), end: int32(off + nl + 1)})
			off += nl + 1
		}

		rest := data[end:]
		switch {
		case len(rest) > maxLineBytes:
			job.serr = &VerifyError{Seq: s.expSeq, Segment: sf.name, Offset: base + int64(end), Reason: errLong.Error()}
		case eof && len(rest) > 0:
			job.serr = &VerifyError{Seq: s.expSeq, Segment: sf.name, Offset: base + int64(end),
				Reason: errNoNewline.Error(), Incomplete: lastSeg}
		case eof && firstLine:
			job.serr = &VerifyError{Seq: s.expSeq, Segment: sf.name, Reason: "segment is empty", Incomplete: lastSeg}
		}
		if job.serr != nil {
			s.send(job)
			return errStopped
		}
		s.carry = append(s.carry[:0], rest...)
		base += int64(end)
		s.send(job)
		if eof {
			return nil
		}
	}
}

// check checks one line's framing and its links to the previous entry, and advances the
// expected seq and prev hash. It returns "" or the reason the line is bad.
func (s *splitter) check(line []byte, sf segFile, firstSeg, firstLine bool) string {
	e, err := parseLine(line)
	if err != nil {
		return err.Error()
	}
	if e.Seq != s.expSeq {
		return fmt.Sprintf("entry has seq %d, expected %d", e.Seq, s.expSeq)
	}
	if !bytes.Equal(e.Prev, s.prevHash[:]) {
		if s.expSeq == 1 {
			return "prev of the first entry is not the genesis hash"
		}
		return fmt.Sprintf("prev does not match the hash of seq %d", s.expSeq-1)
	}
	if firstLine {
		if e.Seq != sf.first {
			return fmt.Sprintf("first entry has seq %d but the segment name says %d", e.Seq, sf.first)
		}
		if !firstSeg {
			if reason := anchorProblem(e.Payload, s.prevSeg, s.expSeq-1, s.prevHash[:]); reason != "" {
				return reason
			}
		}
	}
	copy(s.prevHash[:], e.Hash)
	s.expSeq++
	return ""
}

// hashJobs recomputes the hash of every line of every job, recording the first
// mismatch. Once verification has stopped it only hands jobs back.
func hashJobs(work <-chan *vjob, stop *atomic.Bool) {
	h := sha256.New()
	var sum [sha256.Size]byte
	var hx [chain.HashLen]byte
	for job := range work {
		for i := 0; i < len(job.lines) && !stop.Load(); i++ {
			line := job.line(i)
			h.Reset()
			h.Write(line[prevOff : prevOff+chain.HashLen])
			h.Write(line[payloadOff : len(line)-len(lineEnd)])
			hex.Encode(hx[:], h.Sum(sum[:0]))
			if !bytes.Equal(hx[:], line[hashOff:hashOff+chain.HashLen]) {
				job.herr = &VerifyError{Seq: job.first + uint64(i), Segment: job.seg, Offset: job.base + int64(job.lines[i].off),
					Reason: "hash does not recompute from prev and payload"}
				break
			}
		}
		job.done <- struct{}{}
	}
}

// collectJobs takes jobs in chain order once hashed, accounts the entries that verified,
// returns blocks to the free list, and returns the first error in chain order.
func collectJobs(order <-chan *vjob, free chan<- *vjob, stop *atomic.Bool, rep *Report) *VerifyError {
	var first *VerifyError
	for job := range order {
		<-job.done
		if first == nil {
			good := len(job.lines)
			if job.herr != nil {
				good = int(job.herr.Seq - job.first)
				first = job.herr
			} else if job.serr != nil {
				first = job.serr
			}
			if good > 0 {
				rep.Entries += uint64(good)
				rep.LastSeq = job.first + uint64(good) - 1
				rep.LastHash = string(job.line(good - 1)[hashOff : hashOff+chain.HashLen])
			}
			if first != nil {
				stop.Store(true)
			}
		}
		free <- job
	}
	return first
}
