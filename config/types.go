package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written in YAML as a Go duration string
// ("30s", "1h30m", "0s"). A bare number other than 0 is rejected: "30" is
// ambiguous (seconds? nanoseconds?) and has bitten operators before.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String returns the Go duration syntax, e.g. "1h30m0s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the duration as its Go string so that a marshalled
// config can be decoded again.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalYAML decodes a scalar duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("must be a duration such as 30s or 1h30m")
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ParseDuration parses s as a Go duration string ("30s", "1h30m"). Negative
// values parse; Validate decides where they are allowed.
func ParseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, errors.New("invalid duration (want e.g. 30s, 1h30m)")
	}
	return Duration(v), nil
}

// ByteSize is a number of bytes written in YAML as an integer with an
// optional unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB
// (powers of 1024), e.g. 1024, 16KiB, 10MB, 512MiB. Units are matched
// case-insensitively; an optional single space between number and unit is
// allowed. Fractions and negative values are rejected.
type ByteSize int64

// Int64 returns the size in bytes.
func (b ByteSize) Int64() int64 { return int64(b) }

// String renders the size with the largest binary unit that divides it
// exactly, so 536870912 prints as "512MiB".
func (b ByteSize) String() string {
	v := int64(b)
	for _, u := range []struct {
		name string
		mul  int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if v != 0 && v%u.mul == 0 {
			return strconv.FormatInt(v/u.mul, 10) + u.name
		}
	}
	return strconv.FormatInt(v, 10)
}

// MarshalText writes the size in the form String returns.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalYAML decodes a scalar size.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("must be a size such as 1024, 16KiB or 512MiB")
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

var byteUnits = map[string]int64{
	"":    1,
	"b":   1,
	"kb":  1000,
	"mb":  1000 * 1000,
	"gb":  1000 * 1000 * 1000,
	"tb":  1000 * 1000 * 1000 * 1000,
	"kib": 1 << 10,
	"mib": 1 << 20,
	"gib": 1 << 30,
	"tib": 1 << 40,
}

// errBadSize is the one message for every malformed size so that the error
// text does not depend on which check tripped first.
var errBadSize = errors.New("invalid size (want e.g. 1024, 16KiB, 10MB, 512MiB)")

// ParseByteSize parses s as described on ByteSize.
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || i > 19 {
		return 0, errBadSize
	}
	num, unit := s[:i], s[i:]
	if strings.HasPrefix(unit, " ") {
		unit = unit[1:]
	}
	mul, ok := byteUnits[strings.ToLower(unit)]
	if !ok {
		return 0, errBadSize
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, errBadSize
	}
	if n > math.MaxInt64/mul {
		return 0, errors.New("size too large")
	}
	return ByteSize(n * mul), nil
}

// redacted is what every printing path of a Secret shows.
const redacted = "[redacted]"

// Secret holds a credential read from the config or from a *_file. Every
// way of printing it (fmt verbs, %#v, slog, JSON, YAML, text marshalling)
// shows "[redacted]" so that a logged or dumped config never leaks it; only
// Reveal returns the value. The zero Secret is empty.
type Secret struct {
	v string
}

// NewSecret wraps v; used by cmd and tests that build a Config in code.
func NewSecret(v string) Secret { return Secret{v: v} }

// Reveal returns the secret value. Call it only where the value is used.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether no secret is set.
func (s Secret) IsZero() bool { return s.v == "" }

// Len returns the length of the secret in bytes.
func (s Secret) Len() int { return len(s.v) }

// String implements fmt.Stringer and never returns the value.
func (s Secret) String() string {
	if s.v == "" {
		return ""
	}
	return redacted
}

// GoString covers %#v, which does not use String.
func (s Secret) GoString() string { return "config.Secret(" + strconv.Quote(s.String()) + ")" }

// Format covers every fmt verb, including %x and %q, which would otherwise
// print struct fields directly.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(s.GoString()))
		return
	}
	_, _ = f.Write([]byte(s.String()))
}

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText implements encoding.TextMarshaler (used by encoding/json).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalYAML keeps yaml.Marshal from writing the value.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// UnmarshalYAML decodes a scalar string. The error never contains the value.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("must be a string")
	}
	s.v = n.Value
	return nil
}
