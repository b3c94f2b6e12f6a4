// Package nftrule builds the nftables rules of klab's node programs — the
// network policy (felix's ACLs) and the service proxy (kube-proxy) — and
// prints rules back in nft's own syntax: the ones it built, to tell
// whether a chain changed, and the ones the kernel holds, for "klab net
// services" and "klab net policy".
//
// A Rule is built by chaining matches and a verdict:
//
//	nftrule.New().DAddr(ip).L4Proto(unix.IPPROTO_TCP).DPort(80).Counter().Goto("svc-…")
//
// which prints as "ip daddr 10.96.0.20 tcp dport 80 counter goto svc-…".
//
// A Table keeps a program's table in step with the chains and named sets
// it wants, and reads the table back with the kernel's counters.
package nftrule

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Register 1 holds what a match loads; register 2 a NAT port.
const (
	reg1 = 1
	reg2 = 2
)

// ifNameLen is IFNAMSIZ: an interface name as nft compares it.
const ifNameLen = 16

// maxComment is how long a comment may be (nft's own limit).
const maxComment = 128

// Rule is an nftables rule being built.
type Rule struct {
	exprs   []expr.Any
	comment string
	// anon are the anonymous sets the rule's lookups use; they are added
	// to the batch just before the rule.
	anon []anonSet
}

// anonSet is an anonymous set and the lookup that uses it.
type anonSet struct {
	set    *nftables.Set
	elems  []nftables.SetElement
	lookup *expr.Lookup
}

// New starts a rule.
func New() *Rule { return &Rule{} }

// Comment sets the rule's comment (shown by nft list), cut to nft's
// 128 characters.
func (r *Rule) Comment(format string, args ...any) *Rule {
	c := fmt.Sprintf(format, args...)
	if len(c) > maxComment {
		c = c[:maxComment-3] + "..."
	}
	r.comment = c
	return r
}

func (r *Rule) add(e ...expr.Any) *Rule {
	r.exprs = append(r.exprs, e...)
	return r
}

func ip4(a netip.Addr) []byte {
	b := a.As4()
	return b[:]
}

// Addr selects the source or destination address.
type Addr int

// Source and Dest are the two addresses of a packet.
const (
	Source Addr = iota
	Dest
)

func (d Addr) load() *expr.Payload {
	off := uint32(16)
	if d == Source {
		off = 12
	}
	return &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4}
}

// SAddr matches the source address.
func (r *Rule) SAddr(a netip.Addr) *Rule {
	return r.add(Source.load(), &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: ip4(a)})
}

// DAddr matches the destination address.
func (r *Rule) DAddr(a netip.Addr) *Rule {
	return r.add(Dest.load(), &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: ip4(a)})
}

// AddrIn matches the source or destination address against a set of
// ranges (an anonymous interval set), or with not against its complement.
// Ranges must be sorted, and neither overlap nor touch (see Merge).
func (r *Rule) AddrIn(d Addr, ranges []Range, not bool) *Rule {
	s := &nftables.Set{Anonymous: true, Constant: true, Interval: true, KeyType: nftables.TypeIPAddr}
	var elems []nftables.SetElement
	for _, rg := range ranges {
		elems = append(elems, nftables.SetElement{Key: ip4(rg.From)})
		if end := rg.To.Next(); end.IsValid() && end.Is4() {
			elems = append(elems, nftables.SetElement{Key: ip4(end), IntervalEnd: true})
		}
	}
	l := &expr.Lookup{SourceRegister: reg1, Invert: not}
	r.anon = append(r.anon, anonSet{set: s, elems: elems, lookup: l})
	return r.add(d.load(), l)
}

// SAddrInSet matches the source address against a named set.
func (r *Rule) SAddrInSet(name string) *Rule {
	return r.add(Source.load(), &expr.Lookup{SourceRegister: reg1, SetName: name})
}

// L4Proto matches the transport protocol (unix.IPPROTO_TCP …).
func (r *Rule) L4Proto(p uint8) *Rule {
	return r.add(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1}, &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{p}})
}

func thDport() *expr.Payload {
	return &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}

// DPort matches the transport destination port (after L4Proto).
func (r *Rule) DPort(p uint16) *Rule {
	return r.add(thDport(), &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.BigEndian.PutUint16(p)})
}

