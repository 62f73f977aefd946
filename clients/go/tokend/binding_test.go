package tokend_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tokend/tokend/clients/go/tokend"
	"github.com/tokend/tokend/clients/go/tokendv1"
)

// testPKI is a CA with a server certificate (127.0.0.1) and two client certificates.
type testPKI struct {
	pool                  *x509.CertPool
	server, orders, thief tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "binding test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage, ips ...net.IP) tls.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		template := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
			KeyUsage: x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		parsed, _ := x509.ParseCertificate(der)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: parsed}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{
		pool:   pool,
		server: leaf(2, "server", x509.ExtKeyUsageServerAuth, net.IPv4(127, 0, 0, 1)),
		orders: leaf(3, "orders", x509.ExtKeyUsageClientAuth),
		thief:  leaf(4, "thief", x509.ExtKeyUsageClientAuth),
	}
}

func x5t(cert tls.Certificate) string {
	sum := sha256.Sum256(cert.Certificate[0])
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func presenterOf(t *testing.T, cert tls.Certificate) tokend.Presenter {
	t.Helper()
	presenter, err := tokend.PresenterOfDER(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return presenter
}

func TestPresenterConstructors(t *testing.T) {
	pki := newTestPKI(t)
	want := x5t(pki.orders)
	if got := presenterOf(t, pki.orders).Thumbprint(); got != want {
		t.Fatalf("PresenterOfDER: %s, want %s", got, want)
	}
	if got, err := tokend.PresenterOfCertificate(pki.orders.Leaf); err != nil || got.Thumbprint() != want {
		t.Fatalf("PresenterOfCertificate: %v %v", got, err)
	}
	if got, err := tokend.PresenterOfThumbprint(want); err != nil || got.Thumbprint() != want {
		t.Fatalf("PresenterOfThumbprint: %v %v", got, err)
	}
	pemText := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pki.orders.Certificate[0]})
	for name, call := range map[string]func() (tokend.Presenter, error){
		"empty DER":          func() (tokend.Presenter, error) { return tokend.PresenterOfDER(nil) },
		"PEM, not DER":       func() (tokend.Presenter, error) { return tokend.PresenterOfDER(pemText) },
		"oversized DER":      func() (tokend.Presenter, error) { return tokend.PresenterOfDER(make([]byte, 16*1024+1)) },
		"nil certificate":    func() (tokend.Presenter, error) { return tokend.PresenterOfCertificate(nil) },
		"padded thumbprint":  func() (tokend.Presenter, error) { return tokend.PresenterOfThumbprint(want + "=") },
		"hex thumbprint":     func() (tokend.Presenter, error) { return tokend.PresenterOfThumbprint(strings.Repeat("ab", 32)) },
		"non-canonical bits": func() (tokend.Presenter, error) { return tokend.PresenterOfThumbprint(want[:42] + "B") },
		"empty thumbprint":   func() (tokend.Presenter, error) { return tokend.PresenterOfThumbprint("") },
	} {
		if _, err := call(); !errors.Is(err, tokend.ErrInvalidPresenter) {
			t.Errorf("%s: want ErrInvalidPresenter, got %v", name, err)
		}
	}
	if !(tokend.Presenter{}).IsZero() || tokend.PresenterFromTLS(nil) != (tokend.Presenter{}) ||
		tokend.PresenterFromGRPC(context.Background()) != (tokend.Presenter{}) {
		t.Fatal("no certificate must give the zero Presenter")
	}
}

// boundToken signs alice's token bound to cert (RFC 8705 §3.1).
func boundToken(t *testing.T, key testKey, cert tls.Certificate, changes map[string]any) string {
	t.Helper()
	claims := with(validClaims(epoch), map[string]any{"cnf": map[string]any{"x5t#S256": x5t(cert)}})
	return key.sign(t, with(claims, changes), nil)
}

func TestVerifyCertificateBinding(t *testing.T) {
	pki := newTestPKI(t)
	key := newKey(t, "ES256", "k1")
	keys, err := tokend.ParseKeySet(jwks(t, key))
	if err != nil {
		t.Fatal(err)
	}
	verifier, _ := newTestVerifier(t, keys, nil)
	ctx := context.Background()
	token := boundToken(t, key, pki.orders, nil)

	claims, err := verifier.VerifyWithPresenter(ctx, token, presenterOf(t, pki.orders), "orders:read")
	if err != nil || claims.Subject != "alice" || claims.CertificateThumbprint() != x5t(pki.orders) {
		t.Fatalf("bound token with its certificate: %v %v", claims, err)
	}
	// B3: another certificate, or none (a bound token is never a bearer token).
	_, err = verifier.VerifyWithPresenter(ctx, token, presenterOf(t, pki.thief))
	wantReason(t, err, tokendv1.Reason_REASON_CERTIFICATE_MISMATCH)
	_, err = verifier.Verify(ctx, token)
	wantReason(t, err, tokendv1.Reason_REASON_CERTIFICATE_MISMATCH)
	// B4: an unbound token ignores the presenter.
	plain := key.sign(t, validClaims(epoch), nil)
	if _, err := verifier.VerifyWithPresenter(ctx, plain, presenterOf(t, pki.thief)); err != nil {
		t.Fatal(err)
	}
	// B5: a claim failure wins over the binding.
	_, err = verifier.VerifyWithPresenter(ctx, token, presenterOf(t, pki.thief), "payments:charge")
	wantReason(t, err, tokendv1.Reason_REASON_MISSING_SCOPE)
	// B1, B2.
	for name, tc := range map[string]struct {
		cnf  any
		want tokendv1.Reason
	}{
		"cnf a string":        {"abc", tokendv1.Reason_REASON_MALFORMED},
		"thumbprint too long": {map[string]any{"x5t#S256": x5t(pki.orders) + "A"}, tokendv1.Reason_REASON_MALFORMED},
		"thumbprint a number": {map[string]any{"x5t#S256": 1}, tokendv1.Reason_REASON_MALFORMED},
		"empty cnf":           {map[string]any{}, tokendv1.Reason_REASON_CERTIFICATE_MISMATCH},
		"jkt only":            {map[string]any{"jkt": x5t(pki.orders)}, tokendv1.Reason_REASON_CERTIFICATE_MISMATCH},
		"x5t#S256 and jkt": {map[string]any{"x5t#S256": x5t(pki.orders), "jkt": x5t(pki.orders)},
			tokendv1.Reason_REASON_CERTIFICATE_MISMATCH},
	} {
		bad := key.sign(t, with(validClaims(epoch), map[string]any{"cnf": tc.cnf}), nil)
		_, err := verifier.VerifyWithPresenter(ctx, bad, presenterOf(t, pki.orders))
		if ReasonName := tokend.ReasonOf(err); ReasonName != tc.want {
			t.Errorf("%s: got %v, want %s", name, err, tc.want)
		}
	}
}

