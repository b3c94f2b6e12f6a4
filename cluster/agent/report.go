package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/netmodes"
	"github.com/klab-dev/klab/netmodes/bgp"
)

// NetworkReport is what a node's agent says about its network: the mode
// it runs, its devices, routes, FDB and neighbours, and its BGP sessions.
type NetworkReport struct {
	Node           string          `json:"node"`
	Mode           string          `json:"mode,omitempty"`
	Implementation string          `json:"implementation,omitempty"`
	State          *netmodes.State `json:"state"`
	BGP            *bgp.Status     `json:"bgp,omitempty"`
}

func (s *server) networkReport(w http.ResponseWriter, r *http.Request) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer h.Close()
	st, err := netmodes.Inspect(h)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	rep := NetworkReport{Node: s.pods.cfg.NodeName, State: st}
	if n := s.network.Load(); n != nil {
		if k, impl, cfg := n.rec.Current(); k != "" {
			rep.Mode, rep.Implementation = cfg.String(), impl
		}
		if b, err := n.bgpStatus(r.Context()); err == nil {
			rep.BGP = &b
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(rep)
}

// Client talks to node agents' APIs from the host, as an admin.
type Client struct {
	http *http.Client
}

// NewClient makes a client with a TLS configuration holding an admin
// certificate and the cluster CA.
func NewClient(tlsConf *tls.Config) *Client {
	return &Client{http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}}}
}

// Network asks the agent at ip for its network report.
func (c *Client) Network(ctx context.Context, ip string) (*NetworkReport, error) {
	var rep NetworkReport
	if err := c.get(ctx, ip, "/network", &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

func (c *Client) get(ctx context.Context, ip, path string, out any) error {
	u := "https://" + net.JoinHostPort(ip, "10250") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("agent at %s: %w", ip, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("agent at %s: %s: %s", ip, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
