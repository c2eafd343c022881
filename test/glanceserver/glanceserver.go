// Package glanceserver starts Debian's real glance-api for tests: bound to
// 127.0.0.1 on a free port, no Keystone (noauth paste pipeline), a SQLite
// database made with glance-manage db_sync and the file store in a temp dir.
package glanceserver

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/conpaas/cps/internal/testutil"
)

// StartTimeout bounds how long glance-api may take to answer.
var StartTimeout = 180 * time.Second

// Server is a running glance-api.
type Server struct {
	URL      string // e.g. http://127.0.0.1:40123
	StoreDir string // where the file store keeps image data
	Log      string // glance-api's log file

	api, conf string
	stop      func(syscall.Signal)
}

const confTmpl = `[DEFAULT]
bind_host = 127.0.0.1
bind_port = %d
workers = 1
debug = false
log_file = %s
# No Keystone: the paste pipeline without authtoken, every request is an admin context.
auth_strategy = noauth
image_cache_dir = %s
[database]
connection = sqlite:///%s
[paste_deploy]
flavor =
config_file = %s
[glance_store]
stores = file,http
default_store = file
filesystem_store_datadir = %s
[oslo_concurrency]
lock_path = %s
[oslo_policy]
policy_file = %s
`

// policy lets the noauth context (no roles) make public images, which
// Glance's default policy leaves to role:admin: a cloud's admin does it
// (the Nutshell's first boot registers its services image public).
const policy = `"publicize_image": ""
`

// Start runs glance-api until the test ends. It fails the test (with the
// server log) if glance-api does not answer within StartTimeout.
func Start(t testing.TB) *Server {
	t.Helper()
	api := testutil.RequireTool(t, "glance-api")
	manage := testutil.RequireTool(t, "glance-manage")
	paste := "/etc/glance/glance-api-paste.ini"
	if _, err := os.Stat(paste); err != nil {
		// dpkg may have left the shipped file as .dpkg-new when /etc/glance existed.
		if _, err2 := os.Stat(paste + ".dpkg-new"); err2 == nil {
			paste += ".dpkg-new"
		} else {
			t.Fatalf("glance-api is installed but %s is missing: reinstall glance-api (scripts/deps.sh glance)", paste)
		}
	}
	dir := t.TempDir()
	store := filepath.Join(dir, "images")
	for _, d := range []string{store, filepath.Join(dir, "cache"), filepath.Join(dir, "lock")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	port := testutil.FreePort(t)
	logFile := filepath.Join(dir, "glance-api.log")
	conf := filepath.Join(dir, "glance-api.conf")
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(confTmpl, port, logFile, filepath.Join(dir, "cache"), filepath.Join(dir, "glance.sqlite"),
		paste, store, filepath.Join(dir, "lock"), policyFile)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, manage, "--config-file", conf, "db_sync").CombinedOutput()
	if err != nil {
		t.Fatalf("glance-manage db_sync: %v\n%s", err, tail(out))
	}

	s := &Server{URL: "http://127.0.0.1:" + strconv.Itoa(port), StoreDir: store, Log: logFile, api: api, conf: conf}
	s.run(t)
	return s
}

// run starts glance-api and waits until it answers.
func (s *Server) run(t testing.TB) {
	t.Helper()
	cmd := exec.Command(s.api, "--config-file", s.conf)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	// Own process group: glance-api forks workers, and all must go.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start glance-api: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var once sync.Once
	stop := func(sig syscall.Signal) {
		once.Do(func() {
			_ = syscall.Kill(-cmd.Process.Pid, sig)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-exited
			}
		})
	}
	s.stop = stop
	t.Cleanup(func() { stop(syscall.SIGTERM) })

	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	logs := func() string {
		b, _ := os.ReadFile(s.Log)
		return string(tail(append(stderr.Bytes(), b...)))
	}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/v2/images", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("glance-api exited before answering: %v\n%s", err, logs())
		case <-ctx.Done():
			t.Fatalf("glance-api did not answer on %s within %v\n%s", s.URL, StartTimeout, logs())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Kill kills glance-api with SIGKILL, as a crash or an OOM kill would:
// an upload in progress leaves its image "saving".
func (s *Server) Kill() { s.stop(syscall.SIGKILL) }

// Restart starts glance-api again on the same database, store and port.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.run(t)
}

func tail(b []byte) []byte {
	if len(b) > 4000 {
		return b[len(b)-4000:]
	}
	return b
}
