package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/spooled-go/spooled/internal/clock"
	"github.com/spooled-go/spooled/internal/config"
	"github.com/spooled-go/spooled/internal/testdb"
)

// TestRateLimitsSharedByInstances: two instances on one NATS find each
// other and each keeps half of a per-client request limit, so together
// they hold it.
func TestRateLimitsSharedByInstances(t *testing.T) {
	_, dbURL := testdb.NewWithURL(t, testdb.Options{})
	limits := func(c *config.Config) {
		c.RateLimitRequestsPerSecond = 1 // slow refill: the burst decides
		c.RateLimitBurstSize = 10
	}
	// A pinned clock: no token comes back while the test runs, however
	// slowly it runs, so each instance lets exactly its share through.
	clk := clock.NewPinned(time.Now())
	a := wkStartApp(t, dbURL, clk, limits)
	b := wkStartApp(t, dbURL, clk, func(c *config.Config) {
		limits(c)
		c.NATSURL = a.Bus().ClientURL()
	})
	wkEventually(t, 10*time.Second, "instances see each other", func() bool {
		return a.Instances() == 2 && b.Instances() == 2
	})

	// Without a key the client is its X-Forwarded-For address.
	send := func(addr string) int {
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/jobs", nil)
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, inst := range []struct {
		name string
		addr string
	}{{"a", a.Addr()}, {"b", b.Addr()}} {
		allowed := 0
		for i := 0; i < 8; i++ {
			if send(inst.addr) != http.StatusTooManyRequests {
				allowed++
			}
		}
		// Each instance holds half the burst of 10.
		if allowed != 5 {
			t.Fatalf("instance %s let %d of 8 requests through, want 5 (half the burst)", inst.name, allowed)
		}
	}
}
