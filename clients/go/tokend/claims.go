package tokend

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/tokend/tokend/clients/go/tokendv1"
)

// DefaultRequiredClaims must be in every tokend access token (RFC 9068 §2.2).
func DefaultRequiredClaims() []string { return []string{"exp", "iat", "iss", "sub", "aud", "jti"} }

// Claims are the verified claims of an access token.
type Claims struct {
	Issuer   string   // iss
	Subject  string   // sub
	Audience []string // aud (a single string is returned as one element)
	// Scope is the space-separated `scope` claim; empty when absent. See Scopes.
	Scope string
	// ClientID is the caller that had the token issued: the SPIFFE ID or
	// certificate identity tokend saw. Empty when absent or not a string.
	ClientID  string
	JTI       string    // jti: the token's unique id, for revocation
	ExpiresAt time.Time // exp; zero when absent
	IssuedAt  time.Time // iat; zero when absent
	NotBefore time.Time // nbf; zero when absent
	// Raw holds every claim as decoded JSON (numbers are float64), custom
	// claims included.
	Raw map[string]any

	// dates are exp, nbf and iat exactly as the token gives them.
	exp, nbf, iat *instant
	// actors is the `act` chain, outermost first (RFC 8693 §4.1).
	actors []string
}

// Actors returns the actor chain of a delegated token (the `act` claim,
// RFC 8693 §4.1), the current actor (outermost `act`: the party that
// exchanged the token) first; empty for a direct token.
func (c *Claims) Actors() []string { return append([]string(nil), c.actors...) }

// Delegated reports whether the token carries an `act` claim.
func (c *Claims) Delegated() bool { return len(c.actors) > 0 }

// CertificateThumbprint returns the x5t#S256 the token is bound to (`cnf`,
// RFC 8705 §3.1), or "" for an unbound token.
func (c *Claims) CertificateThumbprint() string {
	cnf, _ := c.Raw["cnf"].(map[string]any)
	thumbprint, _ := cnf[X5TS256].(string)
	return thumbprint
}

// Scopes returns the scope names in Scope.
func (c *Claims) Scopes() []string {
	// RFC 6749 §3.3: names are separated by single spaces (not any whitespace).
	var names []string
	for _, name := range strings.Split(c.Scope, " ") {
		if name != "" {
			names = append(names, name)
		}
	}
	return names
}

// HasScope reports whether the token grants scope name.
func (c *Claims) HasScope(name string) bool {
	for _, scope := range strings.Split(c.Scope, " ") {
		if scope == name && name != "" {
			return true
		}
	}
	return false
}

// parseClaims reads the payload: strict JSON (RFC 7519 §7.2 step 10: an object).
func parseClaims(payload []byte) (*Claims, map[string]any, error) {
	value, err := parseStrictJSON(payload)
	if err != nil {
		return nil, nil, malformed("claims are not strict JSON")
	}
	members, ok := value.(map[string]any)
	if !ok {
		return nil, nil, malformed("claims are not a JSON object")
	}
	return &Claims{}, members, nil
}

// checkClaims applies the claim rules in the order of the Python reference
// (LocalVerifier), so every verifier reports the same reason for a token.
func (v *Verifier) checkClaims(c *Claims, raw map[string]any, now instant, required []string) error {
	for _, name := range v.requiredClaims {
		if _, ok := raw[name]; !ok {
			return invalid(tokendv1.Reason_REASON_MISSING_CLAIM, "token lacks claim "+name)
		}
	}
	if err := readNumericDates(c, raw); err != nil {
		return err
	}
	if err := v.checkIssuer(c, raw); err != nil {
		return err
	}
	if err := v.checkTimes(c, now); err != nil {
		return err
	}
	if err := v.checkAudience(c, raw); err != nil {
		return err
	}
	if err := readIdentifiers(c, raw); err != nil {
		return err
	}
	if err := checkScopes(c, raw, required); err != nil {
		return err
	}
	c.Raw = plainJSON(raw).(map[string]any)
	return nil
}

// readNumericDates reads exp, nbf and iat: JSON numbers (RFC 7519 §2), not
// null, strings or booleans.
func readNumericDates(c *Claims, raw map[string]any) error {
	targets := []struct {
		name  string
		date  **instant
		value *time.Time
	}{{"exp", &c.exp, &c.ExpiresAt}, {"nbf", &c.nbf, &c.NotBefore}, {"iat", &c.iat, &c.IssuedAt}}
	for _, t := range targets {
		value, present := raw[t.name]
		if !present {
			continue
		}
		number, ok := value.(json.Number)
		if !ok {
			return malformed("claim " + t.name + " is not a NumericDate")
		}
		date := instantOfNumber(number)
		*t.date, *t.value = &date, date.time()
	}
	return nil
}

