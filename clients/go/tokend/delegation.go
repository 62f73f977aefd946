package tokend

import (
	"fmt"

	"github.com/tokend/tokend/clients/go/tokendv1"
)

// MaxActDepth is the most `act` objects a token may nest (rule A1 of
// docs/verifier-contract.md section A; tokend's policy cannot allow more).
const MaxActDepth = 8

// Delegation says whether a verifier accepts delegated tokens: tokens from
// tokend's Exchange, whose `act` claim names who acts for the subject
// (RFC 8693 §4.1). Rule A2 of docs/verifier-contract.md section A.
type Delegation int

const (
	// DelegationUnset is the zero value: in Config it means DelegationAny;
	// in VerifyOptions, the verifier's Config.Delegation.
	DelegationUnset Delegation = iota
	// DelegationAny accepts direct and delegated tokens.
	DelegationAny
	// DelegationRequired refuses tokens without `act` (REASON_DELEGATION).
	DelegationRequired
	// DelegationRefused refuses tokens with `act` (REASON_DELEGATION).
	DelegationRefused
)

// String returns "any", "required" or "refused" (the contract's option names).
func (d Delegation) String() string {
	switch d {
	case DelegationUnset:
		return "unset"
	case DelegationAny:
		return "any"
	case DelegationRequired:
		return "required"
	case DelegationRefused:
		return "refused"
	}
	return fmt.Sprintf("Delegation(%d)", int(d))
}

// ParseDelegation reads the contract's option names "any", "required" and "refused".
func ParseDelegation(name string) (Delegation, error) {
	for _, d := range []Delegation{DelegationAny, DelegationRequired, DelegationRefused} {
		if d.String() == name {
			return d, nil
		}
	}
	return DelegationUnset, fmt.Errorf("tokend: delegation must be any, required or refused, not %q", name)
}

func (d Delegation) valid() bool { return d >= DelegationUnset && d <= DelegationRefused }

// actorChain reads `act` (rule A1): the actors outermost (current) first; nil
// for a direct token. Every act object is a JSON object with a non-empty
// string `sub`; other members are ignored; at most MaxActDepth of them.
func actorChain(raw map[string]any) ([]string, error) {
	act, present := raw["act"]
	var chain []string
	for present {
		// RFC 8693 §4.1: act is a JSON object naming the actor by sub.
		object, ok := act.(map[string]any)
		if !ok {
			return nil, malformed("claim act is not a JSON object")
		}
		sub, ok := object["sub"].(string)
		if !ok || sub == "" {
			return nil, malformed("an act object lacks a non-empty string sub")
		}
		chain = append(chain, sub)
		if len(chain) > MaxActDepth {
			return nil, malformed(fmt.Sprintf("claim act is nested deeper than %d", MaxActDepth))
		}
		act, present = object["act"]
	}
	return chain, nil
}

// checkDelegation applies rules A1 (act shape, MALFORMED) then A2 (DELEGATION)
// and records the chain on c.
func checkDelegation(c *Claims, raw map[string]any, delegation Delegation) error {
	chain, err := actorChain(raw)
	if err != nil {
		return err
	}
	c.actors = chain
	switch {
	case delegation == DelegationRequired && len(chain) == 0:
		return invalid(tokendv1.Reason_REASON_DELEGATION, "only delegated tokens (with act) are accepted")
	case delegation == DelegationRefused && len(chain) > 0:
		return invalid(tokendv1.Reason_REASON_DELEGATION, "delegated tokens (with act) are refused here")
	}
	return nil
}
