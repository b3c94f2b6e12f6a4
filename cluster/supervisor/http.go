package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

func (s *Supervisor) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.status())
	})
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, r *http.Request) {
		if err := s.reload(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	for _, action := range []string{"start", "stop", "restart"} {
		mux.HandleFunc("POST /"+action+"/{name}", func(w http.ResponseWriter, r *http.Request) {
			if err := s.control(action, r.PathValue("name")); err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
			}
		})
	}
	return mux
}

// Client talks to a supervisor's socket.
type Client struct {
	Socket string
	http   *http.Client
}

// NewClient returns a client for the socket.
func NewClient(socket string) *Client {
	return &Client{Socket: socket, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}
}

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://supervisor"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("supervisor at %s: %w", c.Socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("supervisor: %s", strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// Status asks for the supervisor's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	return &st, c.do(ctx, http.MethodGet, "/status", &st)
}

// WaitStatus polls Status until the supervisor answers or ctx ends.
func (c *Client) WaitStatus(ctx context.Context) (*Status, error) {
	wait := 2 * time.Millisecond
	for {
		st, err := c.Status(ctx)
		if err == nil {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// Reload makes the supervisor reread its config.
func (c *Client) Reload(ctx context.Context) error { return c.do(ctx, http.MethodPost, "/reload", nil) }

// Control starts, stops or restarts a component.
func (c *Client) Control(ctx context.Context, action, name string) error {
	return c.do(ctx, http.MethodPost, "/"+action+"/"+url.PathEscape(name), nil)
}
