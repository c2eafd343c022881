// Package progress reports long work: a pb/v3 bar when stderr is a terminal,
// and plain log lines (at most one every few seconds) otherwise, so CI logs
// stay readable.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cheggaaa/pb/v3"
	"golang.org/x/term"
)

// Bar counts bytes (or items) towards a total.
type Bar struct {
	bar   *pb.ProgressBar
	label string
	unit  string // "" for bytes, else what is counted ("packages")
	total int64
	n     atomic.Int64
	out   io.Writer
	start time.Time
	mu    sync.Mutex
	last  time.Time
	every time.Duration
	done  bool
}

// UI is where a library reports its progress: the binary makes one (it
// knows the terminal and the flags) and passes it down, as builders.Options
// does. A nil *UI reports nothing, so a library used without one is quiet.
type UI struct {
	Out   io.Writer // stderr, usually
	Quiet bool      // report nothing
}

// Output is where the package-level functions' bars and lines go; tests
// may replace it. Only callers not yet given a UI use them.
var Output io.Writer = os.Stderr

// Quiet disables the package-level functions' output.
var Quiet bool

// Default is the UI of Output and Quiet, as they are now: what cpsimage
// hands its libraries.
func Default() *UI { return &UI{Out: Output, Quiet: Quiet} }

func (u *UI) writer() io.Writer {
	if u == nil || u.Quiet || u.Out == nil {
		return io.Discard
	}
	return u.Out
}

// New starts a bar for total bytes (0 if unknown) labelled label.
func (u *UI) New(label string, total int64) *Bar { return newBar(u.writer(), label, "", total) }

// NewCount starts a bar counting items (unit, e.g. "packages") towards
// total.
func (u *UI) NewCount(label, unit string, total int64) *Bar {
	return newBar(u.writer(), label, unit, total)
}

// Logf prints a plain progress line (a step starting or ending).
func (u *UI) Logf(format string, args ...any) {
	if w := u.writer(); w != io.Discard {
		fmt.Fprintf(w, format+"\n", args...)
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// New is Default().New.
func New(label string, total int64) *Bar { return Default().New(label, total) }

// NewCount is Default().NewCount.
func NewCount(label, unit string, total int64) *Bar { return Default().NewCount(label, unit, total) }

func newBar(out io.Writer, label, unit string, total int64) *Bar {
	b := &Bar{label: label, unit: unit, total: total, out: out, start: time.Now(), every: 5 * time.Second}
	b.last = b.start
	if out == io.Discard {
		return b
	}
	if isTerminal(b.out) {
		b.bar = pb.New64(total)
		tmpl := `{{string . "label"}} {{counters . }} {{bar . }} {{percent . }} {{speed . }} {{rtime . "ETA %s"}}`
		if unit == "" {
			b.bar.Set(pb.Bytes, true)
		} else {
			tmpl = `{{string . "label"}} {{counters . }} ` + unit + ` {{bar . }} {{percent . }} {{etime . }}`
		}
		b.bar.SetTemplateString(tmpl)
		b.bar.Set("label", label)
		b.bar.SetWriter(b.out)
		b.bar.Start()
	}
	return b
}

// Add64 implements checksum.Progress and friends.
func (b *Bar) Add64(n int64) {
	v := b.n.Add(n)
	if b.bar != nil {
		b.bar.Add64(n)
		return
	}
	if b.out == io.Discard {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if now := time.Now(); now.Sub(b.last) >= b.every {
		b.last = now
		b.line(v, now)
	}
}

// Write lets a Bar count an io.Writer's bytes (io.TeeReader, io.MultiWriter).
func (b *Bar) Write(p []byte) (int, error) { b.Add64(int64(len(p))); return len(p), nil }

func (b *Bar) line(v int64, now time.Time) {
	if b.unit != "" {
		if b.total > 0 {
			fmt.Fprintf(b.out, "%s: %d/%d %s (%.0f%%), %s\n", b.label, v, b.total, b.unit, 100*float64(v)/float64(b.total), now.Sub(b.start).Round(time.Second))
		} else {
			fmt.Fprintf(b.out, "%s: %d %s, %s\n", b.label, v, b.unit, now.Sub(b.start).Round(time.Second))
		}
		return
	}
	el := now.Sub(b.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(v) / el / (1 << 20)
	}
	if b.total > 0 {
		fmt.Fprintf(b.out, "%s: %s / %s (%.0f%%), %.1f MiB/s\n", b.label, human(v), human(b.total), 100*float64(v)/float64(b.total), rate)
	} else {
		fmt.Fprintf(b.out, "%s: %s, %.1f MiB/s\n", b.label, human(v), rate)
	}
}

// Finish ends the bar and prints a final line in log mode.
func (b *Bar) Finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.done = true
	if b.bar != nil {
		b.bar.Finish()
		return
	}
	if b.out != io.Discard {
		b.line(b.n.Load(), time.Now())
	}
}

func human(n int64) string {
	const u = 1024
	if n < u {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(u), 0
	for m := n / u; m >= u; m /= u {
		div *= u
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Logf is Default().Logf.
func Logf(format string, args ...any) { Default().Logf(format, args...) }
