package tokend_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tokend/tokend/clients/go/tokend"
	"github.com/tokend/tokend/clients/go/tokendv1"
)

func TestVerifyAcceptsEachAlgorithm(t *testing.T) {
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.PS256, jose.EdDSA} {
		t.Run(string(alg), func(t *testing.T) {
			key := newKey(t, alg, "k-"+string(alg))
			verifier, _ := newTestVerifier(t, &countingSource{data: jwks(t, key)}, nil)
			claims, err := verifier.Verify(context.Background(), key.sign(t, validClaims(epoch), nil), "orders:read")
			if err != nil {
				t.Fatal(err)
			}
			checkClaims(t, claims)
		})
	}
}

func checkClaims(t *testing.T, c *tokend.Claims) {
	t.Helper()
	if c.Issuer != testIssuer || c.Subject != "alice" || c.JTI != "jti-1" ||
		c.ClientID != "spiffe://tokend.test/unit" || c.Scope != "orders:read orders:write" {
		t.Fatalf("unexpected claims %+v", c)
	}
	if len(c.Audience) != 1 || c.Audience[0] != testAudience {
		t.Fatalf("audience %v", c.Audience)
	}
	if !c.ExpiresAt.Equal(epoch.Add(5*time.Minute)) || !c.IssuedAt.Equal(epoch) || !c.NotBefore.Equal(epoch) {
		t.Fatalf("times exp=%s iat=%s nbf=%s", c.ExpiresAt, c.IssuedAt, c.NotBefore)
	}
	if !c.HasScope("orders:write") || c.HasScope("orders") || len(c.Scopes()) != 2 {
		t.Fatalf("scopes %v", c.Scopes())
	}
	if c.Raw["sub"] != "alice" {
		t.Fatalf("raw claims %v", c.Raw)
	}
}

func TestVerifyAcceptsTypVariants(t *testing.T) {
	key := newKey(t, jose.ES256, "k1")
	verifier, _ := newTestVerifier(t, &countingSource{data: jwks(t, key)}, nil)
	for _, typ := range []string{"at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"} {
		token := key.sign(t, validClaims(epoch), map[string]any{"typ": typ})
		if _, err := verifier.Verify(context.Background(), token); err != nil {
			t.Errorf("typ %q: %v", typ, err)
		}
	}
}

