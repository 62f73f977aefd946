package tokend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tokend/tokend/clients/go/tokendv1"
)

// Defaults of LiveSourceConfig.
const (
	DefaultReadyTimeout = 10 * time.Second
	// DefaultIdleTimeout: tokend sends a keep-alive every 15 s on each stream;
	// one silent this long is reopened.
	DefaultIdleTimeout = 60 * time.Second
	DefaultMaxBackoff  = 30 * time.Second
	// DefaultMaxStale: a revocation stream silent this long (eight missed
	// keep-alives) makes the source stale.
	DefaultMaxStale = 2 * time.Minute

	firstBackoff  = 200 * time.Millisecond
	pruneInterval = time.Minute
)

// LiveSourceConfig configures a LiveSource; zero values mean the defaults.
type LiveSourceConfig struct {
	// ReadyTimeout bounds how long NewLiveSource waits for the revocations in force.
	ReadyTimeout time.Duration
	// IdleTimeout: a stream silent this long is cancelled and reopened.
	IdleTimeout time.Duration
	// MaxBackoff is the longest wait between reconnection attempts.
	MaxBackoff time.Duration
	// MinRefetchInterval rate-limits GetJwks calls for unknown kids.
	MinRefetchInterval time.Duration
	// KeyMaxAge: when WatchJwks delivered nothing (not even a keep-alive) for
	// this long, the keys are fetched again with GetJwks. Zero:
	// DefaultRefreshInterval (5 min).
	KeyMaxAge time.Duration
	// MaxStale: once the revocation stream has delivered nothing (no event,
	// no checkpoint keep-alive) for this long, StalePolicy applies. Zero:
	// DefaultMaxStale; negative: never stale.
	MaxStale time.Duration
	// StalePolicy: FailClosed (the default) makes Verify return an error
	// wrapping ErrStale and ErrKeysUnavailable while stale; FailOpen keeps
	// verifying with the last keys and revocations.
	StalePolicy StalePolicy
	// OnStale, when set, is called (in its own goroutine) on every change
	// between fresh and stale: stale true and how long the revocation stream
	// has been silent, or stale false once it delivers again. For alerts and
	// metrics.
	OnStale func(stale bool, silentFor time.Duration)
	// Logger receives warnings about broken streams; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock for revocation expiry and staleness; nil means time.Now.
	Now func() time.Time
}

// LiveSource follows tokend's WatchJwks and WatchRevocations streams, so a
// Verifier built on it learns of a key rotation or a revocation within about
// a second, without a call per token: revoked jtis, and tokens of a revoked
// subject issued at or before the revocation, are refused (REASON_REVOKED).
// A broken stream is reopened with exponential backoff and jitter, resuming
// from the last sequence received, so no revocation is missed; one silent
// longer than IdleTimeout is reopened too. While tokend is unreachable the
// last state stays in force until MaxStale, then StalePolicy decides.
//
// It is the Go equal of the Python client's LiveSource. Close it when done.
type LiveSource struct {
	client      tokendv1.TokenServiceClient
	keys        *KeySource
	revocations *RevocationSet
	config      LiveSourceConfig
	log         *slog.Logger

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	synced    chan struct{}
	syncOnce  sync.Once
	followers [2]*follower
}

// NewLiveSource fetches the keys with GetJwks, opens both streams and waits
// (up to ReadyTimeout, or ctx) for the revocations in force, so a verifier
// never starts out accepting a revoked token. The streams live until Close.
func NewLiveSource(ctx context.Context, client tokendv1.TokenServiceClient, config LiveSourceConfig) (*LiveSource, error) {
	if client == nil {
		return nil, errors.New("tokend: NewLiveSource needs a client")
	}
	config = liveDefaults(config)
	s := &LiveSource{client: client, revocations: NewRevocationSet(), config: config,
		log: config.Logger, synced: make(chan struct{})}
	s.keys = NewKeySource(GRPCJWKS(client), KeySourceConfig{
		RefreshInterval: config.KeyMaxAge, MinRefetchInterval: config.MinRefetchInterval, Now: config.Now})
	if err := s.keys.Refresh(ctx); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.followers = [2]*follower{
		s.newFollower("jwks", s.followJwks),
		s.newFollower("revocations", s.followRevocations),
	}
	for _, f := range s.followers {
		s.wg.Add(1)
		go f.run()
	}
	s.wg.Add(1)
	go s.watchdog()
	wait, cancel := context.WithTimeout(ctx, config.ReadyTimeout)
	defer cancel()
	select {
	case <-s.synced:
		return s, nil
	case <-wait.Done():
		s.Close()
		return nil, fmt.Errorf("%w: tokend's revocations did not arrive within %s", ErrKeysUnavailable, config.ReadyTimeout)
	}
}

