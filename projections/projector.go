package projections

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spooled-go/spooled/internal/pgdb"
	"github.com/spooled-go/spooled/queries"
)

// LogEvent is one event as the asynchronous projections read it.
type LogEvent = queries.EventsAfterCursorRow

// Projection is an asynchronous projection: it folds batches of log events
// into its own tables, in the transaction that also moves its checkpoint,
// so each event is applied exactly once.
type Projection interface {
	// Name keys the checkpoint; it never changes.
	Name() string
	// Apply folds a batch (in cursor order) inside tx. Projections that
	// share a read of the log are given the same batch: Apply must not
	// change it (its events share strings and queue-name pointers), nor
	// keep it once the pass is over (the projector reuses its array).
	Apply(ctx context.Context, tx pgx.Tx, batch []LogEvent) error
	// Reset empties the projection's tables, for a rebuild from the start.
	Reset(ctx context.Context, tx pgx.Tx) error
}

// DataReader is a projection that reads the data of a few event types
// only: the log read renders and sends the data of no other types, unless
// another projection sharing the read asks for them, so other events may
// reach Apply with Data "". A projection that is not a DataReader gets
// every event's data.
type DataReader interface {
	DataTypes() []string
}

// AfterCommitter is a projection that acts once its batch is committed
// (publishing, for instance: never before the commit).
type AfterCommitter interface {
	AfterCommit(batch []LogEvent)
}

// Projector runs asynchronous projections: each follows the log from its
// checkpoint in batches. Several server instances may run projectors on one
// database: a projection's checkpoint row is locked while a batch is
// applied, so one instance applies each batch. The projector has no loop of
// its own: its owner calls CatchUp (the app from a workers.Loop).
type Projector struct {
	pool  *pgxpool.Pool
	q     *queries.Queries
	projs []Projection
	batch int
	onLag func(name string, lag time.Duration)
	// ensured is set once every projection's checkpoint row exists; the
	// rows are never deleted, so later passes need not write them again.
	ensured atomic.Bool
	// spare holds page arrays between passes (CatchUp may run from
	// several goroutines at once), at most maxSparePages of them. Not a
	// sync.Pool: the collector empties those, and under load it ran
	// several times between two projector ticks, so every page was made
	// anew.
	spareMu sync.Mutex
	spare   []*[]LogEvent
}

// maxSparePages bounds the page arrays a projector keeps between passes:
// one per group of projections at one checkpoint, rarely more than two.
const maxSparePages = 4

// page returns an empty array for a page of the log.
func (p *Projector) page() *[]LogEvent {
	p.spareMu.Lock()
	defer p.spareMu.Unlock()
	if n := len(p.spare); n > 0 {
		pg := p.spare[n-1]
		p.spare = p.spare[:n-1]
		return pg
	}
	evs := make([]LogEvent, 0, p.batch)
	return &evs
}

// release takes a page's array back, without the events' strings.
func (p *Projector) release(pg *[]LogEvent) {
	clear(*pg)
	*pg = (*pg)[:0]
	p.spareMu.Lock()
	defer p.spareMu.Unlock()
	if len(p.spare) < maxSparePages {
		p.spare = append(p.spare, pg)
	}
}

// DefaultBatchSize is how many events a pass reads and applies at most,
// in one transaction. Every pass costs its transaction, the checkpoint
// locks and saves and the projections' upserts whatever its size: under
// the batch end-to-end benchmark (75,000 events a second) pages of 1,000
// took about eight passes per 100 ms tick and pages of 5,000 two, which
// cut the run's CPU by 3-4% (bench/NOTES.md, the sixteenth spell). A page
// of 5,000 events holds about 2 MB while it is applied.
const DefaultBatchSize = 5000

// ProjectorOptions tune a Projector.
type ProjectorOptions struct {
	BatchSize int // events per transaction (default DefaultBatchSize)
	// OnLag reports, after each pass, how far behind the newest readable
	// event a projection is (0 when caught up).
	OnLag func(name string, lag time.Duration)
}

// NewProjector returns a projector over projs.
func NewProjector(pool *pgxpool.Pool, projs []Projection, o ProjectorOptions) *Projector {
	if o.BatchSize == 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.OnLag == nil {
		o.OnLag = func(string, time.Duration) {}
	}
	return &Projector{pool: pool, q: queries.New(), projs: projs, batch: o.BatchSize, onLag: o.OnLag}
}

// CatchUp applies every readable event to every projection and returns how
// many it applied. Events of transactions still running are left for later.
func (p *Projector) CatchUp(ctx context.Context) (int, error) {
	total := 0
	lags := map[string]time.Duration{}
	for {
		read, applied, err := p.pass(ctx, lags)
		total += applied
		if err != nil {
			return total, err
		}
		if read < p.batch {
			break
		}
	}
	for _, proj := range p.projs {
		p.onLag(proj.Name(), lags[proj.Name()])
	}
	return total, nil
}

// member is a projection locked for a pass, with the events it applied.
type member struct {
	proj    Projection
	applied []LogEvent
}

