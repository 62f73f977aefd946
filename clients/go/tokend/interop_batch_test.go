//go:build interop

// Verify batching against the live tokend of interop_test.go (tests/interop/test_go.py,
// test_go_interop): concurrent Verify calls answer exactly as unary ones, and tokend's
// /metrics shows that they went out as fewer VerifyMany RPCs. (A queued call's deadline,
// cancellation and a tokend without VerifyMany are tested in batch_test.go: a real tokend
// cannot be held mid-call or made to lack the method.)

package tokend_test

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/tokend/tokend/clients/go/tokend"
	"github.com/tokend/tokend/clients/go/tokendv1"
)

// dialBatching is another connection to the live tokend with batching as given.
func (tg *target) dialBatching(t *testing.T, ctx context.Context, b tokend.VerifyBatching) tokendv1.TokenServiceClient {
	t.Helper()
	conn, err := tokend.DialMTLS(ctx, tg.env["TOKEND_ADDR"], tg.env["TOKEND_CA_FILE"],
		tg.env["TOKEND_CLIENT_CERT"], tg.env["TOKEND_CLIENT_KEY"], tokend.WithVerifyBatching(b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return tokendv1.NewTokenServiceClient(conn)
}

// rpcCounts reads tokend_rpc_duration_seconds_count for Verify and VerifyMany (all codes)
// from the server's /metrics, next to its JWKS.
func (tg *target) rpcCounts(t *testing.T, ctx context.Context) map[string]int {
	t.Helper()
	url := strings.TrimSuffix(tg.env["TOKEND_JWKS_URL"], "/.well-known/jwks.json") + "/metrics"
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, response.Status)
	}
	counts := map[string]int{}
	lines := bufio.NewScanner(response.Body)
	lines.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for lines.Scan() {
		line := lines.Text()
		if !strings.HasPrefix(line, "tokend_rpc_duration_seconds_count{") {
			continue
		}
		for _, method := range []string{"Verify", "VerifyMany"} {
			if strings.Contains(line, `method="`+method+`"`) {
				value, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
				if err != nil {
					t.Fatalf("metrics line %q: %v", line, err)
				}
				counts[method] += int(value)
			}
		}
	}
	if err := lines.Err(); err != nil {
		t.Fatal(err)
	}
	return counts
}

// verifyKinds are requests of every kind: valid tokens, a revoked one, a wrong audience,
// a tampered token, a malformed one, and two tokend refuses (INVALID_ARGUMENT).
func (tg *target) verifyKinds(t *testing.T, ctx context.Context) []*tokendv1.VerifyRequest {
	t.Helper()
	audience := tg.env["TOKEND_AUDIENCE"]
	var kinds []*tokendv1.VerifyRequest
	for range 3 {
		token := tg.issue(t, ctx, false).GetAccessToken()
		kinds = append(kinds, &tokendv1.VerifyRequest{Token: token, Audience: audience,
			RequiredScopes: []string{"orders:read"}})
	}
	revoked := tg.issue(t, ctx, false)
	if _, err := tg.client.Revoke(ctx, &tokendv1.RevokeRequest{
		Target: &tokendv1.RevokeRequest_Jti{Jti: revoked.GetJti()}, Reason: "go batch interop"}); err != nil {
		t.Fatal(err)
	}
	valid := kinds[0].GetToken()
	return append(kinds,
		&tokendv1.VerifyRequest{Token: revoked.GetAccessToken(), Audience: audience},
		&tokendv1.VerifyRequest{Token: valid, Audience: "interop-someone-else"},
		&tokendv1.VerifyRequest{Token: tamper(t, valid), Audience: audience},
		&tokendv1.VerifyRequest{Token: "a.b.c", Audience: audience},
		&tokendv1.VerifyRequest{Token: valid, Audience: ""},
		&tokendv1.VerifyRequest{Token: valid, Audience: audience, RequiredScopes: []string{"orders read"}},
	)
}

// concurrentVerifies sends n requests cycling through kinds, each from a goroutine of its
// own, and checks each answer against want (the unary answer to its kind).
func concurrentVerifies(t *testing.T, ctx context.Context, client tokendv1.TokenServiceClient,
	kinds []*tokendv1.VerifyRequest, want []verifyAnswer, n int) {
	t.Helper()
	answers := make([]verifyAnswer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			response, err := client.Verify(ctx, kinds[i%len(kinds)])
			answers[i] = verifyAnswer{response, err}
		})
	}
	wg.Wait()
	for i, got := range answers {
		expected := want[i%len(kinds)]
		if expected.err != nil {
			checkSameError(t, got.err, expected.err)
			continue
		}
		if got.err != nil || !proto.Equal(got.response, expected.response) {
			t.Fatalf("request %d (kind %d): %v, %v; unary Verify answered %v", i, i%len(kinds),
				got.response, got.err, expected.response)
		}
	}
}

