package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/auth"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/db"
	"github.com/conpaas/cps/internal/cli"
	"golang.org/x/term"
)

func init() {
	commands.Add(&cli.Command{Name: "adduser", Summary: "add a user or reset a password (cpsadduser.py)", Run: runAddUser})
}

// stdin is swapped by tests.
var stdin io.Reader = os.Stdin

func runAddUser(ctx context.Context, args []string) error {
	fs := cli.NewFlagSet("cpsdirector", "adduser", "[--config FILE] [--password-stdin] [--reset] [--email ADDR] USERNAME")
	cfgPath := configFlag(fs)
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	reset := fs.Bool("reset", false, "set a new password for an existing user")
	email := fs.String("email", "", "e-mail address")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return cli.Usagef("adduser needs exactly one USERNAME")
	}
	name := fs.Arg(0)
	if err := auth.ValidateUsername(name); err != nil {
		return cli.WithCode(cli.ExitUsage, err)
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	pw, err := readPassword(*fromStdin)
	if err != nil {
		return err
	}
	hash, err := auth.HashPassword(pw)
	if err != nil {
		return cli.WithCode(cli.ExitUsage, err)
	}
	d, err := db.Open(ctx, cfg.DBPath)
	if err != nil {
		return err
	}
	defer d.Close()
	if *reset {
		if err := d.SetPassword(ctx, name, hash); errors.Is(err, db.ErrNotFound) {
			return fmt.Errorf("no user %q: drop --reset to create it", name)
		} else if err != nil {
			return err
		}
		fmt.Fprintf(cli.Stdout, "password of %s changed\n", name)
		return nil
	}
	u, err := d.AddUser(ctx, name, *email, hash)
	if errors.Is(err, db.ErrExists) {
		return fmt.Errorf("user %q already exists: use --reset to change the password", name)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(cli.Stdout, "added user %s (id %d)\n", u.Username, u.ID)
	return nil
}

// readPassword reads from stdin (one line) or prompts twice without echo.
func readPassword(fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !(errors.Is(err, io.EOF) && line != "") {
			return "", cli.Usagef("--password-stdin: no password on standard input")
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", cli.Usagef("standard input is not a terminal: use --password-stdin")
	}
	fmt.Fprint(os.Stderr, "Password: ")
	a, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return "", err
	}
	fmt.Fprint(os.Stderr, "Repeat password: ")
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return "", err
	}
	if string(a) != string(b) {
		return "", cli.Usagef("passwords do not match")
	}
	return string(a), nil
}
