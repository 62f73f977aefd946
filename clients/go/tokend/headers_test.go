package tokend_test

// The Verifier's memory of accepted header segments (headers.go): it may only
// skip decoding a header, never a rule. Each verdict with a remembered header
// must be the verdict of a verifier that never saw the header.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tokend/tokend/clients/go/tokend"
	"github.com/tokend/tokend/clients/go/tokendv1"
)

// switchableKeys is a KeyProvider whose key set the test replaces.
type switchableKeys struct {
	mu   sync.Mutex
	keys *tokend.KeySet
}

func (s *switchableKeys) set(t *testing.T, keys ...testKey) {
	t.Helper()
	set, err := tokend.ParseKeySet(jwks(t, keys...))
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = set
}

func (s *switchableKeys) CurrentKeys(context.Context) (*tokend.KeySet, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys, nil
}

func (s *switchableKeys) RefetchForUnknownKey(context.Context, *tokend.KeySet) *tokend.KeySet {
	return nil
}

func (s *switchableKeys) FetchJWKS(ctx context.Context) ([]byte, error) {
	keys, _ := s.CurrentKeys(ctx)
	return keys.FetchJWKS(ctx)
}

func headerOf(token string) string { return token[:strings.IndexByte(token, '.')] }

func wantRemembered(t *testing.T, verifier *tokend.Verifier, want ...string) {
	t.Helper()
	got := tokend.RememberedHeaders(verifier)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("remembered headers %q, want %q", got, want)
	}
}

func TestRememberedHeaderIsLookedUpAgainWhenTheKeySetChanges(t *testing.T) {
	original, replacement := newKey(t, jose.ES256, "k1"), newKey(t, jose.ES256, "k1")
	edKey := newKey(t, jose.EdDSA, "k1")
	source := &switchableKeys{}
	source.set(t, original)
	verifier, _ := newTestVerifier(t, source, nil)
	ctx := context.Background()
	token := original.sign(t, validClaims(epoch), nil)
	if _, err := verifier.Verify(ctx, token); err != nil {
		t.Fatal(err)
	}
	wantRemembered(t, verifier, headerOf(token))
	// The same kid now names another key: the old key must not be used.
	source.set(t, replacement)
	_, err := verifier.Verify(ctx, token)
	wantReason(t, err, tokendv1.Reason_REASON_BAD_SIGNATURE)
	// The kid is gone.
	source.set(t, newKey(t, jose.ES256, "k2"))
	_, err = verifier.Verify(ctx, token)
	wantReason(t, err, tokendv1.Reason_REASON_UNKNOWN_KEY)
	// The kid names a key of another algorithm: alg is bound to the key.
	source.set(t, edKey)
	_, err = verifier.Verify(ctx, token)
	wantReason(t, err, tokendv1.Reason_REASON_DISALLOWED_ALGORITHM)
	// The original key is back, as a new set: verified from scratch, then remembered again.
	source.set(t, original)
	if _, err := verifier.Verify(ctx, token); err != nil {
		t.Fatal(err)
	}
	wantRemembered(t, verifier, headerOf(token))
}

func TestRememberedHeaderIsForgottenAfterAKeySourceRefresh(t *testing.T) {
	key := newKey(t, jose.ES256, "k1")
	source := &countingSource{data: jwks(t, key)}
	verifier, clock := newTestVerifier(t, source, nil)
	ctx := context.Background()
	token := key.sign(t, with(validClaims(epoch), map[string]any{"exp": epoch.Add(time.Hour).Unix()}), nil)
	if _, err := verifier.Verify(ctx, token); err != nil {
		t.Fatal(err)
	}
	source.set(jwks(t, newKey(t, jose.ES256, "k1")), nil) // same kid, new key
	clock.Advance(2 * tokend.DefaultRefreshInterval)
	_, err := verifier.Verify(ctx, token)
	wantReason(t, err, tokendv1.Reason_REASON_BAD_SIGNATURE)
}

