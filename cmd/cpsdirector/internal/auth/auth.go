// Package auth checks passwords (bcrypt) and turns a request's verified
// client certificate into the director user it was issued to.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/conpaas/cps/cmd/cpsdirector/internal/certs"
	"github.com/conpaas/cps/cmd/cpsdirector/internal/db"
	"golang.org/x/crypto/bcrypt"
)

// Cost is the bcrypt work factor (~50-100 ms per check on a small VM:
// slow for guessing, fine for the occasional login).
const Cost = 11

// MinPasswordLength for new passwords.
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
// characters, up to 64 bytes.
func ValidateUsername(u string) error {
	if u == "" || len(u) > 64 || !utf8.ValidString(u) {
		return errors.New("user name must be 1 to 64 bytes of UTF-8")
	}
	for _, r := range u {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("user name %q contains spaces or control characters", u)
		}
	}
	return nil
}

var (
	dummyOnce sync.Once
	dummyHash []byte
)

// ErrBadLogin is returned for an unknown user or a wrong password alike.
var ErrBadLogin = errors.New("wrong user name or password")

// Login checks username and password. An unknown user costs the same
// bcrypt work as a known one, so timing does not reveal which names exist.
func Login(ctx context.Context, d *db.DB, username, password string) (*db.User, error) {
	u, err := d.UserByName(ctx, username)
	if errors.Is(err, db.ErrNotFound) {
		dummyOnce.Do(func() { dummyHash, _ = bcrypt.GenerateFromPassword([]byte("not a password at all"), Cost) })
		bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return nil, ErrBadLogin
	}
	if err != nil {
		return nil, err
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) != nil {
		return nil, ErrBadLogin
	}
	return u, nil
}

// ErrNoCert means the request carries no verified client certificate.
var ErrNoCert = errors.New("no client certificate: run `cpsdirector client user get_certificate` first")

// CertIdentity returns the identity in the request's verified client
// certificate. The TLS layer already checked it chains to the CA.
func CertIdentity(r *http.Request) (certs.Identity, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return certs.Identity{}, ErrNoCert
	}
	return certs.IdentityOf(r.TLS.VerifiedChains[0][0])
}

// UserFromRequest returns the user a request's certificate was issued
// to. The user must still exist, so deleting an account revokes its
// certificates.
func UserFromRequest(ctx context.Context, d *db.DB, r *http.Request) (*db.User, error) {
	id, err := CertIdentity(r)
	if err != nil {
		return nil, err
	}
	if id.Role != certs.RoleUser {
		return nil, fmt.Errorf("a %s certificate cannot call user APIs", id.Role)
	}
	u, err := d.UserByID(ctx, id.ID)
	if errors.Is(err, db.ErrNotFound) {
		return nil, errors.New("the user of this certificate no longer exists")
	}
	if err != nil {
		return nil, err
	}
	if u.Username != id.Name {
		return nil, errors.New("certificate user name does not match the account")
	}
	return u, nil
}
