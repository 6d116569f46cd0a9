// Package clock decides which clock a statement uses. Production code uses
// the database clock, so every server instance agrees on time; tests pin a
// clock to make backoff, lease expiry and due times happen on demand.
package clock

import (
	"sync"
	"time"
)

// Clock returns the time a statement should run at, or nil to use the
// database's now().
type Clock interface {
	Now() *time.Time
}

// Database is the production clock: every statement uses now().
type Database struct{}

// Now returns nil: the database decides.
func (Database) Now() *time.Time { return nil }

// Pinned is a test clock that stays where it is set.
type Pinned struct {
	mu sync.Mutex
	t  time.Time
}

// NewPinned returns a clock pinned at t.
func NewPinned(t time.Time) *Pinned { return &Pinned{t: t.UTC().Truncate(time.Microsecond)} }

// Now returns the pinned time.
func (p *Pinned) Now() *time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.t
	return &t
}

// Advance moves the clock forward by d.
func (p *Pinned) Advance(d time.Duration) {
	p.mu.Lock()
	p.t = p.t.Add(d)
	p.mu.Unlock()
}

// Set moves the clock to t.
func (p *Pinned) Set(t time.Time) {
	p.mu.Lock()
	p.t = t.UTC().Truncate(time.Microsecond)
	p.mu.Unlock()
}
