package replay_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/middleware/risk"
	"github.com/edgeauth/edgeauth/middleware/risk/geoip"
	"github.com/edgeauth/edgeauth/middleware/risk/geoip/geoiptest"
	"github.com/edgeauth/edgeauth/middleware/risk/replay"
	"github.com/google/go-cmp/cmp"
)

func newOptions(t testing.TB) replay.Options {
	t.Helper()
	dir := t.TempDir()
	city := filepath.Join(dir, "city.mmdb")
	if err := geoiptest.WriteCity(city, "", geoiptest.StandardCity); err != nil {
		t.Fatal(err)
	}
	loc, err := geoip.New(geoip.Options{CityPath: city, PollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := risk.NewEngine(risk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := risk.NewService(risk.ServiceOptions{Engine: eng, Locator: loc, Store: replay.NewMemoryStore(), NotFound: replay.ErrNotFound, L1MaxBytes: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return replay.Options{Service: svc, Routes: map[string]risk.Thresholds{"admin": {StepUpAt: 20}}, ProgressEvery: -1}
}

const ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"

func TestRunSarah(t *testing.T) {
	t.Parallel()
	in := strings.Join([]string{
		`{"time":"2026-08-17T09:00:00Z","sub":"sarah","ip":"81.2.69.142","user_agent":"` + ua + `","device_id":"laptop","event":"login","label":"legit"}`,
		`{"time":"2026-08-17T09:05:00Z","sub":"sarah","ip":"81.2.69.142","user_agent":"` + ua + `","device_id":"laptop","label":"legit"}`,
		`not json at all`,
		`{"time":"yesterday","sub":"sarah","ip":"81.2.69.142"}`,
		``,
		`{"time":"2026-08-17T09:10:00Z","sub":"sarah","ip":"175.16.199.0","user_agent":"curl/8","label":"attack"}`,
		`{"time":"2026-08-17T09:11:00Z","sub":"sarah","ip":"10.1.2.3","user_agent":"` + ua + `","device_id":"laptop","route":"admin"}`,
		`{"time":"2026-08-17T09:12:00Z","sub":"sarah","ip":"81.2.69.142","event":"logout"}`,
	}, "\n")
	var out, errb bytes.Buffer
	st, err := replay.Run(context.Background(), newOptions(t), strings.NewReader(in), &out, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if st.Events != 4 || st.Malformed != 3 {
		t.Fatalf("stats %+v", st)
	}
	for _, want := range []string{"line 3: not a JSON object", "line 4: time:", "line 8: unknown event"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errb.String())
		}
	}
	type row struct {
		Label    string          `json:"label"`
		Score    int             `json:"score"`
		Reasons  []string        `json:"reasons"`
		Decision string          `json:"decision"`
		Location json.RawMessage `json:"location"`
	}
	var got []row
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var r row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("output is not JSON: %v: %s", err, sc.Text())
		}
		got = append(got, r)
	}
	want := []row{
		{Label: "legit", Score: 0, Reasons: []string{"initial_login"}, Decision: "allow", Location: json.RawMessage(`{"country":"GB","city":"London","lat":51.5142,"lon":-0.0931}`)},
		{Label: "legit", Score: 0, Reasons: []string{}, Decision: "allow", Location: json.RawMessage(`{"country":"GB","city":"London","lat":51.5142,"lon":-0.0931}`)},
		{Label: "attack", Score: 150, Reasons: []string{"new_device", "new_country", "impossible_travel"}, Decision: "step_up", Location: json.RawMessage(`{"country":"CN","city":"Changchun","lat":43.88,"lon":125.3228}`)},
		{Score: 0, Reasons: []string{"unknown_location"}, Decision: "allow", Location: json.RawMessage(`null`)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestRunProgressAndCancel(t *testing.T) {
	t.Parallel()
	o := newOptions(t)
	o.ProgressEvery = 10
	var in strings.Builder
	for i := range 25 {
		fmt.Fprintf(&in, `{"time":"2026-08-17T09:%02d:00Z","sub":"u%d","ip":"89.160.20.112"}`+"\n", i, i%3)
	}
	var errb bytes.Buffer
	if _, err := replay.Run(context.Background(), o, strings.NewReader(in.String()), io.Discard, &errb); err != nil {
		t.Fatal(err)
	}
	if c := strings.Count(errb.String(), "replay: 1") + strings.Count(errb.String(), "replay: 2"); c != 2 {
		t.Fatalf("progress lines: %q", errb.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	big := strings.Repeat(`{"time":"2026-08-17T09:00:00Z","sub":"u","ip":"89.160.20.112"}`+"\n", 2048)
	if _, err := replay.Run(ctx, o, strings.NewReader(big), io.Discard, io.Discard); err == nil {
		t.Fatal("cancelled run succeeded")
	}
}

func FuzzReplayLine(f *testing.F) {
	f.Add(`{"time":"2026-08-17T09:00:00Z","sub":"s","ip":"81.2.69.142","event":"login","device_id":"x"}`)
	f.Add(`{"time":"2026-08-17T09:00:00Z","sub":"s","ip":"::1"}`)
	f.Add(`{}`)
	o := newOptions(f)
	f.Fuzz(func(t *testing.T, line string) {
		var out bytes.Buffer
		st, err := replay.Run(context.Background(), o, strings.NewReader(line), &out, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(&out)
		for sc.Scan() {
			if !json.Valid(sc.Bytes()) {
				t.Fatalf("invalid output %q", sc.Text())
			}
		}
		_ = st
	})
}

func BenchmarkReplay(b *testing.B) {
	o := newOptions(b)
	var in bytes.Buffer
	ips := []string{"81.2.69.142", "89.160.20.112", "216.160.83.56", "175.16.199.0"}
	t0 := time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC)
	for i := range 10000 {
		ev := "request"
		if i%50 == 0 {
			ev = "login"
		}
		fmt.Fprintf(&in, `{"time":%q,"sub":"user%d","ip":%q,"user_agent":%q,"device_id":"d%d","event":%q,"label":"legit"}`+"\n",
			t0.Add(time.Duration(i)*time.Minute).Format(time.RFC3339), i%500, ips[(i/500)%4], ua, i%500, ev)
	}
	data := in.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := replay.Run(context.Background(), o, bytes.NewReader(data), io.Discard, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*10000), "ns/event")
}
