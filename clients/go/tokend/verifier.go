package tokend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

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
	// DefaultRequiredType is the `typ` of tokend's access tokens (RFC 9068 §2.1).
	DefaultRequiredType = "at+jwt"
)

// SupportedAlgorithms returns the JWS algorithms a Verifier accepts by
// default: the asymmetric ones tokend signs with. "none" and HMAC are never
// accepted; Config.Algorithms may also name ES384, ES512, RS384, RS512, PS384
// and PS512.
func SupportedAlgorithms() []string { return []string{"ES256", "RS256", "PS256", "EdDSA"} }

// Config configures a Verifier. Issuer is required; every other field has a
// default, and the Option values given to NewVerifier override them.
type Config struct {
	// Issuer is the exact `iss` tokend puts in its tokens.
	Issuer string
	// Audience lists the audiences this service answers to; a token's `aud`
	// must name at least one of them. Empty: the token must carry no `aud`.
	Audience []string
	// Algorithms narrows the allowed algorithms (nil: SupportedAlgorithms()).
	// A token must also use exactly the algorithm of the key its `kid` names.
	Algorithms []string
	// Leeway for exp, nbf and iat, at most MaxLeeway. Zero means DefaultLeeway
	// (for compatibility): use WithLeeway(0) for none.
	Leeway time.Duration
	// MaxLifetime, when positive, refuses tokens whose exp - iat exceeds it
	// (and then requires both claims).
	MaxLifetime time.Duration
	// MinRefetchInterval rate-limits refetching the key set for unknown kids;
	// zero means DefaultMinRefetchInterval. Used when the source is a plain
	// JWKSSource (a *KeySource or *LiveSource has its own).
	MinRefetchInterval time.Duration
	// MaxTokenBytes refuses larger tokens before any parsing; zero means
	// DefaultMaxTokenBytes, at most MaxCompactBytes.
	MaxTokenBytes int
	// RequiredClaims must all be present. nil means DefaultRequiredClaims();
	// an empty non-nil slice requires none.
	RequiredClaims []string
	// RequiredType is the header `typ` tokens must have, compared
	// case-insensitively with "application/" implied; "" means "at+jwt".
	RequiredType string
	// Now is the clock; nil means time.Now. For tests.
	Now func() time.Time
	// Delegation accepts or refuses delegated tokens (with `act`, from
	// tokend's Exchange): DelegationUnset means DelegationAny. A call may
	// override it with VerifyOptions.Delegation.
	Delegation Delegation

	leewaySet bool // WithLeeway was given: Leeway 0 means none
}

// Option changes one setting of a Verifier; see WithLeeway.
type Option func(*Config)

// WithLeeway sets the leeway, 0 included (which Config.Leeway cannot express).
func WithLeeway(leeway time.Duration) Option {
	return func(c *Config) {
		c.Leeway = leeway
		c.leewaySet = true
	}
}

// WithDelegation sets Config.Delegation.
func WithDelegation(delegation Delegation) Option {
	return func(c *Config) { c.Delegation = delegation }
}

// WithClock sets the clock.
func WithClock(now func() time.Time) Option { return func(c *Config) { c.Now = now } }

// Verifier verifies tokend access tokens locally. It is safe for concurrent
// use; create one per process (or per audience) and share it, so the key set
// is cached.
type Verifier struct {
	issuer         string
	audience       map[string]bool
	algorithms     map[string]bool
	leeway         instant
	maxLifetime    *instant
	maxBytes       int
	requiredClaims []string
	typ            string
	delegation     Delegation
	now            func() time.Time
	keys           KeyProvider
	revocations    revocationChecker
	headers        headerMemory // header segments accepted with the current keys
}

// KeyProvider hands a Verifier its keys: a *KeySet (fixed), a *KeySource
// (fetched, refreshed) or a *LiveSource (pushed by tokend, with revocations).
type KeyProvider interface {
	// CurrentKeys returns the key set to verify with now, or an error wrapping
	// ErrKeysUnavailable.
	CurrentKeys(ctx context.Context) (*KeySet, error)
	// RefetchForUnknownKey returns a newer set after a token named a kid that
	// seen lacks, or nil when there is nothing newer (rate-limited).
	RefetchForUnknownKey(ctx context.Context, seen *KeySet) *KeySet
}

// revocationChecker is what a *LiveSource adds: revoked tokens are refused.
type revocationChecker interface {
	isRevoked(c *Claims, now instant) bool
}

