package api

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The original answered with two encoders: simplejson.dumps (one line,
// ", " and ": " between items) and Flask's jsonify (indented by 2, keys
// sorted). Clients parse either; matching them keeps byte-level diffs
// against the original small. Both escape non-ASCII as \uXXXX.

// Obj is a JSON object whose keys keep their order (the original's
// to_dict literals; Python 2 dicts had no order, any is faithful).
type Obj []KV

// KV is one member.
type KV struct {
	K string
	V any
}

// Get returns the value of key k.
func (o Obj) Get(k string) (any, bool) {
	for _, kv := range o {
		if kv.K == k {
			return kv.V, true
		}
	}
	return nil, false
}

// Without returns o minus key k.
func (o Obj) Without(k string) Obj {
	var out Obj
	for _, kv := range o {
		if kv.K != k {
			out = append(out, kv)
		}
	}
	return out
}

// dumps is simplejson.dumps(v).
func dumps(v any) []byte {
	var b strings.Builder
	encode(&b, v, -1, 0, false)
	return []byte(b.String())
}

// jsonify is Flask 0.10's jsonify body: indent 2, sorted keys.
func jsonify(v any) []byte {
	var b strings.Builder
	encode(&b, v, 2, 0, true)
	return []byte(b.String())
}

func encode(b *strings.Builder, v any, indent, depth int, sorted bool) {
	nl := func(d int) {
		if indent >= 0 {
			b.WriteByte('\n')
			b.WriteString(strings.Repeat(" ", indent*d))
		}
	}
	sep := ", "
	if indent >= 0 {
		sep = ","
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case int:
		b.WriteString(strconv.Itoa(x))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case float64:
		b.WriteString(strconv.FormatFloat(x, 'g', -1, 64))
	case string:
		quote(b, x)
	case json.RawMessage:
		var y any
		if err := json.Unmarshal(x, &y); err != nil {
			b.WriteString("null")
			return
		}
		encode(b, fromJSON(y), indent, depth, sorted)
	case []any:
		if len(x) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(sep)
			}
			nl(depth + 1)
			encode(b, e, indent, depth+1, sorted)
		}
		nl(depth)
		b.WriteByte(']')
	case []Obj:
		l := make([]any, len(x))
		for i := range x {
			l[i] = x[i]
		}
		encode(b, l, indent, depth, sorted)
	case []string:
		l := make([]any, len(x))
		for i := range x {
			l[i] = x[i]
		}
		encode(b, l, indent, depth, sorted)
	case map[string]any:
		o := Obj{}
		for k, e := range x {
			o = append(o, KV{k, e})
		}
		sort.Slice(o, func(i, j int) bool { return o[i].K < o[j].K })
		encode(b, o, indent, depth, sorted)
	case Obj:
		if len(x) == 0 {
			b.WriteString("{}")
			return
		}
		if sorted {
			x = append(Obj(nil), x...)
			sort.SliceStable(x, func(i, j int) bool { return x[i].K < x[j].K })
		}
		b.WriteByte('{')
		for i, kv := range x {
			if i > 0 {
				b.WriteString(sep)
			}
			nl(depth + 1)
			quote(b, kv.K)
			b.WriteString(": ")
			encode(b, kv.V, indent, depth+1, sorted)
		}
		nl(depth)
		b.WriteByte('}')
	default:
		panic(fmt.Sprintf("pyjson: cannot encode %T", v))
	}
}

// fromJSON turns decoded JSON (json.Unmarshal into any) into values encode
// knows, keeping numbers integral when they are.
func fromJSON(v any) any {
	switch x := v.(type) {
	case float64:
		if x == float64(int64(x)) && x < 1<<53 && x > -(1<<53) {
			return int64(x)
		}
		return x
	case []any:
		for i := range x {
			x[i] = fromJSON(x[i])
		}
		return x
	case map[string]any:
		for k := range x {
			x[k] = fromJSON(x[k])
		}
		return x
	}
	return v
}

// quote is Python's json string encoding with ensure_ascii.
func quote(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r < 0x20:
			fmt.Fprintf(b, `\u%04x`, r)
		case r < 0x80:
			b.WriteRune(r)
		case r == utf8.RuneError:
			b.WriteString(`\ufffd`)
		case r > 0xffff:
			r -= 0x10000
			fmt.Fprintf(b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			fmt.Fprintf(b, `\u%04x`, r)
		}
	}
	b.WriteByte('"')
}
