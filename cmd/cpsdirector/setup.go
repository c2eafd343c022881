package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/conpaas/cps/clouds/awsaccess"
	"github.com/conpaas/cps/clouds/compute"
	"github.com/conpaas/cps/clouds/osauth"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/config"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/imagesel"
	"github.com/conpaas/cps/images/catalogue"
	"github.com/conpaas/cps/internal/cli"
)

// configFlag adds --config to fs.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", config.DefaultPath, "director configuration `file`")
}

// loadConfig reads the config; errors are usage errors (exit 2) since the
// fix is in the file, named with its line.
func loadConfig(path string) (*config.Config, error) {
	c, err := config.Load(path)
	if err != nil {
		return nil, cli.WithCode(cli.ExitUsage, err)
	}
	return c, nil
}

// resolveImages loads the catalogue (when a cloud refers to it) and picks
// every cloud's image.
func resolveImages(cfg *config.Config) (map[string]imagesel.Choice, []imagesel.Choice, error) {
	var cat *catalogue.Catalogue
	if imagesel.NeedsCatalogue(cfg) {
		var err error
		if cat, err = catalogue.Load(cfg.CataloguePath); err != nil {
			return nil, nil, cli.WithCode(cli.ExitUsage, err)
		}
	}
	list, err := imagesel.ResolveAll(cat, cfg)
	if err != nil {
		if cat != nil {
			err = fmt.Errorf("catalogue %s: %w", cfg.CataloguePath, err)
		}
		return nil, list, cli.WithCode(cli.ExitUsage, err)
	}
	m := map[string]imagesel.Choice{}
	for _, ch := range list {
		m[ch.Cloud] = ch
	}
	return m, list, nil
}

func computeConfig(cl config.Cloud) compute.Config {
	return compute.Config{
		Driver:    cl.Driver,
		AWS:       awsaccess.Static(cl.Region, cl.User, cl.Password, cl.Endpoint),
		OpenStack: osauth.Password(cl.AuthURL, cl.User, cl.Password, cl.Project, cl.Domain, cl.Region),
		Network:   cl.Network, FloatingIP: cl.FloatingIP,
	}
}

func openClouds(cfg *config.Config) (map[string]compute.Cloud, error) {
	m := map[string]compute.Cloud{}
	for _, cl := range cfg.Clouds {
		c, err := compute.Open(computeConfig(cl))
		if err != nil {
			return nil, fmt.Errorf("cloud %s: %w", cl.Name, err)
		}
		m[cl.Name] = c
	}
	return m, nil
}

// probeClouds authenticates against every cloud so bad credentials stop
// the director at start-up instead of at the first application start.
// With wait > 0 a failing cloud is retried every retryEvery until wait has
// passed: a director started by systemd beside its cloud (the Nutshell
// boots Keystone and cpsdirector together) waits for it instead of exiting
// and being restarted in a loop.
func probeClouds(ctx context.Context, cfg *config.Config, clouds map[string]compute.Cloud, wait time.Duration, log *slog.Logger) error {
	deadline := time.Now().Add(wait)
	for _, cl := range cfg.Clouds {
		for {
			pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			_, err := clouds[cl.Name].Probe(pctx)
			cancel()
			if err == nil {
				break
			}
			err = fmt.Errorf("cloud %s (%s, line %d of %s): %w", cl.Name, cl.Driver, cl.Line, cfg.Path, err)
			if ctx.Err() != nil {
				return err
			}
			if time.Now().Add(retryEvery).After(deadline) {
				if wait > 0 {
					return fmt.Errorf("%w; still failing after --cloud-wait %s: fix the credentials or the endpoint, or start with --no-cloud-check to skip this", err, wait)
				}
				return fmt.Errorf("%w; fix the credentials, give the cloud time with --cloud-wait DURATION, or start with --no-cloud-check to skip this", err)
			}
			log.Warn("cloud not ready, retrying", "cloud", cl.Name, "in", retryEvery, "error", err)
			select {
			case <-ctx.Done():
				return err
			case <-time.After(retryEvery):
			}
		}
	}
	return nil
}

// retryEvery is how often --cloud-wait probes again (a variable for tests).
var retryEvery = 10 * time.Second
