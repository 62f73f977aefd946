//go:build interop

// Service chains against a live tokend (tests/interop/test_go.py,
// test_go_service_chain): login issues alice's token for orders, orders
// exchanges it for payments (RFC 8693), payments verifies it in Go; tokens
// bound to a client certificate (RFC 8705) are refused from another one; an
// exchanged token dies with its parent. Besides the TOKEND_* variables of
// interop_test.go (TOKEND_CLIENT_* is login's certificate) it needs
// TOKEND_{ORDERS,PAYMENTS,THIEF}_{CERT,KEY,ID}.

package tokend_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/clients/go/tokend"
	"github.com/tokend/tokend/clients/go/tokendv1"
)

// workload is one mTLS identity of the chain fixture.
type workload struct {
	id     string
	cert   tls.Certificate
	client tokendv1.TokenServiceClient
}

func chainWorkload(t *testing.T, ctx context.Context, tg *target, name string) *workload {
	t.Helper()
	prefix := "TOKEND_" + strings.ToUpper(name) + "_"
	certFile, keyFile, id := os.Getenv(prefix+"CERT"), os.Getenv(prefix+"KEY"), os.Getenv(prefix+"ID")
	if certFile == "" || keyFile == "" || id == "" {
		t.Fatalf("%sCERT, KEY and ID must be set; run through tests/interop/test_go.py", prefix)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tokend.DialMTLS(ctx, tg.env["TOKEND_ADDR"], tg.env["TOKEND_CA_FILE"], certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &workload{id: id, cert: cert, client: tokendv1.NewTokenServiceClient(conn)}
}

// aliceForOrders is alice's token for orders, as the login service gets it.
func aliceForOrders(t *testing.T, ctx context.Context, tg *target) *tokendv1.IssueResponse {
	t.Helper()
	issued, err := tg.client.Issue(ctx, &tokendv1.IssueRequest{Subject: "alice", Audience: []string{"orders"},
		Scopes: []string{"orders:read", "payments:charge"}})
	if err != nil {
		t.Fatal(err)
	}
	return issued
}

func exchangeForPayments(t *testing.T, ctx context.Context, orders *workload, subjectToken string,
	binding *tokendv1.CertificateBinding) *tokendv1.ExchangeResponse {
	t.Helper()
	exchanged, err := orders.client.Exchange(ctx, &tokendv1.ExchangeRequest{SubjectToken: subjectToken,
		Audience: []string{"payments"}, Scopes: []string{"payments:charge"}, Binding: binding})
	if err != nil {
		t.Fatal(err)
	}
	return exchanged
}

func paymentsVerifier(t *testing.T, tg *target, source tokend.JWKSSource) *tokend.Verifier {
	t.Helper()
	verifier, err := tokend.NewVerifier(source, tokend.Config{Issuer: tg.env["TOKEND_ISSUER"],
		Audience: []string{"payments"}, Delegation: tokend.DelegationRequired})
	if err != nil {
		t.Fatal(err)
	}
	return verifier
}

func TestInteropChainLoginOrdersPayments(t *testing.T) {
	ctx := interopContext(t)
	tg := dialTarget(t, ctx)
	orders := chainWorkload(t, ctx, tg, "orders")
	alice := aliceForOrders(t, ctx, tg)
	exchanged := exchangeForPayments(t, ctx, orders, alice.GetAccessToken(), nil)

	verifier := paymentsVerifier(t, tg, tokend.GRPCJWKS(tg.client))
	claims, err := verifier.Verify(ctx, exchanged.GetAccessToken(), "payments:charge")
	if err != nil {
		t.Fatal(err)
	}
	if claims.Subject != "alice" || !reflect.DeepEqual(claims.Actors(), []string{orders.id}) ||
		claims.JTI != exchanged.GetJti() || claims.HasScope("orders:read") {
		t.Fatalf("payments saw sub %q, actors %v, jti %q, scope %q", claims.Subject, claims.Actors(), claims.JTI, claims.Scope)
	}
	// The server's Verify agrees, actors included.
	resp, err := tg.client.Verify(ctx, &tokendv1.VerifyRequest{Token: exchanged.GetAccessToken(), Audience: "payments",
		Delegation: tokendv1.Delegation_DELEGATION_REQUIRED})
	if err != nil || !resp.GetValid() || !reflect.DeepEqual(resp.GetActors(), []string{orders.id}) {
		t.Fatalf("Verify RPC: %v, %v", resp, err)
	}
	// alice's own token is direct: refused where delegation is required, and
	// the exchanged one where it is refused.
	orderVerifier := tg.verifier(t, tokend.GRPCJWKS(tg.client), "", "orders")
	if claims, err := orderVerifier.Verify(ctx, alice.GetAccessToken()); err != nil || claims.Delegated() {
		t.Fatalf("alice's direct token: %v, %v", claims, err)
	}
	_, err = verifier.VerifyWithOptions(ctx, alice.GetAccessToken(), tokend.VerifyOptions{})
	if reason := tokend.ReasonOf(err); reason != tokendv1.Reason_REASON_WRONG_AUDIENCE {
		t.Fatalf("alice's token for orders at payments: %v", err)
	}
	_, err = verifier.VerifyWithOptions(ctx, exchanged.GetAccessToken(), tokend.VerifyOptions{Delegation: tokend.DelegationRefused})
	wantReason(t, err, tokendv1.Reason_REASON_DELEGATION)
}

// paymentsServer is payments as an HTTPS resource server requiring client
// certificates from the fixture's CA: it verifies the bearer token with the
// presenter taken from the TLS connection.
func paymentsServer(t *testing.T, tg *target, verifier *tokend.Verifier) *httptest.Server {
	t.Helper()
	caPEM, err := os.ReadFile(tg.env["TOKEND_CA_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate in TOKEND_CA_FILE")
	}
	server := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		claims, err := verifier.VerifyWithPresenter(r.Context(), token, tokend.PresenterFromTLS(r.TLS), "payments:charge")
		if err != nil {
			http.Error(w, tokend.ReasonOf(err).String(), http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, claims.Subject)
	}))
	server.TLS = &tls.Config{ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	server.StartTLS()
	t.Cleanup(server.Close)
	return server
}

// present calls the payments server with token over a connection
// authenticated by cert: the status and the body.
func present(t *testing.T, server *httptest.Server, cert tls.Certificate, token string) (int, string) {
	t.Helper()
	transport := server.Client().Transport.(*http.Transport).Clone()
	transport.TLSClientConfig.Certificates = []tls.Certificate{cert}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	request, err := http.NewRequest(http.MethodPost, server.URL+"/charge", nil)
	if err != nil {
		t.Fatal(err)
	}
	request.Header.Set("Authorization", "Bearer "+token)
	response, err := client.Do(request)
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	body, _ := io.ReadAll(response.Body)
	return response.StatusCode, strings.TrimSpace(string(body))
}

func TestInteropChainBoundTokenReplayedFromAnotherCertificate(t *testing.T) {
	ctx := interopContext(t)
	tg := dialTarget(t, ctx)
	orders := chainWorkload(t, ctx, tg, "orders")
	thief := chainWorkload(t, ctx, tg, "thief")
	// orders binds the exchanged token to its own certificate.
	exchanged := exchangeForPayments(t, ctx, orders, aliceForOrders(t, ctx, tg).GetAccessToken(),
		tokend.CallerCertificateBinding())
	token := exchanged.GetAccessToken()

	server := paymentsServer(t, tg, paymentsVerifier(t, tg, tokend.GRPCJWKS(tg.client)))
	if status, body := present(t, server, orders.cert, token); status != http.StatusOK || body != "alice" {
		t.Fatalf("orders presenting its own bound token: %d %s", status, body)
	}
	// The thief holds a valid certificate of the same CA and a copy of the token.
	if status, body := present(t, server, thief.cert, token); status != http.StatusUnauthorized ||
		body != "REASON_CERTIFICATE_MISMATCH" {
		t.Fatalf("the replayed bound token: %d %s", status, body)
	}
	// The server's Verify, told who presents it.
	for _, tc := range []struct {
		name string
		der  []byte
		want tokendv1.Reason
	}{
		{"orders", orders.cert.Certificate[0], tokendv1.Reason_REASON_UNSPECIFIED},
		{"thief", thief.cert.Certificate[0], tokendv1.Reason_REASON_CERTIFICATE_MISMATCH},
		{"nobody", nil, tokendv1.Reason_REASON_CERTIFICATE_MISMATCH},
	} {
		request := &tokendv1.VerifyRequest{Token: token, Audience: "payments"}
		if tc.der != nil {
			request.Presenter = &tokendv1.VerifyRequest_PresenterCertificateDer{PresenterCertificateDer: tc.der}
		}
		resp, err := thief.client.Verify(ctx, request)
		if err != nil || resp.GetValid() != (tc.want == tokendv1.Reason_REASON_UNSPECIFIED) || resp.GetReason() != tc.want {
			t.Fatalf("Verify RPC presented by %s: %v, %v", tc.name, resp, err)
		}
	}
}

func TestInteropChainExchangedTokenDiesWithItsParent(t *testing.T) {
	ctx := interopContext(t)
	tg := dialTarget(t, ctx)
	orders := chainWorkload(t, ctx, tg, "orders")
	payments := chainWorkload(t, ctx, tg, "payments")
	live, err := tokend.NewLiveSource(ctx, payments.client, tokend.LiveSourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(live.Close)
	verifier := paymentsVerifier(t, tg, live)
	alice := aliceForOrders(t, ctx, tg)
	exchanged := exchangeForPayments(t, ctx, orders, alice.GetAccessToken(), nil)
	if _, err := verifier.Verify(ctx, exchanged.GetAccessToken()); err != nil {
		t.Fatal(err)
	}
	revoked, err := tg.client.Revoke(ctx, &tokendv1.RevokeRequest{
		Target: &tokendv1.RevokeRequest_Jti{Jti: alice.GetJti()}, Reason: "go chain: alice's session stolen"})
	if err != nil {
		t.Fatal(err)
	}
	if revoked.GetRevoked() != 2 {
		t.Fatalf("Revoke of the parent revoked %d tokens, want 2 (it and the exchanged one)", revoked.GetRevoked())
	}
	took := refusedWithin(t, verifier, exchanged.GetAccessToken(), time.Second)
	t.Logf("the exchanged token refused locally %s after its parent's Revoke returned", took)
}

// TestInteropChainIssueWithBinding: Issue binds to the caller's own
// certificate, or (policy bind_other_certificates) to another one, e.g. the
// client a login service is answering; the Go verifier checks either.
func TestInteropChainIssueWithBinding(t *testing.T) {
	ctx := interopContext(t)
	tg := dialTarget(t, ctx)
	orders := chainWorkload(t, ctx, tg, "orders")
	thief := chainWorkload(t, ctx, tg, "thief")
	login, err := tls.LoadX509KeyPair(tg.env["TOKEND_CLIENT_CERT"], tg.env["TOKEND_CLIENT_KEY"])
	if err != nil {
		t.Fatal(err)
	}
	verifier := tg.verifier(t, tokend.GRPCJWKS(tg.client), "", "orders")
	for _, tc := range []struct {
		name    string
		binding *tokendv1.CertificateBinding
		owner   tls.Certificate
	}{
		{"caller's certificate", tokend.CallerCertificateBinding(), login},
		{"orders' certificate", tokend.CertificateBinding(leaf(t, orders.cert)), orders.cert},
	} {
		issued, err := tg.client.Issue(ctx, &tokendv1.IssueRequest{Subject: "alice", Audience: []string{"orders"},
			Binding: tc.binding})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		owner, err := tokend.PresenterOfDER(tc.owner.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		claims, err := verifier.VerifyWithPresenter(ctx, issued.GetAccessToken(), owner)
		if err != nil || claims.CertificateThumbprint() != owner.Thumbprint() {
			t.Fatalf("%s, presented by its owner: %v", tc.name, err)
		}
		stranger, _ := tokend.PresenterOfDER(thief.cert.Certificate[0])
		_, err = verifier.VerifyWithPresenter(ctx, issued.GetAccessToken(), stranger)
		wantReason(t, err, tokendv1.Reason_REASON_CERTIFICATE_MISMATCH)
		_, err = verifier.Verify(ctx, issued.GetAccessToken())
		wantReason(t, err, tokendv1.Reason_REASON_CERTIFICATE_MISMATCH)
	}
}

func leaf(t *testing.T, cert tls.Certificate) *x509.Certificate {
	t.Helper()
	parsed, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return parsed
}
