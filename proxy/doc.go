// Package proxy is edgeauth's front end: the listener (HTTP or HTTPS with
// reloading certificates), the route table, the reserved /.edgeauth/ mux,
// upstream forwarding with header hygiene, and the admin listener.
//
// Contract: everything that arrives from a client is untrusted. The proxy
// rejects ambiguous framing (RFC 9112 §6.3) before any handler runs, picks the
// route from the request's authority (see Server for the one rule), strips
// hop-by-hop headers (RFC 9110 §7.6.1) and replaces X-Forwarded-*/Forwarded
// unless the TCP peer is a configured trusted proxy, in which case it appends.
// It never imports middleware/* or config: callers hand it a handler per
// route (RoutesConfig.Wrap) and fill Options from their own config types.
//
// Bodies stream both ways. The per-route body limit follows the normalised
// path for every framing (fasthttp itself does not limit chunked bodies);
// timeouts bound pauses, not whole transfers (see Options.ReadTimeout).
// Upgrade requests get a dedicated upstream connection: a 101 turns the
// client connection into a tunnel with an idle timeout that Shutdown
// closes; any other answer is relayed as a normal response and the client
// connection stays HTTP. Access lines carry the body bytes actually passed
// (0 without a body); a streamed response is logged once it has been sent.
//
// Layers: table.go and framing.go are a pure core without fasthttp; the rest
// adapts them to fasthttp.
package proxy
