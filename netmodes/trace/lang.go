package trace

import (
	"fmt"
	"os"
	"strings"
)

// Lang is the language of a trace's explanations: English or Chinese.
type Lang string

// The languages.
const (
	English Lang = "en"
	Chinese Lang = "zh"
)

// ParseLang checks a --lang value; "" takes the language from the
// environment.
func ParseLang(s string) (Lang, error) {
	switch strings.ToLower(s) {
	case "":
		return LangFromEnv(), nil
	case "en":
		return English, nil
	case "zh":
		return Chinese, nil
	}
	return "", fmt.Errorf("unknown language %q: use en or zh", s)
}

// LangFromEnv is Chinese when the locale ($LC_ALL, $LC_MESSAGES, $LANG,
// the first one set) is a Chinese one, English otherwise.
func LangFromEnv() Lang {
	for _, v := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		if s := os.Getenv(v); s != "" {
			if strings.HasPrefix(strings.ToLower(s), "zh") {
				return Chinese
			}
			return English
		}
	}
	return English
}

// text is a message in both languages; the formats use explicit argument
// indexes, so that the Chinese may order them differently.
type text struct{ en, zh string }

func (l Lang) f(t text, args ...any) string {
	if l == Chinese {
		return fmt.Sprintf(t.zh, args...)
	}
	return fmt.Sprintf(t.en, args...)
}

