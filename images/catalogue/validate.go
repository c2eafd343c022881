package catalogue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"
)

// A catalogue is edited by hand now and then, merged in version control and
// read by cpsdirector to choose what to start: a malformed entry is refused
// at its line and column rather than read as zeros (a size of 0, an MD5
// "zz" that no file can match, an artifact listed twice of which the first
// wins).

// Problem is one thing wrong in a catalogue, at a 1-based line and column.
type Problem struct {
	Line, Col int
	Msg       string
}

// ParseError lists what is wrong with a catalogue (at most maxProblems).
type ParseError struct {
	Path     string // the catalogue file, when known
	Problems []Problem
	More     int // problems found beyond those listed
}

const maxProblems = 10

func (e *ParseError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		if e.Path != "" {
			fmt.Fprintf(&b, "catalogue %s: ", e.Path)
		}
		fmt.Fprintf(&b, "line %d, column %d: %s", p.Line, p.Col, p.Msg)
	}
	if e.More > 0 {
		fmt.Fprintf(&b, "\n(%d more problems not shown)", e.More)
	}
	return b.String()
}

// problems collects Problems for one parse.
type problems struct {
	data []byte
	list []Problem
	more int
}

func (ps *problems) add(off int64, format string, args ...any) {
	if len(ps.list) == maxProblems {
		ps.more++
		return
	}
	line, col := lineCol(ps.data, off)
	ps.list = append(ps.list, Problem{line, col, fmt.Sprintf(format, args...)})
}

func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	return &ParseError{Problems: ps.list, More: ps.more}
}

// object is where an object's parts are in the file.
type object struct {
	start int64            // offset of '{' (or of the value standing where an object should)
	null  bool             // the value is null, not an object
	wrong bool             // the value is neither an object nor null (a problem already noted)
	keys  map[string]int64 // key -> offset of its opening quote
	vals  map[string]int64 // key -> offset of its value
}

// layout is where the catalogue's objects are: the top level, each
// artifact, and each artifact's registrations.
type layout struct {
	top       object
	artifacts []object
	regs      [][]object
}

// jsonFields maps the JSON keys of struct type t (its fields' json tags)
// to the fields' types, so that a field added to Artifact or Registration
// is known here too, and each value is checked against its type where it
// stands.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	keys := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		keys[name] = f.Type
	}
	return keys
}

var (
	topKeys      = jsonFields(reflect.TypeFor[Catalogue]())
	artifactKeys = jsonFields(reflect.TypeFor[Artifact]())
	regKeys      = jsonFields(reflect.TypeFor[Registration]())
)

// requiredArtifactKeys must be in every artifact: what verify, register and
// cpsdirector rely on. (built, inputs_digest and registrations may be
// missing: cpsimage register records an artifact it did not build.)
var requiredArtifactKeys = []string{"name", "version", "kind", "arch", "file", "size", "md5", "sha256"}

var requiredRegKeys = []string{"cloud", "target", "image_id"}

// scanner walks a syntactically valid JSON document with a json.Decoder,
// noting offsets.
type scanner struct {
	data []byte
	dec  *json.Decoder
}

// next returns the offset of the next value or key (after blanks, ',' and
// ':' the decoder has not consumed yet).
func (s *scanner) next() int64 {
	off := s.dec.InputOffset()
	for off < int64(len(s.data)) {
		switch s.data[off] {
		case ' ', '\t', '\r', '\n', ',', ':':
			off++
			continue
		}
		break
	}
	return off
}

func (s *scanner) skip() error {
	var v json.RawMessage
	return s.dec.Decode(&v)
}

