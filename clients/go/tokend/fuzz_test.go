package tokend

// Fuzz targets. `go test` runs each over its seed corpus (a normal test);
// `go test -fuzz=FuzzVerifyJWS ./tokend` explores further. They call the
// layers below the recover() at the API boundary, so a panic is a failure.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var fuzzSeed = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))

func fuzzKeySet(t testing.TB) *KeySet {
	public := fuzzSeed.Public().(ed25519.PublicKey)
	document := `{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":"k","x":"` +
		base64.RawURLEncoding.EncodeToString(public) + `"},` +
		`{"kty":"EC","crv":"P-256","alg":"ES256","kid":"e","x":"NS4Nl1-2J3kv0gbLrCVA_66oVQm9lpwQAJsBueSrQDQ",` +
		`"y":"D7L3tJ_oCrCMy-EmqPzx4KjzDe-lV9j9XzcoU47vmWQ"}]}`
	keys, err := ParseKeySet([]byte(document))
	if err != nil || keys.Len() != 2 {
		t.Fatalf("fuzz key set: %v (%d keys)", err, keys.Len())
	}
	return keys
}

func fuzzToken(header, payload string) string {
	input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(payload))
	return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(fuzzSeed, []byte(input)))
}

func FuzzVerifyJWS(f *testing.F) {
	keys := fuzzKeySet(f)
	good := fuzzToken(`{"alg":"EdDSA","kid":"k","typ":"at+jwt"}`, `{"sub":"a","exp":1e3}`)
	for _, seed := range []string{
		good, good + "\n", strings.Replace(good, ".", ".\r", 1), good + "=", "a.b.c", "..", "",
		fuzzToken(`{"alg":"ES256","kid":"e"}`, `{}`), fuzzToken(`{"alg":"none"}`, `x`),
		fuzzToken(`{"alg":"EdDSA","kid":"k","crit":["b64"],"b64":false}`, `{}`),
	} {
		f.Add(seed)
	}
	allowed := map[string]bool{"EdDSA": true, "ES256": true}
	f.Fuzz(func(t *testing.T, token string) {
		verified, err := verifyJWS(token, keys, allowed)
		if err != nil {
			var invalidErr *InvalidTokenError
			if !errors.As(err, &invalidErr) || verified != nil {
				t.Fatalf("not a verdict: %v", err)
			}
			return
		}
		// Only an exact, canonical token signed by the key can verify.
		header, _, _ := strings.Cut(token, ".")
		if !strings.HasPrefix(token, header+".") || verified.Key == nil {
			t.Fatal("verified without a key")
		}
	})
}

func FuzzStrictJSON(f *testing.F) {
	for _, seed := range []string{
		`{"a":1}`, `{"a":1,"a":2}`, `{"a":{"b":[1,{"c":"\ud83d\ude00"}]}}`, `"\ud800"`, "\xef\xbb\xbf{}",
		`[1e999]`, `{"x":-0.0e-5}`, " {} ", `{"a":"\\ud800"}`, "{\"a\":\"\xff\"}", `1` + strings.Repeat("0", 70),
	} {
		f.Add([]byte(seed))
	}
	for _, seed := range strictJSONCases {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		value, err := parseStrictJSON(data)
		// The hand-written parser accepts exactly what the token walk accepted.
		reference, referenceErr := referenceStrictJSON(data)
		if (err == nil) != (referenceErr == nil) {
			t.Fatalf("strict: %v, reference: %v, on %q", err, referenceErr, data)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(value, reference) {
			t.Fatalf("strict and reference differ on %q: %#v, %#v", data, value, reference)
		}
		// What the strict parser accepts, encoding/json reads the same way.
		var plain any
		decoder := json.NewDecoder(bytes.NewReader(data))
		decoder.UseNumber()
		if decoder.Decode(&plain) != nil {
			t.Fatalf("strict accepted what encoding/json refuses: %q", data)
		}
		if !reflect.DeepEqual(normalize(value), normalize(plain)) {
			t.Fatalf("strict and encoding/json differ on %q", data)
		}
	})
}