func TestPresenterFromXFCC(t *testing.T) {
	pki := newTestPKI(t)
	der := pki.orders.Certificate[0]
	sum := sha256.Sum256(der)
	digest := hex.EncodeToString(sum[:])
	thiefSum := sha256.Sum256(pki.thief.Certificate[0])
	thief := hex.EncodeToString(thiefSum[:])
	certPEM := url.PathEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	want := x5t(pki.orders)
	for _, header := range []string{
		"By=spiffe://t.test/ns/a/sa/pay;Hash=" + digest,
		"Hash=" + strings.ToUpper(digest),
		`Cert="` + certPEM + `"`,
		`By=spiffe://x;Hash=` + digest + `;Cert="` + certPEM + `";Subject="/C=US/CN=a,b;c=\"d\"";` +
			"URI=spiffe://t.test/ns/a/sa/orders;DNS=a.test;DNS=b.test",
		// Each proxy appends its element: the last is the one the nearest sidecar wrote.
		"Hash=" + thief + ",By=spiffe://x;Hash=" + digest,
	} {
		got, err := tokend.PresenterFromXFCC(header)
		if err != nil || got.Thumbprint() != want {
			t.Errorf("%.60s: got %q, %v", header, got.Thumbprint(), err)
		}
	}
	for _, header := range []string{"", "By=spiffe://x;URI=spiffe://y"} {
		if got, err := tokend.PresenterFromXFCC(header); err != nil || !got.IsZero() {
			t.Errorf("%q names no certificate: got %q, %v", header, got.Thumbprint(), err)
		}
	}
	for _, header := range []string{
		"Hash=abc", "Hash=" + strings.Repeat("g", 64), `Cert="not%20a%20certificate"`,
		"Hash=" + strings.Repeat("ab", 32) + ";Hash=" + strings.Repeat("cd", 32),
		`Subject="unterminated`, "justtext", "=value", "Hash=" + strings.Repeat("a", 70_000),
		"Hash=" + thief + ";Cert=" + certPEM, // Hash and Cert disagree
	} {
		if _, err := tokend.PresenterFromXFCC(header); !errors.Is(err, tokend.ErrInvalidPresenter) {
			t.Errorf("%.60s: want ErrInvalidPresenter, got %v", header, err)
		}
	}
}

// TestPresenterFromTLSOnAnHTTPSServer: an HTTPS resource server requiring
// client certificates sees the client's certificate in r.TLS.
func TestPresenterFromTLSOnAnHTTPSServer(t *testing.T) {
	pki := newTestPKI(t)
	seen := make(chan tokend.Presenter, 1)
	server := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- tokend.PresenterFromTLS(r.TLS)
	}))
	server.TLS = &tls.Config{Certificates: []tls.Certificate{pki.server}, ClientCAs: pki.pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	server.StartTLS()
	defer server.Close()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pki.pool, Certificates: []tls.Certificate{pki.orders}, MinVersion: tls.VersionTLS12}}}
	response, err := client.Get(server.URL)
	if err != nil {
		t.Fatal(err)
	}
	_ = response.Body.Close()
	if got := <-seen; got.Thumbprint() != x5t(pki.orders) {
		t.Fatalf("got %q, want the client's %q", got.Thumbprint(), x5t(pki.orders))
	}
}

// presenterServer is a gRPC service whose Verify reports the presenter it saw.
type presenterServer struct {
	tokendv1.UnimplementedTokenServiceServer
}

func (presenterServer) Verify(ctx context.Context, _ *tokendv1.VerifyRequest) (*tokendv1.VerifyResponse, error) {
	return &tokendv1.VerifyResponse{Subject: tokend.PresenterFromGRPC(ctx).Thumbprint()}, nil
}

// TestPresenterFromGRPCOnAnMTLSServer: a gRPC server over loopback with mutual
// TLS sees the client's certificate through peer.FromContext.
func TestPresenterFromGRPCOnAnMTLSServer(t *testing.T) {
	pki := newTestPKI(t)
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pki.server},
		ClientCAs: pki.pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})))
	tokendv1.RegisterTokenServiceServer(server, presenterServer{})
	go func() { _ = server.Serve(listener) }()
	defer server.Stop()
	for _, cert := range []tls.Certificate{pki.orders, pki.thief} {
		conn, err := grpc.NewClient(listener.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(
			&tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := tokendv1.NewTokenServiceClient(conn).Verify(ctx, &tokendv1.VerifyRequest{})
		cancel()
		_ = conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetSubject() != x5t(cert) {
			t.Fatalf("server saw %q, want %q", resp.GetSubject(), x5t(cert))
		}
	}
}
