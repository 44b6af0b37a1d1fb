package session

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

var million = flag.Bool("session.million", false, "hold 1,000,000 sessions in the memory store and report RSS (needs ~4 GiB)")

// TestMillionSessions holds many typical sessions (four groups, two
// claims, a 900-byte ID token, a refresh token: ~1.3 KiB encoded) within a
// budget sized for them, checks every one stays live and reports the
// process RSS. By default it holds 20,000 (a second); the million needs
// gigabytes, so it is behind a flag:
//
//	go test -run MillionSessions -session.million ./middleware/session/
func TestMillionSessions(t *testing.T) {
	n := 20_000
	if *million {
		n = 1_000_000
	}
	now := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	proto := typicalSession()
	proto.CreatedAt, proto.LastSeen, proto.ExpiresAt = now, now, now.Add(12*time.Hour)
	cost := sessionCost(proto)
	budget := int64(n) * cost * 11 / 10
	m, err := NewMemoryStore(MemoryOptions{Budget: budget, IdleTimeout: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	rssBefore := rss(t)
	start := time.Now()
	for i := range n {
		s := *proto
		s.ID = NewID()
		s.Subject = fmt.Sprintf("user-%07d", i)
		s.Email = s.Subject + "@example.com"
		s.SID = fmt.Sprintf("sid-%07d", i)
		// Give every record its own bytes, as a login or a restore does.
		rec, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		c := new(Session)
		if err := c.UnmarshalBinary(rec); err != nil {
			t.Fatal(err)
		}
		if _, err := m.put(c, false); err != nil {
			t.Fatal(err)
		}
	}
	m.cache.Wait()
	elapsed := time.Since(start)
	live := 0
	m.mu.Lock()
	for _, ids := range m.bySub {
		live += len(ids)
	}
	m.mu.Unlock()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rssAfter := rss(t)
	t.Logf("%d sessions held (record cost %d B, budget %d MiB, filled in %v); RSS %d MiB (before %d MiB), Go heap in use %d MiB",
		live, cost, budget>>20, elapsed.Round(time.Second), rssAfter>>20, rssBefore>>20, ms.HeapInuse>>20)
	if live != n {
		t.Errorf("%d sessions live, want %d within a budget sized for them", live, n)
	}
}

func rss(t *testing.T) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}
