package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/edgeauth/edgeauth/bench"
)

// procs and proc are the shared process handling of package bench.
type (
	procs = bench.Procs
	proc  = bench.Proc
)

// children lists the PIDs of pid's child processes (nginx workers).
func children(pid int) ([]int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil, fmt.Errorf("load: children of %d: %w", pid, err)
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("load: children of %d: %w", pid, err)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("load: no child processes")
	}
	return out, nil
}
