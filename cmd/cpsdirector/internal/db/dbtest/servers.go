package dbtest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/conpaas/cps/internal/testutil"
)

// need finds a server binary; without it the test skips, or fails when
// CPS_REQUIRE_TOOLS=1 (make test installed it: scripts/deps/director.list).
func need(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin"} {
			if p := filepath.Join(dir, n); isExec(p) {
				return p
			}
		}
	}
	if testutil.Strict() {
		t.Fatalf("%s is missing: run scripts/deps.sh director", names[0])
	}
	t.Skipf("%s is missing (scripts/deps.sh director installs it)", names[0])
	return ""
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode()&0o111 != 0
}

// sharedDir is a temporary directory another user can use (the servers
// refuse to run as root, so they run as nobody when the test is root).
func sharedDir(t *testing.T, cred *syscall.Credential) string {
	d, err := os.MkdirTemp("", "cps-db-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if cred != nil {
		if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func nobody() *syscall.Credential {
	if os.Getuid() != 0 {
		return nil
	}
	return &syscall.Credential{Uid: 65534, Gid: 65534}
}

func runAs(ctx context.Context, cred *syscall.Credential, name string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, name, args...)
	if cred != nil {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	return c
}

// serve starts a server process, stopping it (SIGTERM, then SIGKILL) when
// the test ends.
func serve(t *testing.T, cmd *exec.Cmd, log string) {
	t.Helper()
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
}

func waitSQL(t *testing.T, driver, dsn, log string) {
	t.Helper()
	end := time.Now().Add(60 * time.Second)
	for {
		db, err := sql.Open(driver, dsn)
		if err == nil {
			err = db.Ping()
			db.Close()
		}
		if err == nil {
			return
		}
		if time.Now().After(end) {
			b, _ := os.ReadFile(log)
			t.Fatalf("%s did not start: %v\n%s", driver, err, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// MariaDB starts a real mariadbd (Debian's mariadb-server) in a temporary
// directory on 127.0.0.1 and returns a DATABASE_URI for a new, empty
// database with its own user.
func MariaDB(t *testing.T) string {
	t.Helper()
	server := need(t, "mariadbd", "mysqld")
	install := need(t, "mariadb-install-db", "mysql_install_db")
	cred := nobody()
	dir := sharedDir(t, cred)
	ctx := context.Background()
	data := filepath.Join(dir, "data")
	user := "--user=" + map[bool]string{true: "nobody", false: os.Getenv("USER")}[cred != nil]
	args := []string{"--no-defaults", "--datadir=" + data, "--auth-root-authentication-method=normal", "--skip-test-db"}
	if cred != nil {
		args = append(args, user)
	}
	if out, err := runAs(ctx, cred, install, args...).CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	port := testutil.FreePort(t)
	sock := filepath.Join(dir, "mysqld.sock")
	sargs := []string{"--no-defaults", "--datadir=" + data, "--socket=" + sock, fmt.Sprintf("--port=%d", port),
		"--bind-address=127.0.0.1", "--pid-file=" + filepath.Join(dir, "mysqld.pid"), "--skip-log-bin",
		"--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M", "--performance-schema=OFF", "--skip-name-resolve"}
	if cred != nil {
		sargs = append(sargs, user)
	}
	serve(t, runAs(ctx, cred, server, sargs...), filepath.Join(dir, "mysqld.log"))
	// mariadb-install-db's "normal" root: no password, local socket.
	root := fmt.Sprintf("root@unix(%s)/", sock)
	waitSQL(t, "mysql", root, filepath.Join(dir, "mysqld.log"))
	db, err := sql.Open("mysql", root+"?multiStatements=true")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	name := "cps_" + strings.ToLower(strings.NewReplacer("/", "_", "-", "_").Replace(t.Name()))
	if len(name) > 60 {
		name = name[:60]
	}
	if _, err := db.Exec(fmt.Sprintf("CREATE DATABASE `%s`; CREATE USER 'cps'@'127.0.0.1' IDENTIFIED BY 'cps-Pass_1'; GRANT ALL ON `%s`.* TO 'cps'@'127.0.0.1'", name, name)); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("mysql://cps:cps-Pass_1@127.0.0.1:%d/%s", port, name)
}

// PostgreSQL starts a real PostgreSQL server (Debian's postgresql) in a
// temporary directory on 127.0.0.1 and returns a DATABASE_URI with
// password authentication.
func PostgreSQL(t *testing.T) string {
	t.Helper()
	initdb := need(t, "initdb")
	server := need(t, "postgres")
	cred := nobody()
	dir := sharedDir(t, cred)
	ctx := context.Background()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("cps-Pass_1\n"), 0o600)
	if cred != nil {
		os.Chown(pw, int(cred.Uid), int(cred.Gid))
	}
	data := filepath.Join(dir, "data")
	if out, err := runAs(ctx, cred, initdb, "-D", data, "-U", "cps", "--pwfile="+pw, "--auth=scram-sha-256", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := testutil.FreePort(t)
	serve(t, runAs(ctx, cred, server, "-D", data, "-p", fmt.Sprint(port), "-k", dir, "-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "shared_buffers=16MB", "-c", "max_connections=100"), filepath.Join(dir, "postgres.log"))
	uri := fmt.Sprintf("postgresql://cps:cps-Pass_1@127.0.0.1:%d/postgres", port)
	waitSQL(t, "pgx", fmt.Sprintf("postgres://cps:cps-Pass_1@127.0.0.1:%d/postgres", port), filepath.Join(dir, "postgres.log"))
	return uri
}
