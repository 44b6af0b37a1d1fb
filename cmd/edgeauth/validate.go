package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/edgeauth/edgeauth/config"
)

func validateCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "path to the YAML config file (required)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: edgeauth validate -config FILE\n\nChecks the file and lists every problem with its key path and line. Exit 0 if valid, 1 if not.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *configPath == "" {
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		printConfigErrors(stderr, *configPath, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: valid (%d routes)\n", *configPath, len(cfg.Routes))
	return 0
}