// DPortRange matches destination ports from lo to hi (after L4Proto).
func (r *Rule) DPortRange(lo, hi uint16) *Rule {
	if lo == hi {
		return r.DPort(lo)
	}
	return r.add(thDport(), &expr.Range{Op: expr.CmpOpEq, Register: reg1,
		FromData: binaryutil.BigEndian.PutUint16(lo), ToData: binaryutil.BigEndian.PutUint16(hi)})
}

func ifName(name string) []byte {
	b := make([]byte, ifNameLen)
	copy(b, name)
	return b
}

// OIFNamePrefix matches (or with not, does not match) output interfaces
// whose name starts with prefix ("cali" for pods' veths).
func (r *Rule) OIFNamePrefix(prefix string, not bool) *Rule {
	op := expr.CmpOpEq
	if not {
		op = expr.CmpOpNeq
	}
	return r.add(&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg1}, &expr.Cmp{Op: op, Register: reg1, Data: []byte(prefix)})
}

// Dir says which interface a dispatch map looks at.
type Dir int

// In and Out are the input and output interfaces.
const (
	In Dir = iota
	Out
)

// IfNameVmap jumps, by the input or output interface's name, to the chain
// the map names for it.
func (r *Rule) IfNameVmap(d Dir, chains map[string]string) *Rule {
	key := expr.MetaKeyIIFNAME
	if d == Out {
		key = expr.MetaKeyOIFNAME
	}
	s := &nftables.Set{Anonymous: true, Constant: true, IsMap: true, KeyType: nftables.TypeIFName, DataType: nftables.TypeVerdict}
	var elems []nftables.SetElement
	for _, name := range sortedKeys(chains) {
		elems = append(elems, nftables.SetElement{Key: ifName(name), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: chains[name]}})
	}
	l := &expr.Lookup{SourceRegister: reg1, DestRegister: 0, IsDestRegSet: true}
	r.anon = append(r.anon, anonSet{set: s, elems: elems, lookup: l})
	return r.add(&expr.Meta{Key: key, Register: reg1}, l)
}

// NumgenMap picks one of the n entries of a named verdict map (made with
// NumgenMapSet) at random, each with the same probability: kube-proxy's
// load balancing.
func (r *Rule) NumgenMap(name string, n int) *Rule {
	return r.add(&expr.Numgen{Register: reg1, Modulus: uint32(n), Type: unix.NFT_NG_RANDOM},
		&expr.Lookup{SourceRegister: reg1, DestRegister: 0, IsDestRegSet: true, SetName: name})
}

// NumgenMapSet is the verdict map a NumgenMap rule looks up: entry i goes
// to chains[i]. It is a named map, not an anonymous one, so that nft
// shows its keys in the host byte order that numgen writes them in.
func NumgenMapSet(chains []string) Set {
	s := Set{spec: "map " + strings.Join(chains, ","), set: &nftables.Set{IsMap: true, KeyType: nftables.TypeInteger,
		DataType: nftables.TypeVerdict, KeyByteOrder: binaryutil.NativeEndian}}
	for i, c := range chains {
		s.elems = append(s.elems, nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(i)), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: c}})
	}
	return s
}

// MarkSet sets bits in the packet's mark.
func (r *Rule) MarkSet(bits uint32) *Rule {
	return r.add(&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^bits), Xor: binaryutil.NativeEndian.PutUint32(bits)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1})
}

// MarkHas matches packets whose mark has any of bits.
func (r *Rule) MarkHas(bits uint32) *Rule {
	return r.add(&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)})
}

// CTState matches connections in any of the states (expr.CtStateBit…).
func (r *Rule) CTState(bits uint32) *Rule {
	return r.add(&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)})
}

// Counter counts the packets and bytes that reach it.
func (r *Rule) Counter() *Rule { return r.add(&expr.Counter{}) }

// UpdateSAddr adds the source address to a named set with a timeout, or
// refreshes its timeout (session affinity).
func (r *Rule) UpdateSAddr(set string, timeout time.Duration) *Rule {
	return r.add(Source.load(), &expr.Dynset{SrcRegKey: reg1, SetName: set, Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: timeout})
}

