package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/spooled-go/spooled/commands"
)

// apiError is every error response: Spooled's {code, message, details?}
// body, plus fields some SDK paths read (error) or old routes returned
// (success).
type apiError struct {
	Status  int            `json:"-"`
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Error_  string         `json:"error,omitempty"`
	Details any            `json:"details,omitempty"`
	Extra   map[string]any `json:"-"`
	Headers map[string]string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// fieldError is one entry of a validation error's details.
type fieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
	Code    string `json:"code"`
}

func badRequest(msg string) *apiError {
	return &apiError{Status: fiber.StatusBadRequest, Code: "BAD_REQUEST", Message: msg}
}

func notFound(msg string) *apiError {
	return &apiError{Status: fiber.StatusNotFound, Code: "NOT_FOUND", Message: msg}
}

func validation(field, code, msg string) *apiError {
	return &apiError{
		Status: fiber.StatusBadRequest, Code: "VALIDATION_ERROR", Error_: "Validation failed",
		Message: field + ": " + msg,
		Details: []fieldError{{Field: field, Message: msg, Code: code}},
	}
}

func invalidJSON(field, msg string) *apiError {
	return &apiError{
		Status: fiber.StatusBadRequest, Code: "INVALID_JSON", Error_: "Invalid JSON", Message: msg,
		Details: []fieldError{{Field: field, Message: msg, Code: "PARSE_ERROR"}},
	}
}

func payloadTooLarge(msg string) *apiError {
	return &apiError{Status: fiber.StatusRequestEntityTooLarge, Code: "PAYLOAD_TOO_LARGE", Message: msg}
}

// toAPIError maps any error a handler returns to its response. It is the one
// place where errors meet status codes.
func toAPIError(err error, log *slog.Logger, path string) *apiError {
	var ae *apiError
	var ve *commands.ValidationError
	var pe *commands.PayloadTooLargeError
	var fe *fiber.Error
	var ple *commands.PlanLimitError
	var ppe *commands.PlanPayloadError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &ple):
		extra := map[string]any{"resource": ple.Resource, "current": ple.Current, "limit": ple.Limit, "plan": ple.Plan}
		if ple.UpgradeTo != "" {
			extra["upgrade_to"] = ple.UpgradeTo
		}
		return &apiError{Status: fiber.StatusForbidden, Code: "LIMIT_EXCEEDED", Error_: "limit_exceeded",
			Message: ple.Error(), Extra: extra}
	case errors.As(err, &ppe):
		extra := map[string]any{"current": ppe.Size, "limit": ppe.Limit, "plan": ppe.Plan}
		if ppe.UpgradeTo != "" {
			extra["upgrade_to"] = ppe.UpgradeTo
		}
		return &apiError{Status: fiber.StatusRequestEntityTooLarge, Code: "PAYLOAD_TOO_LARGE", Error_: "payload_too_large",
			Message: ppe.Error(), Extra: extra}
	case errors.As(err, &ve):
		return validation(ve.Field, ve.Code, ve.Message)
	case errors.As(err, &pe):
		return payloadTooLarge(pe.Error())
	case errors.Is(err, commands.ErrNotFound):
		return notFound("Resource not found")
	case errors.Is(err, commands.ErrConflict):
		return &apiError{Status: fiber.StatusConflict, Code: "CONFLICT", Message: strings.TrimPrefix(err.Error(), "conflict: ")}
	case errors.Is(err, commands.ErrStopping):
		return &apiError{Status: fiber.StatusServiceUnavailable, Code: "SERVICE_UNAVAILABLE",
			Message: "The server is shutting down: retry, another instance will answer",
			Headers: map[string]string{"Retry-After": "1"}}
	case errors.Is(err, commands.ErrForbidden):
		return &apiError{Status: fiber.StatusForbidden, Code: "ACCESS_DENIED", Message: strings.TrimPrefix(err.Error(), "forbidden: ")}
	case errors.As(err, &fe):
		return fromFiberError(fe)
	}
	log.Error("request failed", "path", path, "err", err)
	return &apiError{Status: fiber.StatusInternalServerError, Code: "INTERNAL_ERROR", Message: "An internal error occurred"}
}

// errClientLeft ends a request whose client closed the connection while
// it waited. Nobody reads it; the status (nginx's 499) keeps such requests
// apart from failures in the request metrics, and out of the error log.
var errClientLeft = &apiError{Status: 499, Code: "CLIENT_CLOSED_REQUEST",
	Message: "The client closed the connection before the answer"}

func fromFiberError(fe *fiber.Error) *apiError {
	switch fe.Code {
	case fiber.StatusNotFound:
		return notFound("No such route")
	case fiber.StatusMethodNotAllowed:
		return &apiError{Status: fe.Code, Code: "METHOD_NOT_ALLOWED", Message: "Method not allowed for this route"}
	case fiber.StatusRequestEntityTooLarge:
		return payloadTooLarge("Request body is larger than MAX_CONTENT_LENGTH")
	case fiber.StatusRequestTimeout:
		return &apiError{Status: fe.Code, Code: "REQUEST_TIMEOUT", Message: "Request timed out"}
	}
	if fe.Code >= 500 {
		return &apiError{Status: fe.Code, Code: "INTERNAL_ERROR", Message: "An internal error occurred"}
	}
	return &apiError{Status: fe.Code, Code: "BAD_REQUEST", Message: fe.Message}
}

// errorHandler is Fiber's last stop: every error, from a handler, the router
// (unknown route, wrong method) or the server (body too large), leaves as
// JSON.
func errorHandler(log *slog.Logger) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		ae := toAPIError(err, log, c.Path())
		for k, v := range ae.Headers {
			c.Set(k, v)
		}
		body := fiber.Map{"code": ae.Code, "message": ae.Message}
		if ae.Error_ != "" {
			body["error"] = ae.Error_
		}
		if ae.Details != nil {
			body["details"] = ae.Details
		}
		for k, v := range ae.Extra {
			body[k] = v
		}
		return c.Status(ae.Status).JSON(body)
	}
}

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}
