package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// TLSOptions configures HTTPS termination.
type TLSOptions struct {
	// CertFile and KeyFile are PEM files; both required. They are re-read
	// when their contents change; a pair that fails to load is logged and
	// the previous certificate keeps serving.
	CertFile, KeyFile string
	// ReloadInterval is how often the files are checked (zero: 5s). Polling
	// rather than inotify survives the symlink swaps Kubernetes secrets use.
	ReloadInterval time.Duration
}

type certReloader struct {
	opts TLSOptions
	log  *slog.Logger
	cert atomic.Pointer[tls.Certificate]
	last []byte // cert||key bytes of the loaded pair

	stopOnce  sync.Once
	startOnce sync.Once
	quit      chan struct{}
	done      chan struct{}
}

func newCertReloader(opts TLSOptions, log *slog.Logger) (*certReloader, error) {
	if opts.CertFile == "" || opts.KeyFile == "" {
		return nil, errors.New("proxy: tls: cert_file and key_file are required")
	}
	setDefault(&opts.ReloadInterval, 5*time.Second)
	c := &certReloader{opts: opts, log: log, quit: make(chan struct{}), done: make(chan struct{})}
	if _, err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// reload loads the pair if the files changed; it reports whether it did.
func (c *certReloader) reload() (bool, error) {
	certPEM, err := os.ReadFile(c.opts.CertFile)
	if err != nil {
		return false, fmt.Errorf("proxy: tls: read cert: %w", err)
	}
	keyPEM, err := os.ReadFile(c.opts.KeyFile)
	if err != nil {
		return false, fmt.Errorf("proxy: tls: read key: %w", err)
	}
	both := append(certPEM, keyPEM...)
	if bytes.Equal(both, c.last) {
		return false, nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("proxy: tls: load key pair: %w", err)
	}
	c.cert.Store(&pair)
	c.last = both
	return true, nil
}

func (c *certReloader) start() {
	c.startOnce.Do(func() {
		go func() {
			defer close(c.done)
			t := time.NewTicker(c.opts.ReloadInterval)
			defer t.Stop()
			for {
				select {
				case <-c.quit:
					return
				case <-t.C:
					changed, err := c.reload()
					switch {
					case err != nil:
						c.log.LogAttrs(context.Background(), slog.LevelError, "tls certificate reload failed; keeping the previous one", slog.String("error", err.Error()))
					case changed:
						c.log.LogAttrs(context.Background(), slog.LevelInfo, "tls certificate reloaded", slog.String("cert_file", c.opts.CertFile))
					}
				}
			}
		}()
	})
}

func (c *certReloader) stop() {
	c.stopOnce.Do(func() {
		close(c.quit)
		c.startOnce.Do(func() { close(c.done) }) // never started: nothing to wait for
		<-c.done
	})
}

// connInfo is what the server remembers about a TLS connection.
type connInfo struct {
	hello *tls.ClientHelloInfo
	tag   string
}

func (s *Server) tlsConfig() *tls.Config {
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.certs.cert.Load(), nil
		},
	}
	// GetConfigForClient, not GetCertificate: it runs for every
	// ClientHello, including resumed TLS 1.3 sessions, which never ask for
	// a certificate.
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if hello.Conn != nil {
			ci := &connInfo{hello: hello}
			if s.opts.OnClientHello != nil {
				ci.tag = s.opts.OnClientHello(hello)
			}
			s.hellos.Store(hello.Conn, ci)
		}
		return nil, nil // nil: use base
	}
	return base
}

func (s *Server) connInfo(ctx *fasthttp.RequestCtx) *connInfo {
	tc, ok := ctx.Conn().(*tls.Conn)
	if !ok {
		return nil
	}
	v, ok := s.hellos.Load(tc.NetConn())
	if !ok {
		return nil
	}
	return v.(*connInfo)
}

// ClientHello returns the TLS ClientHello of the connection ctx arrived on,
// or nil for plain HTTP. Kept per connection (keyed by the raw net.Conn) and
// dropped when it closes. Do not modify or keep the result past the handler.
func (s *Server) ClientHello(ctx *fasthttp.RequestCtx) *tls.ClientHelloInfo {
	if ci := s.connInfo(ctx); ci != nil {
		return ci.hello
	}
	return nil
}

// ConnTag returns what Options.OnClientHello returned for the connection
// ctx arrived on, "" for plain HTTP or without a hook.
func (s *Server) ConnTag(ctx *fasthttp.RequestCtx) string {
	if ci := s.connInfo(ctx); ci != nil {
		return ci.tag
	}
	return ""
}
