// Command verifyratio is the Go row of the benchmark's per-language table
// (bench/verifiers.py): tokend.Verifier's ES256 verify rate divided by raw
// crypto/ecdsa verification of the same tokens with the same key, in one
// process and run (target >= 0.8), so strictness is not paid for with speed.
//
//	go run ./bench/verifyratio --fixture tokens.json --seconds 4 --rounds 7
//
// The fixture (issuer, audience, a one-key JWK Set, a pool of tokens) is
// written by bench/verifiers.py. The loop is bench/verify_ratio.py's: every
// token must pass both sides and a tampered one fail both; then raw and
// verifier take turns in rounds, bounded by time and by count, and each side
// reports its median round, per CPU-second of this process (GC included).
// Prints one JSON line.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tokend/tokend/clients/go/tokend"
)

const maxPerRound = 2_000_000 // verifications per side and round; time ends rounds first

type fixture struct {
	Issuer   string          `json:"issuer"`
	Audience string          `json:"audience"`
	JWKS     json.RawMessage `json:"jwks"`
	Tokens   []string        `json:"tokens"`
}

type rawToken struct {
	signingInput []byte
	der          []byte // built once, outside the timing, like the Python floor
}

type rates struct{ cpu, wall float64 }

func main() {
	path := flag.String("fixture", "", "fixture written by bench/verifiers.py")
	seconds := flag.Float64("seconds", 4, "measured seconds, both sides together")
	rounds := flag.Int("rounds", 7, "rounds per side")
	flag.Parse()
	if err := run(*path, *seconds, *rounds); err != nil {
		fail(err)
	}
}

// fail ends the harness with one line on stderr and no figures on stdout.
func fail(err error) {
	fmt.Fprintln(os.Stderr, "verifyratio:", err)
	os.Exit(1)
}

func run(path string, seconds float64, rounds int) error {
	if seconds <= 0 || seconds > 600 || rounds < 1 || rounds > 1000 {
		return errors.New("--seconds in (0, 600], --rounds in [1, 1000]")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var fx fixture
	if err := json.Unmarshal(data, &fx); err != nil {
		return err
	}
	if len(fx.Tokens) == 0 {
		return errors.New("the fixture has no tokens")
	}
	ctx := context.Background()
	jwks := []byte(fx.JWKS)
	verifier, err := tokend.NewVerifier(tokend.JWKSSourceFunc(func(context.Context) ([]byte, error) {
		return jwks, nil
	}), tokend.Config{Issuer: fx.Issuer, Audience: []string{fx.Audience}})
	if err != nil {
		return err
	}
	key, err := rawKey(jwks)
	if err != nil {
		return err
	}
	raws := make([]rawToken, len(fx.Tokens))
	for i, token := range fx.Tokens {
		if raws[i], err = split(token); err != nil {
			return err
		}
	}
	rawPass := func() int {
		for _, t := range raws {
			digest := sha256.Sum256(t.signingInput)
			if !ecdsa.VerifyASN1(key, digest[:], t.der) {
				fail(errors.New("raw verify refused a fixture token"))
			}
		}
		return len(raws)
	}
	verifierPass := func() int {
		for _, token := range fx.Tokens {
			if _, err := verifier.Verify(ctx, token); err != nil {
				fail(fmt.Errorf("verifier refused a fixture token: %w", err))
			}
		}
		return len(fx.Tokens)
	}
	if err := checkTampered(ctx, verifier, key, fx.Tokens[0]); err != nil {
		return err
	}
	rawPass()
	verifierPass()
	medians := measure([]func() int{rawPass, verifierPass}, seconds, rounds)
	raw, local := medians[0], medians[1]
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"language": "go", "verifier": "tokend.Verifier", "raw": "crypto/ecdsa",
		"tokens": len(fx.Tokens), "rounds": rounds, "checked": true,
		"verifier_per_s": int64(local.cpu + 0.5), "raw_per_s": int64(raw.cpu + 0.5),
		"ratio": round3(local.cpu / raw.cpu), "ratio_wall": round3(local.wall / raw.wall),
	})
}

