// Package template reads cps templates (HCL, Packer-like) into a build plan.
//
// A template has variable, locals, image and register blocks; expressions may
// use var.NAME, local.NAME and the HCL standard library functions (upper,
// format, join, concat, merge, ...) plus file() and abspath() relative to the
// template's directory. Every error is an HCL diagnostic naming
// file:line:col with a snippet of the source.
package template

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"

	"github.com/conpaas/cps/builders"
	"github.com/conpaas/cps/builders/disk"
	"github.com/conpaas/cps/hcl/templates"
	"github.com/conpaas/cps/internal/input"
	"github.com/conpaas/cps/plan"
)

// DefaultName is how the embedded default template is named in messages.
const DefaultName = "<embedded>/conpaas.pkr.hcl"

// Default returns the embedded default template: conpaas.img for x86_64.
func Default() (name string, src []byte) { return DefaultName, templates.Default }

// Bounds on what a template may make the loader do: a template is a few
// KiB of text, and a file given by mistake (a disk image, /dev/zero, random
// bytes) must fail fast with a few lines, not after minutes and
// thousands of them.
const (
	// MaxSourceSize is the largest template or variable file read.
	MaxSourceSize = 1 << 20
	// MaxFileSize is the largest file the file() function reads.
	MaxFileSize = 16 << 20
	// MaxDiagnostics is how many diagnostics an Error prints.
	MaxDiagnostics = 20
)

// Options are the inputs besides the template itself.
type Options struct {
	// Context cancels reading the template and the files it names (a
	// FIFO without a writer waits until then); nil means no cancellation.
	Context context.Context
	// Vars are -var NAME=VALUE settings (highest precedence).
	Vars map[string]string
	// VarFiles are -var-file paths (HCL files of NAME = value).
	VarFiles []string
	// Environ is the environment; CPS_VAR_NAME sets variable NAME (lowest
	// precedence after defaults), like Packer's PKR_VAR_.
	Environ []string
}

// Error is a set of template diagnostics; Error() renders them like the
// hcl tool does: "file:line,col-col: summary; detail" plus the source line.
type Error struct {
	Diags  hcl.Diagnostics
	parser *hclparse.Parser
}

// NewError is an Error for diagnostics of files parsed by p.
func NewError(p *hclparse.Parser, diags hcl.Diagnostics) *Error {
	return &Error{Diags: diags, parser: p}
}

func (e *Error) Error() string {
	var b strings.Builder
	files := e.parser.Files()
	for i, d := range e.Diags {
		if i > 0 {
			b.WriteString("\n")
		}
		if i == MaxDiagnostics {
			fmt.Fprintf(&b, "... and %d more; fix these first (is this a template?)", len(e.Diags)-i)
			break
		}
		sev := "error"
		if d.Severity == hcl.DiagWarning {
			sev = "warning"
		}
		if d.Subject == nil {
			fmt.Fprintf(&b, "%s: %s", sev, d.Summary)
		} else {
			r := d.Subject
			fmt.Fprintf(&b, "%s:%d:%d: %s: %s", r.Filename, r.Start.Line, r.Start.Column, sev, d.Summary)
		}
		if d.Detail != "" {
			fmt.Fprintf(&b, "; %s", d.Detail)
		}
		if d.Subject != nil {
			if f := files[d.Subject.Filename]; f != nil {
				b.WriteString(snippet(f.Bytes, *d.Subject))
			}
		}
	}
	return b.String()
}

// snippet is the source line of r with a caret line under the range, as
// compilers print them.
func snippet(src []byte, r hcl.Range) string {
	lines := strings.Split(string(src), "\n")
	if r.Start.Line < 1 || r.Start.Line > len(lines) {
		return ""
	}
	line := strings.TrimRight(lines[r.Start.Line-1], "\r")
	col := min(len(line), max(r.Start.Column-1, 0))
	width := 1
	if r.End.Line == r.Start.Line && r.End.Column > r.Start.Column {
		width = r.End.Column - r.Start.Column
	}
	// A long line (a minified or binary-ish file: up to MaxSourceSize on
	// one line) is cut to a window around the column, so each of up to
	// MaxDiagnostics diagnostics prints a line, not a megabyte.
	start, end := 0, len(line)
	if len(line) > snippetWidth {
		start = max(0, col-snippetWidth/2)
		end = min(len(line), start+snippetWidth)
		start = max(0, end-snippetWidth)
		for start > 0 && !utf8.RuneStart(line[start]) {
			start--
		}
		for end < len(line) && !utf8.RuneStart(line[end]) {
			end++
		}
	}
	shown, lead := line[start:end], ""
	if start > 0 {
		shown, lead = "..."+shown, "   "
	}
	if end < len(line) {
		shown += "..."
		width = min(width, end-col+3)
	}
	pad := strings.Map(func(c rune) rune {
		if c == '\t' {
			return '\t'
		}
		return ' '
	}, line[start:col])
	return fmt.Sprintf("\n%5d | %s\n      | %s%s%s", r.Start.Line, shown, lead, pad, strings.Repeat("^", max(width, 1)))
}

