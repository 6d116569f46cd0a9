package commands

import (
	"errors"
	"strconv"
)

// ValidateQueueName applies Spooled's rule: 1 to 100 characters of
// letters, digits, '-', '_' and '.', not starting with '.' or '-'. Every
// job of every enqueue passes here, so it reads the bytes itself; a
// regular expression cost a microsecond a job.
func ValidateQueueName(field, name string) error {
	if name == "" || len(name) > 100 {
		return invalid(field, "length", "must be 1 to 100 characters")
	}
	for i := 0; i < len(name); i++ {
		if !queueNameByte(name[i]) {
			return invalid(field, "invalid_queue_name", "may contain only letters, digits, '-', '_' and '.'")
		}
	}
	if name[0] == '.' || name[0] == '-' {
		return invalid(field, "invalid_queue_name", "must not start with '.' or '-'")
	}
	return nil
}

// queueNameByte reports whether c may appear in a queue name. Any byte of a
// multi-byte UTF-8 character is >= 0x80 and refused, as the rule's ASCII
// classes refuse the character.
func queueNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '.' || c == '-'
}

// itemError places a validation error of a bulk call's job i in that
// item ("jobs[3].priority"); other errors pass as they are. Jobs are
// validated with bare field names and only an error is placed, so a valid
// job builds no names.
func itemError(i int, err error) error {
	var v *ValidationError
	if errors.As(err, &v) {
		return &ValidationError{Field: "jobs[" + strconv.Itoa(i) + "]." + v.Field, Code: v.Code, Message: v.Message}
	}
	return err
}

func checkRange(field string, v, lo, hi int) error {
	if v < lo || v > hi {
		return invalid(field, "range", "must be between %d and %d", lo, hi)
	}
	return nil
}
