// Package cli holds what both commands share: exit codes carried by errors,
// and a tiny subcommand registry so each feature adds its subcommand in its
// own file.
package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Exit codes. Template and usage errors are 2 (like getopt tools), a
// failed build or a checksum mismatch is 1, success is 0.
const (
	ExitOK       = 0
	ExitFailure  = 1 // build failed, checksum mismatch, check found a problem
	ExitUsage    = 2 // bad flags, bad template, unreadable input
	ExitCanceled = 130
)

// ExitError carries an exit code with an error.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// WithCode wraps err so the command exits with code.
func WithCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &ExitError{Code: code, Err: err}
}

// errSaid marks an error whose command already printed everything it had
// to say; Main prints nothing more.
var errSaid = errors.New("already reported")

// Exit is an error that only sets the exit code: the command has already
// reported the failures (as md5sum does, one line per file).
func Exit(code int) error { return &ExitError{Code: code, Err: errSaid} }

// Usagef is a usage error (exit 2).
func Usagef(format string, args ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// Code returns the exit code for err: the ExitError's, 130 for
// cancellation, 1 otherwise.
func Code(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	if errors.Is(err, context.Canceled) {
		return ExitCanceled
	}
	return ExitFailure
}

// Command is one subcommand.
type Command struct {
	Name    string
	Summary string
	// Help is the page `PROG help NAME` and `PROG NAME -h` print, for a
	// command with subcommands; without it, the command's own flag usage
	// (Run with "-h") is its help.
	Help string
	// Run gets the arguments after the subcommand name.
	Run func(ctx context.Context, args []string) error
}

// Topic is a help page that is not a command (e.g. size units).
type Topic struct {
	Name, Summary, Text string
}

// Registry maps names to commands and help topics.
type Registry struct {
	Prog     string
	commands map[string]*Command
	topics   map[string]*Topic
}

// AddTopic registers a help topic.
func (r *Registry) AddTopic(t *Topic) {
	if r.topics == nil {
		r.topics = map[string]*Topic{}
	}
	r.topics[t.Name] = t
}

// Add registers c; called from init() in each subcommand's file.
func (r *Registry) Add(c *Command) {
	if r.commands == nil {
		r.commands = map[string]*Command{}
	}
	if _, dup := r.commands[c.Name]; dup {
		panic("duplicate command " + c.Name) // programming error, caught by any test run
	}
	r.commands[c.Name] = c
}

// Usage prints the command and topic lists.
func (r *Registry) Usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s COMMAND [flags] [args]\n\ncommands:\n", r.Prog)
	for _, n := range sortedKeys(r.commands) {
		fmt.Fprintf(w, "  %-12s %s\n", n, r.commands[n].Summary)
	}
	if len(r.topics) > 0 {
		fmt.Fprintf(w, "\nhelp topics:\n")
		for _, n := range sortedKeys(r.topics) {
			fmt.Fprintf(w, "  %-12s %s\n", n, r.topics[n].Summary)
		}
	}
	fmt.Fprintf(w, "\nRun '%s help COMMAND' (or '%s COMMAND -h') for the flags of a command, '%s help TOPIC' for a topic.\n", r.Prog, r.Prog, r.Prog)
}

