package httpapi

import (
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/cors"
	"github.com/valyala/fasthttp"

	"github.com/spooled-go/spooled/internal/config"
)

// securityHeaders sets the headers every response carries: an API has no
// page to frame, sniff or script, and HSTS when ENABLE_HSTS is set.
func securityHeaders(hsts bool) fiber.Handler {
	return func(c *fiber.Ctx) error {
		setSecurityHeaders(c.Set, hsts)
		return c.Next()
	}
}

// setSecurityHeaders sets the headers every response carries.
func setSecurityHeaders(set func(key, value string), hsts bool) {
	set("X-Frame-Options", "DENY")
	set("X-Content-Type-Options", "nosniff")
	set("Referrer-Policy", "strict-origin-when-cross-origin")
	set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	if hsts {
		set("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
	}
}

// refuseUnknownMethods answers a request whose method Fiber does not know
// with this API's JSON error: 501 NOT_IMPLEMENTED (the status for a method
// the server does not recognise) and the headers every response carries.
// Fiber itself answers it with a plain-text 400 before any middleware runs.
func refuseUnknownMethods(app *fiber.App, hsts bool) {
	known := map[string]bool{}
	for _, m := range app.Config().RequestMethods {
		known[m] = true
	}
	srv := app.Server()
	inner := srv.Handler
	srv.Handler = func(ctx *fasthttp.RequestCtx) {
		if known[string(ctx.Method())] {
			inner(ctx)
			return
		}
		ctx.SetStatusCode(fiber.StatusNotImplemented)
		ctx.SetContentType(fiber.MIMEApplicationJSON)
		setSecurityHeaders(ctx.Response.Header.Set, hsts)
		ctx.SetBodyString(`{"code":"NOT_IMPLEMENTED","message":"Unknown HTTP method"}`)
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
