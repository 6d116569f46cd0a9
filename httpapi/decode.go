package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
)

// decodeBody parses a JSON request body into dst with Spooled's error
// contract: unparseable or mistyped input is 400 INVALID_JSON naming the
// field. Unknown fields are ignored, as Spooled's server ignores them.
// Bodies are accepted whatever their Content-Type, so curl -d works.
func decodeBody(c *fiber.Ctx, dst any) error {
	body := c.Body()
	if len(bytes.TrimSpace(body)) == 0 {
		return invalidJSON("body", "Request body is empty or incomplete")
	}
	if !utf8.Valid(body) {
		return invalidJSON("body", "Request body is not valid UTF-8")
	}
	if hasNULEscape(body) {
		return validation("body", "nul_character", `must not contain the NUL character (\u0000), which cannot be stored`)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(dst); err != nil {
		var typeErr *json.UnmarshalTypeError
		var synErr *json.SyntaxError
		switch {
		case errors.As(err, &typeErr):
			field := typeErr.Field
			if field == "" {
				field = "body"
			}
			return invalidJSON(field, "Invalid JSON format: "+field+" must be "+jsonKind(typeErr.Type.String()))
		case errors.As(err, &synErr):
			return invalidJSON("body", "Invalid JSON format at offset "+strconv.FormatInt(synErr.Offset, 10))
		case errors.Is(err, io.ErrUnexpectedEOF):
			return invalidJSON("body", "Request body is empty or incomplete")
		default:
			return invalidJSON("body", "Invalid JSON format: "+err.Error())
		}
	}
	if dec.More() {
		return invalidJSON("body", "Invalid JSON format: more than one JSON value")
	}
	return nil
}

// jsonKind names a Go type the way a client thinks of JSON.
func jsonKind(goType string) string {
	switch {
	case strings.Contains(goType, "int"), strings.Contains(goType, "float"):
		return "a number"
	case strings.Contains(goType, "string"):
		return "a string"
	case strings.Contains(goType, "bool"):
		return "a boolean"
	case strings.HasPrefix(goType, "[]"), strings.HasPrefix(goType, "*[]"):
		return "an array"
	case strings.Contains(goType, "Time"):
		return "an RFC 3339 timestamp"
	default:
		return "an object"
	}
}

// hasNULEscape reports a \u0000 escape anywhere in a JSON text (an escaped
// backslash followed by "u0000" does not count). Postgres text and jsonb
// cannot hold NUL, so such input is refused up front instead of failing in
// the database.
func hasNULEscape(b []byte) bool {
	for i := 0; i+5 < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if b[i+1] == 'u' && string(b[i+2:i+6]) == "0000" {
			return true
		}
		i++ // skip the escaped character, so "\\" never starts an escape
	}
	return false
}

// requireField reports a missing required field.
func requireField(present bool, field string) error {
	if !present {
		return invalidJSON(field, "Missing required field: "+field)
	}
	return nil
}

// queryInt reads an integer query parameter, clamping it into lo..hi. A
// value that is not a number is a 400.
func queryInt(c *fiber.Ctx, name string, def, lo, hi int) (int, error) {
	raw := c.Query(name)
	if raw == "" {
		return def, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil {
		return 0, badRequest(name + " must be a whole number")
	}
	return min(max(n, lo), hi), nil
}
