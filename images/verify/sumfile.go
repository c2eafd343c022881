// Package verify says whether an artifact is intact: its checksums against
// an expected value (a flag, a checksum file, the catalogue or the table of
// published releases) and its structure (partition table, filesystem
// signatures, boot code, OVA manifest), for plain files and for .tar.gz
// archives streamed without extraction.
package verify

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/conpaas/cps/images/checksum"
)

// Entry is one line of a checksum file.
type Entry struct {
	Algo checksum.Algo
	Hex  string
	File string // unescaped
	Line int
}

// Malformed is a line of a checksum file that is not a checksum line.
type Malformed struct {
	Line int
	Text string
}

// maxSumLine bounds a checksum line (a path is at most 4096 bytes on
// Linux); a longer line, e.g. from a binary file given by mistake, is
// malformed and is skipped without being held in memory.
const maxSumLine = 64 << 10

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

// SumParser reads checksum files exactly as GNU coreutils' md5sum -c
// (9.1) does: "HEX  FILE" and "HEX *FILE" lines; one-space "HEX FILE"
// lines (md5 -r, BSD "reversed" output), accepted only if the first line
// that decides was of that form, since a name may begin with a space or
// '*'; BSD tags "MD5 (FILE) = HEX" (spaces around '=' and before '('
// optional, the name ends at the last ')'); leading blanks skipped; a
// leading backslash marking a name escaped with \\, \n and \r (anything
// else after a backslash is malformed); a trailing CR dropped; lines
// starting with '#' and empty lines skipped. Like md5sum, one parser
// keeps the format decision across all the files it reads.
type SumParser struct {
	// Algo restricts lines to one algorithm (md5 -c: md5 only); "" takes
	// any of MD5, SHA1, SHA256 and SHA512 by digest length.
	Algo     checksum.Algo
	reversed int // -1 undecided, 0 "HEX  FILE" lines, 1 "HEX FILE" lines
	started  bool
}

// ParseSumFile parses one checksum file with a fresh SumParser that takes
// any algorithm.
func ParseSumFile(r io.Reader) ([]Entry, []Malformed, error) {
	return (&SumParser{}).Parse(r)
}

// Parse reads a checksum file; malformed lines are returned with their
// line numbers.
func (p *SumParser) Parse(r io.Reader) ([]Entry, []Malformed, error) {
	if !p.started {
		p.started, p.reversed = true, -1
	}
	var (
		entries []Entry
		bad     []Malformed
	)
	br := bufio.NewReaderSize(r, 64<<10)
	for n := 1; ; n++ {
		line, long, err := readLine(br)
		if err == io.EOF && line == "" && !long {
			break
		}
		if err != nil && err != io.EOF {
			return entries, bad, fmt.Errorf("read checksum file: %w", err)
		}
		if !long && strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimSuffix(line, "\r")
		if !long && line == "" {
			continue
		}
		if e, ok := p.line(line); ok && !long {
			e.Line = n
			entries = append(entries, e)
		} else {
			bad = append(bad, Malformed{Line: n, Text: line})
		}
		if err == io.EOF {
			break
		}
	}
	return entries, bad, nil
}

// readLine reads up to '\n' (dropped); a line over maxSumLine is reported
// as long and only its start kept.
func readLine(br *bufio.Reader) (string, bool, error) {
	var b []byte
	long := false
	for {
		frag, err := br.ReadSlice('\n')
		if len(b)+len(frag) > maxSumLine {
			long = true
		} else {
			b = append(b, frag...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return strings.TrimSuffix(string(b), "\n"), long, err
	}
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// line is coreutils' split_3 for one line (newline and CR removed).
func (p *SumParser) line(s string) (Entry, bool) {
	i := 0
	for i < len(s) && isBlank(s[i]) {
		i++
	}
	escaped := false
	if i < len(s) && s[i] == '\\' {
		i++
		escaped = true
	}
	// BSD tag: "MD5 (FILE) = HEX".
	for _, a := range checksum.All {
		tag := strings.ToUpper(string(a))
		if !strings.HasPrefix(s[i:], tag) {
			continue
		}
		if p.Algo != "" && a != p.Algo {
			return Entry{}, false
		}
		j := i + len(tag)
		if j < len(s) && s[j] == ' ' {
			j++
		}
		if j >= len(s) || s[j] != '(' {
			return Entry{}, false
		}
		return bsdTag(s[j+1:], a, escaped)
	}
	// "HEX  FILE", "HEX *FILE" or "HEX FILE".
	j := i
	for j < len(s) && !isBlank(s[j]) {
		j++
	}
	hexs := s[i:j]
	a, ok := p.algo(hexs)
	if !ok || j >= len(s) {
		return Entry{}, false
	}
	k := j + 1 // past the blank that ends the digest
	if len(s)-k == 1 || (k < len(s) && s[k] != ' ' && s[k] != '*') {
		if p.reversed == 0 {
			return Entry{}, false
		}
		p.reversed = 1
	} else if p.reversed != 1 {
		p.reversed = 0
		k++ // the mode character
	}
	name := s[min(k, len(s)):]
	if escaped {
		if name, ok = unescape(name); !ok {
			return Entry{}, false
		}
	}
	if name == "" {
		return Entry{}, false
	}
	return Entry{Algo: a, Hex: strings.ToLower(hexs), File: name}, true
}

// bsdTag parses what follows "TAG (" in a BSD-style line.
func bsdTag(s string, tagAlgo checksum.Algo, escaped bool) (Entry, bool) {
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return Entry{}, false
	}
	name := s[:end]
	if escaped {
		var ok bool
		if name, ok = unescape(name); !ok {
			return Entry{}, false
		}
	}
	rest := strings.TrimLeft(s[end+1:], " \t")
	if !strings.HasPrefix(rest, "=") {
		return Entry{}, false
	}
	hexs := strings.TrimLeft(rest[1:], " \t")
	if len(hexs) != tagAlgo.HexLen() || !isHex(hexs) || name == "" {
		return Entry{}, false
	}
	return Entry{Algo: tagAlgo, Hex: strings.ToLower(hexs), File: name}, true
}

// algo is the algorithm of a digest of this length, if it is hex and an
// algorithm the parser takes.
func (p *SumParser) algo(hexs string) (checksum.Algo, bool) {
	a, ok := algoForLen(len(hexs))
	if !ok || !isHex(hexs) || (p.Algo != "" && a != p.Algo) {
		return "", false
	}
	return a, true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return s != ""
}

// unescape undoes md5sum's escaping of a name: \\, \n and \r; any other
// escape, a trailing backslash or a NUL makes the line malformed.
func unescape(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i == len(s)-1 {
				return "", false
			}
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case '\\':
				b.WriteByte('\\')
			default:
				return "", false
			}
		case 0:
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}
