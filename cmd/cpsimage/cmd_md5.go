package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/term"

	"github.com/conpaas/cps/images/checksum"
	"github.com/conpaas/cps/images/verify"
	"github.com/conpaas/cps/internal/cli"
	"github.com/conpaas/cps/internal/input"
	"github.com/conpaas/cps/internal/progress"
)

func init() {
	commands.Add(&cli.Command{
		Name:    "md5",
		Summary: "md5sum, exactly (--all: MD5, SHA1, SHA256, SHA512 in one pass; -c: check checksum files like md5sum -c)",
		Run:     runMD5,
	})
}

// md5Prog prefixes md5's diagnostics where md5sum prints "md5sum: ".
const md5Prog = "cpsimage md5: "

// checkOptions are md5sum -c's options.
type checkOptions struct {
	quiet, status, warn, strict, ignoreMissing bool
}

func runMD5(ctx context.Context, args []string) error {
	fs := cli.NewFlagSet("cpsimage", "md5", "[--all] [FILE]... | -c [--quiet] [--status] [--warn] [--strict] [--ignore-missing] [SUMFILE]...")
	all := fs.Bool("all", false, "print MD5, SHA1, SHA256 and SHA512 (BSD style lines), computed in one pass")
	check := fs.Bool("c", false, "read MD5 sums from the SUMFILEs (default: standard input) and check them, exactly as md5sum -c does")
	var o checkOptions
	fs.BoolVar(&o.quiet, "quiet", false, "with -c: do not print OK for each verified file")
	fs.BoolVar(&o.status, "status", false, "with -c: print nothing; the exit code says")
	fs.BoolVar(&o.warn, "warn", false, "with -c: warn about each improperly formatted line")
	fs.BoolVar(&o.strict, "strict", false, "with -c: exit 1 when a line is improperly formatted")
	fs.BoolVar(&o.ignoreMissing, "ignore-missing", false, "with -c: skip listed files that do not exist")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	files := fs.Args()
	if len(files) == 0 {
		files = []string{input.Stdin} // as md5sum: standard input
	}
	if *check {
		if *all {
			return cli.Usagef("--all and -c cannot be used together")
		}
		return checkSumFiles(ctx, files, o)
	}
	if o != (checkOptions{}) {
		return cli.Usagef("--quiet, --status, --warn, --strict and --ignore-missing only apply with -c")
	}
	algos := []checksum.Algo{checksum.MD5}
	if *all {
		algos = checksum.All
	}
	failed := false
	for _, path := range files {
		sums, err := hashQuiet(ctx, path, algos)
		if err != nil {
			if ctx.Err() != nil {
				return err // interrupted: stop, exit 130
			}
			fmt.Fprintf(cli.Stderr, "%s%s: %s\n", md5Prog, quoteName(path), strerror(err))
			failed = true
			continue
		}
		if !*all {
			fmt.Fprint(cli.Stdout, checksum.Line(sums.Get(checksum.MD5), path))
			continue
		}
		for _, a := range algos {
			fmt.Fprint(cli.Stdout, checksum.TagLine(a, sums.Get(a), path))
		}
	}
	if failed {
		return cli.Exit(cli.ExitFailure) // md5sum: every failure already said
	}
	return nil
}

// hashFile hashes path (a file, a block device, or a stream read to EOF;
// "-" is standard input) with a progress bar (log lines off a terminal).
func hashFile(ctx context.Context, path string, algos []checksum.Algo) (checksum.Sums, error) {
	in, err := input.Open(ctx, path)
	if err != nil {
		return checksum.Sums{}, err
	}
	defer in.Close()
	bar := progress.New(filepath.Base(path), max(in.Size, 0))
	defer bar.Finish()
	return checksum.Input(ctx, in, checksum.Options{Algos: algos, Progress: bar})
}

// hashQuiet is hashFile with a bar only on a terminal: md5 prints what
// md5sum prints, so scripts reading its standard error see nothing else.
func hashQuiet(ctx context.Context, path string, algos []checksum.Algo) (checksum.Sums, error) {
	if f, ok := cli.Stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return hashFile(ctx, path, algos)
	}
	in, err := input.Open(ctx, path)
	if err != nil {
		return checksum.Sums{}, err
	}
	defer in.Close()
	return checksum.Input(ctx, in, checksum.Options{Algos: algos})
}

// checkSumFiles is md5sum -c (GNU coreutils 9.1): the same parsing
// (verify.SumParser), names resolved against the working directory, the
// same lines on standard output and error, the same warnings and counts,
// and exit 1 if a file failed, could not be read, a checksum file had no
// valid line, or (with --strict) a line was malformed.
func checkSumFiles(ctx context.Context, sumFiles []string, o checkOptions) error {
	p := &verify.SumParser{Algo: checksum.MD5}
	ok := true
	for _, sf := range sumFiles {
		fileOK, err := checkSumFile(ctx, p, sf, o)
		if err != nil {
			return err
		}
		ok = ok && fileOK
	}
	if !ok {
		return cli.Exit(cli.ExitFailure)
	}
	return nil
}