func normalize(value any) any {
	switch v := value.(type) {
	case map[string]any:
		out := map[string]any{}
		for name, item := range v {
			out[name] = normalize(item)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, item := range v {
			out[i] = normalize(item)
		}
		return out
	}
	return value
}

func FuzzBase64URL(f *testing.F) {
	for _, seed := range []string{"", "A", "AA", "AB", "AAA", "AAB", "AAAA", "a-_b", "ab==", "a\nb", "a+/b"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		decoded, err := decodeB64URL(text)
		if err != nil {
			return
		}
		// Exactly one accepted encoding per byte string: the canonical one.
		if again := base64.RawURLEncoding.EncodeToString(decoded); again != text {
			t.Fatalf("accepted %q, canonical form is %q", text, again)
		}
	})
}

func FuzzClaims(f *testing.F) {
	for _, seed := range []string{
		`{"iss":"i","sub":"s","aud":"a","exp":2e9,"iat":1.5,"nbf":-1,"jti":"j","scope":"x y"}`,
		`{"iss":"i","sub":"s","aud":["a","b"],"exp":1` + strings.Repeat("0", 60) + `,"iat":1e308,"jti":"j"}`,
		`{"exp":null}`, `{"aud":[]}`, `{"exp":"1"}`, `[]`, `{"iat":-1e308,"exp":1e308}`,
	} {
		f.Add([]byte(seed))
	}
	verifier := &Verifier{issuer: "i", audience: map[string]bool{"a": true}, leeway: instantOfDuration(30e9),
		requiredClaims: []string{"sub"}}
	limit := instantOfDuration(3600e9)
	verifier.maxLifetime = &limit
	now := instantOfNumber("1767225600")
	f.Fuzz(func(t *testing.T, payload []byte) {
		claims, raw, err := parseClaims(payload)
		if err == nil {
			err = verifier.checkClaims(claims, raw, now, []string{"x"})
		}
		var invalidErr *InvalidTokenError
		if err != nil && !errors.As(err, &invalidErr) {
			t.Fatalf("not a verdict: %v", err)
		}
		if err == nil && (claims.Subject == "" || claims.Raw == nil) {
			t.Fatal("accepted claims without their subject")
		}
	})
}

// strictJSONCases are corners of RFC 8259 and of the strict rules, in both
// directions; the parser must agree with the reference on each.
var strictJSONCases = []string{
	`{}`, `[]`, ` { } `, "\t[\r\n]\n", `{"a":[]}`, `{"":0}`, `{"a":1,"b":{"a":2}}`, `[{"a":1},{"a":1}]`,
	`{"a":1,"\u0061":2}`, `{"a\u0000":1,"a":2}`, `{"\/":1,"/":2}`, `{"é":1,"\u00e9":2}`,
	`0`, `-0`, `01`, `-`, `1.`, `.5`, `1e`, `1e+`, `1E-7`, `-1.5e+300`, `1e309`, `-1e309`, `1e-400`, `+1`,
	`0x10`, `1_0`, `NaN`, `Infinity`, `-Infinity`, `1` + strings.Repeat("0", 63), `1` + strings.Repeat("0", 64),
	`-1` + strings.Repeat("0", 63), `1.` + strings.Repeat("0", 80), `true`, `false`, `null`, `tru`, `nul`, `True`,
	`truex`, `[true false]`, `[1,]`, `{"a":1,}`, `[,1]`, `{,}`, `{"a"}`, `{"a":}`, `{"a" 1}`, `{1:2}`, `{'a':1}`,
	`"a`, `"\"`, `"\\"`, `"\/"`, `"\b\f\n\r\t"`, `"\x"`, `"\'"`, `"\u00"`, `"\u00zz"`, `"\U0041"`, `"\u0041"`,
	`"\uD83D\uDE00"`, `"\ud83d\ude00"`, `"\uD83D"`, `"\uDE00"`, `"\uDE00\uD83D"`, `"\uD83D\uD83D"`,
	`"\uD83Dx"`, `"\uD83D\n"`, `"\uD83D\u0041"`, `"\uFFFF"`, `"\uFEFF"`, "\"\x01\"", "\"\x7f\"", "\"\t\"",
	"\xef\xbb\xbf{}", " \xef\xbb\xbf{}", "\"\xed\xa0\x80\"", "\"\xc3\xa9\"", "\"\xf0\x9f\x98\x80\"", "\"\xc3\"",
	`{} {}`, `{}x`, `[] `, "{}\x00", "\x00", ``, ` `, `]`, `}`, `[`, `{`, `[[[]]]`,
	strings.Repeat("[", 64) + strings.Repeat("]", 64), strings.Repeat("[", 65) + strings.Repeat("]", 65),
	strings.Repeat(`{"a":`, 64) + "1" + strings.Repeat("}", 64), strings.Repeat(`{"a":`, 65) + "1" + strings.Repeat("}", 65),
	"\u2028", `"` + "\u2028" + `"`, "[1,\v2]", "[1,\f2]", "[1,\u00a02]",
}

