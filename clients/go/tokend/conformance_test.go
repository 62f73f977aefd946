package tokend_test

// The shared verifier conformance vectors (conformance/vectors/*.json and
// conformance/vectors-next/*.json with their presenter_x5t_s256 and
// options.delegation fields; format in conformance/README.md): every case
// must give the Python reference's verdict, exactly. Missing files fail the
// run; they are never skipped.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/clients/go/tokend"
	"github.com/tokend/tokend/clients/go/tokendv1"
)

type conformanceFile struct {
	Description string            `json:"description"`
	Cases       []conformanceCase `json:"cases"`
}

type conformanceCase struct {
	ID             string             `json:"id"`
	Rule           string             `json:"rule"`
	JWKS           json.RawMessage    `json:"jwks"`
	Options        conformanceOptions `json:"options"`
	Now            json.Number        `json:"now"`
	Token          *string            `json:"token"`
	TokenB64       *string            `json:"token_b64"`
	RequiredScopes []string           `json:"required_scopes"`
	// Presenter is the x5t#S256 of the presenting certificate (vectors-next).
	Presenter *string `json:"presenter_x5t_s256"`
	Expect    struct {
		Valid  bool   `json:"valid"`
		Sub    string `json:"sub"`
		Reason string `json:"reason"`
	} `json:"expect"`
}

type conformanceOptions struct {
	Issuer         string       `json:"issuer"`
	Audience       []string     `json:"audience"`
	Algorithms     []string     `json:"algorithms"`
	Leeway         json.Number  `json:"leeway"`
	MaxLifetime    *json.Number `json:"max_lifetime"`
	MaxTokenBytes  int          `json:"max_token_bytes"`
	RequiredClaims []string     `json:"required_claims"`
	RequiredTyp    string       `json:"required_typ"`
	// Delegation is "any", "required" or "refused" (vectors-next/act.json).
	Delegation *string `json:"delegation"`
}

// repoRoot is two levels above this package's module (clients/go/tokend).
func repoRoot(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

func conformanceDir(t testing.TB) string {
	if dir := os.Getenv("TOKEND_CONFORMANCE_DIR"); dir != "" {
		return dir
	}
	return filepath.Join(repoRoot(t), "conformance")
}

// conformanceDirs are read in full; each must hold vector files.
var conformanceDirs = []string{"vectors", "vectors-next"}

func loadConformance(t testing.TB) map[string][]conformanceCase {
	t.Helper()
	var paths []string
	for _, dir := range conformanceDirs {
		pattern := filepath.Join(conformanceDir(t), dir, "*.json")
		found, err := filepath.Glob(pattern)
		if err != nil || len(found) == 0 {
			t.Fatalf("no conformance vectors at %s", pattern)
		}
		paths = append(paths, found...)
	}
	files := map[string][]conformanceCase{}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var file conformanceFile
		decoder := json.NewDecoder(strings.NewReader(string(data)))
		decoder.UseNumber()
		if err := decoder.Decode(&file); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		files[filepath.Base(filepath.Dir(path))+"/"+filepath.Base(path)] = file.Cases
	}
	return files
}

func seconds(t testing.TB, number json.Number) time.Duration {
	value, err := number.Float64()
	if err != nil {
		t.Fatalf("not a number: %q", number)
	}
	return time.Duration(value * float64(time.Second))
}

func unixTime(t testing.TB, number json.Number) time.Time {
	if whole, err := number.Int64(); err == nil {
		return time.Unix(whole, 0)
	}
	value, err := number.Float64()
	if err != nil {
		t.Fatalf("now is not a number: %q", number)
	}
	whole, fraction := math.Modf(value)
	return time.Unix(int64(whole), int64(fraction*1e9))
}

func (c conformanceCase) token(t testing.TB) string {
	if c.TokenB64 != nil {
		raw, err := base64.StdEncoding.DecodeString(*c.TokenB64)
		if err != nil {
			t.Fatalf("token_b64: %v", err)
		}
		return string(raw)
	}
	if c.Token == nil {
		t.Fatal("case has neither token nor token_b64")
	}
	return *c.Token
}

// verifier builds the case's verifier with its clock fixed at now.
func (c conformanceCase) verifier(t testing.TB) (*tokend.Verifier, error) {
	keys, err := tokend.ParseKeySet(c.JWKS)
	if err != nil {
		return nil, fmt.Errorf("key set refused: %w", err)
	}
	now := unixTime(t, c.Now)
	o := c.Options
	config := tokend.Config{
		Issuer: o.Issuer, Audience: o.Audience, Algorithms: o.Algorithms,
		MaxTokenBytes: o.MaxTokenBytes, RequiredClaims: o.RequiredClaims, RequiredType: o.RequiredTyp,
	}
	if config.RequiredClaims == nil {
		config.RequiredClaims = []string{}
	}
	if o.MaxLifetime != nil {
		config.MaxLifetime = seconds(t, *o.MaxLifetime)
	}
	return tokend.NewVerifier(keys, config, tokend.WithLeeway(seconds(t, o.Leeway)),
		tokend.WithClock(func() time.Time { return now }))
}

