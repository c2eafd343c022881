// Command cpsdirector is the ConPaaS Director: the HTTPS API that manages
// users, applications and services, and starts manager VMs from the images
// listed in the catalogue written by cpsimage.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/conpaas/cps/internal/cli"
)

var commands = &cli.Registry{Prog: "cpsdirector"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(commands.Main(ctx, os.Args[1:], os.Stderr))
}
