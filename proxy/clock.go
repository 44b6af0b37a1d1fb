package proxy

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// refreshDivisor throttles deadline updates: a deadline is moved only when
// an eighth of its timeout has passed since it was last set, so a streamed
// body costs a few deadline updates per timeout period rather than one per
// read, and the effective idle bound stays between 7/8 and 8/8 of it.
const refreshDivisor = 8

// clockTick is how often the coarse clock moves.
const clockTick = 50 * time.Millisecond

// minCoarseTimeout is the shortest timeout whose deadline bookkeeping may
// use the coarse clock. A refresh then comes up to a tick or two late,
// which shortens the effective bound by at most about 1/8 of it; shorter
// timeouts read the real clock.
const minCoarseTimeout = 16 * clockTick

// coarseClock is unix nanoseconds refreshed every clockTick by one
// goroutine and read with an atomic load. Every read and write of every
// proxied body asks "has an eighth of the timeout passed since this
// deadline last moved?"; answered with the real clock, that was four of
// the thirteen clock reads per small proxied request, and on the virtual
// machines edgeauth runs on a clock read is not free (47 ns in a tight
// loop, several times that in a profile of the proxy under load).
// Timeouts are seconds, so a 50 ms resolution is plenty; the moment a
// deadline actually moves still reads the real clock.
//
// A nil *coarseClock reads the real clock: the forwarder used without a
// Server (tests) needs no goroutine.
type coarseClock struct {
	now       atomic.Int64
	done      chan struct{}
	startOnce sync.Once
	stopOnce  sync.Once
}

func newCoarseClock() *coarseClock {
	c := &coarseClock{done: make(chan struct{})}
	c.now.Store(time.Now().UnixNano())
	return c
}

// start runs the ticking goroutine; it is a no-op after the first call
// and after stop.
func (c *coarseClock) start() {
	c.startOnce.Do(func() {
		c.now.Store(time.Now().UnixNano())
		go c.run()
	})
}

func (c *coarseClock) stop() { c.stopOnce.Do(func() { close(c.done) }) }

func (c *coarseClock) run() {
	t := time.NewTicker(clockTick)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			c.now.Store(time.Now().UnixNano())
		}
	}
}

// nanos returns the coarse time, or the real one for a nil clock.
func (c *coarseClock) nanos() int64 {
	if c == nil {
		return time.Now().UnixNano()
	}
	return c.now.Load()
}

// due reports whether a deadline of timeout, last moved at last (unix
// nanos), should move now: an eighth of timeout has passed. Deadlines thus
// move a few times per timeout period rather than on every read, and the
// effective bound stays between 7/8 and all of timeout.
func (c *coarseClock) due(last int64, timeout time.Duration) bool {
	var now int64
	if c == nil || timeout < minCoarseTimeout {
		now = time.Now().UnixNano()
	} else {
		now = c.now.Load()
	}
	return now-last > int64(timeout/refreshDivisor)
}

// wasStale reports whether err is a deadline expiry that a stale coarse
// clock may have caused: after the process was paused (SIGSTOP, a frozen
// container or VM) longer than a timeout, the first reads and writes see
// the coarse time from before the pause, so deadlines that passed during
// it are not moved. A real expiry happens while the clock ticks; this one
// finds the coarse time more than a few ticks behind.
func (c *coarseClock) wasStale(err error) bool {
	if c == nil || err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	return time.Now().UnixNano()-c.now.Load() > int64(4*clockTick)
}