// NewVerifier returns a Verifier that takes its keys from source: a *KeySet,
// *KeySource or *LiveSource is used as it is; any other JWKSSource is wrapped
// in a KeySource with default settings. Nothing is fetched yet: call Refresh
// to load the keys up front and fail fast.
func NewVerifier(source JWKSSource, config Config, options ...Option) (*Verifier, error) {
	if source == nil {
		return nil, errors.New("tokend: NewVerifier needs a key source")
	}
	for _, option := range options {
		option(&config)
	}
	config, err := withDefaults(config)
	if err != nil {
		return nil, err
	}
	v := &Verifier{
		issuer:         config.Issuer,
		audience:       stringSet(config.Audience),
		algorithms:     stringSet(config.Algorithms),
		leeway:         instantOfDuration(config.Leeway),
		maxBytes:       config.MaxTokenBytes,
		requiredClaims: config.RequiredClaims,
		typ:            normalizeTyp(config.RequiredType),
		delegation:     config.Delegation,
		now:            config.Now,
	}
	if config.MaxLifetime > 0 {
		limit := instantOfDuration(config.MaxLifetime)
		v.maxLifetime = &limit
	}
	if provider, ok := source.(KeyProvider); ok {
		v.keys = provider
	} else {
		v.keys = NewKeySource(source, KeySourceConfig{MinRefetchInterval: config.MinRefetchInterval, Now: config.Now})
	}
	v.revocations, _ = source.(revocationChecker)
	return v, nil
}

