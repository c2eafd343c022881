// Package config reads director.cfg, the INI file of the seeds' ConPaaS
// Director (/etc/cpsdirector/director.cfg), into a validated Config. Every
// error names the file and line so an administrator can fix it directly.
package config

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// entry is one KEY = value line.
type entry struct {
	Value string
	Line  int
}

// section is one [name] block; keys are upper-cased (ConPaaS spells them in
// capitals, but Python's ConfigParser accepted any case, so we do too).
type section struct {
	Name  string
	Line  int
	Keys  map[string]entry
	Order []string
}

// ini is a parsed file.
type ini struct {
	Path     string
	Sections map[string]*section
	Order    []string
	// Warnings are repeated sections and keys, which Python's ConfigParser
	// (the original director's reader) accepted: sections merge, the last
	// value of a key wins.
	Warnings []string
}

// LineError is an error at a line of the config file.
type LineError struct {
	Path string
	Line int
	Msg  string
}

func (e *LineError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Msg)
}

// parseINI accepts the ConfigParser dialect ConPaaS used: [section],
// "KEY = value" or "KEY: value", full-line comments with # or ;, inline
// comments starting with " ;" (Python 2's ConfigParser stripped those, and
// only those: values such as passwords may contain '#'), continuation lines
// (indented) appended to the previous value, blank lines.
func parseINI(path string, data []byte) (*ini, error) {
	f := &ini{Path: path, Sections: map[string]*section{}}
	var cur *section
	last := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Text()
		if n == 1 {
			raw = strings.TrimPrefix(raw, "\ufeff")
		}
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' || line[0] == ';' {
			last = ""
			continue
		}
		if raw[0] == ' ' || raw[0] == '\t' {
			if cur == nil || last == "" {
				return nil, &LineError{path, n, "indented line does not continue a value: remove the leading spaces"}
			}
			e := cur.Keys[last]
			e.Value += "\n" + stripInline(line)
			cur.Keys[last] = e
			continue
		}
		last = ""
		if line[0] == '[' {
			if !strings.HasSuffix(line, "]") {
				return nil, &LineError{path, n, fmt.Sprintf("section header %q has no closing ']'", line)}
			}
			name := strings.TrimSpace(line[1 : len(line)-1])
			if name == "" {
				return nil, &LineError{path, n, "empty section name '[]'"}
			}
			key := strings.ToLower(name)
			if old, dup := f.Sections[key]; dup {
				f.Warnings = append(f.Warnings, (&LineError{path, n, fmt.Sprintf("section [%s] appears twice (first at line %d): merged", name, old.Line)}).Error())
				cur = old
				continue
			}
			cur = &section{Name: name, Line: n, Keys: map[string]entry{}}
			f.Sections[key] = cur
			f.Order = append(f.Order, key)
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i <= 0 {
			return nil, &LineError{path, n, fmt.Sprintf("expected KEY = value, got %q", line)}
		}
		if cur == nil {
			return nil, &LineError{path, n, "key outside of any section: add a [conpaas], [director] or [iaas] header above it"}
		}
		k := strings.ToUpper(strings.TrimSpace(line[:i]))
		v := stripInline(strings.TrimSpace(line[i+1:]))
		if strings.ContainsAny(k, " \t[]") {
			return nil, &LineError{path, n, fmt.Sprintf("invalid key %q", k)}
		}
		if old, dup := cur.Keys[k]; dup {
			f.Warnings = append(f.Warnings, (&LineError{path, n, fmt.Sprintf("%s set twice in [%s] (first at line %d): the last value is used", k, cur.Name, old.Line)}).Error())
		} else {
			cur.Order = append(cur.Order, k)
		}
		cur.Keys[k] = entry{Value: v, Line: n}
		last = k
	}
	if err := sc.Err(); err != nil {
		return nil, &LineError{path, n + 1, err.Error()}
	}
	return f, nil
}

// stripInline drops a " ;comment" tail.
func stripInline(v string) string {
	for i := 1; i < len(v); i++ {
		if v[i] == ';' && (v[i-1] == ' ' || v[i-1] == '\t') {
			return strings.TrimSpace(v[:i])
		}
	}
	return v
}

func (f *ini) section(name string) *section { return f.Sections[strings.ToLower(name)] }

// get returns the value and line of key, or "" and the section's line.
func (s *section) get(key string) (string, int, bool) {
	e, ok := s.Keys[key]
	if !ok {
		return "", s.Line, false
	}
	return e.Value, e.Line, true
}

// first returns the first of several alias keys that is set.
func (s *section) first(keys ...string) (string, int, string) {
	for _, k := range keys {
		if e, ok := s.Keys[k]; ok && e.Value != "" {
			return e.Value, e.Line, k
		}
	}
	return "", s.Line, ""
}

// ReadSimple parses an INI file (the same dialect as director.cfg) into
// section -> KEY -> value, section names lower-cased and keys upper-cased.
// The client uses it for ~/.conpaas/cps-tools.conf.
func ReadSimple(path string, data []byte) (map[string]map[string]string, error) {
	f, err := parseINI(path, data)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]string{}
	for name, s := range f.Sections {
		m := map[string]string{}
		for k, e := range s.Keys {
			m[k] = e.Value
		}
		out[name] = m
	}
	return out, nil
}
