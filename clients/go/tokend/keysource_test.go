package tokend_test

import (
	"context"
	"errors"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tokend/tokend/clients/go/tokend"
	"github.com/tokend/tokend/clients/go/tokendv1"
)

// Security fix: before, a key tokend withdrew stayed trusted for as long as
// tokens named only known kids, since the set was refetched only on unknown kids.
func TestWithdrawnKeyStopsVerifyingAfterTheRefreshInterval(t *testing.T) {
	withdrawn, current := newKey(t, jose.ES256, "v1"), newKey(t, jose.ES256, "v2")
	source := &countingSource{data: jwks(t, withdrawn, current)}
	verifier, clock := newTestVerifier(t, source, nil)
	ctx := context.Background()
	token := withdrawn.sign(t, validClaims(epoch), nil)
	if _, err := verifier.Verify(ctx, token); err != nil {
		t.Fatal(err)
	}
	source.set(jwks(t, current), nil) // tokend withdrew v1
	clock.Advance(2 * tokend.DefaultRefreshInterval)
	// Long overdue (e.g. after an idle hour): refreshed before this verification.
	_, err := verifier.Verify(ctx, withdrawn.sign(t, with(validClaims(epoch), map[string]any{"exp": epoch.Add(time.Hour).Unix()}), nil))
	wantReason(t, err, tokendv1.Reason_REASON_UNKNOWN_KEY)
	if source.count() < 2 {
		t.Fatalf("fetches = %d", source.count())
	}
}

func TestDueRefreshRunsInTheBackground(t *testing.T) {
	withdrawn, current := newKey(t, jose.ES256, "v1"), newKey(t, jose.ES256, "v2")
	source := &countingSource{data: jwks(t, withdrawn, current)}
	clock := &fakeClock{now: epoch}
	keys := tokend.NewKeySource(source, tokend.KeySourceConfig{RefreshInterval: time.Minute, Now: clock.Now})
	verifier, err := tokend.NewVerifier(keys, tokend.Config{Issuer: testIssuer, Audience: []string{testAudience},
		Now: func() time.Time { return epoch }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	token := withdrawn.sign(t, validClaims(epoch), nil)
	if _, err := verifier.Verify(ctx, token); err != nil {
		t.Fatal(err)
	}
	source.set(jwks(t, current), nil)
	clock.Advance(61 * time.Second)
	// This verification still uses the set in hand and starts a refresh.
	if _, err := verifier.Verify(ctx, token); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, err := verifier.Verify(ctx, token)
		if tokend.ReasonOf(err) == tokendv1.Reason_REASON_UNKNOWN_KEY {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the withdrawn key is still trusted: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if keys.Fetches() != 2 {
		t.Fatalf("fetches = %d, want 2", keys.Fetches())
	}
}

func TestKeySourceMaxAgePolicy(t *testing.T) {
	key := newKey(t, jose.ES256, "v1")
	for _, policy := range []tokend.StalePolicy{tokend.FailClosed, tokend.FailOpen} {
		source := &countingSource{data: jwks(t, key)}
		clock := &fakeClock{now: epoch}
		stale := make(chan time.Duration, 2)
		keys := tokend.NewKeySource(source, tokend.KeySourceConfig{RefreshInterval: time.Minute, MaxAge: 10 * time.Minute,
			StalePolicy: policy, OnStale: func(age time.Duration) { stale <- age }, Now: clock.Now})
		verifier, err := tokend.NewVerifier(keys, tokend.Config{Issuer: testIssuer, Audience: []string{testAudience},
			Now: func() time.Time { return epoch }})
		if err != nil {
			t.Fatal(err)
		}
		token := key.sign(t, validClaims(epoch), nil)
		if _, err := verifier.Verify(context.Background(), token); err != nil {
			t.Fatal(err)
		}
		source.set(nil, errors.New("publisher down"))
		clock.Advance(11 * time.Minute)
		_, err = verifier.Verify(context.Background(), token)
		if policy == tokend.FailClosed && (!errors.Is(err, tokend.ErrStale) || !errors.Is(err, tokend.ErrKeysUnavailable)) {
			t.Fatalf("fail-closed: %v", err)
		}
		if policy == tokend.FailOpen && err != nil {
			t.Fatalf("fail-open: %v", err)
		}
		select {
		case age := <-stale:
			if age < 10*time.Minute {
				t.Fatalf("OnStale age %s", age)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("OnStale not called")
		}
		// The publisher is back: the next due fetch makes the keys fresh again.
		source.set(jwks(t, key), nil)
		clock.Advance(time.Minute)
		if _, err := verifier.Verify(context.Background(), token); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	}
}

func TestZeroLeewayAndMaxLifetimeAndNoAudience(t *testing.T) {
	key := newKey(t, jose.ES256, "v1")
	source := &countingSource{data: jwks(t, key)}
	ctx := context.Background()
	strict, _ := newTestVerifier(t, source, nil)
	_, err := tokend.NewVerifier(source, tokend.Config{Issuer: testIssuer}, tokend.WithLeeway(-time.Second))
	if err == nil {
		t.Fatal("a negative leeway was accepted")
	}
	noLeeway, err := tokend.NewVerifier(source, tokend.Config{Issuer: testIssuer, Audience: []string{testAudience},
		MaxLifetime: 10 * time.Minute}, tokend.WithLeeway(0), tokend.WithClock(func() time.Time { return epoch }))
	if err != nil {
		t.Fatal(err)
	}
	expiredNow := key.sign(t, with(validClaims(epoch), map[string]any{"exp": epoch.Unix()}), nil)
	if _, err := strict.Verify(ctx, expiredNow); err != nil {
		t.Fatalf("default leeway: %v", err)
	}
	_, err = noLeeway.Verify(ctx, expiredNow)
	wantReason(t, err, tokendv1.Reason_REASON_EXPIRED)
	long := key.sign(t, with(validClaims(epoch), map[string]any{"exp": epoch.Add(time.Hour).Unix()}), nil)
	_, err = noLeeway.Verify(ctx, long)
	wantReason(t, err, tokendv1.Reason_REASON_LIFETIME_TOO_LONG)

	noAudience, err := tokend.NewVerifier(source, tokend.Config{Issuer: testIssuer,
		RequiredClaims: []string{"exp", "iat", "iss", "sub", "jti"}, Now: func() time.Time { return epoch }})
	if err != nil {
		t.Fatal(err)
	}
	_, err = noAudience.Verify(ctx, key.sign(t, validClaims(epoch), nil))
	wantReason(t, err, tokendv1.Reason_REASON_WRONG_AUDIENCE)
	if _, err := noAudience.Verify(ctx, key.sign(t, with(validClaims(epoch), map[string]any{"aud": nil}), nil)); err != nil {
		t.Fatalf("no aud expected, none given: %v", err)
	}
}
