// Package rpc calls ConPaaS managers and agents the way the original's
// conpaas.core.https.client did: JSON-RPC over HTTPS, GET with the method
// and params in the query string, POST with a JSON body, each carrying the
// service id. A manager answers {"result": ..., "error": null, "id": ...}
// or {"error": "message", "id": ...}.
package rpc

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Client calls managers and agents with the director's certificate.
type Client struct {
	hc *http.Client
}

// New returns a client using tc (certs.Authority.ClientTLS).
func New(tc *tls.Config) *Client {
	return &Client{hc: &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			TLSClientConfig:     tc,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConnsPerHost: 4,
		},
	}}
}

// Error is a manager's {"error": ...} answer.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

// Call invokes method on the manager or agent at host:port. params may be
// nil. It returns the raw "result" (or, like the original's callmanager,
// the whole answer when it has no "result").
func (c *Client) Call(ctx context.Context, host string, port int, post bool, method string, serviceID int64, params any) (json.RawMessage, error) {
	base := "https://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/"
	var req *http.Request
	var err error
	if post {
		if params == nil {
			params = map[string]any{}
		}
		body, err := json.Marshal(map[string]any{"service_id": serviceID, "method": method, "params": params, "id": "1"})
		if err != nil {
			return nil, err
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, base, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
	} else {
		q := url.Values{"service_id": {strconv.FormatInt(serviceID, 10)}, "method": {method}, "id": {"1"}}
		if params != nil {
			p, err := json.Marshal(params)
			if err != nil {
				return nil, err
			}
			q.Set("params", string(p))
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, base+"?"+q.Encode(), nil)
		if err != nil {
			return nil, err
		}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s on %s: HTTP %s", method, host, resp.Status)
	}
	var ans map[string]json.RawMessage
	if err := json.Unmarshal(b, &ans); err != nil {
		return nil, fmt.Errorf("%s on %s: answer is not JSON", method, host)
	}
	if e, ok := ans["error"]; ok && string(e) != "null" {
		var msg string
		if json.Unmarshal(e, &msg) != nil {
			msg = string(e)
		}
		return nil, &Error{msg}
	}
	if r, ok := ans["result"]; ok {
		return r, nil
	}
	return b, nil
}

// Ready reports whether the manager or agent at host:port answers
// check_process (the original's Controller._check_node).
func (c *Client) Ready(ctx context.Context, host string, port int) error {
	_, err := c.Call(ctx, host, port, false, "check_process", 0, nil)
	return err
}
