package tokend

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/tokend/tokend/clients/go/tokendv1"
)

// JWKSSource fetches tokend's JWK Set (RFC 7517) as JSON. The Verifier calls
// it on first use and when a token names an unknown key (rate-limited).
type JWKSSource interface {
	FetchJWKS(ctx context.Context) ([]byte, error)
}

// JWKSSourceFunc adapts a function to JWKSSource.
type JWKSSourceFunc func(ctx context.Context) ([]byte, error)

// FetchJWKS calls f.
func (f JWKSSourceFunc) FetchJWKS(ctx context.Context) ([]byte, error) { return f(ctx) }

// HTTPJWKS fetches the key set from tokend's HTTP endpoint, e.g.
// "https://tokend.example/.well-known/jwks.json". A nil client means one with
// a 10-second timeout.
func HTTPJWKS(url string, client *http.Client) JWKSSource {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return JWKSSourceFunc(func(ctx context.Context) ([]byte, error) {
		return fetchHTTP(ctx, client, url)
	})
}

func fetchHTTP(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	// Read one byte past the limit to tell "exactly at the limit" from "over it".
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("GET %s: key set larger than %d bytes", url, maxJWKSBytes)
	}
	return body, nil
}

// GRPCJWKS fetches the key set with the GetJwks RPC on an existing connection
// (see DialMTLS).
func GRPCJWKS(client tokendv1.TokenServiceClient) JWKSSource {
	return JWKSSourceFunc(func(ctx context.Context) ([]byte, error) {
		resp, err := client.GetJwks(ctx, &tokendv1.GetJwksRequest{})
		if err != nil {
			return nil, err
		}
		return []byte(resp.GetJwksJson()), nil
	})
}
