package tokend

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejson "github.com/go-jose/go-jose/v4/json"

	"github.com/tokend/tokend/clients/go/tokendv1"
)

// Defaults and limits of Config.
const (
	// DefaultLeeway absorbs clock skew between tokend and this process.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway bounds Leeway: minutes of leeway would quietly extend every token's life.
	MaxLeeway = 5 * time.Minute
	// DefaultMinRefetchInterval is the least time between two JWKS fetches
	// caused by tokens naming unknown keys.
	DefaultMinRefetchInterval = 5 * time.Second
	// DefaultMaxTokenBytes is tokend's own default token size limit.
	DefaultMaxTokenBytes = 8192
)

// supportedAlgorithms are the asymmetric algorithms tokend signs with.
var supportedAlgorithms = map[string]bool{"ES256": true, "RS256": true, "PS256": true, "EdDSA": true}

// SupportedAlgorithms returns the JWS algorithms a Verifier can accept: the
// asymmetric ones tokend signs with. "none" and HMAC are never accepted.
func SupportedAlgorithms() []string { return []string{"ES256", "RS256", "PS256", "EdDSA"} }

// Config configures a Verifier. Issuer and Audience are required.
type Config struct {
	// Issuer is the exact `iss` tokend puts in its tokens.
	Issuer string
	// Audience lists the audiences this service answers to; a token must name
	// at least one of them in `aud`.
	Audience []string
	// Algorithms narrows SupportedAlgorithms() (nil means all of them). A token
	// must also use exactly the algorithm of the key its `kid` names.
	Algorithms []string
	// Leeway for exp, nbf and iat; zero means DefaultLeeway, at most MaxLeeway.
	Leeway time.Duration
	// MinRefetchInterval rate-limits refetching the key set for unknown kids;
	// zero means DefaultMinRefetchInterval.
	MinRefetchInterval time.Duration
	// MaxTokenBytes refuses larger tokens before any parsing; zero means
	// DefaultMaxTokenBytes.
	MaxTokenBytes int
	// Now is the clock; nil means time.Now. For tests.
	Now func() time.Time
}

// Verifier verifies tokend access tokens locally. It is safe for concurrent
// use; create one per process (or per audience) and share it, so the key set
// is cached.
type Verifier struct {
	issuer     string
	audience   map[string]bool
	algorithms map[jose.SignatureAlgorithm]bool
	leeway     time.Duration
	maxBytes   int
	now        func() time.Time
	keys       *keyCache
}

// NewVerifier returns a Verifier that takes its keys from source. It does not
// fetch yet: call Refresh to load the keys up front and fail fast.
func NewVerifier(source JWKSSource, config Config) (*Verifier, error) {
	if source == nil {
		return nil, errors.New("tokend: NewVerifier needs a JWKSSource")
	}
	config, err := withDefaults(config)
	if err != nil {
		return nil, err
	}
	algorithms, err := algorithmSet(config.Algorithms)
	if err != nil {
		return nil, err
	}
	v := &Verifier{
		issuer:     config.Issuer,
		audience:   stringSet(config.Audience),
		algorithms: algorithms,
		leeway:     config.Leeway,
		maxBytes:   config.MaxTokenBytes,
		now:        config.Now,
	}
	parse := func(data []byte) (map[string]verificationKey, error) { return parseKeySet(data, algorithms) }
	v.keys = newKeyCache(source, parse, config.MinRefetchInterval, config.Now)
	return v, nil
}

