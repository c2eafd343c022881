package template

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/conpaas/cps/internal/input"
)

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "type"}, {Name: "default"}, {Name: "description"}, {Name: "sensitive"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "validation"}},
}

var validationSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "condition", Required: true}, {Name: "error_message", Required: true}},
}

type variable struct {
	name        string
	typ         cty.Type
	def         cty.Value
	block       *hcl.Block
	value       cty.Value
	validations hcl.Blocks
}

// variables resolves every variable: default, then CPS_VAR_ environment,
// then -var-file, then -var. It returns their values, and their rendered
// forms for the inputs digest.
func (l *loader) variables(blocks hcl.Blocks) (map[string]cty.Value, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	vars := map[string]*variable{}
	for _, b := range blocks {
		name := b.Labels[0]
		if !hclsyntax.ValidIdentifier(name) {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid variable name",
				Detail: "A variable name must start with a letter and hold letters, digits, underscores and dashes.", Subject: b.LabelRanges[0].Ptr()})
			continue
		}
		if prev, ok := vars[name]; ok {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Duplicate variable",
				Detail: fmt.Sprintf("Variable %q is already declared at %s.", name, prev.block.DefRange), Subject: b.LabelRanges[0].Ptr()})
			continue
		}
		c, d := b.Body.Content(variableSchema)
		diags = append(diags, d...)
		v := &variable{name: name, typ: cty.DynamicPseudoType, def: cty.NilVal, block: b}
		if a, ok := c.Attributes["type"]; ok {
			t, d := typeexpr.TypeConstraint(a.Expr)
			diags = append(diags, d...)
			v.typ = t
		}
		if a, ok := c.Attributes["default"]; ok {
			val, d := a.Expr.Value(nil)
			diags = append(diags, d...)
			if !d.HasErrors() {
				cv, err := convert.Convert(val, v.typ)
				if err != nil {
					diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid default value",
						Detail: fmt.Sprintf("The default of variable %q does not fit its type: %s.", name, err), Subject: a.Expr.Range().Ptr()})
				}
				v.def = cv
			}
		}
		v.validations = c.Blocks
		vars[name] = v
	}
	if diags.HasErrors() {
		return nil, diags
	}

	set := func(name, raw, from string) {
		v, ok := vars[name]
		if !ok {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Undefined variable",
				Detail: fmt.Sprintf("%s sets %q, which the template does not declare; add a variable %q block or fix the name.", from, name, name)})
			return
		}
		val, err := parseValue(raw, v.typ)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid value for variable",
				Detail: fmt.Sprintf("%s sets %q to %q: %s.", from, name, raw, err), Subject: v.block.DefRange.Ptr()})
			return
		}
		v.value = val
	}
	for _, kv := range l.opt.Environ {
		k, val, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, "CPS_VAR_") {
			if _, declared := vars[strings.TrimPrefix(k, "CPS_VAR_")]; declared {
				set(strings.TrimPrefix(k, "CPS_VAR_"), val, "environment variable "+k)
			}
		}
	}
	for _, vf := range l.opt.VarFiles {
		src, err := input.ReadFile(l.opt.ctx(), vf, MaxSourceSize)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read variable file", Detail: err.Error()})
			continue
		}
		// As a template: a binary or NUL-filled file would otherwise give
		// a diagnostic per byte, each printing its megabyte-long line.
		if d := checkSource(vf, src, "a variable file"); d.HasErrors() {
			diags = append(diags, d...)
			continue
		}
		f, d := l.parser.ParseHCL(src, vf)
		diags = append(diags, d...)
		if d.HasErrors() {
			continue
		}
		attrs, d := f.Body.JustAttributes()
		diags = append(diags, d...)
		for name, a := range attrs {
			v, ok := vars[name]
			if !ok {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Undefined variable",
					Detail: fmt.Sprintf("%s sets %q, which the template does not declare.", vf, name), Subject: a.NameRange.Ptr()})
				continue
			}
			val, d := a.Expr.Value(nil)
			diags = append(diags, d...)
			cv, err := convert.Convert(val, v.typ)
			if err != nil {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid value for variable",
					Detail: fmt.Sprintf("Variable %q: %s.", name, err), Subject: a.Expr.Range().Ptr()})
				continue
			}
			v.value = cv
		}
	}
	names := make([]string, 0, len(l.opt.Vars))
	for k := range l.opt.Vars {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		set(k, l.opt.Vars[k], "-var")
	}

	out := map[string]cty.Value{}
	for name, v := range vars {
		val := v.value
		if val == cty.NilVal {
			val = v.def
		}
		if val == cty.NilVal {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unset variable",
				Detail:  fmt.Sprintf("Variable %q has no default and no value; pass -var %s=VALUE, a -var-file, or CPS_VAR_%s.", name, name, name),
				Subject: v.block.DefRange.Ptr()})
			continue
		}
		out[name] = val
		diags = append(diags, validate(v, val)...)
	}
	return out, diags
}

