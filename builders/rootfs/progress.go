package rootfs

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"

	"github.com/conpaas/cps/internal/progress"
)

// mmProgress turns the output of mmdebstrap --verbose into progress: each
// of its steps ("I: installing essential packages...") as a log line, and
// while apt and dpkg work, a bar: packages downloaded ("Get:" lines)
// towards the count apt announces ("N newly installed"), then dpkg's
// unpack and set-up steps ("Unpacking", "Setting up": two per package, as
// mmdebstrap counts them for its own terminal bar). It is the command's
// io.Writer and keeps the whole output in out for the error messages.
type mmProgress struct {
	ui      *progress.UI
	out     *bytes.Buffer
	partial []byte
	step    string // mmdebstrap's current step
	mode    string // "download", "dpkg" or "" (nothing to count)
	last    int64  // packages of the last apt run
	done    int64
	bar     *progress.Bar
}

var newlyInstalled = regexp.MustCompile(`^\d+ upgraded, (\d+) newly installed`)

func (m *mmProgress) Write(p []byte) (int, error) {
	m.out.Write(p)
	m.partial = append(m.partial, p...)
	for {
		i := bytes.IndexByte(m.partial, '\n')
		if i < 0 {
			break
		}
		m.line(strings.TrimRight(string(m.partial[:i]), "\r"))
		m.partial = m.partial[i+1:]
	}
	return len(p), nil
}

func (m *mmProgress) line(l string) {
	switch {
	case strings.HasPrefix(l, "I: "):
		step := strings.TrimSuffix(strings.TrimPrefix(l, "I: "), "...")
		if step == m.step {
			return
		}
		m.finish()
		m.step = step
		m.ui.Logf("rootfs: %s", step)
		switch {
		case strings.HasPrefix(step, "downloading packages"), strings.HasPrefix(step, "installing remaining packages"):
			m.count("download") // apt: downloads, then dpkg
		case strings.HasPrefix(step, "installing essential packages"):
			m.count("dpkg") // dpkg installs what apt downloaded
		default:
			m.count("")
		}
	case newlyInstalled.MatchString(l):
		m.last, _ = strconv.ParseInt(newlyInstalled.FindStringSubmatch(l)[1], 10, 64)
		if m.mode != "" {
			m.count(m.mode)
		}
	case m.mode == "download" && strings.HasPrefix(l, "Get:"):
		m.add()
	case strings.HasPrefix(l, "Unpacking ") || strings.HasPrefix(l, "Setting up "):
		if m.mode == "download" {
			m.count("dpkg")
		}
		if m.mode == "dpkg" {
			m.add()
		}
	}
}

// count starts counting for mode from zero; the bar appears with the
// first item counted.
func (m *mmProgress) count(mode string) {
	m.finish()
	m.mode, m.done = mode, 0
}

func (m *mmProgress) add() {
	if m.bar == nil {
		if m.mode == "download" {
			m.bar = m.ui.NewCount("rootfs: "+m.step, "packages downloaded", m.last)
		} else {
			m.bar = m.ui.NewCount("rootfs: "+m.step, "dpkg steps (unpack and set up each package)", 2*m.last)
		}
	}
	m.done++
	m.bar.Add64(1)
}

func (m *mmProgress) finish() {
	if m.bar != nil {
		m.bar.Finish()
		m.bar = nil
	}
}
