package tokend_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tokend/tokend/clients/go/tokend"
	"github.com/tokend/tokend/clients/go/tokendv1"
)

// scripted is a real gRPC server on loopback whose next answers fail as scripted:
// the real tokend cannot answer UNAVAILABLE or slowly on demand.
type scripted struct {
	tokendv1.UnimplementedTokenServiceServer
	mu       sync.Mutex
	failures map[string][]codes.Code
	calls    map[string]int
	keys     []string // the IdempotencyKey of each Refresh attempt
	delay    time.Duration
}

func (s *scripted) enter(method string) error {
	s.mu.Lock()
	s.calls[method]++
	var code codes.Code
	if pending := s.failures[method]; len(pending) > 0 {
		code, s.failures[method] = pending[0], pending[1:]
	}
	delay := s.delay
	s.mu.Unlock()
	time.Sleep(delay)
	if code != codes.OK {
		return status.Error(code, "scripted failure")
	}
	return nil
}

func (s *scripted) count(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

func (s *scripted) Verify(context.Context, *tokendv1.VerifyRequest) (*tokendv1.VerifyResponse, error) {
	return &tokendv1.VerifyResponse{}, s.enter("Verify")
}

func (s *scripted) Issue(context.Context, *tokendv1.IssueRequest) (*tokendv1.IssueResponse, error) {
	return &tokendv1.IssueResponse{}, s.enter("Issue")
}

func (s *scripted) Refresh(_ context.Context, r *tokendv1.RefreshRequest) (*tokendv1.IssueResponse, error) {
	s.mu.Lock()
	s.keys = append(s.keys, r.GetIdempotencyKey())
	s.mu.Unlock()
	return &tokendv1.IssueResponse{}, s.enter("Refresh")
}

// startScripted serves s on 127.0.0.1 and returns a client dialled with DialOptions.
func startScripted(t *testing.T, failures map[string][]codes.Code) (*scripted, tokendv1.TokenServiceClient) {
	t.Helper()
	s := &scripted{failures: failures, calls: map[string]int{}}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := grpc.NewServer()
	tokendv1.RegisterTokenServiceServer(server, s)
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(server.Stop)
	conn, err := grpc.NewClient(listener.Addr().String(), append(tokend.DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return s, tokendv1.NewTokenServiceClient(conn)
}

func unavailable(n int) []codes.Code {
	out := make([]codes.Code, n)
	for i := range out {
		out[i] = codes.Unavailable
	}
	return out
}

func TestUnavailableVerifyAndIssueAreRetried(t *testing.T) {
	s, client := startScripted(t, map[string][]codes.Code{
		"Verify": unavailable(2), "Issue": unavailable(3)})
	ctx := context.Background()
	if _, err := client.Verify(ctx, &tokendv1.VerifyRequest{Token: "a.b.c", Audience: "orders"}); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if _, err := client.Issue(ctx, &tokendv1.IssueRequest{Subject: "alice"}); err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if s.count("Verify") != 3 || s.count("Issue") != 4 {
		t.Fatalf("attempts: Verify %d (want 3), Issue %d (want 4)", s.count("Verify"), s.count("Issue"))
	}
}

func TestRetriesAreBoundedAndOtherCodesAreAnswers(t *testing.T) {
	s, client := startScripted(t, map[string][]codes.Code{
		"Verify": unavailable(10), "Issue": {codes.InvalidArgument}})
	ctx := context.Background()
	_, err := client.Verify(ctx, &tokendv1.VerifyRequest{Token: "a.b.c", Audience: "orders"})
	if status.Code(err) != codes.Unavailable || s.count("Verify") != 4 {
		t.Fatalf("Verify: %v after %d attempts, want UNAVAILABLE after 4", err, s.count("Verify"))
	}
	_, err = client.Issue(ctx, &tokendv1.IssueRequest{Subject: "alice"})
	if status.Code(err) != codes.InvalidArgument || s.count("Issue") != 1 {
		t.Fatalf("Issue: %v after %d attempts, want INVALID_ARGUMENT after 1", err, s.count("Issue"))
	}
}

func TestRefreshRetriesCarryOneKey(t *testing.T) {
	s, client := startScripted(t, map[string][]codes.Code{"Refresh": unavailable(2)})
	ctx := context.Background()
	// Without a key: the interceptor gives the call one, and its retries resend it.
	request := &tokendv1.RefreshRequest{RefreshToken: "tkd_rt_x"}
	if _, err := client.Refresh(ctx, request); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if request.GetIdempotencyKey() != "" {
		t.Fatal("the caller's request was modified")
	}
	// With the caller's own key: kept as it is.
	mine := tokend.NewIdempotencyKey()
	s.mu.Lock()
	s.failures["Refresh"] = unavailable(1)
	s.mu.Unlock()
	if _, err := client.Refresh(ctx, &tokendv1.RefreshRequest{RefreshToken: "tkd_rt_y", IdempotencyKey: mine}); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	s.mu.Lock()
	keys := append([]string(nil), s.keys...)
	s.mu.Unlock()
	if len(keys) != 5 || keys[0] == "" || keys[0] != keys[1] || keys[1] != keys[2] ||
		keys[3] != mine || keys[4] != mine || keys[0] == mine {
		t.Fatalf("keys of the attempts: %q", keys)
	}
	if len(keys[0]) != 32 {
		t.Fatalf("key %q: want 32 characters", keys[0])
	}
}

func TestTheDefaultDeadlineIsTheServiceConfigs(t *testing.T) {
	s, client := startScripted(t, nil)
	s.mu.Lock()
	s.delay = 6 * time.Second
	s.mu.Unlock()
	started := time.Now()
	_, err := client.Verify(context.Background(), &tokendv1.VerifyRequest{Token: "a.b.c", Audience: "orders"})
	took := time.Since(started)
	if status.Code(err) != codes.DeadlineExceeded || took < 4900*time.Millisecond || took > 5800*time.Millisecond {
		t.Fatalf("Verify without a ctx deadline: %v after %v, want DEADLINE_EXCEEDED at 5 s", err, took)
	}
	// A shorter ctx deadline wins.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	started = time.Now()
	_, err = client.Verify(ctx, &tokendv1.VerifyRequest{Token: "a.b.c", Audience: "orders"})
	if status.Code(err) != codes.DeadlineExceeded || time.Since(started) > time.Second {
		t.Fatalf("Verify with a 300 ms deadline: %v after %v", err, time.Since(started))
	}
}

func TestServiceConfigIsTheRepositorysCopy(t *testing.T) {
	source, err := os.ReadFile(filepath.Join("..", "..", "service-config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(source) != tokend.ServiceConfig {
		t.Fatal("tokend/service-config.json drifted from clients/service-config.json: copy it again")
	}
}