func sortedKeys[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func isHelp(arg string) bool { return arg == "-h" || arg == "-help" || arg == "--help" }

// Main runs the subcommand named by args[0] and returns the exit code,
// printing the error as one line prefixed by the program name. Help asked
// for (help, -h, --help, help TOPIC, COMMAND -h) goes to Stdout with exit
// code 0, like git's and the AWS CLI's; usage errors go to stderr.
func (r *Registry) Main(ctx context.Context, args []string, stderr io.Writer) int {
	// A result that could not be written (stdout on a full disk, /dev/full,
	// a closed pipe with SIGPIPE ignored) must not end in exit 0: md5sum
	// says "write error" and exits 1, and a script would take a truncated
	// checksum list or plan for the whole of it.
	out := &checkedWriter{w: Stdout}
	Stdout = out
	defer func() { Stdout = out.w }()
	code := r.main(ctx, args, stderr)
	if out.err != nil {
		fmt.Fprintf(stderr, "%s: could not write the output (%v), so it is incomplete: write it to a file or pipe with room for it.\n", r.Prog, out.err)
		if code == ExitOK {
			code = ExitFailure
		}
	}
	return code
}

// checkedWriter remembers the first write error and fails every later
// write with it, so a command's output stops at the first lost line.
type checkedWriter struct {
	w   io.Writer
	err error
}

func (c *checkedWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	if err != nil {
		c.err = err
	}
	return n, err
}

func (r *Registry) main(ctx context.Context, args []string, stderr io.Writer) int {
	if len(args) == 0 {
		r.Usage(stderr)
		return ExitUsage
	}
	if isHelp(args[0]) || args[0] == "help" && len(args) == 1 {
		r.Usage(Stdout)
		return ExitOK
	}
	if args[0] == "help" {
		if t, ok := r.topics[args[1]]; ok && len(args) == 2 {
			fmt.Fprint(Stdout, strings.TrimLeft(t.Text, "\n"))
			return ExitOK
		}
		if _, ok := r.commands[args[1]]; !ok || len(args) != 2 {
			fmt.Fprintf(stderr, "%s help: no command or topic %q\n", r.Prog, strings.Join(args[1:], " "))
			r.Usage(stderr)
			return ExitUsage
		}
		args = []string{args[1], "-h"}
	}
	c, ok := r.commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "%s: unknown command %q\n", r.Prog, args[0])
		r.Usage(stderr)
		return ExitUsage
	}
	if c.Help != "" && len(args) == 2 && isHelp(args[1]) {
		fmt.Fprint(Stdout, strings.TrimLeft(c.Help, "\n"))
		return ExitOK
	}
	err := c.Run(ctx, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err != nil && !errors.Is(err, errSaid) {
		msg := err.Error()
		if errors.Is(err, context.Canceled) {
			// Go's "context canceled" means nothing to a user who pressed
			// Ctrl-C ("cpsimage convert: context canceled"): say what it was.
			if m, ok := strings.CutSuffix(msg, "context canceled"); ok {
				msg = m + "interrupted (Ctrl-C or SIGTERM)"
			}
		}
		if !strings.HasSuffix(msg, "\n") {
			msg += "\n"
		}
		// Diagnostics already carry their own "Error:" prefix.
		if strings.HasPrefix(msg, "Error: ") || strings.HasPrefix(msg, "Warning: ") {
			fmt.Fprint(stderr, msg)
		} else {
			fmt.Fprintf(stderr, "%s %s: %s", r.Prog, c.Name, msg)
		}
	}
	return Code(err)
}

// NewFlagSet returns a FlagSet that reports errors as usage errors instead
// of exiting, so Run functions stay testable.
func NewFlagSet(prog, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(prog+" "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s %s %s\n", prog, name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// Parse parses args, turning flag errors into usage errors. The usage
// that -h asks for goes to Stdout; after a bad flag, to Stderr.
func Parse(fs *flag.FlagSet, args []string) error {
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	err := fs.Parse(args)
	fs.SetOutput(Stderr) // a command's own later fs.Usage() is an error's
	if errors.Is(err, flag.ErrHelp) {
		io.Copy(Stdout, &buf)
		return err
	}
	io.Copy(Stderr, &buf)
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	return nil
}

// Stdout is where commands print results; tests may swap it.
var Stdout io.Writer = os.Stdout

// Stderr is where commands print per-item warnings and errors while they
// go on; tests may swap it.
var Stderr io.Writer = os.Stderr

// ParseKnownAnywhere parses fs's flags before the positional arguments
// and, after them, every argument that names one of fs's flags ("-x",
// "--x", "--x=v"); the other arguments stay positional, which it returns.
// Go's flag package stops at the first positional argument, so
// "adduser NAME --password-stdin" took the flag for a second name; but
// "credit NAME -5" and a legacy "adduser EMAIL NAME -pass" must keep their
// dash-led values, which is why unknown dashes are not flags here. After
// "--" everything is positional.
func ParseKnownAnywhere(fs *flag.FlagSet, args []string) ([]string, error) {
	if err := Parse(fs, args); err != nil {
		return nil, err
	}
	rest := fs.Args()
	if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
		return rest, nil
	}
	var pos []string
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			return append(pos, rest[i+1:]...), nil
		}
		name := strings.TrimLeft(a, "-")
		name, _, _ = strings.Cut(name, "=")
		if !strings.HasPrefix(a, "-") || name == "" || fs.Lookup(name) == nil {
			pos = append(pos, a)
			continue
		}
		// A known flag: parse it (with its value, if it takes one) alone.
		one := []string{a}
		if !strings.Contains(a, "=") && !isBool(fs.Lookup(name)) && i+1 < len(rest) {
			i++
			one = append(one, rest[i])
		}
		if err := Parse(fs, one); err != nil {
			return nil, err
		}
	}
	return pos, nil
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}
