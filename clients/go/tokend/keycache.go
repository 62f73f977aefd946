package tokend

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// keyCache holds the current key set by kid and refetches it when a token
// names an unknown kid, at most once per minInterval: a flood of tokens with
// made-up kids must not turn into a flood of JWKS requests.
type keyCache struct {
	source      JWKSSource
	parse       func([]byte) (map[string]verificationKey, error)
	minInterval time.Duration
	now         func() time.Time

	// fetching is a one-slot semaphore: one fetch at a time, and waiting for
	// it honours the caller's context (a sync.Mutex would not).
	fetching chan struct{}

	mu          sync.RWMutex
	keys        map[string]verificationKey // nil until a fetch succeeds
	lastAttempt time.Time                  // zero before the first fetch
	lastErr     error                      // of the last fetch
}

func newKeyCache(source JWKSSource, parse func([]byte) (map[string]verificationKey, error),
	minInterval time.Duration, now func() time.Time) *keyCache {
	return &keyCache{
		source: source, parse: parse, minInterval: minInterval, now: now,
		fetching: make(chan struct{}, 1),
	}
}

// lookup returns the key named kid. found is false when the kid is unknown
// even after any refetch the rate limit allowed. err (wrapping
// ErrKeysUnavailable) means no answer could be had: the fetch just made
// failed, or no key set was ever loaded.
func (c *keyCache) lookup(ctx context.Context, kid string) (key verificationKey, found bool, err error) {
	if key, ok := c.cached(kid); ok {
		return key, true, nil
	}
	if err := c.acquire(ctx); err != nil {
		return verificationKey{}, false, err
	}
	defer c.release()
	// Another caller may have fetched while this one waited.
	if key, ok := c.cached(kid); ok {
		return key, true, nil
	}
	if c.due() {
		if err := c.fetch(ctx); err != nil {
			return verificationKey{}, false, err
		}
	} else if err := c.unavailable(); err != nil {
		return verificationKey{}, false, err
	}
	key, ok := c.cached(kid)
	return key, ok, nil
}

// refresh fetches the key set now, regardless of the rate limit.
func (c *keyCache) refresh(ctx context.Context) error {
	if err := c.acquire(ctx); err != nil {
		return err
	}
	defer c.release()
	return c.fetch(ctx)
}

func (c *keyCache) acquire(ctx context.Context) error {
	select {
	case c.fetching <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrKeysUnavailable, ctx.Err())
	}
}

func (c *keyCache) release() { <-c.fetching }

func (c *keyCache) cached(kid string) (verificationKey, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	key, ok := c.keys[kid]
	return key, ok
}

// due reports whether the rate limit allows a fetch now. Failed fetches count
// too, so an unreachable source is not hammered either.
func (c *keyCache) due() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.lastAttempt.IsZero() || c.now().Sub(c.lastAttempt) >= c.minInterval
}

// unavailable is the last fetch error while no key set was ever loaded: until
// then an unknown kid says nothing about the token.
func (c *keyCache) unavailable() error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.keys == nil {
		return c.lastErr
	}
	return nil
}

// fetch replaces the key set; on failure the previous set stays in use. Keys
// missing from the new set are dropped (tokend withdrew them).
func (c *keyCache) fetch(ctx context.Context) error {
	keys, err := c.load(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastAttempt = c.now()
	c.lastErr = err
	if err == nil {
		c.keys = keys
	}
	return err
}

func (c *keyCache) load(ctx context.Context) (map[string]verificationKey, error) {
	data, err := c.source.FetchJWKS(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: fetch: %w", ErrKeysUnavailable, err)
	}
	keys, err := c.parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeysUnavailable, err)
	}
	return keys, nil
}
