package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/internal/e2etest"
)

// Editing the config file (no signal) reloads it, and requests in flight
// while it does are not dropped: a bounded load on a public route runs
// through five file-change reloads with zero failed requests.
func TestConfigFileChangeReloadsUnderLoad(t *testing.T) {
	t.Parallel()
	s := e2etest.StartStack(t, e2etest.DefaultConfig)
	withDocs := func(i int) string {
		return s.Render(t, strings.Replace(e2etest.DefaultConfig, "  - name: app\n", fmt.Sprintf(`  - name: docs
    path: /docs%d/
    upstream: "{{.Upstream}}"
    auth: none
  - name: app
`, i), 1))
	}

	base := s.Edgeauth.URL // WriteConfig rewrites the Edgeauth fields; read them once
	var sent, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			c := e2etest.NewClient(t)
			deadline := time.Now().Add(30 * time.Second) // bound even if stop never comes
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(base + "/public/x")
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
			}
		})
	}
	anon := e2etest.NewClient(t)
	for i := range 5 {
		s.Edgeauth.WriteConfig(t, withDocs(i)) // a rename, as editors and ConfigMaps do
		e2etest.Eventually(t, 10*time.Second, fmt.Sprintf("reload %d applied from the file change", i), func() bool {
			resp, _ := e2etest.Navigate(t, anon, fmt.Sprintf("%s/docs%d/x", base, i), nil)
			return resp.StatusCode == http.StatusOK
		})
	}
	close(stop)
	wg.Wait()
	if sent.Load() == 0 || failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during reloads", failed.Load(), sent.Load())
	}
	t.Logf("%d requests, 0 failed, through 5 reloads", sent.Load())
}
