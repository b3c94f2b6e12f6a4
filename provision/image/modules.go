package image

import (
	"bufio"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// ModuleDeps is a kernel's modules.dep: every loadable module's file
// (relative to /lib/modules/VERSION) and the files it depends on.
type ModuleDeps struct {
	files map[string]string   // module name -> file
	deps  map[string][]string // file -> files it needs
	names []string            // sorted
}

// ModuleName is the name of a module file: "kernel/net/ipv4/ipip.ko.xz" is
// "ipip"; dashes become underscores, as the kernel sees them.
func ModuleName(file string) string {
	b := path.Base(file)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

// ParseModulesDep reads modules.dep.
func ParseModulesDep(r io.Reader) (*ModuleDeps, error) {
	m := &ModuleDeps{files: map[string]string{}, deps: map[string][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		file, deps, ok := strings.Cut(t, ":")
		if !ok {
			return nil, fmt.Errorf("modules.dep line %d: no ':' in %q", line, t)
		}
		name := ModuleName(file)
		m.files[name] = file
		m.deps[file] = strings.Fields(deps)
		m.names = append(m.names, name)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	slices.Sort(m.names)
	return m, nil
}

// ParseModulesBuiltin reads modules.builtin: the names of the modules that
// are part of the kernel image itself.
func ParseModulesBuiltin(r io.Reader) (map[string]bool, error) {
	out := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			out[ModuleName(t)] = true
		}
	}
	return out, sc.Err()
}

// Closure returns the files of the wanted modules and of everything they
// depend on, in an order they can be loaded in (dependencies first).
// wanted holds names ("ipip") or patterns ("nft_*"); a name that is built
// into the kernel needs no file, a name that is neither is an error, and a
// pattern may match nothing.
func (m *ModuleDeps) Closure(wanted []string, builtin map[string]bool) ([]string, error) {
	var out []string
	done := map[string]bool{}
	var visit func(file string, stack []string) error
	visit = func(file string, stack []string) error {
		if done[file] {
			return nil
		}
		if slices.Contains(stack, file) {
			return fmt.Errorf("modules.dep: dependency cycle through %s", file)
		}
		for _, d := range m.deps[file] {
			if _, ok := m.deps[d]; !ok {
				return fmt.Errorf("modules.dep: %s needs %s, which it does not list", file, d)
			}
			if err := visit(d, append(stack, file)); err != nil {
				return err
			}
		}
		done[file] = true
		out = append(out, file)
		return nil
	}
	for _, w := range wanted {
		w = strings.ReplaceAll(w, "-", "_")
		if strings.ContainsAny(w, "*?[") {
			for _, n := range m.names {
				if ok, err := path.Match(w, n); err != nil {
					return nil, fmt.Errorf("module pattern %q: %w", w, err)
				} else if ok {
					if err := visit(m.files[n], nil); err != nil {
						return nil, err
					}
				}
			}
			continue
		}
		file, ok := m.files[w]
		if !ok {
			if builtin[w] {
				continue
			}
			return nil, fmt.Errorf("kernel module %s is neither built in nor in modules.dep", w)
		}
		if err := visit(file, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ScanModules builds the dependency table of the modules under dir
// (/lib/modules/VERSION) from each module's own .modinfo "depends=" —
// for a kernel package unpacked without running depmod, which ships no
// modules.dep. Only uncompressed modules (.ko) can be read this way.
func ScanModules(dir string) (*ModuleDeps, error) {
	m := &ModuleDeps{files: map[string]string{}, deps: map[string][]string{}}
	needs := map[string][]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.Contains(d.Name(), ".ko") {
			return nil
		}
		if !strings.HasSuffix(d.Name(), ".ko") {
			return fmt.Errorf("%s is compressed and there is no modules.dep beside it: run depmod, or give an uncompressed module tree", p)
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		deps, err := modinfoDepends(p)
		if err != nil {
			return err
		}
		name := ModuleName(rel)
		m.files[name] = rel
		m.names = append(m.names, name)
		needs[rel] = deps
		return nil
	})
	if err != nil {
		return nil, err
	}
	for file, deps := range needs {
		for _, d := range deps {
			f, ok := m.files[d]
			if !ok {
				return nil, fmt.Errorf("module %s depends on %s, which is not under %s", file, d, dir)
			}
			m.deps[file] = append(m.deps[file], f)
		}
		if m.deps[file] == nil {
			m.deps[file] = []string{}
		}
	}
	slices.Sort(m.names)
	return m, nil
}

// modinfoDepends reads the "depends=" entry of a module's .modinfo section.
func modinfoDepends(file string) ([]string, error) {
	f, err := elf.Open(file)
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", file, err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, nil
	}
	b, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo of %s: %w", file, err)
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if v, ok := strings.CutPrefix(kv, "depends="); ok {
			var out []string
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					out = append(out, strings.ReplaceAll(d, "-", "_"))
				}
			}
			return out, nil
		}
	}
	return nil, nil
}
