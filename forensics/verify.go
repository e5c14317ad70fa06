package forensics

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// BreakError is the first break the verification views of an export report: the chain
// of HostID is not intact at Seq.
type BreakError struct {
	HostID string
	Seq    uint64
	Pos    uint64 // 1-based position of the entry in the export's chain order; 0 for a missing tail
	Check  string // gap, repeat, order, link, hash, payload_seq, tail, head
	Detail string
}

func (e *BreakError) Error() string {
	where := fmt.Sprintf("host %q seq %d", e.HostID, e.Seq)
	if e.Pos > 0 {
		where += fmt.Sprintf(" (position %d)", e.Pos)
	}
	return fmt.Sprintf("%s: %s: %s", where, e.Check, e.Detail)
}

// ExportReport summarises a verified export. Hashed and Stubs are set only when the
// export verifies.
type ExportReport struct {
	Hosts   int
	Entries uint64 // rows, stubs included
	Hashed  uint64 // rows whose payload is present and whose hash recomputed
	Stubs   uint64 // rows outside the export's filter, checked by link only
}

// VerifyLoaded runs the verification views on a database holding an export (see
// LoadExport) and returns the first break, by host and chain order, as a *BreakError.
func VerifyLoaded(ctx context.Context, db *sql.DB) (ExportReport, error) {
	var rep ExportReport
	// Without a break, every row with a payload hashed (the hash check flags any that
	// does not), so the counts need no second pass of sha256.
	err := db.QueryRowContext(ctx, `SELECT count(DISTINCT host_id), count(*),
    count(*) FILTER (WHERE payload IS NOT NULL OR payload_bytes IS NOT NULL)
FROM entries`).Scan(&rep.Hosts, &rep.Entries, &rep.Hashed)
	if err != nil {
		return rep, fmt.Errorf("verifying export: %w", err)
	}
	var b BreakError
	var pos sql.NullInt64
	err = db.QueryRowContext(ctx, `SELECT host_id, seq, pos, "check", detail FROM chain_breaks LIMIT 1`).
		Scan(&b.HostID, &b.Seq, &pos, &b.Check, &b.Detail)
	if errors.Is(err, sql.ErrNoRows) {
		rep.Stubs = rep.Entries - rep.Hashed
		return rep, nil
	}
	if err != nil {
		return rep, fmt.Errorf("verifying export: %w", err)
	}
	b.Pos = uint64(pos.Int64)
	return ExportReport{Hosts: rep.Hosts, Entries: rep.Entries}, &b
}

// VerifyExport loads the export file at path into a temporary DuckDB database in
// tmpDir ("" for the system's) and runs VerifyLoaded.
func VerifyExport(ctx context.Context, path, tmpDir string) (ExportReport, error) {
	db, cleanup, err := openScratch(tmpDir)
	if err != nil {
		return ExportReport{}, err
	}
	defer cleanup()
	if err := LoadExport(ctx, db, path); err != nil {
		return ExportReport{}, err
	}
	return VerifyLoaded(ctx, db)
}
