package main

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
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
