package audit

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// zeroRun is the length of a run of NUL bytes that marks a block a crash left
// zero-filled: file systems may extend a file before the data of an unsynced write
// reaches the disk, and a bit flip or an edit never produces 512 NULs in JSON text.
const zeroRun = 512

// Open opens the audit log in dir, creating dir (mode 0700) if needed, and takes an
// exclusive lock on it (ErrLocked if another process holds it).
//
// It checks the first and last entry of every segment but the last for continuity and
// the whole last segment, then finds the head. A torn tail of the last segment — a final
// line cut short, or final bytes that are not complete entries, as a crash during an
// unsynced write leaves them — is truncated to the end of the last good entry, and an
// entry of kind "truncation" recording the cut is appended. Anything else wrong is
// returned as a *CorruptionError and nothing is changed: an agent must not start on
// such a log without an operator's decision. Damage at or below the acked seq is never
// taken for a torn tail: those entries were fsynced before they were shipped.
func Open(dir string, opts Options) (*Log, error) {
	if opts.MaxSegmentBytes <= 0 {
		opts.MaxSegmentBytes = DefaultMaxSegmentBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating audit directory: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	acked, ackedErr := readAcked(dir)
	rec, err := recoverDir(dir, acked, opts.Logger)
	if err != nil {
		_ = lock.Close()
		return nil, err
	}

	l := &Log{
		dir:      dir,
		max:      opts.MaxSegmentBytes,
		logger:   opts.Logger,
		now:      opts.Now,
		lock:     lock,
		hasher:   sha256.New(),
		stSeq:    rec.headSeq,
		dSeq:     rec.headSeq,
		head:     Position{Seq: rec.headSeq, Hash: string(rec.headHash[:])},
		segs:     rec.segs,
		appended: make(chan struct{}, 1),
		ackKick:  make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	l.stHash = rec.headHash
	if n := len(rec.segs); n > 0 {
		cur := rec.segs[n-1]
		f, err := os.OpenFile(segPath(dir, cur.name), os.O_WRONLY, 0)
		if err != nil {
			_ = lock.Close()
			return nil, fmt.Errorf("opening segment %s for appending: %w", cur.name, err)
		}
		l.f, l.fSeg, l.fOff = f, cur, cur.size
		if k := len(cur.index); k > 0 {
			l.fIdxOff = cur.index[k-1].off
		}
		l.stSeg, l.stSegBytes = cur.name, cur.size
		l.stSegEntries = int(rec.headSeq - cur.first + 1) // may count the anchor: harmless
	}
	l.acked.Store(clampAcked(acked, ackedErr, rec.headSeq, l.logger))
	l.wg.Add(1)
	go l.ackLoop()

	if rec.torn != nil {
		if _, err := l.Append(chain.Payload{Kind: chain.KindTruncation, Notice: rec.torn}); err != nil {
			_ = l.Close()
			return nil, fmt.Errorf("recording torn tail truncation: %w", err)
		}
	}
	l.logger.Info("audit log opened", "dir", dir, "head_seq", rec.headSeq, "segments", len(l.segs), "acked_seq", l.acked.Load())
	return l, nil
}

// recovered is what recoverDir found.
type recovered struct {
	segs     []*segment
	headSeq  uint64
	headHash [chain.HashLen]byte
	torn     *chain.Notice // non-nil if a torn tail was cut off
}

// recoverDir checks the segments of dir, repairs a torn tail and returns the head.
// Entries up to acked were fsynced before they were shipped, so damage to them is never
// a torn tail.
func recoverDir(dir string, acked uint64, logger *slog.Logger) (recovered, error) {
	var rec recovered
	copy(rec.headHash[:], chain.GenesisPrev)
	files, err := listSegments(dir)
	if err != nil {
		return rec, err
	}
	if len(files) == 0 {
		return rec, nil
	}
	prevName := ""
	// Older segments: their first entry continues the chain, their last is complete.
	for _, sf := range files[:len(files)-1] {
		seg, err := checkSealed(dir, sf, prevName, &rec)
		if err != nil {
			return rec, err
		}
		rec.segs = append(rec.segs, seg)
		prevName = sf.name
	}
	seg, err := scanLast(dir, files[len(files)-1], prevName, acked, &rec, logger)
	if err != nil {
		return rec, err
	}
	// A nil seg means the last segment held no complete entry and was removed: the one
	// before it, already checked as sealed, is now the last.
	if seg != nil {
		rec.segs = append(rec.segs, seg)
	}
	return rec, nil
}

// checkLink checks that entry e, the first of segment name, continues the chain whose
// last entry is rec's head, in segment prevName ("" for none).
func checkLink(e rawEntry, name, prevName string, rec *recovered) string {
	first, _ := parseSegmentName(name)
	switch {
	case e.Seq != first:
		return fmt.Sprintf("first entry has seq %d but the segment name says %d", e.Seq, first)
	case e.Seq != rec.headSeq+1:
		return fmt.Sprintf("first entry has seq %d, expected %d", e.Seq, rec.headSeq+1)
	case !bytes.Equal(e.Prev, rec.headHash[:]):
		return "first entry's prev does not match the previous segment's last hash"
	case prevName != "":
		return anchorProblem(e.Payload, prevName, rec.headSeq, rec.headHash[:])
	}
	return ""
}

// checkSealed checks a segment other than the last cheaply: its first entry continues
// the chain, its last entry is complete and self-consistent. It advances rec's head.
func checkSealed(dir string, sf segFile, prevName string, rec *recovered) (*segment, error) {
	corrupt := func(off int64, seq uint64, reason string) error {
		return &CorruptionError{Segment: sf.name, Offset: off, Seq: seq, Reason: reason}
	}
	if sf.size == 0 {
		return nil, corrupt(0, rec.headSeq+1, "segment is empty but is not the last")
	}
	f, err := os.Open(segPath(dir, sf.name))
	if err != nil {
		return nil, fmt.Errorf("opening segment %s: %w", sf.name, err)
	}
	defer f.Close()

	line, err := readFirstLine(f, sf.size)
	if le, ok := errors.AsType[lineError](err); ok {
		return nil, corrupt(0, rec.headSeq+1, le.Error())
	} else if err != nil {
		return nil, fmt.Errorf("checking segment %s: %w", sf.name, err)
	}
	e, err := parseLine(line)
	if err != nil {
		return nil, corrupt(0, rec.headSeq+1, err.Error())
	}
	if !selfConsistent(e) {
		return nil, corrupt(0, rec.headSeq+1, "hash does not recompute")
	}
	if reason := checkLink(e, sf.name, prevName, rec); reason != "" {
		return nil, corrupt(0, rec.headSeq+1, reason)
	}

	line, off, err := readLastLine(f, sf.size)
	if le, ok := errors.AsType[lineError](err); ok {
		return nil, corrupt(off, 0, "last entry of a sealed segment: "+le.Error())
	} else if err != nil {
		return nil, fmt.Errorf("checking segment %s: %w", sf.name, err)
	}
	last, err := parseLine(line)
	if err != nil {
		return nil, corrupt(off, 0, "last entry of a sealed segment: "+err.Error())
	}
	if !selfConsistent(last) || last.Seq < e.Seq {
		return nil, corrupt(off, last.Seq, "last entry of a sealed segment does not verify")
	}
	rec.headSeq = last.Seq
	copy(rec.headHash[:], last.Hash)
	return &segment{name: sf.name, first: sf.first, size: sf.size}, nil
}

// scanLast verifies the last segment entry by entry, cuts off a torn tail, and advances
// rec's head. It returns nil if the segment held no complete entry and was removed.
func scanLast(dir string, sf segFile, prevName string, acked uint64, rec *recovered, logger *slog.Logger) (*segment, error) {
	path := segPath(dir, sf.name)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening segment %s: %w", sf.name, err)
	}
	defer f.Close()

	seg := &segment{name: sf.name, first: sf.first}
	lr := newLineReader(io.NewSectionReader(f, 0, sf.size), 0, 256<<10)
	var (
		good    int64 // end of the last good entry
		entries int
		lastIdx int64
		badOff  int64 = -1
		badSeq  uint64
		reason  string
		badLine []byte // the start of the first bad line, for the zero-block test
	)
	for {
		line, off, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if _, ok := errors.AsType[lineError](err); err != nil && !ok {
			return nil, fmt.Errorf("scanning segment %s: %w", sf.name, err)
		}
		var e rawEntry
		if err == nil {
			e, err = parseLine(line)
		}
		if err == nil && !selfConsistent(e) {
			err = errors.New("hash does not recompute")
		}
		if err == nil {
			// A complete, self-consistent entry that does not continue the chain is never
			// what a crash leaves: it is corruption wherever it is.
			var r string
			if entries == 0 {
				r = checkLink(e, sf.name, prevName, rec)
			} else if e.Seq != rec.headSeq+1 {
				r = fmt.Sprintf("entry has seq %d, expected %d", e.Seq, rec.headSeq+1)
			} else if !bytes.Equal(e.Prev, rec.headHash[:]) {
				r = fmt.Sprintf("prev does not match the hash of seq %d", rec.headSeq)
			}
			if r != "" {
				return nil, &CorruptionError{Segment: sf.name, Offset: off, Seq: rec.headSeq + 1, Reason: r}
			}
		}
		if err != nil {
			badOff, badSeq, reason = off, rec.headSeq+1, err.Error()
			badLine = append([]byte(nil), line[:min(len(line), 2*maxLineBytes)]...)
			break
		}
		if entries == 0 || off-lastIdx >= indexEvery {
			seg.index = append(seg.index, indexPoint{seq: e.Seq, off: off})
			lastIdx = off
		}
		rec.headSeq = e.Seq
		copy(rec.headHash[:], e.Hash)
		entries++
		good = off + int64(len(line))
	}

	if badOff >= 0 {
		// Is the damage confined to the tail? Look for complete entries after it.
		maxZeros := longestZeroRun(badLine)
		after := 0
		for {
			line, _, err := lr.next()
			if errors.Is(err, io.EOF) {
				break
			}
			if _, ok := errors.AsType[lineError](err); err != nil && !ok {
				return nil, fmt.Errorf("scanning segment %s: %w", sf.name, err)
			}
			if err == nil {
				if e, perr := parseLine(line); perr == nil && selfConsistent(e) {
					after++
					continue
				}
			}
			if after == 0 {
				maxZeros = max(maxZeros, longestZeroRun(line))
			}
		}
		if after > 0 && maxZeros < zeroRun {
			return nil, &CorruptionError{Segment: sf.name, Offset: badOff, Seq: badSeq,
				Reason: fmt.Sprintf("%s; %d complete entries follow, so this is not a torn tail", reason, after)}
		}
		if badSeq <= acked {
			return nil, &CorruptionError{Segment: sf.name, Offset: badOff, Seq: badSeq,
				Reason: fmt.Sprintf("%s; the collector acknowledged up to seq %d, so this entry had been fsynced and is not a torn tail", reason, acked)}
		}
		cut := sf.size - good
		msg := fmt.Sprintf("cut %d bytes off the end of %s at offset %d: %s", cut, sf.name, good, reason)
		if after > 0 {
			msg += fmt.Sprintf("; the damage is a zero-filled block left by an interrupted write, and %d unsynced entries after it were cut too", after)
		}
		logger.Warn("audit log torn tail truncated", "segment", sf.name, "offset", good, "bytes", cut, "seq", badSeq, "reason", reason, "entries_after", after)
		if err := f.Truncate(good); err != nil {
			return nil, fmt.Errorf("truncating torn tail of %s: %w", sf.name, err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("fsyncing truncated segment %s: %w", sf.name, err)
		}
		rec.torn = &chain.Notice{What: "torn_tail_truncated", Message: msg, Bytes: cut, Segment: sf.name}
	}

	if entries == 0 {
		// A crash between creating a segment and writing its first entry, or a torn
		// first entry: the segment holds nothing of the chain.
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing empty segment %s: %w", sf.name, err)
		}
		if err := syncDir(dir); err != nil {
			return nil, err
		}
		logger.Warn("audit log empty last segment removed", "segment", sf.name, "bytes", sf.size)
		return nil, nil
	}
	seg.size = good
	return seg, nil
}

func longestZeroRun(b []byte) int {
	best, run := 0, 0
	for _, c := range b {
		if c == 0 {
			run++
			best = max(best, run)
		} else {
			run = 0
		}
	}
	return best
}
