package progress

import (
	"bytes"
	"strings"
	"testing"
)

// Off a terminal the bar degrades to plain log lines: CI logs get a final
// line with the total, and no terminal escape sequences.
func TestLogModeWritesPlainLines(t *testing.T) {
	var buf bytes.Buffer
	old := Output
	Output = &buf
	defer func() { Output = old }()

	b := New("hash conpaas.img", 3<<20)
	b.every = 0 // a line per update, to observe it
	b.Add64(1 << 20)
	b.Write(make([]byte, 2<<20))
	b.Finish()
	b.Finish() // idempotent

	out := buf.String()
	if strings.Contains(out, "\x1b") {
		t.Fatalf("escape sequences in log mode: %q", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3: %q", len(lines), out)
	}
	if last := lines[2]; !strings.Contains(last, "3.0 MiB / 3.0 MiB (100%)") {
		t.Errorf("final line %q lacks the total", last)
	}
}

func TestQuietPrintsNothing(t *testing.T) {
	var buf bytes.Buffer
	old, oldQ := Output, Quiet
	Output, Quiet = &buf, true
	defer func() { Output, Quiet = old, oldQ }()
	b := New("x", 10)
	b.Add64(10)
	b.Finish()
	Logf("step")
	if buf.Len() != 0 {
		t.Fatalf("quiet printed %q", buf.String())
	}
}

func TestHuman(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 31998345216: "29.8 GiB"} {
		if got := human(n); got != want {
			t.Errorf("human(%d) = %q, want %q", n, got, want)
		}
	}
}

// A counting bar's log lines count items, not bytes.
func TestCountLines(t *testing.T) {
	var buf bytes.Buffer
	old := Output
	Output = &buf
	defer func() { Output = old }()
	b := NewCount("rootfs: installing", "packages", 200)
	b.every = 0
	b.Add64(50)
	b.Finish()
	out := buf.String()
	if !strings.Contains(out, "rootfs: installing: 50/200 packages (25%), ") || strings.Contains(out, "B") {
		t.Fatalf("count lines: %q", out)
	}
}
