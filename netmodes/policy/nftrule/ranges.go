package nftrule

import (
	"net/netip"
	"slices"
)

// Range is the IPv4 addresses From to To, both included.
type Range struct {
	From, To netip.Addr
}

func (r Range) String() string {
	if r.From == r.To {
		return r.From.String()
	}
	if p, ok := r.prefix(); ok {
		return p.String()
	}
	return r.From.String() + "-" + r.To.String()
}

// prefix is the range as a CIDR prefix, when it is one.
func (r Range) prefix() (netip.Prefix, bool) {
	for bits := 0; bits <= 32; bits++ {
		p := netip.PrefixFrom(r.From, bits)
		if p.Masked().Addr() == r.From && lastAddr(p) == r.To {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// PrefixRange is the range a prefix covers.
func PrefixRange(p netip.Prefix) Range {
	p = p.Masked()
	return Range{From: p.Addr(), To: lastAddr(p)}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= uint32(uint64(1)<<(32-p.Bits()) - 1)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Merge sorts ranges and joins those that overlap or touch: what an
// interval set may hold.
func Merge(in []Range) []Range {
	rs := slices.Clone(in)
	slices.SortFunc(rs, func(a, b Range) int { return a.From.Compare(b.From) })
	var out []Range
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			next := last.To.Next()
			if !next.IsValid() || r.From.Compare(next) <= 0 {
				if r.To.Compare(last.To) > 0 {
					last.To = r.To
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// Subtract is the addresses of in that are in no range of except, as
// merged ranges: an ipBlock's cidr less its except list.
func Subtract(in, except []Range) []Range {
	out := Merge(in)
	for _, ex := range Merge(except) {
		var next []Range
		for _, r := range out {
			if ex.To.Less(r.From) || r.To.Less(ex.From) {
				next = append(next, r)
				continue
			}
			if r.From.Less(ex.From) {
				next = append(next, Range{From: r.From, To: ex.From.Prev()})
			}
			if ex.To.Less(r.To) {
				next = append(next, Range{From: ex.To.Next(), To: r.To})
			}
		}
		out = next
	}
	return out
}

// Ranges prints ranges as nft does a set: "{ 10.0.0.0/8, 10.1.0.1-10.1.0.3 }".
func Ranges(rs []Range) string {
	if len(rs) == 0 {
		return "{ }"
	}
	if len(rs) == 1 {
		return rs[0].String()
	}
	s := "{ "
	for i, r := range rs {
		if i > 0 {
			s += ", "
		}
		s += r.String()
	}
	return s + " }"
}
