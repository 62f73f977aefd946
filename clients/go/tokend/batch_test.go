package tokend_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tokend/tokend/clients/go/tokend"
	"github.com/tokend/tokend/clients/go/tokendv1"
)

// verifyServer is a real gRPC server on loopback answering Verify and VerifyMany from
// the request alone (tokend itself cannot be held mid-call or made to lack VerifyMany):
// token "revoked..." is refused, an empty audience is INVALID_ARGUMENT with tokend's
// details, anything else is valid with sub = the token. While held, every call reports
// its method on entered and waits for a token on release.
type verifyServer struct {
	tokendv1.UnimplementedTokenServiceServer
	mu        sync.Mutex
	calls     map[string]int
	sizes     []int // of each VerifyMany
	active    int
	maxActive int
	manyErrs  []error // VerifyMany's next whole-call errors
	held      bool
	entered   chan string
	release   chan struct{}
}

func (s *verifyServer) enter(method string) {
	s.mu.Lock()
	s.calls[method]++
	s.active++
	s.maxActive = max(s.maxActive, s.active)
	held := s.held
	s.mu.Unlock()
	if held {
		s.entered <- method
		<-s.release
	}
}

// stopHolding lets later calls through at once and releases the held ones that entered.
func (s *verifyServer) stopHolding(entered int) {
	s.mu.Lock()
	s.held = false
	s.mu.Unlock()
	for range entered {
		s.release <- struct{}{}
	}
}

func (s *verifyServer) leave() {
	s.mu.Lock()
	s.active--
	s.mu.Unlock()
}

func (s *verifyServer) count(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

func answer(r *tokendv1.VerifyRequest) (*tokendv1.VerifyResponse, *tokendv1.InvalidRequest) {
	if r.GetAudience() == "" {
		return nil, &tokendv1.InvalidRequest{Field: "audience", Description: "audience is required", Reason: "INVALID_AUDIENCE"}
	}
	if strings.HasPrefix(r.GetToken(), "revoked") {
		return &tokendv1.VerifyResponse{Reason: tokendv1.Reason_REASON_REVOKED}, nil
	}
	claims, _ := structpb.NewStruct(map[string]any{"sub": r.GetToken(), "aud": r.GetAudience()})
	return &tokendv1.VerifyResponse{Valid: true, Subject: r.GetToken(), Claims: claims}, nil
}

// unaryInvalid is what tokend answers a unary Verify it refuses (server: api/errors.py).
func unaryInvalid(invalid *tokendv1.InvalidRequest) error {
	st, _ := status.New(codes.InvalidArgument, invalid.GetDescription()).WithDetails(
		&errdetails.ErrorInfo{Reason: "INVALID_AUDIENCE", Domain: tokend.ErrorDomain,
			Metadata: map[string]string{"method": "Verify", "field": invalid.GetField()}},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: invalid.GetField(), Description: invalid.GetDescription()}}})
	return st.Err()
}

func (s *verifyServer) Verify(_ context.Context, r *tokendv1.VerifyRequest) (*tokendv1.VerifyResponse, error) {
	s.enter("Verify")
	defer s.leave()
	response, invalid := answer(r)
	if invalid != nil {
		return nil, unaryInvalid(invalid)
	}
	return response, nil
}