// snippetWidth is how many bytes of a source line a snippet shows at most.
const snippetWidth = 160

// Load reads the template at path.
func Load(path string, opt Options) (*plan.Plan, error) {
	src, err := input.ReadFile(opt.ctx(), path, MaxSourceSize)
	if errors.Is(err, syscall.EISDIR) {
		// Packer takes a directory of templates; we take one file.
		return nil, fmt.Errorf("template %s is a directory: name one template file, e.g. %s", path, filepath.Join(path, "NAME.pkr.hcl"))
	}
	if err != nil {
		return nil, fmt.Errorf("read template: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return LoadSource(path, src, filepath.Dir(abs), opt)
}

// LoadSource reads a template from memory; dir is where relative paths in
// it resolve (the current directory for the embedded default).
func LoadSource(name string, src []byte, dir string, opt Options) (*plan.Plan, error) {
	l := &loader{parser: hclparse.NewParser(), dir: dir, opt: opt}
	if diags := CheckSource(name, src); diags.HasErrors() {
		return nil, &Error{Diags: diags, parser: l.parser}
	}
	p, diags := l.load(name, src)
	if diags.HasErrors() {
		return nil, &Error{Diags: diags, parser: l.parser}
	}
	return p, nil
}

func (o Options) ctx() context.Context {
	if o.Context == nil {
		return context.Background()
	}
	return o.Context
}

// CheckSource rejects what cannot be a template before it is parsed: more
// than MaxSourceSize bytes, or bytes that are not UTF-8 text (HCL is
// UTF-8; a binary file would give a diagnostic for nearly every byte).
func CheckSource(name string, src []byte) hcl.Diagnostics {
	return checkSource(name, src, "a template")
}

// checkSource is CheckSource for what (a template, a variable file).
func checkSource(name string, src []byte, what string) hcl.Diagnostics {
	if len(src) > MaxSourceSize {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Template too large",
			Detail: fmt.Sprintf("%s is %d bytes; %s is at most %d. Is it the right file?", name, len(src), what, MaxSourceSize)}}
	}
	bad := bytes.IndexByte(src, 0)
	if i := invalidUTF8(src); i >= 0 && (bad < 0 || i < bad) {
		bad = i
	}
	if bad < 0 {
		return nil
	}
	pos := hcl.Pos{Line: 1 + bytes.Count(src[:bad], []byte("\n")), Column: 1 + bad - (bytes.LastIndexByte(src[:bad], '\n') + 1), Byte: bad}
	end := pos
	end.Column++
	end.Byte++
	return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Not a text file",
		Detail:  fmt.Sprintf("byte %d is 0x%02x, which is not UTF-8 text; %s is an HCL text file. Is it the right file?", bad, src[bad], what),
		Subject: &hcl.Range{Filename: name, Start: pos, End: end}}}
}

// invalidUTF8 is the offset of the first byte that is not valid UTF-8,
// or -1.
func invalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

type loader struct {
	parser *hclparse.Parser
	dir    string
	opt    Options
	// files read by file() and by provisioners, for the inputs digest
	inputs map[string][]byte
}