// object reads an object (or null) and the offsets of its keys and values;
// each value is passed to fn (which must consume it; it returns false to
// let object do it) or decoded into its field's type. Unknown and repeated
// keys and values of the wrong type are problems.
func (s *scanner) object(ps *problems, what, hint string, known map[string]reflect.Type, fn func(key string, off int64) (bool, error)) (object, error) {
	o := object{start: s.next(), keys: map[string]int64{}, vals: map[string]int64{}}
	tok, err := s.dec.Token()
	if err != nil {
		return o, err
	}
	if tok == nil {
		o.null = true
		return o, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		ps.add(o.start, "%s is %s, not an object: %s", what, describe(tok), hint)
		o.wrong = true
		if d, ok := tok.(json.Delim); ok && d == '[' {
			return o, s.rest()
		}
		return o, nil
	}
	for s.dec.More() {
		koff := s.next()
		tok, err := s.dec.Token()
		if err != nil {
			return o, err
		}
		key, _ := tok.(string)
		voff := s.next()
		if first, dup := o.keys[key]; dup {
			fl, fc := lineCol(s.data, first)
			ps.add(koff, "%q appears twice in %s (first at line %d, column %d): keep one", key, what, fl, fc)
		} else if known[key] == nil {
			ps.add(koff, "unknown field %q in %s: remove it (known fields: %s)", key, what, keyList(known))
		}
		o.keys[key], o.vals[key] = koff, voff
		done := false
		if fn != nil && known[key] != nil {
			done, err = fn(key, voff)
			if err != nil {
				return o, err
			}
		}
		if done {
			continue
		}
		if known[key] == nil {
			if err := s.skip(); err != nil {
				return o, err
			}
			continue
		}
		// Decode reads the whole value before converting it, so a
		// value of the wrong type is consumed too.
		err = s.dec.Decode(reflect.New(known[key]).Interface())
		var se *json.SyntaxError
		if errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF) {
			return o, err
		}
		if err != nil {
			ps.add(voff, "%s: %q %s", what, key, typeProblem(err))
		}
	}
	_, err = s.dec.Token() // '}'
	return o, err
}

// rest consumes the remainder of an array whose '[' was read.
func (s *scanner) rest() error {
	for s.dec.More() {
		if err := s.skip(); err != nil {
			return err
		}
	}
	_, err := s.dec.Token()
	return err
}

// array reads an array (or null) of objects, calling fn for each element.
func (s *scanner) array(ps *problems, what string, fn func(i int) error) error {
	off := s.next()
	tok, err := s.dec.Token()
	if err != nil || tok == nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		ps.add(off, "%s is %s, not a list: write it as [ {...}, ... ]", what, describe(tok))
		if d, ok := tok.(json.Delim); ok && d == '{' {
			return s.restObject()
		}
		return nil
	}
	for i := 0; s.dec.More(); i++ {
		if err := fn(i); err != nil {
			return err
		}
	}
	_, err = s.dec.Token() // ']'
	return err
}

// restObject consumes the remainder of an object whose '{' was read.
func (s *scanner) restObject() error {
	for s.dec.More() {
		if _, err := s.dec.Token(); err != nil {
			return err
		}
		if err := s.skip(); err != nil {
			return err
		}
	}
	_, err := s.dec.Token()
	return err
}

func describe(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "a list"
		}
		return "an object"
	case string:
		return fmt.Sprintf("the string %q", v)
	case nil:
		return "null"
	case bool:
		return fmt.Sprintf("%v", v)
	default:
		return fmt.Sprintf("the number %v", v)
	}
}

// typeProblem says why a value could not be decoded into its field.
func typeProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("is %s, not %s", jsonKind(te.Value), goType(te.Type))
	}
	var pe *time.ParseError
	if errors.As(err, &pe) {
		return fmt.Sprintf("is not a time as RFC 3339 writes it (2006-01-02T15:04:05Z): %v", pe)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if strings.Contains(msg, "Time.UnmarshalJSON") {
		return "is not a time as RFC 3339 writes it (a string like \"2006-01-02T15:04:05Z\")"
	}
	return msg
}