func withDefaults(c Config) (Config, error) {
	switch {
	case c.Issuer == "":
		return c, errors.New("tokend: Config.Issuer is required")
	case len(c.Audience) == 0 || containsEmpty(c.Audience):
		// RFC 7519 §4.1.3: a recipient must identify itself with a value in aud.
		return c, errors.New("tokend: Config.Audience needs at least one non-empty audience")
	case c.Leeway < 0 || c.Leeway > MaxLeeway:
		return c, fmt.Errorf("tokend: Config.Leeway must be between 0 and %s", MaxLeeway)
	case c.MinRefetchInterval < 0 || c.MaxTokenBytes < 0:
		return c, errors.New("tokend: Config.MinRefetchInterval and MaxTokenBytes must not be negative")
	}
	if c.Algorithms == nil {
		c.Algorithms = SupportedAlgorithms()
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
	if c.MinRefetchInterval == 0 {
		c.MinRefetchInterval = DefaultMinRefetchInterval
	}
	if c.MaxTokenBytes == 0 {
		c.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

func algorithmSet(names []string) (map[jose.SignatureAlgorithm]bool, error) {
	set := make(map[jose.SignatureAlgorithm]bool, len(names))
	for _, name := range names {
		if !supportedAlgorithms[name] {
			return nil, fmt.Errorf("tokend: algorithm %q is not one of %v", name, SupportedAlgorithms())
		}
		set[jose.SignatureAlgorithm(name)] = true
	}
	if len(set) == 0 {
		return nil, errors.New("tokend: Config.Algorithms is empty")
	}
	return set, nil
}

// Refresh fetches the key set now, ignoring the refetch rate limit. Call it at
// start-up to fail fast; Verify fetches by itself when it needs to.
func (v *Verifier) Refresh(ctx context.Context) error {
	return v.keys.refresh(ctx)
}

// Verify checks token and returns its claims. requiredScopes must all be in
// the token's `scope`. A refused token is an *InvalidTokenError (see
// ReasonOf); an error wrapping ErrKeysUnavailable means the keys could not be
// fetched, which says nothing about the token. Revocation is not checked.
func (v *Verifier) Verify(ctx context.Context, token string, requiredScopes ...string) (*Claims, error) {
	// Size first, before any decoding: bounds the work a hostile token can cause.
	if len(token) > v.maxBytes {
		return nil, invalid(tokendv1.Reason_REASON_TOO_LARGE, "")
	}
	header, err := parseHeader(token)
	if err != nil {
		return nil, err
	}
	key, err := v.selectKey(ctx, header)
	if err != nil {
		return nil, err
	}
	payload, err := verifySignature(token, key)
	if err != nil {
		return nil, err
	}
	// RFC 9068 §4 / RFC 8725 §3.11: explicit typing keeps other JWTs out.
	if !isAccessTokenType(header.typ) {
		return nil, invalid(tokendv1.Reason_REASON_WRONG_TYPE, "")
	}
	return v.checkClaims(payload, requiredScopes)
}

// selectKey finds the key the header's kid names and binds the algorithm to
// it (RFC 8725 §3.1): the header may only agree with the key's own alg.
func (v *Verifier) selectKey(ctx context.Context, h jwsHeader) (verificationKey, error) {
	if !v.algorithms[h.alg] {
		return verificationKey{}, invalid(tokendv1.Reason_REASON_DISALLOWED_ALGORITHM, "")
	}
	if h.kid == "" { // names no key; not worth a fetch
		return verificationKey{}, invalid(tokendv1.Reason_REASON_UNKNOWN_KEY, "")
	}
	key, found, err := v.keys.lookup(ctx, h.kid)
	if err != nil {
		return verificationKey{}, err
	}
	if !found {
		return verificationKey{}, invalid(tokendv1.Reason_REASON_UNKNOWN_KEY, "")
	}
	if key.alg != h.alg {
		return verificationKey{}, invalid(tokendv1.Reason_REASON_DISALLOWED_ALGORITHM, "")
	}
	return key, nil
}

// jwsHeader is what Verify needs from the (not yet verified) protected header.
type jwsHeader struct {
	alg jose.SignatureAlgorithm
	kid string
	typ any
}

// keySourceHeaders point at keys outside the configured set (RFC 8725 §3.10):
// a token must never choose the key that verifies it.
var keySourceHeaders = []string{"jku", "x5u", "jwk", "x5c"}

// parseHeader splits a compact JWS and reads its protected header strictly:
// three segments of canonical base64url, a JSON object without duplicate
// members, a string alg, no key-source members, no crit, no unencoded payload.
func parseHeader(token string) (jwsHeader, error) {
	segments := strings.Split(token, ".")
	// RFC 7515 §7.1: exactly header.payload.signature; no JSON serialization, no JWE.
	if len(segments) != 3 {
		return jwsHeader{}, malformed("token is not a three-segment compact JWS")
	}
	for _, segment := range segments[1:] {
		if _, err := decodeSegment(segment); err != nil {
			return jwsHeader{}, err
		}
	}
	raw, err := decodeSegment(segments[0])
	if err != nil {
		return jwsHeader{}, err
	}
	var members map[string]any
	if err := josejson.Unmarshal(raw, &members); err != nil || members == nil {
		return jwsHeader{}, malformed("header is not a JSON object")
	}
	return headerFromMembers(members)
}

func headerFromMembers(members map[string]any) (jwsHeader, error) {
	alg, ok := members["alg"].(string)
	if !ok {
		return jwsHeader{}, malformed("header alg is missing or not a string")
	}
	// RFC 8725 §3.1/§3.2: never "none", never HMAC, nothing we do not implement.
	if !supportedAlgorithms[alg] {
		return jwsHeader{}, invalid(tokendv1.Reason_REASON_DISALLOWED_ALGORITHM, "")
	}
	for _, name := range keySourceHeaders {
		if _, present := members[name]; present {
			return jwsHeader{}, malformed("header " + name + " not accepted")
		}
	}
	// RFC 7515 §4.1.11: no extension is understood here, so any crit is fatal.
	if _, present := members["crit"]; present {
		return jwsHeader{}, malformed("header crit names unsupported extensions")
	}
	// RFC 7797 §3: unencoded payloads are not supported.
	if b64, present := members["b64"]; present && b64 != true {
		return jwsHeader{}, malformed("unencoded payload (b64) not accepted")
	}
	kid, _ := members["kid"].(string) // missing or not a string: names no key
	return jwsHeader{alg: jose.SignatureAlgorithm(alg), kid: kid, typ: members["typ"]}, nil
}

// decodeSegment decodes canonical unpadded base64url only: Strict refuses
// non-zero trailing bits, so one token has exactly one encoding.
func decodeSegment(segment string) ([]byte, error) {
	data, err := base64.RawURLEncoding.Strict().DecodeString(segment)
	if err != nil {
		return nil, malformed("segment is not canonical base64url")
	}
	return data, nil
}

// verifySignature checks the signature with go-jose, allowing only the key's
// algorithm, and returns the payload.
func verifySignature(token string, key verificationKey) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{key.alg})
	if err != nil {
		return nil, malformed("not a compact JWS")
	}
	payload, err := jws.Verify(key.key)
	if err != nil {
		return nil, invalid(tokendv1.Reason_REASON_BAD_SIGNATURE, "")
	}
	return payload, nil
}

// isAccessTokenType accepts "at+jwt" in any case, with or without the
// "application/" prefix that RFC 7515 §4.1.9 says is implied.
func isAccessTokenType(typ any) bool {
	value, ok := typ.(string)
	if !ok {
		return false
	}
	value = strings.ToLower(value)
	return value == "at+jwt" || value == "application/at+jwt"
}

func stringSet(values []string) map[string]bool {
	set := make(map[string]bool, len(values))
	for _, value := range values {
		set[value] = true
	}
	return set
}

func containsEmpty(values []string) bool {
	for _, value := range values {
		if value == "" {
			return true
		}
	}
	return false
}
