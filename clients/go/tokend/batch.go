// Hand-written because grpc-go does not batch calls: a unary interceptor (in DialOptions)
// sends Verify calls that overlap in time as one VerifyMany, transparently to callers of
// the generated client's Verify (docs/clients.md, "Verify calls are batched"; issue 17).

package tokend

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tokend/tokend/clients/go/tokendv1"
)

const (
	// DefaultMaxInFlight is VerifyBatching.MaxInFlight's default.
	DefaultMaxInFlight = 4
	// DefaultMaxBatch is VerifyBatching.MaxBatch's default.
	DefaultMaxBatch = 64
	// MaxVerifyMany is the most requests one VerifyMany carries (the server's limit).
	MaxVerifyMany = 256

	verifyMethod     = tokendv1.TokenService_Verify_FullMethodName
	verifyManyMethod = tokendv1.TokenService_VerifyMany_FullMethodName
	// Verify's deadline in ServiceConfig (a test keeps them equal): a queued call
	// without a ctx deadline gets it, as a unary call would.
	verifyTimeout = 5 * time.Second
	// A batch stays under this many request bytes, as every client's does: within the
	// 64 KiB any tokend accepts in one message (app.py MAX_MESSAGE_BYTES), whatever its
	// VerifyMany limit; one larger request goes out on its own.
	maxBatchBytes = 60 * 1024
	// The answer to one request takes at most twice its size plus this (tokend's own
	// bound: claims as a protobuf Struct), which sizes VerifyMany's receive limit.
	perAnswerBytes = 2 * 1024
	minRecvBytes   = 4 * 1024 * 1024 // grpc-go's default receive limit
)

// VerifyBatching tunes how a connection batches Verify calls (docs/clients.md). The zero
// value is the default: batching on, at most DefaultMaxInFlight Verify/VerifyMany RPCs in
// flight, at most DefaultMaxBatch requests per VerifyMany.
//
// A Verify call that finds fewer than MaxInFlight RPCs in flight goes out at once as a
// plain unary Verify, unchanged; one that finds them all busy waits for the next free
// slot, and every call waiting then goes out together as one VerifyMany. There is no
// timer: a lone call never waits. A call that carries CallOptions of its own or outgoing
// metadata in its ctx goes out on its own, since a shared RPC cannot carry them.
type VerifyBatching struct {
	// Disabled sends every Verify as its own unary call, as before VerifyMany.
	Disabled bool
	// MaxInFlight bounds the Verify and VerifyMany RPCs this connection has in flight
	// while batching (0: DefaultMaxInFlight; 1 to 1024).
	MaxInFlight int
	// MaxBatch bounds the requests of one VerifyMany (0: DefaultMaxBatch; 1 to MaxVerifyMany,
	// as in the other tokend clients).
	MaxBatch int
	// Logger notes, once per connection, that the server lacks VerifyMany (an older
	// tokend) and Verify calls go out one by one from then on; nil means slog.Default().
	Logger *slog.Logger
}

func (b VerifyBatching) resolved() (VerifyBatching, error) {
	if b.MaxInFlight == 0 {
		b.MaxInFlight = DefaultMaxInFlight
	}
	if b.MaxBatch == 0 {
		b.MaxBatch = DefaultMaxBatch
	}
	if b.MaxInFlight < 1 || b.MaxInFlight > 1024 {
		return b, fmt.Errorf("tokend: VerifyBatching.MaxInFlight %d: want 1 to 1024", b.MaxInFlight)
	}
	if b.MaxBatch < 1 || b.MaxBatch > MaxVerifyMany {
		return b, fmt.Errorf("tokend: VerifyBatching.MaxBatch %d: want 1 to %d", b.MaxBatch, MaxVerifyMany)
	}
	if b.Logger == nil {
		b.Logger = slog.Default()
	}
	return b, nil
}

// WithVerifyBatching is a DialMTLS option that replaces the default VerifyBatching.
// grpc.NewClient ignores it: there, use DialOptionsWith.
func WithVerifyBatching(b VerifyBatching) grpc.DialOption {
	return batchingOption{config: b}
}

type batchingOption struct {
	grpc.EmptyDialOption
	config VerifyBatching
}

// batchingInterceptor holds one batcher per connection it serves (normally one: each
// DialOptions call makes a new interceptor); a closed connection's is dropped with it.
type batchingInterceptor struct {
	config VerifyBatching
	conns  sync.Map // weak.Pointer[grpc.ClientConn] -> *batcher
}

