// Command refproxy is the reference point edgeauth is measured against: the
// smallest reasonable fasthttp reverse proxy (bench.RefHandler), one
// HostClient with keep-alive and nothing else. If edgeauth with no auth is
// much slower than this, the difference is ours to explain; the flags add
// edgeauth's fasthttp settings one by one to tell how much of it is theirs.
package main

import (
	"flag"
	"log"
	"net/http"
	_ "net/http/pprof" // only with -pprof, on its own listener
	"strings"

	"github.com/edgeauth/edgeauth/bench"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18081", "listen address")
	upstream := flag.String("upstream", "127.0.0.1:18080", "upstream address")
	pprofAddr := flag.String("pprof", "", "serve /debug/pprof/ on this loopback address, to profile the reference as edgeauth is (empty: off)")
	var o bench.RefOptions
	flag.BoolVar(&o.Stream, "stream", false, "stream request and response bodies as edgeauth does")
	flag.BoolVar(&o.Timeouts, "timeouts", false, "set edgeauth's default server and upstream deadlines")
	flag.IntVar(&o.ReadBufferSize, "read-buffer", 0, "server read buffer bytes (edgeauth: 16384; 0: fasthttp default)")
	flag.Parse()
	if *pprofAddr != "" {
		if !strings.HasPrefix(*pprofAddr, "127.0.0.1:") {
			log.Fatal("refproxy: -pprof must be a 127.0.0.1 address")
		}
		go func() { log.Fatal(http.ListenAndServe(*pprofAddr, nil)) }()
	}
	log.Fatal(bench.NewRefServer(*upstream, o).ListenAndServe(*listen))
}
