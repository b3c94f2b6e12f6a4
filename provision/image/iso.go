package image

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf16"
)

// ISOFile is a file in the root directory of an ISO image.
type ISOFile struct {
	Name string // any name up to 64 characters; Joliet keeps it as it is
	Data []byte
}

const isoSector = 2048

// Sector numbers of the layout WriteISO uses: the system area, then the
// primary (ISO 9660) and supplementary (Joliet) volume descriptors, the
// terminator, the path tables, one root directory for each view, and the
// files' data.
const (
	isoPVD = 16 + iota
	isoSVD
	isoTerm
	isoPathL
	isoPathM
	isoJPathL
	isoJPathM
	isoRoot
	isoJRoot
	isoData
)

// WriteISO writes an ISO 9660 image with Joliet extensions whose root
// directory holds files. label is the volume identifier ("cidata" for a
// cloud-init NoCloud seed). Every file is in the root directory; both
// directories must fit in one sector each (a few dozen files).
func WriteISO(w io.Writer, label string, files []ISOFile, t time.Time) error {
	if len(label) == 0 || len(label) > 16 {
		return fmt.Errorf("iso: volume label %q: use 1 to 16 characters", label)
	}
	seen := map[string]bool{}
	for _, f := range files {
		if f.Name == "" || len(f.Name) > 64 || strings.ContainsAny(f.Name, "/;\x00") {
			return fmt.Errorf("iso: invalid file name %q", f.Name)
		}
		if seen[f.Name] {
			return fmt.Errorf("iso: duplicate file %q", f.Name)
		}
		seen[f.Name] = true
	}
	t = t.UTC()
	// Data extents, in the order given.
	lba := make([]uint32, len(files))
	next := uint32(isoData)
	for i, f := range files {
		lba[i] = next
		next += uint32((len(f.Data) + isoSector - 1) / isoSector)
	}
	total := next

	primary := isoNames(files)
	pdir, err := isoDirectory(files, lba, isoRoot, t, func(i int) []byte { return []byte(primary[i]) })
	if err != nil {
		return err
	}
	jdir, err := isoDirectory(files, lba, isoJRoot, t, func(i int) []byte { return ucs2(files[i].Name) })
	if err != nil {
		return err
	}

	img := make([]byte, isoData*isoSector)
	copy(img[isoPVD*isoSector:], isoDescriptor(1, label, total, isoPathL, isoPathM, isoRoot, t))
	copy(img[isoSVD*isoSector:], isoDescriptor(2, label, total, isoJPathL, isoJPathM, isoJRoot, t))
	term := img[isoTerm*isoSector:]
	term[0] = 255
	copy(term[1:], "CD001")
	term[6] = 1
	copy(img[isoPathL*isoSector:], isoPathTable(isoRoot, binary.LittleEndian))
	copy(img[isoPathM*isoSector:], isoPathTable(isoRoot, binary.BigEndian))
	copy(img[isoJPathL*isoSector:], isoPathTable(isoJRoot, binary.LittleEndian))
	copy(img[isoJPathM*isoSector:], isoPathTable(isoJRoot, binary.BigEndian))
	copy(img[isoRoot*isoSector:], pdir)
	copy(img[isoJRoot*isoSector:], jdir)
	if _, err := w.Write(img); err != nil {
		return err
	}
	for _, f := range files {
		if _, err := w.Write(f.Data); err != nil {
			return err
		}
		if r := len(f.Data) % isoSector; r != 0 {
			if _, err := w.Write(make([]byte, isoSector-r)); err != nil {
				return err
			}
		}
	}
	return nil
}

