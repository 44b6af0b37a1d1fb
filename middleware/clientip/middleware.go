package clientip

import (
	"net"
	"net/netip"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/valyala/fasthttp"
)

// Middleware resolves the client address of every request and stores it in
// reqstate.State.ClientIP. It never writes a response. The proxy, not this
// step, removes inbound forwarding headers before forwarding upstream.
func Middleware(o Options) (func(fasthttp.RequestHandler) fasthttp.RequestHandler, error) {
	r, err := New(o)
	if err != nil {
		return nil, err
	}
	name := r.header.Name()
	return func(next fasthttp.RequestHandler) fasthttp.RequestHandler {
		return func(ctx *fasthttp.RequestCtx) {
			reqstate.Get(ctx).ClientIP = r.ResolveRequest(ctx, name)
			next(ctx)
		}
	}, nil
}

// ResolveRequest resolves the client address of ctx; name is the header
// name (r.Header().Name()).
func (r *Resolver) ResolveRequest(ctx *fasthttp.RequestCtx, name string) netip.Addr {
	peer := peerAddr(ctx.RemoteAddr())
	if name == "" || !r.Trusted(peer) {
		return peer.Unmap()
	}
	// PeekAll: several field lines form one list (RFC 9110 §5.3); Peek
	// would return only the first, the one furthest from us.
	return r.Resolve(peer, ctx.Request.Header.PeekAll(name))
}

func peerAddr(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(t.IP)
		return ip.Unmap()
	}
	// Non-TCP listeners (in-memory, unix sockets) have no IP: the zero
	// Addr is "unknown", never trusted.
	return netip.Addr{}
}
