package nftrule

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// kind is what a register holds, which says how to print a value
// compared with it.
type kind int

const (
	kindOther kind = iota
	kindAddr
	kindPort
	kindProto
	kindIfName
	kindMark
	kindCtState
	kindNumgen
)

type regState struct {
	desc string
	kind kind
	mask uint32 // a bitwise mask applied (marks, ct state)
	data []byte // an immediate value
}

// SetReader returns the elements of the set a lookup uses.
type SetReader func(*expr.Lookup) ([]nftables.SetElement, bool)

// Render prints a rule's expressions in nft's syntax, for the forms that
// klab's rules use; any other expression is shown by its type.
func Render(exprs []expr.Any, sets SetReader) string {
	regs := map[uint32]*regState{}
	var out []string
	emit := func(s string) { out = append(out, s) }
	l4 := "" // the transport protocol matched so far
	// portMatch prints "tcp dport 80" for "meta l4proto tcp th dport 80",
	// as nft does.
	portMatch := func(st *regState) {
		if st.kind != kindPort || l4 == "" {
			return
		}
		st.desc = strings.Replace(st.desc, "th ", l4+" ", 1)
		if n := len(out); n > 0 && out[n-1] == "meta l4proto "+l4 {
			out = out[:n-1]
		}
	}
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Payload:
			regs[e.DestRegister] = payloadState(e)
		case *expr.Meta:
			if e.SourceRegister {
				src := regs[e.Register]
				if src == nil {
					src = &regState{desc: "?"}
				}
				emit(fmt.Sprintf("meta %s set %s", metaName(e.Key), src.desc))
				continue
			}
			regs[e.Register] = metaState(e.Key)
		case *expr.Ct:
			if e.Key == expr.CtKeySTATE {
				regs[e.Register] = &regState{desc: "ct state", kind: kindCtState}
			} else {
				regs[e.Register] = &regState{desc: fmt.Sprintf("ct key %d", e.Key)}
			}
		case *expr.Numgen:
			regs[e.Register] = &regState{desc: fmt.Sprintf("numgen random mod %d", e.Modulus), kind: kindNumgen}
		case *expr.Bitwise:
			src := regs[e.SourceRegister]
			if src == nil {
				src = &regState{desc: "?"}
			}
			mask, xor := native32(e.Mask), native32(e.Xor)
			st := *src
			switch {
			case xor == 0:
				st.mask = mask
				if st.kind != kindCtState {
					st.desc = fmt.Sprintf("%s & 0x%x", src.desc, mask)
				}
			case mask == ^xor:
				st.desc = fmt.Sprintf("%s | 0x%x", src.desc, xor)
			default:
				st.desc = fmt.Sprintf("(%s & 0x%x) ^ 0x%x", src.desc, mask, xor)
			}
			regs[e.DestRegister] = &st
		case *expr.Cmp:
			st := regs[e.Register]
			if st == nil {
				st = &regState{desc: "?"}
			}
			portMatch(st)
			if st.kind == kindProto && e.Op == expr.CmpOpEq && len(e.Data) == 1 {
				l4 = ProtoName(e.Data[0])
			}
			emit(cmpString(st, e.Op, e.Data))
		case *expr.Range:
			st := regs[e.Register]
			if st == nil {
				st = &regState{desc: "?"}
			}
			portMatch(st)
			emit(fmt.Sprintf("%s %s-%s", st.desc, value(st, e.FromData), value(st, e.ToData)))
		case *expr.Lookup:
			st := regs[e.SourceRegister]
			if st == nil {
				st = &regState{desc: "?"}
			}
			emit(lookupString(st, e, sets))
		case *expr.Dynset:
			st := regs[e.SrcRegKey]
			if st == nil {
				st = &regState{desc: "?"}
			}
			op := "add"
			if e.Operation == unix.NFT_DYNSET_OP_UPDATE {
				op = "update"
			}
			t := ""
			if e.Timeout > 0 {
				t = " timeout " + e.Timeout.String()
			}
			emit(fmt.Sprintf("%s @%s { %s%s }", op, e.SetName, st.desc, t))
		case *expr.Immediate:
			regs[e.Register] = &regState{data: e.Data}
		case *expr.NAT:
			emit(natString(e, regs))
		case *expr.Masq:
			emit("masquerade")
		case *expr.Reject:
			emit("reject")
		case *expr.Counter:
			emit(fmt.Sprintf("counter packets %d bytes %d", e.Packets, e.Bytes))
		case *expr.Verdict:
			emit(verdictString(e))
		default:
			emit(fmt.Sprintf("<%T>", e))
		}
	}
	return strings.Join(out, " ")
}

