package check

import (
	"errors"
	"strings"
	"testing"
)

// TestDatabaseProblem: a director.db that is not an SQLite database (or is
// damaged) was reported as "not writable", with advice about permissions
// and free space that cannot help; each cause now gets its own advice.
func TestDatabaseProblem(t *testing.T) {
	for _, c := range []struct {
		err       string
		what, fix string
	}{
		{"database /x/director.db: file is not a database (26)", "is not a usable SQLite database", "restore director.db from a backup"},
		{"database /x/director.db: database disk image is malformed (11)", "is not a usable SQLite database", "restore director.db from a backup"},
		{"database is locked (5) (SQLITE_BUSY)", "is locked by another process", "retry"},
		{"open /x/director.db: permission denied", "is not writable", "permissions and free space"},
		{"dial tcp 127.0.0.1:1: connect: connection refused", "is not writable", "the server"},
	} {
		what, fix := databaseProblem(errors.New(c.err))
		if what != c.what || !strings.Contains(fix, c.fix) {
			t.Errorf("%s: %q, %q", c.err, what, fix)
		}
	}
}
