package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// DefaultMaxSegmentBytes is the segment size bound used when Options leaves it zero.
const DefaultMaxSegmentBytes = 64 << 20

// indexEvery is the spacing, in bytes, of the in-memory seq → offset points kept for the
// segments this process wrote or scanned, so that ReadFrom starts near its seq.
const indexEvery = 64 << 10

// maxPooledChunk bounds the staging buffers kept for reuse between flushes.
const maxPooledChunk = 4 << 20

// Options configure a Log. The zero value is usable.
type Options struct {
	// MaxSegmentBytes is the size at which the log starts a new segment (default 64 MiB).
	// It is a soft bound: a segment always takes at least one entry besides its anchor.
	MaxSegmentBytes int64
	// Logger receives recovery and I/O failure reports; nil discards them.
	Logger *slog.Logger
	// Now stamps payloads appended with a zero Time, and anchors; nil means time.Now.
	Now func() time.Time
}

// Position names one entry of the chain.
type Position struct {
	Seq  uint64
	Hash string // 64 lowercase hex characters
}

// Log is an open audit log. All its methods are safe for concurrent use. Appends are
// serialised among themselves (the chain is a sequence) and share fsyncs; reads never
// block appends for longer than it takes to copy a few fields. A Log runs one goroutine,
// which persists the acked seq; Close stops it.
//
// Lock order: flushMu, then mu or stateMu; readMu, then stateMu. mu and stateMu are
// never held together.
type Log struct {
	dir    string
	max    int64
	logger *slog.Logger
	now    func() time.Time
	lock   io.Closer

	// Staging: entries get their seq and hash, and are laid out as lines, under mu.
	mu           sync.Mutex
	closed       bool
	err          error // sticky: set when a flush fails
	stSeq        uint64
	stHash       [chain.HashLen]byte
	stSeg        string // segment the next entry goes to; "" before the first entry
	stSegBytes   int64  // size of stSeg once everything staged is written
	stSegEntries int    // entries of stSeg besides its anchor
	pending      []chunk
	spare        []chunk
	free         [][]byte
	hasher       hash.Hash
	sum          [sha256.Size]byte

	// Writing: one flusher at a time writes every staged chunk and fsyncs, under flushMu.
	flushMu  sync.Mutex
	f        *os.File
	fSeg     *segment
	fOff     int64
	fIdxOff  int64 // offset of the last index point of fSeg
	flushErr error
	dSeq     uint64 // durable seq
	updates  []segUpdate
	fsyncs   atomic.Uint64 // data fsyncs done, for tests of group commit
	fsyncNs  atomic.Int64  // time spent in them

	// Durable state seen by readers, under stateMu.
	stateMu sync.Mutex
	head    Position
	segs    []*segment

	closing  atomic.Bool
	appended chan struct{}

	acked   atomic.Uint64
	ackKick chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup

	readMu sync.Mutex
	rd     reader
}

// segment is one segment file as readers see it.
type segment struct {
	name  string
	first uint64
	// Under Log.stateMu:
	size  int64        // durable size
	index []indexPoint // ascending, sparse
}

// indexPoint says that the line of seq starts at off.
type indexPoint struct {
	seq uint64
	off int64
}

// chunk is staged lines bound for one segment.
type chunk struct {
	seg      string
	first    uint64 // seq of the first line
	create   bool   // the segment file does not exist yet
	data     []byte
	last     uint64
	lastHash [chain.HashLen]byte
}

// segUpdate is what one flush changed in a segment, published after the fsync.
type segUpdate struct {
	seg     *segment
	size    int64
	points  []indexPoint
	created bool
}

// Head returns the seq and hash of the last durable entry: (0, 64 zeros) for an empty log.
func (l *Log) Head() (seq uint64, hash string) {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	return l.head.Seq, l.head.Hash
}

// SizeBytes returns the total durable size of the segment files.
func (l *Log) SizeBytes() int64 {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	var n int64
	for _, s := range l.segs {
		n += s.size
	}
	return n
}

// Appended returns a channel that receives a value after entries become durable. It has
// room for one value and a send never blocks, so a single consumer that checks for new
// entries after each receive never misses one. It is never closed.
func (l *Log) Appended() <-chan struct{} { return l.appended }

// Append adds payloads to the chain, in order, and returns once they are on disk
// (written and fsynced). It sets each payload's Seq, sets a zero Time to Now().UTC() and
// converts others to UTC; the caller's values are not modified. It returns the position
// given to each payload. Seqs of one call are consecutive unless a segment rotation puts
// an anchor between them.
//
// Append is safe for concurrent use; concurrent calls share one fsync. Batching many
// payloads into one call is cheaper still. A payload of kind anchor or with no kind, or
// whose text exceeds MaxPayloadBytes, is refused with ErrInvalidPayload and nothing of
// that call is stored. After a write or fsync error every call fails with ErrBroken.
func (l *Log) Append(payloads ...chain.Payload) ([]Position, error) {
	if len(payloads) == 0 {
		return nil, nil
	}
	// Marshal outside the lock with seq 0; the seq digits are spliced in when staging.
	// encoding/json output does not depend on the seq otherwise, so the stored text is
	// exactly json.Marshal of the payload with its seq set.
	tails := make([][]byte, len(payloads))
	for i := range payloads {
		tail, err := l.marshalTail(payloads[i])
		if err != nil {
			return nil, fmt.Errorf("appending payload %d of %d: %w", i+1, len(payloads), err)
		}
		tails[i] = tail
	}

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	if l.err != nil {
		err := l.err
		l.mu.Unlock()
		return nil, err
	}
	pos := make([]Position, len(tails))
	for i, tail := range tails {
		l.stageLocked(tail)
		pos[i] = Position{Seq: l.stSeq, Hash: string(l.stHash[:])}
	}
	last := l.stSeq
	l.mu.Unlock()

	if err := l.commit(last); err != nil {
		return nil, err
	}
	return pos, nil
}