func TestInteropBatchedVerifiesAnswerAsUnaryOnes(t *testing.T) {
	ctx := interopContext(t)
	tg := dialTarget(t, ctx)
	unary := tg.dialBatching(t, ctx, tokend.VerifyBatching{Disabled: true})
	kinds := tg.verifyKinds(t, ctx)
	want := make([]verifyAnswer, len(kinds))
	for i, request := range kinds {
		response, err := unary.Verify(ctx, request)
		want[i] = verifyAnswer{response, err}
	}
	if want[0].err != nil || !want[0].response.GetValid() || want[3].response.GetReason() != tokendv1.Reason_REASON_REVOKED ||
		tokend.ErrorReason(want[7].err) != "INVALID_AUDIENCE" || tokend.ErrorReason(want[8].err) != "INVALID_REQUIRED_SCOPES" {
		t.Fatalf("unary answers are not the mix this test needs: %v", want)
	}

	const calls = 200
	for _, c := range []struct {
		name   string
		client tokendv1.TokenServiceClient
	}{
		{"defaults", tg.client},
		{"one in flight, batches of 256", tg.dialBatching(t, ctx, tokend.VerifyBatching{MaxInFlight: 1, MaxBatch: 256})},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := tg.rpcCounts(t, ctx)
			concurrentVerifies(t, ctx, c.client, kinds, want, calls)
			after := tg.rpcCounts(t, ctx)
			many, single := after["VerifyMany"]-before["VerifyMany"], after["Verify"]-before["Verify"]
			t.Logf("%d verify calls went out as %d Verify and %d VerifyMany RPCs", calls, single, many)
			if many == 0 || many+single >= calls {
				t.Fatalf("%d Verify and %d VerifyMany RPCs for %d concurrent calls: want VerifyMany, and fewer RPCs",
					single, many, calls)
			}
		})
	}
}

func TestInteropALoneVerifyIsUnaryAndBatchingOffIsOnlyUnary(t *testing.T) {
	ctx := interopContext(t)
	tg := dialTarget(t, ctx)
	request := &tokendv1.VerifyRequest{Token: tg.issue(t, ctx, false).GetAccessToken(), Audience: tg.env["TOKEND_AUDIENCE"]}
	before := tg.rpcCounts(t, ctx)
	if response, err := tg.client.Verify(ctx, request); err != nil || !response.GetValid() {
		t.Fatalf("lone Verify: %v, %v", response, err)
	}
	after := tg.rpcCounts(t, ctx)
	if after["Verify"] != before["Verify"]+1 || after["VerifyMany"] != before["VerifyMany"] {
		t.Fatalf("a lone call: metrics went from %v to %v, want one more Verify", before, after)
	}

	const calls = 50
	off := tg.dialBatching(t, ctx, tokend.VerifyBatching{Disabled: true})
	before = after
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for range calls {
		wg.Go(func() {
			if _, err := off.Verify(ctx, request); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	after = tg.rpcCounts(t, ctx)
	if after["Verify"] != before["Verify"]+calls || after["VerifyMany"] != before["VerifyMany"] {
		t.Fatalf("batching off: metrics went from %v to %v, want %d more Verify and no VerifyMany", before, after, calls)
	}
}

func TestInteropVerifyManyAnswersAsUnaryVerify(t *testing.T) {
	ctx := interopContext(t)
	tg := dialTarget(t, ctx)
	kinds := tg.verifyKinds(t, ctx)
	requests := make([]*tokendv1.VerifyRequest, 300) // two chunks at least
	for i := range requests {
		requests[i] = kinds[i%len(kinds)]
	}
	before := tg.rpcCounts(t, ctx)
	results := tokend.VerifyMany(ctx, tg.client, requests, grpc.WaitForReady(true))
	after := tg.rpcCounts(t, ctx)
	for i, r := range results {
		response, err := tg.client.Verify(ctx, requests[i])
		if err != nil {
			checkSameError(t, r.Err, err)
			continue
		}
		if r.Err != nil || !proto.Equal(r.Response, response) {
			t.Fatalf("result %d: %v, %v; unary Verify answered %v", i, r.Response, r.Err, response)
		}
	}
	if many := after["VerifyMany"] - before["VerifyMany"]; many < 2 || many > 6 || after["Verify"] != before["Verify"] {
		t.Fatalf("300 requests: metrics went from %v to %v, want a few VerifyMany and no Verify", before, after)
	}
}

// BenchmarkInteropVerifyRPC: Verify over RPC from 64 goroutines, unary (batching off) and
// batched (the defaults), for tokens verified per server CPU-second (measure the server's
// CPU around each sub-benchmark; the requests cycle through 32 valid tokens).
func BenchmarkInteropVerifyRPC(b *testing.B) {
	ctx := context.Background()
	env := func(name string) string { return os.Getenv(name) }
	dial := func(batching tokend.VerifyBatching) tokendv1.TokenServiceClient {
		conn, err := tokend.DialMTLS(ctx, env("TOKEND_ADDR"), env("TOKEND_CA_FILE"), env("TOKEND_CLIENT_CERT"),
			env("TOKEND_CLIENT_KEY"), tokend.WithVerifyBatching(batching))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = conn.Close() })
		return tokendv1.NewTokenServiceClient(conn)
	}
	issuer := dial(tokend.VerifyBatching{})
	var requests []*tokendv1.VerifyRequest
	for range 32 {
		issued, err := issuer.Issue(ctx, &tokendv1.IssueRequest{Subject: "go-bench", Audience: []string{env("TOKEND_AUDIENCE")}})
		if err != nil {
			b.Fatal(err)
		}
		requests = append(requests, &tokendv1.VerifyRequest{Token: issued.GetAccessToken(), Audience: env("TOKEND_AUDIENCE")})
	}
	for _, c := range []struct {
		name     string
		batching tokend.VerifyBatching
	}{{"unary", tokend.VerifyBatching{Disabled: true}}, {"batched", tokend.VerifyBatching{}}} {
		b.Run(c.name, func(b *testing.B) {
			client := dial(c.batching)
			var n atomic.Int64
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					request := requests[int(n.Add(1))%len(requests)]
					if response, err := client.Verify(ctx, request); err != nil || !response.GetValid() {
						b.Errorf("Verify: %v, %v", response, err)
						return
					}
				}
			})
		})
	}
}
