package projections

import (
	"context"
	"time"
)

// Pass runs one pass of the projector (a page for each projection it can
// lock) and returns the longest page read and the events applied.
func (p *Projector) Pass(ctx context.Context) (read, applied int, err error) {
	return p.pass(ctx, map[string]time.Duration{})
}
