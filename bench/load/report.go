package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// median of xs (the mean of the middle two for an even count); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func medianDuration(ds []time.Duration) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return time.Duration(median(xs))
}

// summary is one target's medians over the rounds.
type summary struct {
	Name     string
	RPS      float64
	P50, P99 time.Duration
	Rounds   []float64 // req/s per round, in run order
	Errors   int       // summed over rounds
	Non2xx   int       // of Errors, answers that were not 2xx/3xx
	// CPU is the median CPU time per request of the target's server
	// process (0: not measured).
	CPU time.Duration
}

func summarize(name string, rs []wrkResult) summary {
	s := summary{Name: name}
	var p50, p99, cpu []time.Duration
	for _, r := range rs {
		if r.CPUPerReq > 0 {
			cpu = append(cpu, r.CPUPerReq)
		}
		s.Rounds = append(s.Rounds, r.RequestsPerSec)
		p50 = append(p50, r.P50)
		p99 = append(p99, r.P99)
		s.Errors += r.Errors
		s.Non2xx += r.Non2xx
	}
	s.RPS = median(s.Rounds)
	s.P50, s.P99 = medianDuration(p50), medianDuration(p99)
	s.CPU = medianDuration(cpu)
	return s
}

// ratio is one bar from the issue: target's median req/s over base's.
type ratio struct {
	Target, Base string
	Bar          float64 // the minimum; 0 for information only
}

// renderTable writes the markdown table of medians and the ratio lines.
// Ratios whose targets did not run are left out.
func renderTable(w io.Writer, sums []summary, ratios []ratio) {
	by := map[string]summary{}
	fmt.Fprintln(w, "| target | req/s (median) | p50 | p99 | req/s per round | server CPU µs/req | errors (non-2xx) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---|---:|---:|")
	for _, s := range sums {
		by[s.Name] = s
		rounds := make([]string, len(s.Rounds))
		for i, r := range s.Rounds {
			rounds[i] = strconv.FormatFloat(r, 'f', 0, 64)
		}
		cpu := "–"
		if s.CPU > 0 {
			cpu = fmt.Sprintf("%.1f", float64(s.CPU)/float64(time.Microsecond))
		}
		fmt.Fprintf(w, "| %s | %.0f | %s | %s | %s | %s | %d (%d) |\n", s.Name, s.RPS, fmtDur(s.P50), fmtDur(s.P99), strings.Join(rounds, ", "), cpu, s.Errors, s.Non2xx)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| ratio (median req/s) | value | paired | bar | | CPU/req ratio (inverse) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---|---:|")
	for _, r := range ratios {
		t, ok1 := by[r.Target]
		b, ok2 := by[r.Base]
		if !ok1 || !ok2 || b.RPS == 0 {
			continue
		}
		v := t.RPS / b.RPS
		// Paired: the median of the rounds' own ratios. Target and base
		// run back to back in each round, so drift in the machine's speed
		// over the run cancels out; a bar must be met by both figures.
		p := pairedRatio(t.Rounds, b.Rounds)
		bar, verdict := "—", ""
		if r.Bar > 0 {
			bar = fmt.Sprintf("≥ %.2f", r.Bar)
			verdict = "meets"
			if v < r.Bar || p < r.Bar {
				verdict = "**misses**"
			}
		}
		// Wrong answers are cheap and fast; a ratio over them says nothing.
		// Socket errors (wrk's 2s timeouts when the shared machine stalls)
		// are shown in the table but do not void the figures.
		if t.Non2xx > 0 || b.Non2xx > 0 {
			verdict = "**invalid: non-2xx answers**"
		}
		// Throughput per CPU second, target over base: what the req/s
		// ratio would be if both had a CPU to themselves.
		eff := "–"
		if t.CPU > 0 && b.CPU > 0 {
			eff = fmt.Sprintf("%.3f", float64(b.CPU)/float64(t.CPU))
		}
		fmt.Fprintf(w, "| %s / %s | %.3f | %.3f | %s | %s | %s |\n", r.Target, r.Base, v, p, bar, verdict, eff)
	}
}

// pairedRatio is the median over rounds of target[i]/base[i].
func pairedRatio(target, base []float64) float64 {
	var rs []float64
	for i := range min(len(target), len(base)) {
		if base[i] > 0 {
			rs = append(rs, target[i]/base[i])
		}
	}
	return median(rs)
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	}
}

// sumMetric adds the values of every sample of the named metric family in
// Prometheus text exposition (any labels). ok is false when there is none.
func sumMetric(text []byte, name string) (total float64, ok bool) {
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue // a longer name sharing the prefix
		}
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			rest = rest[end+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		total += v
		ok = true
	}
	return total, ok
}

