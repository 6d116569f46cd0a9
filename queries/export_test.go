package queries

import "github.com/jackc/pgx/v5"

// CollectRows exposes collectRows to the tests of package queries_test.
func CollectRows[T any](rows pgx.Rows) ([]T, error) { return collectRows[T](rows, nil) }
