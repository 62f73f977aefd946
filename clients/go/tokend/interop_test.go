//go:build interop

// Interop tests against a live tokend with mutual TLS, named by the TOKEND_*
// variables of tests/conftest.py. Run through tests/interop/test_go.py,
// or by hand: go test -tags interop ./... with those variables set.

package tokend_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokend/tokend/clients/go/tokend"
	"github.com/tokend/tokend/clients/go/tokendv1"
)

// interopClientID is the SPIFFE ID in the fixture's client certificate.
const interopClientID = "spiffe://tokend.test/interop"

// target is the live tokend and a connection to it.
type target struct {
	env    map[string]string
	client tokendv1.TokenServiceClient
}

func dialTarget(t *testing.T, ctx context.Context) *target {
	t.Helper()
	env := map[string]string{}
	for _, name := range []string{"TOKEND_ADDR", "TOKEND_CA_FILE", "TOKEND_CLIENT_CERT", "TOKEND_CLIENT_KEY",
		"TOKEND_JWKS_URL", "TOKEND_ISSUER", "TOKEND_AUDIENCE"} {
		if env[name] = os.Getenv(name); env[name] == "" {
			// Not a skip: the interop tag promises a server to test against.
			t.Fatalf("%s is not set; run through tests/interop/test_go.py", name)
		}
	}
	conn, err := tokend.DialMTLS(ctx, env["TOKEND_ADDR"], env["TOKEND_CA_FILE"],
		env["TOKEND_CLIENT_CERT"], env["TOKEND_CLIENT_KEY"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &target{env: env, client: tokendv1.NewTokenServiceClient(conn)}
}

// verifier builds a Verifier for the live issuer; audience "" means the fixture's.
func (tg *target) verifier(t *testing.T, source tokend.JWKSSource, issuer, audience string) *tokend.Verifier {
	t.Helper()
	if issuer == "" {
		issuer = tg.env["TOKEND_ISSUER"]
	}
	if audience == "" {
		audience = tg.env["TOKEND_AUDIENCE"]
	}
	verifier, err := tokend.NewVerifier(source, tokend.Config{Issuer: issuer, Audience: []string{audience}})
	if err != nil {
		t.Fatal(err)
	}
	return verifier
}

func (tg *target) issue(t *testing.T, ctx context.Context, refresh bool) *tokendv1.IssueResponse {
	t.Helper()
	issued, err := tg.client.Issue(ctx, &tokendv1.IssueRequest{
		Subject: "go-interop", Audience: []string{tg.env["TOKEND_AUDIENCE"]},
		Scopes: []string{"orders:read", "orders:write"}, IncludeRefreshToken: refresh,
	})
	if err != nil {
		t.Fatal(err)
	}
	if issued.GetTokenType() != "Bearer" || issued.GetJti() == "" || (refresh && issued.GetRefreshToken() == "") {
		t.Fatalf("unexpected Issue answer: type %q, jti %q, refresh token present %v",
			issued.GetTokenType(), issued.GetJti(), issued.GetRefreshToken() != "")
	}
	return issued
}

// verifyRPC asks the server about token for the fixture's audience, or audience when given.
func (tg *target) verifyRPC(t *testing.T, ctx context.Context, token, audience string) *tokendv1.VerifyResponse {
	t.Helper()
	if audience == "" {
		audience = tg.env["TOKEND_AUDIENCE"]
	}
	resp, err := tg.client.Verify(ctx, &tokendv1.VerifyRequest{Token: token, Audience: audience})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func interopContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestInteropLifecycle(t *testing.T) {
	ctx := interopContext(t)
	tg := dialTarget(t, ctx)
	byHTTP := tg.verifier(t, tokend.HTTPJWKS(tg.env["TOKEND_JWKS_URL"], nil), "", "")
	byGRPC := tg.verifier(t, tokend.GRPCJWKS(tg.client), "", "")

	issued := tg.issue(t, ctx, true)
	for name, verifier := range map[string]*tokend.Verifier{"HTTP JWKS": byHTTP, "GetJwks": byGRPC} {
		claims, err := verifier.Verify(ctx, issued.GetAccessToken(), "orders:read")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		checkIssuedClaims(t, claims, issued)
	}
	if resp := tg.verifyRPC(t, ctx, issued.GetAccessToken(), ""); !resp.GetValid() ||
		resp.GetClaims().GetFields()["client_id"].GetStringValue() != interopClientID {
		t.Fatalf("Verify RPC: valid=%v reason=%s", resp.GetValid(), resp.GetReason())
	}

	refreshed := refreshAndCheck(t, ctx, tg, byHTTP, issued)
	revokeAndCheck(t, ctx, tg, byHTTP, issued, refreshed)
}

func checkIssuedClaims(t *testing.T, claims *tokend.Claims, issued *tokendv1.IssueResponse) {
	t.Helper()
	if claims.ClientID != interopClientID {
		t.Errorf("client_id = %q, want %q", claims.ClientID, interopClientID)
	}
	if claims.Subject != "go-interop" || claims.JTI != issued.GetJti() || !claims.HasScope("orders:write") {
		t.Errorf("claims sub=%q jti=%q scope=%q", claims.Subject, claims.JTI, claims.Scope)
	}
	if !claims.ExpiresAt.Equal(issued.GetExpiresAt().AsTime().Truncate(time.Second)) {
		t.Errorf("exp %s, Issue said %s", claims.ExpiresAt, issued.GetExpiresAt().AsTime())
	}
}

// refreshAndCheck spends the refresh token for a narrower token, verifies it
// locally, and checks that spending it again is refused.
func refreshAndCheck(t *testing.T, ctx context.Context, tg *target, verifier *tokend.Verifier,
	issued *tokendv1.IssueResponse) *tokendv1.IssueResponse {
	t.Helper()
	refreshed, err := tg.client.Refresh(ctx, &tokendv1.RefreshRequest{
		RefreshToken: issued.GetRefreshToken(), Scopes: []string{"orders:read"}})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := verifier.Verify(ctx, refreshed.GetAccessToken(), "orders:read")
	if err != nil {
		t.Fatal(err)
	}
	if claims.JTI == issued.GetJti() || claims.HasScope("orders:write") || claims.ClientID != interopClientID {
		t.Errorf("refreshed claims jti=%q scope=%q client_id=%q", claims.JTI, claims.Scope, claims.ClientID)
	}
	if refreshed.GetRefreshToken() == "" || refreshed.GetRefreshToken() == issued.GetRefreshToken() {
		t.Error("Refresh did not rotate the refresh token")
	}
	return refreshed
}

// revokeAndCheck revokes by jti and by token; the server then refuses both,
// while local verification (which has no revocation list) still accepts them.
func revokeAndCheck(t *testing.T, ctx context.Context, tg *target, verifier *tokend.Verifier,
	issued, refreshed *tokendv1.IssueResponse) {
	t.Helper()
	requests := []*tokendv1.RevokeRequest{
		{Target: &tokendv1.RevokeRequest_Jti{Jti: refreshed.GetJti()}, Reason: "go interop: by jti"},
		{Target: &tokendv1.RevokeRequest_Token{Token: issued.GetAccessToken()}, Reason: "go interop: by token"},
	}
	for _, request := range requests {
		if _, err := tg.client.Revoke(ctx, request); err != nil {
			t.Fatal(err)
		}
	}
	for _, token := range []string{refreshed.GetAccessToken(), issued.GetAccessToken()} {
		resp := tg.verifyRPC(t, ctx, token, "")
		if resp.GetValid() || resp.GetReason() != tokendv1.Reason_REASON_REVOKED {
			t.Errorf("Verify RPC after Revoke: valid=%v reason=%s", resp.GetValid(), resp.GetReason())
		}
		if _, err := verifier.Verify(ctx, token); err != nil {
			t.Errorf("local verification checks no revocations, yet: %v", err)
		}
	}
}

func TestInteropSpentRefreshTokenIsRefused(t *testing.T) {
	ctx := interopContext(t)
	tg := dialTarget(t, ctx)
	issued := tg.issue(t, ctx, true)
	request := &tokendv1.RefreshRequest{RefreshToken: issued.GetRefreshToken()}
	if _, err := tg.client.Refresh(ctx, request); err != nil {
		t.Fatal(err)
	}
	_, err := tg.client.Refresh(ctx, request)
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("second Refresh: %v, want Unauthenticated", err)
	}
	// Reuse revokes the family, and so the access token it started with.
	if resp := tg.verifyRPC(t, ctx, issued.GetAccessToken(), ""); resp.GetReason() != tokendv1.Reason_REASON_REVOKED {
		t.Fatalf("after reuse: valid=%v reason=%s", resp.GetValid(), resp.GetReason())
	}
}

// TestInteropRefusals checks that the local verifier refuses what it must,
// with the same reason as the server.
func TestInteropRefusals(t *testing.T) {
	ctx := interopContext(t)
	tg := dialTarget(t, ctx)
	source := tokend.GRPCJWKS(tg.client)
	token := tg.issue(t, ctx, false).GetAccessToken()
	cases := []struct {
		name, token, issuer, audience string
		want                          tokendv1.Reason
		serverAgrees                  bool
	}{
		{name: "tampered", token: tamper(t, token), want: tokendv1.Reason_REASON_BAD_SIGNATURE, serverAgrees: true},
		{name: "wrong audience", token: token, audience: "someone-else",
			want: tokendv1.Reason_REASON_WRONG_AUDIENCE, serverAgrees: true},
		{name: "wrong issuer", token: token, issuer: "https://elsewhere.test", want: tokendv1.Reason_REASON_WRONG_ISSUER},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := tg.verifier(t, source, c.issuer, c.audience).Verify(ctx, c.token)
			wantReason(t, err, c.want)
			if !c.serverAgrees {
				return
			}
			if resp := tg.verifyRPC(t, ctx, c.token, c.audience); resp.GetValid() || resp.GetReason() != c.want {
				t.Errorf("server: valid=%v reason=%s, want %s", resp.GetValid(), resp.GetReason(), c.want)
			}
		})
	}
}

// tamper rewrites the token's subject and keeps the signature.
func tamper(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	claims["sub"] = "admin"
	return parts[0] + "." + b64JSON(t, claims) + "." + parts[2]
}
