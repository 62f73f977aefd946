package tokend_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"strings"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// BenchmarkVerifyES256 is the local verifier's whole path for a typical token;
// BenchmarkRawES256 is the bare signature check it contains, for the ratio.
func BenchmarkVerifyES256(b *testing.B) {
	t := &testing.T{}
	key := newKey(t, jose.ES256, "k1")
	verifier, _ := newTestVerifier(t, &countingSource{data: jwks(t, key)}, nil)
	token := key.sign(t, validClaims(epoch), nil)
	ctx := context.Background()
	if _, err := verifier.Verify(ctx, token); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	defer reportCPU(b)()
	for b.Loop() {
		if _, err := verifier.Verify(ctx, token, "orders:read"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawES256(b *testing.B) {
	t := &testing.T{}
	key := newKey(t, jose.ES256, "k1")
	token := key.sign(t, validClaims(epoch), nil)
	dot := strings.LastIndexByte(token, '.')
	signature, _ := base64.RawURLEncoding.DecodeString(token[dot+1:])
	public := key.private.Public().(*ecdsa.PublicKey)
	r, s := new(big.Int).SetBytes(signature[:32]), new(big.Int).SetBytes(signature[32:])
	b.ResetTimer()
	defer reportCPU(b)()
	for b.Loop() {
		digest := sha256.Sum256([]byte(token[:dot]))
		if !ecdsa.Verify(public, digest[:], r, s) {
			b.Fatal("bad signature")
		}
	}
}

// reportCPU adds cpu-ns/op, the process's CPU time (garbage collection
// included) per operation: on a shared machine ns/op, wall time, mostly
// measures the neighbours. Call as defer reportCPU(b)().
func reportCPU(b *testing.B) func() {
	started := processCPU(b)
	return func() {
		b.ReportMetric(float64((processCPU(b)-started).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func processCPU(b *testing.B) time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		b.Fatal(err)
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}