func withDefaults(c Config) (Config, error) {
	if err := checkConfig(c); err != nil {
		return c, err
	}
	if c.Algorithms == nil {
		c.Algorithms = SupportedAlgorithms()
	}
	if c.Leeway == 0 && !c.leewaySet {
		c.Leeway = DefaultLeeway
	}
	if c.MinRefetchInterval == 0 {
		c.MinRefetchInterval = DefaultMinRefetchInterval
	}
	if c.MaxTokenBytes == 0 {
		c.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if c.RequiredClaims == nil {
		c.RequiredClaims = DefaultRequiredClaims()
	}
	if c.RequiredType == "" {
		c.RequiredType = DefaultRequiredType
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Delegation == DelegationUnset {
		c.Delegation = DelegationAny
	}
	return c, nil
}

func checkConfig(c Config) error {
	switch {
	case c.Issuer == "":
		return errors.New("tokend: Config.Issuer is required")
	case containsEmpty(c.Audience) || containsEmpty(c.RequiredClaims):
		return errors.New("tokend: Config.Audience and RequiredClaims must not hold empty names")
	case c.Leeway < 0 || c.Leeway > MaxLeeway:
		return fmt.Errorf("tokend: Config.Leeway must be between 0 and %s", MaxLeeway)
	case c.MinRefetchInterval < 0 || c.MaxTokenBytes < 0 || c.MaxLifetime < 0:
		return errors.New("tokend: Config.MinRefetchInterval, MaxLifetime and MaxTokenBytes must not be negative")
	case c.MaxTokenBytes > MaxCompactBytes:
		return fmt.Errorf("tokend: Config.MaxTokenBytes must be at most %d", MaxCompactBytes)
	case c.Algorithms != nil && len(c.Algorithms) == 0:
		return errors.New("tokend: Config.Algorithms is empty")
	case !c.Delegation.valid():
		return errors.New("tokend: Config.Delegation is not a Delegation constant")
	}
	for _, name := range c.Algorithms {
		if !allAlgorithms[name] {
			return fmt.Errorf("tokend: algorithm %q is not an asymmetric JWS algorithm this verifier implements", name)
		}
	}
	return nil
}

// Refresh fetches the key set now, ignoring the refetch rate limit, when the
// source can fetch (a *KeySource or *LiveSource). Call it at start-up to fail fast.
func (v *Verifier) Refresh(ctx context.Context) error {
	if refresher, ok := v.keys.(interface{ Refresh(context.Context) error }); ok {
		return refresher.Refresh(ctx)
	}
	_, err := v.keys.CurrentKeys(ctx)
	return err
}

// VerifyOptions are the per-call inputs of VerifyWithOptions.
type VerifyOptions struct {
	// Scopes must all be in the token's `scope`.
	Scopes []string
	// Presenter is the client certificate the token came with (PresenterFromTLS,
	// PresenterFromGRPC, PresenterFromXFCC...). The zero Presenter means none:
	// a certificate-bound token (`cnf`, RFC 8705 §3) is then refused.
	Presenter Presenter
	// Delegation overrides Config.Delegation for this call when set.
	Delegation Delegation
}

// Verify checks token and returns its claims. requiredScopes must all be in
// the token's `scope`. A refused token is an *InvalidTokenError (see
// ReasonOf); an error wrapping ErrKeysUnavailable means the keys (or, with a
// LiveSource failing closed, the revocations) are not available, which says
// nothing about the token. With a LiveSource, revoked tokens are refused
// (REASON_REVOKED). Verify names no presenter, so a certificate-bound token is
// refused (REASON_CERTIFICATE_MISMATCH): use VerifyWithOptions for those.
func (v *Verifier) Verify(ctx context.Context, token string, requiredScopes ...string) (*Claims, error) {
	return v.VerifyWithOptions(ctx, token, VerifyOptions{Scopes: requiredScopes})
}

// VerifyWithPresenter is Verify for a token presented with presenter's
// client certificate (RFC 8705 §3).
func (v *Verifier) VerifyWithPresenter(ctx context.Context, token string, presenter Presenter,
	requiredScopes ...string) (*Claims, error) {
	return v.VerifyWithOptions(ctx, token, VerifyOptions{Scopes: requiredScopes, Presenter: presenter})
}

// VerifyWithOptions is Verify with the presenter's certificate and a
// delegation override. The checks run in the contract's order
// (docs/verifier-contract.md §2): signature and header, the claim rules, then
// `act` and delegation (section A), then the certificate binding (§9), then
// revocation. An invalid options.Delegation is an error wrapping
// ErrInvalidOption, not a verdict.
func (v *Verifier) VerifyWithOptions(ctx context.Context, token string, options VerifyOptions) (claims *Claims, err error) {
	delegation := options.Delegation
	if delegation == DelegationUnset {
		delegation = v.delegation
	}
	if !delegation.valid() {
		return nil, fmt.Errorf("%w: VerifyOptions.Delegation is not a Delegation constant", ErrInvalidOption)
	}
	defer func() {
		// The last net: nothing but a verdict or ErrKeysUnavailable escapes.
		if recovered := recover(); recovered != nil {
			claims, err = nil, malformed("token could not be processed")
		}
	}()
	// Size first, before any decoding: bounds the work a hostile token can cause.
	if tooLarge(token, v.maxBytes) {
		return nil, invalid(tokendv1.Reason_REASON_TOO_LARGE, "")
	}
	now := v.now()
	payload, err := v.verifiedPayload(ctx, token)
	if err != nil {
		return nil, err
	}
	claims, raw, err := parseClaims(payload)
	if err != nil {
		return nil, err
	}
	moment := instantOfTime(now)
	if err := v.checkClaims(claims, raw, moment, options.Scopes); err != nil {
		return nil, err
	}
	// Section A (A1, A2), then §9 (B1-B5): after every J rule, before revocation.
	if err := checkDelegation(claims, raw, delegation); err != nil {
		return nil, err
	}
	if err := checkConfirmation(raw, options.Presenter); err != nil {
		return nil, err
	}
	// Last: only a token that is otherwise valid is worth looking up.
	if v.revocations != nil && v.revocations.isRevoked(claims, moment) {
		return nil, invalid(tokendv1.Reason_REASON_REVOKED, "")
	}
	return claims, nil
}

// tooLarge counts characters, as the Python reference does for text.
func tooLarge(token string, limit int) bool {
	if len(token) <= limit {
		return false
	}
	if !utf8.ValidString(token) {
		return true
	}
	return utf8.RuneCountInString(token) > limit
}

// verifiedPayload checks signature, header and typ, refetching the keys once
// (rate-limited by the source) when the token names an unknown kid.
func (v *Verifier) verifiedPayload(ctx context.Context, token string) ([]byte, error) {
	keys, err := v.keys.CurrentKeys(ctx)
	if err != nil {
		return nil, err
	}
	if payload, remembered, err := v.rememberedPayload(token, keys); remembered {
		return payload, err
	}
	verified, err := verifyJWS(token, keys, v.algorithms)
	if ReasonOf(err) == tokendv1.Reason_REASON_UNKNOWN_KEY {
		// Only an unknown kid can be cured by newer keys (tokend just rotated).
		if newer := v.keys.RefetchForUnknownKey(ctx, keys); newer != nil {
			keys = newer
			verified, err = verifyJWS(token, keys, v.algorithms)
		}
	}
	if err != nil {
		return nil, err
	}
	// RFC 9068 §4 / RFC 8725 §3.11: explicit typing keeps other JWTs out.
	typ, ok := verified.Header["typ"].(string)
	if !ok || normalizeTyp(typ) != v.typ {
		return nil, invalid(tokendv1.Reason_REASON_WRONG_TYPE, "")
	}
	v.headers.remember(keys, token[:strings.IndexByte(token, '.')], verified.Key)
	return verified.Payload, nil
}

// rememberedPayload verifies a token whose header segment passed every header
// rule before with this key set: the same text decodes to the same header and
// selects the same key, so only the rest of the token is checked, as
// verifyJWS checks it. remembered is false when the header is not known.
func (v *Verifier) rememberedPayload(token string, keys *KeySet) (payload []byte, remembered bool, err error) {
	first := strings.IndexByte(token, '.')
	if first < 0 {
		return nil, false, nil
	}
	key := v.headers.lookup(keys, token[:first])
	if key == nil {
		return nil, false, nil
	}
	first, last, err := compactDots(token)
	if err != nil {
		return nil, true, err
	}
	payload, err = verifiedSegments(token, first, last, key)
	return payload, true, err
}

// normalizeTyp: media types are case-insensitive and "application/" is
// implied when the value has no "/" (RFC 7515 §4.1.9).
func normalizeTyp(typ string) string {
	typ = strings.ToLower(typ)
	if strings.Contains(typ, "/") {
		return typ
	}
	return "application/" + typ
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