func TestStrictJSONAgreesWithReference(t *testing.T) {
	for _, text := range strictJSONCases {
		value, err := parseStrictJSON([]byte(text))
		reference, referenceErr := referenceStrictJSON([]byte(text))
		if (err == nil) != (referenceErr == nil) || !reflect.DeepEqual(value, reference) {
			t.Errorf("%q: strict (%#v, %v), reference (%#v, %v)", text, value, err, reference, referenceErr)
		}
	}
}

func TestStrictJSONRefusesWhatItMust(t *testing.T) {
	for _, text := range []string{
		`{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"x":{"a":1,"a":1}}`, `"\uD83D"`, `"\uDE00"`, "\xef\xbb\xbf{}",
		"\"\xff\"", `1e309`, `1` + strings.Repeat("0", 64), strings.Repeat("[", 65) + strings.Repeat("]", 65),
		`{} {}`, `01`, "\"\x01\"",
	} {
		if _, err := parseStrictJSON([]byte(text)); err == nil {
			t.Errorf("accepted %q", text)
		}
	}
	value, err := parseStrictJSON([]byte(`{"a":"\ud83d\ude00\u00e9\/","b":[1.5,-0,true,null]}`))
	want := map[string]any{"a": "\U0001F600é/", "b": []any{json.Number("1.5"), json.Number("-0"), true, nil}}
	if err != nil || !reflect.DeepEqual(value, want) {
		t.Fatalf("got %#v, %v", value, err)
	}
}

// FuzzRememberedHeaders: a verifier that remembers the header of a valid
// token gives every token the verdict of one that never saw a token before.
func FuzzRememberedHeaders(f *testing.F) {
	keys := fuzzKeySet(f)
	header := `{"alg":"EdDSA","kid":"k","typ":"at+jwt"}`
	payload := `{"iss":"i","sub":"s","aud":"a","exp":2000,"iat":1000,"jti":"j"}`
	good := fuzzToken(header, payload)
	dot := strings.LastIndexByte(good, '.')
	for _, seed := range []string{
		good, good[:dot+1] + "A" + good[dot+2:], good[:dot], good + ".", good + "=", good[:dot+5] + "\n" + good[dot+5:],
		fuzzToken(header, `{"iss":"i","sub":"s","aud":"a","exp":null,"iat":1000,"jti":"j"}`),
		fuzzToken(header, `{"iss":"i","sub":"s","sub":"t","aud":"a","exp":2000,"iat":1000,"jti":"j"}`),
		fuzzToken(header, `{"iss":"x","sub":"s","aud":"a","exp":2000,"iat":1000,"jti":"j"}`),
		fuzzToken(`{"alg":"EdDSA","kid":"k","typ":"JWT"}`, payload),
	} {
		f.Add(seed)
	}
	clock := func() time.Time { return time.Unix(1500, 0) }
	newVerifier := func() *Verifier {
		v, err := NewVerifier(keys, Config{Issuer: "i", Audience: []string{"a"}, Now: clock})
		if err != nil {
			f.Fatal(err)
		}
		return v
	}
	warm := newVerifier()
	if _, err := warm.Verify(context.Background(), good); err != nil || warm.headers.size(keys) != 1 {
		f.Fatalf("warm-up: %v", err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		warmClaims, warmErr := warm.Verify(context.Background(), token)
		coldClaims, coldErr := newVerifier().Verify(context.Background(), token)
		if ReasonOf(warmErr) != ReasonOf(coldErr) || (warmErr == nil) != (coldErr == nil) {
			t.Fatalf("remembered header: %v, none: %v", warmErr, coldErr)
		}
		if warmErr == nil && !reflect.DeepEqual(warmClaims, coldClaims) {
			t.Fatalf("claims differ: %+v, %+v", warmClaims, coldClaims)
		}
	})
}

