package image

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// elfWithSection makes a minimal x86-64 ELF relocatable file holding one
// named section.
func elfWithSection(t *testing.T, name string, data []byte) []byte {
	t.Helper()
	shstr := []byte("\x00" + name + "\x00.shstrtab\x00")
	var b bytes.Buffer
	le := binary.LittleEndian
	ehdr := make([]byte, 64)
	copy(ehdr, "\x7fELF\x02\x01\x01")
	le.PutUint16(ehdr[16:], 1)  // ET_REL
	le.PutUint16(ehdr[18:], 62) // EM_X86_64
	le.PutUint32(ehdr[20:], 1)
	dataOff := 64
	strOff := dataOff + len(data)
	shOff := (strOff + len(shstr) + 7) &^ 7
	le.PutUint64(ehdr[40:], uint64(shOff))
	le.PutUint16(ehdr[52:], 64)
	le.PutUint16(ehdr[58:], 64)
	le.PutUint16(ehdr[60:], 3) // sections: null, name, .shstrtab
	le.PutUint16(ehdr[62:], 2)
	b.Write(ehdr)
	b.Write(data)
	b.Write(shstr)
	b.Write(make([]byte, shOff-b.Len()))
	sh := func(nameIdx, typ uint32, off, size int) {
		s := make([]byte, 64)
		le.PutUint32(s[0:], nameIdx)
		le.PutUint32(s[4:], typ)
		le.PutUint64(s[24:], uint64(off))
		le.PutUint64(s[32:], uint64(size))
		le.PutUint64(s[48:], 1)
		b.Write(s)
	}
	sh(0, 0, 0, 0)
	sh(1, 1, dataOff, len(data))                   // SHT_PROGBITS
	sh(uint32(2+len(name)), 3, strOff, len(shstr)) // SHT_STRTAB
	return b.Bytes()
}

func TestLibrariesOfThisSystem(t *testing.T) {
	sshd := "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		t.Skip("needs OpenSSH's sshd (make deps installs it)")
	}
	libs, err := Libraries(sshd, DefaultLibDirs)
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) == 0 || !strings.Contains(libs[0], "ld-linux-x86-64.so.2") {
		t.Fatalf("first library %v, want the dynamic linker", libs)
	}
	var libc, crypto bool
	seen := map[string]bool{}
	for _, l := range libs {
		if seen[l] {
			t.Errorf("%s listed twice", l)
		}
		seen[l] = true
		libc = libc || filepath.Base(l) == "libc.so.6"
		crypto = crypto || strings.HasPrefix(filepath.Base(l), "libcrypto.so")
	}
	if !libc || !crypto {
		t.Errorf("libc %v, libcrypto %v in %v", libc, crypto, libs)
	}
}

func TestLibrariesStatic(t *testing.T) {
	f := filepath.Join(t.TempDir(), "static")
	if err := os.WriteFile(f, elfWithSection(t, ".text", []byte{0xc3}), 0o755); err != nil {
		t.Fatal(err)
	}
	libs, err := Libraries(f, DefaultLibDirs)
	if err != nil || len(libs) != 0 {
		t.Errorf("static file: %v, %v", libs, err)
	}
}

func TestLibrariesErrors(t *testing.T) {
	f := filepath.Join(t.TempDir(), "text")
	os.WriteFile(f, []byte("#!/bin/sh\n"), 0o755)
	if _, err := Libraries(f, nil); err == nil {
		t.Error("a script: no error")
	}
	if got, err := findLib("libnothere.so.9", []string{t.TempDir()}); err == nil {
		t.Errorf("findLib: %q, no error", got)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "libx.so.1"), nil, 0o644)
	if got, err := findLib("libx.so.1", []string{"/nonexistent", dir}); err != nil || got != filepath.Join(dir, "libx.so.1") {
		t.Errorf("findLib: %q, %v", got, err)
	}
}
