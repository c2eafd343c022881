package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"time"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/certs"
	"github.com/conpaas/cps/internal/cli"
)

func init() {
	commands.Add(&cli.Command{Name: "certs", Summary: "create the CA and (re-)issue the server certificate for DIRECTOR_URL (cpsconf.py)", Run: runCerts})
}

func runCerts(ctx context.Context, args []string) error {
	fs := cli.NewFlagSet("cpsdirector", "certs", "[--config FILE]")
	cfgPath := configFlag(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	a, res, err := certs.Ensure(cfg.CertDir, cfg.Host, time.Now())
	if err != nil {
		return err
	}
	out := cli.Stdout
	switch {
	case res.CACreated:
		fmt.Fprintf(out, "created CA %s\n", filepath.Join(cfg.CertDir, certs.CACertFile))
	case res.CAOriginal:
		fmt.Fprintf(out, "kept CA %s (X.509 v1, as the original cpsconf.py made it: certificates it signed stay valid)\n", filepath.Join(cfg.CertDir, certs.CACertFile))
	default:
		fmt.Fprintf(out, "kept CA %s\n", filepath.Join(cfg.CertDir, certs.CACertFile))
	}
	switch {
	case res.ServerIssued && res.PreviousServer != "":
		fmt.Fprintf(out, "re-issued server certificate for %s (was %s): restart cpsdirector serve\n", cfg.Host, res.PreviousServer)
	case res.ServerIssued:
		fmt.Fprintf(out, "issued server certificate for %s\n", cfg.Host)
	default:
		fmt.Fprintf(out, "server certificate for %s is up to date\n", cfg.Host)
	}
	fmt.Fprintf(out, "CA SHA-256 fingerprint: %x\n", sha256.Sum256(a.CA.Raw))
	return nil
}