// isoNames makes ISO 9660 level 1 names (8.3, upper case, ";1") for the
// primary directory, unique among themselves.
func isoNames(files []ISOFile) []string {
	dchar := func(s string, n int) string {
		var b strings.Builder
		for _, r := range strings.ToUpper(s) {
			if b.Len() == n {
				break
			}
			if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
				b.WriteRune(r)
			} else {
				b.WriteByte('_')
			}
		}
		return b.String()
	}
	out := make([]string, len(files))
	used := map[string]bool{}
	for i, f := range files {
		base, ext := f.Name, ""
		if j := strings.LastIndex(f.Name, "."); j > 0 {
			base, ext = f.Name[:j], f.Name[j+1:]
		}
		b, e := dchar(base, 8), dchar(ext, 3)
		name := b + "." + e + ";1"
		for n := 1; used[name]; n++ {
			s := fmt.Sprint(n)
			name = b[:min(len(b), 8-len(s))] + s + "." + e + ";1"
		}
		used[name] = true
		out[i] = name
	}
	return out
}

func ucs2(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.BigEndian.PutUint16(b[2*i:], c)
	}
	return b
}

func both32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b, v)
	binary.BigEndian.PutUint32(b[4:], v)
}

func both16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b, v)
	binary.BigEndian.PutUint16(b[2:], v)
}

// isoRecord is a directory record.
func isoRecord(name []byte, lba, size uint32, dir bool, t time.Time) []byte {
	n := 33 + len(name)
	if n%2 == 1 {
		n++
	}
	r := make([]byte, n)
	r[0] = byte(n)
	both32(r[2:], lba)
	both32(r[10:], size)
	r[18] = byte(t.Year() - 1900)
	r[19], r[20], r[21], r[22], r[23] = byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second())
	if dir {
		r[25] = 2
	}
	both16(r[28:], 1)
	r[32] = byte(len(name))
	copy(r[33:], name)
	return r
}

func isoDirectory(files []ISOFile, lba []uint32, self uint32, t time.Time, name func(int) []byte) ([]byte, error) {
	var b bytes.Buffer
	b.Write(isoRecord([]byte{0}, self, isoSector, true, t))
	b.Write(isoRecord([]byte{1}, self, isoSector, true, t))
	order := make([]int, len(files))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return bytes.Compare(name(a), name(b)) })
	for _, i := range order {
		b.Write(isoRecord(name(i), lba[i], uint32(len(files[i].Data)), false, t))
	}
	if b.Len() > isoSector {
		return nil, fmt.Errorf("iso: %d files do not fit in one directory sector", len(files))
	}
	return b.Bytes(), nil
}

func isoPathTable(root uint32, order binary.ByteOrder) []byte {
	r := make([]byte, 10)
	r[0] = 1
	order.PutUint32(r[2:], root)
	order.PutUint16(r[6:], 1)
	return r
}

// isoDescriptor is a primary (kind 1) or Joliet supplementary (kind 2)
// volume descriptor.
func isoDescriptor(kind byte, label string, total, pathL, pathM, root uint32, t time.Time) []byte {
	d := make([]byte, isoSector)
	d[0] = kind
	copy(d[1:], "CD001")
	d[6] = 1
	text := func(off, n int, s string) {
		if kind == 2 {
			b := ucs2(s)
			for i := 0; i < n; i += 2 {
				d[off+i], d[off+i+1] = 0, ' '
			}
			copy(d[off:off+n], b)
			return
		}
		copy(d[off:off+n], strings.Repeat(" ", n))
		copy(d[off:off+n], s)
	}
	text(8, 32, "LINUX")
	text(40, 32, label)
	both32(d[80:], total)
	if kind == 2 {
		copy(d[88:], "%/E") // UCS-2 level 3
	}
	both16(d[120:], 1)
	both16(d[124:], 1)
	both16(d[128:], isoSector)
	both32(d[132:], 10)
	binary.LittleEndian.PutUint32(d[140:], pathL)
	binary.BigEndian.PutUint32(d[148:], pathM)
	copy(d[156:], isoRecord([]byte{0}, root, isoSector, true, t))
	for _, f := range [][2]int{{190, 128}, {318, 128}, {446, 128}, {574, 128}, {702, 37}, {739, 37}, {776, 37}} {
		text(f[0], f[1], "")
	}
	text(574, 128, "KLAB")
	stamp := []byte(t.Format("20060102150405") + "00\x00")
	copy(d[813:], stamp)
	copy(d[830:], stamp)
	copy(d[847:], "0000000000000000\x00")
	copy(d[864:], stamp)
	d[881] = 1
	return d
}