// Explanations of hops.
var (
	msgPodOut = text{
		"%[1]s sends it from eth0 to its default gateway 169.254.1.1, an address no interface has: the node answers the ARP for it on the cali veth (proxy ARP), so the frame goes to the veth's MAC",
		"%[1]s 从 eth0 把包发往默认网关 169.254.1.1——这个地址不在任何接口上：节点在 cali veth 上代答 ARP（proxy ARP），所以帧发往 veth 的 MAC",
	}
	msgNodeOrigin = text{
		"%[1]s sends it itself; the kernel picks %[2]s as the source address",
		"%[1]s 自己发出这个包；内核选 %[2]s 作为源地址",
	}
	msgVethIn = text{
		"the same frame arrives on the node side of the pod's veth pair, in %[1]s's network namespace",
		"同一帧到达 veth pair 的节点一端，进入 %[1]s 的网络命名空间",
	}
	msgVethInLocal = text{
		"the same frame arrives on the node side of the pod's veth pair; %[2]s is %[1]s's own address: delivered to the node",
		"同一帧到达 veth pair 的节点一端；%[2]s 是 %[1]s 自己的地址：交付给节点",
	}
	msgVXLANOut = text{
		"%[1]s's route sends it to vxlan.calico, the VTEP%[6]s; the inner Ethernet header goes to %[2]s's VTEP MAC %[3]s (a permanent neighbour entry for %[4]s), and the FDB lookup of that MAC gives the underlay address %[5]s",
		"%[1]s 的路由把包交给 vxlan.calico（VTEP）%[6]s；内层以太网头的目的 MAC 是 %[2]s 的 VTEP MAC %[3]s（%[4]s 的静态邻居表项），对这个 MAC 查 FDB，得到 underlay 地址 %[5]s",
	}
	phTTL         = text{": TTL −1", "：TTL 减 1"}
	msgVXLANEncap = text{
		"the VTEP wraps the whole frame in UDP %[1]d with VNI %[2]d, from %[3]s to %[4]s, and sends it out of %[5]s: +50 bytes (outer Ethernet, IPv4, UDP and VXLAN headers)",
		"VTEP 把整个帧封装进 UDP %[1]d（VNI %[2]d），从 %[3]s 发往 %[4]s，经 %[5]s 发出：多 50 字节（外层以太网、IPv4、UDP、VXLAN 头）",
	}
	msgTunnelOut = text{
		"%[1]s's route sends it to tunl0, onlink via %[2]s (%[3]s's underlay address)%[4]s",
		"%[1]s 的路由把包交给 tunl0，onlink 下一跳 %[2]s（%[3]s 的 underlay 地址）%[4]s",
	}
	msgTunnelOutUserspace = text{
		"%[1]s's route sends it to tunl0, onlink via %[2]s (%[3]s's underlay address)%[4]s; tunl0 is a TUN device here, and klab's userspace encapsulator reads the packet from it (this kernel has no ipip module)",
		"%[1]s 的路由把包交给 tunl0，onlink 下一跳 %[2]s（%[3]s 的 underlay 地址）%[4]s；这里的 tunl0 是 TUN 设备，由 klab 的用户态封装器读出这个包（这个内核没有 ipip 模块）",
	}
	msgIPIPEncap = text{
		"tunl0 wraps the packet in an outer IPv4 header with protocol 4 (IPIP), from %[1]s to %[2]s, sent out of %[3]s: +20 bytes",
		"tunl0 给包加上一个协议号为 4（IPIP）的外层 IPv4 头，从 %[1]s 到 %[2]s，经 %[3]s 发出：多 20 字节",
	}
	msgIPIPEncapUserspace = text{
		"klab's userspace encapsulator sends the packet through a raw IP-protocol-4 socket, so the kernel writes the outer IPv4 header (protocol 4, IPIP) from %[1]s to %[2]s, sent out of %[3]s: +20 bytes",
		"klab 的用户态封装器通过协议号 4 的 raw socket 发出这个包，由内核写上外层 IPv4 头（协议 4，IPIP），从 %[1]s 到 %[2]s，经 %[3]s 发出：多 20 字节",
	}
	msgPlainOut = text{
		"%[1]s's route sends it straight to %[2]s over the underlay, out of %[3]s: no encapsulation; TTL −1 and a new Ethernet header to the next hop's MAC",
		"%[1]s 的路由把包经 underlay 直接发往 %[2]s，从 %[3]s 发出：不封装；TTL 减 1，以太网头换成下一跳的 MAC",
	}
	msgPlainOutOrigin = text{
		"%[1]s sends it out of %[3]s straight to %[2]s over the underlay: no encapsulation",
		"%[1]s 把包从 %[3]s 经 underlay 直接发往 %[2]s：不封装",
	}
	msgStrayOut = text{
		"%[1]s's route sends it out of %[2]s towards %[3]s, not where the mode would send it",
		"%[1]s 的路由把包从 %[2]s 发往 %[3]s——不是网络模式该走的路",
	}
	msgBridgeIn = text{
		"the underlay bridge %[1]s receives it on %[2]s's port",
		"underlay 网桥 %[1]s 在 %[2]s 的端口上收到它",
	}
	msgBridgeOut = text{
		"the bridge forwards it by its destination MAC out of %[1]s's port: the frame is unchanged",
		"网桥按目的 MAC 转发，从 %[1]s 的端口发出：帧不变",
	}
	msgRouterIn = text{
		"the router receives it on %[1]s, in subnet %[2]s",
		"路由器在 %[1]s 上收到它（子网 %[2]s）",
	}
	msgRouterOut = text{
		"the router routes it into subnet %[1]s out of %[2]s: TTL −1 and a new Ethernet header",
		"路由器把它路由进子网 %[1]s，从 %[2]s 发出：TTL 减 1，以太网头重写",
	}
	msgNICIn = text{
		"%[1]s receives it on its underlay interface %[2]s",
		"%[1]s 在 underlay 接口 %[2]s 上收到它",
	}
	msgNICInLocal = text{
		"%[1]s receives it on %[2]s: %[3]s is its own address, delivered",
		"%[1]s 在 %[2]s 上收到它：%[3]s 是它自己的地址，送达",
	}
	msgVXLANIn = text{
		"%[1]s's VTEP takes UDP %[2]d with VNI %[3]d, strips the outer headers (decapsulated) and hands the inner frame to routing",
		"%[1]s 的 VTEP 收下 UDP %[2]d、VNI %[3]d 的包，去掉外层头（解封装），把内层帧交给路由",
	}
	msgTunnelIn = text{
		"tunl0 on %[1]s strips the outer IPv4 header (decapsulated) and hands the inner packet to routing",
		"%[1]s 的 tunl0 去掉外层 IPv4 头（解封装），把内层包交给路由",
	}
	msgTunnelInUserspace = text{
		"klab's userspace encapsulator on %[1]s receives protocol 4 on its raw socket, strips the outer IPv4 header (decapsulated) and writes the inner packet to tunl0",
		"%[1]s 上 klab 的用户态封装器从 raw socket 收到协议 4 的包，去掉外层 IPv4 头（解封装），把内层包写进 tunl0",
	}
	msgVethOut = text{
		"%[1]s routes it by the pod's /32 route into the pod's veth: TTL −1, Ethernet from the veth's MAC to the pod's",
		"%[1]s 按 pod 的 /32 路由把包送进 pod 的 veth：TTL 减 1，以太网头换成从 veth 的 MAC 到 pod 的 MAC",
	}
	msgPodIn = text{
		"%[1]s receives it on eth0: delivered",
		"%[1]s 在 eth0 上收到它：送达",
	}
)

