// Package bench holds what edgeauth is measured against and the Go
// benchmarks that compare it in-process.
//
// RefHandler is the reference proxy: the smallest reasonable fasthttp
// forwarder, one HostClient with keep-alive and nothing else. NewRefServer
// wraps it in a fasthttp.Server, optionally with the transport settings
// edgeauth's proxy uses (RefOptions), so a gap between edgeauth and the
// reference can be split into "fasthttp settings" and "edgeauth's own
// code". The bench/refproxy process the load harness (bench/load) drives
// and the in-process benchmarks in this package share this code.
//
// Trust boundary: none. This code forwards anything to one fixed loopback
// upstream and exists only for measurement; it is never part of the
// edgeauth binary.
package bench

import (
	"time"

	"github.com/valyala/fasthttp"
)

// RefHandler forwards every request to client and copies the response back.
// It drops Connection in both directions so a client's "close" does not
// close the pooled upstream connection and an upstream's does not close the
// client's.
func RefHandler(client *fasthttp.HostClient) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		req, resp := &ctx.Request, &ctx.Response
		req.Header.Del("Connection")
		if err := client.Do(req, resp); err != nil {
			ctx.Error("bad gateway", fasthttp.StatusBadGateway)
			return
		}
		resp.Header.Del("Connection")
	}
}

// RefOptions turns on, one by one, the fasthttp settings edgeauth's proxy
// package uses (proxy/server.go, proxy/forward.go as of this writing). The
// zero value is the bare reference proxy.
type RefOptions struct {
	// Stream sets StreamRequestBody on the server and StreamResponseBody on
	// the client, as edgeauth must for 1 GiB bodies. Zero: both buffered.
	Stream bool
	// Timeouts sets edgeauth's default deadlines: server read 10s, write
	// 60s, idle 90s; upstream read and write 30s, idle 90s. Each costs a
	// SetDeadline (a runtime timer update) per request. Zero: none.
	Timeouts bool
	// ReadBufferSize of the server's connections; edgeauth uses its
	// max_header_bytes (16 KiB). Zero: fasthttp's 4 KiB.
	ReadBufferSize int
}

// NewRefServer returns the reference proxy forwarding to upstream
// (host:port) with opts applied.
func NewRefServer(upstream string, opts RefOptions) *fasthttp.Server {
	client := &fasthttp.HostClient{Addr: upstream, MaxConns: 1024, StreamResponseBody: opts.Stream}
	s := &fasthttp.Server{Handler: RefHandler(client), Name: "refproxy", StreamRequestBody: opts.Stream, ReadBufferSize: opts.ReadBufferSize}
	if opts.Timeouts {
		s.ReadTimeout, s.WriteTimeout, s.IdleTimeout = 10*time.Second, 60*time.Second, 90*time.Second
		client.ReadTimeout, client.WriteTimeout, client.MaxIdleConnDuration = 30*time.Second, 30*time.Second, 90*time.Second
	}
	return s
}
