package image

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DefaultLibDirs are where the dynamic linker of a Debian system looks for
// shared libraries.
var DefaultLibDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// Libraries returns what a dynamically linked executable needs to run: its
// program interpreter (the dynamic linker) and, transitively, every shared
// library named by a DT_NEEDED entry, each found in the binary's own
// DT_RUNPATH/DT_RPATH or in dirs. Paths are as the loader will look for
// them (symbolic links not resolved), without duplicates, in the order
// found. A static executable needs nothing.
func Libraries(binary string, dirs []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	var walk func(file string) error
	walk = func(file string) error {
		f, err := elf.Open(file)
		if err != nil {
			return fmt.Errorf("read ELF %s: %w", file, err)
		}
		defer f.Close()
		if f.Machine != elf.EM_X86_64 {
			return fmt.Errorf("%s is for %s, not x86-64", file, f.Machine)
		}
		for _, p := range f.Progs {
			if p.Type != elf.PT_INTERP {
				continue
			}
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return fmt.Errorf("read interpreter of %s: %w", file, err)
			}
			interp := strings.TrimRight(string(b), "\x00")
			if !seen[interp] {
				seen[interp] = true
				out = append(out, interp)
			}
		}
		needed, err := f.DynString(elf.DT_NEEDED)
		if err != nil {
			if errors.Is(err, elf.ErrNoSymbols) || f.Section(".dynamic") == nil {
				return nil // static
			}
			return fmt.Errorf("read DT_NEEDED of %s: %w", file, err)
		}
		search := dirs
		for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
			paths, _ := f.DynString(tag)
			for _, p := range paths {
				for _, d := range strings.Split(p, ":") {
					d = strings.ReplaceAll(d, "$ORIGIN", filepath.Dir(file))
					search = append([]string{d}, search...)
				}
			}
		}
		for _, lib := range needed {
			path, err := findLib(lib, search)
			if err != nil {
				return fmt.Errorf("%s needs %s: %w", file, lib, err)
			}
			if seen[path] {
				continue
			}
			seen[path] = true
			out = append(out, path)
			if err := walk(path); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(binary); err != nil {
		return nil, err
	}
	return out, nil
}

func findLib(name string, dirs []string) (string, error) {
	if strings.Contains(name, "/") {
		if _, err := os.Stat(name); err != nil {
			return "", err
		}
		return name, nil
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("not found in %s", strings.Join(dirs, ", "))
}