// Route origins.
var (
	originAPI     = text{"programmed from the API: the VXLAN peers", "根据 API 中的 VXLAN 对端编程"}
	originBGP     = text{"learned over BGP from %[1]s", "经 BGP 从 %[1]s 学到"}
	originKlab    = text{"programmed by klab's network agent", "由 klab 的网络代理编程"}
	originCNI     = text{"the pod's route, added by CNI", "pod 的路由，由 CNI 添加"}
	originKernel  = text{"the connected subnet of %[1]s", "%[1]s 的直连子网"}
	originDefault = text{"the node's default route", "节点的默认路由"}
	originOther   = text{"proto %[1]s", "proto %[1]s"}
)

// Changes between hops.
var (
	chSame      = text{"same frame", "帧不变"}
	chTTL       = text{"ttl %[1]d→%[2]d", "ttl %[1]d→%[2]d"}
	chOuterTTL  = text{"outer ttl %[1]d→%[2]d", "外层 ttl %[1]d→%[2]d"}
	chEth       = text{"eth %[1]s → %[2]s", "以太网 %[1]s → %[2]s"}
	chNoEth     = text{"no Ethernet header (tunnel device)", "无以太网头（隧道设备）"}
	chVXLAN     = text{"+ outer %[1]s → %[2]s UDP %[3]d VNI %[4]d", "+ 外层 %[1]s → %[2]s UDP %[3]d VNI %[4]d"}
	chIPIP      = text{"+ outer %[1]s → %[2]s IPIP (protocol 4)", "+ 外层 %[1]s → %[2]s IPIP（协议 4）"}
	chDecap     = text{"− outer headers removed (decapsulated)", "− 去掉外层头（解封装）"}
	chDNAT      = text{"dst %[1]s → %[2]s (DNAT)", "目的 %[1]s → %[2]s（DNAT）"}
	chBytes     = text{"%+[1]d bytes", "%+[1]d 字节"}
	chFirstSeen = text{"first seen here", "首次在此看到"}
)

