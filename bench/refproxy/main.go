// Command refproxy is the reference point edgeauth is measured against: the
// smallest reasonable fasthttp reverse proxy, one HostClient with keep-alive
// and nothing else. If edgeauth with no auth is much slower than this, the
// difference is ours to explain.
package main

import (
	"flag"
	"log"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18081", "listen address")
	upstream := flag.String("upstream", "127.0.0.1:18080", "upstream address")
	flag.Parse()

	client := &fasthttp.HostClient{Addr: *upstream, MaxConns: 1024}
	handler := func(ctx *fasthttp.RequestCtx) {
		req, resp := &ctx.Request, &ctx.Response
		req.Header.Del("Connection")
		if err := client.Do(req, resp); err != nil {
			ctx.Error("bad gateway", fasthttp.StatusBadGateway)
			return
		}
		resp.Header.Del("Connection")
	}
	server := &fasthttp.Server{Handler: handler, Name: "refproxy"}
	log.Fatal(server.ListenAndServe(*listen))
}
