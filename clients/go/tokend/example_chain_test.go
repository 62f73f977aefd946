package tokend_test

import (
	"context"
	"log"
	"net/http"
	"strings"

	"github.com/tokend/tokend/clients/go/tokend"
	"github.com/tokend/tokend/clients/go/tokendv1"
)

// A service (orders) holding alice's token exchanges it for a token for the
// next service (payments) on her behalf (RFC 8693): same subject, narrower
// scopes, orders recorded as the actor. Binding it to orders' own client
// certificate makes a copy useless to anyone else (RFC 8705).
func Example_exchange() {
	ctx := context.Background()
	conn, err := tokend.DialMTLS(ctx, "tokend.internal:8443", "ca.pem", "orders.pem", "orders-key.pem")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := tokendv1.NewTokenServiceClient(conn)
	aliceToken := "the token orders received"
	exchanged, err := client.Exchange(ctx, &tokendv1.ExchangeRequest{
		SubjectToken: aliceToken,
		Audience:     []string{"payments"},
		Scopes:       []string{"payments:charge"},
		Binding:      tokend.CallerCertificateBinding(),
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = exchanged.GetAccessToken() // present it to payments over mTLS with orders.pem
}

// payments, an HTTPS server requiring client certificates, verifies locally:
// the certificate that presents a bound token must be the one it is bound to,
// and only tokens exchanged by a service (delegated, with act) are accepted.
func Example_resourceServer() {
	verifier, err := tokend.NewVerifier(tokend.HTTPJWKS("https://tokend.internal/.well-known/jwks.json", nil),
		tokend.Config{Issuer: "https://tokend.internal", Audience: []string{"payments"},
			Delegation: tokend.DelegationRequired})
	if err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("/charge", func(w http.ResponseWriter, r *http.Request) {
		token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		claims, err := verifier.VerifyWithPresenter(r.Context(), token, tokend.PresenterFromTLS(r.TLS), "payments:charge")
		if err != nil {
			http.Error(w, tokend.ReasonOf(err).String(), http.StatusUnauthorized)
			return
		}
		log.Printf("charge for %s, requested by %s", claims.Subject, claims.Actors()[0])
	})
	// Behind an Envoy sidecar that terminates mTLS (and only then; see
	// PresenterFromXFCC): presenter, err := tokend.PresenterFromXFCC(r.Header.Get("x-forwarded-client-cert"))
	// In a gRPC server: tokend.PresenterFromGRPC(ctx).
}
