package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/auth"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/config"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/db"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/names"
	"github.com/conpaas/cps/internal/cli"
	"golang.org/x/term"
)

func init() {
	commands.Add(&cli.Command{Name: "adduser", Summary: "add a user, or reset a password revoking old certificates (cpsadduser.py)", Run: runAddUser})
	commands.Add(&cli.Command{Name: "deluser", Summary: "delete a user; their certificates stop working", Run: runDelUser})
	commands.Add(&cli.Command{Name: "credit", Summary: "add (or with a negative number take) credit of a user (cps-tools user add_credit)", Run: runCredit})
}

// stdin is swapped by tests.
var stdin io.Reader = os.Stdin

func openDB(ctx context.Context, cfg *config.Config) (*db.DB, error) {
	return db.Open(ctx, cfg.Database)
}

func runAddUser(ctx context.Context, args []string) error {
	fs := cli.NewFlagSet("cpsdirector", "adduser", "[--config FILE] [--password-stdin] [--reset] [--email ADDR] [--credit N] USERNAME\n       cpsdirector adduser [--config FILE] EMAIL USERNAME PASSWORD [CREDIT]   (cpsadduser.py's form)")
	cfgPath := configFlag(fs)
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	reset := fs.Bool("reset", false, "set a new password for an existing user; their certificates stop working")
	email := fs.String("email", "", "e-mail address")
	credit := fs.Int64("credit", config.DefaultMaxCredit, "initial credit")
	pos, err := cli.ParseKnownAnywhere(fs, args)
	if err != nil {
		return err
	}
	var name, pw string
	switch len(pos) {
	case 1:
		name = pos[0]
	case 3, 4:
		// cpsadduser.py: email username password [credit]
		*email, name, pw = pos[0], pos[1], pos[2]
		if len(pos) == 4 {
			n, err := strconv.ParseInt(pos[3], 10, 64)
			if err != nil {
				return cli.Usagef("credit %q is not an integer", pos[3])
			}
			*credit = n
		}
	default:
		return cli.Usagef("adduser needs USERNAME (or EMAIL USERNAME PASSWORD [CREDIT])")
	}
	name = names.Normalize(name)
	if err := auth.ValidateUsername(name); err != nil {
		return cli.WithCode(cli.ExitUsage, err)
	}
	if err := auth.ValidateEmail(*email); err != nil {
		return cli.WithCode(cli.ExitUsage, err)
	}
	if *credit > db.MaxCredit {
		return cli.Usagef("credit cannot exceed %d", int64(db.MaxCredit))
	}
	if *credit < 0 {
		return cli.Usagef("credit cannot be negative")
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if pw == "" {
		if pw, err = readPassword(*fromStdin); err != nil {
			return err
		}
	}
	hash, err := auth.HashPassword(pw)
	if err != nil {
		return cli.WithCode(cli.ExitUsage, err)
	}
	d, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	if *reset {
		u, err := d.UserByName(ctx, name)
		if errors.Is(err, db.ErrNotFound) {
			return fmt.Errorf("no user %q: drop --reset to create it", name)
		}
		if err != nil {
			return err
		}
		if err := d.SetPassword(ctx, u.UID, hash, true); err != nil {
			return err
		}
		fmt.Fprintf(cli.Stdout, "password of %s changed; their certificates were revoked (get new ones with getcerts)\n", name)
		return nil
	}
	u, err := d.CreateUser(ctx, db.NewUser{Username: name, Key: names.Key(name), PasswordHash: hash, Credit: *credit,
		Email: sql.NullString{String: *email, Valid: *email != ""}})
	var conflict *db.Conflict
	if errors.As(err, &conflict) {
		if conflict.Field == "email" {
			return fmt.Errorf("e-mail address %q is already registered", *email)
		}
		return fmt.Errorf("user %q (or a look-alike name) already exists: use --reset to change the password", name)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(cli.Stdout, "added user %s (id %d, credit %d)\n", u.Username, u.UID, u.Credit)
	return nil
}

func runDelUser(ctx context.Context, args []string) error {
	fs := cli.NewFlagSet("cpsdirector", "deluser", "[--config FILE] USERNAME")
	cfgPath := configFlag(fs)
	pos, err := cli.ParseKnownAnywhere(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return cli.Usagef("deluser needs exactly one USERNAME")
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	d, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	u, err := d.UserByName(ctx, pos[0])
	if errors.Is(err, db.ErrNotFound) {
		return fmt.Errorf("no user %q", pos[0])
	}
	if err != nil {
		return err
	}
	if err := d.DeleteUser(ctx, u.UID); err != nil {
		return fmt.Errorf("delete %s: %w", u.Username, err)
	}
	fmt.Fprintf(cli.Stdout, "deleted user %s (id %d); their certificates no longer work and the id is never reused\n", u.Username, u.UID)
	return nil
}

func runCredit(ctx context.Context, args []string) error {
	fs := cli.NewFlagSet("cpsdirector", "credit", "[--config FILE] USERNAME CREDIT")
	cfgPath := configFlag(fs)
	pos, err := cli.ParseKnownAnywhere(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return cli.Usagef("credit needs USERNAME and CREDIT (a positive or negative integer)")
	}
	n, err := strconv.ParseInt(pos[1], 10, 64)
	if err != nil {
		return cli.Usagef("credit %q is not an integer", pos[1])
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	return addCredit(ctx, cfg, pos[0], n)
}

func addCredit(ctx context.Context, cfg *config.Config, name string, n int64) error {
	d, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	u, err := d.UserByName(ctx, name)
	if errors.Is(err, db.ErrNotFound) {
		return fmt.Errorf("Unknown user '%s'", name)
	}
	if err != nil {
		return err
	}
	c, err := d.AddCredit(ctx, u.UID, n)
	if err != nil {
		return err
	}
	fmt.Fprintf(cli.Stdout, "Credit added successfully to user '%s', the new credit is %d.\n", name, c)
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
