package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/conpaas/cps/internal/cli"
)

// helpNames are the commands and topics `cpsimage help` lists.
func helpNames(t *testing.T) (cmds, topics []string) {
	t.Helper()
	out := runMain(t, "help")
	section := &cmds
	for _, l := range strings.Split(out, "\n") {
		if l == "help topics:" {
			section = &topics
		}
		if m := regexp.MustCompile(`^  ([a-z0-9-]+) `).FindStringSubmatch(l); m != nil {
			*section = append(*section, m[1])
		}
	}
	if len(cmds) < 10 || len(topics) == 0 {
		t.Fatalf("help lists %v and topics %v:\n%s", cmds, topics, out)
	}
	return cmds, topics
}

// runMain runs cpsimage with args and returns its standard output; help
// must exit 0 and write nothing to standard error.
func runMain(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	oldOut, oldErr := cli.Stdout, cli.Stderr
	cli.Stdout, cli.Stderr = &out, &errb
	defer func() { cli.Stdout, cli.Stderr = oldOut, oldErr }()
	if code := commands.Main(t.Context(), args, &errb); code != 0 || errb.Len() != 0 {
		t.Fatalf("cpsimage %s: exit %d, stderr %q", strings.Join(args, " "), code, errb.String())
	}
	return out.String()
}

// Help goes to standard output: the list, every command's page (help
// NAME and NAME -h alike) and every topic.
func TestHelpOnStdout(t *testing.T) {
	cmds, topics := helpNames(t)
	if out := runMain(t, "--help"); !strings.Contains(out, "help topics:") {
		t.Errorf("--help lacks the topics:\n%s", out)
	}
	for _, c := range cmds {
		out := runMain(t, "help", c)
		if !strings.HasPrefix(out, "usage: cpsimage "+c) {
			t.Errorf("help %s does not start with its usage line:\n%s", c, out)
		}
		if dash := runMain(t, c, "-h"); dash != out {
			t.Errorf("%s -h and help %s differ:\n%s\n---\n%s", c, c, dash, out)
		}
	}
	for _, tp := range topics {
		if out := runMain(t, "help", tp); len(out) < 100 {
			t.Errorf("help %s is %q", tp, out)
		}
	}
	if out := runMain(t, "help", "sizes"); !strings.Contains(out, "GB               1000³ = 1000000000 bytes") {
		t.Errorf("help sizes does not state the rule:\n%s", out)
	}
}

// The README's table names every command.
func TestREADMEListsEveryCommand(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start, end := strings.Index(readme, "## cpsimage"), strings.Index(readme, "## cpsdirector")
	if start < 0 || end < start {
		t.Fatal("README.md has no cpsimage section")
	}
	// The commands in the first column of the table's rows.
	listed := map[string]bool{}
	for _, l := range strings.Split(readme[start:end], "\n") {
		cells := strings.Split(l, "|")
		if len(cells) < 3 {
			continue
		}
		for _, m := range regexp.MustCompile("`([a-z0-9-]+)[^`]*`").FindAllStringSubmatch(cells[1], -1) {
			listed[m[1]] = true
		}
	}
	cmds, _ := helpNames(t)
	for _, c := range cmds {
		if !listed[c] {
			t.Errorf("README.md's cpsimage table does not list %q", c)
		}
	}
}