func (l *loader) load(name string, src []byte) (*plan.Plan, hcl.Diagnostics) {
	f, diags := l.parser.ParseHCL(src, name)
	if diags.HasErrors() {
		return nil, diags
	}
	content, d := f.Body.Content(topSchema)
	diags = append(diags, d...)
	if diags.HasErrors() {
		return nil, diags
	}
	l.inputs = map[string][]byte{}
	vars, d := l.variables(content.Blocks.OfType("variable"))
	diags = append(diags, d...)
	if diags.HasErrors() {
		return nil, diags
	}
	ctx, d := l.evalContext(vars, content.Blocks.OfType("locals"))
	diags = append(diags, d...)
	if diags.HasErrors() {
		return nil, diags
	}
	p := &plan.Plan{TemplatePath: name, Dir: l.dir}
	seen := map[string]*hcl.Block{}
	for _, b := range content.Blocks.OfType("image") {
		if d := checkImageName(b); d != nil {
			diags = append(diags, d)
			continue
		}
		if prev, ok := seen[b.Labels[0]]; ok {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Duplicate image",
				Detail: fmt.Sprintf("An image named %q is already defined at %s.", b.Labels[0], prev.DefRange), Subject: b.LabelRanges[0].Ptr()})
			continue
		}
		seen[b.Labels[0]] = b
		img, d := l.image(b, ctx)
		diags = append(diags, d...)
		if img != nil && !d.HasErrors() {
			// The whole disk layout, before any build starts.
			diags = append(diags, layoutDiagnostics(b, disk.CheckLayout(img))...)
		}
		if img != nil {
			p.Images = append(p.Images, *img)
		}
	}
	for _, b := range content.Blocks.OfType("register") {
		r, d := l.register(b, ctx, seen)
		diags = append(diags, d...)
		if r != nil {
			p.Registers = append(p.Registers, *r)
		}
	}
	if len(p.Images) == 0 && !diags.HasErrors() {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "No image block",
			Detail: "A template needs at least one image \"NAME\" { kind = \"raw\" ... } block.", Subject: f.Body.MissingItemRange().Ptr()})
	}
	diags = append(diags, l.checkSources(p, seen)...)
	if diags.HasErrors() {
		return nil, diags
	}
	// Each kind fills its defaults and refuses what it cannot build, once,
	// here: from now on nothing changes the plan (inspect shows what is
	// built).
	for i := range p.Images {
		img := &p.Images[i]
		err := builders.Prepare(img)
		var le *disk.LayoutError
		switch {
		case errors.As(err, &le):
			// The layout of the partitions the kind added: at the
			// attribute to change.
			diags = append(diags, layoutDiagnostics(seen[img.Name], err)...)
		case err != nil:
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Image cannot be built",
				Detail: strings.TrimSuffix(err.Error(), ".") + ".", Subject: seen[img.Name].DefRange.Ptr()})
		default:
			// The plan as it will be built, checked whole once more.
			diags = append(diags, layoutDiagnostics(seen[img.Name], disk.CheckLayout(img))...)
		}
	}
	if diags.HasErrors() {
		return nil, diags
	}
	p.InputsDigest = l.digest(src, vars)
	return p, diags
}

// checkSources verifies that an ova's source names an image or a file,
// and that a file provisioner's image names another image block.
func (l *loader) checkSources(p *plan.Plan, blocks map[string]*hcl.Block) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, img := range p.Images {
		for _, pr := range img.Provisioners {
			if pr.Image == "" || (p.Image(pr.Image) != nil && pr.Image != img.Name) {
				continue
			}
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unknown image",
				Detail:  fmt.Sprintf("image %q: a file provisioner copies in image %q, which is not another image block of this template.", img.Name, pr.Image),
				Subject: blocks[img.Name].DefRange.Ptr()})
		}
		if spec, err := builders.Lookup(img.Kind); err != nil || !spec.FromSource || img.Source == "" || p.Image(img.Source) != nil {
			continue
		}
		if _, err := os.Stat(img.Source); err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unknown source",
				Detail:  fmt.Sprintf("source %q is neither an image block of this template nor an existing file.", img.Source),
				Subject: attrRange(blocks[img.Name].Body, "source")})
		}
	}
	return diags
}

// digest is the inputs digest: the template, the resolved variables and
// every file the template reads.
func (l *loader) digest(src []byte, vars map[string]cty.Value) string {
	h := sha256.New()
	fmt.Fprintf(h, "template %d\n", len(src))
	h.Write(src)
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "var %q=%s\n", k, render(vars[k]))
	}
	files := make([]string, 0, len(l.inputs))
	for k := range l.inputs {
		files = append(files, k)
	}
	sort.Strings(files)
	for _, f := range files {
		s := sha256.Sum256(l.inputs[f])
		fmt.Fprintf(h, "file %q %x\n", f, s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

var topSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "image", LabelNames: []string{"name"}},
		{Type: "register", LabelNames: []string{"name"}},
	},
}
