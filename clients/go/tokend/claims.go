package tokend

import (
	"math"
	"strings"
	"time"

	josejson "github.com/go-jose/go-jose/v4/json"

	"github.com/tokend/tokend/clients/go/tokendv1"
)

// requiredClaims must be in every tokend access token (RFC 9068 §2.2).
var requiredClaims = []string{"exp", "iat", "iss", "sub", "aud", "jti"}

// maxNumericDate (9999-12-31T23:59:59Z) refuses dates no clock will reach,
// which would make a token valid for ever, and keeps conversions exact.
const maxNumericDate = 253402300799

// Claims are the verified claims of an access token.
type Claims struct {
	Issuer   string   // iss
	Subject  string   // sub
	Audience []string // aud (a single string is returned as one element)
	// Scope is the space-separated `scope` claim; empty when absent. See Scopes.
	Scope string
	// ClientID is the caller that had the token issued: the SPIFFE ID or
	// certificate identity tokend saw. Empty when absent.
	ClientID  string
	JTI       string    // jti: the token's unique id, for revocation
	ExpiresAt time.Time // exp
	IssuedAt  time.Time // iat
	NotBefore time.Time // nbf; zero when absent
	// Raw holds every claim as decoded JSON (numbers are float64), custom
	// claims included.
	Raw map[string]any
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
	for _, scope := range c.Scopes() {
		if scope == name {
			return true
		}
	}
	return false
}

// checkClaims applies the claim rules in the order tokend's own verifier does,
// so both report the same reason for the same token.
func (v *Verifier) checkClaims(payload []byte, requiredScopes []string) (*Claims, error) {
	var raw map[string]any
	// RFC 7519 §7.2 step 10: the payload is a JSON object (duplicates refused).
	if err := josejson.Unmarshal(payload, &raw); err != nil || raw == nil {
		return nil, malformed("claims are not a JSON object")
	}
	claims := &Claims{Raw: raw}
	checks := []func(*Claims) error{
		checkPresent,
		checkNumericDates,
		v.checkIssuer,
		v.checkTimes,
		v.checkAudience,
		checkStrings,
		func(c *Claims) error { return checkScopes(c, requiredScopes) },
	}
	for _, check := range checks {
		if err := check(claims); err != nil {
			return nil, err
		}
	}
	return claims, nil
}

func checkPresent(c *Claims) error {
	for _, name := range requiredClaims {
		if _, ok := c.Raw[name]; !ok {
			return invalid(tokendv1.Reason_REASON_MISSING_CLAIM, "token lacks claim "+name)
		}
	}
	return nil
}

// checkNumericDates reads exp, iat and nbf: JSON numbers (RFC 7519 §2), not
// strings or booleans, within maxNumericDate.
func checkNumericDates(c *Claims) error {
	targets := []struct {
		name   string
		target *time.Time
	}{{"exp", &c.ExpiresAt}, {"nbf", &c.NotBefore}, {"iat", &c.IssuedAt}}
	for _, t := range targets {
		value, present := c.Raw[t.name]
		if !present {
			continue
		}
		seconds, ok := value.(float64)
		if !ok || seconds < 0 || seconds > maxNumericDate {
			return malformed("claim " + t.name + " is not a NumericDate")
		}
		whole, fraction := math.Modf(seconds)
		*t.target = time.Unix(int64(whole), int64(fraction*1e9)).UTC()
	}
	return nil
}

func (v *Verifier) checkIssuer(c *Claims) error {
	iss, ok := c.Raw["iss"].(string)
	if !ok {
		return malformed("claim iss is not a string") // RFC 7519 §4.1.1
	}
	// RFC 9068 §4 step 3: iss must exactly match the expected issuer.
	if iss != v.issuer {
		return invalid(tokendv1.Reason_REASON_WRONG_ISSUER, "")
	}
	c.Issuer = iss
	return nil
}

func (v *Verifier) checkTimes(c *Claims) error {
	now := v.now()
	// RFC 7519 §4.1.4: now must be before exp (plus the leeway).
	if !now.Before(c.ExpiresAt.Add(v.leeway)) {
		return invalid(tokendv1.Reason_REASON_EXPIRED, "")
	}
	// RFC 7519 §4.1.5: now must be at or after nbf (minus the leeway).
	if !c.NotBefore.IsZero() && now.Add(v.leeway).Before(c.NotBefore) {
		return invalid(tokendv1.Reason_REASON_NOT_YET_VALID, "")
	}
	// RFC 7519 §4.1.6: an iat in the future means a bad clock or a forgery.
	if c.IssuedAt.After(now.Add(v.leeway)) {
		return invalid(tokendv1.Reason_REASON_ISSUED_IN_FUTURE, "")
	}
	return nil
}

func (v *Verifier) checkAudience(c *Claims) error {
	audience, ok := audienceValues(c.Raw["aud"])
	if !ok {
		return malformed("claim aud is not a string or a non-empty array of strings")
	}
	// RFC 7519 §4.1.3: a recipient that does not find itself in aud must reject.
	for _, value := range audience {
		if v.audience[value] {
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

// checkStrings reads sub and jti (non-empty strings, RFC 7519 §4.1.2 and
// §4.1.7) and client_id (a string when present, RFC 9068 §2.2).
func checkStrings(c *Claims) error {
	targets := []struct {
		name     string
		target   *string
		required bool
	}{{"sub", &c.Subject, true}, {"jti", &c.JTI, true}, {"client_id", &c.ClientID, false}}
	for _, t := range targets {
		value, present := c.Raw[t.name]
		if !present {
			continue
		}
		text, ok := value.(string)
		if !ok || (t.required && text == "") {
			return malformed("claim " + t.name + " is not a non-empty string")
		}
		*t.target = text
	}
	return nil
}

// checkScopes reads scope (one space-separated string, RFC 9068 §2.2.3) and
// requires every name in required.
func checkScopes(c *Claims, required []string) error {
	if value, present := c.Raw["scope"]; present {
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
