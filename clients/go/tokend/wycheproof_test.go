package tokend_test

// Project Wycheproof JOSE vectors through the signature-only layer
// (VerifyCompact), read from ../shared/wycheproof/testvectors_v1 beside the
// repository or $TOKEND_WYCHEPROOF_DIR, never copied into it. Semantics as in
// tests/clients/python/jose/test_wycheproof.py: "valid" must verify and "invalid" must be
// refused, except the deviations in conformance/wycheproof-deviations.json,
// which must be refused; a deviation naming no valid vector fails the run.

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokend/tokend/clients/go/tokend"
)

var wycheproofFiles = []string{"json_web_signature_test.json", "json_web_key_test.json", "json_web_crypto_test.json"}

// expectedJWESkips: json_web_crypto_test.json holds JWE groups not implemented here.
const expectedJWESkips = 34

var wycheproofAlgorithms = []string{"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"}

// reasonsByFlag: vectors with these flags must fail at a specific layer.
var reasonsByFlag = map[string][]string{
	"ModifiedPadding":   {"BAD_SIGNATURE"},
	"ModifiedSignature": {"BAD_SIGNATURE"},
	"WrongPrimitive":    {"BAD_SIGNATURE", "DISALLOWED_ALGORITHM"},
	"AlgIsNone":         {"DISALLOWED_ALGORITHM"},
	"JsonSerialization": {"MALFORMED"},
}

var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "k", "oth"}

type wycheproofVector struct {
	file    string
	tcID    int
	comment string
	flags   []string
	result  string
	jws     string
	jwks    []byte
}

type wycheproofFile struct {
	NumberOfTests int `json:"numberOfTests"`
	TestGroups    []struct {
		Comment string          `json:"comment"`
		Public  json.RawMessage `json:"public"`
		Private json.RawMessage `json:"private"`
		Tests   []struct {
			TcID    int             `json:"tcId"`
			Comment string          `json:"comment"`
			Flags   []string        `json:"flags"`
			Result  string          `json:"result"`
			JWS     json.RawMessage `json:"jws"`
		} `json:"tests"`
	} `json:"testGroups"`
}

func wycheproofDir(t *testing.T) string {
	if dir := os.Getenv("TOKEND_WYCHEPROOF_DIR"); dir != "" {
		return dir
	}
	return filepath.Join(repoRoot(t), "..", "shared", "wycheproof", "testvectors_v1")
}

// groupKeySet is the group's public key set, derived from "private" when the
// group has no "public" (private members dropped).
func groupKeySet(t *testing.T, public, private json.RawMessage) []byte {
	raw := public
	if len(raw) == 0 {
		raw = private
	}
	var members map[string]any
	if err := json.Unmarshal(raw, &members); err != nil {
		t.Fatal(err)
	}
	keys, isSet := members["keys"].([]any)
	if !isSet {
		keys = []any{members}
	}
	if len(public) == 0 {
		for _, key := range keys {
			for _, name := range privateJWKMembers {
				delete(key.(map[string]any), name)
			}
		}
	}
	data, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func loadWycheproof(t *testing.T) (vectors []wycheproofVector, total, jweSkipped int) {
	dir := wycheproofDir(t)
	for _, name := range wycheproofFiles {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("Wycheproof vectors missing: %v", err)
		}
		var file wycheproofFile
		if err := json.Unmarshal(data, &file); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		total += file.NumberOfTests
		for _, group := range file.TestGroups {
			if name == "json_web_crypto_test.json" && !strings.HasPrefix(group.Comment, "jws_") {
				jweSkipped += len(group.Tests)
				continue
			}
			keys := groupKeySet(t, group.Public, group.Private)
			for _, test := range group.Tests {
				// A JSON-serialized JWS (an object) is handed over as its JSON text.
				jws := string(test.JWS)
				var text string
				if json.Unmarshal(test.JWS, &text) == nil {
					jws = text
				}
				vectors = append(vectors, wycheproofVector{file: name, tcID: test.TcID, comment: test.Comment,
					flags: test.Flags, result: test.Result, jws: jws, jwks: keys})
			}
		}
	}
	return vectors, total, jweSkipped
}

