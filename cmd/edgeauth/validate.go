package main

import (
	"fmt"
	"io"
)

func validateCommand(args []string, stdout, stderr io.Writer) int {
	path, cfg, code := loadConfigFlag("validate", args, stderr,
		"Checks the file and lists every problem with its key path and line. Exit 0 if valid, 1 if not.")
	if cfg == nil {
		return code
	}
	fmt.Fprintf(stdout, "%s: valid (%d routes)\n", path, len(cfg.Routes))
	return 0
}
