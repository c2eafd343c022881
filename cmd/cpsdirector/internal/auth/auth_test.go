package auth

import (
	"context"
	"crypto/md5"
	"database/sql"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/config"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/db"
)

func testDB(t *testing.T) *db.DB {
	p := filepath.Join(t.TempDir(), "d.db")
	d, err := db.Open(context.Background(), config.Database{Driver: "sqlite", Path: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// CPU-heavy work of the password routes runs in capped slots: never more
// than the slots at once, never more than PerSecond (after a burst) per
// second, whatever the number of callers.
func TestCheckerCapsWork(t *testing.T) {
	c := NewChecker(testDB(t))
	var running, most atomic.Int32
	var mu sync.Mutex
	var starts []time.Time
	var wg sync.WaitGroup
	begin := time.Now()
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.Do(context.Background(), func() error {
				n := running.Add(1)
				for {
					m := most.Load()
					if n <= m || most.CompareAndSwap(m, n) {
						break
					}
				}
				mu.Lock()
				starts = append(starts, time.Now())
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
				running.Add(-1)
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if int(most.Load()) > cap(c.sem) {
		t.Fatalf("%d ran at once, cap %d", most.Load(), cap(c.sem))
	}
	// 12 starts with a burst of 2*PerSecond and PerSecond more each second.
	if took, min := time.Since(begin), time.Duration(12-2*PerSecond)*time.Second/PerSecond; took < min-200*time.Millisecond {
		t.Fatalf("12 runs took %s, the budget allows no less than %s", took, min)
	}
	// Past Wait, callers are turned away instead of queueing.
	c.Wait = 200 * time.Millisecond
	busy := 0
	for i := 0; i < 10; i++ {
		if err := c.Do(context.Background(), func() error { return nil }); errors.Is(err, ErrBusy) {
			busy++
		}
	}
	if busy == 0 {
		t.Fatal("no caller was turned away")
	}
}

// An original MD5 hash logs in once and is replaced by bcrypt; wrong
// passwords and unknown users fail alike.
func TestLoginUpgradesMD5(t *testing.T) {
	d := testDB(t)
	sum := md5.Sum([]byte("old-password"))
	u, err := d.CreateUser(context.Background(), db.NewUser{Username: "alice", Key: "alice", PasswordHash: hex.EncodeToString(sum[:]),
		Email: sql.NullString{String: "a@x", Valid: true}})
	if err != nil {
		t.Fatal(err)
	}
	c := NewChecker(d)
	ctx := context.Background()
	for _, pw := range []string{"wrong", hex.EncodeToString(sum[:])} {
		if _, err := c.Login(ctx, "alice", pw); !errors.Is(err, ErrBadLogin) {
			t.Fatalf("password %q: %v", pw, err)
		}
	}
	if _, err := c.Login(ctx, "nobody", "old-password"); !errors.Is(err, ErrBadLogin) {
		t.Fatal(err)
	}
	if _, err := c.Login(ctx, "alice", "old-password"); err != nil {
		t.Fatal(err)
	}
	after, _ := d.UserByID(ctx, u.UID)
	if IsLegacy(after.Password.String) || after.Password.String[:4] != "$2a$" {
		t.Fatalf("hash after login %q", after.Password.String)
	}
	if _, err := c.Login(ctx, "alice", "old-password"); err != nil {
		t.Fatalf("login after the upgrade: %v", err)
	}
}

func TestRateLimiter(t *testing.T) {
	l := NewRateLimiter(2, 3)
	now := time.Unix(1000, 0)
	ok := 0
	for i := 0; i < 10; i++ {
		if l.Allow("192.0.2.1:1234", now) {
			ok++
		}
	}
	if ok != 3 {
		t.Fatalf("burst allowed %d, want 3", ok)
	}
	if !l.Allow("192.0.2.2:1", now) {
		t.Fatal("another address was limited")
	}
	if !l.Allow("192.0.2.1:999", now.Add(600*time.Millisecond)) || l.Allow("192.0.2.1:999", now.Add(600*time.Millisecond)) {
		t.Fatal("refill at 2 per second")
	}
	// IPv6 addresses of one /64 share a bucket.
	for i := 0; i < 3; i++ {
		l.Allow("[2001:db8::1]:1", now)
	}
	if l.Allow("[2001:db8::ffff]:2", now) {
		t.Fatal("the /64 was not limited as one")
	}
}

// TestValidateEmail: getcerts writes the address into the certificate's
// emailAddress, an IA5String; a non-ASCII one made a certificate the
// director's own TLS stack could not parse (the user was locked out of
// every certificate route), and one longer than the VARCHAR(256) column
// failed on MySQL/PostgreSQL with an unexplained error.
func TestValidateEmail(t *testing.T) {
	for _, c := range []struct {
		email string
		ok    bool
	}{
		{"alice@example.org", true},
		{"not-an-email", true}, // the original accepted any text
		{"o'brien+x@example.org", true},
		{strings.Repeat("x", MaxEmailLength), true},
		{strings.Repeat("x", MaxEmailLength+1), false},
		{"é@example.org", false},
		{"a@exämple.org", false},
		{"a\x00b@example.org", false},
		{"a\nb@example.org", false},
		{"\xff@example.org", false},
	} {
		if err := ValidateEmail(c.email); (err == nil) != c.ok {
			t.Errorf("ValidateEmail(%q) = %v, want ok=%v", c.email, err, c.ok)
		}
	}
}
