package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// revocation is the pub/sub message every instance acts on. It is JSON:
// revocations are rare and operators may want to read them with
// redis-cli SUBSCRIBE. At is set (UnixNano) only for a subject revocation.
type revocation struct {
	V   int      `json:"v"`
	IDs []string `json:"ids,omitempty"`
	Iss string   `json:"iss,omitempty"`
	Sub string   `json:"sub,omitempty"`
	At  int64    `json:"at,omitempty"`
	// Origin is the sending instance; it skips its own echo.
	Origin string `json:"o,omitempty"`
}

const (
	revocationVersion = 1
	// maxRevocationMsg bounds a message: 100k session ids of 43 bytes.
	maxRevocationMsg = 5 << 20
)

func (r revocation) encode() []byte {
	r.V = revocationVersion
	b, _ := json.Marshal(r) // strings and ints only: cannot fail
	return b
}

// decodeRevocation parses a message from the channel. Anyone who can
// publish on Redis can send one, so it is bounded and validated; a message
// this version does not understand is refused rather than half-applied.
func decodeRevocation(b []byte) (revocation, error) {
	var r revocation
	if len(b) > maxRevocationMsg {
		return r, fmt.Errorf("redisstore: revocation message of %d bytes", len(b))
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return revocation{}, fmt.Errorf("redisstore: revocation message: %w", err)
	}
	if r.V != revocationVersion {
		return revocation{}, fmt.Errorf("redisstore: revocation message version %d", r.V)
	}
	if r.At < 0 {
		return revocation{}, errors.New("redisstore: revocation message with negative time")
	}
	if len(r.IDs) == 0 && r.At == 0 {
		return revocation{}, errors.New("redisstore: empty revocation message")
	}
	return r, nil
}

// listen applies revocations from other instances (and echoes of our own,
// which are idempotent) until Close. go-redis reconnects and resubscribes
// by itself; each confirmation after the first means messages may have been
// lost while disconnected, so L1 is flushed and cached negative subject
// lookups are forgotten: the next request of every session asks Redis.
func (s *Store) listen(ch <-chan any) {
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *redis.Message:
				r, err := decodeRevocation([]byte(m.Payload))
				if err != nil {
					s.log.LogAttrs(context.Background(), slog.LevelError, "redisstore: ignoring revocation message",
						slog.String("error", err.Error()), slog.Int("bytes", len(m.Payload)))
					continue
				}
				if r.Origin == s.origin {
					continue
				}
				s.stats.revReceived.Add(1)
				s.apply(r, nil)
			case *redis.Subscription:
				if m.Kind != "subscribe" {
					continue
				}
				s.stats.resubscribes.Add(1)
				s.flush()
				s.log.LogAttrs(context.Background(), slog.LevelWarn,
					"redisstore: revocation channel resubscribed; L1 flushed in case revocations were missed")
			}
		}
	}
}

// flush forgets everything that a missed revocation could have made wrong.
func (s *Store) flush() {
	s.epoch.Add(1)
	s.l1.Clear()
	s.revMu.Lock()
	for k, v := range s.revoked {
		if v.at.IsZero() {
			delete(s.revoked, k)
		} else {
			v.checked = v.checked.Add(-s.opts.L1TTL) // re-ask Redis for a newer time
			s.revoked[k] = v
		}
	}
	s.revMu.Unlock()
}
