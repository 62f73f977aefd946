package tokend

import (
	"context"
	"crypto/rand"
	_ "embed" // the shared service config
	"encoding/base64"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	"github.com/tokend/tokend/clients/go/tokendv1"
)

// ServiceConfig is the gRPC service config every tokend client uses (a copy of the
// repository's clients/service-config.json; a test keeps them equal): calls that end
// UNAVAILABLE are retried by gRPC itself, up to 4 attempts with exponential backoff
// and jitter, and each method has a default deadline (5 s for Verify, GetJwks and
// Revoke, 10 s for Issue and Refresh) that a shorter ctx deadline overrides. Use it
// through DialOptions: on its own it would also retry a Refresh sent without an
// IdempotencyKey, which RefreshKeyInterceptor prevents by giving each one a key.
//
//go:embed service-config.json
var ServiceConfig string

const refreshMethod = "/tokend.v1.TokenService/Refresh"

// DialOptions are the options DialMTLS applies: ServiceConfig, keepalive pings every
// 60 s during calls (within what tokend accepts: grpc.min_client_ping_interval), and
// RefreshKeyInterceptor. Pass them to grpc.NewClient when dialling some other way,
// e.g. plaintext on loopback in development:
//
//	grpc.NewClient(addr, append(tokend.DialOptions(),
//		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
//
// They also batch Verify calls that overlap in time into VerifyMany (VerifyBatching, with
// its defaults; DialOptionsWith tunes or disables it). Each DialOptions result batches
// per connection it serves.
func DialOptions() []grpc.DialOption {
	opts, err := DialOptionsWith(VerifyBatching{})
	if err != nil {
		panic(err) // the zero VerifyBatching is valid
	}
	return opts
}

// DialOptionsWith is DialOptions with batching as given; an error only for out-of-range
// VerifyBatching values.
func DialOptionsWith(batching VerifyBatching) ([]grpc.DialOption, error) {
	interceptors := []grpc.UnaryClientInterceptor{RefreshKeyInterceptor}
	if !batching.Disabled {
		config, err := batching.resolved()
		if err != nil {
			return nil, err
		}
		interceptors = append(interceptors, (&batchingInterceptor{config: config}).intercept)
	}
	return []grpc.DialOption{
		grpc.WithDefaultServiceConfig(ServiceConfig),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: 60 * time.Second, Timeout: 20 * time.Second}),
		grpc.WithChainUnaryInterceptor(interceptors...),
	}, nil
}

// RefreshKeyInterceptor gives a Refresh sent without an IdempotencyKey a fresh one,
// so the retries gRPC makes of it (they resend the same message) carry one key and
// tokend answers a retry of a Refresh it had already committed with that answer
// rather than revoking the family as reuse. The caller's message is not modified.
// A caller that retries Refresh itself must reuse its own key: set it with
// NewIdempotencyKey once per logical Refresh.
func RefreshKeyInterceptor(ctx context.Context, method string, req, reply any,
	cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if request, ok := req.(*tokendv1.RefreshRequest); ok && method == refreshMethod &&
		request.GetIdempotencyKey() == "" {
		keyed := proto.Clone(request).(*tokendv1.RefreshRequest)
		keyed.IdempotencyKey = NewIdempotencyKey()
		req = keyed
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// NewIdempotencyKey returns a fresh RefreshRequest.IdempotencyKey: 24 random bytes,
// base64url (32 characters), as the Python client makes them.
func NewIdempotencyKey() string {
	var raw [24]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(raw[:])
}
