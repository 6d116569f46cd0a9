// Package workers owns the server's background loops: the lease reaper and
// the partition upkeep (later: scheduled-job activation, cron, webhook
// delivery). Each loop has one owner that starts and stops it; none outlives
// Stop.
package workers

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Loop runs fn every interval until stopped. A run that fails is logged and
// retried at the next tick; fn decides how much work one run does.
type Loop struct {
	name     string
	interval time.Duration
	fn       func(ctx context.Context) error
	log      *slog.Logger

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// NewLoop returns a stopped loop.
func NewLoop(name string, interval time.Duration, log *slog.Logger, fn func(ctx context.Context) error) *Loop {
	if log == nil {
		log = slog.Default()
	}
	return &Loop{name: name, interval: interval, fn: fn, log: log.With("loop", name)}
}

// Start runs the loop in a goroutine it owns: once at once, then every
// interval. Starting a started loop does nothing.
func (l *Loop) Start(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancel != nil {
		return
	}
	ctx, l.cancel = context.WithCancel(ctx)
	l.done = make(chan struct{})
	go l.run(ctx, l.done)
}

func (l *Loop) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		if err := l.fn(ctx); err != nil && ctx.Err() == nil {
			l.log.Error("background run failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Stop cancels the loop and waits for its current run to end, or for ctx.
func (l *Loop) Stop(ctx context.Context) error {
	l.mu.Lock()
	cancel, done := l.cancel, l.done
	l.cancel, l.done = nil, nil
	l.mu.Unlock()
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
