package workers

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/internal/natsbus"
)

// presencePrefix is where instances announce themselves:
// spooled.presence.<instance id>.
const presencePrefix = "spooled.presence."

// Presence counts the server instances sharing the NATS bus: each announces
// itself every interval, and an instance seen within three intervals is
// live. Limits kept in each instance's memory (request rates) are divided
// by the count, so together the instances hold the configured rate. While
// NATS is down, peers stop being seen and each instance falls back to the
// whole rate (up to N times the limit across N instances).
type Presence struct {
	bus      *natsbus.Bus
	id       string
	interval time.Duration
	loop     *Loop

	mu    sync.Mutex
	seen  map[string]time.Time
	unsub func()
}

// NewPresence returns a stopped Presence; bus may be nil (one instance).
func NewPresence(bus *natsbus.Bus, interval time.Duration, log *slog.Logger) *Presence {
	p := &Presence{bus: bus, id: uuid.NewString(), interval: interval, seen: map[string]time.Time{}}
	p.loop = NewLoop("presence", interval, log, func(context.Context) error {
		if p.bus != nil {
			p.bus.Publish(presencePrefix+p.id, nil)
		}
		return nil
	})
	return p
}

// Start subscribes to the other instances' announcements and starts
// announcing this one.
func (p *Presence) Start(ctx context.Context) error {
	if p.bus != nil {
		unsub, err := p.bus.Subscribe(presencePrefix+"*", func(subject string, _ []byte) {
			id := strings.TrimPrefix(subject, presencePrefix)
			p.mu.Lock()
			p.seen[id] = time.Now()
			p.mu.Unlock()
		})
		if err != nil {
			return err
		}
		p.mu.Lock()
		p.unsub = unsub
		p.mu.Unlock()
	}
	p.loop.Start(ctx)
	return nil
}

// Stop ends the announcements and the subscription.
func (p *Presence) Stop(ctx context.Context) error {
	err := p.loop.Stop(ctx)
	p.mu.Lock()
	unsub := p.unsub
	p.unsub = nil
	p.mu.Unlock()
	if unsub != nil {
		unsub()
	}
	return err
}

// Instances is how many live instances share the bus, this one included.
func (p *Presence) Instances() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	cutoff := time.Now().Add(-3 * p.interval)
	n := 0
	for id, at := range p.seen {
		if at.Before(cutoff) {
			delete(p.seen, id)
			continue
		}
		if id != p.id {
			n++
		}
	}
	return n + 1
}
