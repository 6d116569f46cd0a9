package commands

import (
	"regexp"
	"strings"
)

var queueNameRE = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,100}$`)

// ValidateQueueName applies Spooled's rule: 1 to 100 characters of
// letters, digits, '-', '_' and '.', not starting with '.' or '-'.
func ValidateQueueName(field, name string) error {
	if !queueNameRE.MatchString(name) {
		if name == "" {
			return invalid(field, "length", "must be 1 to 100 characters")
		}
		if len(name) > 100 {
			return invalid(field, "length", "must be 1 to 100 characters")
		}
		return invalid(field, "invalid_queue_name", "may contain only letters, digits, '-', '_' and '.'")
	}
	if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "-") {
		return invalid(field, "invalid_queue_name", "must not start with '.' or '-'")
	}
	return nil
}

func checkRange(field string, v, lo, hi int) error {
	if v < lo || v > hi {
		return invalid(field, "range", "must be between %d and %d", lo, hi)
	}
	return nil
}
