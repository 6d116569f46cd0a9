// Command spooled is the Spooled job queue server.
//
//	spooled [serve]                        run the server (the default)
//	spooled migrate                        apply the schema migrations and exit
//	spooled projections rebuild [name...]  rebuild projections from the log while serving
//	spooled projections verify             compare the projections with the log (exit 1 on a difference)
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spooled-go/spooled/internal/app"
	"github.com/spooled-go/spooled/internal/config"
	"github.com/spooled-go/spooled/internal/migrate"
	"github.com/spooled-go/spooled/internal/pgdb"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "spooled:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg, err := config.Load(os.LookupEnv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	var handler slog.Handler = slog.NewTextHandler(os.Stderr, nil)
	if cfg.JSONLogs {
		handler = slog.NewJSONHandler(os.Stderr, nil)
	}
	log := slog.New(handler)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cmd := "serve"
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "serve":
		return serve(ctx, cfg, log)
	case "migrate":
		pool, err := pgdb.Open(ctx, cfg.DatabaseURL, 2, "spooled-migrate")
		if err != nil {
			return err
		}
		defer pool.Close()
		applied, err := migrate.Up(ctx, pool, log)
		if err != nil {
			return err
		}
		fmt.Printf("applied %d migrations; log partitions created ahead\n", len(applied))
		return nil
	case "projections":
		return projectionsCmd(ctx, cfg, args[1:], os.Stdout)
	case "help", "-h", "--help":
		fmt.Println("usage: spooled [serve | migrate | projections rebuild [jobs|queue_stats] | projections verify]")
		return nil
	default:
		return fmt.Errorf("unknown command %q (want serve, migrate or projections)", cmd)
	}
}

func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	rt := app.TuneRuntime(os.Getenv)
	log.Info("runtime", "gogc", rt.GOGC, "memory_limit_bytes", rt.MemoryLimit, "memory_limit_note", errText(rt.MemoryLimitErr))
	a, err := app.New(ctx, cfg, log, app.Options{})
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		_ = a.Stop(context.Background(), true)
		return err
	}
	if cfg.DevBootstrap {
		if err := a.PrintDevBootstrap(ctx, os.Stdout); err != nil {
			_ = a.Stop(context.Background(), true)
			return err
		}
	}
	waitErr := a.Wait(ctx)
	log.Info("shutting down: draining requests")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Stop(shutdownCtx, true); err != nil {
		return err
	}
	return waitErr
}

// errText is err's message, or "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