func keyList(known map[string]reflect.Type) string {
	var ks []string
	for k := range known {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return strings.Join(ks, ", ")
}

// scan finds the layout of data, a syntactically valid JSON value.
func scan(data []byte, ps *problems) (*layout, error) {
	s := &scanner{data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	s.dec.UseNumber()
	l := &layout{}
	var err error
	l.top, err = s.object(ps, "the catalogue", `a catalogue is an object {"schema_version": 1, "artifacts": [...]}`, topKeys, func(key string, off int64) (bool, error) {
		if key != "artifacts" {
			return false, nil
		}
		return true, s.array(ps, `"artifacts"`, func(i int) error {
			what := fmt.Sprintf("artifact %d", i+1)
			var regs []object
			a, err := s.object(ps, what, `remove it or write it as {"name": ..., ...}`, artifactKeys, func(key string, off int64) (bool, error) {
				if key != "registrations" {
					return false, nil
				}
				return true, s.array(ps, what+`'s "registrations"`, func(j int) error {
					r, err := s.object(ps, fmt.Sprintf("registration %d of %s", j+1, what), `remove it or write it as {"cloud": ..., ...}`, regKeys, nil)
					regs = append(regs, r)
					return err
				})
			})
			l.artifacts = append(l.artifacts, a)
			l.regs = append(l.regs, regs)
			return err
		})
	})
	if err == nil && l.top.null {
		ps.add(l.top.start, "the catalogue is null: a catalogue is an object {\"schema_version\": 1, \"artifacts\": [...]}")
	}
	return l, err
}

// syntax checks that data holds exactly one JSON value, and returns where
// it starts.
func syntax(data []byte, ps *problems) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	var v json.RawMessage
	err := dec.Decode(&v)
	var se *json.SyntaxError
	switch {
	case err == nil:
	case errors.As(err, &se):
		// The decoder's offset is just past the offending byte.
		ps.add(max(se.Offset-1, 0), "%s", strings.TrimPrefix(se.Error(), "json: "))
		return false
	case errors.Is(err, io.EOF):
		ps.add(0, "the file is empty: a catalogue is an object {\"schema_version\": 1, \"artifacts\": [...]}; delete the file to start a new one")
		return false
	case errors.Is(err, io.ErrUnexpectedEOF):
		// Truncated: point at where the text ends, not where the
		// value that could not be finished began.
		end := int64(len(bytes.TrimRight(data, " \t\r\n")))
		ps.add(end, "the file ends before the catalogue is complete (truncated?): restore it, or rebuild it with cpsimage catalogue add")
		return false
	default:
		ps.add(dec.InputOffset(), "%v", err)
		return false
	}
	off := dec.InputOffset()
	for off < int64(len(data)) && strings.IndexByte(" \t\r\n", data[off]) >= 0 {
		off++
	}
	if off < int64(len(data)) {
		ps.add(off, "text after the catalogue's closing brace: remove it (only one JSON object may be in the file)")
		return false
	}
	return true
}

// check finds what is wrong with the decoded catalogue c, whose layout in
// the file is l.
func check(c *Catalogue, l *layout, ps *problems) {
	if _, ok := l.top.keys["schema_version"]; !ok {
		ps.add(l.top.start, "missing schema_version: not a cps catalogue")
	} else if c.SchemaVersion < 1 {
		ps.add(l.top.vals["schema_version"], "schema_version %d: the first version is 1", c.SchemaVersion)
	} else if c.SchemaVersion > SchemaVersion {
		ps.add(l.top.vals["schema_version"], "schema_version %d is newer than this program understands (%d): upgrade cps", c.SchemaVersion, SchemaVersion)
	}
	seen := map[[2]string]int{}
	for i := range c.Artifacts {
		if i >= len(l.artifacts) {
			break
		}
		o := l.artifacts[i]
		if o.null {
			ps.add(o.start, "artifact %d is null: each artifact is an object with %s; remove it", i+1, strings.Join(requiredArtifactKeys, ", "))
			continue
		}
		checkArtifact(&c.Artifacts[i], i, o, l.regs[i], ps)
		a := &c.Artifacts[i]
		k := [2]string{a.Name, a.Version}
		if j, dup := seen[k]; dup && a.Name != "" {
			fl, fc := lineCol(ps.data, l.artifacts[j].start)
			ps.add(o.start, "artifact %q version %q is listed twice (also artifact %d, line %d, column %d): keep one", a.Name, a.Version, j+1, fl, fc)
		} else if !dup {
			seen[k] = i
		}
	}
}

func checkArtifact(a *Artifact, i int, o object, regs []object, ps *problems) {
	what := fmt.Sprintf("artifact %d", i+1)
	if a.Name != "" {
		what = fmt.Sprintf("artifact %q version %q", a.Name, a.Version)
	}
	var missing []string
	for _, k := range requiredArtifactKeys {
		if _, ok := o.keys[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		ps.add(o.start, "%s has no %s: each artifact needs %s (cpsimage catalogue add FILE writes them)", what, strings.Join(missing, ", "), strings.Join(requiredArtifactKeys, ", "))
	}
	nonEmpty := func(key, v string) {
		if off, ok := o.vals[key]; ok && v == "" {
			ps.add(off, "%s: %s is empty", what, key)
		}
	}
	nonEmpty("name", a.Name)
	nonEmpty("file", a.File)
	// A newline or other control character in a name (catalogue add
	// -name "$(printf 'a\nb')") split `catalogue list` rows and the lines
	// of every log that names the artifact.
	printable := func(key, v string) {
		off, ok := o.vals[key]
		if !ok {
			return
		}
		if i := strings.IndexFunc(v, unicode.IsControl); i >= 0 {
			ps.add(off, "%s: %s %q holds the control character %U: use printable text (letters, digits, '.', '-', '_')", what, key, v, []rune(v[i:])[0])
		}
	}
	printable("name", a.Name)
	printable("version", a.Version)
	printable("file", a.File)
	// The typed values (types.go) are one of their constants.
	oneOf(ps, o, what, "kind", a.Kind, Kinds)
	oneOf(ps, o, what, "arch", a.Arch, Arches)
	if a.Format != "" {
		oneOf(ps, o, what, "format", a.Format, formats)
	}
	for j, m := range a.Boot {
		if !slices.Contains([]BootMode{BootBIOS, BootUEFI}, m) || slices.Index(a.Boot, m) != j {
			ps.add(o.vals["boot"], "%s: boot %q: each boot mode is %s or %s, once", what, a.Boot.String(), BootBIOS, BootUEFI)
			break
		}
	}
	if off, ok := o.vals["size"]; ok && a.Size < 0 {
		ps.add(off, "%s: size %d is negative: it is the file's size in bytes", what, a.Size)
	}
	hexDigest := func(key string, v *string, n int) {
		off, ok := o.vals[key]
		if !ok {
			return
		}
		if len(*v) != n || strings.Trim(strings.ToLower(*v), "0123456789abcdef") != "" {
			ps.add(off, "%s: %s %q is not %d hexadecimal digits: record the file's real sums with cpsimage catalogue add FILE", what, key, *v, n)
			return
		}
		*v = strings.ToLower(*v) // md5sum and sha256sum print lower case; lookups compare strings
	}
	hexDigest("md5", &a.MD5, 32)
	hexDigest("sha256", &a.SHA256, 64)
	for j := range a.Registered {
		if j >= len(regs) {
			break
		}
		r := regs[j]
		if r.null {
			ps.add(r.start, "registration %d of %s is null: remove it", j+1, what)
			continue
		}
		var missing []string
		for _, k := range requiredRegKeys {
			if _, ok := r.keys[k]; !ok {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			ps.add(r.start, "registration %d of %s has no %s: each registration needs %s", j+1, what, strings.Join(missing, ", "), strings.Join(requiredRegKeys, ", "))
		}
		if _, ok := r.vals["cloud"]; ok {
			oneOf(ps, r, fmt.Sprintf("registration %d of %s", j+1, what), "cloud", a.Registered[j].Cloud, []Cloud{CloudEC2, CloudOpenStack})
		}
	}
}

// valueStart finds the start of the value that ends just before off (an
// UnmarshalTypeError's offset), so the column points at the value itself.
func valueStart(data []byte, off int64) int64 {
	off = min(off, int64(len(data)))
	i := off - 1
	for i >= 0 && strings.IndexByte(" \t\r\n", data[i]) >= 0 {
		i--
	}
	if i < 0 {
		return 0
	}
	switch data[i] {
	case '"':
		for j := i - 1; j >= 0; j-- {
			if data[j] == '"' && (j == 0 || data[j-1] != '\\') {
				return j
			}
		}
		return i
	case '}', ']':
		return i // a whole object or list: its end is clear enough
	}
	for i > 0 && strings.IndexByte(" \t\r\n,:[{", data[i-1]) < 0 {
		i--
	}
	return i
}

// jsonKind names an UnmarshalTypeError's Value.
func jsonKind(v string) string {
	switch v {
	case "string", "number", "object":
		return map[string]string{"string": "a string", "number": "a number", "object": "an object"}[v]
	case "array":
		return "a list"
	case "bool":
		return "true or false"
	}
	return v // "number -1.5" and the like
}

// fieldName renders an UnmarshalTypeError's field path ("artifacts.size").
func fieldName(f string) string {
	if f == "" {
		return "the catalogue"
	}
	return fmt.Sprintf("%q", f)
}

func goType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "a whole number"
	case reflect.Slice:
		return "a list"
	case reflect.Struct:
		if t.String() == "time.Time" {
			return "a time (RFC 3339)"
		}
		return "an object"
	}
	return "a " + t.String()
}

var formats = []Format{FormatRaw, FormatQCOW2, FormatVMDK, FormatOVA}

// oneOf notes a problem when the value of key in o is not one of valid.
func oneOf[T ~string](ps *problems, o object, what, key string, v T, valid []T) {
	off, ok := o.vals[key]
	if !ok || slices.Contains(valid, v) {
		return
	}
	names := make([]string, len(valid))
	for i, x := range valid {
		names[i] = string(x)
	}
	ps.add(off, "%s: %s %q is not one of %s", what, key, string(v), strings.Join(names, ", "))
}
