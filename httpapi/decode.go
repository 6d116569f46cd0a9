package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
)

// decodeBody parses a JSON request body into dst with Spooled's error
// contract: unparseable or mistyped input is 400 INVALID_JSON naming the
// field. Unknown fields are ignored, as Spooled's server ignores them.
// Bodies are accepted whatever their Content-Type, so curl -d works.
func decodeBody(c *fiber.Ctx, dst any) error { return decodeJSON(c.Body(), dst) }

// decodeJSON is decodeBody's work on the body's bytes.
func decodeJSON(body []byte, dst any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return invalidJSON("body", "Request body is empty or incomplete")
	}
	if !utf8.Valid(body) {
		return invalidJSON("body", "Request body is not valid UTF-8")
	}
	if hasNULEscape(body) {
		return validation("body", "nul_character", `must not contain the NUL character (\u0000), which cannot be stored`)
	}
	// The common case, one well-formed value, is parsed in place: a
	// json.Decoder would copy the body into buffers it grows as it reads
	// (a tenth of the server's allocations in the end-to-end benchmark).
	// Request types must hold no interface values: Unmarshal would decode
	// numbers into them as float64, where the Decoder below uses
	// json.Number.
	if json.Unmarshal(body, dst) == nil {
		return checkStorable(body)
	}
	// Malformed or mistyped: decoded again, by a Decoder, to say what is
	// wrong the way clients are told (it fails the same way, so what the
	// first attempt left in dst does not matter).
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
	// Only JSON whitespace may follow the value. (Decoder.More is not enough:
	// it reports no more input before a stray ']' or '}'.)
	if len(bytes.Trim(body[dec.InputOffset():], " \t\r\n")) > 0 {
		return invalidJSON("body", "Invalid JSON format: more than one JSON value")
	}
	return checkStorable(body)
}

// checkStorable refuses valid JSON text that Postgres cannot store in a
// jsonb column, so it is a 400 rather than a database error (a 500): a \u
// escape of a lone UTF-16 surrogate, and a number outside numeric's range.
// body must already have parsed as JSON.
func checkStorable(body []byte) error {
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case c == '"':
			for i++; body[i] != '"'; i++ {
				if body[i] != '\\' {
					continue
				}
				i++
				if body[i] != 'u' {
					continue
				}
				r := hex4(body[i+1 : i+5])
				i += 4
				if !utf16.IsSurrogate(r) {
					continue
				}
				if r < 0xDC00 && i+6 < len(body) && body[i+1] == '\\' && body[i+2] == 'u' {
					if lo := hex4(body[i+3 : i+7]); lo >= 0xDC00 && lo <= 0xDFFF {
						i += 6
						continue
					}
				}
				return invalidJSON("body", "Invalid JSON format: a \\u escape names a lone UTF-16 surrogate")
			}
		case c == '-' || (c >= '0' && c <= '9'):
			j := i
			for j < len(body) && strings.IndexByte("+-.0123456789eE", body[j]) >= 0 {
				j++
			}
			if !numericFits(body[i:j]) {
				return invalidJSON("body", "Invalid JSON format: number "+abbreviate(body[i:j])+" is out of range")
			}
			i = j - 1
		}
	}
	return nil
}

func hex4(b []byte) rune {
	n, _ := strconv.ParseUint(string(b), 16, 32)
	return rune(n)
}

// numericFits reports whether a JSON number literal fits Postgres numeric:
// at most 131072 digits before the decimal point and 16383 after it, and an
// exponent below 2^30 in magnitude.
func numericFits(lit []byte) bool {
	s := strings.TrimPrefix(string(lit), "-")
	mant, expPart, hasExp := strings.Cut(strings.ToLower(s), "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	exp := 0
	if hasExp {
		e, err := strconv.Atoi(expPart)
		if err != nil || e >= 1073741823 || e <= -1073741823 {
			return false
		}
		exp = e
	}
	if len(frac)-exp > 16383 {
		return false
	}
	digits := intPart + frac
	lead := len(digits) - len(strings.TrimLeft(digits, "0"))
	if lead == len(digits) {
		return true // zero
	}
	return len(intPart)+exp-lead <= 131072
}

func abbreviate(b []byte) string {
	if len(b) > 32 {
		return string(b[:32]) + "..."
	}
	return string(b)
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

// timestamp is a request field holding an RFC 3339 time. A malformed one is
// a type error, which encoding/json names by its field (it names no field
// for the time package's own parse error), so the client is told which
// field to mend.
type timestamp time.Time

func (t *timestamp) UnmarshalJSON(b []byte) error {
	var v time.Time
	if err := v.UnmarshalJSON(b); err != nil {
		return &json.UnmarshalTypeError{Value: abbreviate(b), Type: reflect.TypeFor[time.Time]()}
	}
	*t = timestamp(v)
	return nil
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

// queryText reads a free-text query value that a statement compares as
// text (a tag, an actor): "" when absent; a 400 when it is longer than
// maxLen bytes, not UTF-8, or holds the NUL character: Postgres accepts
// neither as text, and the statement would fail (a 500, not a clear 400).
func queryText(c *fiber.Ctx, name string, maxLen int) (string, error) {
	v := c.Query(name)
	if len(v) > maxLen {
		return "", validation(name, "length", "must be at most "+strconv.Itoa(maxLen)+" bytes")
	}
	if !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
		return "", validation(name, "text", "must be UTF-8 text without the NUL character")
	}
	return v, nil
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
