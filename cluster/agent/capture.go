package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/klab-dev/klab/netmodes/trace"
)

// The trace API: POST /capture captures on the node's interfaces and its
// pods' eth0, streaming the frames that carry a probe's marker as JSON
// lines (trace.CaptureEvent); POST /probe sends a probe from the node or
// from a pod. Both are for "klab trace".

// capture serves POST /capture.
func (s *server) capture(w http.ResponseWriter, r *http.Request) {
	var req trace.CaptureRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "capture request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := req.Validate(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	err := trace.Capture(r.Context(), req, func(t trace.CaptureTarget) (string, error) {
		switch {
		case t.Netns != "":
			return "", fmt.Errorf("the agent captures in the node's namespace and its pods' only, not in %s", t.Netns)
		case t.Pod != "":
			return s.podNetns(r.Context(), t.Pod)
		}
		return "", nil
	}, func(ev trace.CaptureEvent) error {
		if err := enc.Encode(ev); err != nil {
			return err
		}
		return rc.Flush()
	})
	if err != nil && r.Context().Err() == nil {
		s.log.Warn("capture", "err", err)
	}
}

// probe serves POST /probe.
func (s *server) probe(w http.ResponseWriter, r *http.Request) {
	var req trace.ProbeRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "probe request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := req.Validate(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ns := ""
	if req.Pod != "" {
		var err error
		if ns, err = s.podNetns(r.Context(), req.Pod); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
	}
	res, err := trace.SendProbe(r.Context(), ns, req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(res)
}

// podNetns is the path of the network namespace of the pod with uid.
func (s *server) podNetns(ctx context.Context, uid string) (string, error) {
	sbs, err := s.pods.rt.ListSandboxes(ctx)
	if err != nil {
		return "", fmt.Errorf("list sandboxes: %w", err)
	}
	for _, sb := range sbs {
		if sb.ID == uid && sb.NetNS != "" {
			return sb.NetNS, nil
		}
	}
	return "", fmt.Errorf("pod %s has no sandbox on this node", uid)
}

// CaptureStream is a capture running on an agent.
type CaptureStream struct {
	body io.ReadCloser
	dec  *json.Decoder
}

// Next returns the capture's next event; io.EOF when it ended.
func (s *CaptureStream) Next() (trace.CaptureEvent, error) {
	var ev trace.CaptureEvent
	err := s.dec.Decode(&ev)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return ev, err
}

// Close stops reading the capture; the agent stops it.
func (s *CaptureStream) Close() error { return s.body.Close() }

// Capture starts a capture on the agent at ip. It runs until ctx ends,
// the request's timeout passes or the stream is closed.
func (c *Client) Capture(ctx context.Context, ip string, req trace.CaptureRequest) (*CaptureStream, error) {
	// No client timeout: the capture's own timeout and ctx bound it.
	resp, err := c.post(ctx, &http.Client{Transport: c.http.Transport}, ip, "/capture", req)
	if err != nil {
		return nil, err
	}
	return &CaptureStream{body: resp.Body, dec: json.NewDecoder(resp.Body)}, nil
}

// Probe asks the agent at ip to send a probe.
func (c *Client) Probe(ctx context.Context, ip string, req trace.ProbeRequest) (*trace.ProbeResult, error) {
	resp, err := c.post(ctx, c.http, ip, "/probe", req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var res trace.ProbeResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return nil, fmt.Errorf("agent at %s: probe result: %w", ip, err)
	}
	return &res, nil
}

// post sends body as JSON and returns a 200 response.
func (c *Client) post(ctx context.Context, hc *http.Client, ip, path string, body any) (*http.Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	u := "https://" + net.JoinHostPort(ip, "10250") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent at %s: %w", ip, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		hint := ""
		if resp.StatusCode == http.StatusNotFound && strings.Contains(string(msg), "404 page not found") {
			hint = " (the agent predates klab trace: restart the cluster with this klab)"
		}
		return nil, fmt.Errorf("agent at %s: %s %s: %s%s", ip, req.Method, path, strings.TrimSpace(string(msg)), hint)
	}
	return resp, nil
}
