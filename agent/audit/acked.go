package audit

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// ackedFile holds the acked seq as decimal text and a newline.
const ackedFile = "acked"

// ackInterval is the least time between two writes of the acked file: acks arrive per
// batch, and losing the last few on a crash only means re-sending what the collector
// de-duplicates anyway.
const ackInterval = 100 * time.Millisecond

// Acked returns the highest seq the collector has acknowledged: every entry up to it is
// stored centrally. It may be ahead of what the acked file holds by up to ~100 ms.
func (l *Log) Acked() uint64 { return l.acked.Load() }

// QueueDepth returns how many durable entries the collector has not acknowledged.
func (l *Log) QueueDepth() uint64 {
	head, _ := l.Head()
	return head - min(head, l.acked.Load())
}

// SetAcked records that the collector holds every entry up to seq. A seq at or below the
// current one is ignored, so the pointer never goes backwards; a seq beyond the durable
// head is refused with ErrAckBeyondHead (a collector acking what this host never wrote
// is a sign of a forked or cloned chain). The pointer is persisted to the file "acked"
// in the directory, at most once per ~100 ms, and on Close.
func (l *Log) SetAcked(seq uint64) error {
	if l.closing.Load() {
		return ErrClosed
	}
	if head, _ := l.Head(); seq > head {
		return fmt.Errorf("setting acked seq %d with head %d: %w", seq, head, ErrAckBeyondHead)
	}
	for {
		cur := l.acked.Load()
		if seq <= cur {
			return nil
		}
		if l.acked.CompareAndSwap(cur, seq) {
			break
		}
	}
	select {
	case l.ackKick <- struct{}{}:
	default:
	}
	return nil
}

// ackLoop persists the acked seq when it changes, at most once per ackInterval, and a
// last time when the log closes.
func (l *Log) ackLoop() {
	defer l.wg.Done()
	persisted := l.acked.Load()
	for {
		select {
		case <-l.ackKick:
		case <-l.done:
			l.persistAcked(&persisted)
			return
		}
		l.persistAcked(&persisted)
		t := time.NewTimer(ackInterval)
		select {
		case <-t.C:
		case <-l.done:
			t.Stop()
			l.persistAcked(&persisted)
			return
		}
	}
}

func (l *Log) persistAcked(persisted *uint64) {
	v := l.acked.Load()
	if v == *persisted {
		return
	}
	if err := writeAcked(l.dir, v); err != nil {
		// Not fatal: the collector de-duplicates what is sent again.
		l.logger.Warn("audit acked seq not persisted", "seq", v, "err", err)
		return
	}
	*persisted = v
}

// writeAcked replaces the acked file atomically: temporary file, fsync, rename, fsync of
// the directory.
func writeAcked(dir string, seq uint64) error {
	tmp := filepath.Join(dir, ackedFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("writing acked seq: %w", err)
	}
	_, err = f.Write(append(strconv.AppendUint(nil, seq, 10), '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, ackedFile))
	}
	if err != nil {
		return fmt.Errorf("writing acked seq: %w", err)
	}
	return syncDir(dir)
}

// readAcked reads the acked file: 0 if there is none.
func readAcked(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, ackedFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading acked seq: %w", err)
	}
	v, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("reading acked seq: %q is not a seq", b[:min(len(b), 40)])
	}
	return v, nil
}

// clampAcked returns the acked seq to start from: an unreadable file means 0
// (everything is sent again, and the collector de-duplicates); a seq beyond head is
// clamped, since the entries it names are gone.
func clampAcked(acked uint64, readErr error, head uint64, logger *slog.Logger) uint64 {
	if readErr != nil {
		logger.Warn("audit acked seq unreadable; resending from seq 1", "err", readErr)
		return 0
	}
	if acked > head {
		logger.Warn("audit acked seq beyond head: entries the collector holds are missing here; the collector will see a fork",
			"acked_seq", acked, "head_seq", head)
		return head
	}
	return acked
}
