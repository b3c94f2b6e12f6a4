// Package templates holds klab's embedded text templates: libvirt XML, the
// node image's init and configuration, cloud-init seeds and service files.
package templates

import (
	"bytes"
	"embed"
	"fmt"
	"strings"
	"text/template"
)

//go:embed libvirt image cloudinit systemd bird
var files embed.FS

var funcs = template.FuncMap{
	"join": strings.Join,
	// xml escapes a string for an XML attribute or text.
	"xml": func(s string) (string, error) {
		var b bytes.Buffer
		if err := xmlEscape(&b, s); err != nil {
			return "", err
		}
		return b.String(), nil
	},
	// yaml quotes a string as a YAML double-quoted scalar.
	"yaml": func(s string) string {
		r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`)
		return `"` + r.Replace(s) + `"`
	},
	// indent prefixes every line of s but the first with n spaces.
	"indent": func(n int, s string) string {
		return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+strings.Repeat(" ", n))
	},
}

// Render executes the template at name ("libvirt/domain.xml") with data.
func Render(name string, data any) ([]byte, error) {
	text, err := files.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	t, err := template.New(name).Funcs(funcs).Option("missingkey=error").Parse(string(text))
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// File returns a template's text as it is, for files without parameters.
func File(name string) ([]byte, error) {
	b, err := files.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return b, nil
}
