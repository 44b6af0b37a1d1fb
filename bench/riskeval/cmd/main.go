// Command riskeval generates the synthetic evaluation set and reports, per
// rule set, the share of attacks stepped up or denied and the share of
// legitimate requests asked to step up.
//
//	go run ./bench/riskeval/cmd -users 10000 [-out events.jsonl] [-md RESULTS.md]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/edgeauth/edgeauth/bench/riskeval"
)

func main() {
	users := flag.Int("users", 10000, "number of users")
	seed := flag.Uint64("seed", 1, "random seed")
	out := flag.String("out", "", "also write the generated events here")
	md := flag.String("md", "", "write the Markdown report here (default stdout)")
	flag.Parse()
	dir, err := os.MkdirTemp("", "riskeval")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	geo, err := riskeval.WriteGeoIP(dir)
	if err != nil {
		log.Fatal(err)
	}
	var data bytes.Buffer
	legit, attacks, err := riskeval.Generate(&data, *users, *seed)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "generated %d legit and %d attack events\n", legit, attacks)
	if *out != "" {
		if err := os.WriteFile(*out, data.Bytes(), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	var reps []riskeval.Report
	for _, rs := range riskeval.RuleSets {
		rep, err := riskeval.Evaluate(context.Background(), data.Bytes(), geo, rs)
		if err != nil {
			log.Fatal(err)
		}
		reps = append(reps, rep)
	}
	w := os.Stdout
	if *md != "" {
		f, err := os.Create(*md)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		w = f
	}
	riskeval.Markdown(w, *users, reps)
}
