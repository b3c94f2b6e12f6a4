package ipip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sort"
)

// ProtocolIPIP is IP protocol 4, IPv4 encapsulated in IPv4.
const ProtocolIPIP = 4

// PeerTable maps pod blocks to the underlay address of the peer that holds
// them: where the userspace encapsulator sends an inner packet, and which
// outer sources it accepts. It is immutable; the mode swaps in a new one
// when the peers change.
type PeerTable struct {
	blocks []tableEntry // longest prefix first
	peers  map[netip.Addr]bool
}

type tableEntry struct {
	block netip.Prefix
	peer  netip.Addr
}

// NewPeerTable builds a table from block → peer underlay address.
func NewPeerTable(blocks map[netip.Prefix]netip.Addr) *PeerTable {
	t := &PeerTable{peers: map[netip.Addr]bool{}}
	for b, p := range blocks {
		t.blocks = append(t.blocks, tableEntry{block: b.Masked(), peer: p})
		t.peers[p] = true
	}
	sort.Slice(t.blocks, func(i, j int) bool {
		if t.blocks[i].block.Bits() != t.blocks[j].block.Bits() {
			return t.blocks[i].block.Bits() > t.blocks[j].block.Bits()
		}
		return t.blocks[i].block.Addr().Less(t.blocks[j].block.Addr())
	})
	return t
}

// Len is the number of blocks.
func (t *PeerTable) Len() int { return len(t.blocks) }

// Known reports whether src is the underlay address of a peer.
func (t *PeerTable) Known(src netip.Addr) bool { return t.peers[src] }

// Errors of the encapsulation functions.
var (
	ErrNotIPv4   = errors.New("not an IPv4 packet")
	ErrTruncated = errors.New("truncated IPv4 packet")
	ErrNotIPIP   = errors.New("not an IPIP packet (IP protocol 4)")
	ErrNoPeer    = errors.New("no peer holds the destination")
)

// Outer finds the outer destination of an inner IPv4 packet read from the
// TUN device: the peer whose block holds the inner destination.
func (t *PeerTable) Outer(inner []byte) (netip.Addr, error) {
	_, dst, err := addresses(inner)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, e := range t.blocks {
		if e.block.Contains(dst) {
			return e.peer, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%w %s", ErrNoPeer, dst)
}

// Decapsulate takes an IPIP packet as a raw socket receives it (outer IPv4
// header included) and returns the outer source and the inner packet.
func Decapsulate(pkt []byte) (netip.Addr, []byte, error) {
	ihl, total, err := header(pkt)
	if err != nil {
		return netip.Addr{}, nil, err
	}
	if pkt[9] != ProtocolIPIP {
		return netip.Addr{}, nil, ErrNotIPIP
	}
	inner := pkt[ihl:total]
	if _, _, err := addresses(inner); err != nil {
		return netip.Addr{}, nil, fmt.Errorf("inner packet: %w", err)
	}
	return netip.AddrFrom4([4]byte(pkt[12:16])), inner, nil
}

// addresses checks an IPv4 header and returns its source and destination.
func addresses(pkt []byte) (src, dst netip.Addr, err error) {
	if _, _, err := header(pkt); err != nil {
		return src, dst, err
	}
	return netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20])), nil
}

// header checks an IPv4 header and returns its length and the packet's
// total length.
func header(pkt []byte) (ihl, total int, err error) {
	if len(pkt) < 20 {
		return 0, 0, ErrTruncated
	}
	if pkt[0]>>4 != 4 {
		return 0, 0, ErrNotIPv4
	}
	ihl = int(pkt[0]&0x0f) * 4
	total = int(binary.BigEndian.Uint16(pkt[2:4]))
	if ihl < 20 || total < ihl || len(pkt) < total {
		return 0, 0, ErrTruncated
	}
	return ihl, total, nil
}
