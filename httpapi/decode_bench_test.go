package httpapi

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkDecodeBulkBody decodes the body of a bulk enqueue of 100 jobs,
// as the end-to-end benchmark's inserters send it.
func BenchmarkDecodeBulkBody(b *testing.B) {
	var jobs []string
	for i := range 100 {
		jobs = append(jobs, fmt.Sprintf(`{"payload":{"to":"user%d@example.com","n":%d},"priority":0}`, i, i))
	}
	body := []byte(`{"queue_name":"bench","jobs":[` + strings.Join(jobs, ",") + `]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var r bulkRequest
		if err := decodeJSON(body, &r); err != nil {
			b.Fatal(err)
		}
	}
}