func checkSumFile(ctx context.Context, p *verify.SumParser, sumFile string, o checkOptions) (bool, error) {
	name := quoteName(sumFile)
	if sumFile == input.Stdin {
		name = "'standard input'"
	}
	f, err := input.Open(ctx, sumFile)
	if err != nil {
		if ctx.Err() != nil {
			return false, err
		}
		msg := strerror(err)
		if errors.Is(err, syscall.EISDIR) {
			msg = "read error" // what md5sum says of a directory
		}
		fmt.Fprintf(cli.Stderr, "%s%s: %s\n", md5Prog, name, msg)
		return false, nil
	}
	entries, bad, err := p.Parse(f)
	f.Close()
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		fmt.Fprintf(cli.Stderr, "%s%s: read error\n", md5Prog, name)
		return false, nil
	}
	var mismatched, unreadable, matched int
	next := 0 // the next malformed line to warn about, in line order
	warnUpTo := func(line int) {
		for ; next < len(bad) && bad[next].Line < line; next++ {
			if o.warn {
				fmt.Fprintf(cli.Stderr, "%s%s: %d: improperly formatted MD5 checksum line\n", md5Prog, name, bad[next].Line)
			}
		}
	}
	for _, e := range entries {
		warnUpTo(e.Line)
		shown, esc := checksum.Escape(e.File)
		if !strings.Contains(e.File, "\n") {
			shown, esc = e.File, false // md5sum -c escapes only names with a newline
		}
		if esc {
			shown = "\\" + shown
		}
		sums, err := hashQuiet(ctx, e.File, []checksum.Algo{checksum.MD5})
		switch {
		case err != nil && ctx.Err() != nil:
			return false, err
		case err != nil && o.ignoreMissing && errors.Is(err, os.ErrNotExist):
			continue
		case err != nil:
			unreadable++
			fmt.Fprintf(cli.Stderr, "%s%s: %s\n", md5Prog, quoteName(e.File), strerror(err))
			if !o.status {
				fmt.Fprintf(cli.Stdout, "%s: FAILED open or read\n", shown)
			}
		case sums.MD5 != e.Hex:
			mismatched++
			if !o.status {
				fmt.Fprintf(cli.Stdout, "%s: FAILED\n", shown)
			}
		default:
			matched++
			if !o.status && !o.quiet {
				fmt.Fprintf(cli.Stdout, "%s: OK\n", shown)
			}
		}
	}
	warnUpTo(1 << 62)
	if len(entries) == 0 {
		fmt.Fprintf(cli.Stderr, "%s%s: no properly formatted checksum lines found\n", md5Prog, name)
		return false, nil
	}
	if !o.status {
		if n := len(bad); n > 0 {
			fmt.Fprintf(cli.Stderr, "%sWARNING: %d %s improperly formatted\n", md5Prog, n, plural(n, "line is", "lines are"))
		}
		if unreadable > 0 {
			fmt.Fprintf(cli.Stderr, "%sWARNING: %d listed %s could not be read\n", md5Prog, unreadable, plural(unreadable, "file", "files"))
		}
		if mismatched > 0 {
			fmt.Fprintf(cli.Stderr, "%sWARNING: %d computed %s did NOT match\n", md5Prog, mismatched, plural(mismatched, "checksum", "checksums"))
		}
	}
	if o.ignoreMissing && matched+mismatched+unreadable == 0 {
		fmt.Fprintf(cli.Stderr, "%s%s: no file was verified\n", md5Prog, name)
		return false, nil
	}
	return mismatched == 0 && unreadable == 0 && (!o.strict || len(bad) == 0), nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// strerror is the C library's message for the error behind err ("No such
// file or directory"), as md5sum prints it; other errors as they are.
func strerror(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		return strings.ToUpper(s[:1]) + s[1:]
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "Input/output error"
	}
	return err.Error()
}

// quoteName quotes a file name for a diagnostic the way coreutils does
// (gnulib's shell-escape style): as is when it is plain, else in single
// quotes, in double quotes when it holds a single quote and nothing a
// shell expands inside them, with control characters as $'\n' pieces.
func quoteName(s string) string {
	plain := s != ""
	hasQuote, dqSafe, ctrl := false, true, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20 || c == 0x7f:
			plain, ctrl = false, true
		case c == '\'':
			plain, hasQuote = false, true
		case strings.IndexByte(" \"$&()*;<=>?[\\]^`|!{}", c) >= 0:
			plain = false
			if strings.IndexByte("\"$`\\!", c) >= 0 {
				dqSafe = false
			}
		case (c == '#' || c == '~') && i == 0:
			plain = false
		}
	}
	switch {
	case plain:
		return s
	case ctrl:
		var b strings.Builder
		b.WriteByte('\'')
		for i := 0; i < len(s); i++ {
			c := s[i]
			switch {
			case c < 0x20 || c == 0x7f:
				fmt.Fprintf(&b, "'$'%s''", ctrlEscape(c))
			case c == '\'':
				b.WriteString(`'\''`)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('\'')
		return strings.TrimPrefix(strings.TrimSuffix(b.String(), "''"), "''")
	case hasQuote && dqSafe:
		return `"` + s + `"`
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func ctrlEscape(c byte) string {
	switch c {
	case '\n':
		return `\n`
	case '\r':
		return `\r`
	case '\t':
		return `\t`
	}
	return fmt.Sprintf(`\%03o`, c)
}