type deviationKey struct {
	file string
	tcID int
}

func loadDeviations(t *testing.T) map[deviationKey]string {
	data, err := os.ReadFile(filepath.Join(conformanceDir(t), "wycheproof-deviations.json"))
	if err != nil {
		t.Fatalf("deviations: %v", err)
	}
	var document struct {
		Deviations []struct {
			File   string `json:"file"`
			TcID   int    `json:"tcId"`
			Reason string `json:"reason"`
		} `json:"deviations"`
	}
	if err := json.Unmarshal(data, &document); err != nil {
		t.Fatal(err)
	}
	deviations := map[deviationKey]string{}
	for _, d := range document.Deviations {
		deviations[deviationKey{d.File, d.TcID}] = d.Reason
	}
	return deviations
}

// wycheproofOutcome is "accepted", or the reason the vector was refused.
func wycheproofOutcome(v wycheproofVector) string {
	keys, err := tokend.ParseKeySet(v.jwks)
	if err != nil {
		return "key set refused: " + err.Error()
	}
	if _, err := tokend.VerifyCompact(v.jws, keys, wycheproofAlgorithms); err != nil {
		var invalidErr *tokend.InvalidTokenError
		if !errors.As(err, &invalidErr) {
			return "not an invalid-token error: " + err.Error()
		}
		return strings.TrimPrefix(invalidErr.Reason.String(), "REASON_") + ": " + invalidErr.Detail
	}
	return "accepted"
}

func TestWycheproof(t *testing.T) {
	vectors, total, jweSkipped := loadWycheproof(t)
	deviations := loadDeviations(t)
	if jweSkipped != expectedJWESkips || len(vectors) != total-jweSkipped || len(vectors) == 0 {
		t.Fatalf("collected %d vectors of %d (JWE skipped %d, want %d)", len(vectors), total, jweSkipped, expectedJWESkips)
	}
	valid := map[deviationKey]bool{}
	failed := 0
	for _, v := range vectors {
		key := deviationKey{v.file, v.tcID}
		if v.result == "valid" {
			valid[key] = true
		}
		if !t.Run(strings.TrimSuffix(v.file, "_test.json")+"/"+itoa(v.tcID), func(t *testing.T) {
			checkWycheproofVector(t, v, deviations[key])
		}) {
			failed++
		}
	}
	for key := range deviations {
		if !valid[key] {
			t.Errorf("stale deviation: %s tcId %d names no valid vector", key.file, key.tcID)
		}
	}
	t.Logf("wycheproof: %d vectors, %d passed, %d failed (%d deviations)", len(vectors), len(vectors)-failed, failed, len(deviations))
}

func checkWycheproofVector(t *testing.T, v wycheproofVector, deviation string) {
	result := wycheproofOutcome(v)
	if v.result == "valid" && deviation == "" {
		if result != "accepted" {
			t.Errorf("%s: %s", v.comment, result)
		}
		return
	}
	// "invalid" vectors and the documented deviations must both be refused.
	if result == "accepted" {
		t.Fatalf("%s (%s) accepted", v.comment, deviation+v.result)
	}
	if strings.HasPrefix(result, "not an invalid-token error") {
		t.Fatalf("%s: %s", v.comment, result)
	}
	for _, flag := range v.flags {
		expected, ok := reasonsByFlag[flag]
		if ok && !contains(expected, strings.SplitN(result, ":", 2)[0]) {
			t.Errorf("%s: flag %s wants %v, got %s", v.comment, flag, expected, result)
		}
	}
}

func contains(values []string, value string) bool {
	for _, v := range values {
		if v == value {
			return true
		}
	}
	return false
}

func itoa(n int) string {
	data, _ := json.Marshal(n)
	return string(data)
}
