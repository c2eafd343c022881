// Package s3server starts a real S3 server for tests: the Versity S3 Gateway
// (versitygw) with its posix backend in a temp dir, bound to 127.0.0.1 on a
// free port. scripts/deps/s3.sh builds it into /var/cache/cps/bin.
package s3server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/conpaas/cps/internal/testutil"
)

// Region is the region the server signs for.
const Region = "us-east-1"

// StartTimeout bounds how long the server may take to answer.
var StartTimeout = 30 * time.Second

// Binary finds versitygw: $CPS_S3_SERVER, the deps cache, then $PATH.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CPS_S3_SERVER"); p != "" {
		return p
	}
	if p := "/var/cache/cps/bin/versitygw"; isExec(p) {
		return p
	}
	return testutil.RequireTool(t, "versitygw")
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// Start runs the server until the test ends and returns its endpoint
// (http://127.0.0.1:PORT) and root credentials (random per server). Buckets
// are directories under a temp dir.
func Start(t testing.TB) (endpoint, accessKey, secretKey string) {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	accessKey = "CPS" + randHex(t, 8)
	secretKey = randHex(t, 20)
	port := testutil.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, "--access", accessKey, "--secret", secretKey, "--region", Region,
		"--port", addr, "posix", data)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	endpoint = "http://" + addr
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	for {
		// Any HTTP answer (an unsigned request gets 403) means it is serving.
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			return endpoint, accessKey, secretKey
		}
		select {
		case err := <-exited:
			t.Fatalf("S3 server exited before answering: %v\n%s", err, out.String())
		case <-ctx.Done():
			t.Fatalf("S3 server did not answer on %s within %v\n%s", endpoint, StartTimeout, out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func randHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