// syscallRow is one line of `strace -c` output.
type syscallRow struct {
	Name          string
	Calls, Errors int
}

// parseStraceC reads the summary table `strace -c` prints and returns its
// rows, busiest first, and the total. Columns are cut at the positions of
// the dashed rule under the header, because strace versions differ in
// which columns the total line fills (usecs/call is blank in old ones).
func parseStraceC(out []byte) (rows []syscallRow, total syscallRow, err error) {
	lines := strings.Split(string(out), "\n")
	h := -1
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "% time") && i+1 < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i+1]), "---") {
			h = i
			break
		}
	}
	if h < 0 {
		return nil, total, fmt.Errorf("load: no strace -c summary in %q", truncate(out, 400))
	}
	type span struct{ from, to int }
	var spans []span
	rule := lines[h+1]
	for i := 0; i < len(rule); {
		if rule[i] != '-' {
			i++
			continue
		}
		j := i
		for j < len(rule) && rule[j] == '-' {
			j++
		}
		spans = append(spans, span{i, j})
		i = j
	}
	cut := func(l string, s span, last bool) string {
		if s.from >= len(l) {
			return ""
		}
		if last || s.to > len(l) {
			return strings.TrimSpace(l[s.from:])
		}
		return strings.TrimSpace(l[s.from:s.to])
	}
	col := map[string]int{}
	for i, s := range spans {
		col[cut(lines[h], s, i == len(spans)-1)] = i
	}
	ci, okc := col["calls"]
	ni, okn := col["syscall"]
	ei, oke := col["errors"]
	if !okc || !okn {
		return nil, total, fmt.Errorf("load: strace -c header %q lacks calls or syscall", lines[h])
	}
	for _, l := range lines[h+2:] {
		if strings.TrimSpace(l) == "" || strings.HasPrefix(strings.TrimSpace(l), "---") {
			continue
		}
		var r syscallRow
		r.Name = cut(l, spans[ni], ni == len(spans)-1)
		if r.Calls, err = strconv.Atoi(cut(l, spans[ci], false)); err != nil {
			return nil, total, fmt.Errorf("load: strace line %q: calls: %w", l, err)
		}
		if oke {
			if e := cut(l, spans[ei], false); e != "" {
				if r.Errors, err = strconv.Atoi(e); err != nil {
					return nil, total, fmt.Errorf("load: strace line %q: errors: %w", l, err)
				}
			}
		}
		if r.Name == "total" {
			total = r
			break
		}
		rows = append(rows, r)
	}
	if total.Name == "" {
		return nil, total, errors.New("load: strace -c summary has no total line")
	}
	slices.SortStableFunc(rows, func(a, b syscallRow) int { return b.Calls - a.Calls })
	return rows, total, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// syscallProfile is one server's system calls per request under load.
type syscallProfile struct {
	Target   string
	Requests int
	Rows     []syscallRow
	Total    syscallRow
}

// renderSyscalls writes calls per request for the top syscalls of each
// profile side by side.
func renderSyscalls(w io.Writer, ps []syscallProfile) {
	if len(ps) == 0 {
		return
	}
	names := []string{}
	seen := map[string]bool{}
	for _, p := range ps {
		for i, r := range p.Rows {
			if i >= 8 {
				break
			}
			if !seen[r.Name] {
				seen[r.Name] = true
				names = append(names, r.Name)
			}
		}
	}
	fmt.Fprint(w, "| syscalls per request |")
	for _, p := range ps {
		fmt.Fprintf(w, " %s |", p.Target)
	}
	fmt.Fprint(w, "\n|---|")
	for range ps {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w)
	row := func(label string, get func(p syscallProfile) (int, int)) {
		fmt.Fprintf(w, "| %s |", label)
		for _, p := range ps {
			calls, errs := get(p)
			if p.Requests == 0 {
				fmt.Fprint(w, " – |")
				continue
			}
			per := float64(calls) / float64(p.Requests)
			if errs > 0 {
				fmt.Fprintf(w, " %.2f (%.2f err) |", per, float64(errs)/float64(p.Requests))
			} else {
				fmt.Fprintf(w, " %.2f |", per)
			}
		}
		fmt.Fprintln(w)
	}
	for _, n := range names {
		row(n, func(p syscallProfile) (int, int) {
			for _, r := range p.Rows {
				if r.Name == n {
					return r.Calls, r.Errors
				}
			}
			return 0, 0
		})
	}
	row("**total**", func(p syscallProfile) (int, int) { return p.Total.Calls, p.Total.Errors })
	fmt.Fprint(w, "| requests traced |")
	for _, p := range ps {
		fmt.Fprintf(w, " %d |", p.Requests)
	}
	fmt.Fprintln(w)
}