// marshalTail validates p and returns its JSON text with seq 0, minus the leading
// {"seq":0 (so starting with a comma).
func (l *Log) marshalTail(p chain.Payload) ([]byte, error) {
	switch p.Kind {
	case "":
		return nil, fmt.Errorf("payload has no kind: %w", ErrInvalidPayload)
	case chain.KindAnchor:
		return nil, fmt.Errorf("anchors are written by the log itself: %w", ErrInvalidPayload)
	}
	p.Seq = 0
	if p.Time.IsZero() {
		p.Time = l.now()
	}
	p.Time = p.Time.UTC()
	b, err := json.Marshal(&p)
	if err != nil {
		return nil, fmt.Errorf("encoding payload: %w: %w", ErrInvalidPayload, err)
	}
	const zero = `{"seq":0`
	if !bytes.HasPrefix(b, []byte(zero+",")) {
		return nil, fmt.Errorf("encoding payload: text does not start with %s: %w", zero, ErrInvalidPayload)
	}
	if len(b)-len(zero)+len(seqPrefix)+20 > MaxPayloadBytes {
		return nil, fmt.Errorf("payload of %d bytes exceeds %d: %w", len(b), MaxPayloadBytes, ErrInvalidPayload)
	}
	return b[len(zero):], nil
}

// stageLocked gives the next seq to a payload and lays out its line, starting a segment
// (with its anchor) first if needed. l.mu must be held.
func (l *Log) stageLocked(tail []byte) {
	seq := l.stSeq + 1
	size := int64(lineOverhead + len(seqPrefix) + decimalLen(seq) + len(tail))
	switch {
	case l.stSeg == "":
		// The chain's very first entry opens the first segment, without an anchor.
		l.startSegmentLocked(seq)
	case l.stSegEntries > 0 && l.stSegBytes+size > l.max:
		prevSeg, prevSeq, prevHash := l.stSeg, l.stSeq, string(l.stHash[:])
		l.startSegmentLocked(seq)
		anchor := chain.Payload{Time: l.now().UTC(), Kind: chain.KindAnchor, Anchor: &chain.Anchor{
			PrevSegment: prevSeg, PrevSeq: prevSeq, PrevHash: prevHash,
		}}
		b, err := json.Marshal(&anchor)
		if err != nil { // only for a clock outside years 0..9999
			anchor.Time = time.Time{}
			b, _ = json.Marshal(&anchor)
		}
		l.writeEntryLocked(b[len(`{"seq":0`):])
	case len(l.pending) == 0:
		l.pending = append(l.pending, chunk{seg: l.stSeg, first: seq, data: l.takeBuf()})
	}
	l.writeEntryLocked(tail)
	l.stSegEntries++
}

func (l *Log) startSegmentLocked(first uint64) {
	name := segmentName(first)
	l.pending = append(l.pending, chunk{seg: name, first: first, create: true, data: l.takeBuf()})
	l.stSeg, l.stSegBytes, l.stSegEntries = name, 0, 0
}

func (l *Log) takeBuf() []byte {
	if n := len(l.free); n > 0 {
		b := l.free[n-1]
		l.free = l.free[:n-1]
		return b[:0]
	}
	return nil
}

// writeEntryLocked appends the line of the next entry to the last pending chunk and
// advances the staged head. l.mu must be held.
func (l *Log) writeEntryLocked(tail []byte) {
	c := &l.pending[len(l.pending)-1]
	seq := l.stSeq + 1
	start := len(c.data)
	d := append(c.data, keyHash...)
	hashAt := len(d)
	d = append(d, l.stHash[:]...) // placeholder, overwritten below
	d = append(d, keyPrev...)
	d = append(d, l.stHash[:]...)
	d = append(d, keyPayload...)
	pStart := len(d)
	d = append(d, seqPrefix...)
	d = strconv.AppendUint(d, seq, 10)
	d = append(d, tail...)
	pEnd := len(d)
	d = append(d, lineEnd...)

	l.hasher.Reset()
	l.hasher.Write(l.stHash[:])
	l.hasher.Write(d[pStart:pEnd])
	hex.Encode(d[hashAt:hashAt+chain.HashLen], l.hasher.Sum(l.sum[:0]))
	copy(l.stHash[:], d[hashAt:hashAt+chain.HashLen])

	c.data = d
	c.last, c.lastHash = seq, l.stHash
	l.stSeq = seq
	l.stSegBytes += int64(len(d) - start)
}

