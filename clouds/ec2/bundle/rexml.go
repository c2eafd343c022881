package bundle

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

// ec2-ami-tools are Ruby and keep the manifest as a REXML document. They
// sign and verify it over REXML's serialisation of that document, not over
// the bytes of the file: ManifestV20071010#sign and #authenticate take
// XMLUtil.get_xml(@doc.to_s, "machine_configuration") + get_xml(@doc.to_s,
// "image"), the text from the first "<machine_configuration>" to the first
// "</machine_configuration>" and likewise for "<image>", in what
// REXML::Document#to_s writes. ec2-migrate-manifest refuses a manifest whose
// signature does not verify over those bytes ("Manifest fails
// authentication"). So the manifest is written in REXML's own output form,
// which REXML re-serialises unchanged, and checked over that form.

// rexmlText escapes a value as REXML's Text::normalize does for text and
// attribute values set from Ruby (rexml/text.rb): & first, then the
// default entities >, <, " and '.
func rexmlText(s string) string {
	return strings.NewReplacer("&", "&amp;", ">", "&gt;", "<", "&lt;", `"`, "&quot;", "'", "&apos;").Replace(s)
}

// rexmlForm re-serialises doc as REXML 3.x writes a document it parsed
// (REXML::Document.new(doc).to_s, rexml/formatters/default.rb):
//   - the XML declaration as <?xml version='V'?>, with encoding='E' and
//     standalone='S' only when the source has them (rexml/xmldecl.rb);
//   - an element as <name, its attributes sorted by name, each as
//     name='value' with the value as written in the source and ' as
//     &apos; (rexml/attribute.rb #to_string), then /> when it has no
//     children at all, else >children</name>;
//   - text (whitespace between elements too) as written in the source,
//     entity references unexpanded, line ends \r\n and \r as \n
//     (rexml/text.rb: parsed text is kept raw);
//   - comments, CDATA sections and processing instructions as written.
//
// A DOCTYPE is refused: a manifest never has one and REXML would expand
// its entities.
func rexmlForm(doc []byte) ([]byte, error) {
	d := xml.NewDecoder(bytes.NewReader(doc))
	d.Strict = true
	var out bytes.Buffer
	open := false // a start tag is written up to its attributes: ">" or "/>" still to come
	for {
		start := d.InputOffset()
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		raw := doc[start:d.InputOffset()]
		if open {
			open = false
			if _, ok := tok.(xml.EndElement); ok {
				out.WriteString("/>")
				continue
			}
			out.WriteString(">")
		}
		switch t := tok.(type) {
		case xml.StartElement:
			attrs := rawAttrs(raw)
			out.WriteString("<" + qname(t.Name))
			for _, a := range attrs {
				out.WriteString(" " + a.name + "='" + strings.ReplaceAll(a.value, "'", "&apos;") + "'")
			}
			open = true
		case xml.EndElement:
			out.WriteString("</" + qname(t.Name) + ">")
		case xml.CharData:
			if bytes.HasPrefix(raw, []byte("<![CDATA[")) {
				out.Write(raw)
			} else {
				out.Write(bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n")), []byte("\r"), []byte("\n")))
			}
		case xml.Comment:
			out.Write(raw)
		case xml.ProcInst:
			if t.Target != "xml" {
				out.Write(raw)
				continue
			}
			out.WriteString("<?xml")
			for _, k := range []string{"version", "encoding", "standalone"} {
				v, ok := pseudoAttr(string(t.Inst), k)
				if k == "version" && !ok {
					v, ok = "1.0", true
				}
				if ok {
					out.WriteString(" " + k + "='" + v + "'")
				}
			}
			out.WriteString("?>")
		case xml.Directive:
			return nil, errors.New("bundle manifest has a DOCTYPE or other declaration")
		}
	}
	return out.Bytes(), nil
}

func qname(n xml.Name) string {
	if n.Space != "" {
		return n.Space + ":" + n.Local
	}
	return n.Local
}

type rawAttr struct{ name, value string }

var attrRE = regexp.MustCompile(`\s+([^\s=/>]+)\s*=\s*(?:"([^"]*)"|'([^']*)')`)

// rawAttrs reads the attributes of a start tag with their values as
// written (encoding/xml would expand the references REXML keeps), sorted
// by name as REXML writes them.
func rawAttrs(tag []byte) []rawAttr {
	var attrs []rawAttr
	for _, m := range attrRE.FindAllSubmatch(tag, -1) {
		v := m[2]
		if v == nil {
			v = m[3]
		}
		attrs = append(attrs, rawAttr{string(m[1]), string(v)})
	}
	sort.SliceStable(attrs, func(i, j int) bool { return attrs[i].name < attrs[j].name })
	return attrs
}

var pseudoAttrRE = regexp.MustCompile(`(\w+)\s*=\s*(?:"([^"]*)"|'([^']*)')`)

// pseudoAttr reads one of the XML declaration's pseudo-attributes.
func pseudoAttr(inst, name string) (string, bool) {
	for _, m := range pseudoAttrRE.FindAllStringSubmatch(inst, -1) {
		if m[1] == name {
			return m[2] + m[3], true
		}
	}
	return "", false
}

// signedBytes is what ec2-ami-tools sign in a manifest in REXML form: the
// machine_configuration element (none: nothing) followed by the image
// element, found as the tools find them, by their first plain start and
// end tags (XMLUtil.get_xml).
func signedBytes(form []byte) ([]byte, error) {
	get := func(name string) []byte {
		i := bytes.Index(form, []byte("<"+name+">"))
		j := bytes.Index(form, []byte("</"+name+">"))
		if i < 0 || j < i {
			return nil
		}
		return form[i : j+len("</"+name+">")]
	}
	img := get("image")
	if img == nil {
		return nil, fmt.Errorf("bundle manifest has no image element to verify")
	}
	return append(append([]byte(nil), get("machine_configuration")...), img...), nil
}