func TestVerifyAcceptsWithinLeeway(t *testing.T) {
	key := newKey(t, jose.ES256, "k1")
	verifier, _ := newTestVerifier(t, &countingSource{data: jwks(t, key)}, nil)
	late := with(validClaims(epoch), map[string]any{"exp": epoch.Add(-20 * time.Second).Unix()})
	early := with(validClaims(epoch), map[string]any{
		"iat": epoch.Add(20 * time.Second).Unix(), "nbf": epoch.Add(20 * time.Second).Unix()})
	for name, claims := range map[string]map[string]any{"expired 20s ago": late, "issued in 20s": early} {
		if _, err := verifier.Verify(context.Background(), key.sign(t, claims, nil)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// rejection is one token the verifier must refuse, and why.
type rejection struct {
	name   string
	token  string
	reason tokendv1.Reason
	scopes []string
}

func TestVerifyRejects(t *testing.T) {
	es := newKey(t, jose.ES256, "es")
	rs := newKey(t, jose.RS256, "rs")
	verifier, _ := newTestVerifier(t, &countingSource{data: jwks(t, es, rs)}, nil)
	cases := append(append(tamperedCases(t, es), algorithmCases(t, es, rs)...), claimCases(t, es)...)
	cases = append(cases, headerCases(t, es)...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			claims, err := verifier.Verify(context.Background(), c.token, c.scopes...)
			if claims != nil {
				t.Fatalf("claims returned with error %v", err)
			}
			wantReason(t, err, c.reason)
		})
	}
}

func tamperedCases(t *testing.T, key testKey) []rejection {
	token := key.sign(t, validClaims(epoch), nil)
	parts := strings.Split(token, ".")
	forged := parts[0] + "." + b64JSON(t, with(validClaims(epoch), map[string]any{"sub": "mallory"})) + "." + parts[2]
	flipped := []byte(parts[2])
	flipped[0] ^= 'A' ^ 'B' // 'A'<->'B': still canonical base64url, different bytes
	if flipped[0] != 'A' && flipped[0] != 'B' {
		flipped[0] = 'A'
	}
	return []rejection{
		{name: "tampered payload", token: forged, reason: tokendv1.Reason_REASON_BAD_SIGNATURE},
		{name: "tampered signature", token: parts[0] + "." + parts[1] + "." + string(flipped),
			reason: tokendv1.Reason_REASON_BAD_SIGNATURE},
		{name: "signature stripped", token: parts[0] + "." + parts[1] + ".",
			reason: tokendv1.Reason_REASON_BAD_SIGNATURE},
		{name: "two segments", token: parts[0] + "." + parts[1], reason: tokendv1.Reason_REASON_MALFORMED},
		{name: "padded base64", token: parts[0] + "=." + parts[1] + "." + parts[2],
			reason: tokendv1.Reason_REASON_MALFORMED},
		{name: "too large", token: strings.Repeat("a", tokend.DefaultMaxTokenBytes+1),
			reason: tokendv1.Reason_REASON_TOO_LARGE},
	}
}

func algorithmCases(t *testing.T, es, rs testKey) []rejection {
	claims := validClaims(epoch)
	publicDER, err := x509.MarshalPKIXPublicKey(rs.private.Public())
	if err != nil {
		t.Fatal(err)
	}
	publicPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: publicDER})
	return []rejection{
		{name: "alg none", reason: tokendv1.Reason_REASON_DISALLOWED_ALGORITHM,
			token: unsigned(t, map[string]any{"alg": "none", "kid": es.kid, "typ": "at+jwt"}, claims, nil)},
		// The classic confusion: the RSA public key (as PEM) used as an HMAC secret.
		{name: "HS256 with the public key as secret", reason: tokendv1.Reason_REASON_DISALLOWED_ALGORITHM,
			token: signWith(t, jose.HS256, publicPEM, rs.kid, claims, nil)},
		// A real RS256 signature, but the kid names the ES256 key: alg is bound to the key.
		{name: "alg other than the key's", reason: tokendv1.Reason_REASON_DISALLOWED_ALGORITHM,
			token: signWith(t, jose.RS256, rs.private, es.kid, claims, nil)},
		{name: "alg missing", reason: tokendv1.Reason_REASON_MALFORMED,
			token: unsigned(t, map[string]any{"kid": es.kid, "typ": "at+jwt"}, claims, []byte("sig"))},
		{name: "unknown kid", reason: tokendv1.Reason_REASON_UNKNOWN_KEY,
			token: signWith(t, jose.ES256, es.private, "nobody", claims, nil)},
		{name: "kid missing", reason: tokendv1.Reason_REASON_UNKNOWN_KEY,
			token: signWith(t, jose.ES256, es.private, "", claims, nil)},
	}
}

func headerCases(t *testing.T, key testKey) []rejection {
	claims := validClaims(epoch)
	signed := func(headers map[string]any) string { return key.sign(t, claims, headers) }
	return []rejection{
		{name: "typ JWT", token: signed(map[string]any{"typ": "JWT"}), reason: tokendv1.Reason_REASON_WRONG_TYPE},
		{name: "typ null", token: signed(map[string]any{"typ": nil}), reason: tokendv1.Reason_REASON_WRONG_TYPE},
		{name: "typ not a string", token: signed(map[string]any{"typ": 1}), reason: tokendv1.Reason_REASON_WRONG_TYPE},
		{name: "jku header", token: signed(map[string]any{"jku": "https://evil.test/jwks"}),
			reason: tokendv1.Reason_REASON_MALFORMED},
		{name: "x5u header", token: signed(map[string]any{"x5u": "https://evil.test/cert"}),
			reason: tokendv1.Reason_REASON_MALFORMED},
		{name: "crit header", token: signed(map[string]any{"crit": []string{"exp"}, "exp": 1}),
			reason: tokendv1.Reason_REASON_MALFORMED},
		{name: "unencoded payload", token: signed(map[string]any{"b64": false}),
			reason: tokendv1.Reason_REASON_MALFORMED},
	}
}

