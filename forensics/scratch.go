package forensics

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
)

// openScratch opens a DuckDB database in a new temporary directory, so that an export
// larger than memory loads (DuckDB spills to its file), and returns a function that
// closes and removes it.
func openScratch(tmpDir string) (*sql.DB, func(), error) {
	dir, err := os.MkdirTemp(tmpDir, "tripwire-forensics-")
	if err != nil {
		return nil, nil, fmt.Errorf("creating scratch database: %w", err)
	}
	db, err := OpenDuckDB(filepath.Join(dir, "scratch.duckdb"))
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, nil, err
	}
	return db, func() { _ = db.Close(); _ = os.RemoveAll(dir) }, nil
}
