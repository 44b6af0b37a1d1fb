//go:build !linux

package main

import "syscall"

// sysProcAttr: only Linux has a parent-death signal; elsewhere children are
// stopped by the harness alone.
func sysProcAttr() *syscall.SysProcAttr { return nil }