// FuzzActAndConfirmation: the act (section A) and cnf (§9) rules give a
// verdict for any claims, and accept only what they describe.
func FuzzActAndConfirmation(f *testing.F) {
	thumbprint := strings.Repeat("A", 43)
	for _, seed := range []string{
		`{"act":{"sub":"a","act":{"sub":"b","iss":1}}}`, `{"act":{"sub":""}}`, `{"act":null}`, `{"act":[]}`,
		`{"act":` + strings.Repeat(`{"sub":"a","act":`, 9) + `{"sub":"z"}` + strings.Repeat("}", 10) + `}`,
		`{"cnf":{"x5t#S256":"` + thumbprint + `"}}`, `{"cnf":{"x5t#S256":"` + thumbprint + `","jkt":"x"}}`,
		`{"cnf":{}}`, `{"cnf":"x"}`, `{"cnf":{"x5t\u0023S256":"` + thumbprint + `"}}`, `{}`,
	} {
		f.Add([]byte(seed), uint8(0), true)
	}
	presenter := Presenter{thumbprint}
	f.Fuzz(func(t *testing.T, payload []byte, delegation uint8, presented bool) {
		claims, raw, err := parseClaims(payload)
		if err != nil {
			return
		}
		mode := Delegation(delegation % 4)
		err = checkDelegation(claims, raw, mode)
		if err == nil {
			given := presenter
			if !presented {
				given = Presenter{}
			}
			err = checkConfirmation(raw, given)
		}
		var invalidErr *InvalidTokenError
		if err != nil && !errors.As(err, &invalidErr) {
			t.Fatalf("not a verdict: %v", err)
		}
		if err != nil {
			return
		}
		_, delegated := raw["act"]
		if delegated != claims.Delegated() || len(claims.actors) > MaxActDepth ||
			(mode == DelegationRequired && !delegated) || (mode == DelegationRefused && delegated) {
			t.Fatalf("accepted act %v as %v under %s", raw["act"], claims.actors, mode)
		}
		if _, bound := raw["cnf"]; bound && !presented {
			t.Fatal("accepted a bound token without a presenter")
		}
	})
}

// FuzzXFCC: any x-forwarded-client-cert header gives a presenter (none or a
// canonical thumbprint) or an ErrInvalidPresenter, never a panic.
func FuzzXFCC(f *testing.F) {
	for _, seed := range []string{
		"", "Hash=" + strings.Repeat("ab", 32), `By=spiffe://x;Subject="a,b;c=\"d\"";URI=spiffe://y`,
		"Hash=" + strings.Repeat("ab", 32) + ",Hash=zz", `Cert="-----BEGIN%20CERTIFICATE-----"`, `a="`, "=", ";;,,",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		presenter, err := PresenterFromXFCC(header)
		if err != nil {
			if !errors.Is(err, ErrInvalidPresenter) || !presenter.IsZero() {
				t.Fatalf("error %v with presenter %q", err, presenter.thumbprint)
			}
			return
		}
		if !presenter.IsZero() && !IsThumbprint(presenter.Thumbprint()) {
			t.Fatalf("not a thumbprint: %q", presenter.Thumbprint())
		}
	})
}
