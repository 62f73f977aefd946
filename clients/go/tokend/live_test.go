package tokend_test

// LiveSource against a scripted tokend: real gRPC over loopback, with faults
// (dropped streams, a feed behind the client, silence) the real server cannot
// be made to produce on demand. The real server is in interop_live_test.go.

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tokend/tokend/clients/go/tokend"
	"github.com/tokend/tokend/clients/go/tokendv1"
)

// scriptedTokend serves GetJwks, WatchJwks and WatchRevocations from state
// the test sets.
type scriptedTokend struct {
	tokendv1.UnimplementedTokenServiceServer
	mu        sync.Mutex
	jwks      []byte
	feed      []*tokendv1.RevocationEvent
	from      []int64     // from_sequence of every WatchRevocations call
	fail      codes.Code  // the next WatchRevocations fails with this (OK: none)
	silent    atomic.Bool // streams send nothing at all
	changed   chan struct{}
	dropped   chan struct{}
	getJwks   atomic.Int32
	keepalive time.Duration
}

func newScriptedTokend(jwks []byte) *scriptedTokend {
	return &scriptedTokend{jwks: jwks, changed: make(chan struct{}), dropped: make(chan struct{}),
		keepalive: 50 * time.Millisecond}
}

// wake tells every open stream that the state changed; s.mu is held.
func (s *scriptedTokend) wake() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// drop ends every open stream, as a restart or a proxy would.
func (s *scriptedTokend) drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.dropped)
	s.dropped = make(chan struct{})
}

func (s *scriptedTokend) setJwks(data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jwks = data
	s.wake()
}

func (s *scriptedTokend) revoke(kind, value string, notBefore time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	event := &tokendv1.RevocationEvent{Sequence: int64(len(s.feed) + 1), Kind: kind, Value: value,
		ExpiresAt: timestamppb.New(epoch.Add(time.Hour))}
	if kind == "subject" {
		event.NotBefore = timestamppb.New(notBefore)
	}
	s.feed = append(s.feed, event)
	s.wake()
}

func (s *scriptedTokend) froms() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.from...)
}

func (s *scriptedTokend) GetJwks(context.Context, *tokendv1.GetJwksRequest) (*tokendv1.GetJwksResponse, error) {
	s.getJwks.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	return &tokendv1.GetJwksResponse{JwksJson: string(s.jwks)}, nil
}

func (s *scriptedTokend) WatchJwks(_ *tokendv1.WatchJwksRequest, stream grpc.ServerStreamingServer[tokendv1.JwksEvent]) error {
	var sent []byte
	for {
		s.mu.Lock()
		current, changed, dropped := s.jwks, s.changed, s.dropped
		s.mu.Unlock()
		if !s.silent.Load() {
			event := &tokendv1.JwksEvent{JwksJson: string(current), KeepAlive: string(sent) == string(current)}
			if err := stream.Send(event); err != nil {
				return err
			}
			sent = current
		}
		if done := s.pause(stream.Context(), changed, dropped); done != nil {
			return done
		}
	}
}

func (s *scriptedTokend) WatchRevocations(request *tokendv1.WatchRevocationsRequest,
	stream grpc.ServerStreamingServer[tokendv1.RevocationEvent]) error {
	s.mu.Lock()
	s.from = append(s.from, request.GetFromSequence())
	fail, ahead := s.fail, request.GetFromSequence() > int64(len(s.feed))
	s.fail = codes.OK
	s.mu.Unlock()
	if fail != codes.OK {
		return status.Error(fail, "scripted failure")
	}
	if ahead {
		return status.Error(codes.FailedPrecondition, "the store was replaced; resume from 0")
	}
	sent := request.GetFromSequence()
	for {
		s.mu.Lock()
		pending, changed, dropped := s.feed[sent:], s.changed, s.dropped
		s.mu.Unlock()
		if !s.silent.Load() {
			for _, event := range pending {
				if err := stream.Send(event); err != nil {
					return err
				}
				sent = event.GetSequence()
			}
			if err := stream.Send(&tokendv1.RevocationEvent{Sequence: sent, Checkpoint: true}); err != nil {
				return err
			}
		}
		if done := s.pause(stream.Context(), changed, dropped); done != nil {
			return done
		}
	}
}

