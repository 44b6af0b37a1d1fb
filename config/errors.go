package config

import (
	"errors"
	"sort"
	"strconv"
	"strings"
)

// FieldError is one problem with one key. Load, Parse and Validate return
// errors.Join of these; use errors.As or Problems to get them back.
type FieldError struct {
	// Path is the key path, e.g. "routes[2].upstream".
	Path string
	// Value is the offending value as written, or "" when printing it
	// would not help or could leak a secret.
	Value string
	// Problem says what is wrong.
	Problem string
	// Line is the 1-based line in the file; 0 when unknown (a Config
	// built in code).
	Line int
}

// Error renders `path: "value": problem (line N)`.
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	b.WriteString(": ")
	if e.Value != "" {
		b.WriteString(strconv.Quote(truncate(e.Value, 200)))
		b.WriteString(": ")
	}
	b.WriteString(e.Problem)
	if e.Line > 0 {
		b.WriteString(" (line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(")")
	}
	return b.String()
}

// Problems returns the FieldErrors inside err (as returned by Load, Parse
// or Validate), in order. Errors that are not about one key (file too
// large, syntax errors) are not included.
func Problems(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if fe, ok := err.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		walk(errors.Unwrap(err))
	}
	walk(err)
	return out
}

// joinSorted orders problems by line (stable, so problems on one line keep
// the order they were found in) and joins them. It returns nil for none.
func joinSorted(errs []*FieldError) error {
	if len(errs) == 0 {
		return nil
	}
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}