// measure runs the passes in alternating rounds and returns each one's median.
func measure(passes []func() int, seconds float64, rounds int) []rates {
	perRound := time.Duration(seconds / float64(rounds) / float64(len(passes)) * float64(time.Second))
	warmUp := max(perRound, time.Duration(seconds/5*float64(time.Second)))
	for _, pass := range passes { // warm-up, not counted: a fifth of the time
		oneRound(pass, warmUp)
	}
	samples := make([][]rates, len(passes))
	for r := 0; r < rounds; r++ {
		for k := range passes {
			i := k
			if r%2 == 1 {
				i = len(passes) - 1 - k
			}
			samples[i] = append(samples[i], oneRound(passes[i], perRound))
		}
	}
	out := make([]rates, len(passes))
	for i, values := range samples {
		out[i] = rates{cpu: median(values, func(r rates) float64 { return r.cpu }),
			wall: median(values, func(r rates) float64 { return r.wall })}
	}
	return out
}

// oneRound runs whole passes until the round's time or count is used up.
func oneRound(pass func() int, length time.Duration) rates {
	count := 0
	started, cpu := time.Now(), processCPU()
	for count < maxPerRound {
		count += pass()
		if time.Since(started) >= length {
			break
		}
	}
	return rates{cpu: float64(count) / max((processCPU()-cpu).Seconds(), 1e-9),
		wall: float64(count) / max(time.Since(started).Seconds(), 1e-9)}
}

// processCPU is user+system time of the whole process: the verifier's garbage
// is collected on other threads, and that is part of its cost.
func processCPU() time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		panic(err)
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

func median(values []rates, field func(rates) float64) float64 {
	xs := make([]float64, len(values))
	for i, v := range values {
		xs[i] = field(v)
	}
	slices.Sort(xs)
	if n := len(xs); n%2 == 1 {
		return xs[n/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }

func rawKey(jwks []byte) (*ecdsa.PublicKey, error) {
	var set struct {
		Keys []struct{ X, Y string } `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil || len(set.Keys) != 1 {
		return nil, errors.New("the fixture's JWK Set must hold one EC key")
	}
	x, errX := base64.RawURLEncoding.DecodeString(set.Keys[0].X)
	y, errY := base64.RawURLEncoding.DecodeString(set.Keys[0].Y)
	if errX != nil || errY != nil {
		return nil, errors.New("bad x or y in the fixture's key")
	}
	return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), slices.Concat([]byte{4}, x, y))
}

func split(token string) (rawToken, error) {
	dot := strings.LastIndexByte(token, '.')
	signature, err := base64.RawURLEncoding.DecodeString(token[dot+1:])
	if dot < 0 || err != nil || len(signature) != 64 {
		return rawToken{}, errors.New("a fixture token has no 64-byte ES256 signature")
	}
	der, err := asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(signature[:32]), new(big.Int).SetBytes(signature[32:])})
	return rawToken{signingInput: []byte(token[:dot]), der: der}, err
}

// checkTampered makes sure neither side measures a no-op: one flipped
// signature bit fails both.
func checkTampered(ctx context.Context, v *tokend.Verifier, key *ecdsa.PublicKey, token string) error {
	dot := strings.LastIndexByte(token, '.')
	first := "A"
	if token[dot+1] == 'A' {
		first = "B"
	}
	bad := token[:dot+1] + first + token[dot+2:]
	var invalid *tokend.InvalidTokenError
	if _, err := v.Verify(ctx, bad); !errors.As(err, &invalid) {
		return fmt.Errorf("tokend.Verifier did not refuse a tampered token: %v", err)
	}
	t, err := split(bad)
	if err != nil {
		return err
	}
	digest := sha256.Sum256(t.signingInput)
	if ecdsa.VerifyASN1(key, digest[:], t.der) {
		return errors.New("raw verify accepted a tampered signature")
	}
	return nil
}
