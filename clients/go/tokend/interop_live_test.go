//go:build interop

// LiveSource against a live tokend of its own (tests/interop/test_go.py,
// test_go_live): revocations and a key rotation reach the Go verifier within a
// second, without a restart. Besides the TOKEND_* variables of interop_test.go
// it needs TOKEND_BAO_ADDR, TOKEND_BAO_TOKEN and TOKEND_TRANSIT_KEY to rotate
// the signing key in OpenBao (loopback), as the Python rotation tests do.

package tokend_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/clients/go/tokend"
	"github.com/tokend/tokend/clients/go/tokendv1"
)

func liveTarget(t *testing.T, ctx context.Context) (*target, *tokend.LiveSource, *tokend.Verifier) {
	t.Helper()
	tg := dialTarget(t, ctx)
	// An hour between GetJwks refetches: a new key can only arrive by the stream.
	live, err := tokend.NewLiveSource(ctx, tg.client, tokend.LiveSourceConfig{MinRefetchInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(live.Close)
	verifier, err := tokend.NewVerifier(live, tokend.Config{Issuer: tg.env["TOKEND_ISSUER"],
		Audience: []string{tg.env["TOKEND_AUDIENCE"]}})
	if err != nil {
		t.Fatal(err)
	}
	return tg, live, verifier
}

func (tg *target) issueFor(t *testing.T, ctx context.Context, subject string) *tokendv1.IssueResponse {
	t.Helper()
	issued, err := tg.client.Issue(ctx, &tokendv1.IssueRequest{Subject: subject, Audience: []string{tg.env["TOKEND_AUDIENCE"]}})
	if err != nil {
		t.Fatal(err)
	}
	return issued
}

func TestInteropLiveRevocationsReachTheVerifierWithinASecond(t *testing.T) {
	ctx := interopContext(t)
	tg, _, verifier := liveTarget(t, ctx)
	byJTI := tg.issueFor(t, ctx, "go-live-alice")
	bySubject := tg.issueFor(t, ctx, "go-live-mallory")
	for _, issued := range []*tokendv1.IssueResponse{byJTI, bySubject} {
		if _, err := verifier.Verify(ctx, issued.GetAccessToken()); err != nil {
			t.Fatal(err)
		}
	}
	requests := []struct {
		request *tokendv1.RevokeRequest
		token   string
	}{
		{&tokendv1.RevokeRequest{Target: &tokendv1.RevokeRequest_Jti{Jti: byJTI.GetJti()}, Reason: "go live: jti"},
			byJTI.GetAccessToken()},
		{&tokendv1.RevokeRequest{Target: &tokendv1.RevokeRequest_Subject{Subject: "go-live-mallory"},
			Reason: "go live: subject"}, bySubject.GetAccessToken()},
	}
	for _, r := range requests {
		if _, err := tg.client.Revoke(ctx, r.request); err != nil {
			t.Fatal(err)
		}
		took := refusedWithin(t, verifier, r.token, time.Second)
		t.Logf("%s refused locally %s after Revoke returned", r.request.GetReason(), took)
	}
	time.Sleep(1100 * time.Millisecond) // iat has one-second resolution: the next token is newer
	if _, err := verifier.Verify(ctx, tg.issueFor(t, ctx, "go-live-mallory").GetAccessToken()); err != nil {
		t.Fatalf("a token issued after the subject revocation: %v", err)
	}
}

func TestInteropLiveRotationVerifiesWithoutRestart(t *testing.T) {
	ctx := interopContext(t)
	tg, _, verifier := liveTarget(t, ctx)
	before := tg.issueFor(t, ctx, "go-live-rotation")
	if _, err := verifier.Verify(ctx, before.GetAccessToken()); err != nil {
		t.Fatal(err)
	}
	rotateTransitKey(t, ctx)
	after := issueWithNewKID(t, ctx, tg, kidOf(t, before.GetAccessToken()))
	// The new version was published before it signed, so WatchJwks has it by now
	// or within a second; GetJwks refetches are rate-limited to one an hour.
	deadline := time.Now().Add(time.Second)
	for {
		_, err := verifier.Verify(ctx, after.GetAccessToken())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a token of the new key still refused: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := verifier.Verify(ctx, before.GetAccessToken()); err != nil {
		t.Fatalf("the previous key is still published, yet: %v", err)
	}
}

// rotateTransitKey adds a key version in OpenBao's Transit engine.
func rotateTransitKey(t *testing.T, ctx context.Context) {
	t.Helper()
	addr, token, key := os.Getenv("TOKEND_BAO_ADDR"), os.Getenv("TOKEND_BAO_TOKEN"), os.Getenv("TOKEND_TRANSIT_KEY")
	if addr == "" || token == "" || key == "" {
		t.Fatal("TOKEND_BAO_ADDR, TOKEND_BAO_TOKEN and TOKEND_TRANSIT_KEY must be set; run through tests/interop/test_go.py")
	}
	request, err := http.NewRequestWithContext(ctx, http.MethodPost,
		fmt.Sprintf("%s/v1/transit/keys/%s/rotate", strings.TrimRight(addr, "/"), key), nil)
	if err != nil {
		t.Fatal(err)
	}
	request.Header.Set("X-Vault-Token", token)
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	if response.StatusCode/100 != 2 {
		t.Fatalf("rotate: %s", response.Status)
	}
}

// issueWithNewKID issues until tokend signs with a key other than oldKID (it
// re-reads its keys every 0.2 s in this fixture).
func issueWithNewKID(t *testing.T, ctx context.Context, tg *target, oldKID string) *tokendv1.IssueResponse {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		issued := tg.issueFor(t, ctx, "go-live-rotation")
		if kidOf(t, issued.GetAccessToken()) != oldKID {
			return issued
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("tokend never signed with the rotated key")
	return nil
}

func kidOf(t *testing.T, token string) string {
	t.Helper()
	header, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var members struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(header, &members); err != nil {
		t.Fatal(err)
	}
	return members.Kid
}
