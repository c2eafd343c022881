// Package auth checks passwords and client certificates the way the
// original director's login_required and cert_required did, with the
// hashes upgraded (the original stored unsalted MD5; cps stores bcrypt and
// upgrades an MD5 hash at the user's next login), bcrypt work capped so a
// flood of wrong passwords cannot starve everything else, and per-address
// rate limits on the password routes.
package auth

import (
	"context"
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/certs"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/db"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/names"
	"golang.org/x/crypto/bcrypt"
)

// Cost is the bcrypt work factor (~50-100 ms per check on a small VM:
// slow for guessing, fine for the occasional login).
const Cost = 11

// MinPasswordLength for passwords set through cpsdirector.
const MinPasswordLength = 8

// HashPassword returns the bcrypt hash of pw.
func HashPassword(pw string) (string, error) {
	if err := ValidatePassword(pw); err != nil {
		return "", err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), Cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// ValidatePassword enforces length limits (bcrypt ignores bytes past 72).
func ValidatePassword(pw string) error {
	switch {
	case len(pw) < MinPasswordLength:
		return fmt.Errorf("password too short: use at least %d characters", MinPasswordLength)
	case len(pw) > 72:
		return errors.New("password too long: bcrypt uses at most 72 bytes")
	}
	return nil
}

// ValidateUsername allows printable names without spaces or control
// characters, up to 80 bytes (the original's column).
func ValidateUsername(u string) error {
	if u == "" || len(u) > 80 || !utf8.ValidString(u) {
		return errors.New("user name must be 1 to 80 bytes of UTF-8")
	}
	for _, r := range u {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("user name %q contains spaces or control characters", u)
		}
	}
	return nil
}

// MaxEmailLength is the size of the user table's email column
// (VARCHAR(256)); MySQL and PostgreSQL refuse longer values.
const MaxEmailLength = 256

// ValidateEmail accepts what a certificate can carry: getcerts puts the
// address in the subject's emailAddress, an IA5String (ASCII). A UTF-8
// address there makes a certificate that Go's TLS stack (the director's
// own included) refuses to parse, so the user could never use it.
func ValidateEmail(e string) error {
	if len(e) > MaxEmailLength {
		return fmt.Errorf("e-mail address too long: at most %d characters", MaxEmailLength)
	}
	for i := 0; i < len(e); i++ {
		if e[i] < 0x20 || e[i] > 0x7e {
			return fmt.Errorf("e-mail address %q: use ASCII characters only (it goes into the certificate)", e)
		}
	}
	return nil
}

var md5Hex = regexp.MustCompile(`^[0-9a-f]{32}$`)

// IsLegacy reports a hash in the original's format (hex MD5).
func IsLegacy(hash string) bool { return md5Hex.MatchString(hash) }

// Checker checks passwords with a bounded share of the CPU: each bcrypt
// comparison takes a core for ~50-100 ms, so unbounded logins (a
// wrong-password flood, from any number of addresses) would take every
// core from the requests that authenticate with certificates. At most half
// the cores run bcrypt (or a getcerts key generation) at once, and at most
// PerSecond of them start each second; the rest wait, then get ErrBusy.
type Checker struct {
	DB  *db.DB
	sem chan struct{}
	// Wait bounds the wait for a slot; past it the login is refused as
	// busy (ErrBusy) rather than queued without end.
	Wait   time.Duration
	budget *RateLimiter

	dummyOnce sync.Once
	dummy     []byte
}

// NewChecker allows half the CPUs (at least one) to run bcrypt.
func NewChecker(d *db.DB) *Checker {
	n := runtime.GOMAXPROCS(0) / 2
	if n < 1 {
		n = 1
	}
	return &Checker{DB: d, sem: make(chan struct{}, n), Wait: 10 * time.Second, budget: NewRateLimiter(PerSecond, 2*PerSecond)}
}

// PerSecond is how many password checks (or key generations) may start
// each second, director-wide: a fifth of a core at bcrypt cost 11.
const PerSecond = 2

// ErrBadLogin is returned for an unknown user or a wrong password alike.
var ErrBadLogin = errors.New("User authentication failed")

// ErrBusy is returned when too many password checks are queued.
var ErrBusy = errors.New("too many logins in progress, try again shortly")

