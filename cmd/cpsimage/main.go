// Command cpsimage builds, verifies, converts, registers and publishes the
// ConPaaS VM images, and maintains the image catalogue.
//
// Each subcommand lives in its own file and registers itself in init().
package main

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

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
	ctx, stop := interruptContext(time.Second, func(sig os.Signal) {
		signal.Reset(sig) // the default action: end the process at once
		syscall.Kill(os.Getpid(), sig.(syscall.Signal))
		os.Exit(cli.ExitCanceled) // if the signal was ignored
	})
	defer stop()
	os.Exit(commands.Main(ctx, os.Args[1:], os.Stderr))
}

// interruptContext is cancelled by the first Ctrl-C or SIGTERM: waits for
// a FIFO or a pipe end, builders remove temp files, registrars delete what
// they created (unless --keep-on-error). A second signal calls die (end
// the process at once), unless it comes within window of the first: that
// is the same interrupt delivered twice, as `timeout -s INT` does (to the
// process, then to its process group), which killed a run in the middle
// of its clean-up and left its temporary files behind.
func interruptContext(window time.Duration, die func(os.Signal)) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		var first time.Time
		for {
			select {
			case sig := <-sigs:
				switch {
				case first.IsZero():
					first = time.Now()
					cancel()
				case time.Since(first) >= window:
					die(sig)
				}
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(sigs)
			close(done)
			cancel()
		})
	}
}
