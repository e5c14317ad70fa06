// Package clickhouse holds the ClickHouse schema of the production store (storage/fleet)
// as versioned SQL migrations: the full history of chain entries. Each file is named
// NNNN_title.sql, NNNN being its version, and holds statements that each end with ';' at
// the end of a line. ClickHouse has no transactional DDL, so every statement must be
// idempotent (IF NOT EXISTS): a migration cut short is applied again, whole, next time.
// Files are never edited after release. The schema must run on ClickHouse 18.16 (no
// DateTime64, TTL, codecs or Map; LowCardinality behind a setting) and on current
// releases.
package clickhouse

import "embed"

// Migrations holds the migration files, named NNNN_title.sql at the root of the FS.
//
//go:embed *.sql
var Migrations embed.FS
