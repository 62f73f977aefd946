package tokend_test

// Attacks on the lenient corners of encoding/base64 and encoding/json, each a
// validly signed token: before the strict layer, the first ones were accepted.

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tokend/tokend/clients/go/tokendv1"
)

// rawToken signs header and payload text exactly as given with an Ed25519 key.
func rawToken(t *testing.T, key testKey, header, payload string) string {
	t.Helper()
	private, ok := key.private.(ed25519.PrivateKey)
	if !ok {
		t.Fatal("rawToken needs an EdDSA key")
	}
	input := b64(header) + "." + b64(payload)
	return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(private, []byte(input)))
}

func b64(text string) string { return base64.RawURLEncoding.EncodeToString([]byte(text)) }

// validPayload is validClaims(epoch) as JSON text, with extra members appended.
func validPayload(extra string) string {
	return fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":["orders"],"exp":%d,"iat":%d,"nbf":%d,"jti":"jti-1"%s}`,
		testIssuer, epoch.Unix()+300, epoch.Unix(), epoch.Unix(), extra)
}

func TestStrictnessAttacks(t *testing.T) {
	key := newKey(t, jose.EdDSA, "ed")
	verifier, _ := newTestVerifier(t, &countingSource{data: jwks(t, key)}, nil)
	header := `{"alg":"EdDSA","kid":"ed","typ":"at+jwt"}`
	good := rawToken(t, key, header, validPayload(""))
	if _, err := verifier.Verify(context.Background(), good); err != nil {
		t.Fatalf("the unaltered token: %v", err)
	}
	dot := strings.LastIndexByte(good, '.')
	cases := []struct {
		name   string
		token  string
		reason tokendv1.Reason
	}{
		// Security fixes: each of these was accepted before (encoding/base64 skips
		// CR and LF even in Strict mode; encoding/json substitutes U+FFFD).
		{"LF inside the signature", good[:dot+10] + "\n" + good[dot+10:], tokendv1.Reason_REASON_MALFORMED},
		{"CR inside the signature", good[:dot+10] + "\r" + good[dot+10:], tokendv1.Reason_REASON_MALFORMED},
		{"CRLF inside the payload segment", strings.Replace(good, ".", ".\r\n", 1), tokendv1.Reason_REASON_MALFORMED},
		{"invalid UTF-8 in the payload", rawToken(t, key, header,
			strings.Replace(validPayload(""), "alice", "al\xffice", 1)), tokendv1.Reason_REASON_MALFORMED},
		{"invalid UTF-8 in the header", rawToken(t, key, `{"alg":"EdDSA","kid":"ed","typ":"at+jwt","x":"\xc3"}`,
			validPayload("")), tokendv1.Reason_REASON_MALFORMED},
		{"lone surrogate in the payload", rawToken(t, key, header,
			validPayload(`,"name":"\ud800"`)), tokendv1.Reason_REASON_MALFORMED},
		// Already refused before; kept so they stay refused.
		{"BOM before the payload", rawToken(t, key, header, "\ufeff"+validPayload("")), tokendv1.Reason_REASON_MALFORMED},
		{"duplicate nested member", rawToken(t, key, header,
			validPayload(`,"cnf":{"a":1,"a":2}`)), tokendv1.Reason_REASON_MALFORMED},
		{"duplicate header alg", rawToken(t, key, `{"alg":"EdDSA","alg":"none","kid":"ed","typ":"at+jwt"}`,
			validPayload("")), tokendv1.Reason_REASON_MALFORMED},
		{"exp null", rawToken(t, key, header, strings.Replace(validPayload(""),
			fmt.Sprint(epoch.Unix()+300), "null", 1)), tokendv1.Reason_REASON_MALFORMED},
		{"exp true", rawToken(t, key, header, strings.Replace(validPayload(""),
			fmt.Sprint(epoch.Unix()+300), "true", 1)), tokendv1.Reason_REASON_MALFORMED},
		{"integer of 65 digits", rawToken(t, key, header,
			validPayload(`,"n":`+strings.Repeat("9", 65))), tokendv1.Reason_REASON_MALFORMED},
		{"number overflowing a double", rawToken(t, key, header,
			validPayload(`,"n":1e999`)), tokendv1.Reason_REASON_MALFORMED},
		{"trailing data after the payload", rawToken(t, key, header, validPayload("")+"{}"),
			tokendv1.Reason_REASON_MALFORMED},
		{"two more signature characters", good + "AA", tokendv1.Reason_REASON_BAD_SIGNATURE},
		{"EdDSA signature one byte longer", extendSignature(t, good, 1), tokendv1.Reason_REASON_BAD_SIGNATURE},
		{"EdDSA signature one byte shorter", extendSignature(t, good, -1), tokendv1.Reason_REASON_BAD_SIGNATURE},
		{"padding on the signature", good + "=", tokendv1.Reason_REASON_MALFORMED},
		{"standard alphabet +", good[:dot+3] + "+" + good[dot+4:], tokendv1.Reason_REASON_MALFORMED},
		{"standard alphabet /", good[:dot+3] + "/" + good[dot+4:], tokendv1.Reason_REASON_MALFORMED},
		{"space after the token", good + " ", tokendv1.Reason_REASON_MALFORMED},
		{"zero-width space in the signature", good[:dot+5] + "\u200b" + good[dot+5:], tokendv1.Reason_REASON_MALFORMED},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			claims, err := verifier.Verify(context.Background(), c.token)
			if claims != nil {
				t.Fatalf("accepted (sub %q)", claims.Subject)
			}
			wantReason(t, err, c.reason)
		})
	}
}

// extendSignature re-encodes the signature with bytes added (n > 0) or removed.
func extendSignature(t *testing.T, token string, n int) string {
	t.Helper()
	dot := strings.LastIndexByte(token, '.')
	signature, err := base64.RawURLEncoding.DecodeString(token[dot+1:])
	if err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		signature = append(signature, make([]byte, n)...)
	} else {
		signature = signature[:len(signature)+n]
	}
	return token[:dot+1] + base64.RawURLEncoding.EncodeToString(signature)
}

func TestNonCanonicalTrailingBitsAreMalformed(t *testing.T) {
	key := newKey(t, jose.EdDSA, "ed")
	verifier, _ := newTestVerifier(t, &countingSource{data: jwks(t, key)}, nil)
	good := rawToken(t, key, `{"alg":"EdDSA","kid":"ed","typ":"at+jwt"}`, validPayload(""))
	// A 64-byte signature is 86 characters: the last one carries 2 unused bits.
	last := good[len(good)-1]
	alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	index := strings.IndexByte(alphabet, last)
	sibling := good[:len(good)-1] + string(alphabet[index|1])
	if sibling == good {
		sibling = good[:len(good)-1] + string(alphabet[index|2])
	}
	_, err := verifier.Verify(context.Background(), sibling)
	wantReason(t, err, tokendv1.Reason_REASON_MALFORMED)
}