func (i *batchingInterceptor) batcher(cc *grpc.ClientConn) *batcher {
	key := weak.Make(cc)
	if found, ok := i.conns.Load(key); ok {
		return found.(*batcher)
	}
	found, loaded := i.conns.LoadOrStore(key, &batcher{config: i.config})
	if !loaded {
		runtime.AddCleanup(cc, func(k weak.Pointer[grpc.ClientConn]) { i.conns.Delete(k) }, key)
	}
	return found.(*batcher)
}

func (i *batchingInterceptor) intercept(ctx context.Context, method string, req, reply any,
	cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	switch method {
	case verifyManyMethod: // a caller's own VerifyMany also reveals an older server
		err := invoker(ctx, method, req, reply, cc, opts...)
		if status.Code(err) == codes.Unimplemented {
			i.batcher(cc).fallBack()
		}
		return err
	case verifyMethod:
		request, isRequest := req.(*tokendv1.VerifyRequest)
		response, isResponse := reply.(*tokendv1.VerifyResponse)
		if isRequest && isResponse && shareable(ctx, opts) {
			return i.batcher(cc).verify(ctx, request, response, cc, invoker, opts)
		}
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// shareable: nothing of the call would be lost in a VerifyMany sent for several callers.
func shareable(ctx context.Context, opts []grpc.CallOption) bool {
	for _, opt := range opts {
		if _, static := opt.(grpc.StaticMethodCallOption); !static {
			return false
		}
	}
	md, ok := metadata.FromOutgoingContext(ctx)
	return !ok || md.Len() == 0
}

// batcher batches one connection's Verify calls. Invariant (under mu): when the queue
// holds a live call, inFlight == MaxInFlight, so a call that finds a free slot sends at once.
type batcher struct {
	config   VerifyBatching
	mu       sync.Mutex
	queue    []*waiting
	inFlight int
	unary    atomic.Bool // the server lacks VerifyMany: unary for good
	noted    sync.Once
}

// waiting is a queued Verify call.
type waiting struct {
	request   *tokendv1.VerifyRequest
	size      int
	deadline  time.Time
	done      chan outcome // buffered: delivery never blocks, even for a caller gone
	cancelled bool         // under batcher.mu: left before it was sent
}

type outcome struct {
	response *tokendv1.VerifyResponse
	err      error
	unary    bool // send it yourself as a unary Verify (the server lacks VerifyMany)
}

func (b *batcher) verify(ctx context.Context, request *tokendv1.VerifyRequest,
	reply *tokendv1.VerifyResponse, cc *grpc.ClientConn, invoker grpc.UnaryInvoker,
	opts []grpc.CallOption) error {
	if b.unary.Load() {
		return invoker(ctx, verifyMethod, request, reply, cc, opts...)
	}
	b.mu.Lock()
	if b.inFlight < b.config.MaxInFlight { // a free slot: this call goes out now, unchanged
		b.inFlight++
		b.mu.Unlock()
		defer b.release(cc, invoker)
		return invoker(ctx, verifyMethod, request, reply, cc, opts...)
	}
	deadline, hasDeadline := ctx.Deadline()
	if !hasDeadline {
		var cancel context.CancelFunc
		deadline = time.Now().Add(verifyTimeout)
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	w := &waiting{request: request, size: entrySize(request), deadline: deadline, done: make(chan outcome, 1)}
	b.queue = append(b.queue, w)
	b.mu.Unlock()
	select {
	case got := <-w.done:
		switch {
		case got.unary:
			return invoker(ctx, verifyMethod, request, reply, cc, opts...)
		case got.err != nil:
			return got.err
		}
		proto.Reset(reply)
		proto.Merge(reply, got.response)
		return nil
	case <-ctx.Done(): // dropped from the queue, or its answer ignored if already sent
		b.mu.Lock()
		w.cancelled = true
		b.mu.Unlock()
		return status.FromContextError(ctx.Err()).Err()
	}
}

// release frees the caller's slot and sends what waits while slots are free.
func (b *batcher) release(cc *grpc.ClientConn, invoker grpc.UnaryInvoker) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inFlight--
	for b.inFlight < b.config.MaxInFlight {
		batch := b.take()
		if len(batch) == 0 {
			return
		}
		b.inFlight++
		go b.send(batch, cc, invoker)
	}
}

// take removes up to MaxBatch live calls (and the cancelled ones before them) from the
// queue, within maxBatchBytes unless it is a single call. Under mu.
func (b *batcher) take() []*waiting {
	var batch []*waiting
	bytes, next := 0, 0
	for ; next < len(b.queue) && len(batch) < b.config.MaxBatch; next++ {
		w := b.queue[next]
		if w.cancelled {
			continue
		}
		if len(batch) > 0 && bytes+w.size > maxBatchBytes {
			break
		}
		batch, bytes = append(batch, w), bytes+w.size
	}
	kept := copy(b.queue, b.queue[next:])
	clear(b.queue[kept:])
	b.queue = b.queue[:kept]
	return batch
}

// send makes one RPC for batch, with the latest of its deadlines, and answers each call.
func (b *batcher) send(batch []*waiting, cc *grpc.ClientConn, invoker grpc.UnaryInvoker) {
	defer b.release(cc, invoker)
	if b.unary.Load() { // learnt while these waited: no VerifyMany that would fail again
		for _, w := range batch {
			w.done <- outcome{unary: true}
		}
		return
	}
	latest := batch[0].deadline
	for _, w := range batch[1:] {
		if w.deadline.After(latest) {
			latest = w.deadline
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), latest)
	defer cancel()
	if len(batch) == 1 { // exactly one request: a plain unary Verify
		response := new(tokendv1.VerifyResponse)
		if err := invoker(ctx, verifyMethod, batch[0].request, response, cc, grpc.StaticMethod()); err != nil {
			batch[0].done <- outcome{err: err}
			return
		}
		batch[0].done <- outcome{response: response}
		return
	}
	requests := make([]*tokendv1.VerifyRequest, len(batch))
	for n, w := range batch {
		requests[n] = w.request
	}
	answer := new(tokendv1.VerifyManyResponse)
	err := invoker(ctx, verifyManyMethod, &tokendv1.VerifyManyRequest{Requests: requests}, answer, cc,
		grpc.StaticMethod(), grpc.MaxCallRecvMsgSize(recvLimit(requests)))
	if status.Code(err) == codes.Unimplemented {
		b.fallBack()
		for _, w := range batch {
			w.done <- outcome{unary: true}
		}
		return
	}
	for n, result := range itemResults(requests, answer, err) {
		batch[n].done <- outcome{response: result.Response, err: result.Err}
	}
}

func (b *batcher) fallBack() {
	b.unary.Store(true)
	b.noted.Do(func() {
		b.config.Logger.Info("tokend does not implement VerifyMany (an older server): " +
			"this connection sends each Verify on its own from now on")
	})
}

// recvLimit bounds VerifyMany's answer as tokend does: each valid token's claims take at
// most twice its request's size, plus perAnswerBytes.
func recvLimit(requests []*tokendv1.VerifyRequest) int {
	limit := 0
	for _, r := range requests {
		limit += 2 * (proto.Size(r) + perAnswerBytes)
	}
	return max(limit, minRecvBytes)
}

// VerifyResult is the answer to one request of VerifyMany: exactly one of Response and
// Err is set, as Verify would have returned them.
type VerifyResult struct {
	Response *tokendv1.VerifyResponse
	Err      error
}

// itemResults turns a VerifyMany's answer (or whole-call error) into one result per
// request: `invalid` becomes the error a unary Verify's INVALID_ARGUMENT would be.
func itemResults(requests []*tokendv1.VerifyRequest, answer *tokendv1.VerifyManyResponse, err error) []VerifyResult {
	out := make([]VerifyResult, len(requests))
	if err == nil && len(answer.GetResults()) != len(requests) {
		err = status.Errorf(codes.Internal, "tokend answered VerifyMany with %d results for %d requests",
			len(answer.GetResults()), len(requests))
	}
	for n := range out {
		switch {
		case err != nil:
			out[n].Err = err
		case answer.GetResults()[n].GetResponse() != nil:
			out[n].Response = answer.GetResults()[n].GetResponse()
		case answer.GetResults()[n].GetInvalid() != nil:
			out[n].Err = invalidRequestError(answer.GetResults()[n].GetInvalid())
		default:
			out[n].Err = status.Error(codes.Internal, "tokend answered a VerifyMany request with neither response nor invalid")
		}
	}
	return out
}
