package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// apiClient talks to a running server's /api/v1.
type apiClient struct {
	server string
	token  string
	http   *http.Client
}

// clientFlags are the flags every command that talks to a server has.
type clientFlags struct {
	server  string
	token   string
	dataDir string
	output  string
}

func (f *clientFlags) register(cmd *cobra.Command, withOutput bool) {
	cmd.Flags().StringVar(&f.server, "server", envOr("BOOTFLEET_SERVER", "http://127.0.0.1:8080"), "bootfleet server URL (BOOTFLEET_SERVER)")
	cmd.Flags().StringVar(&f.token, "token", "", "admin token (default: BOOTFLEET_TOKEN, else <data-dir>/admin.token)")
	cmd.Flags().StringVar(&f.dataDir, "data-dir", "./bootfleet-data", "local server data dir to read admin.token from")
	if withOutput {
		cmd.Flags().StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (f *clientFlags) client() (*apiClient, error) {
	if f.output != "" && f.output != "table" && f.output != "json" {
		return nil, fmt.Errorf("-o %q: want table or json", f.output)
	}
	token := f.token
	if token == "" {
		token = os.Getenv("BOOTFLEET_TOKEN")
	}
	if token == "" {
		data, err := os.ReadFile(filepath.Join(f.dataDir, "admin.token"))
		if err != nil {
			return nil, fmt.Errorf("no admin token: pass --token, set BOOTFLEET_TOKEN, or run where %s holds admin.token (%v)", f.dataDir, err)
		}
		token = strings.TrimSpace(string(data))
	}
	return &apiClient{server: strings.TrimSuffix(f.server, "/"), token: token, http: &http.Client{}}, nil
}

// do calls the API and decodes a JSON answer into out (if not nil).
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.open(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: bad answer: %w", method, path, err)
	}
	return nil
}

// open calls the API and returns the response of a successful call, whose
// body the caller closes.
func (c *apiClient) open(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	contentType := "application/json"
	if raw, ok := body.(rawBody); ok {
		rd, contentType = bytes.NewReader(raw.data), raw.contentType
	} else if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.server+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the bootfleet server at %s (is `bootfleet serve` running? --server sets the URL): %w", c.server, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e struct{ Error string }
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return nil, errors.New(e.Error)
	}
	return resp, nil
}

// rawBody is a request body sent as it is, not as JSON.
type rawBody struct {
	contentType string
	data        []byte
}

func timeout(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), 30*time.Second)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
