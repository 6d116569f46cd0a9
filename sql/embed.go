// Package sql holds the numbered schema migrations. They are the only copy of
// the DDL: sqlc reads them as its schema and the server embeds and applies
// them in order.
package sql

import "embed"

// Migrations holds every NNNN_name.sql file of this folder.
//
//go:embed *.sql
var Migrations embed.FS
