package fleet

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/tripwire-project/tripwire/storage"
)

// DropMonthsBefore enforces retention: it removes every entry of the UTC months that
// end at or before cutoff, the whole month at a time (ClickHouse 18.16 has no TTL; a
// dropped partition costs no rewrite). It returns the months dropped, as YYYYMM.
//
// Host events of those months, and their alerts, go too.
//
// PostgreSQL's index rows of those months go first, in one transaction, and then
// ClickHouse's partitions: the other order would leave the index naming entries whose
// history is gone, which reads report as MissingHistoryError. If dropping a partition
// fails, its rows are orphans no read shows, and the next call drops them. Chain heads
// are kept, so a host's next batch must still continue its chain.
func (s *Store) DropMonthsBefore(ctx context.Context, cutoff time.Time) ([]uint32, error) {
	cutoff = cutoff.UTC()
	// The first month kept is the one holding cutoff, unless cutoff is its first instant.
	keep := time.Date(cutoff.Year(), cutoff.Month(), 1, 0, 0, 0, 0, time.UTC)
	if keep.Before(storage.MinTime) {
		return nil, nil
	}
	if !keep.Before(storage.MaxTime) {
		keep = storage.MaxTime
	}
	keepMonth := uint32(keep.Year()*100 + int(keep.Month()))
	if _, err := s.pg.Exec(ctx, `WITH gone AS (DELETE FROM alerts WHERE ts_ns < $1),
			events AS (DELETE FROM host_events WHERE ts < $2)
		DELETE FROM chain_entries WHERE ts_ns < $1`, keep.UnixNano(), keep); err != nil {
		return nil, fmt.Errorf("dropping entries before %s from PostgreSQL: %w", keep.Format("2006-01"), err)
	}
	rows, err := s.ch.Query(ctx, `SELECT DISTINCT partition FROM system.parts
		WHERE database = currentDatabase() AND table = 'entries' AND active`)
	if err != nil {
		return nil, fmt.Errorf("listing ClickHouse partitions: %w", err)
	}
	var months []uint32
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing ClickHouse partitions: %w", err)
		}
		m, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("ClickHouse partition %q of entries is not a month", p)
		}
		if uint32(m) < keepMonth {
			months = append(months, uint32(m))
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing ClickHouse partitions: %w", err)
	}
	for i, m := range months {
		if err := s.ch.Exec(ctx, "ALTER TABLE entries DROP PARTITION "+strconv.FormatUint(uint64(m), 10)); err != nil {
			return months[:i], fmt.Errorf("dropping ClickHouse partition %d: %w", m, err)
		}
		s.logger.Info("retention dropped a month of entries", "month", m)
	}
	return months, nil
}
