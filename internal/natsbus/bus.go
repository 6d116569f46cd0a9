// Package natsbus carries wake-up hints over NATS: an embedded server when no
// NATS_URL is configured, or a connection to the operator's NATS. Hints are
// best effort by design (Postgres is the source of truth): while the
// connection is down nothing is buffered or published, and readers fall back
// to polling the database.
package natsbus

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Subjects is the subject scheme of one deployment. Hints for a queue go
// to
//
//	<namespace>.hints.<org>.<queue>
//
// with each token escaped by Token (queue names may contain '.'), and "the
// organization's log advanced" hints go to
//
//	<namespace>.log.<org>
//
// The namespace ("spooled" unless NATS_SUBJECT_PREFIX says otherwise) keeps
// deployments that share a NATS cluster (staging beside production, say)
// from waking each other's claims and followers.
type Subjects struct {
	hint, log string // "<namespace>.hints." and "<namespace>.log."
}

// DefaultNamespace is the subject namespace when none is configured.
const DefaultNamespace = "spooled"

// NewSubjects returns the scheme under namespace: one or more tokens of
// letters, digits, '-' and '_', joined by '.', at most 64 characters.
func NewSubjects(namespace string) (Subjects, error) {
	if err := ValidNamespace(namespace); err != nil {
		return Subjects{}, err
	}
	return Subjects{hint: namespace + ".hints.", log: namespace + ".log."}, nil
}

// ValidNamespace reports why namespace cannot prefix subjects, or nil.
func ValidNamespace(namespace string) error {
	if namespace == "" || len(namespace) > 64 {
		return fmt.Errorf("NATS subject namespace %q: want 1 to 64 characters", namespace)
	}
	for _, tok := range strings.Split(namespace, ".") {
		if tok == "" {
			return fmt.Errorf("NATS subject namespace %q: empty token", namespace)
		}
		for _, c := range tok {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("NATS subject namespace %q: only letters, digits, '-', '_' and '.' between tokens", namespace)
			}
		}
	}
	return nil
}

// HintWildcard is every hint of every organization and queue.
func (s Subjects) HintWildcard() string { return s.hint + ">" }

// LogWildcard is every organization's log-advanced hint.
func (s Subjects) LogWildcard() string { return s.log + "*" }

// Log is the subject of an organization's log-advanced hints.
func (s Subjects) Log(orgID string) string { return s.log + Token(orgID) }

// ParseLog reads the organization of a log-advanced hint.
func (s Subjects) ParseLog(subject string) (orgID string, ok bool) {
	rest, found := strings.CutPrefix(subject, s.log)
	if !found || rest == "" || strings.Contains(rest, ".") {
		return "", false
	}
	return untoken(rest), true
}

// Hint is the subject of hints for one organization's queue.
func (s Subjects) Hint(orgID, queue string) string {
	return s.hint + Token(orgID) + "." + Token(queue)
}

// ParseHint splits a hint subject into organization and queue.
func (s Subjects) ParseHint(subject string) (orgID, queue string, ok bool) {
	rest, found := strings.CutPrefix(subject, s.hint)
	if !found {
		return "", "", false
	}
	org, q, found := strings.Cut(rest, ".")
	if !found || org == "" || q == "" || strings.Contains(q, ".") {
		return "", "", false
	}
	return untoken(org), untoken(q), true
}

