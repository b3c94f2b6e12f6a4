package image

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"sigs.k8s.io/yaml"

	"github.com/klab-dev/klab/internal/testutil"
)

// readISO reads the root directory of one view of an ISO image: the
// primary (sector 16) or the Joliet one (sector 17).
func readISO(t *testing.T, img []byte, sector int) (label string, files map[string]string) {
	t.Helper()
	d := img[sector*2048 : (sector+1)*2048]
	if string(d[1:6]) != "CD001" {
		t.Fatalf("sector %d: no volume descriptor", sector)
	}
	joliet := d[0] == 2
	if joliet && string(d[88:91]) != "%/E" {
		t.Fatalf("supplementary descriptor without Joliet escape: %q", d[88:91])
	}
	decode := func(b []byte) string {
		if !joliet {
			return string(b)
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			u[i] = binary.BigEndian.Uint16(b[2*i:])
		}
		return string(utf16.Decode(u))
	}
	label = strings.TrimRight(decode(d[40:72]), " ")
	if got := binary.LittleEndian.Uint32(d[80:]); int(got)*2048 != len(img) {
		t.Errorf("volume space %d sectors, image has %d bytes", got, len(img))
	}
	root := d[156 : 156+34]
	lba, size := binary.LittleEndian.Uint32(root[2:]), binary.LittleEndian.Uint32(root[10:])
	if binary.BigEndian.Uint32(root[6:]) != lba {
		t.Errorf("root extent: both-endian halves differ")
	}
	dir := img[lba*2048 : lba*2048+size]
	files = map[string]string{}
	for off := 0; off < len(dir) && dir[off] != 0; off += int(dir[off]) {
		r := dir[off : off+int(dir[off])]
		name := r[33 : 33+int(r[32])]
		if len(name) == 1 && name[0] <= 1 {
			continue // . and ..
		}
		flba, fsize := binary.LittleEndian.Uint32(r[2:]), binary.LittleEndian.Uint32(r[10:])
		files[decode(name)] = string(img[flba*2048 : flba*2048+fsize])
	}
	return label, files
}