func claimCases(t *testing.T, key testKey) []rejection {
	valid := validClaims(epoch)
	signed := func(changes map[string]any) string { return key.sign(t, with(valid, changes), nil) }
	cases := []rejection{
		{name: "wrong audience", token: signed(map[string]any{"aud": []string{"billing"}}),
			reason: tokendv1.Reason_REASON_WRONG_AUDIENCE},
		{name: "aud not strings", token: signed(map[string]any{"aud": []any{1}}), reason: tokendv1.Reason_REASON_MALFORMED},
		{name: "aud empty", token: signed(map[string]any{"aud": []string{}}), reason: tokendv1.Reason_REASON_MALFORMED},
		{name: "wrong issuer", token: signed(map[string]any{"iss": "https://evil.test"}),
			reason: tokendv1.Reason_REASON_WRONG_ISSUER},
		{name: "issuer differs in case", token: signed(map[string]any{"iss": strings.ToUpper(testIssuer)}),
			reason: tokendv1.Reason_REASON_WRONG_ISSUER},
		{name: "expired", token: signed(map[string]any{"exp": epoch.Add(-31 * time.Second).Unix()}),
			reason: tokendv1.Reason_REASON_EXPIRED},
		{name: "not yet valid", token: signed(map[string]any{"nbf": epoch.Add(time.Minute).Unix()}),
			reason: tokendv1.Reason_REASON_NOT_YET_VALID},
		{name: "issued in future", token: signed(map[string]any{"iat": epoch.Add(time.Minute).Unix()}),
			reason: tokendv1.Reason_REASON_ISSUED_IN_FUTURE},
		{name: "exp a string", token: signed(map[string]any{"exp": "1900000000"}), reason: tokendv1.Reason_REASON_MALFORMED},
		{name: "sub empty", token: signed(map[string]any{"sub": ""}), reason: tokendv1.Reason_REASON_MALFORMED},
		{name: "scope not a string", token: signed(map[string]any{"scope": []string{"a"}}),
			reason: tokendv1.Reason_REASON_MALFORMED},
		{name: "missing scope", token: signed(nil), scopes: []string{"orders:delete"},
			reason: tokendv1.Reason_REASON_MISSING_SCOPE},
		{name: "claims not an object", token: key.sign(t, nil, nil), reason: tokendv1.Reason_REASON_MALFORMED},
	}
	for _, name := range []string{"exp", "iat", "iss", "sub", "aud", "jti"} {
		cases = append(cases, rejection{name: "missing " + name, token: signed(map[string]any{name: nil}),
			reason: tokendv1.Reason_REASON_MISSING_CLAIM})
	}
	return cases
}

