package tokend_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tokend/tokend/clients/go/tokend"
	"github.com/tokend/tokend/clients/go/tokendv1"
)

const (
	testIssuer   = "https://tokend.test"
	testAudience = "orders"
)

// epoch is the fake clock's start: tests never depend on the real time.
var epoch = time.Unix(1_800_000_000, 0)

// testKey is a key pair generated for one test, with the kid and alg it is
// published under.
type testKey struct {
	kid     string
	alg     jose.SignatureAlgorithm
	private crypto.Signer
}

func newKey(t *testing.T, alg jose.SignatureAlgorithm, kid string) testKey {
	t.Helper()
	var (
		private crypto.Signer
		err     error
	)
	switch alg {
	case jose.ES256:
		private, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.RS256, jose.PS256:
		private, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.EdDSA:
		_, private, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("no test key for %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return testKey{kid: kid, alg: alg, private: private}
}

// jwks is the JWK Set publishing keys, as tokend would.
func jwks(t *testing.T, keys ...testKey) []byte {
	t.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key: k.private.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig",
		})
	}
	data, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// sign makes a token with typ at+jwt and kid; headers add or override members.
func (k testKey) sign(t *testing.T, claims map[string]any, headers map[string]any) string {
	t.Helper()
	return signWith(t, k.alg, k.private, k.kid, claims, headers)
}

func signWith(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string,
	claims map[string]any, headers map[string]any) string {
	t.Helper()
	options := (&jose.SignerOptions{}).WithType("at+jwt")
	for name, value := range headers {
		options = options.WithHeader(jose.HeaderKey(name), value)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, options)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	token, err := signed.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// unsigned builds a compact JWS from JSON header and claims with the given
// signature bytes, for tokens no honest signer would make.
func unsigned(t *testing.T, header, claims map[string]any, signature []byte) string {
	t.Helper()
	return b64JSON(t, header) + "." + b64JSON(t, claims) + "." + base64.RawURLEncoding.EncodeToString(signature)
}

func b64JSON(t *testing.T, value any) string {
	t.Helper()
	data, err := json.Marshal(value)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(data)
}

// validClaims are the claims of a token issued at now, valid for 5 minutes.
func validClaims(now time.Time) map[string]any {
	return map[string]any{
		"iss": testIssuer, "sub": "alice", "aud": []string{testAudience},
		"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(), "nbf": now.Unix(),
		"jti": "jti-1", "scope": "orders:read orders:write", "client_id": "spiffe://tokend.test/unit",
	}
}

// with returns a copy of claims with changes applied; a nil value deletes.
func with(claims map[string]any, changes map[string]any) map[string]any {
	out := make(map[string]any, len(claims))
	for name, value := range claims {
		out[name] = value
	}
	for name, value := range changes {
		if value == nil {
			delete(out, name)
		} else {
			out[name] = value
		}
	}
	return out
}

// fakeClock is a settable clock shared by the verifier and its key cache.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// countingSource serves a settable JWK Set and counts fetches.
type countingSource struct {
	mu    sync.Mutex
	data  []byte
	err   error
	calls int
	delay time.Duration // makes concurrent callers overlap
}

func (s *countingSource) FetchJWKS(ctx context.Context) ([]byte, error) {
	s.mu.Lock()
	s.calls++
	data, err, delay := s.data, s.err, s.delay
	s.mu.Unlock()
	time.Sleep(delay)
	return data, err
}

func (s *countingSource) set(data []byte, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data, s.err = data, err
}

func (s *countingSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// newTestVerifier returns a verifier over source with a fake clock at epoch.
func newTestVerifier(t *testing.T, source tokend.JWKSSource, change func(*tokend.Config)) (*tokend.Verifier, *fakeClock) {
	t.Helper()
	clock := &fakeClock{now: epoch}
	config := tokend.Config{Issuer: testIssuer, Audience: []string{testAudience}, Now: clock.Now}
	if change != nil {
		change(&config)
	}
	verifier, err := tokend.NewVerifier(source, config)
	if err != nil {
		t.Fatal(err)
	}
	return verifier, clock
}

// wantReason fails unless err is an *InvalidTokenError with reason want.
func wantReason(t *testing.T, err error, want tokendv1.Reason) {
	t.Helper()
	var invalidErr *tokend.InvalidTokenError
	if !errors.As(err, &invalidErr) {
		t.Fatalf("want %s, got error %v", want, err)
	}
	if invalidErr.Reason != want {
		t.Fatalf("want %s, got %v", want, err)
	}
}
