package forensics

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ndjsonSelect reads an NDJSON export with read_json, into the columns of entries
// (payload_base64 decoded into payload_bytes) plus hostname, fork_of and fork_seq (NULL
// where a row has none: a host's own chain, or an export made before they existed).
func ndjsonSelect(lit string) string {
	return `SELECT host_id, pos, seq, TRY_CAST(ts AS TIMESTAMP_NS) AS ts, kind, tripwire_type, rule_name, severity,
       prev_hash, hash, payload, from_base64(payload_base64) AS payload_bytes, in_filter, hostname, fork_of, fork_seq
FROM read_json(` + lit + `, format = 'newline_delimited', maximum_object_size = 67108864, columns = {
    host_id: 'VARCHAR', hostname: 'VARCHAR', fork_of: 'VARCHAR', fork_seq: 'UBIGINT', pos: 'UBIGINT', seq: 'UBIGINT',
    ts: 'VARCHAR', kind: 'VARCHAR', tripwire_type: 'VARCHAR', rule_name: 'VARCHAR', severity: 'VARCHAR',
    prev_hash: 'VARCHAR', hash: 'VARCHAR', payload: 'VARCHAR', payload_base64: 'VARCHAR', in_filter: 'BOOLEAN'})`
}

// ExportParquet writes the export as one Parquet file at out: the columns of the
// entries table plus hostname, fork_of and fork_seq, in (host_id, pos) order. DuckDB
// cannot read Parquet from a pipe, so it goes to a file. The rows are first streamed as
// NDJSON into a temporary file in tmpDir ("" for the system's), which DuckDB converts.
func ExportParquet(ctx context.Context, src Source, out string, opts Options, tmpDir string) (Summary, error) {
	if out == "" || out == "-" {
		return Summary{}, errors.New("exporting parquet: an output file is required (--out): DuckDB cannot read Parquet from a pipe")
	}
	dir, err := os.MkdirTemp(tmpDir, "tripwire-forensics-")
	if err != nil {
		return Summary{}, fmt.Errorf("exporting parquet: %w", err)
	}
	defer os.RemoveAll(dir)
	nd := filepath.Join(dir, "export.ndjson")
	f, err := os.Create(nd)
	if err != nil {
		return Summary{}, fmt.Errorf("exporting parquet: %w", err)
	}
	opts.Format = FormatNDJSON
	sum, err := Export(ctx, src, f, opts)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("exporting parquet: %w", cerr)
	}
	if err != nil {
		return sum, err
	}
	db, err := OpenDuckDB("")
	if err != nil {
		return sum, err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "SET temp_directory = "+string(AppendSQLString(nil, []byte(dir)))); err != nil {
		return sum, fmt.Errorf("exporting parquet: %w", err)
	}
	q := "COPY (" + ndjsonSelect(string(AppendSQLString(nil, []byte(nd)))) + " ORDER BY host_id, pos) TO " +
		string(AppendSQLString(nil, []byte(out))) + " (FORMAT parquet)"
	if _, err := db.ExecContext(ctx, q); err != nil {
		return sum, fmt.Errorf("exporting parquet to %s: %w", out, err)
	}
	return sum, nil
}