func TestDuplicateClaimIsMalformed(t *testing.T) {
	key := newKey(t, jose.ES256, "k1")
	verifier, _ := newTestVerifier(t, &countingSource{data: jwks(t, key)}, nil)
	// Build a validly signed payload holding "sub" twice, which parsers read differently.
	payload := `{"iss":"` + testIssuer + `","sub":"alice","sub":"admin","aud":"orders","exp":1800000300,` +
		`"iat":1800000000,"jti":"j"}`
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: key.alg, Key: jose.JSONWebKey{Key: key.private, KeyID: key.kid}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	signed, err := signer.Sign([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	token, _ := signed.CompactSerialize()
	_, err = verifier.Verify(context.Background(), token)
	wantReason(t, err, tokendv1.Reason_REASON_MALFORMED)
}

func TestAlgorithmsNarrowTheAllowlist(t *testing.T) {
	rs := newKey(t, jose.RS256, "rs")
	verifier, _ := newTestVerifier(t, &countingSource{data: jwks(t, rs)}, func(c *tokend.Config) {
		c.Algorithms = []string{"ES256"}
	})
	_, err := verifier.Verify(context.Background(), rs.sign(t, validClaims(epoch), nil))
	wantReason(t, err, tokendv1.Reason_REASON_DISALLOWED_ALGORITHM)
}

func TestNewVerifierRefusesBadConfig(t *testing.T) {
	source := &countingSource{}
	for name, config := range map[string]tokend.Config{
		"no issuer":       {Audience: []string{testAudience}},
		"empty audience":  {Issuer: testIssuer, Audience: []string{""}},
		"HS256 allowed":   {Issuer: testIssuer, Audience: []string{testAudience}, Algorithms: []string{"HS256"}},
		"none allowed":    {Issuer: testIssuer, Audience: []string{testAudience}, Algorithms: []string{"none"}},
		"no algorithm":    {Issuer: testIssuer, Audience: []string{testAudience}, Algorithms: []string{}},
		"leeway too long": {Issuer: testIssuer, Audience: []string{testAudience}, Leeway: time.Hour},
	} {
		if _, err := tokend.NewVerifier(source, config); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := tokend.NewVerifier(nil, tokend.Config{Issuer: testIssuer, Audience: []string{testAudience}}); err == nil {
		t.Error("nil source accepted")
	}
}

func TestUnknownKidTriggersOneRefetch(t *testing.T) {
	old, rotated := newKey(t, jose.ES256, "v1"), newKey(t, jose.ES256, "v2")
	source := &countingSource{data: jwks(t, old)}
	verifier, clock := newTestVerifier(t, source, nil)
	ctx := context.Background()
	if _, err := verifier.Verify(ctx, old.sign(t, validClaims(epoch), nil)); err != nil {
		t.Fatal(err)
	}
	// tokend rotated: the new kid is unknown to the cache and published by the
	// source. The first fetch counts against the rate limit, so let it pass.
	source.set(jwks(t, rotated), nil)
	clock.Advance(tokend.DefaultMinRefetchInterval)
	if _, err := verifier.Verify(ctx, rotated.sign(t, validClaims(epoch), nil)); err != nil {
		t.Fatal(err)
	}
	if got := source.count(); got != 2 {
		t.Fatalf("fetches = %d, want 2 (first use, then the unknown kid)", got)
	}
	// The withdrawn key went with the old set.
	_, err := verifier.Verify(ctx, old.sign(t, validClaims(epoch), nil))
	wantReason(t, err, tokendv1.Reason_REASON_UNKNOWN_KEY)
}

func TestRefetchIsRateLimited(t *testing.T) {
	key := newKey(t, jose.ES256, "v1")
	source := &countingSource{data: jwks(t, key)}
	verifier, clock := newTestVerifier(t, source, nil)
	stranger := signWith(t, jose.ES256, key.private, "made-up", validClaims(epoch), nil)
	// Each round: many tokens with a made-up kid, at most one fetch.
	for round, wantFetches := range []int{1, 1, 2, 3} {
		for range 20 {
			_, err := verifier.Verify(context.Background(), stranger)
			wantReason(t, err, tokendv1.Reason_REASON_UNKNOWN_KEY)
		}
		if got := source.count(); got != wantFetches {
			t.Fatalf("round %d: fetches = %d, want %d", round, got, wantFetches)
		}
		// Within the interval, then just at its end, then past it.
		clock.Advance([]time.Duration{time.Second, tokend.DefaultMinRefetchInterval - time.Second,
			time.Hour, 0}[round])
	}
}

func TestConcurrentUnknownKidsFetchOnce(t *testing.T) {
	key := newKey(t, jose.ES256, "v1")
	source := &countingSource{data: jwks(t, key), delay: 20 * time.Millisecond}
	verifier, _ := newTestVerifier(t, source, nil)
	stranger := signWith(t, jose.ES256, key.private, "made-up", validClaims(epoch), nil)
	valid := key.sign(t, validClaims(epoch), nil)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		token := stranger
		if i%2 == 0 {
			token = valid
		}
		wg.Go(func() {
			_, err := verifier.Verify(context.Background(), token)
			if token == valid && err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := source.count(); got != 1 {
		t.Fatalf("fetches = %d, want 1", got)
	}
}

func TestKeysUnavailableIsNotAVerdict(t *testing.T) {
	key := newKey(t, jose.ES256, "v1")
	source := &countingSource{err: errors.New("connection refused")}
	verifier, clock := newTestVerifier(t, source, nil)
	token := key.sign(t, validClaims(epoch), nil)
	for range 3 {
		_, err := verifier.Verify(context.Background(), token)
		if !errors.Is(err, tokend.ErrKeysUnavailable) || tokend.ReasonOf(err) != tokendv1.Reason_REASON_UNSPECIFIED {
			t.Fatalf("want ErrKeysUnavailable, got %v", err)
		}
	}
	if got := source.count(); got != 1 {
		t.Fatalf("fetches = %d, want 1 (failures are rate-limited too)", got)
	}
	source.set(jwks(t, key), nil)
	clock.Advance(tokend.DefaultMinRefetchInterval)
	if _, err := verifier.Verify(context.Background(), token); err != nil {
		t.Fatal(err)
	}
}

func TestRefreshKeepsLastGoodKeys(t *testing.T) {
	key := newKey(t, jose.ES256, "v1")
	source := &countingSource{data: jwks(t, key)}
	verifier, _ := newTestVerifier(t, source, nil)
	ctx := context.Background()
	if err := verifier.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	entry := jwkEntry(t, key)
	bad := map[string][]byte{
		"no keys":          []byte(`{"keys":[]}`),
		"not json":         []byte(`not json`),
		"not a set":        []byte(`[]`),
		"private key":      privateJWKS(t, key),
		"duplicate kid":    keySet(t, entry, entry),
		"symmetric secret": keySet(t, entry, map[string]any{"kty": "oct", "kid": "h", "alg": "HS256", "k": "c2VjcmV0"}),
	}
	for name, data := range bad {
		source.set(data, nil)
		if err := verifier.Refresh(ctx); !errors.Is(err, tokend.ErrKeysUnavailable) {
			t.Fatalf("%s: refresh gave %v", name, err)
		}
	}
	if _, err := verifier.Verify(ctx, key.sign(t, validClaims(epoch), nil)); err != nil {
		t.Fatal(err)
	}
}

func privateJWKS(t *testing.T, key testKey) []byte {
	data, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: key.private, KeyID: key.kid, Algorithm: string(key.alg), Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// jwkEntry is key's public JWK as a map, for tests that edit members.
func jwkEntry(t *testing.T, key testKey) map[string]any {
	var set struct{ Keys []map[string]any }
	if err := json.Unmarshal(jwks(t, key), &set); err != nil {
		t.Fatal(err)
	}
	return set.Keys[0]
}

func keySet(t *testing.T, entries ...map[string]any) []byte {
	data, err := json.Marshal(map[string]any{"keys": entries})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestKeySetSkipsUnusableKeys(t *testing.T) {
	good := newKey(t, jose.ES256, "good")
	skipped := map[string]map[string]any{}
	for _, name := range []string{"enc", "sign-only", "wrong-alg", "HS256", "future"} {
		key := newKey(t, jose.ES256, name)
		skipped[name] = jwkEntry(t, key)
	}
	skipped["enc"]["use"] = "enc"
	skipped["sign-only"]["key_ops"] = []string{"sign"}
	skipped["wrong-alg"]["alg"] = "RS256" // an EC key cannot be an RS256 key
	skipped["HS256"]["alg"] = "HS256"
	skipped["future"]["kty"] = "future"
	entries := []map[string]any{jwkEntry(t, good)}
	for _, entry := range skipped {
		entries = append(entries, entry)
	}
	verifier, _ := newTestVerifier(t, &countingSource{data: keySet(t, entries...)}, nil)
	ctx := context.Background()
	if _, err := verifier.Verify(ctx, good.sign(t, validClaims(epoch), nil)); err != nil {
		t.Fatal(err)
	}
	for kid := range skipped {
		token := signWith(t, jose.ES256, good.private, kid, validClaims(epoch), nil)
		_, err := verifier.Verify(ctx, token)
		wantReason(t, err, tokendv1.Reason_REASON_UNKNOWN_KEY)
	}
}
