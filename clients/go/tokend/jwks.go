package tokend

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejson "github.com/go-jose/go-jose/v4/json"

	"github.com/tokend/tokend/clients/go/tokendv1"
)

// maxJWKSBytes bounds a fetched JWK Set: it comes over the network.
const maxJWKSBytes = 1 << 20

// minRSABits refuses RSA keys too short to be trusted (RFC 7518 §3.3).
const minRSABits = 2048

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

// verificationKey is a public key and the one algorithm it may verify.
type verificationKey struct {
	alg jose.SignatureAlgorithm
	key any // *ecdsa.PublicKey, *rsa.PublicKey or ed25519.PublicKey
}

// privateMembers are the JWK members of private or symmetric keys (RFC 7518 §6).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"}

// parseKeySet returns the keys of a JWK Set that can verify tokens here, by
// kid, with the policy of the Python client's JwkSet:
//
//   - The whole set is refused when it is not {"keys": [objects...]}, when an
//     entry carries private or symmetric key material (a publisher that leaks
//     keys is broken), or when two entries share a kid (lookup would be
//     ambiguous). Also, unlike the Python client, when no key is usable, so
//     that a broken publication keeps the previous set in use.
//   - Other keys that cannot verify here are left out (RFC 7517 §5): unknown
//     kty or crv, no kid or alg, an algorithm outside allowed, "use" other
//     than "sig", "key_ops" without "verify", a key unfit for its alg.
func parseKeySet(data []byte, allowed map[jose.SignatureAlgorithm]bool) (map[string]verificationKey, error) {
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("key set larger than %d bytes", maxJWKSBytes)
	}
	var set struct {
		Keys []josejson.RawMessage `json:"keys"`
	}
	// go-jose's JSON fork refuses duplicate members, like the token parser.
	if err := josejson.Unmarshal(data, &set); err != nil || set.Keys == nil {
		return nil, errors.New(`key set is not a JWK Set {"keys": [...]}`)
	}
	keys := make(map[string]verificationKey, len(set.Keys))
	seen := make(map[string]bool, len(set.Keys))
	for _, raw := range set.Keys {
		members, err := checkEntry(raw, seen)
		if err != nil {
			return nil, err
		}
		if kid, key, ok := usableKey(raw, members, allowed); ok {
			keys[kid] = key
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("key set has no key usable for verification")
	}
	return keys, nil
}

// checkEntry applies the whole-set rules to one entry and returns its members.
func checkEntry(raw []byte, seen map[string]bool) (map[string]any, error) {
	var members map[string]any
	if err := josejson.Unmarshal(raw, &members); err != nil || members == nil {
		return nil, errors.New("key set entry is not a JSON object")
	}
	for _, name := range privateMembers {
		if _, present := members[name]; present {
			return nil, errors.New("key set holds private or symmetric key material")
		}
	}
	if kid, ok := members["kid"].(string); ok {
		if seen[kid] {
			return nil, fmt.Errorf("key set names kid %q twice", kid) // RFC 7517 §4.5
		}
		seen[kid] = true
	}
	return members, nil
}

// usableKey returns the kid and key of an entry that can verify tokens here.
func usableKey(raw []byte, members map[string]any,
	allowed map[jose.SignatureAlgorithm]bool) (string, verificationKey, bool) {
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return "", verificationKey{}, false // an unknown key type or curve
	}
	alg := jose.SignatureAlgorithm(jwk.Algorithm)
	if jwk.KeyID == "" || !allowed[alg] || (jwk.Use != "" && jwk.Use != "sig") || !allowsVerify(members) {
		return "", verificationKey{}, false
	}
	if !keyFitsAlgorithm(jwk.Key, alg) {
		return "", verificationKey{}, false
	}
	return jwk.KeyID, verificationKey{alg: alg, key: jwk.Key}, true
}

// allowsVerify applies "key_ops" (RFC 7517 §4.3) when present.
func allowsVerify(members map[string]any) bool {
	ops, present := members["key_ops"]
	if !present {
		return true
	}
	list, ok := ops.([]any)
	if !ok {
		return false
	}
	for _, op := range list {
		if op == "verify" {
			return true
		}
	}
	return false
}

// keyFitsAlgorithm binds each algorithm to the only key type and size it is
// defined for, so a key's "alg" cannot be paired with the wrong kind of key.
func keyFitsAlgorithm(key any, alg jose.SignatureAlgorithm) bool {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		return alg == jose.ES256 && k.Curve == elliptic.P256()
	case *rsa.PublicKey:
		return (alg == jose.RS256 || alg == jose.PS256) && k.N.BitLen() >= minRSABits
	case ed25519.PublicKey:
		return alg == jose.EdDSA && len(k) == ed25519.PublicKeySize
	}
	return false
}