// pass applies one page of the log to each projection this instance can
// lock, in one transaction. Projections at the same checkpoint (all of
// them, once caught up) share one read of the log: a read of its own for
// the fan-out, which needs only each event's organization, cost a
// twentieth of Postgres's CPU in the batch end-to-end work-off. A
// projection behind the others reads its own pages, so a rebuild does not
// hold the rest back. pass returns the longest page read, the events
// applied (summed over projections) and, in lags, how old the last event
// each projection applied is.
func (p *Projector) pass(ctx context.Context, lags map[string]time.Duration) (read, applied int, err error) {
	if err := p.ensureCheckpoints(ctx); err != nil {
		return 0, 0, err
	}
	var (
		locked []*member
		pages  []*[]LogEvent
	)
	defer func() {
		for _, pg := range pages {
			p.release(pg)
		}
	}()
	err = pgdb.WithTx(ctx, p.pool, func(tx pgx.Tx) error {
		locked = locked[:0]
		type cursor struct{ tx, pos int64 }
		var order []cursor
		groups := map[cursor][]*member{}
		for _, proj := range p.projs {
			cp, err := p.q.ProjectorCheckpointLock(ctx, tx, proj.Name())
			if errors.Is(err, pgx.ErrNoRows) {
				continue // another instance is applying this projection
			}
			if err != nil {
				return fmt.Errorf("projection %s: lock checkpoint: %w", proj.Name(), err)
			}
			c := cursor{cp.LastTxID, cp.LastPosition}
			if groups[c] == nil {
				order = append(order, c)
			}
			m := &member{proj: proj}
			groups[c] = append(groups[c], m)
			locked = append(locked, m)
		}
		for _, c := range order {
			pg := p.page()
			pages = append(pages, pg)
			n, err := p.applyPage(ctx, tx, c.tx, c.pos, groups[c], pg)
			if err != nil {
				return err
			}
			read = max(read, n)
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	for _, m := range locked {
		if len(m.applied) == 0 {
			lags[m.proj.Name()] = 0
			continue
		}
		applied += len(m.applied)
		lags[m.proj.Name()] = time.Since(m.applied[len(m.applied)-1].OccurredAt)
		if ac, ok := m.proj.(AfterCommitter); ok {
			ac.AfterCommit(m.applied)
		}
	}
	return read, applied, nil
}

// ensureCheckpoints creates the checkpoint rows missing on the first pass;
// two callers racing both write them, which is harmless.
func (p *Projector) ensureCheckpoints(ctx context.Context) error {
	if p.ensured.Load() {
		return nil
	}
	for _, proj := range p.projs {
		if err := p.q.ProjectorCheckpointEnsure(ctx, p.pool, proj.Name()); err != nil {
			return fmt.Errorf("projection %s: ensure checkpoint: %w", proj.Name(), err)
		}
	}
	p.ensured.Store(true)
	return nil
}

// applyPage reads the page of the log after (afterTx, afterPos) once, into
// *page's array, with the data any of the members needs, applies it to
// each member and moves their checkpoints past it. It returns the events
// read.
func (p *Projector) applyPage(ctx context.Context, tx pgx.Tx, afterTx, afterPos int64, members []*member, page *[]LogEvent) (int, error) {
	read := queries.EventsAfterCursorParams{AfterTxID: afterTx, AfterPosition: afterPos, MaxRows: int32(p.batch)}
	for _, m := range members {
		dr, ok := m.proj.(DataReader)
		if !ok {
			read.AllData = true
			continue
		}
		for _, t := range dr.DataTypes() {
			if !slices.Contains(read.DataTypes, t) {
				read.DataTypes = append(read.DataTypes, t)
			}
		}
	}
	if read.AllData {
		read.DataTypes = nil
	}
	evs, err := p.q.EventsAfterCursorPinnedInto(ctx, tx, read, (*page)[:0])
	if err != nil {
		return 0, fmt.Errorf("read log: %w", err)
	}
	*page = evs
	if len(evs) == 0 {
		return 0, nil
	}
	last := evs[len(evs)-1]
	for _, m := range members {
		if err := m.proj.Apply(ctx, tx, evs); err != nil {
			return 0, fmt.Errorf("projection %s: %w", m.proj.Name(), err)
		}
		if err := p.q.ProjectorCheckpointSave(ctx, tx, queries.ProjectorCheckpointSaveParams{
			Name: m.proj.Name(), LastTxID: last.TxID, LastPosition: last.Position, LastEventAt: &last.OccurredAt,
		}); err != nil {
			return 0, fmt.Errorf("projection %s: save checkpoint: %w", m.proj.Name(), err)
		}
		m.applied = evs
	}
	return len(evs), nil
}

// Sync catches every projection up with every event committed before it
// was called: it repeats CatchUp until nothing is left after any
// checkpoint. Events of a transaction still running anywhere in the
// cluster stay unreadable until it ends, so Sync waits (polling) for such
// transactions, up to ctx's deadline.
func (p *Projector) Sync(ctx context.Context) error {
	delay := time.Millisecond
	for {
		if _, err := p.CatchUp(ctx); err != nil {
			return err
		}
		left := int64(0)
		for _, proj := range p.projs {
			n, err := p.q.EventsAfterCheckpoint(ctx, p.pool, proj.Name())
			if err != nil {
				return fmt.Errorf("count unapplied events: %w", err)
			}
			left += n
		}
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("projections still %d events behind: %w", left, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 50*time.Millisecond)
	}
}

// Reset empties a projection and moves its checkpoint to the start of the
// log, in one transaction; the next pass rebuilds it.
func (p *Projector) Reset(ctx context.Context, name string) error {
	for _, proj := range p.projs {
		if proj.Name() != name {
			continue
		}
		if err := p.q.ProjectorCheckpointEnsure(ctx, p.pool, name); err != nil {
			return fmt.Errorf("ensure checkpoint: %w", err)
		}
		return pgdb.WithTx(ctx, p.pool, func(tx pgx.Tx) error {
			if err := proj.Reset(ctx, tx); err != nil {
				return fmt.Errorf("reset %s: %w", name, err)
			}
			if err := p.q.ProjectorCheckpointReset(ctx, tx, name); err != nil {
				return fmt.Errorf("reset checkpoint: %w", err)
			}
			return nil
		})
	}
	return fmt.Errorf("no projection named %q", name)
}