func (v *Verifier) checkIssuer(c *Claims, raw map[string]any) error {
	value, present := raw["iss"]
	iss, ok := value.(string)
	if present && !ok {
		return malformed("claim iss is not a string") // RFC 7519 §4.1.1
	}
	// RFC 9068 §4 step 3: iss must exactly match the expected issuer.
	if !present || iss != v.issuer {
		return invalid(tokendv1.Reason_REASON_WRONG_ISSUER, "")
	}
	c.Issuer = iss
	return nil
}

func (v *Verifier) checkTimes(c *Claims, now instant) error {
	// RFC 7519 §4.1.4: the current time must be before exp (plus the leeway).
	if c.exp != nil && now.cmp(c.exp.plus(v.leeway)) >= 0 {
		return invalid(tokendv1.Reason_REASON_EXPIRED, "")
	}
	// RFC 7519 §4.1.5: the current time must be at or after nbf (minus the leeway).
	if c.nbf != nil && now.plus(v.leeway).cmp(*c.nbf) < 0 {
		return invalid(tokendv1.Reason_REASON_NOT_YET_VALID, "")
	}
	// RFC 7519 §4.1.6: an iat in the future means a bad clock or a forgery.
	if c.iat != nil && c.iat.cmp(now.plus(v.leeway)) > 0 {
		return invalid(tokendv1.Reason_REASON_ISSUED_IN_FUTURE, "")
	}
	if v.maxLifetime == nil {
		return nil
	}
	// Without both ends the lifetime is unbounded, which the limit exists to refuse.
	if c.exp == nil {
		return invalid(tokendv1.Reason_REASON_MISSING_CLAIM, "max lifetime needs claim exp")
	}
	if c.iat == nil {
		return invalid(tokendv1.Reason_REASON_MISSING_CLAIM, "max lifetime needs claim iat")
	}
	if c.exp.minus(*c.iat).cmp(*v.maxLifetime) > 0 {
		return invalid(tokendv1.Reason_REASON_LIFETIME_TOO_LONG, "")
	}
	return nil
}

func (v *Verifier) checkAudience(c *Claims, raw map[string]any) error {
	value, present := raw["aud"]
	if !present {
		return nil
	}
	// RFC 7519 §4.1.3: a string or an array of strings (a non-empty one here).
	audience, ok := audienceValues(value)
	if !ok {
		return malformed("claim aud is not a string or a non-empty array of strings")
	}
	// RFC 7519 §4.1.3: a recipient that does not identify itself with aud must reject;
	// one configured with no audience refuses every aud.
	for _, name := range audience {
		if v.audience[name] {
			c.Audience = audience
			return nil
		}
	}
	return invalid(tokendv1.Reason_REASON_WRONG_AUDIENCE, "")
}

func audienceValues(aud any) ([]string, bool) {
	switch value := aud.(type) {
	case string:
		return []string{value}, true
	case []any:
		values := make([]string, 0, len(value))
		for _, item := range value {
			text, ok := item.(string)
			if !ok {
				return nil, false
			}
			values = append(values, text)
		}
		return values, len(values) > 0
	}
	return nil, false
}

// readIdentifiers reads sub (RFC 7519 §4.1.2) and jti (§4.1.7), non-empty
// strings when present, and client_id when it is a string (RFC 9068 §2.2).
func readIdentifiers(c *Claims, raw map[string]any) error {
	for _, t := range []struct {
		name   string
		target *string
	}{{"sub", &c.Subject}, {"jti", &c.JTI}} {
		value, present := raw[t.name]
		if !present {
			continue
		}
		text, ok := value.(string)
		if !ok || text == "" {
			return malformed("claim " + t.name + " is not a non-empty string")
		}
		*t.target = text
	}
	c.ClientID, _ = raw["client_id"].(string)
	return nil
}

// checkScopes reads scope (one space-separated string, RFC 9068 §2.2.3) and
// requires every name in required.
func checkScopes(c *Claims, raw map[string]any, required []string) error {
	if value, present := raw["scope"]; present {
		scope, ok := value.(string)
		if !ok {
			return malformed("claim scope is not a string")
		}
		c.Scope = scope
	}
	for _, name := range required {
		if !c.HasScope(name) {
			return invalid(tokendv1.Reason_REASON_MISSING_SCOPE, "token lacks scope "+name)
		}
	}
	return nil
}

// plainJSON turns json.Number into float64, as encoding/json would decode.
func plainJSON(value any) any {
	switch v := value.(type) {
	case json.Number:
		f, _ := v.Float64()
		return f
	case map[string]any:
		for name, item := range v {
			v[name] = plainJSON(item)
		}
	case []any:
		for i, item := range v {
			v[i] = plainJSON(item)
		}
	}
	return value
}
