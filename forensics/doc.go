// Package forensics exports audit chains for offline investigation and checks such
// exports without trusting Tripwire's code: the export is a SQL script that the duckdb
// shell executes (or NDJSON, or Parquet), holding every entry exactly as chained and
// views that recompute every hash with DuckDB's own sha256 and flag each broken link and
// each gap in seq (docs/formats/forensics-export.md).
//
// The exporter reads from a Source: an agent's audit segment directory (DirSource, for
// a host seized offline), the collector's embedded DuckDB file (DuckDBSource), or any
// storage.Store such as ClickHouse + PostgreSQL (StoreSource).
package forensics
