// Package verify says whether an artifact is intact: its checksums against
// an expected value (a flag, a checksum file, the catalogue or the table of
// published releases) and its structure (partition table, filesystem
// signatures, boot code, OVA manifest), for plain files and for .tar.gz
// archives streamed without extraction.
package verify

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/conpaas/cps/images/checksum"
)

// Entry is one line of a checksum file.
type Entry struct {
	Algo checksum.Algo
	Hex  string
	File string
	Line int
}

// Malformed is a line of a checksum file that is not a checksum line.
type Malformed struct {
	Line int
	Text string
}

var (
	gnuLine = regexp.MustCompile(`^\\?([0-9a-fA-F]+) [ *](.+)$`)
	bsdLine = regexp.MustCompile(`^(MD5|SHA1|SHA256|SHA512) \((.+)\) = ([0-9a-fA-F]+)$`)
)

func algoForLen(n int) (checksum.Algo, bool) {
	switch n {
	case 32:
		return checksum.MD5, true
	case 40:
		return checksum.SHA1, true
	case 64:
		return checksum.SHA256, true
	case 128:
		return checksum.SHA512, true
	}
	return "", false
}

// ParseSumFile reads md5sum/sha*sum output ("HEX  FILE", "HEX *FILE") and
// BSD-style lines ("MD5 (FILE) = HEX"), like `md5sum -c` does; blank lines
// and # comments are skipped, anything else is reported as malformed with
// its line number.
func ParseSumFile(r io.Reader) ([]Entry, []Malformed, error) {
	var (
		entries []Entry
		bad     []Malformed
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if m := bsdLine.FindStringSubmatch(line); m != nil {
			a, ok := algoForLen(len(m[3]))
			if ok && strings.EqualFold(string(a), m[1]) {
				entries = append(entries, Entry{Algo: a, Hex: strings.ToLower(m[3]), File: m[2], Line: n})
				continue
			}
		} else if m := gnuLine.FindStringSubmatch(line); m != nil {
			if a, ok := algoForLen(len(m[1])); ok {
				file := m[2]
				if strings.HasPrefix(line, "\\") {
					// md5sum escapes names holding \ or newline this way.
					file = strings.NewReplacer(`\\`, `\`, `\n`, "\n").Replace(file)
				}
				entries = append(entries, Entry{Algo: a, Hex: strings.ToLower(m[1]), File: file, Line: n})
				continue
			}
		}
		bad = append(bad, Malformed{Line: n, Text: line})
	}
	if err := sc.Err(); err != nil {
		return entries, bad, fmt.Errorf("read checksum file: %w", err)
	}
	return entries, bad, nil
}