func liveDefaults(c LiveSourceConfig) LiveSourceConfig {
	defaults := []struct {
		value    *time.Duration
		fallback time.Duration
	}{{&c.ReadyTimeout, DefaultReadyTimeout}, {&c.IdleTimeout, DefaultIdleTimeout},
		{&c.MaxBackoff, DefaultMaxBackoff}, {&c.MinRefetchInterval, DefaultMinRefetchInterval},
		{&c.MaxStale, DefaultMaxStale}, {&c.KeyMaxAge, DefaultRefreshInterval}}
	for _, d := range defaults {
		if *d.value == 0 {
			*d.value = d.fallback
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Close stops both streams; the last state stays usable.
func (s *LiveSource) Close() {
	s.cancel()
	s.wg.Wait()
}

// FetchJWKS calls GetJwks (LiveSource is a JWKSSource).
func (s *LiveSource) FetchJWKS(ctx context.Context) ([]byte, error) { return s.keys.FetchJWKS(ctx) }

// Refresh fetches the keys with GetJwks now.
func (s *LiveSource) Refresh(ctx context.Context) error { return s.keys.Refresh(ctx) }

// Revocations is the revocation set the source keeps.
func (s *LiveSource) Revocations() *RevocationSet { return s.revocations }

// LiveStatus is a snapshot of a LiveSource, for monitoring.
type LiveStatus struct {
	Synced     bool      // the revocations in force at the first connection arrived
	Sequence   int64     // the last revocation feed sequence received
	Reconnects int       // streams reopened so far
	Stale      bool      // the revocation stream has been silent longer than MaxStale
	LastJwks   time.Time // when each stream last delivered anything
	LastRevoke time.Time
}

// Status reports the source's state.
func (s *LiveSource) Status() LiveStatus {
	status := LiveStatus{Sequence: s.revocations.Sequence()}
	select {
	case <-s.synced:
		status.Synced = true
	default:
	}
	for _, f := range s.followers {
		_, reconnects := f.snapshot()
		status.Reconnects += reconnects
	}
	status.LastJwks, _ = s.followers[0].snapshot()
	status.LastRevoke, _ = s.followers[1].snapshot()
	status.Stale = s.isStale(s.config.Now(), status.LastRevoke)
	return status
}

// CurrentKeys implements KeyProvider, applying the stale policy.
func (s *LiveSource) CurrentKeys(ctx context.Context) (*KeySet, error) {
	if s.config.StalePolicy == FailClosed {
		now := s.config.Now()
		if last, _ := s.followers[1].snapshot(); s.isStale(now, last) {
			return nil, fmt.Errorf("%w: %w: tokend's revocation stream silent for %s", ErrKeysUnavailable, ErrStale,
				now.Sub(last).Round(time.Second))
		}
	}
	return s.keys.CurrentKeys(ctx)
}

// RefetchForUnknownKey implements KeyProvider (GetJwks, rate-limited).
func (s *LiveSource) RefetchForUnknownKey(ctx context.Context, seen *KeySet) *KeySet {
	return s.keys.RefetchForUnknownKey(ctx, seen)
}

func (s *LiveSource) isRevoked(c *Claims, now instant) bool { return s.revocations.isRevoked(c, now) }

func (s *LiveSource) isStale(now, last time.Time) bool {
	return s.config.MaxStale > 0 && now.Sub(last) > s.config.MaxStale
}

// watchdog reopens silent streams and reports stale ones once a second.
func (s *LiveSource) watchdog() {
	defer s.wg.Done()
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-ticker.C:
		}
		now := s.config.Now()
		for _, f := range s.followers {
			f.cancelIfIdle(now)
		}
		revocations := s.followers[1]
		last, _ := revocations.snapshot()
		revocations.reportStale(s.isStale(now, last), now.Sub(last))
	}
}

// followJwks reads one WatchJwks stream until it ends.
func (s *LiveSource) followJwks(ctx context.Context, delivered func()) error {
	stream, err := s.client.WatchJwks(ctx, &tokendv1.WatchJwksRequest{})
	if err != nil {
		return err
	}
	for {
		event, err := stream.Recv()
		if err != nil {
			return err
		}
		delivered()
		if event.GetKeepAlive() {
			s.keys.touch() // unchanged, so as fresh as if fetched: no need to parse it again
			continue
		}
		keys, err := usableKeySet([]byte(event.GetJwksJson()))
		if err != nil {
			s.log.Warn("tokend sent an unusable key set, keeping the current keys", "error", err)
			continue
		}
		s.keys.set(keys)
	}
}

// followRevocations reads one WatchRevocations stream, from the last sequence.
func (s *LiveSource) followRevocations(ctx context.Context, delivered func()) error {
	stream, err := s.client.WatchRevocations(ctx,
		&tokendv1.WatchRevocationsRequest{FromSequence: s.revocations.Sequence()})
	if err != nil {
		return err
	}
	nextPrune := time.Time{}
	for {
		event, err := stream.Recv()
		if err != nil {
			if status.Code(err) == codes.FailedPrecondition {
				// Our sequence is ahead of tokend's feed (its store was replaced):
				// replay from the start. What we hold stays: it only denies more.
				s.revocations.resetSequence()
			}
			return err
		}
		delivered()
		s.revocations.Apply(event)
		if event.GetCheckpoint() {
			s.syncOnce.Do(func() { close(s.synced) })
			if now := s.config.Now(); now.After(nextPrune) {
				s.revocations.Prune(now)
				nextPrune = now.Add(pruneInterval)
			}
		}
	}
}

// follower keeps one stream open: reopen with backoff, cancel when idle.
type follower struct {
	name   string
	source *LiveSource
	follow func(ctx context.Context, delivered func()) error

	mu         sync.Mutex
	lastEvent  time.Time // last delivery: staleness
	lastSign   time.Time // last delivery or (re)open: idleness
	cancel     context.CancelFunc
	reconnects int
	stale      bool
}

func (s *LiveSource) newFollower(name string, follow func(context.Context, func()) error) *follower {
	return &follower{name: name, source: s, follow: follow, lastEvent: s.config.Now()}
}

func (f *follower) snapshot() (time.Time, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastEvent, f.reconnects
}

func (f *follower) run() {
	s := f.source
	defer s.wg.Done()
	delay := firstBackoff
	for s.ctx.Err() == nil {
		if f.once() {
			delay = firstBackoff // it worked for a while: reconnect promptly
		}
		f.mu.Lock()
		f.reconnects++
		f.mu.Unlock()
		// Jitter: a fleet of backends must not reconnect to a restarted tokend at once.
		wait := time.Duration(float64(delay) * (0.5 + rand.Float64()/2))
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(wait):
		}
		delay = min(delay*2, s.config.MaxBackoff)
	}
}