// Do runs fn, CPU-heavy work of a password route (bcrypt, RSA key
// generation), in one of the capped slots.
func (c *Checker) Do(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(c.Wait)
	for !c.budget.Allow("director", time.Now()) {
		if time.Now().After(deadline) {
			return ErrBusy
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case c.sem <- struct{}{}:
	case <-t.C:
		return ErrBusy
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.sem }()
	return fn()
}

func (c *Checker) bcrypt(ctx context.Context, hash, pw []byte) error {
	return c.Do(ctx, func() error { return bcrypt.CompareHashAndPassword(hash, pw) })
}

// Hash is HashPassword in a capped slot.
func (c *Checker) Hash(ctx context.Context, pw string) (string, error) {
	var h string
	err := c.Do(ctx, func() error {
		var err error
		h, err = HashPassword(pw)
		return err
	})
	return h, err
}

// Login checks username and password. An unknown user costs the same
// bcrypt work as a known one, so timing does not reveal which names exist.
// An original MD5 hash that matches is replaced by a bcrypt one.
func (c *Checker) Login(ctx context.Context, username, password string) (*db.User, error) {
	u, err := c.DB.UserByName(ctx, names.Normalize(username))
	if errors.Is(err, db.ErrNotFound) {
		c.dummyOnce.Do(func() { c.dummy, _ = bcrypt.GenerateFromPassword([]byte("not a password at all"), Cost) })
		if err := c.bcrypt(ctx, c.dummy, []byte(password)); errors.Is(err, ErrBusy) {
			return nil, err
		}
		return nil, ErrBadLogin
	}
	if err != nil {
		return nil, err
	}
	stored := u.Password.String
	if IsLegacy(stored) {
		sum := md5.Sum([]byte(password))
		if subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(stored)) != 1 {
			return nil, ErrBadLogin
		}
		// Upgrade; a password bcrypt cannot hold (over 72 bytes) keeps MD5.
		if len(password) <= 72 {
			var h []byte
			if err := c.Do(ctx, func() (err error) { h, err = bcrypt.GenerateFromPassword([]byte(password), Cost); return }); err == nil {
				if err := c.DB.UpgradePassword(ctx, u.UID, stored, string(h)); err == nil {
					u.Password.String = string(h)
				}
			}
		}
		return u, nil
	}
	if err := c.bcrypt(ctx, []byte(stored), []byte(password)); err != nil {
		if errors.Is(err, ErrBusy) {
			return nil, err
		}
		return nil, ErrBadLogin
	}
	return u, nil
}

// CertError is why a certificate was refused, with the status the
// original answered (401 and its text when the certificate lacks a field;
// 200 and `false` when it names no such user or application).
type CertError struct {
	Status int
	Msg    string
}

func (e *CertError) Error() string { return e.Msg }

// The original's texts.
const (
	msgNoUID     = "cert_required: client certificate does NOT provide UID"
	msgNoLocator = "cert_required: client certificate does NOT provide serviceLocator"
)

// CertUser returns the user a verified client certificate names, as the
// original's cert_required did, and checks what it did not: the role is
// the one the route needs (user routes take user certificates, manager
// routes manager certificates), and the certificate was not revoked
// (issued before the user's last password reset; a deleted user's id never
// comes back).
func CertUser(ctx context.Context, d *db.DB, id *certs.Identity, role string) (*db.User, error) {
	if id == nil {
		return nil, &CertError{401, msgNoUID}
	}
	uid, err := id.ParseUID()
	if err != nil {
		return nil, &CertError{401, msgNoUID}
	}
	u, err := d.UserByID(ctx, uid)
	if errors.Is(err, db.ErrNotFound) {
		return nil, &CertError{200, "false"}
	}
	if err != nil {
		return nil, err
	}
	if role == certs.RoleManager {
		if _, err := parseLocator(id.ServiceLocator); err != nil {
			return nil, &CertError{401, msgNoLocator}
		}
	}
	if id.Role != role {
		return nil, &CertError{403, fmt.Sprintf("a %s certificate cannot call this route (it needs a %s certificate)", strings.TrimSpace(id.Role+" "), role)}
	}
	if role == certs.RoleUser {
		g := certs.Generation(id.Serial)
		if g != u.CertGen && !(g == -1 && u.CertGen == 0) {
			return nil, &CertError{401, "this certificate was revoked (the password was reset): get new certificates with getcerts"}
		}
		if id.CN != u.Username {
			return nil, &CertError{401, "the certificate's CN does not match the user"}
		}
	}
	return u, nil
}

func parseLocator(s string) (int64, error) {
	var n int64
	_, err := fmt.Sscan(s, &n)
	if err != nil || fmt.Sprint(n) != strings.TrimSpace(s) {
		return 0, errors.New("bad serviceLocator")
	}
	return n, nil
}

// Locator is the application id of a manager certificate.
func Locator(id *certs.Identity) int64 {
	n, _ := parseLocator(id.ServiceLocator)
	return n
}