func TestRefusedHeaderIsNeverRemembered(t *testing.T) {
	es, rs := newKey(t, jose.ES256, "es"), newKey(t, jose.RS256, "rs")
	verifier, _ := newTestVerifier(t, &countingSource{data: jwks(t, es, rs)}, nil)
	ctx := context.Background()
	good := es.sign(t, validClaims(epoch), nil)
	parts := strings.Split(good, ".")
	refused := map[string]string{}
	for _, c := range append(algorithmCases(t, es, rs), headerCases(t, es)...) {
		refused[c.name] = c.token
	}
	// A header that would pass, on a token whose signature does not.
	refused["bad signature"] = parts[0] + "." + parts[1] + "." + flipFirst(parts[2])
	refused["signature of another payload"] = parts[0] + "." + b64JSON(t, with(validClaims(epoch),
		map[string]any{"sub": "mallory"})) + "." + parts[2]
	for round := 0; round < 2; round++ {
		for name, token := range refused {
			if _, err := verifier.Verify(ctx, token); err == nil {
				t.Fatalf("%s: accepted", name)
			}
		}
		wantRemembered(t, verifier)
	}
	// A header that passed is remembered even when the claims then fail: the
	// header rules do not depend on the claims.
	expired := es.sign(t, with(validClaims(epoch), map[string]any{"exp": epoch.Add(-time.Hour).Unix()}), nil)
	_, err := verifier.Verify(ctx, expired)
	wantReason(t, err, tokendv1.Reason_REASON_EXPIRED)
	wantRemembered(t, verifier, parts[0])
	if _, err := verifier.Verify(ctx, good); err != nil {
		t.Fatal(err)
	}
	wantRemembered(t, verifier, parts[0])
}

func flipFirst(segment string) string {
	first := "A"
	if segment[0] == 'A' {
		first = "B"
	}
	return first + segment[1:]
}

// remembered-header cases: tokens sharing the warm-up token's header.
func rememberedHeaderCases(t *testing.T, key testKey, good string) map[string]string {
	parts := strings.Split(good, ".")
	header := parts[0]
	signedPayload := func(payload string) string {
		return rawToken(t, key, `{"alg":"EdDSA","kid":"ed","typ":"at+jwt"}`, payload)
	}
	if headerOf(signedPayload("{}")) != header {
		t.Fatal("the raw tokens do not share the warm-up token's header")
	}
	return map[string]string{
		"bad signature":                header + "." + parts[1] + "." + flipFirst(parts[2]),
		"signature of another payload": header + "." + b64(validPayload(`,"x":1`)) + "." + parts[2],
		"signature stripped":           header + "." + parts[1] + ".",
		"signature cut short":          good[:len(good)-4],
		"signature one byte longer":    extendSignature(t, good, 1),
		"LF in the signature":          good[:len(good)-5] + "\n" + good[len(good)-5:],
		"non-ASCII in the signature":   good[:len(good)-5] + "é" + good[len(good)-5:],
		"padded payload":               header + "." + parts[1] + "=." + parts[2],
		"payload in standard base64":   header + "." + strings.NewReplacer("-", "+", "_", "/").Replace(parts[1]) + "." + parts[2],
		"two segments":                 header + "." + parts[1],
		"four segments":                good + ".x",
		"too large":                    header + "." + strings.Repeat("A", tokend.DefaultMaxTokenBytes) + "." + parts[2],
		"duplicate claim":              signedPayload(validPayload(`,"sub":"mallory"`)),
		"invalid UTF-8 in the claims":  signedPayload(strings.Replace(validPayload(""), "alice", "al\xffice", 1)),
		"BOM before the claims":        signedPayload("\xef\xbb\xbf" + validPayload("")),
		"claims not an object":         signedPayload(`["alice"]`),
		"exp null":                     signedPayload(strings.Replace(validPayload(""), fmt.Sprint(epoch.Unix()+300), "null", 1)),
		"expired":                      signedPayload(strings.Replace(validPayload(""), fmt.Sprint(epoch.Unix()+300), fmt.Sprint(epoch.Unix()-300), 1)),
		"wrong issuer":                 signedPayload(strings.Replace(validPayload(""), testIssuer, "https://evil.test", 1)),
		"wrong audience":               signedPayload(strings.Replace(validPayload(""), `"orders"`, `"billing"`, 1)),
		"jti missing":                  signedPayload(strings.Replace(validPayload(""), `,"jti":"jti-1"`, "", 1)),
		"valid, other claims":          signedPayload(validPayload(`,"scope":"orders:read"`)),
	}
}

