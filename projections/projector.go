package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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
	// Apply folds a batch (in cursor order) inside tx.
	Apply(ctx context.Context, tx pgx.Tx, batch []LogEvent) error
	// Reset empties the projection's tables, for a rebuild from the start.
	Reset(ctx context.Context, tx pgx.Tx) error
}

// DataReader is a projection that reads the data of a few event types
// only: the log read renders and sends just those, and every other event
// reaches Apply with Data "". A projection that is not a DataReader gets
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
// applied, so one instance applies each batch.
type Projector struct {
	pool     *pgxpool.Pool
	q        *queries.Queries
	projs    []Projection
	batch    int
	interval time.Duration
	log      *slog.Logger
	onLag    func(name string, lag time.Duration)

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	kick   chan struct{}
}

// ProjectorOptions tune a Projector.
type ProjectorOptions struct {
	BatchSize int           // events per transaction (default 1000)
	Interval  time.Duration // idle poll interval (default 250ms)
	Logger    *slog.Logger
	// OnLag reports, after each pass, how far behind the newest readable
	// event a projection is (0 when caught up).
	OnLag func(name string, lag time.Duration)
}

// NewProjector returns a stopped projector over projs.
func NewProjector(pool *pgxpool.Pool, projs []Projection, o ProjectorOptions) *Projector {
	if o.BatchSize == 0 {
		o.BatchSize = 1000
	}
	if o.Interval == 0 {
		o.Interval = 250 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.OnLag == nil {
		o.OnLag = func(string, time.Duration) {}
	}
	return &Projector{pool: pool, q: queries.New(), projs: projs, batch: o.BatchSize, interval: o.Interval,
		log: o.Logger.With("component", "projector"), onLag: o.OnLag, kick: make(chan struct{}, 1)}
}

// CatchUp applies every readable event to every projection and returns how
// many it applied. Events of transactions still running are left for later.
func (p *Projector) CatchUp(ctx context.Context) (int, error) {
	total := 0
	for _, proj := range p.projs {
		for {
			n, lag, err := p.step(ctx, proj)
			total += n
			if err != nil {
				return total, fmt.Errorf("projection %s: %w", proj.Name(), err)
			}
			if n < p.batch {
				p.onLag(proj.Name(), lag)
				break
			}
		}
	}
	return total, nil
}

// step applies one batch to proj; it returns the events applied and, when
// it applied a full batch, how old the last one was.
func (p *Projector) step(ctx context.Context, proj Projection) (int, time.Duration, error) {
	if err := p.q.ProjectorCheckpointEnsure(ctx, p.pool, proj.Name()); err != nil {
		return 0, 0, fmt.Errorf("ensure checkpoint: %w", err)
	}
	applied := 0
	var lag time.Duration
	var done []LogEvent
	err := pgdb.WithTx(ctx, p.pool, func(tx pgx.Tx) error {
		cp, err := p.q.ProjectorCheckpointLock(ctx, tx, proj.Name())
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // another instance is applying this projection
		}
		if err != nil {
			return fmt.Errorf("lock checkpoint: %w", err)
		}
		read := queries.EventsAfterCursorParams{
			AllData: true, AfterTxID: cp.LastTxID, AfterPosition: cp.LastPosition, MaxRows: int32(p.batch),
		}
		if dr, ok := proj.(DataReader); ok {
			read.AllData, read.DataTypes = false, dr.DataTypes() // nil: no data at all
		}
		evs, err := p.q.EventsAfterCursorPinned(ctx, tx, read)
		if err != nil {
			return fmt.Errorf("read log: %w", err)
		}
		if len(evs) == 0 {
			return nil
		}
		if err := proj.Apply(ctx, tx, evs); err != nil {
			return err
		}
		last := evs[len(evs)-1]
		if err := p.q.ProjectorCheckpointSave(ctx, tx, queries.ProjectorCheckpointSaveParams{
			Name: proj.Name(), LastTxID: last.TxID, LastPosition: last.Position, LastEventAt: &last.OccurredAt,
		}); err != nil {
			return fmt.Errorf("save checkpoint: %w", err)
		}
		applied = len(evs)
		lag = time.Since(last.OccurredAt)
		done = evs
		return nil
	})
	if ac, ok := proj.(AfterCommitter); ok && err == nil && len(done) > 0 {
		ac.AfterCommit(done)
	}
	return applied, lag, err
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

// Kick asks a running projector for a pass now (after a local commit).
func (p *Projector) Kick() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Start runs passes every interval, or sooner when kicked, until Stop.
func (p *Projector) Start(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel != nil {
		return
	}
	ctx, p.cancel = context.WithCancel(ctx)
	p.done = make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		t := time.NewTicker(p.interval)
		defer t.Stop()
		for {
			if _, err := p.CatchUp(ctx); err != nil && ctx.Err() == nil {
				p.log.Error("projector pass failed", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-p.kick:
			}
		}
	}(p.done)
}

// Stop ends the loop and waits for the pass in flight, or for ctx.
func (p *Projector) Stop(ctx context.Context) error {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.cancel, p.done = nil, nil
	p.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
