package testdb

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// PlanNode is the part of EXPLAIN (FORMAT JSON) output plan tests read.
type PlanNode struct {
	NodeType  string     `json:"Node Type"`
	IndexName string     `json:"Index Name"`
	Relation  string     `json:"Relation Name"`
	Output    []string   `json:"Output"`       // with VERBOSE
	Rows      float64    `json:"Actual Rows"`  // with ANALYZE
	Loops     float64    `json:"Actual Loops"` // with ANALYZE
	Plans     []PlanNode `json:"Plans"`
}

// Explained is one statement's EXPLAIN (FORMAT JSON), decoded, and the raw
// text for failure messages.
type Explained struct {
	Plan PlanNode       `json:"Plan"`
	JIT  map[string]any `json:"JIT"`
	Raw  string         `json:"-"`
}

// Explain runs EXPLAIN (options) of sql with args on q; options must
// include FORMAT JSON.
func Explain(t testing.TB, ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, options, sql string, args ...any) Explained {
	t.Helper()
	var raw string
	if err := q.QueryRow(ctx, "EXPLAIN ("+options+") "+sql, args...).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var plans []Explained
	if err := json.Unmarshal([]byte(raw), &plans); err != nil || len(plans) != 1 {
		t.Fatalf("EXPLAIN output %q: %v", raw, err)
	}
	plans[0].Raw = raw
	return plans[0]
}

// Nodes lists the plan's nodes, depth first.
func (n PlanNode) Nodes() []PlanNode {
	out := []PlanNode{n}
	for _, c := range n.Plans {
		out = append(out, c.Nodes()...)
	}
	return out
}

// Find returns the first node of type t, depth first.
func (n PlanNode) Find(t string) (PlanNode, bool) {
	for _, m := range n.Nodes() {
		if m.NodeType == t {
			return m, true
		}
	}
	return PlanNode{}, false
}

// Sorts says whether the plan sorts (a full or an incremental sort).
func (e Explained) Sorts() bool {
	for _, n := range e.Plan.Nodes() {
		if strings.Contains(n.NodeType, "Sort") {
			return true
		}
	}
	return false
}

// ReadRows is the most rows any scan of the plan produced (with ANALYZE):
// a page read in index order stops after the page, a sort reads
// everything that matches first.
func (e Explained) ReadRows() float64 {
	most := 0.0
	for _, n := range e.Plan.Nodes() {
		if strings.Contains(n.NodeType, "Scan") {
			most = max(most, n.Rows*n.Loops)
		}
	}
	return most
}