// outcome is "valid <sub>", or the reason without the REASON_ prefix.
func (c conformanceCase) outcome(t testing.TB) string {
	verifier, err := c.verifier(t)
	if err != nil {
		return "verifier refused the options: " + err.Error()
	}
	return verdict(verifier, c.token(t), c.verifyOptions(t))
}

// verifyOptions are the per-call inputs: scopes, the presenter, delegation.
func (c conformanceCase) verifyOptions(t testing.TB) tokend.VerifyOptions {
	options := tokend.VerifyOptions{Scopes: c.RequiredScopes}
	if c.Presenter != nil {
		presenter, err := tokend.PresenterOfThumbprint(*c.Presenter)
		if err != nil {
			t.Fatalf("%s: presenter_x5t_s256: %v", c.ID, err)
		}
		options.Presenter = presenter
	}
	if c.Options.Delegation != nil {
		delegation, err := tokend.ParseDelegation(*c.Options.Delegation)
		if err != nil {
			t.Fatalf("%s: %v", c.ID, err)
		}
		options.Delegation = delegation
	}
	return options
}

func verdict(verifier *tokend.Verifier, token string, options tokend.VerifyOptions) string {
	claims, err := verifier.VerifyWithOptions(context.Background(), token, options)
	if err == nil {
		return "valid " + claims.Subject
	}
	var invalidErr *tokend.InvalidTokenError
	if !errors.As(err, &invalidErr) || invalidErr.Reason == tokendv1.Reason_REASON_UNSPECIFIED {
		return "not an invalid-token error: " + err.Error()
	}
	return strings.TrimPrefix(invalidErr.Reason.String(), "REASON_")
}

func TestConformance(t *testing.T) {
	files := loadConformance(t)
	total, failed := 0, 0
	ids := map[string]bool{}
	for name, cases := range files {
		for _, c := range cases {
			total++
			if ids[c.ID] {
				t.Errorf("duplicate case id %s", c.ID)
			}
			ids[c.ID] = true
			want := c.Expect.Reason
			if c.Expect.Valid {
				want = "valid " + c.Expect.Sub
			}
			t.Run(strings.TrimSuffix(name, ".json")+"/"+c.ID, func(t *testing.T) {
				if got := c.outcome(t); got != want {
					failed++
					t.Errorf("%s\nrule: %s\ngot %s, want %s", c.ID, c.Rule, got, want)
				}
			})
		}
	}
	if total == 0 {
		t.Fatal("ran zero conformance cases")
	}
	t.Logf("conformance: %d cases, %d passed, %d failed", total, total-failed, failed)
}

// TestConformanceWithRememberedHeaders runs the vectors again through one
// verifier per key set, options and clock, twice over, so that most tokens
// meet a verifier that already accepted their header (tampered signatures,
// payloads and claims after the valid token they were made from): remembering
// headers must not change a single verdict.
func TestConformanceWithRememberedHeaders(t *testing.T) {
	type group struct {
		verifier *tokend.Verifier
		cases    []conformanceCase
	}
	groups := map[string]*group{}
	var order []string
	for _, cases := range loadConformance(t) {
		for _, c := range cases {
			options, _ := json.Marshal(c.Options)
			key := string(c.JWKS) + "\x00" + string(options) + "\x00" + c.Now.String()
			if groups[key] == nil {
				verifier, err := c.verifier(t)
				if err != nil {
					continue // the key set or options are refused: nothing to remember
				}
				groups[key] = &group{verifier: verifier}
				order = append(order, key)
			}
			groups[key].cases = append(groups[key].cases, c)
		}
	}
	checked := 0
	for round := 0; round < 2; round++ {
		for _, key := range order {
			g := groups[key]
			for _, c := range g.cases {
				want := c.Expect.Reason
				if c.Expect.Valid {
					want = "valid " + c.Expect.Sub
				}
				if got := verdict(g.verifier, c.token(t), c.verifyOptions(t)); got != want {
					t.Errorf("round %d, %s\nrule: %s\ngot %s, want %s", round, c.ID, c.Rule, got, want)
				}
				checked++
			}
		}
	}
	remembered := 0
	for _, g := range groups {
		remembered += len(tokend.RememberedHeaders(g.verifier))
	}
	if remembered == 0 {
		t.Fatal("no header was remembered: the test exercised nothing")
	}
	t.Logf("%d verdicts over %d groups, %d headers remembered", checked, len(groups), remembered)
}
