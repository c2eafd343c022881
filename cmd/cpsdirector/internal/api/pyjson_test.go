package api

import "testing"

// Expected strings are what Python 2's simplejson.dumps and Flask 0.10's
// jsonify (simplejson.dumps(..., indent=2, sort_keys=True)) print.
func TestPyJSON(t *testing.T) {
	cases := []struct {
		v           any
		dumps, jsfy string
	}{
		{Obj{}, `{}`, `{}`},
		{Obj{{"error", "x"}}, `{"error": "x"}`, "{\n  \"error\": \"x\"\n}"},
		{Obj{{"b", int64(1)}, {"a", nil}}, `{"b": 1, "a": null}`, "{\n  \"a\": null,\n  \"b\": 1\n}"},
		{[]any{}, `[]`, `[]`},
		{[]any{"default", "ec2"}, `["default", "ec2"]`, "[\n  \"default\",\n  \"ec2\"\n]"},
		{Obj{{"s", Obj{{"x", true}}}}, `{"s": {"x": true}}`, "{\n  \"s\": {\n    \"x\": true\n  }\n}"},
		{"caf\u00e9 \"q\"\n\U0001F600", `"caf\u00e9 \"q\"\n\ud83d\ude00"`, `"caf\u00e9 \"q\"\n\ud83d\ude00"`},
		{int64(50), `50`, `50`},
		{false, `false`, `false`},
	}
	for _, c := range cases {
		if got := string(dumps(c.v)); got != c.dumps {
			t.Errorf("dumps(%v) = %s, want %s", c.v, got, c.dumps)
		}
		if got := string(jsonify(c.v)); got != c.jsfy {
			t.Errorf("jsonify(%v) = %s, want %s", c.v, got, c.jsfy)
		}
	}
}