// Token escapes a value for use as one subject token: '%' and the
// characters NATS gives meaning to ('.', '*', '>', whitespace) become %XX.
func Token(s string) string {
	if !strings.ContainsAny(s, "%.*> \t\r\n") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '%', '.', '*', '>', ' ', '\t', '\r', '\n':
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// untoken reverses Token.
func untoken(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Config chooses between an embedded server and an external one.
type Config struct {
	// URL of an external NATS; empty starts an embedded server.
	URL string
	// EmbeddedHost and EmbeddedPort are where the embedded server listens
	// (loopback and a free port by default), so that tools or a second
	// process can reach it.
	EmbeddedHost string
	EmbeddedPort int
	// ReconnectWait is the pause between reconnect attempts.
	ReconnectWait time.Duration
	// Namespace prefixes every subject (DefaultNamespace when empty).
	Namespace string
	Logger    *slog.Logger
}

// Bus is the server's NATS connection, and the embedded server when there
// is one.
type Bus struct {
	cfg       Config
	subjects  Subjects
	log       *slog.Logger
	conn      *nats.Conn
	connected atomic.Bool

	mu       sync.Mutex
	embedded *server.Server
	onChange []func(connected bool)
}

// Subjects is the bus's subject scheme.
func (b *Bus) Subjects() Subjects { return b.subjects }

// Open starts the embedded server when cfg.URL is empty, then connects.
// Connecting never fails for an unreachable external NATS: the bus keeps
// retrying in the background and reports itself disconnected meanwhile.
func Open(cfg Config) (*Bus, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReconnectWait == 0 {
		cfg.ReconnectWait = 250 * time.Millisecond
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	subjects, err := NewSubjects(cfg.Namespace)
	if err != nil {
		return nil, err
	}
	b := &Bus{cfg: cfg, subjects: subjects, log: cfg.Logger.With("component", "nats")}
	url := cfg.URL
	if url == "" {
		if cfg.EmbeddedHost == "" {
			cfg.EmbeddedHost = "127.0.0.1"
		}
		if cfg.EmbeddedPort == 0 {
			cfg.EmbeddedPort = -1
		}
		b.cfg = cfg
		ns, err := startEmbedded(cfg.EmbeddedHost, cfg.EmbeddedPort)
		if err != nil {
			return nil, err
		}
		b.embedded = ns
		// Reconnects go to the same address, so an embedded server restarted
		// on that port is found again.
		b.cfg.EmbeddedPort = ns.Addr().(*net.TCPAddr).Port
		url = ns.ClientURL()
	}
	conn, err := nats.Connect(url,
		nats.Name("spooled"),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(cfg.ReconnectWait),
		nats.ReconnectJitter(50*time.Millisecond, 100*time.Millisecond),
		// Nothing is buffered while disconnected: a hint published into the
		// void is dropped at once instead of being delivered late.
		nats.ReconnectBufSize(-1),
		// What this instance publishes it has already acted on locally
		// (hints wake local claims when raised), so the server does not
		// send it back: an echo cost a delivery and a discard per hint.
		nats.NoEcho(),
		nats.PingInterval(5*time.Second),
		nats.MaxPingsOutstanding(2),
		nats.ConnectHandler(func(*nats.Conn) { b.setConnected(true) }),
		nats.ReconnectHandler(func(*nats.Conn) { b.setConnected(true) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { b.setConnected(false) }),
		nats.ClosedHandler(func(*nats.Conn) { b.setConnected(false) }),
	)
	if err != nil {
		b.shutdownEmbedded()
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	b.conn = conn
	if conn.IsConnected() {
		b.setConnected(true)
	}
	return b, nil
}

func startEmbedded(host string, port int) (*server.Server, error) {
	ns, err := server.NewServer(&server.Options{
		ServerName: "spooled-embedded",
		Host:       host,
		Port:       port,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS did not start on %s:%d", host, port)
	}
	return ns, nil
}

func (b *Bus) setConnected(v bool) {
	if b.connected.Swap(v) == v {
		return
	}
	if v {
		b.log.Info("NATS connected; wake-up hints active")
	} else {
		b.log.Warn("NATS disconnected; waiting claims fall back to polling the database")
	}
	b.mu.Lock()
	fns := append([]func(bool){}, b.onChange...)
	b.mu.Unlock()
	for _, fn := range fns {
		fn(v)
	}
}

// OnConnectionChange registers fn to run when the connection goes up or
// down (from the NATS client's goroutine).
func (b *Bus) OnConnectionChange(fn func(connected bool)) {
	b.mu.Lock()
	b.onChange = append(b.onChange, fn)
	b.mu.Unlock()
}

// Connected reports whether hints are flowing.
func (b *Bus) Connected() bool { return b.connected.Load() }

// Embedded reports whether the bus runs its own server.
func (b *Bus) Embedded() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.embedded != nil
}

// ClientURL is the address of the NATS the bus uses.
func (b *Bus) ClientURL() string { return b.conn.ConnectedUrl() }

// Publish sends data on subject if connected; otherwise it drops it.
func (b *Bus) Publish(subject string, data []byte) {
	if !b.connected.Load() {
		return
	}
	if err := b.conn.Publish(subject, data); err != nil {
		b.log.Debug("hint dropped", "subject", subject, "err", err)
	}
}

// Subscribe delivers every message on subject to fn, on the NATS client's
// goroutine; fn must not block.
func (b *Bus) Subscribe(subject string, fn func(subject string, data []byte)) (func(), error) {
	sub, err := b.conn.Subscribe(subject, func(m *nats.Msg) { fn(m.Subject, m.Data) })
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	// The round trip makes the server register the subscription before
	// Subscribe returns, so a message published anywhere afterwards
	// reaches it. Disconnected, the client registers it on reconnect.
	if b.connected.Load() {
		_ = b.conn.FlushTimeout(2 * time.Second)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// StopEmbedded shuts the embedded server down, as an outage would (tests).
func (b *Bus) StopEmbedded() {
	b.shutdownEmbedded()
}

// RestartEmbedded starts a new embedded server on the old address; the
// client reconnects to it by itself (tests).
func (b *Bus) RestartEmbedded() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.embedded != nil && b.embedded.Running() {
		return nil
	}
	ns, err := startEmbedded(b.cfg.EmbeddedHost, b.cfg.EmbeddedPort)
	if err != nil {
		return err
	}
	b.embedded = ns
	return nil
}

func (b *Bus) shutdownEmbedded() {
	b.mu.Lock()
	ns := b.embedded
	b.mu.Unlock()
	if ns != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
	}
}

// Close drains nothing (hints are disposable): it closes the connection
// and stops the embedded server.
func (b *Bus) Close() {
	if b.conn != nil {
		b.conn.Close()
	}
	b.shutdownEmbedded()
	b.mu.Lock()
	b.embedded = nil
	b.mu.Unlock()
}
