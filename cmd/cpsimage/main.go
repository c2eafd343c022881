// Command cpsimage builds, verifies, converts, registers and publishes the
// ConPaaS VM images, and maintains the image catalogue.
//
// Each subcommand lives in its own file and registers itself in init().
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/conpaas/cps/internal/cli"
)

var commands = &cli.Registry{Prog: "cpsimage"}

func main() {
	// Ctrl-C cancels the context: builders remove temp files, registrars
	// delete what they created (unless --keep-on-error).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(commands.Main(ctx, os.Args[1:], os.Stderr))
}