func payloadState(e *expr.Payload) *regState {
	switch {
	case e.Base == expr.PayloadBaseNetworkHeader && e.Offset == 12 && e.Len == 4:
		return &regState{desc: "ip saddr", kind: kindAddr}
	case e.Base == expr.PayloadBaseNetworkHeader && e.Offset == 16 && e.Len == 4:
		return &regState{desc: "ip daddr", kind: kindAddr}
	case e.Base == expr.PayloadBaseTransportHeader && e.Offset == 2 && e.Len == 2:
		return &regState{desc: "th dport", kind: kindPort}
	case e.Base == expr.PayloadBaseTransportHeader && e.Offset == 0 && e.Len == 2:
		return &regState{desc: "th sport", kind: kindPort}
	}
	return &regState{desc: fmt.Sprintf("@%s,%d,%d", baseName(e.Base), e.Offset*8, e.Len*8)}
}

func baseName(b expr.PayloadBase) string {
	switch b {
	case expr.PayloadBaseLLHeader:
		return "ll"
	case expr.PayloadBaseNetworkHeader:
		return "nh"
	}
	return "th"
}

func metaName(k expr.MetaKey) string {
	switch k {
	case expr.MetaKeyMARK:
		return "mark"
	case expr.MetaKeyL4PROTO:
		return "l4proto"
	case expr.MetaKeyIIFNAME:
		return "iifname"
	case expr.MetaKeyOIFNAME:
		return "oifname"
	}
	return fmt.Sprintf("key %d", k)
}

func metaState(k expr.MetaKey) *regState {
	switch k {
	case expr.MetaKeyL4PROTO:
		return &regState{desc: "meta l4proto", kind: kindProto}
	case expr.MetaKeyMARK:
		return &regState{desc: "meta mark", kind: kindMark}
	case expr.MetaKeyIIFNAME:
		return &regState{desc: "iifname", kind: kindIfName}
	case expr.MetaKeyOIFNAME:
		return &regState{desc: "oifname", kind: kindIfName}
	}
	return &regState{desc: "meta " + metaName(k)}
}

var protoNames = map[byte]string{unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp", unix.IPPROTO_SCTP: "sctp", unix.IPPROTO_ICMP: "icmp"}

// ProtoName is a protocol number as nft names it.
func ProtoName(p uint8) string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return fmt.Sprint(p)
}

