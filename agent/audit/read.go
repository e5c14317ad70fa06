package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/tripwire-project/tripwire/proto/batch"
	"github.com/tripwire-project/tripwire/proto/chain"
)

// reader is ReadFrom's state kept between calls, under Log.readMu: a line buffer, and
// where the previous call stopped, so that a sequential reader never rescans.
type reader struct {
	lr  *lineReader
	seg *segment
	seq uint64 // seq of the line at off in seg
	off int64
}

// ReadFrom returns up to max consecutive durable entries starting at seq (seq 0 reads
// from 1): fewer at the head, none beyond it. Each entry carries its stored payload text
// verbatim, in a slice the caller owns. Reading from where the previous call stopped is
// cheapest; any other seq costs a scan from the nearest known offset.
//
// ReadFrom checks the framing and seq continuity of what it reads, not the hashes: the
// collector recomputes those, so an entry altered on disk is shipped as stored and
// flagged centrally rather than withheld here. A line that cannot be shipped (unparsable,
// out of sequence) ends the read with a *CorruptionError, after the entries before it.
//
// ReadFrom is safe for concurrent use with Append; concurrent ReadFrom calls are
// serialised.
func (l *Log) ReadFrom(seq uint64, max int) ([]batch.Entry, error) {
	if l.closing.Load() {
		return nil, ErrClosed
	}
	l.readMu.Lock()
	defer l.readMu.Unlock()
	l.stateMu.Lock()
	head := l.head.Seq
	segs := l.segs
	l.stateMu.Unlock()

	if seq == 0 {
		seq = 1
	}
	if max <= 0 || seq > head || len(segs) == 0 {
		return nil, nil
	}
	want := int(min(uint64(max), head-seq+1))
	out := make([]batch.Entry, 0, want)
	i := sort.Search(len(segs), func(i int) bool { return segs[i].first > seq }) - 1
	if i < 0 {
		return nil, fmt.Errorf("reading from seq %d: the first segment starts at seq %d", seq, segs[0].first)
	}
	for ; i < len(segs) && len(out) < want; i++ {
		var err error
		out, err = l.readSegment(segs[i], seq+uint64(len(out)), want, out)
		if err != nil {
			return out, err
		}
	}
	if len(out) < want {
		return out, &CorruptionError{Segment: segs[len(segs)-1].name, Seq: seq + uint64(len(out)),
			Reason: fmt.Sprintf("the segments end before the durable head %d", head)}
	}
	return out, nil
}

// readSegment appends to out the entries of seg from seq on, until out holds want.
func (l *Log) readSegment(seg *segment, seq uint64, want int, out []batch.Entry) ([]batch.Entry, error) {
	l.stateMu.Lock()
	size := seg.size
	start := indexPoint{seq: seg.first}
	if k := sort.Search(len(seg.index), func(k int) bool { return seg.index[k].seq > seq }); k > 0 {
		start = seg.index[k-1]
	}
	l.stateMu.Unlock()
	if r := &l.rd; r.seg == seg && r.seq <= seq && r.seq > start.seq {
		start = indexPoint{seq: r.seq, off: r.off}
	}

	f, err := os.Open(segPath(l.dir, seg.name))
	if err != nil {
		return out, fmt.Errorf("opening segment %s: %w", seg.name, err)
	}
	defer f.Close()
	sr := io.NewSectionReader(f, start.off, size-start.off)
	if l.rd.lr == nil {
		l.rd.lr = newLineReader(sr, start.off, 256<<10)
	} else {
		l.rd.lr.r.Reset(sr)
		l.rd.lr.off = start.off
	}
	lr := l.rd.lr
	corrupt := func(off int64, seq uint64, reason string) error {
		return &CorruptionError{Segment: seg.name, Offset: off, Seq: seq, Reason: reason}
	}

	next := start.seq // seq of the next line
	for len(out) < want {
		line, off, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if _, ok := errors.AsType[lineError](err); ok {
			return out, corrupt(off, next, err.Error())
		} else if err != nil {
			return out, fmt.Errorf("reading segment %s: %w", seg.name, err)
		}
		e, err := parseLine(line)
		if err != nil {
			return out, corrupt(off, next, err.Error())
		}
		if e.Seq != next {
			return out, corrupt(off, next, fmt.Sprintf("entry has seq %d, expected %d", e.Seq, next))
		}
		next++
		if e.Seq < seq {
			continue
		}
		entry, err := decodeEntry(e)
		if err != nil {
			return out, corrupt(off, e.Seq, err.Error())
		}
		out = append(out, entry)
	}
	l.rd.seg, l.rd.seq, l.rd.off = seg, next, lr.off
	return out, nil
}

// entryMeta is the part of a payload that batches flatten into columns.
type entryMeta struct {
	Time  time.Time  `json:"ts"`
	Kind  chain.Kind `json:"kind"`
	Event *struct {
		Type     string `json:"type"`
		Rule     string `json:"rule"`
		Severity string `json:"severity"`
	} `json:"event"`
}

// decodeEntry turns a parsed line into a batch entry, copying what it keeps.
func decodeEntry(e rawEntry) (batch.Entry, error) {
	var m entryMeta
	if err := json.Unmarshal(e.Payload, &m); err != nil {
		return batch.Entry{}, fmt.Errorf("decoding payload: %w", err)
	}
	out := batch.Entry{
		Seq:      e.Seq,
		Time:     m.Time,
		Kind:     string(m.Kind),
		PrevHash: string(e.Prev),
		Hash:     string(e.Hash),
		Payload:  append([]byte(nil), e.Payload...),
	}
	if m.Event != nil {
		out.Type, out.Rule, out.Severity = m.Event.Type, m.Event.Rule, m.Event.Severity
	}
	return out, nil
}