func TestWriteISO(t *testing.T) {
	big := strings.Repeat("x", 5000) // more than a sector
	files := []ISOFile{
		{Name: "user-data", Data: []byte("#cloud-config\n")},
		{Name: "meta-data", Data: []byte("instance-id: a\n")},
		{Name: "network-config", Data: []byte(big)},
		{Name: "empty", Data: nil},
	}
	var b bytes.Buffer
	if err := WriteISO(&b, "cidata", files, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	if b.Len()%2048 != 0 {
		t.Fatalf("image is %d bytes, not whole sectors", b.Len())
	}
	img := b.Bytes()
	label, got := readISO(t, img, 17)
	if label != "cidata" {
		t.Errorf("Joliet label %q", label)
	}
	for _, f := range files {
		if got[f.Name] != string(f.Data) {
			t.Errorf("Joliet %s: got %d bytes, want %d", f.Name, len(got[f.Name]), len(f.Data))
		}
	}
	label, prim := readISO(t, img, 16)
	if label != "cidata" {
		t.Errorf("primary label %q", label)
	}
	for name, want := range map[string]string{"USER_DAT.;1": "#cloud-config\n", "META_DAT.;1": "instance-id: a\n", "NETWORK_.;1": big, "EMPTY.;1": ""} {
		if prim[name] != want {
			t.Errorf("primary %s: got %d bytes, want %d (have %v)", name, len(prim[name]), len(want), keys(prim))
		}
	}
	if img[18*2048] != 255 {
		t.Error("no terminator at sector 18")
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestWriteISOErrors(t *testing.T) {
	for _, tc := range []struct {
		label string
		files []ISOFile
	}{
		{"", nil},
		{"a-label-that-is-too-long", nil},
		{"cidata", []ISOFile{{Name: "a/b"}}},
		{"cidata", []ISOFile{{Name: "x"}, {Name: "x"}}},
		{"cidata", []ISOFile{{Name: ""}}},
	} {
		if err := WriteISO(&bytes.Buffer{}, tc.label, tc.files, time.Now()); err == nil {
			t.Errorf("WriteISO(%q, %v): no error", tc.label, tc.files)
		}
	}
}

func TestISONamesUnique(t *testing.T) {
	got := isoNames([]ISOFile{{Name: "network-config"}, {Name: "network-config2"}, {Name: "a.tar.gz"}})
	want := []string{"NETWORK_.;1", "NETWORK1.;1", "A_TAR.GZ;1"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("name %d: %q, want %q", i, got[i], want[i])
		}
	}
}

func TestSeed(t *testing.T) {
	s, err := Seed(SeedConfig{
		Hostname: "node1", InstanceID: "klab-c-node1", AuthorizedKey: "ssh-ed25519 AAAA klab@c",
		HostKey: []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"), HostKeyPub: "ssh-ed25519 BBBB",
		Interfaces: []SeedInterface{{Name: "eth0", MAC: "52:54:00:01:02:03", Address: "192.168.35.12/24",
			Routes: []SeedRoute{{To: "192.168.34.0/24", Via: "192.168.35.1"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, files := readISO(t, s, 17)
	for _, name := range []string{"meta-data", "user-data", "network-config"} {
		var v map[string]any
		if err := yaml.Unmarshal([]byte(files[name]), &v); err != nil {
			t.Errorf("%s is not YAML: %v\n%s", name, err, files[name])
		}
	}
	var ud struct {
		SSHKeys map[string]string `json:"ssh_keys"`
		Users   []struct {
			Name string   `json:"name"`
			Keys []string `json:"ssh_authorized_keys"`
		} `json:"users"`
	}
	if err := yaml.Unmarshal([]byte(files["user-data"]), &ud); err != nil {
		t.Fatal(err)
	}
	if ud.SSHKeys["ed25519_private"] != "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n" || ud.SSHKeys["ed25519_public"] != "ssh-ed25519 BBBB" {
		t.Errorf("ssh_keys %q", ud.SSHKeys)
	}
	if len(ud.Users) != 1 || ud.Users[0].Name != "root" || len(ud.Users[0].Keys) != 1 || ud.Users[0].Keys[0] != "ssh-ed25519 AAAA klab@c" {
		t.Errorf("users %+v", ud.Users)
	}
	for name, want := range map[string][]string{
		"meta-data":      {"instance-id: klab-c-node1", "local-hostname: node1"},
		"user-data":      {"#cloud-config", `- "ssh-ed25519 AAAA klab@c"`, "    -----BEGIN OPENSSH PRIVATE KEY-----\n    abc\n", "ExecStart=/usr/local/bin/klab supervise", "net.ipv4.ip_forward = 0"},
		"network-config": {"version: 2", `macaddress: "52:54:00:01:02:03"`, "addresses: [192.168.35.12/24]", "- to: 192.168.34.0/24\n        via: 192.168.35.1"},
	} {
		for _, w := range want {
			if !strings.Contains(files[name], w) {
				t.Errorf("%s lacks %q:\n%s", name, w, files[name])
			}
		}
	}
}

// TestIntegrationSeedMounts checks that Linux reads the seed as cloud-init
// would: a filesystem labelled cidata with the files under their names.
func TestIntegrationSeedMounts(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireCommand(t, "blkid", "mount", "umount")
	var b bytes.Buffer
	if err := WriteISO(&b, "cidata", []ISOFile{{Name: "user-data", Data: []byte("#cloud-config\n")}, {Name: "meta-data", Data: []byte("instance-id: x\n")}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	iso := filepath.Join(dir, "seed.iso")
	if err := os.WriteFile(iso, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("blkid", "-o", "export", iso).CombinedOutput()
	if err != nil {
		t.Fatalf("blkid: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "LABEL=cidata") || !strings.Contains(string(out), "TYPE=iso9660") {
		t.Errorf("blkid: %s", out)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", "-o", "loop,ro", "-t", "iso9660", iso, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount here: %v: %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	got, err := os.ReadFile(filepath.Join(mnt, "user-data"))
	if err != nil || string(got) != "#cloud-config\n" {
		t.Errorf("user-data: %q, %v", got, err)
	}
}
