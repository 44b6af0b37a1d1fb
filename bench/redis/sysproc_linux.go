package main

import "syscall"

// sysProcAttr puts each child in its own process group (a terminal's ^C
// reaches only the harness, which then stops them by PID) and has the
// kernel kill it if the harness dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
