package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/tripwire-project/tripwire/proto/chain"
)

const (
	segPrefix = "seg-"
	segSuffix = ".log"
	segDigits = 20
)

// segmentName returns the file name of the segment whose first entry has seq first.
func segmentName(first uint64) string {
	return fmt.Sprintf("%s%0*d%s", segPrefix, segDigits, first, segSuffix)
}

// parseSegmentName returns the first seq a segment file name states.
func parseSegmentName(name string) (uint64, bool) {
	if len(name) != len(segPrefix)+segDigits+len(segSuffix) ||
		!strings.HasPrefix(name, segPrefix) || !strings.HasSuffix(name, segSuffix) {
		return 0, false
	}
	digits := name[len(segPrefix) : len(segPrefix)+segDigits]
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(digits, 10, 64)
	return v, err == nil
}

// segFile is one segment file found on disk.
type segFile struct {
	name  string
	first uint64 // from the name
	size  int64
}

// listSegments returns the segment files of dir in chain order. Other files are ignored.
func listSegments(dir string) ([]segFile, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing audit segments: %w", err)
	}
	var segs []segFile
	for _, de := range des {
		first, ok := parseSegmentName(de.Name())
		if !ok || !de.Type().IsRegular() {
			continue
		}
		info, err := de.Info()
		if err != nil {
			return nil, fmt.Errorf("listing audit segments: %w", err)
		}
		segs = append(segs, segFile{name: de.Name(), first: first, size: info.Size()})
	}
	slices.SortFunc(segs, func(a, b segFile) int {
		switch {
		case a.first < b.first:
			return -1
		case a.first > b.first:
			return 1
		}
		return 0
	})
	return segs, nil
}

// lineReader reads stored lines sequentially, tracking their offsets. Lines longer than
// its buffer are assembled in a side buffer, up to maxLineBytes.
type lineReader struct {
	r    *bufio.Reader
	off  int64 // offset of the next line
	long []byte
}

func newLineReader(r io.Reader, off int64, bufSize int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, bufSize), off: off}
}

// next returns the next line with its newline and its offset. The line is valid until
// the next call. At the end it returns io.EOF; a final line without a newline is
// returned with errNoNewline; a line over maxLineBytes is consumed up to its newline and
// reported with errLong and its first bytes. Other errors are read errors.
func (lr *lineReader) next() ([]byte, int64, error) {
	off := lr.off
	line, err := lr.r.ReadSlice('\n')
	n := int64(len(line))
	if errors.Is(err, bufio.ErrBufferFull) {
		lr.long = append(lr.long[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = lr.r.ReadSlice('\n')
			n += int64(len(line))
			if len(lr.long) <= maxLineBytes {
				lr.long = append(lr.long, line...)
			}
		}
		line = lr.long
	}
	lr.off += n
	switch {
	case err == nil:
		if n > int64(maxLineBytes) {
			return line, off, errLong // line holds only its start
		}
		return line, off, nil
	case errors.Is(err, io.EOF):
		if n == 0 {
			return nil, off, io.EOF
		}
		return line, off, errNoNewline
	default:
		return nil, off, fmt.Errorf("reading audit segment: %w", err)
	}
}

// headWindow is how much of a segment's start or end is read to find its first or last
// line; longer lines are found by reading up to maxLineBytes.
const headWindow = 64 << 10

// readFirstLine returns the first line of a segment of the given size.
func readFirstLine(f io.ReaderAt, size int64) ([]byte, error) {
	for w := min(size, headWindow); ; w = min(size, int64(maxLineBytes)) {
		buf := make([]byte, w)
		if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading first line: %w", err)
		}
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			return buf[:i+1], nil
		}
		if w == size {
			return nil, errNoNewline
		}
		if w >= int64(maxLineBytes) {
			return nil, errLong
		}
	}
}

// readLastLine returns the last line of a segment of the given size and its offset. The
// segment must end with a newline.
func readLastLine(f io.ReaderAt, size int64) ([]byte, int64, error) {
	for w := min(size, headWindow); ; w = min(size, int64(maxLineBytes)+1) {
		buf := make([]byte, w)
		if _, err := f.ReadAt(buf, size-w); err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, fmt.Errorf("reading last line: %w", err)
		}
		if w == 0 || buf[w-1] != '\n' {
			return nil, size, errNoNewline
		}
		if j := bytes.LastIndexByte(buf[:w-1], '\n'); j >= 0 {
			return buf[j+1:], size - w + int64(j) + 1, nil
		}
		if w == size {
			return buf, 0, nil
		}
		if w > int64(maxLineBytes) {
			return nil, size - w, errLong
		}
	}
}

// selfConsistent reports whether an entry's stored hash recomputes from its stored prev
// and payload.
func selfConsistent(e rawEntry) bool {
	var buf [chain.HashLen]byte
	return bytes.Equal(chain.AppendHash(buf[:0], e.Prev, e.Payload), e.Hash)
}

// anchorProblem checks that payload is an anchor entry naming the previous segment's
// name, last seq and last hash. It returns "" if it is, or the reason it is not.
func anchorProblem(payload []byte, prevSeg string, prevSeq uint64, prevHash []byte) string {
	var p chain.Payload
	if err := json.Unmarshal(payload, &p); err != nil {
		return "first entry of the segment does not decode: " + err.Error()
	}
	switch {
	case p.Kind != chain.KindAnchor || p.Anchor == nil:
		return fmt.Sprintf("first entry of the segment is of kind %q, not an anchor", p.Kind)
	case p.Anchor.PrevSegment != prevSeg:
		return fmt.Sprintf("anchor names previous segment %q, not %q", p.Anchor.PrevSegment, prevSeg)
	case p.Anchor.PrevSeq != prevSeq:
		return fmt.Sprintf("anchor names previous seq %d, not %d", p.Anchor.PrevSeq, prevSeq)
	case p.Anchor.PrevHash != string(prevHash):
		return fmt.Sprintf("anchor names previous hash %.16s…, not %.16s…", p.Anchor.PrevHash, prevHash)
	}
	return ""
}

// syncDir fsyncs a directory so that entries created or renamed in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening directory for fsync: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsyncing directory %s: %w", dir, err)
	}
	return nil
}

// segPath joins a segment name to its directory.
func segPath(dir, name string) string { return filepath.Join(dir, name) }