// Loss reasons.
var (
	lossNoRouteTo = text{
		"%[1]s has no route to %[2]s (%[3]s's pod block): the %[4]s mode's route `%[5]s` is missing",
		"%[1]s 没有到 %[2]s（%[3]s 的 pod 网段）的路由：%[4]s 模式应有的路由 `%[5]s` 不见了",
	}
	lossWrongRoute = text{
		"%[1]s routes %[2]s (%[3]s's pod block) by `%[6]s`, not by the %[4]s mode's route `%[5]s`",
		"%[1]s 用 `%[6]s` 路由 %[2]s（%[3]s 的 pod 网段），而不是 %[4]s 模式应有的路由 `%[5]s`",
	}
	lossPodRoute = text{
		"%[1]s has no route to pod %[2]s (%[3]s): the CNI route `%[4]s` is missing",
		"%[1]s 没有到 pod %[2]s（%[3]s）的路由：CNI 添加的路由 `%[4]s` 不见了",
	}
	lossDefaultInstead = text{
		"; its default route `%[1]s` sent the packet out of the cluster to %[2]s instead",
		"；它的默认路由 `%[1]s` 把包送出了集群，发给了 %[2]s",
	}
	lossDroppedInstead = text{
		"; the kernel drops the packet (network unreachable)",
		"；内核丢弃这个包（网络不可达）",
	}
	lossNoRoute = text{
		"%[1]s has no route to %[2]s: the kernel drops the packet (network unreachable)",
		"%[1]s 没有到 %[2]s 的路由：内核丢弃这个包（网络不可达）",
	}
	lossLeftCluster = text{
		"%[1]s's route `%[2]s` sends the packet out of the cluster to %[3]s",
		"%[1]s 的路由 `%[2]s` 把包送出了集群，发给了 %[3]s",
	}
	lossVXLANNeigh = text{
		"%[1]s has no neighbour entry for the VTEP address %[2]s on vxlan.calico, so it cannot address the inner frame (the mode programs `%[3]s`) — is %[4]s's agent running?",
		"%[1]s 的 vxlan.calico 上没有 VTEP 地址 %[2]s 的邻居表项，内层帧无法填目的 MAC（模式应编程 `%[3]s`）——%[4]s 的 agent 在运行吗？",
	}
	lossFDB = text{
		"%[1]s has no FDB entry for VTEP %[2]s: the VTEP does not know where to send the frame (the mode programs `%[3]s`) — is %[4]s's agent running?",
		"%[1]s 没有 VTEP %[2]s 的 FDB 表项：VTEP 不知道把帧发往哪里（模式应编程 `%[3]s`）——%[4]s 的 agent 在运行吗？",
	}
	lossARP = text{
		"%[1]s got no ARP answer for the next hop %[2]s on %[3]s (neighbour failure)",
		"%[1]s 在 %[3]s 上对下一跳 %[2]s 的 ARP 没有应答（邻居解析失败）",
	}
	lossNobody = text{
		"no machine on the underlay has %[2]s, the next hop %[1]s's route names: ARP for it gets no answer (neighbour failure)",
		"underlay 上没有机器拥有 %[2]s——%[1]s 的路由指定的下一跳：ARP 得不到应答（邻居解析失败）",
	}
	lossRouter = text{
		"the router has no route to %[1]s: it only joins the subnets %[2]s",
		"路由器没有到 %[1]s 的路由：它只连接子网 %[2]s",
	}
	lossBGPSubnets = text{
		"; BGP without encapsulation needs every node in one L2 segment, or the router to learn the routes (klab net peer router), or IPIP/VXLAN CrossSubnet",
		"；不封装的 BGP 要求所有节点在同一个二层网段，或者让路由器学到这些路由（klab net peer router），或者用 IPIP/VXLAN CrossSubnet",
	}
	lossMTU = text{
		"the packet is %[1]d bytes but %[2]s on %[3]s has MTU %[4]d and the packet may not be fragmented (DF): it is dropped",
		"包长 %[1]d 字节，而 %[3]s 上 %[2]s 的 MTU 是 %[4]d，且包不允许分片（DF）：被丢弃",
	}
	lossMTUSend = text{
		"%[1]s cannot send %[2]d bytes: larger than the MTU of its interface (%[3]v)",
		"%[1]s 发不出 %[2]d 字节的包：超过了接口的 MTU（%[3]v）",
	}
	lossPolicy = text{
		"network policy %[1]s on %[2]s dropped it (%[3]s)",
		"%[2]s 上的网络策略 %[1]s 丢弃了它（%[3]s）",
	}
	lossUnknown = text{
		"dropped after hop %[1]d: no route, neighbour or MTU problem found",
		"在第 %[1]d 跳之后丢失：没有发现路由、邻居或 MTU 问题",
	}
	lossNoHop = text{
		"no capture saw the packet, not even at the source",
		"没有任何抓包点看到这个包，连源端也没有",
	}
	lossCapture = text{
		"hop %[1]d (%[2]s) could not be captured: %[3]s",
		"第 %[1]d 跳（%[2]s）无法抓包：%[3]s",
	}
	lossNoEndpoint = text{
		"Service %[1]s has no ready endpoints: nothing to DNAT to",
		"Service %[1]s 没有就绪的 endpoint：DNAT 无处可去",
	}
	lossLoop = text{
		"the packet loops: it came back to %[1]s",
		"包在打转：又回到了 %[1]s",
	}
)

// Notes.
var (
	noteUserspace = text{
		"ipip is the userspace encapsulator here: this kernel has no ipip module, so tunl0 is a TUN device and klab wraps and unwraps the packets in protocol 4 itself",
		"这里的 ipip 是用户态封装器：这个内核没有 ipip 模块，所以 tunl0 是 TUN 设备，由 klab 自己封装、解封装协议 4 的包",
	}
	noteRouteDiffers = text{
		"%[1]s routes %[2]s by `%[3]s`, not by the mode's `%[4]s`",
		"%[1]s 用 `%[3]s` 路由 %[2]s，而不是模式应有的 `%[4]s`",
	}
	noteCaptureFailed = text{
		"no capture on %[1]s: %[2]s",
		"%[1]s 无法抓包：%[2]s",
	}
	noteClocks = text{
		"times across nodes come from different machines' clocks",
		"跨节点的时间来自不同机器的时钟",
	}
)