// AddrTimeoutSet is a named set of addresses that UpdateSAddr adds to,
// each kept for timeout, and SAddrInSet looks up.
func AddrTimeoutSet(timeout time.Duration) Set {
	return Set{
		spec: "timeout " + timeout.String(),
		set:  &nftables.Set{KeyType: nftables.TypeIPAddr, HasTimeout: true, Timeout: timeout, Dynamic: true},
	}
}

// DNAT rewrites the destination to addr:port.
func (r *Rule) DNAT(addr netip.Addr, port uint16) *Rule {
	return r.add(&expr.Immediate{Register: reg1, Data: ip4(addr)},
		&expr.Immediate{Register: reg2, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegProtoMin: reg2, Specified: true})
}

// Masquerade rewrites the source to the outgoing interface's address.
func (r *Rule) Masquerade() *Rule { return r.add(&expr.Masq{}) }

// icmpPortUnreachable is ICMP's destination unreachable code for a port.
const icmpPortUnreachable = 3

// Reject answers with ICMP port unreachable (a TCP client's connect fails
// with "connection refused").
func (r *Rule) Reject() *Rule {
	return r.add(&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: icmpPortUnreachable})
}

// Accept ends the base chain's evaluation, letting the packet through.
func (r *Rule) Accept() *Rule { return r.add(&expr.Verdict{Kind: expr.VerdictAccept}) }

// Drop drops the packet.
func (r *Rule) Drop() *Rule { return r.add(&expr.Verdict{Kind: expr.VerdictDrop}) }

// Return goes back to the calling chain.
func (r *Rule) Return() *Rule { return r.add(&expr.Verdict{Kind: expr.VerdictReturn}) }

// Jump calls chain, coming back when it returns.
func (r *Rule) Jump(chain string) *Rule {
	return r.add(&expr.Verdict{Kind: expr.VerdictJump, Chain: chain})
}

// Goto continues in chain without coming back.
func (r *Rule) Goto(chain string) *Rule {
	return r.add(&expr.Verdict{Kind: expr.VerdictGoto, Chain: chain})
}

// String prints the rule in nft's syntax, with its comment.
func (r *Rule) String() string {
	sets := map[*expr.Lookup][]nftables.SetElement{}
	for _, a := range r.anon {
		sets[a.lookup] = a.elems
	}
	s := Render(r.exprs, func(l *expr.Lookup) ([]nftables.SetElement, bool) {
		e, ok := sets[l]
		return e, ok
	})
	if r.comment != "" {
		s += fmt.Sprintf(" comment %q", r.comment)
	}
	return s
}

// AddTo queues the rule, and the anonymous sets it uses, at the end of
// chain in cc's batch.
func (r *Rule) AddTo(cc *nftables.Conn, chain *nftables.Chain) error {
	for _, a := range r.anon {
		a.set.Table = chain.Table
		if err := cc.AddSet(a.set, a.elems); err != nil {
			return fmt.Errorf("anonymous set for a rule of chain %s: %w", chain.Name, err)
		}
		a.lookup.SetName, a.lookup.SetID = a.set.Name, a.set.ID
	}
	nr := &nftables.Rule{Table: chain.Table, Chain: chain, Exprs: r.exprs}
	if r.comment != "" {
		nr.UserData = userdata.AppendString(nil, userdata.TypeComment, r.comment)
	}
	cc.AddRule(nr)
	return nil
}

// commentOf is a kernel rule's comment.
func commentOf(r *nftables.Rule) string {
	c, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return c
}

// counterOf is a kernel rule's first counter: packets and bytes.
func counterOf(r *nftables.Rule) (packets, bytes uint64) {
	for _, e := range r.Exprs {
		if c, ok := e.(*expr.Counter); ok {
			return c.Packets, c.Bytes
		}
	}
	return 0, 0
}

// kernelString prints a rule read from the kernel in nft's syntax; the
// elements of anonymous sets are read from cc.
func kernelString(cc *nftables.Conn, r *nftables.Rule) string {
	return Render(r.Exprs, func(l *expr.Lookup) ([]nftables.SetElement, bool) {
		els, err := cc.GetSetElements(&nftables.Set{Table: r.Table, Name: l.SetName})
		if err != nil {
			return nil, false
		}
		return els, true
	})
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// native32 reads a host-order 32-bit value (marks, ct state, numgen).
func native32(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return binaryutil.NativeEndian.Uint32(b[:4])
}

func be16(b []byte) uint16 {
	if len(b) < 2 {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}
