// Command upstream is the app behind the proxies in the load harness: it
// answers every request with a small fixed body, as cheaply as fasthttp can,
// so the measurements show the proxies and not the app.
package main

import (
	"flag"
	"log"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18080", "listen address")
	size := flag.Int("size", 64, "response body bytes")
	flag.Parse()
	body := make([]byte, *size)
	for i := range body {
		body[i] = 'x'
	}
	handler := func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/plain")
		ctx.SetBody(body)
	}
	server := &fasthttp.Server{Handler: handler, Name: "upstream"}
	log.Fatal(server.ListenAndServe(*listen))
}