func decimalLen(v uint64) int {
	n := 1
	for v >= 10 {
		v /= 10
		n++
	}
	return n
}

// commit returns once every entry up to seq last is durable: either another caller's
// flush already covered it, or this caller flushes everything staged so far (its own
// entries and those of callers that staged meanwhile).
func (l *Log) commit(last uint64) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if l.dSeq >= last {
		return nil
	}
	if l.flushErr != nil {
		return l.flushErr
	}
	return l.flushLocked()
}

// flushLocked writes and fsyncs every staged chunk, then publishes the new durable head.
// l.flushMu must be held. On failure the log is broken for good.
func (l *Log) flushLocked() error {
	l.mu.Lock()
	chunks := l.pending
	l.pending = l.spare[:0]
	l.mu.Unlock()
	if len(chunks) == 0 {
		return nil
	}

	err := l.writeChunks(chunks)
	if err == nil {
		last := &chunks[len(chunks)-1]
		l.stateMu.Lock()
		for _, u := range l.updates {
			if u.created {
				l.segs = append(l.segs, u.seg)
			}
			u.seg.size = u.size
			u.seg.index = append(u.seg.index, u.points...)
		}
		l.head = Position{Seq: last.last, Hash: string(last.lastHash[:])}
		l.stateMu.Unlock()
		l.dSeq = last.last
		select {
		case l.appended <- struct{}{}:
		default:
		}
	}

	l.mu.Lock()
	for i := range chunks {
		if cap(chunks[i].data) <= maxPooledChunk && len(l.free) < 4 {
			l.free = append(l.free, chunks[i].data[:0])
		}
		chunks[i] = chunk{}
	}
	l.spare = chunks[:0]
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrBroken, err)
		l.err = err
	}
	l.mu.Unlock()
	if err != nil {
		l.flushErr = err
		l.logger.Error("audit log write failed; appends refused until it is reopened", "err", err)
	}
	return err
}

// writeChunks writes chunks to their segments, creating segments as needed, and fsyncs.
// It records in l.updates what readers may see once it returns without error.
func (l *Log) writeChunks(chunks []chunk) error {
	for i := range l.updates {
		l.updates[i] = segUpdate{}
	}
	l.updates = l.updates[:0]
	var u *segUpdate
	if l.fSeg != nil {
		l.updates = append(l.updates, segUpdate{seg: l.fSeg, size: l.fOff})
		u = &l.updates[0]
	}
	for i := range chunks {
		c := &chunks[i]
		if c.create {
			if l.f != nil {
				// The old segment must be durable before a new one names its end.
				if err := l.f.Sync(); err != nil {
					return fmt.Errorf("fsyncing segment %s: %w", l.fSeg.name, err)
				}
				if err := l.f.Close(); err != nil {
					return fmt.Errorf("closing segment %s: %w", l.fSeg.name, err)
				}
				l.f = nil
			}
			f, err := os.OpenFile(segPath(l.dir, c.seg), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("creating segment: %w", err)
			}
			l.f, l.fSeg, l.fOff, l.fIdxOff = f, &segment{name: c.seg, first: c.first}, 0, 0
			if err := syncDir(l.dir); err != nil {
				return err
			}
			l.updates = append(l.updates, segUpdate{seg: l.fSeg, created: true})
			u = &l.updates[len(l.updates)-1]
			u.points = append(u.points, indexPoint{seq: c.first})
		} else if l.fOff-l.fIdxOff >= indexEvery {
			u.points = append(u.points, indexPoint{seq: c.first, off: l.fOff})
			l.fIdxOff = l.fOff
		}
		if _, err := l.f.WriteAt(c.data, l.fOff); err != nil {
			return fmt.Errorf("writing segment %s: %w", l.fSeg.name, err)
		}
		l.fOff += int64(len(c.data))
		u.size = l.fOff
	}
	start := time.Now()
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("fsyncing segment %s: %w", l.fSeg.name, err)
	}
	l.fsyncNs.Add(int64(time.Since(start)))
	l.fsyncs.Add(1)
	return nil
}

// Close flushes what concurrent Appends staged, closes the segment, persists the acked
// seq and releases the directory. Appends and reads after Close fail with ErrClosed.
// Close is idempotent.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	l.closing.Store(true)

	var errs []error
	l.flushMu.Lock()
	if l.flushErr == nil {
		if err := l.flushLocked(); err != nil {
			errs = append(errs, err)
		}
	}
	if l.f != nil {
		if err := l.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing segment: %w", err))
		}
		l.f = nil
	}
	l.flushMu.Unlock()

	close(l.done)
	l.wg.Wait()
	l.readMu.Lock()
	l.rd = reader{}
	l.readMu.Unlock()
	if err := l.lock.Close(); err != nil {
		errs = append(errs, fmt.Errorf("releasing audit lock: %w", err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("closing audit log: %w", errs[0])
	}
	return nil
}