// pause waits for a change, a keep-alive tick, a drop or the end of the call.
func (s *scriptedTokend) pause(ctx context.Context, changed, dropped chan struct{}) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-dropped:
		return status.Error(codes.Unavailable, "dropped")
	case <-changed:
	case <-time.After(s.keepalive):
	}
	return nil
}

// serve starts server on a loopback port and returns a client connected to it.
func serve(t *testing.T, server *scriptedTokend) tokendv1.TokenServiceClient {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcServer := grpc.NewServer()
	tokendv1.RegisterTokenServiceServer(grpcServer, server)
	go func() { _ = grpcServer.Serve(listener) }()
	t.Cleanup(grpcServer.Stop)
	conn, err := grpc.NewClient(listener.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return tokendv1.NewTokenServiceClient(conn)
}

func newLive(t *testing.T, client tokendv1.TokenServiceClient, change func(*tokend.LiveSourceConfig)) *tokend.LiveSource {
	t.Helper()
	config := tokend.LiveSourceConfig{ReadyTimeout: 5 * time.Second, MaxBackoff: 200 * time.Millisecond}
	if change != nil {
		change(&config)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	live, err := tokend.NewLiveSource(ctx, client, config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(live.Close)
	return live
}

func liveVerifier(t *testing.T, live *tokend.LiveSource) *tokend.Verifier {
	t.Helper()
	verifier, err := tokend.NewVerifier(live, tokend.Config{Issuer: testIssuer, Audience: []string{testAudience},
		Now: func() time.Time { return epoch }})
	if err != nil {
		t.Fatal(err)
	}
	return verifier
}

// refusedWithin polls until token is refused as revoked; fails after limit.
func refusedWithin(t *testing.T, verifier *tokend.Verifier, token string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		_, err := verifier.Verify(context.Background(), token)
		if tokend.ReasonOf(err) == tokendv1.Reason_REASON_REVOKED {
			return time.Since(start)
		}
		if err != nil {
			t.Fatalf("refused, but not as revoked: %v", err)
		}
		if time.Since(start) > limit {
			t.Fatalf("still accepted after %s", limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLiveSourceRefusesRevokedTokensAndResumesAfterADrop(t *testing.T) {
	key := newKey(t, jose.ES256, "k1")
	server := newScriptedTokend(jwks(t, key))
	server.revoke("jti", "revoked-before-start", time.Time{})
	live := newLive(t, serve(t, server), nil)
	verifier := liveVerifier(t, live)
	ctx := context.Background()

	_, err := verifier.Verify(ctx, key.sign(t, with(validClaims(epoch), map[string]any{"jti": "revoked-before-start"}), nil))
	wantReason(t, err, tokendv1.Reason_REASON_REVOKED)

	byJTI := key.sign(t, with(validClaims(epoch), map[string]any{"jti": "j2"}), nil)
	if _, err := verifier.Verify(ctx, byJTI); err != nil {
		t.Fatal(err)
	}
	server.revoke("jti", "j2", time.Time{})
	refusedWithin(t, verifier, byJTI, time.Second)

	// A subject revocation covers tokens issued at or before not_before, the
	// same second included, not later ones.
	older := key.sign(t, with(validClaims(epoch), map[string]any{"sub": "mallory", "jti": "m1"}), nil)
	sameSecond := key.sign(t, with(validClaims(epoch), map[string]any{"sub": "mallory", "jti": "m2",
		"iat": epoch.Unix() + 5}), nil)
	newer := key.sign(t, with(validClaims(epoch), map[string]any{"sub": "mallory", "jti": "m3",
		"iat": epoch.Unix() + 6}), nil)
	server.drop() // the revocation arrives on a reopened stream
	server.revoke("subject", "mallory", epoch.Add(5*time.Second+500*time.Millisecond))
	refusedWithin(t, verifier, older, 2*time.Second)
	refusedWithin(t, verifier, sameSecond, time.Second)
	if _, err := verifier.Verify(ctx, newer); err != nil {
		t.Fatalf("a token issued after the revocation: %v", err)
	}
	froms := server.froms()
	if froms[0] != 0 || !containsInt(froms[1:], 2) {
		t.Fatalf("from_sequence of the calls: %v; want 0, then a resume from 2", froms)
	}
	if live.Status().Reconnects == 0 || live.Status().Sequence != 3 {
		t.Fatalf("status %+v", live.Status())
	}
}

func containsInt(values []int64, value int64) bool {
	for _, v := range values {
		if v == value {
			return true
		}
	}
	return false
}

func TestLiveSourceRestartsFromZeroWhenAheadOfTheFeed(t *testing.T) {
	key := newKey(t, jose.ES256, "k1")
	server := newScriptedTokend(jwks(t, key))
	server.revoke("jti", "a", time.Time{})
	server.revoke("jti", "b", time.Time{})
	live := newLive(t, serve(t, server), nil)
	// The store was replaced: the feed is shorter than what the client saw.
	server.mu.Lock()
	server.feed = server.feed[:1]
	server.mu.Unlock()
	server.drop()
	deadline := time.Now().Add(3 * time.Second)
	for froms := server.froms(); froms[len(froms)-1] != 0 || len(froms) < 3; froms = server.froms() {
		if time.Now().After(deadline) {
			t.Fatalf("from_sequence of the calls: %v; want a FAILED_PRECONDITION then 0", froms)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// What it held stays: b is still refused.
	_, err := liveVerifier(t, live).Verify(context.Background(),
		key.sign(t, with(validClaims(epoch), map[string]any{"jti": "b"}), nil))
	wantReason(t, err, tokendv1.Reason_REASON_REVOKED)
}

func TestLiveSourceFollowsNewKeysWithoutGetJwks(t *testing.T) {
	old, rotated := newKey(t, jose.ES256, "v1"), newKey(t, jose.EdDSA, "v2")
	server := newScriptedTokend(jwks(t, old))
	live := newLive(t, serve(t, server), func(c *tokend.LiveSourceConfig) { c.MinRefetchInterval = time.Hour })
	verifier := liveVerifier(t, live)
	token := rotated.sign(t, validClaims(epoch), nil)
	// The first unknown kid may refetch once (GetJwks still has the old set)...
	_, err := verifier.Verify(context.Background(), token)
	wantReason(t, err, tokendv1.Reason_REASON_UNKNOWN_KEY)
	calls := server.getJwks.Load()
	// ...then WatchJwks brings the new set; no more GetJwks.
	server.setJwks(jwks(t, rotated))
	deadline := time.Now().Add(time.Second)
	for {
		if _, err := verifier.Verify(context.Background(), token); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new key did not arrive within a second")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if server.getJwks.Load() != calls {
		t.Fatal("the new key came from GetJwks, not the stream")
	}
	// The withdrawn key went with the old set.
	_, err = verifier.Verify(context.Background(), old.sign(t, validClaims(epoch), nil))
	wantReason(t, err, tokendv1.Reason_REASON_UNKNOWN_KEY)
}

func TestLiveSourceStalePolicy(t *testing.T) {
	key := newKey(t, jose.ES256, "k1")
	token := key.sign(t, validClaims(epoch), nil)
	for _, policy := range []tokend.StalePolicy{tokend.FailClosed, tokend.FailOpen} {
		server := newScriptedTokend(jwks(t, key))
		clock := &fakeClock{now: time.Now()}
		staleCalls := make(chan bool, 4)
		live := newLive(t, serve(t, server), func(c *tokend.LiveSourceConfig) {
			c.MaxStale, c.IdleTimeout, c.StalePolicy, c.Now = time.Minute, time.Hour, policy, clock.Now
			c.KeyMaxAge = time.Hour
			c.OnStale = func(stale bool, _ time.Duration) { staleCalls <- stale }
		})
		verifier := liveVerifier(t, live)
		if _, err := verifier.Verify(context.Background(), token); err != nil {
			t.Fatal(err)
		}
		// tokend goes silent and two minutes pass.
		server.silent.Store(true)
		time.Sleep(100 * time.Millisecond) // the last keep-alives in flight land before the jump
		clock.Advance(2 * time.Minute)
		_, err := verifier.Verify(context.Background(), token)
		if policy == tokend.FailClosed {
			if !errors.Is(err, tokend.ErrStale) || !errors.Is(err, tokend.ErrKeysUnavailable) ||
				tokend.ReasonOf(err) != tokendv1.Reason_REASON_UNSPECIFIED {
				t.Fatalf("fail-closed while stale: %v", err)
			}
		} else if err != nil {
			t.Fatalf("fail-open while stale: %v", err)
		}
		wantStaleCall(t, staleCalls, true)
		if !live.Status().Stale {
			t.Fatal("status does not say stale")
		}
		// tokend speaks again: verification resumes.
		server.silent.Store(false)
		server.setJwks(jwks(t, key))
		deadline := time.Now().Add(2 * time.Second)
		for _, err := verifier.Verify(context.Background(), token); err != nil; _, err = verifier.Verify(context.Background(), token) {
			if time.Now().After(deadline) {
				t.Fatalf("still refused after tokend came back: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		wantStaleCall(t, staleCalls, false)
	}
}

func wantStaleCall(t *testing.T, calls chan bool, want bool) {
	t.Helper()
	select {
	case stale := <-calls:
		if stale != want {
			t.Fatalf("OnStale(%v), want OnStale(%v)", stale, want)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("OnStale(%v) was not called", want)
	}
}

func TestLiveSourceReopensASilentStream(t *testing.T) {
	key := newKey(t, jose.ES256, "k1")
	server := newScriptedTokend(jwks(t, key))
	clock := &fakeClock{now: time.Now()}
	newLive(t, serve(t, server), func(c *tokend.LiveSourceConfig) { c.IdleTimeout, c.Now = time.Minute, clock.Now })
	server.silent.Store(true)
	time.Sleep(100 * time.Millisecond)
	before := len(server.froms())
	clock.Advance(2 * time.Minute)
	deadline := time.Now().Add(3 * time.Second)
	for len(server.froms()) == before {
		if time.Now().After(deadline) {
			t.Fatal("the silent stream was not reopened")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLiveSourceFailsWhenRevocationsDoNotArrive(t *testing.T) {
	key := newKey(t, jose.ES256, "k1")
	server := newScriptedTokend(jwks(t, key))
	server.silent.Store(true)
	_, err := tokend.NewLiveSource(context.Background(), serve(t, server),
		tokend.LiveSourceConfig{ReadyTimeout: 300 * time.Millisecond})
	if !errors.Is(err, tokend.ErrKeysUnavailable) {
		t.Fatalf("got %v", err)
	}
}

func TestRevocationSetEntriesExpireWithTheirTokens(t *testing.T) {
	set := tokend.NewRevocationSet()
	set.Apply(&tokendv1.RevocationEvent{Sequence: 1, Kind: "jti", Value: "j", ExpiresAt: timestamppb.New(epoch)})
	set.Apply(&tokendv1.RevocationEvent{Sequence: 2, Kind: "family", Value: "f", ExpiresAt: timestamppb.New(epoch)})
	set.Apply(&tokendv1.RevocationEvent{Sequence: 3, Kind: "future-kind", Value: "x"})
	set.Apply(&tokendv1.RevocationEvent{Sequence: 7, Checkpoint: true})
	if set.Len() != 1 || set.Sequence() != 7 {
		t.Fatalf("len %d, sequence %d", set.Len(), set.Sequence())
	}
	if set.Prune(epoch.Add(-time.Second)) != 0 || set.Prune(epoch) != 1 || set.Len() != 0 {
		t.Fatal("the jti entry must live exactly until its expiry")
	}
}

func TestLiveSourceRefetchesKeysWhenWatchJwksIsSilentPastKeyMaxAge(t *testing.T) {
	key := newKey(t, jose.ES256, "k1")
	server := newScriptedTokend(jwks(t, key))
	clock := &fakeClock{now: time.Now()}
	live := newLive(t, serve(t, server), func(c *tokend.LiveSourceConfig) {
		c.Now, c.IdleTimeout, c.MaxStale = clock.Now, time.Hour, -1
	})
	verifier := liveVerifier(t, live)
	token := key.sign(t, validClaims(epoch), nil)
	clock.Advance(4 * time.Minute) // keep-alives keep the keys fresh
	if _, err := verifier.Verify(context.Background(), token); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	calls := server.getJwks.Load()
	server.silent.Store(true)
	time.Sleep(100 * time.Millisecond)
	clock.Advance(tokend.DefaultRefreshInterval + time.Second)
	if _, err := verifier.Verify(context.Background(), token); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for server.getJwks.Load() == calls {
		if time.Now().After(deadline) {
			t.Fatal("no GetJwks after the key stream was silent past the key max age")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
