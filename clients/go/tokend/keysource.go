package tokend

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Defaults of KeySourceConfig.
const (
	// DefaultRefreshInterval is how old the key set may get before it is
	// fetched again, so a key tokend withdrew stops verifying.
	DefaultRefreshInterval = 5 * time.Minute
	// backgroundFetchTimeout bounds a refresh no caller waits for.
	backgroundFetchTimeout = 30 * time.Second
)

// ErrStale is wrapped (with ErrKeysUnavailable) by the error Verify returns
// when a source failing closed has not heard from tokend for too long.
var ErrStale = errors.New("tokend: keys or revocations not updated for too long")

// StalePolicy says what a source does once its state is older than its limit.
type StalePolicy int

const (
	// FailClosed refuses to verify (errors wrapping ErrStale and
	// ErrKeysUnavailable) until the source hears from tokend again.
	FailClosed StalePolicy = iota
	// FailOpen keeps verifying with the last known keys and revocations.
	FailOpen
)

// KeySourceConfig configures a KeySource.
type KeySourceConfig struct {
	// RefreshInterval: a key set this old is fetched again, in the background
	// (synchronously when it is twice as old, e.g. after a long idle). Zero
	// means DefaultRefreshInterval; negative, never (only unknown kids refetch).
	RefreshInterval time.Duration
	// MinRefetchInterval rate-limits fetches caused by unknown kids, counted
	// from the end of any fetch, failed ones included; zero means
	// DefaultMinRefetchInterval.
	MinRefetchInterval time.Duration
	// MaxAge, when positive, is the age after which the keys are stale (no
	// successful fetch for that long): StalePolicy applies and OnStale is called.
	MaxAge time.Duration
	// StalePolicy applies once the keys are older than MaxAge (default FailClosed).
	StalePolicy StalePolicy
	// OnStale, when set, is called (in its own goroutine) each time the keys
	// become stale: for an alert or a metric.
	OnStale func(age time.Duration)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// KeySource fetches tokend's JWK Set from a JWKSSource and keeps it current:
// the first use fetches; a set older than RefreshInterval is fetched again; a
// token naming an unknown kid makes it refetch at most once per
// MinRefetchInterval, so made-up kids cannot make it hammer the publisher. A
// failed fetch or a set with no usable key keeps the last good set. It is safe
// for concurrent use and needs no Close: refreshes happen on use.
type KeySource struct {
	fetcher     JWKSSource
	refresh     time.Duration
	minInterval time.Duration
	maxAge      time.Duration
	policy      StalePolicy
	onStale     func(time.Duration)
	now         func() time.Time

	// fetching is a one-slot semaphore: one fetch at a time, and waiting for
	// it honours the caller's context (a sync.Mutex would not).
	fetching chan struct{}

	mu          sync.RWMutex
	keys        *KeySet
	loadedAt    time.Time // of the current keys
	lastAttempt time.Time // end of the last fetch; zero before the first
	lastErr     error
	staleSent   bool
	fetches     int
}

// NewKeySource returns a KeySource over fetcher.
func NewKeySource(fetcher JWKSSource, config KeySourceConfig) *KeySource {
	if config.RefreshInterval == 0 {
		config.RefreshInterval = DefaultRefreshInterval
	}
	if config.MinRefetchInterval <= 0 {
		config.MinRefetchInterval = DefaultMinRefetchInterval
	}
	if config.Now == nil {
		config.Now = time.Now
	}
	return &KeySource{
		fetcher: fetcher, refresh: config.RefreshInterval, minInterval: config.MinRefetchInterval,
		maxAge: config.MaxAge, policy: config.StalePolicy, onStale: config.OnStale, now: config.Now,
		fetching: make(chan struct{}, 1),
	}
}

// FetchJWKS fetches through the underlying source (KeySource is a JWKSSource).
func (s *KeySource) FetchJWKS(ctx context.Context) ([]byte, error) { return s.fetcher.FetchJWKS(ctx) }

// Fetches is how many fetches were attempted (for monitoring).
func (s *KeySource) Fetches() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.fetches
}

// CurrentKeys implements KeyProvider.
func (s *KeySource) CurrentKeys(ctx context.Context) (*KeySet, error) {
	s.mu.RLock()
	keys, age := s.keys, s.now().Sub(s.loadedAt)
	s.mu.RUnlock()
	switch {
	case keys == nil:
		return s.firstKeys(ctx)
	case s.refresh > 0 && age >= 2*s.refresh:
		keys = s.refreshNow(ctx, keys)
	case s.refresh > 0 && age >= s.refresh:
		s.refreshInBackground()
	}
	return s.checkAge(keys)
}

