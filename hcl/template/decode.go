package template

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"github.com/conpaas/cps/internal/size"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/gocty"
)

// attrs evaluates the attributes of a block body against its schema and
// offers typed getters that record diagnostics at the attribute's range.
type attrs struct {
	m     hcl.Attributes
	ctx   *hcl.EvalContext
	diags hcl.Diagnostics
}

func (a *attrs) value(name string, t cty.Type) (cty.Value, *hcl.Attribute, bool) {
	at, ok := a.m[name]
	if !ok {
		return cty.NilVal, nil, false
	}
	v, d := at.Expr.Value(a.ctx)
	a.diags = append(a.diags, d...)
	if d.HasErrors() {
		return cty.NilVal, at, false
	}
	if v.IsNull() {
		return cty.NilVal, at, false
	}
	cv, err := convert.Convert(v, t)
	if err != nil {
		a.diags = append(a.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Incorrect attribute value type",
			Detail: fmt.Sprintf("Inappropriate value for attribute %q: %s.", name, err), Subject: at.Expr.Range().Ptr()})
		return cty.NilVal, at, false
	}
	if !cv.IsWhollyKnown() {
		return cty.NilVal, at, false
	}
	return cv, at, true
}

func (a *attrs) str(name, def string) string {
	v, _, ok := a.value(name, cty.String)
	if !ok {
		return def
	}
	return v.AsString()
}

func (a *attrs) strList(name string) []string {
	v, at, ok := a.value(name, cty.List(cty.String))
	if !ok {
		return nil
	}
	var out []string
	if err := gocty.FromCtyValue(v, &out); err != nil {
		a.errorAt(at, "Invalid list", err.Error())
	}
	return out
}

func (a *attrs) strMap(name string) map[string]string {
	v, at, ok := a.value(name, cty.Map(cty.String))
	if !ok {
		return nil
	}
	out := map[string]string{}
	if err := gocty.FromCtyValue(v, &out); err != nil {
		a.errorAt(at, "Invalid map", err.Error())
	}
	return out
}

func (a *attrs) boolean(name string, def bool) bool {
	v, _, ok := a.value(name, cty.Bool)
	if !ok {
		return def
	}
	return v.True()
}

func (a *attrs) integer(name string, def int) int {
	v, at, ok := a.value(name, cty.Number)
	if !ok {
		return def
	}
	i, acc := v.AsBigFloat().Int64()
	if acc != big.Exact || i < 0 {
		a.errorAt(at, "Invalid number", fmt.Sprintf("%q must be a whole, non-negative number.", name))
		return def
	}
	return int(i)
}

// size reads a byte size: a number, or a string like "2GiB", "512MiB",
// "32GB", "31998345216" (internal/size's rule, the same as the command
// line's; "*" means "fill the rest" where allowed).
func (a *attrs) size(name string, def int64, allowFill bool) (int64, bool) {
	at, ok := a.m[name]
	if !ok {
		return def, false
	}
	v, d := at.Expr.Value(a.ctx)
	a.diags = append(a.diags, d...)
	if d.HasErrors() || v.IsNull() {
		return def, false
	}
	switch v.Type() {
	case cty.Number:
		i, acc := v.AsBigFloat().Int64()
		if acc != big.Exact || i <= 0 {
			a.errorAt(at, "Invalid size", fmt.Sprintf("%q must be a positive whole number of bytes.", name))
			return def, false
		}
		return i, true
	case cty.String:
		s := v.AsString()
		if s == "*" {
			if allowFill {
				return 0, true
			}
			a.errorAt(at, "Invalid size", fmt.Sprintf("%q cannot be \"*\" here; give a size such as \"2GiB\".", name))
			return def, false
		}
		n, err := size.Parse(s)
		if err != nil {
			a.errorAt(at, "Invalid size", fmt.Sprintf("%q: %s.", name, err))
			return def, false
		}
		return n, true
	}
	a.errorAt(at, "Invalid size", fmt.Sprintf("%q must be a number of bytes or a string such as \"2GiB\".", name))
	return def, false
}

func (a *attrs) errorAt(at *hcl.Attribute, summary, detail string) {
	var r *hcl.Range
	if at != nil {
		r = at.Expr.Range().Ptr()
	}
	a.diags = append(a.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: r})
}

// oneOf checks a string attribute against its allowed values.
func (a *attrs) oneOf(name, val string, allowed ...string) {
	if val == "" {
		return
	}
	for _, ok := range allowed {
		if val == ok {
			return
		}
	}
	a.errorAt(a.m[name], "Invalid value", fmt.Sprintf("%q is %q; it must be one of %s.", name, val, strings.Join(quoteAll(allowed), ", ")))
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = strconv.Quote(v)
	}
	return out
}

// attrRange is where attribute name is in body, or the body's missing-item
// range when it is not there.
func attrRange(body hcl.Body, name string) *hcl.Range {
	if sb, ok := body.(*hclsyntax.Body); ok {
		if a, ok := sb.Attributes[name]; ok {
			return a.Expr.Range().Ptr()
		}
	}
	return body.MissingItemRange().Ptr()
}