// once follows one stream until it ends; true when it delivered anything.
func (f *follower) once() bool {
	s := f.source
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	f.mu.Lock()
	f.cancel, f.lastSign = cancel, s.config.Now()
	f.mu.Unlock()
	received := false
	err := f.follow(ctx, func() {
		received = true
		now := s.config.Now()
		f.mu.Lock()
		f.lastEvent, f.lastSign = now, now
		f.mu.Unlock()
	})
	if s.ctx.Err() == nil && !errors.Is(err, io.EOF) {
		s.log.Warn("tokend stream ended", "stream", f.name, "code", status.Code(err).String())
	}
	return received
}

// cancelIfIdle reopens a stream silent past IdleTimeout.
func (f *follower) cancelIfIdle(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cancel != nil && now.Sub(f.lastSign) > f.source.config.IdleTimeout {
		f.source.log.Warn("tokend stream silent; reopening", "stream", f.name)
		f.cancel()
		f.cancel = nil
	}
}

// reportStale calls OnStale when the stream's state changes.
func (f *follower) reportStale(stale bool, silentFor time.Duration) {
	f.mu.Lock()
	changed := stale != f.stale
	f.stale = stale
	f.mu.Unlock()
	if !changed {
		return
	}
	config := f.source.config
	if stale {
		f.source.log.Warn("tokend stream stale", "stream", f.name, "silent_for", silentFor.Round(time.Second),
			"fail_closed", config.StalePolicy == FailClosed)
	}
	if config.OnStale != nil {
		go config.OnStale(stale, silentFor)
	}
}

