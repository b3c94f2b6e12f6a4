// Package output prints what a command found as a table, JSON or YAML,
// chosen by the -o flag.
package output

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"sigs.k8s.io/yaml"
)

// Formats lists the values of -o for commands that print tables.
var Formats = []string{"table", "wide", "json", "yaml"}

// Check validates an -o value.
func Check(format string) error {
	for _, f := range Formats {
		if format == f || format == "" {
			return nil
		}
	}
	return fmt.Errorf("unknown output format %q: use table, wide, json or yaml", format)
}

// Print writes v as JSON or YAML, or calls table with a tab writer for
// "table" and "wide" (wide tells table to add columns).
func Print(w io.Writer, format string, v any, table func(tw *tabwriter.Writer, wide bool)) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case "", "table", "wide":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		table(tw, format == "wide")
		return tw.Flush()
	}
	return Check(format)
}
