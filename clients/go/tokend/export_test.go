package tokend

import (
	"sort"

	"google.golang.org/grpc"
)

// RememberedHeaders lists the header segments v remembers, whatever key set
// they belong to (tests of the header memory only).
func RememberedHeaders(v *Verifier) []string {
	remembered := v.headers.current.Load()
	if remembered == nil {
		return nil
	}
	headers := make([]string, 0, len(remembered.headers))
	for header := range remembered.headers {
		headers = append(headers, header)
	}
	sort.Strings(headers)
	return headers
}

// MaxRememberedHeaders is maxRememberedHeaders for the external tests.
const MaxRememberedHeaders = maxRememberedHeaders

// VerifyTimeout is the deadline a queued Verify without a ctx deadline gets.
const VerifyTimeout = verifyTimeout

// WatchedDialOptions are DialOptionsWith(b) plus queued(cc): how many Verify calls
// wait in cc's queue (cancelled ones included until the next batch is taken).
func WatchedDialOptions(b VerifyBatching) ([]grpc.DialOption, func(*grpc.ClientConn) int, error) {
	config, err := b.resolved()
	if err != nil {
		return nil, nil, err
	}
	interceptor := &batchingInterceptor{config: config}
	opts := []grpc.DialOption{grpc.WithDefaultServiceConfig(ServiceConfig),
		grpc.WithChainUnaryInterceptor(interceptor.intercept)}
	queued := func(cc *grpc.ClientConn) int {
		b := interceptor.batcher(cc)
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.queue)
	}
	return opts, queued, nil
}