func TestRememberedHeaderStillChecksPayloadAndSignature(t *testing.T) {
	key := newKey(t, jose.EdDSA, "ed")
	newVerifier := func() *tokend.Verifier {
		verifier, _ := newTestVerifier(t, &countingSource{data: jwks(t, key)}, nil)
		return verifier
	}
	ctx := context.Background()
	good := rawToken(t, key, `{"alg":"EdDSA","kid":"ed","typ":"at+jwt"}`, validPayload(""))
	warm := newVerifier()
	if _, err := warm.Verify(ctx, good); err != nil {
		t.Fatal(err)
	}
	wantRemembered(t, warm, headerOf(good))
	reasons := map[string]tokendv1.Reason{}
	for name, token := range rememberedHeaderCases(t, key, good) {
		_, coldErr := newVerifier().Verify(ctx, token)
		_, warmErr := warm.Verify(ctx, token)
		if tokend.ReasonOf(warmErr) != tokend.ReasonOf(coldErr) || (warmErr == nil) != (coldErr == nil) {
			t.Errorf("%s: with the header remembered %v, without %v", name, warmErr, coldErr)
		}
		reasons[name] = tokend.ReasonOf(warmErr)
	}
	// The cold verdicts are the expected ones (not merely equal to each other).
	for name, want := range map[string]tokendv1.Reason{
		"bad signature": tokendv1.Reason_REASON_BAD_SIGNATURE, "signature of another payload": tokendv1.Reason_REASON_BAD_SIGNATURE,
		"LF in the signature": tokendv1.Reason_REASON_MALFORMED, "duplicate claim": tokendv1.Reason_REASON_MALFORMED,
		"expired": tokendv1.Reason_REASON_EXPIRED, "wrong issuer": tokendv1.Reason_REASON_WRONG_ISSUER,
		"too large": tokendv1.Reason_REASON_TOO_LARGE, "exp null": tokendv1.Reason_REASON_MALFORMED,
		"valid, other claims": tokendv1.Reason_REASON_UNSPECIFIED,
	} {
		if reasons[name] != want {
			t.Errorf("%s: %s, want %s", name, reasons[name], want)
		}
	}
	wantRemembered(t, warm, headerOf(good))
}

func TestRememberedHeadersAreBounded(t *testing.T) {
	key := newKey(t, jose.EdDSA, "ed")
	verifier, _ := newTestVerifier(t, &countingSource{data: jwks(t, key)}, nil)
	ctx := context.Background()
	total := tokend.MaxRememberedHeaders + 8
	for i := 0; i < total; i++ {
		token := rawToken(t, key, fmt.Sprintf(`{"alg":"EdDSA","kid":"ed","typ":"at+jwt","n":%d}`, i), validPayload(""))
		for round := 0; round < 2; round++ {
			if _, err := verifier.Verify(ctx, token); err != nil {
				t.Fatalf("token %d round %d: %v", i, round, err)
			}
		}
	}
	if got := len(tokend.RememberedHeaders(verifier)); got != tokend.MaxRememberedHeaders {
		t.Fatalf("%d headers remembered, want %d", got, tokend.MaxRememberedHeaders)
	}
}

// Run with -race: readers never lock, writers publish copies.
func TestRememberedHeadersUnderConcurrentUseAndKeyChanges(t *testing.T) {
	key, other := newKey(t, jose.EdDSA, "ed"), newKey(t, jose.EdDSA, "ed")
	source := &switchableKeys{}
	source.set(t, key)
	verifier, _ := newTestVerifier(t, source, nil)
	ctx := context.Background()
	tokens := make([]string, 8)
	for i := range tokens {
		tokens[i] = rawToken(t, key, fmt.Sprintf(`{"alg":"EdDSA","kid":"ed","typ":"at+jwt","n":%d}`, i), validPayload(""))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if _, err := verifier.Verify(ctx, tokens[(g+i)%len(tokens)]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	source.set(t, other) // same kid, another key: every remembered header is void
	for _, token := range tokens {
		_, err := verifier.Verify(ctx, token)
		wantReason(t, err, tokendv1.Reason_REASON_BAD_SIGNATURE)
	}
}
