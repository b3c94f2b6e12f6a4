// Command klab builds a small Kubernetes-style cluster on this machine and
// shows how it works. Every component of the cluster is a subcommand of
// this one binary.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newApp().run(ctx, os.Args[1:])
	stop()
	os.Exit(report(err))
}

// exitCode ends klab with a code and no message: the command that failed
// (on a node, say) has already said why.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func report(err error) int {
	if err == nil {
		return 0
	}
	var code exitCode
	if errors.As(err, &code) {
		return int(code)
	}
	fmt.Fprintf(os.Stderr, "klab: %v\n", err)
	return 1
}
