package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/api"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/auth"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/certs"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/db"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/nodes"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/rpc"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/userdata"
	"github.com/conpaas/cps/internal/cli"
)

func init() {
	commands.Add(&cli.Command{Name: "serve", Summary: "run the director (the ConPaaS Director protocol over HTTPS)", Run: runServe})
}

func runServe(ctx context.Context, args []string) error {
	fs := cli.NewFlagSet("cpsdirector", "serve", "[--config FILE] [--listen ADDR]")
	cfgPath := configFlag(fs)
	listen := fs.String("listen", "", "address to listen on (default: LISTEN, or DIRECTOR_URL's port on all interfaces)")
	noCheck := fs.Bool("no-cloud-check", false, "do not authenticate against the clouds at start-up")
	cloudWait := fs.Duration("cloud-wait", 0, "keep retrying a cloud that fails the start-up check for this `duration` (e.g. 30m) before giving up")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return cli.Usagef("serve takes no arguments")
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if cfg.Debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	for _, w := range cfg.Warnings {
		log.Warn("configuration: " + w)
	}
	choices, _, err := resolveImages(cfg)
	if err != nil {
		return err
	}
	clouds, err := openClouds(cfg)
	if err != nil {
		return err
	}
	if !*noCheck {
		if err := probeClouds(ctx, cfg, clouds, *cloudWait, log); err != nil {
			return err
		}
	}
	ca, err := certs.Load(cfg.CertDir)
	if err != nil {
		return err
	}
	if err := certs.ServerMatches(ca.Server.Leaf, cfg.Host); err != nil {
		return fmt.Errorf("%w: run `cpsdirector certs` to re-issue it", err)
	}
	d, err := db.Open(ctx, cfg.Database)
	if err != nil {
		return err
	}
	defer d.Close()
	if _, err := os.Stat(cfg.TarballPath); err != nil {
		log.Warn("ConPaaS.tar.gz is missing: managers will not be able to bootstrap", "path", cfg.TarballPath)
	}
	addr := cfg.Listen
	if *listen != "" {
		addr = *listen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	host, _ := os.Hostname()
	images := map[string]string{}
	for name, ch := range choices {
		images[name] = ch.ImageID
	}
	rc := rpc.New(ca.ClientTLS())
	ctl := &nodes.Controller{Cfg: cfg, DB: d, CA: ca, Clouds: clouds, Images: images, RPC: rc, Log: log,
		Templates: &userdata.Sources{ConfDir: cfg.ConfDir, Tarball: cfg.TarballPath},
		ID:        host + "/" + ln.Addr().String()}
	ctl.Start(ctx)
	defer ctl.Stop()
	if err := ctl.Run(ctx); err != nil {
		return err
	}
	srv := &api.Server{Cfg: cfg, DB: d, CA: ca, Nodes: ctl, Checker: auth.NewChecker(d), RPC: rc, Log: log,
		Limit: auth.NewRateLimiter(2, 10)}
	hs := &http.Server{
		Handler:           srv.Handler(),
		TLSConfig:         ca.ServerTLS(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		// /create_nodes waits for the agents to come up, as the original did.
		WriteTimeout:   cfg.NodeTimeout + 5*time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	for _, ch := range choices {
		log.Info("cloud image", "cloud", ch.Cloud, "image", ch.ImageID, "source", ch.Source, "version", ch.Version)
	}
	log.Info("database", "where", d.Where, "dialect", d.Dialect())
	// Tests and scripts wait for this line.
	fmt.Fprintf(os.Stderr, "cpsdirector: listening on https://%s for %s\n", ln.Addr(), cfg.DirectorURL)
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return shutdownError(err)
	}
	log.Info("stopped")
	return nil
}

// shutdownGrace is how long SIGINT/SIGTERM waits for running requests.
const shutdownGrace = 20 * time.Second

// shutdownError explains a shutdown that did not finish in time (the bare
// error was "context deadline exceeded"): requests such as /create_nodes,
// which waits for agents to boot, were still running.
func shutdownError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("stopped with requests still running after %s (/create_nodes and /upload_manifest wait for VMs): the VMs they were making are recorded and the next start takes them over", shutdownGrace)
	}
	return fmt.Errorf("shutdown: %w", err)
}