// validate runs a variable's validation blocks (condition, error_message),
// as Packer and Terraform do; the condition sees only var.NAME.
func validate(v *variable, val cty.Value) hcl.Diagnostics {
	var diags hcl.Diagnostics
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(map[string]cty.Value{v.name: val})},
		Functions: (&loader{}).functions(),
	}
	for _, b := range v.validations {
		c, d := b.Body.Content(validationSchema)
		diags = append(diags, d...)
		if d.HasErrors() {
			continue
		}
		cond, d := c.Attributes["condition"].Expr.Value(ctx)
		diags = append(diags, d...)
		if d.HasErrors() {
			continue
		}
		if cond.Type() != cty.Bool || cond.IsNull() || !cond.IsKnown() {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid validation condition",
				Detail: "The condition must be true or false.", Subject: c.Attributes["condition"].Expr.Range().Ptr()})
			continue
		}
		if cond.False() {
			msg, _ := c.Attributes["error_message"].Expr.Value(nil)
			detail := fmt.Sprintf("Variable %q = %s is not valid.", v.name, render(val))
			if msg.Type() == cty.String && msg.IsKnown() && !msg.IsNull() {
				detail = fmt.Sprintf("Variable %q = %s: %s", v.name, render(val), msg.AsString())
			}
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid value for variable",
				Detail: detail, Subject: c.Attributes["condition"].Expr.Range().Ptr()})
		}
	}
	return diags
}

// parseValue reads a -var value: taken as is for a string variable, else
// as an HCL expression ("[\"a\", \"b\"]", "4", "true").
func parseValue(raw string, t cty.Type) (cty.Value, error) {
	if t == cty.String || t == cty.DynamicPseudoType {
		return cty.StringVal(raw), nil
	}
	expr, d := hclsyntax.ParseExpression([]byte(raw), "-var", hcl.InitialPos)
	if d.HasErrors() {
		return cty.NilVal, fmt.Errorf("not an HCL value")
	}
	v, d := expr.Value(nil)
	if d.HasErrors() {
		return cty.NilVal, fmt.Errorf("not a constant value")
	}
	return convert.Convert(v, t)
}

// evalContext makes the context image blocks are decoded in: var.*,
// local.* and the functions. Locals may refer to each other in any order.
func (l *loader) evalContext(vars map[string]cty.Value, blocks hcl.Blocks) (*hcl.EvalContext, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(vars), "local": cty.EmptyObjectVal, "path": l.pathObject()},
		Functions: l.functions(),
	}
	pending := map[string]*hcl.Attribute{}
	for _, b := range blocks {
		attrs, d := b.Body.JustAttributes()
		diags = append(diags, d...)
		for name, a := range attrs {
			if _, dup := pending[name]; dup {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Duplicate local",
					Detail: fmt.Sprintf("Local %q is defined twice.", name), Subject: a.NameRange.Ptr()})
			}
			pending[name] = a
		}
	}
	locals := map[string]cty.Value{}
	for len(pending) > 0 {
		progressed := false
		names := make([]string, 0, len(pending))
		for n := range pending {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, name := range names {
			a := pending[name]
			ready := true
			for _, tr := range a.Expr.Variables() {
				if tr.RootName() == "local" {
					// A bare `local` is the whole object: it waits for every
					// other local (the fuzzer found it indexed past the end).
					if len(tr) < 2 {
						if len(pending) > 1 {
							ready = false
						}
						continue
					}
					if s, ok := tr[1].(hcl.TraverseAttr); ok {
						if _, done := locals[s.Name]; !done {
							if _, exists := pending[s.Name]; exists {
								ready = false
							}
						}
					}
				}
			}
			if !ready {
				continue
			}
			ctx.Variables["local"] = cty.ObjectVal(locals)
			v, d := a.Expr.Value(ctx)
			diags = append(diags, d...)
			locals[name] = v
			delete(pending, name)
			progressed = true
		}
		if !progressed {
			for _, name := range names {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cycle in locals",
					Detail: fmt.Sprintf("Local %q depends on itself through other locals.", name), Subject: pending[name].NameRange.Ptr()})
			}
			break
		}
	}
	ctx.Variables["local"] = cty.ObjectVal(locals)
	return ctx, diags
}

// render is a variable's value for the inputs digest.
func render(v cty.Value) string {
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		return v.GoString()
	}
	return string(b)
}

// resolve makes p absolute against the template directory.
func (l *loader) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(l.dir, p)
}

// pathObject is Packer's path.root (the template's directory) and path.cwd.
func (l *loader) pathObject() cty.Value {
	cwd, _ := os.Getwd()
	return cty.ObjectVal(map[string]cty.Value{"root": cty.StringVal(l.dir), "cwd": cty.StringVal(cwd)})
}
