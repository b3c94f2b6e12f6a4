package image

import (
	"bytes"
	"io/fs"
	"strconv"
	"testing"
)

// cpioEntry is one parsed header of a newc archive.
type cpioEntry struct {
	name         string
	mode         uint32
	data         string
	major, minor uint32
}

// parseCPIO reads a newc archive up to its trailer, and returns what
// follows it.
func parseCPIO(t *testing.T, b []byte) ([]cpioEntry, []byte) {
	t.Helper()
	var out []cpioEntry
	field := func(h []byte, i int) uint32 {
		v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("header field %d: %v", i, err)
		}
		return uint32(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; ; {
		if len(b)-off < 110 {
			t.Fatalf("truncated archive at %d", off)
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		namesize := int(field(h, 11))
		size := int(field(h, 6))
		name := string(b[off+110 : off+110+namesize-1])
		dataOff := align(off + 110 + namesize)
		e := cpioEntry{name: name, mode: field(h, 1), data: string(b[dataOff : dataOff+size]), major: field(h, 9), minor: field(h, 10)}
		off = align(dataOff + size)
		if name == "TRAILER!!!" {
			return out, b[off:]
		}
		out = append(out, e)
	}
}

func TestCPIO(t *testing.T) {
	var b bytes.Buffer
	c := NewCPIO(&b)
	steps := []error{
		c.File("/etc/ssh/sshd_config", []byte("Port 22\n"), 0o644),
		c.Dir("tmp", 0o777|fs.ModeSticky),
		c.Symlink("bin/sh", "/bin/busybox"),
		c.CharDevice("dev/console", 0o600, 5, 1),
		c.File("etc/ssh/key", []byte("secret"), 0o600),
		c.Close(),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if b.Len()%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", b.Len())
	}
	entries, rest := parseCPIO(t, b.Bytes())
	if len(rest) != 0 {
		t.Errorf("%d bytes after the trailer", len(rest))
	}
	want := []cpioEntry{
		{name: "etc", mode: 0o040755},
		{name: "etc/ssh", mode: 0o040755},
		{name: "etc/ssh/sshd_config", mode: 0o100644, data: "Port 22\n"},
		{name: "tmp", mode: 0o041777},
		{name: "bin", mode: 0o040755},
		{name: "bin/sh", mode: 0o120777, data: "/bin/busybox"},
		{name: "dev", mode: 0o040755},
		{name: "dev/console", mode: 0o020600, major: 5, minor: 1},
		{name: "etc/ssh/key", mode: 0o100600, data: "secret"},
	}
	if len(entries) != len(want) {
		t.Fatalf("got %d entries %v, want %d", len(entries), entries, len(want))
	}
	for i, w := range want {
		if entries[i] != w {
			t.Errorf("entry %d: got %+v, want %+v", i, entries[i], w)
		}
	}
}

func TestCPIOBadName(t *testing.T) {
	c := NewCPIO(&bytes.Buffer{})
	for _, name := range []string{"", "/", "."} {
		if err := c.File(name, nil, 0o644); err == nil {
			t.Errorf("File(%q): no error", name)
		}
	}
}

func TestNodeArchive(t *testing.T) {
	if _, err := NodeArchive(NodeConfig{}); err == nil {
		t.Fatal("no error without keys")
	}
	b, err := NodeArchive(NodeConfig{HostKey: []byte("PRIVATE"), HostKeyPub: "ssh-ed25519 AAAA host", AuthorizedKeys: []string{"ssh-ed25519 BBBB user"}})
	if err != nil {
		t.Fatal(err)
	}
	raw := gunzip(t, b)
	entries, _ := parseCPIO(t, raw)
	got := map[string]cpioEntry{}
	for _, e := range entries {
		got[e.name] = e
	}
	for name, want := range map[string]cpioEntry{
		"etc/ssh/ssh_host_ed25519_key":     {mode: 0o100600, data: "PRIVATE"},
		"etc/ssh/ssh_host_ed25519_key.pub": {mode: 0o100644, data: "ssh-ed25519 AAAA host\n"},
		"etc/ssh/authorized_keys":          {mode: 0o100600, data: "ssh-ed25519 BBBB user\n"},
	} {
		e, ok := got[name]
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		if e.mode != want.mode || e.data != want.data {
			t.Errorf("%s: mode %o data %q, want %o %q", name, e.mode, e.data, want.mode, want.data)
		}
	}
}

func TestConcat(t *testing.T) {
	got := Concat([]byte("abcde"), nil, []byte("0707"), []byte("xy"), []byte("z"))
	var all []byte
	for _, p := range got {
		all = append(all, p...)
	}
	if want := "abcde\x00\x00\x000707xy\x00\x00z"; string(all) != want {
		t.Errorf("got %q, want %q", all, want)
	}
}
