package tokend_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tokend/tokend/clients/go/tokend"
)

func TestHTTPJWKS(t *testing.T) {
	key := newKey(t, jose.EdDSA, "ed")
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/jwks.json":
			_, _ = w.Write(jwks(t, key))
		case "/huge":
			_, _ = w.Write([]byte(`{"keys":[` + strings.Repeat(" ", 1<<20) + `]}`))
		default:
			http.Error(w, "nope", http.StatusInternalServerError)
		}
	}))
	defer server.Close()

	verifier, _ := newTestVerifier(t, tokend.HTTPJWKS(server.URL+"/.well-known/jwks.json", nil), nil)
	if _, err := verifier.Verify(context.Background(), key.sign(t, validClaims(epoch), nil)); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/broken", "/huge"} {
		_, err := tokend.HTTPJWKS(server.URL+path, server.Client()).FetchJWKS(context.Background())
		if err == nil {
			t.Errorf("%s: fetched", path)
		}
	}
}

func TestJWKSSourceErrorsWrapCause(t *testing.T) {
	cause := errors.New("boom")
	source := tokend.JWKSSourceFunc(func(context.Context) ([]byte, error) { return nil, cause })
	verifier, _ := newTestVerifier(t, source, nil)
	err := verifier.Refresh(context.Background())
	if !errors.Is(err, tokend.ErrKeysUnavailable) || !errors.Is(err, cause) {
		t.Fatalf("got %v", err)
	}
}