func ctStates(bits uint32) string {
	names := []struct {
		bit  uint32
		name string
	}{
		{expr.CtStateBitINVALID, "invalid"}, {expr.CtStateBitESTABLISHED, "established"},
		{expr.CtStateBitRELATED, "related"}, {expr.CtStateBitNEW, "new"}, {expr.CtStateBitUNTRACKED, "untracked"},
	}
	var out []string
	for _, n := range names {
		if bits&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return strings.Join(out, ",")
}

// value prints data compared with what st holds.
func value(st *regState, data []byte) string {
	switch st.kind {
	case kindAddr:
		if len(data) == 4 {
			return netip.AddrFrom4([4]byte(data)).String()
		}
	case kindPort:
		return fmt.Sprint(be16(data))
	case kindProto:
		if len(data) == 1 {
			return ProtoName(data[0])
		}
	case kindIfName:
		name := string(bytes.TrimRight(data, "\x00"))
		if len(data) < ifNameLen && !bytes.Contains(data, []byte{0}) {
			return fmt.Sprintf("%q", name+"*")
		}
		return fmt.Sprintf("%q", name)
	case kindMark, kindCtState, kindNumgen:
		return fmt.Sprintf("0x%x", native32(data))
	}
	return fmt.Sprintf("0x%x", data)
}

func cmpString(st *regState, op expr.CmpOp, data []byte) string {
	if st.kind == kindCtState && st.mask != 0 && op == expr.CmpOpNeq && native32(data) == 0 {
		return "ct state " + ctStates(st.mask)
	}
	ops := map[expr.CmpOp]string{expr.CmpOpEq: "", expr.CmpOpNeq: "!= ", expr.CmpOpLt: "< ", expr.CmpOpLte: "<= ", expr.CmpOpGt: "> ", expr.CmpOpGte: ">= "}
	return fmt.Sprintf("%s %s%s", st.desc, ops[op], value(st, data))
}

func lookupString(st *regState, e *expr.Lookup, sets SetReader) string {
	elems, ok := sets(e)
	if e.IsDestRegSet {
		if !ok {
			return fmt.Sprintf("%s vmap @%s", st.desc, e.SetName)
		}
		slices.SortFunc(elems, func(a, b nftables.SetElement) int { return bytes.Compare(a.Key, b.Key) })
		var parts []string
		for _, el := range elems {
			k := value(st, el.Key)
			if st.kind == kindNumgen {
				k = fmt.Sprint(native32(el.Key))
			}
			parts = append(parts, k+" : "+elemVerdict(el))
		}
		return fmt.Sprintf("%s vmap { %s }", st.desc, strings.Join(parts, ", "))
	}
	not := ""
	if e.Invert {
		not = "!= "
	}
	if !strings.HasPrefix(e.SetName, "__set") && e.SetName != "" || !ok {
		return fmt.Sprintf("%s %s@%s", st.desc, not, e.SetName)
	}
	if st.kind == kindAddr {
		return fmt.Sprintf("%s %s%s", st.desc, not, Ranges(intervals(elems)))
	}
	var parts []string
	for _, el := range elems {
		parts = append(parts, value(st, el.Key))
	}
	return fmt.Sprintf("%s %s{ %s }", st.desc, not, strings.Join(parts, ", "))
}

// intervals rebuilds the ranges of an interval set from its elements:
// each start is followed by the end one past its last address.
func intervals(elems []nftables.SetElement) []Range {
	slices.SortStableFunc(elems, func(a, b nftables.SetElement) int { return bytes.Compare(a.Key, b.Key) })
	var out []Range
	open := false
	for _, el := range elems {
		if len(el.Key) != 4 {
			continue
		}
		a := netip.AddrFrom4([4]byte(el.Key))
		switch {
		case el.IntervalEnd && open:
			out[len(out)-1].To = a.Prev()
			open = false
		case !el.IntervalEnd:
			if open && out[len(out)-1].From == a {
				continue
			}
			out = append(out, Range{From: a, To: netip.AddrFrom4([4]byte{255, 255, 255, 255})})
			open = true
		}
	}
	return out
}

// elemVerdict is a map element's verdict: given when the rule was built,
// or read from the kernel's nested attributes.
func elemVerdict(el nftables.SetElement) string {
	if el.VerdictData != nil {
		return verdictString(el.VerdictData)
	}
	ad, err := netlink.NewAttributeDecoder(el.Val)
	if err != nil {
		return "?"
	}
	ad.ByteOrder = binary.BigEndian
	v := &expr.Verdict{}
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			v.Kind = expr.VerdictKind(int32(ad.Uint32()))
		case unix.NFTA_VERDICT_CHAIN:
			v.Chain = ad.String()
		}
	}
	return verdictString(v)
}

func verdictString(v *expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictReturn:
		return "return"
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictGoto:
		return "goto " + v.Chain
	case expr.VerdictContinue:
		return "continue"
	}
	return fmt.Sprintf("verdict %d", v.Kind)
}

func natString(e *expr.NAT, regs map[uint32]*regState) string {
	typ := "snat"
	if e.Type == expr.NATTypeDestNAT {
		typ = "dnat"
	}
	to := ""
	if st := regs[e.RegAddrMin]; st != nil && len(st.data) == 4 {
		to = netip.AddrFrom4([4]byte(st.data)).String()
	}
	if st := regs[e.RegProtoMin]; e.RegProtoMin != 0 && st != nil && len(st.data) >= 2 {
		to += fmt.Sprintf(":%d", be16(st.data))
	}
	return typ + " to " + to
}
