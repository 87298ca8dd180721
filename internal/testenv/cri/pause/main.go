//go:build linux

// Command pause is the pause image of the cri test harness: the process
// that holds a pod sandbox's namespaces. Like Kubernetes' pause it does
// nothing but reap the children that come its way as the PID namespace's
// init, and exits on SIGTERM or SIGINT.
//
// It is built with CGO_ENABLED=0, so that it runs alone in its image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 8)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