// firstKeys loads the first set; until one loads, failures are rate-limited
// and reported as ErrKeysUnavailable, which says nothing about the token.
func (s *KeySource) firstKeys(ctx context.Context) (*KeySet, error) {
	if err := s.acquire(ctx); err != nil {
		return nil, err
	}
	defer s.release()
	if keys := s.current(); keys != nil {
		return keys, nil
	}
	if s.due() {
		if err := s.fetch(ctx); err != nil {
			return nil, err
		}
		return s.current(), nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return nil, s.lastErr
}

// refreshNow fetches (rate-limited) and returns the newest keys; on failure the
// previous ones.
func (s *KeySource) refreshNow(ctx context.Context, seen *KeySet) *KeySet {
	if err := s.acquire(ctx); err != nil {
		return seen
	}
	defer s.release()
	if keys := s.current(); keys != seen || !s.due() {
		return keys
	}
	_ = s.fetch(ctx) // a failure keeps the last good set
	return s.current()
}

func (s *KeySource) refreshInBackground() {
	select {
	case s.fetching <- struct{}{}:
	default:
		return // a fetch is running already
	}
	if !s.due() {
		s.release()
		return
	}
	go func() {
		defer s.release()
		ctx, cancel := context.WithTimeout(context.Background(), backgroundFetchTimeout)
		defer cancel()
		_ = s.fetch(ctx)
	}()
}

// checkAge applies the stale policy to keys not refreshed within maxAge.
func (s *KeySource) checkAge(keys *KeySet) (*KeySet, error) {
	if s.maxAge <= 0 {
		return keys, nil
	}
	s.mu.Lock()
	age := s.now().Sub(s.loadedAt)
	stale := age > s.maxAge
	notify := stale && !s.staleSent
	if notify {
		s.staleSent = true
	}
	s.mu.Unlock()
	if notify && s.onStale != nil {
		go s.onStale(age)
	}
	if stale && s.policy == FailClosed {
		return nil, fmt.Errorf("%w: %w: key set is %s old", ErrKeysUnavailable, ErrStale, age.Round(time.Second))
	}
	return keys, nil
}

// RefetchForUnknownKey implements KeyProvider: if another caller fetched since
// seen was read, that set is returned without a fetch; otherwise one fetch is
// made unless one ended less than MinRefetchInterval ago.
func (s *KeySource) RefetchForUnknownKey(ctx context.Context, seen *KeySet) *KeySet {
	if err := s.acquire(ctx); err != nil {
		return nil
	}
	defer s.release()
	if keys := s.current(); keys != seen {
		return keys
	}
	if !s.due() || s.fetch(ctx) != nil {
		return nil
	}
	return s.current()
}

// Refresh fetches now, whatever the rate limit; an error keeps the current set.
func (s *KeySource) Refresh(ctx context.Context) error {
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.release()
	return s.fetch(ctx)
}

func (s *KeySource) acquire(ctx context.Context) error {
	select {
	case s.fetching <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrKeysUnavailable, ctx.Err())
	}
}

func (s *KeySource) release() { <-s.fetching }

func (s *KeySource) current() *KeySet {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.keys
}

// due reports whether the rate limit allows a fetch now.
func (s *KeySource) due() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lastAttempt.IsZero() || s.now().Sub(s.lastAttempt) >= s.minInterval
}

// fetch replaces the key set; on failure the previous set stays in use. Keys
// missing from the new set are dropped (tokend withdrew them). The caller
// holds the semaphore.
func (s *KeySource) fetch(ctx context.Context) error {
	keys, err := s.load(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fetches++
	s.lastAttempt = s.now()
	s.lastErr = err
	if err == nil {
		s.install(keys)
	}
	return err
}

// install makes keys current; s.mu is held.
func (s *KeySource) install(keys *KeySet) {
	s.keys, s.loadedAt, s.staleSent = keys, s.now(), false
}

// touch marks the current keys as just confirmed (a LiveSource keep-alive).
func (s *KeySource) touch() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys != nil {
		s.loadedAt = s.now()
	}
}

// set replaces the keys from a push (LiveSource), outside the rate limit.
func (s *KeySource) set(keys *KeySet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.install(keys)
}

func (s *KeySource) load(ctx context.Context) (*KeySet, error) {
	data, err := s.fetcher.FetchJWKS(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: fetch: %w", ErrKeysUnavailable, err)
	}
	keys, err := usableKeySet(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeysUnavailable, err)
	}
	return keys, nil
}

// usableKeySet parses a fetched set and refuses one with no usable key, so a
// broken publication keeps the previous set in use.
func usableKeySet(data []byte) (*KeySet, error) {
	keys, err := ParseKeySet(data)
	if err != nil {
		return nil, err
	}
	if keys.Len() == 0 {
		return nil, errors.New("tokend: key set has no key usable for verification")
	}
	return keys, nil
}
