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
	"github.com/conpaas/cps/internal/size"
)

var commands = &cli.Registry{Prog: "cpsimage"}

func init() {
	commands.AddTopic(&cli.Topic{Name: "sizes", Summary: "how sizes are written in templates and flags (GB vs GiB)", Text: size.Help})
	commands.AddTopic(&cli.Topic{Name: "environment", Summary: "environment variables cpsimage reads", Text: `Environment variables:

  CPS_CACHE          cache directory (default /var/cache/cps): downloaded Debian
                     packages (apt/ARCH) and bootstrapped root trees (apt/trees/ARCH),
                     reused by later builds
  CPS_NO_TREE_CACHE  set to bootstrap every tree afresh (packages are still cached)
  SOURCE_DATE_EPOCH  every timestamp in a built image (make image sets it to the
                     last commit's time): two builds give the same bytes
`})
}

func main() {
	// Ctrl-C or SIGTERM cancels the context: waits for a FIFO or a pipe
	// end, builders remove temp files, registrars delete what they created
	// (unless --keep-on-error). A second one ends the process at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // back to the default action for the next signal
	}()
	os.Exit(commands.Main(ctx, os.Args[1:], os.Stderr))
}
