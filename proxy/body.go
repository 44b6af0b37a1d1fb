package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// errBodyTooLarge is returned by a request body read that passes the
// route's limit. fasthttp checks Content-Length up front but does not limit
// a chunked stream at all, so bodyIn does.
var errBodyTooLarge = fmt.Errorf("proxy: request body over the route limit: %w", fasthttp.ErrBodyTooLarge)

// bodyIn wraps a streamed request body. It counts bytes for the access
// log, enforces the route's body limit on every framing, and moves the
// client connection's read deadline on each read so that Options.ReadTimeout
// bounds a pause, not the whole upload. It lives in the pooled exchange and
// is used only while the route handler runs.
type bodyIn struct {
	ctx     *fasthttp.RequestCtx
	r       io.Reader
	n       int64
	limit   int64
	clock   *coarseClock
	timeout time.Duration
	lastSet int64 // unix nanos of the last deadline update
}

func (b *bodyIn) Read(p []byte) (int, error) {
	if left := b.limit - b.n; int64(len(p)) > left+1 {
		// Read at most one byte past the limit: enough to know it is passed.
		p = p[:left+1]
	}
	if b.timeout > 0 && b.clock.due(b.lastSet, b.timeout) {
		now := time.Now()
		_ = b.ctx.SetReadDeadline(now.Add(b.timeout))
		b.lastSet = now.UnixNano()
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.n > b.limit {
		return 0, errBodyTooLarge
	}
	if err != nil && err != io.EOF {
		err = &clientBodyError{err: err}
	}
	return n, err
}

// clientBodyError marks a failure to read the client's body, so that a
// forwarding error it causes is blamed on the client (408/400), not on the
// upstream (502/504). It deliberately has no Timeout method: fasthttp's
// client would turn it into its own ErrTimeout.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "proxy: read request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

// bodyOut wraps a streamed response body on its way to the client. It
// counts bytes, moves the client connection's write deadline on each read
// (the server writes what was just read), and on close releases the
// upstream side and emits the deferred access line. fasthttp closes it after
// writing the body or when the response is reset, whichever comes first.
type bodyOut struct {
	ex      *exchange
	ctx     *fasthttp.RequestCtx
	r       io.Reader
	n       int64
	clock   *coarseClock
	timeout time.Duration
	lastSet int64
	// conn, when set, is an upstream connection used for this response only
	// (a refused upgrade); it is closed with the body.
	conn   net.Conn
	active bool
	closed bool
}

func (b *bodyOut) Read(p []byte) (int, error) {
	if b.closed {
		return 0, io.ErrClosedPipe
	}
	if b.timeout > 0 && b.clock.due(b.lastSet, b.timeout) {
		now := time.Now()
		_ = b.ctx.SetWriteDeadline(now.Add(b.timeout))
		b.lastSet = now.UnixNano()
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	return n, err
}

// CloseWithError implements fasthttp.ReadCloserWithError, so a failed write
// to the client is passed on and the upstream connection is not pooled.
func (b *bodyOut) CloseWithError(werr error) error {
	if b.closed {
		return nil
	}
	b.closed = true
	var err error
	if c, ok := b.r.(fasthttp.ReadCloserWithError); ok {
		err = c.CloseWithError(werr)
	} else if c, ok := b.r.(io.Closer); ok {
		err = c.Close()
	}
	if b.ex.upResp != nil {
		// The stream is closed already; this only drops the reference.
		_ = b.ex.upResp.CloseBodyStream()
	}
	if b.conn != nil {
		err = errors.Join(err, b.conn.Close())
		b.conn = nil
	}
	b.r, b.ctx = nil, nil
	if b.ex.handedOff {
		b.ex.finishDeferred()
	}
	return err
}
