package tokend_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/tokend/tokend/clients/go/tokend"
	"github.com/tokend/tokend/clients/go/tokendv1"
)

// nestedAct builds an act chain of actors, outermost first (RFC 8693 §4.1).
func nestedAct(actors ...string) map[string]any {
	var act map[string]any
	for i := len(actors) - 1; i >= 0; i-- {
		next := map[string]any{"sub": actors[i]}
		if act != nil {
			next["act"] = act
		}
		act = next
	}
	return act
}

func TestActorsAndDelegation(t *testing.T) {
	key := newKey(t, "ES256", "k1")
	keys, err := tokend.ParseKeySet(jwks(t, key))
	if err != nil {
		t.Fatal(err)
	}
	verifier, _ := newTestVerifier(t, keys, nil)
	ctx := context.Background()
	delegated := key.sign(t, with(validClaims(epoch), map[string]any{"act": nestedAct("payments", "orders")}), nil)
	direct := key.sign(t, validClaims(epoch), nil)

	claims, err := verifier.Verify(ctx, delegated)
	if err != nil {
		t.Fatal(err)
	}
	if got := claims.Actors(); !reflect.DeepEqual(got, []string{"payments", "orders"}) || !claims.Delegated() {
		t.Fatalf("actors %v", got)
	}
	claims, err = verifier.Verify(ctx, direct)
	if err != nil || len(claims.Actors()) != 0 || claims.Delegated() {
		t.Fatalf("direct token: %v %v", claims, err)
	}
	// A2, per call and per verifier.
	_, err = verifier.VerifyWithOptions(ctx, direct, tokend.VerifyOptions{Delegation: tokend.DelegationRequired})
	wantReason(t, err, tokendv1.Reason_REASON_DELEGATION)
	_, err = verifier.VerifyWithOptions(ctx, delegated, tokend.VerifyOptions{Delegation: tokend.DelegationRefused})
	wantReason(t, err, tokendv1.Reason_REASON_DELEGATION)
	refusing, _ := newTestVerifier(t, keys, func(c *tokend.Config) { c.Delegation = tokend.DelegationRefused })
	_, err = refusing.Verify(ctx, delegated)
	wantReason(t, err, tokendv1.Reason_REASON_DELEGATION)
	if _, err := refusing.VerifyWithOptions(ctx, delegated, tokend.VerifyOptions{Delegation: tokend.DelegationAny}); err != nil {
		t.Fatalf("a per-call DelegationAny overrides the verifier's: %v", err)
	}
	// A1: malformed act, even where delegation is refused; a J rule wins over it.
	deep := make([]string, tokend.MaxActDepth)
	for i := range deep {
		deep[i] = "actor"
	}
	if _, err := verifier.Verify(ctx, key.sign(t, with(validClaims(epoch), map[string]any{"act": nestedAct(deep...)}), nil)); err != nil {
		t.Fatalf("%d act objects are allowed: %v", tokend.MaxActDepth, err)
	}
	for name, act := range map[string]any{
		"string": "orders", "array": []any{map[string]any{"sub": "orders"}}, "empty object": map[string]any{},
		"empty sub": map[string]any{"sub": ""}, "numeric sub": map[string]any{"sub": 1},
		"nested string": map[string]any{"sub": "payments", "act": "orders"},
		"too deep":      nestedAct(append(deep, "one more")...),
	} {
		token := key.sign(t, with(validClaims(epoch), map[string]any{"act": act}), nil)
		_, err := refusing.Verify(ctx, token)
		if tokend.ReasonOf(err) != tokendv1.Reason_REASON_MALFORMED {
			t.Errorf("act %s: got %v, want MALFORMED", name, err)
		}
	}
	expired := key.sign(t, with(validClaims(epoch), map[string]any{"act": "bad", "exp": epoch.Unix() - 3600}), nil)
	_, err = verifier.Verify(ctx, expired)
	wantReason(t, err, tokendv1.Reason_REASON_EXPIRED)
	// Order: delegation before the binding.
	bound := key.sign(t, with(validClaims(epoch), map[string]any{"act": nestedAct("orders"),
		"cnf": map[string]any{"x5t#S256": "tEmQlxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxA"}}), nil)
	_, err = refusing.Verify(ctx, bound)
	wantReason(t, err, tokendv1.Reason_REASON_DELEGATION)
}

func TestDelegationOptionErrors(t *testing.T) {
	if _, err := tokend.NewVerifier(tokend.HTTPJWKS("http://127.0.0.1:1/jwks", nil),
		tokend.Config{Issuer: testIssuer, Delegation: tokend.Delegation(9)}); err == nil {
		t.Fatal("an unknown Config.Delegation must be refused")
	}
	key := newKey(t, "ES256", "k1")
	keys, _ := tokend.ParseKeySet(jwks(t, key))
	verifier, _ := newTestVerifier(t, keys, nil)
	_, err := verifier.VerifyWithOptions(context.Background(), key.sign(t, validClaims(epoch), nil),
		tokend.VerifyOptions{Delegation: tokend.Delegation(-1)})
	if !errors.Is(err, tokend.ErrInvalidOption) || tokend.ReasonOf(err) != tokendv1.Reason_REASON_UNSPECIFIED {
		t.Fatalf("want ErrInvalidOption, got %v", err)
	}
	for _, name := range []string{"any", "required", "refused"} {
		if d, err := tokend.ParseDelegation(name); err != nil || d.String() != name {
			t.Fatalf("ParseDelegation(%q): %v %v", name, d, err)
		}
	}
	if _, err := tokend.ParseDelegation("Any"); err == nil {
		t.Fatal("ParseDelegation is exact")
	}
}