func (s *verifyServer) VerifyMany(_ context.Context, r *tokendv1.VerifyManyRequest) (*tokendv1.VerifyManyResponse, error) {
	s.enter("VerifyMany")
	defer s.leave()
	s.mu.Lock()
	s.sizes = append(s.sizes, len(r.GetRequests()))
	var err error
	if len(s.manyErrs) > 0 {
		err, s.manyErrs = s.manyErrs[0], s.manyErrs[1:]
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	out := &tokendv1.VerifyManyResponse{}
	for _, item := range r.GetRequests() {
		response, invalid := answer(item)
		if invalid != nil {
			out.Results = append(out.Results, &tokendv1.VerifyManyResult{
				Outcome: &tokendv1.VerifyManyResult_Invalid{Invalid: invalid}})
		} else {
			out.Results = append(out.Results, &tokendv1.VerifyManyResult{
				Outcome: &tokendv1.VerifyManyResult_Response{Response: response}})
		}
	}
	return out, nil
}

// olderService is TokenService as a tokend from before VerifyMany serves it.
func olderService() *grpc.ServiceDesc {
	desc := tokendv1.TokenService_ServiceDesc
	desc.Methods = nil
	for _, m := range tokendv1.TokenService_ServiceDesc.Methods {
		if m.MethodName != "VerifyMany" {
			desc.Methods = append(desc.Methods, m)
		}
	}
	return &desc
}

type batchFixture struct {
	server *verifyServer
	sent   *sentCounter // RPCs the client sent, by method (after batching)
	conn   *grpc.ClientConn
	client tokendv1.TokenServiceClient
	queued func(*grpc.ClientConn) int
}

// startBatching serves a verifyServer (without VerifyMany when older) on 127.0.0.1 and
// dials it with batching as given.
func startBatching(t *testing.T, batching tokend.VerifyBatching, older, held bool) *batchFixture {
	t.Helper()
	s := &verifyServer{calls: map[string]int{}, held: held,
		entered: make(chan string, 1000), release: make(chan struct{}, 1000)}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := grpc.NewServer()
	if older {
		server.RegisterService(olderService(), s)
	} else {
		tokendv1.RegisterTokenServiceServer(server, s)
	}
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(func() {
		s.stopHolding(0)
		close(s.release) // nothing stays held
		server.Stop()
	})
	opts, queued, err := tokend.WatchedDialOptions(batching)
	if err != nil {
		t.Fatal(err)
	}
	if batching.Disabled {
		if opts, err = tokend.DialOptionsWith(batching); err != nil {
			t.Fatal(err)
		}
	}
	sent := &sentCounter{calls: map[string]int{}}
	conn, err := grpc.NewClient(listener.Addr().String(), append(opts,
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithChainUnaryInterceptor(sent.count))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &batchFixture{server: s, sent: sent, conn: conn, client: tokendv1.NewTokenServiceClient(conn), queued: queued}
}

type sentCounter struct {
	mu    sync.Mutex
	calls map[string]int
}

func (c *sentCounter) count(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	c.mu.Lock()
	c.calls[method[strings.LastIndexByte(method, '/')+1:]]++
	c.mu.Unlock()
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (c *sentCounter) get(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[method]
}

// waitFor polls cond for at most 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 5 s for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// entered waits (at most 5 s) for the next held call and returns its method.
func (f *batchFixture) entered(t *testing.T) string {
	t.Helper()
	select {
	case method := <-f.server.entered:
		return method
	case <-time.After(5 * time.Second):
		t.Fatal("no call reached the server in 5 s")
		return ""
	}
}

type verifyAnswer struct {
	response *tokendv1.VerifyResponse
	err      error
}

// mixedRequests: valid tokens, a revoked one and an empty audience (INVALID_ARGUMENT).
func mixedRequests(n int) []*tokendv1.VerifyRequest {
	out := make([]*tokendv1.VerifyRequest, n)
	for i := range out {
		out[i] = &tokendv1.VerifyRequest{Token: fmt.Sprintf("token-%d", i), Audience: "orders"}
		switch i % 7 {
		case 3:
			out[i].Token = fmt.Sprintf("revoked-%d", i)
		case 5:
			out[i].Audience = ""
		}
	}
	return out
}

// verifyAll sends each request from a goroutine of its own and returns once all are queued
// (the caller holds the server) or answered; wait() gives the answers in request order.
func (f *batchFixture) verifyAll(t *testing.T, ctx context.Context, requests []*tokendv1.VerifyRequest,
	queued int) (wait func() []verifyAnswer) {
	t.Helper()
	answers := make([]verifyAnswer, len(requests))
	var wg sync.WaitGroup
	for i, request := range requests {
		wg.Go(func() {
			response, err := f.client.Verify(ctx, request)
			answers[i] = verifyAnswer{response, err}
		})
	}
	if queued > 0 {
		waitFor(t, fmt.Sprintf("%d queued calls", queued), func() bool { return f.queued(f.conn) == queued })
	}
	return func() []verifyAnswer {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("verify calls still unanswered after 10 s")
		}
		return answers
	}
}

// checkAnswers compares each answer with what a unary Verify to the same server gives.
func checkAnswers(t *testing.T, requests []*tokendv1.VerifyRequest, answers []verifyAnswer) {
	t.Helper()
	for i, request := range requests {
		want, invalid := answer(request)
		got := answers[i]
		if invalid != nil {
			checkSameError(t, got.err, unaryInvalid(invalid))
			continue
		}
		if got.err != nil || !proto.Equal(got.response, want) {
			t.Fatalf("request %d (%s): got %v, %v; want %v", i, request.GetToken(), got.response, got.err, want)
		}
	}
}

// checkSameError: got is what the unary call's error is, to ErrorFrom and to status.
func checkSameError(t *testing.T, got, want error) {
	t.Helper()
	g, w := tokend.ErrorFrom(got), tokend.ErrorFrom(want)
	if g == nil || w == nil {
		t.Fatalf("errors: got %v, want %v", got, want)
	}
	gj, _ := json.Marshal(g)
	wj, _ := json.Marshal(w)
	// (The status protos themselves differ in bytes: a map's order in Any is not fixed.)
	if !bytes.Equal(gj, wj) || g.Error() != w.Error() || status.Code(got) != status.Code(want) ||
		len(status.Convert(got).Details()) != len(status.Convert(want).Details()) {
		t.Fatalf("error %s %s, want %s %s", g, gj, w, wj)
	}
}

func TestALoneVerifyGoesOutAsUnaryVerify(t *testing.T) {
	f := startBatching(t, tokend.VerifyBatching{}, false, false)
	requests := mixedRequests(7)
	answers := make([]verifyAnswer, len(requests))
	for i, request := range requests {
		response, err := f.client.Verify(context.Background(), request)
		answers[i] = verifyAnswer{response, err}
	}
	checkAnswers(t, requests, answers)
	if f.server.count("Verify") != 7 || f.server.count("VerifyMany") != 0 {
		t.Fatalf("calls: %v, want 7 Verify and no VerifyMany", f.server.calls)
	}
}

func TestOverlappingVerifiesShareVerifyManyInOrder(t *testing.T) {
	f := startBatching(t, tokend.VerifyBatching{MaxInFlight: 2, MaxBatch: 8}, false, true)
	ctx := context.Background()
	// Two calls take both slots and are held by the server; the next 20 wait.
	first := f.verifyAll(t, ctx, mixedRequests(2), 0)
	f.entered(t)
	f.entered(t)
	requests := mixedRequests(20)
	rest := f.verifyAll(t, ctx, requests, 20)
	f.server.stopHolding(2)
	checkAnswers(t, mixedRequests(2), first())
	checkAnswers(t, requests, rest())
	f.server.mu.Lock()
	defer f.server.mu.Unlock()
	total := 0
	for _, size := range f.server.sizes {
		if size < 2 || size > 8 {
			t.Fatalf("VerifyMany sizes %v: want 2 to 8 each", f.server.sizes)
		}
		total += size
	}
	// The 20 waiting calls go out as 8 + 8 + 4 (or 8 + 8 + 4 split otherwise when a
	// slot frees early), never one by one.
	if total != 20 || len(f.server.sizes) > 3 || f.server.calls["Verify"] != 2 || f.server.maxActive > 2 {
		t.Fatalf("calls %v, VerifyMany sizes %v, %d at once: want 2 Verify, then 20 requests in "+
			"at most 3 VerifyMany, never more than 2 RPCs at once", f.server.calls, f.server.sizes, f.server.maxActive)
	}
}

func TestAWholeCallErrorFailsEveryRequestOfTheBatch(t *testing.T) {
	f := startBatching(t, tokend.VerifyBatching{MaxInFlight: 1}, false, true)
	denied, _ := status.New(codes.PermissionDenied, "policy denies Verify").WithDetails(
		&errdetails.ErrorInfo{Reason: "POLICY_DENIED", Domain: tokend.ErrorDomain})
	f.server.manyErrs = []error{denied.Err()}
	first := f.verifyAll(t, context.Background(), mixedRequests(1), 0)
	f.entered(t)
	requests := mixedRequests(5)
	rest := f.verifyAll(t, context.Background(), requests, 5)
	f.server.release <- struct{}{}
	f.entered(t) // the VerifyMany
	f.server.release <- struct{}{}
	checkAnswers(t, mixedRequests(1), first())
	for i, got := range rest() {
		checkSameError(t, got.err, denied.Err())
		if got.response != nil {
			t.Fatalf("request %d: a response besides the error", i)
		}
	}
}

func TestVerifyManyIsRetriedWhenUnavailable(t *testing.T) {
	f := startBatching(t, tokend.VerifyBatching{MaxInFlight: 1}, false, true)
	f.server.manyErrs = []error{status.Error(codes.Unavailable, "starting"), status.Error(codes.Unavailable, "starting")}
	first := f.verifyAll(t, context.Background(), mixedRequests(1), 0)
	f.entered(t)
	requests := mixedRequests(6)
	rest := f.verifyAll(t, context.Background(), requests, 6)
	f.server.stopHolding(1)
	first()
	checkAnswers(t, requests, rest())
	if f.server.count("VerifyMany") != 3 {
		t.Fatalf("VerifyMany attempts: %d, want 3 (two UNAVAILABLE, retried by the service config)",
			f.server.count("VerifyMany"))
	}
}

func TestAQueuedVerifyEndsAtItsOwnDeadline(t *testing.T) {
	f := startBatching(t, tokend.VerifyBatching{MaxInFlight: 1}, false, true)
	first := f.verifyAll(t, context.Background(), mixedRequests(1), 0)
	f.entered(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	started := time.Now()
	_, err := f.client.Verify(ctx, &tokendv1.VerifyRequest{Token: "late", Audience: "orders"})
	took := time.Since(started)
	if status.Code(err) != codes.DeadlineExceeded || took > time.Second {
		t.Fatalf("queued Verify with a 150 ms deadline: %v after %v, want DEADLINE_EXCEEDED without waiting", err, took)
	}
	f.server.release <- struct{}{}
	first()
	// The expired call was dropped from the queue when the slot freed: never sent.
	time.Sleep(50 * time.Millisecond)
	if f.server.count("Verify") != 1 || f.server.count("VerifyMany") != 0 || f.queued(f.conn) != 0 {
		t.Fatalf("calls %v, %d queued: want only the first Verify, nothing queued", f.server.calls, f.queued(f.conn))
	}
}

func TestTheQueuedDefaultDeadlineIsTheServiceConfigs(t *testing.T) {
	var config struct {
		MethodConfig []struct {
			Name    []struct{ Method string }
			Timeout string
		}
	}
	if err := json.Unmarshal([]byte(tokend.ServiceConfig), &config); err != nil {
		t.Fatal(err)
	}
	for _, mc := range config.MethodConfig {
		for _, name := range mc.Name {
			if name.Method == "Verify" {
				if timeout, err := time.ParseDuration(mc.Timeout); err != nil || timeout != tokend.VerifyTimeout {
					t.Fatalf("Verify's service-config timeout %q, the queue's default %v", mc.Timeout, tokend.VerifyTimeout)
				}
				return
			}
		}
	}
	t.Fatal("no Verify in the service config")
}

func TestACancelledVerifyLeavesTheQueueOrItsBatch(t *testing.T) {
	f := startBatching(t, tokend.VerifyBatching{MaxInFlight: 1}, false, true)
	first := f.verifyAll(t, context.Background(), mixedRequests(1), 0)
	f.entered(t)
	// Cancelled while queued: it ends at once and is never sent.
	queuedCtx, cancelQueued := context.WithCancel(context.Background())
	dropped := f.verifyAll(t, queuedCtx, []*tokendv1.VerifyRequest{{Token: "dropped", Audience: "orders"}}, 1)
	cancelQueued()
	if got := dropped()[0]; status.Code(got.err) != codes.Canceled {
		t.Fatalf("cancelled while queued: %v", got.err)
	}
	// Cancelled once sent in a batch: it ends at once, the others get their answers.
	sentCtx, cancelSent := context.WithCancel(context.Background())
	gone := f.verifyAll(t, sentCtx, []*tokendv1.VerifyRequest{{Token: "gone", Audience: "orders"}}, 2)
	requests := mixedRequests(3)
	rest := f.verifyAll(t, context.Background(), requests, 5)
	f.server.release <- struct{}{}
	first()
	if method := f.entered(t); method != "VerifyMany" {
		t.Fatalf("after the first call: %s, want the batch as VerifyMany", method)
	}
	cancelSent()
	if got := gone()[0]; status.Code(got.err) != codes.Canceled {
		t.Fatalf("cancelled while its batch was sent: %v", got.err)
	}
	f.server.release <- struct{}{}
	checkAnswers(t, requests, rest())
	f.server.mu.Lock()
	defer f.server.mu.Unlock()
	if len(f.server.sizes) != 1 || f.server.sizes[0] != 4 {
		t.Fatalf("VerifyMany sizes %v: want one of 4 (the dropped call not sent)", f.server.sizes)
	}
}

func TestAnOlderServerWithoutVerifyManyGetsUnaryVerifies(t *testing.T) {
	var logged bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logged, nil))
	f := startBatching(t, tokend.VerifyBatching{MaxInFlight: 1, Logger: logger}, true, true)
	for round := range 2 {
		first := f.verifyAll(t, context.Background(), mixedRequests(1), 0)
		f.entered(t)
		requests := mixedRequests(10)
		rest := f.verifyAll(t, context.Background(), requests, map[int]int{0: 10, 1: 0}[round])
		if round == 1 { // unary for good: all ten reach the server while the first is held
			for range 10 {
				f.entered(t)
			}
			for range 11 {
				f.server.release <- struct{}{}
			}
		} else {
			f.server.stopHolding(1)
		}
		checkAnswers(t, mixedRequests(1), first())
		checkAnswers(t, requests, rest())
		f.server.mu.Lock()
		f.server.held = true
		f.server.mu.Unlock()
	}
	if f.server.count("Verify") != 22 {
		t.Fatalf("Verify calls: %d, want 22", f.server.count("Verify"))
	}
	if n := strings.Count(logged.String(), "does not implement VerifyMany"); n != 1 {
		t.Fatalf("the fallback was logged %d times, want once:\n%s", n, logged.String())
	}
}

func TestBatchingDisabledSendsEveryVerifyAtOnce(t *testing.T) {
	f := startBatching(t, tokend.VerifyBatching{Disabled: true}, false, true)
	requests := mixedRequests(20)
	rest := f.verifyAll(t, context.Background(), requests, 0)
	for range 20 { // all twenty are at the server together: no queue, no bound
		if method := f.entered(t); method != "Verify" {
			t.Fatalf("%s with batching disabled", method)
		}
	}
	for range 20 {
		f.server.release <- struct{}{}
	}
	checkAnswers(t, requests, rest())
	if f.server.count("VerifyMany") != 0 {
		t.Fatal("VerifyMany with batching disabled")
	}
}

func TestACallWithItsOwnOptionsOrMetadataIsNotQueued(t *testing.T) {
	f := startBatching(t, tokend.VerifyBatching{MaxInFlight: 1}, false, true)
	first := f.verifyAll(t, context.Background(), mixedRequests(1), 0)
	f.entered(t)
	done := make(chan error, 2)
	request := &tokendv1.VerifyRequest{Token: "own", Audience: "orders"}
	go func() {
		var header metadata.MD
		_, err := f.client.Verify(context.Background(), request, grpc.Header(&header))
		done <- err
	}()
	go func() {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "r1")
		_, err := f.client.Verify(ctx, request)
		done <- err
	}()
	f.entered(t) // both go out while the slot is taken
	f.entered(t)
	for range 3 {
		f.server.release <- struct{}{}
	}
	first()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyManyChunksAndKeepsOrder(t *testing.T) {
	for _, older := range []bool{false, true} {
		t.Run(map[bool]string{false: "VerifyMany", true: "older server"}[older], func(t *testing.T) {
			f := startBatching(t, tokend.VerifyBatching{}, older, false)
			requests := mixedRequests(600)
			results := tokend.VerifyMany(context.Background(), f.client, requests)
			answers := make([]verifyAnswer, len(results))
			for i, r := range results {
				if (r.Response == nil) == (r.Err == nil) {
					t.Fatalf("result %d: response %v and error %v", i, r.Response, r.Err)
				}
				answers[i] = verifyAnswer{r.Response, r.Err}
			}
			checkAnswers(t, requests, answers)
			f.server.mu.Lock()
			defer f.server.mu.Unlock()
			if !older && (fmt.Sprint(sorted(f.server.sizes)) != "[88 256 256]" || f.server.calls["Verify"] != 0) {
				t.Fatalf("calls %v, VerifyMany sizes %v: want 256, 256 and 88", f.server.calls, f.server.sizes)
			}
			if older && f.server.calls["Verify"] != 600 {
				t.Fatalf("calls %v against an older server: want 600 Verify", f.server.calls)
			}
		})
	}
	f := startBatching(t, tokend.VerifyBatching{}, false, false)
	if results := tokend.VerifyMany(context.Background(), f.client, nil); len(results) != 0 || len(f.server.calls) != 0 {
		t.Fatalf("no requests: %v, calls %v", results, f.server.calls)
	}
}

func sorted(sizes []int) []int {
	out := slices.Clone(sizes)
	slices.Sort(out)
	return out
}

func TestVerifyBatchingRefusesOutOfRangeOptions(t *testing.T) {
	for _, b := range []tokend.VerifyBatching{{MaxBatch: 257}, {MaxInFlight: -1},
		{MaxInFlight: 1025}, {MaxBatch: -3}} {
		if _, err := tokend.DialOptionsWith(b); err == nil {
			t.Errorf("%+v accepted", b)
		}
	}
	for _, b := range []tokend.VerifyBatching{{}, {MaxBatch: 1}, {MaxBatch: 2}, {MaxBatch: 256, MaxInFlight: 1},
		{Disabled: true, MaxBatch: 999}} {
		if _, err := tokend.DialOptionsWith(b); err != nil {
			t.Errorf("%+v refused: %v", b, err)
		}
	}
}

func bigRequests(n, tokenBytes int) []*tokendv1.VerifyRequest {
	out := make([]*tokendv1.VerifyRequest, n)
	for i := range out {
		token := fmt.Sprintf("big-%d-", i)
		out[i] = &tokendv1.VerifyRequest{Token: token + strings.Repeat("x", tokenBytes-len(token)), Audience: "orders"}
	}
	return out
}

// tokend takes at most 64 KiB in one message: batches stay under 60 KiB of requests.
func TestBatchesStayUnder60KiB(t *testing.T) {
	f := startBatching(t, tokend.VerifyBatching{MaxInFlight: 1}, false, true)
	first := f.verifyAll(t, context.Background(), mixedRequests(1), 0)
	f.entered(t)
	requests := append(bigRequests(6, 25_000), bigRequests(1, 70_000)...)
	queued := f.verifyAll(t, context.Background(), requests[:6], 6)
	last := f.verifyAll(t, context.Background(), requests[6:], 7)
	f.server.stopHolding(1)
	first()
	checkAnswers(t, requests[:6], queued())
	checkAnswers(t, requests[6:], last())
	f.server.mu.Lock()
	if fmt.Sprint(f.server.sizes) != "[2 2 2]" || f.server.calls["Verify"] != 2 {
		t.Fatalf("calls %v, VerifyMany sizes %v: want 3 × 2 (25 kB each) and the 70 kB one alone",
			f.server.calls, f.server.sizes)
	}
	f.server.sizes = nil
	f.server.mu.Unlock()
	results := tokend.VerifyMany(context.Background(), f.client, requests)
	for i, r := range results {
		if r.Err != nil || r.Response.GetSubject() != requests[i].GetToken() {
			t.Fatalf("VerifyMany result %d: %v, subject of %d bytes", i, r.Err, len(r.Response.GetSubject()))
		}
	}
	f.server.mu.Lock()
	defer f.server.mu.Unlock()
	if fmt.Sprint(sorted(f.server.sizes)) != "[1 2 2 2]" {
		t.Fatalf("VerifyMany chunks %v: want 2, 2, 2 and the 70 kB one alone", f.server.sizes)
	}
}

// Calls that waited while the server turned out to lack VerifyMany go out unary, without
// another VerifyMany bound to fail.
func TestQueuedCallsAfterTheFallbackAreNotBatchedAgain(t *testing.T) {
	f := startBatching(t, tokend.VerifyBatching{MaxInFlight: 1, MaxBatch: 5}, true, true)
	first := f.verifyAll(t, context.Background(), mixedRequests(1), 0)
	f.entered(t)
	requests := mixedRequests(10)
	rest := f.verifyAll(t, context.Background(), requests, 10)
	f.server.stopHolding(1)
	checkAnswers(t, mixedRequests(1), first())
	checkAnswers(t, requests, rest())
	if f.sent.get("VerifyMany") != 1 || f.server.count("Verify") != 11 {
		t.Fatalf("sent %v, server calls %v: want one VerifyMany, then only Verify", f.sent.calls, f.server.calls)
	}
}
