package labs

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// bundled holds the curriculum's lab files.
//
//go:embed *.yaml
var bundled embed.FS

// Bundled returns the labs built into klab, in curriculum order.
func Bundled() ([]*Lab, error) {
	names, err := fs.Glob(bundled, "*.yaml")
	if err != nil {
		return nil, err
	}
	var out []*Lab
	var errs Errors
	for _, n := range names {
		b, err := bundled.ReadFile(n)
		if err != nil {
			return nil, err
		}
		l, err := Parse("embedded:labs/"+n, b)
		if err != nil {
			errs = appendErr(errs, err)
			continue
		}
		out = append(out, l)
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return out, checkUnique(out)
}

func appendErr(errs Errors, err error) Errors {
	var es Errors
	if errors.As(err, &es) {
		return append(errs, es...)
	}
	return append(errs, &Error{Msg: err.Error()})
}

// LoadPath reads the lab file at path, or every *.yaml and *.yml file in
// the directory at path.
func LoadPath(path string) ([]*Lab, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("lab file or directory %s: %w", path, err)
	}
	files := []string{path}
	if st.IsDir() {
		files = nil
		for _, pat := range []string{"*.yaml", "*.yml"} {
			m, err := filepath.Glob(filepath.Join(path, pat))
			if err != nil {
				return nil, err
			}
			files = append(files, m...)
		}
		slices.Sort(files)
		if len(files) == 0 {
			return nil, fmt.Errorf("no lab files (*.yaml) in %s", path)
		}
	}
	var out []*Lab
	var errs Errors
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		l, err := Parse(f, b)
		if err != nil {
			errs = appendErr(errs, err)
			continue
		}
		out = append(out, l)
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return out, nil
}

// Catalog is the bundled labs and those of the paths given (files or
// directories). Two labs may not share an ID.
func Catalog(paths ...string) ([]*Lab, error) {
	all, err := Bundled()
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		more, err := LoadPath(p)
		if err != nil {
			return nil, err
		}
		all = append(all, more...)
	}
	slices.SortStableFunc(all, func(a, b *Lab) int {
		// The numbered curriculum first, then the others by ID.
		switch {
		case a.Number != 0 && b.Number != 0:
			return a.Number - b.Number
		case a.Number != 0:
			return -1
		case b.Number != 0:
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	return all, checkUnique(all)
}

func checkUnique(labs []*Lab) error {
	seen := map[string]*Lab{}
	nums := map[int]*Lab{}
	for _, l := range labs {
		if o, ok := seen[l.ID]; ok {
			return fmt.Errorf("two labs have the id %q: %s and %s", l.ID, o.Position(o.Line), l.Position(l.Line))
		}
		seen[l.ID] = l
		if l.Number == 0 {
			continue
		}
		if o, ok := nums[l.Number]; ok {
			return fmt.Errorf("two labs have the number %d: %s and %s", l.Number, o.Position(o.Line), l.Position(l.Line))
		}
		nums[l.Number] = l
	}
	return nil
}

// Find picks a lab by ID, by number, or by the path of its file (which
// need not be in the catalog).
func Find(catalog []*Lab, what string) (*Lab, error) {
	for _, l := range catalog {
		if l.ID == what {
			return l, nil
		}
	}
	if n, err := strconv.Atoi(what); err == nil {
		for _, l := range catalog {
			if l.Number == n {
				return l, nil
			}
		}
	}
	if strings.ContainsRune(what, os.PathSeparator) || strings.HasSuffix(what, ".yaml") || strings.HasSuffix(what, ".yml") {
		labs, err := LoadPath(what)
		if err != nil {
			return nil, err
		}
		if len(labs) != 1 {
			return nil, fmt.Errorf("%s holds %d labs: name one file", what, len(labs))
		}
		return labs[0], nil
	}
	var ids []string
	for _, l := range catalog {
		ids = append(ids, l.ID)
	}
	return nil, fmt.Errorf("%w %q: the labs are %s (klab lab list), or give a lab file's path", ErrNotFound, what, strings.Join(ids, ", "))
}
