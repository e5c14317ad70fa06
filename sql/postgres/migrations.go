// Package postgres holds the PostgreSQL schema of the production store (storage/fleet)
// as versioned SQL migrations: the source of truth for hosts, chain heads and the
// authoritative index of chain entries and alerts. Each file is named NNNN_title.sql,
// NNNN being its version; files are applied once each, in version order, each in its own
// transaction, and never edited after release: a change to the schema is a new file.
package postgres

import "embed"

// Migrations holds the migration files, named NNNN_title.sql at the root of the FS.
//
//go:embed *.sql
var Migrations embed.FS
