// Package duckdb holds the schema of the embedded DuckDB store (storage/duckdb) as
// versioned SQL migrations. Each file is named NNNN_title.sql, NNNN being its version;
// files are applied once each, in version order, and never edited after release: a
// change to the schema is a new file.
package duckdb

import "embed"

// Migrations holds the migration files, named NNNN_title.sql at the root of the FS.
//
//go:embed *.sql
var Migrations embed.FS
