package e2etest

import "syscall"

// sysProcAttr makes the kernel kill the child if the test process dies
// without running its cleanups (a panic, a -timeout kill), so no orphan
// keeps a port.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
