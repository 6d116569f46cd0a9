package httpapi

import (
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/cors"

	"github.com/spooled-go/spooled/internal/config"
)

// securityHeaders sets the headers every response carries: an API has no
// page to frame, sniff or script, and HSTS when ENABLE_HSTS is set.
func securityHeaders(hsts bool) fiber.Handler {
	return func(c *fiber.Ctx) error {
		c.Set("X-Frame-Options", "DENY")
		c.Set("X-Content-Type-Options", "nosniff")
		c.Set("Referrer-Policy", "strict-origin-when-cross-origin")
		c.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		c.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		if hsts {
			c.Set("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
		}
		return c.Next()
	}
}

// corsPolicy allows any origin in development and only
// CORS_ALLOWED_ORIGINS elsewhere (none when unset).
func corsPolicy(cfg config.Config) fiber.Handler {
	c := cors.Config{
		AllowMethods:  "GET,POST,PUT,PATCH,DELETE,OPTIONS",
		AllowHeaders:  "Authorization,Content-Type,X-API-Key,X-Request-ID,X-Admin-Key,X-Organization-ID,X-API-Version",
		ExposeHeaders: "X-Request-ID,X-API-Version,Retry-After,X-RateLimit-Limit,X-RateLimit-Remaining,X-RateLimit-Reset",
		MaxAge:        600,
	}
	if cfg.Environment == config.Development {
		c.AllowOrigins = "*"
	} else {
		// Fiber lower-cases the request's Origin before asking; scheme and
		// host are case-insensitive, so the configured origins are too.
		allowed := map[string]bool{}
		for _, o := range cfg.CORSAllowedOrigins {
			allowed[strings.ToLower(strings.TrimRight(o, "/"))] = true
		}
		c.AllowOriginsFunc = func(origin string) bool { return allowed[origin] }
	}
	return cors.New(c)
}
