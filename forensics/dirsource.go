package forensics

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/tripwire-project/tripwire/proto/chain"
)

// FormatError reports a segment line that does not have the framing of
// docs/formats/audit-chain.md, so that no entry can be read from it.
type FormatError struct {
	Segment string // segment file name
	Offset  int64  // byte offset of the line in the segment
	Reason  string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("segment %s, offset %d: %s", e.Segment, e.Offset, e.Reason)
}

// Fixed offsets of a segment line: {"hash":"<64>","prev":"<64>","payload":<payload>}\n
const (
	lineHashOff    = 9
	linePrevOff    = 83
	linePayloadOff = 159
	lineMin        = linePayloadOff + 2 + len(`{"seq":1}`)
	// maxLine bounds one line: a 1 MiB payload and its framing, with room to spare.
	maxLine = 2<<20 + 4096
)

// DirSource reads an agent's audit segment directory as it lies on disk: without
// locking it, opening it for writing or repairing anything, so that it is safe on
// seized evidence. Every line is exported as stored, hashes and all; whether they
// verify is for the export's views (and `tripwire-forensics verify --dir`) to say.
//
// A final line without its newline at the end of the last segment (what a crash during
// a write leaves, and what a live agent may be writing) is not exported; Notes says so.
// Any other line without the segment framing stops the export with a *FormatError.
type DirSource struct {
	dir    string
	hostID string
	notes  []string
}

// DefaultDirHost is the host id of a segment directory exported without --host: the
// directory itself does not record which host wrote it.
const DefaultDirHost = "local"

// NewDirSource returns a source over the segment directory dir, whose chain is exported
// under hostID (DefaultDirHost if empty).
func NewDirSource(dir, hostID string) (*DirSource, error) {
	if hostID == "" {
		hostID = DefaultDirHost
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("opening segment directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("opening segment directory: %s is not a directory", dir)
	}
	return &DirSource{dir: dir, hostID: hostID}, nil
}

// Describe implements Source.
func (s *DirSource) Describe() string { return "dir:" + s.dir }

// Hosts implements Source: one chain, named by the host id given to NewDirSource.
func (s *DirSource) Hosts(context.Context) ([]Host, error) {
	return []Host{{ID: s.hostID, Name: s.hostID}}, nil
}

// Close implements Source.
func (s *DirSource) Close() error { return nil }

// segmentFiles lists seg-*.log in chain order: names carry 20-digit seqs, so string
// order is seq order.
func (s *DirSource) segmentFiles() ([]string, error) {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("listing segment directory: %w", err)
	}
	var names []string
	for _, de := range des {
		n := de.Name()
		if strings.HasPrefix(n, "seg-") && strings.HasSuffix(n, ".log") && de.Type().IsRegular() {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// Entries implements Source, reading the segments in name order and their lines in
// file order.
func (s *DirSource) Entries(ctx context.Context, hostID string, fn func(*Entry) error) error {
	if hostID != s.hostID {
		return nil
	}
	names, err := s.segmentFiles()
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return fmt.Errorf("reading %s: no segment files (seg-*.log)", s.dir)
	}
	e := &Entry{HostID: s.hostID}
	br := bufio.NewReaderSize(nil, maxLine)
	s.notes = nil
	for i, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.segment(ctx, name, i == len(names)-1, br, e, fn); err != nil {
			return err
		}
	}
	return nil
}

// Notes implements Noter: what the last Entries call left out, and why.
func (s *DirSource) Notes() []string { return s.notes }

func (s *DirSource) segment(ctx context.Context, name string, last bool, br *bufio.Reader, e *Entry, fn func(*Entry) error) error {
	f, err := os.Open(filepath.Join(s.dir, name))
	if err != nil {
		return fmt.Errorf("reading segment %s: %w", name, err)
	}
	defer f.Close()
	br.Reset(f)
	var off int64
	for n := 0; ; n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		line, err := br.ReadSlice('\n')
		if len(line) == 0 && errors.Is(err, io.EOF) {
			return nil
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			return &FormatError{Segment: name, Offset: off, Reason: fmt.Sprintf("line longer than %d bytes", maxLine)}
		}
		if errors.Is(err, io.EOF) {
			if last {
				s.notes = append(s.notes, fmt.Sprintf("segment %s, offset %d: a final line of %d bytes without newline "+
					"(a torn write or one in progress) was not exported", name, off, len(line)))
				return nil
			}
			return &FormatError{Segment: name, Offset: off, Reason: "line has no newline, and later segments follow"}
		}
		if err != nil {
			return fmt.Errorf("reading segment %s at offset %d: %w", name, off, err)
		}
		if reason := parseSegmentLine(line, e); reason != "" {
			return &FormatError{Segment: name, Offset: off, Reason: reason}
		}
		if err := fn(e); err != nil {
			return err
		}
		off += int64(len(line))
	}
}

