package main

import (
	"bytes"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for cpsimage: with
// CPSIMAGE_TEST_AS_MAIN=1 it runs main() instead of the tests, so tests
// can start real processes (signals, FIFOs, stdin) without a go build.
func TestMain(m *testing.M) {
	if os.Getenv("CPSIMAGE_TEST_AS_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// cpsimage returns a command running cpsimage with args as its own process.
func cpsimage(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "CPSIMAGE_TEST_AS_MAIN=1")
	return cmd
}

// runProc runs cpsimage as a process and returns its exit code, stdout
// and stderr.
func runProc(t testing.TB, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	cmd := cpsimage(t, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// runKilledAfter runs cmd (from cpsimage) and returns its exit code and
// stderr; it kills the process after limit, so that a run that hangs
// (blocked in open(2) on a FIFO, say) fails its test instead of blocking it.
func runKilledAfter(t testing.TB, limit time.Duration, cmd *exec.Cmd) (int, string) {
	t.Helper()
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(limit, func() { cmd.Process.Kill() })
	cmd.Wait()
	timer.Stop()
	return cmd.ProcessState.ExitCode(), errb.String()
}

// The first SIGINT cancels; a second one soon after is the same interrupt
// delivered twice (`timeout -s INT` signals the process, then its group)
// and used to kill the run mid-clean-up, leaving .NAME.tmp-* files; a
// second one later still ends the process at once.
func TestInterruptContext(t *testing.T) {
	tests := []struct {
		name    string
		window  time.Duration
		gap     time.Duration // between the two signals
		wantDie bool
	}{
		{"twice at once (timeout -s INT)", time.Second, 0, false},
		{"twice within the window", time.Second, 100 * time.Millisecond, false},
		{"again after the window", 50 * time.Millisecond, 150 * time.Millisecond, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			died := make(chan os.Signal, 2)
			ctx, stop := interruptContext(tc.window, func(s os.Signal) { died <- s })
			defer stop()
			syscall.Kill(os.Getpid(), syscall.SIGINT)
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the first SIGINT did not cancel the context")
			}
			time.Sleep(tc.gap)
			syscall.Kill(os.Getpid(), syscall.SIGINT)
			select {
			case s := <-died:
				if !tc.wantDie {
					t.Errorf("the second signal ended the process (%v)", s)
				}
			case <-time.After(300 * time.Millisecond):
				if tc.wantDie {
					t.Error("a second signal after the window did not end the process")
				}
			}
		})
	}
}