// RevocationSet holds the revocations received so far, each until the tokens
// it names have expired. Safe for concurrent use.
type RevocationSet struct {
	mu       sync.RWMutex
	jtis     map[string]time.Time         // jti -> when the entry expires
	subjects map[string]subjectRevocation // subject -> not before, expiry
	sequence int64
}

type subjectRevocation struct {
	notBefore instant
	expires   time.Time
}

// NewRevocationSet returns an empty set.
func NewRevocationSet() *RevocationSet {
	return &RevocationSet{jtis: map[string]time.Time{}, subjects: map[string]subjectRevocation{}}
}

// Sequence is the last feed sequence received: where a reconnect resumes.
func (r *RevocationSet) Sequence() int64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.sequence
}

func (r *RevocationSet) resetSequence() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sequence = 0
}

// Len is the number of entries.
func (r *RevocationSet) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.jtis) + len(r.subjects)
}

// Apply records one WatchRevocations event (a checkpoint only moves the sequence).
func (r *RevocationSet) Apply(event *tokendv1.RevocationEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !event.GetCheckpoint() {
		expires := timeOf(event.GetExpiresAt())
		switch event.GetKind() {
		case "jti":
			if expires.After(r.jtis[event.GetValue()]) {
				r.jtis[event.GetValue()] = expires
			}
		case "subject":
			r.revokeSubject(event.GetValue(), event.GetNotBefore(), expires)
		}
		// "family" is informational (its tokens arrive as jti events); newer
		// kinds are ignored rather than guessed at.
	}
	r.sequence = max(r.sequence, event.GetSequence())
}

func (r *RevocationSet) revokeSubject(subject string, notBefore *timestamppb.Timestamp, expires time.Time) {
	entry := subjectRevocation{notBefore: instantOfTime(timeOf(notBefore)), expires: expires}
	if known, ok := r.subjects[subject]; ok {
		// Both maxima: only ever denies more, and each entry ends with its tokens.
		if known.notBefore.cmp(entry.notBefore) > 0 {
			entry.notBefore = known.notBefore
		}
		if known.expires.After(entry.expires) {
			entry.expires = known.expires
		}
	}
	r.subjects[subject] = entry
}

func timeOf(stamp *timestamppb.Timestamp) time.Time {
	return time.Unix(stamp.GetSeconds(), int64(stamp.GetNanos()))
}

// isRevoked: a revoked jti, or a token of a revoked subject whose iat is at or
// before the revocation (the same second counts as before: iat has 1 s
// resolution). Without an iat the token cannot prove it came after.
func (r *RevocationSet) isRevoked(c *Claims, now instant) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if expires, ok := r.jtis[c.JTI]; ok && c.JTI != "" && instantOfTime(expires).cmp(now) > 0 {
		return true
	}
	entry, ok := r.subjects[c.Subject]
	if !ok || c.Subject == "" || instantOfTime(entry.expires).cmp(now) <= 0 {
		return false
	}
	return c.iat == nil || c.iat.cmp(entry.notBefore) <= 0
}

// Prune forgets entries whose tokens have all expired; returns how many.
func (r *RevocationSet) Prune(now time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	pruned := 0
	for jti, expires := range r.jtis {
		if !expires.After(now) {
			delete(r.jtis, jti)
			pruned++
		}
	}
	for subject, entry := range r.subjects {
		if !entry.expires.After(now) {
			delete(r.subjects, subject)
			pruned++
		}
	}
	return pruned
}