// payloadMeta is what the exporter reads from a payload besides its text.
type payloadMeta struct {
	TS    string `json:"ts"`
	Kind  string `json:"kind"`
	Event *struct {
		Type     string `json:"type"`
		Rule     string `json:"rule"`
		Severity string `json:"severity"`
	} `json:"event"`
}

// parseSegmentLine fills e from one line (with its '\n') and returns "" or why the line
// has no entry in it. The hashes and payload are taken at their fixed offsets and not
// checked: a hash that does not recompute is evidence to export, not an error.
func parseSegmentLine(line []byte, e *Entry) string {
	if len(line) < lineMin {
		return "line too short for an entry"
	}
	if string(line[:lineHashOff]) != `{"hash":"` || string(line[lineHashOff+chain.HashLen:linePrevOff]) != `","prev":"` ||
		string(line[linePrevOff+chain.HashLen:linePayloadOff]) != `","payload":` || string(line[len(line)-2:]) != "}\n" {
		return "line does not have the segment framing"
	}
	payload := line[linePayloadOff : len(line)-2]
	seq, ok := leadingSeq(payload)
	if !ok {
		return `payload does not start with {"seq":N`
	}
	e.Seq = seq
	e.Hash = string(line[lineHashOff : lineHashOff+chain.HashLen])
	e.PrevHash = string(line[linePrevOff : linePrevOff+chain.HashLen])
	e.Payload = payload
	setMeta(e, payload)
	return ""
}

// setMeta reads time, kind, type, rule and severity from a payload; a payload that does
// not parse leaves them empty (the entry is still exported, and its hash checked).
func setMeta(e *Entry, payload []byte) {
	e.Time, e.Kind, e.Type, e.Rule, e.Severity = time.Time{}, "", "", "", ""
	var m payloadMeta
	if json.Unmarshal(payload, &m) != nil {
		return
	}
	e.Kind = m.Kind
	if t, err := time.Parse(time.RFC3339Nano, m.TS); err == nil {
		e.Time = t.UTC()
	}
	if m.Event != nil {
		e.Type, e.Rule, e.Severity = m.Event.Type, m.Event.Rule, m.Event.Severity
	}
}

// leadingSeq parses the canonical {"seq":N at the start of a payload: decimal, no sign,
// no leading zero, followed by ',' or '}'.
func leadingSeq(p []byte) (uint64, bool) {
	const prefix = `{"seq":`
	if !bytes.HasPrefix(p, []byte(prefix)) {
		return 0, false
	}
	p = p[len(prefix):]
	var v uint64
	i := 0
	for ; i < len(p) && p[i] >= '0' && p[i] <= '9'; i++ {
		if i == 20 || (i > 0 && v == 0) {
			return 0, false
		}
		d := uint64(p[i] - '0')
		if v > (^uint64(0)-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	if i == 0 || i == len(p) || (p[i] != ',' && p[i] != '}') {
		return 0, false
	}
	return v, true
}
