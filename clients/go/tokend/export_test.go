package tokend

import (
	"sort"
	"time"

	"google.golang.org/grpc"

	"github.com/tokend/tokend/clients/go/tokendv1"
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

// SplitVerifyMany is VerifyMany's split of requests into calls, with maxCount in place of
// MaxVerifyMany: each chunk's indexes in order (conformance/batching/cases.json).
func SplitVerifyMany(requests []*tokendv1.VerifyRequest, maxCount int) [][]int {
	chunks := [][]int{}
	for start, end := 0, 0; start < len(requests); start = end {
		end = chunkEnd(requests, start, maxCount)
		chunk := make([]int, 0, end-start)
		for n := start; n < end; n++ {
			chunk = append(chunk, n)
		}
		chunks = append(chunks, chunk)
	}
	return chunks
}

// QueueBatches queues requests on a batcher with MaxBatch maxBatch, as Verify calls that
// found every slot taken, and takes batches until the queue is empty: each batch's indexes.
func QueueBatches(requests []*tokendv1.VerifyRequest, maxBatch int) [][]int {
	b := &batcher{config: VerifyBatching{MaxInFlight: 1, MaxBatch: maxBatch}}
	index := map[*waiting]int{}
	for n, request := range requests {
		w := &waiting{request: request, size: entrySize(request), deadline: time.Now().Add(time.Hour)}
		index[w] = n
		b.queue = append(b.queue, w)
	}
	batches := [][]int{}
	for batch := b.take(); len(batch) > 0; batch = b.take() {
		indexes := make([]int, 0, len(batch))
		for _, w := range batch {
			indexes = append(indexes, index[w])
		}
		batches = append(batches, indexes)
	}
	return batches
}

// ItemError is the error VerifyMany gives the request whose result is invalid.
func ItemError(invalid *tokendv1.InvalidRequest) error {
	request := &tokendv1.VerifyRequest{}
	answer := &tokendv1.VerifyManyResponse{Results: []*tokendv1.VerifyManyResult{
		{Outcome: &tokendv1.VerifyManyResult_Invalid{Invalid: invalid}}}}
	return itemResults([]*tokendv1.VerifyRequest{request}, answer, nil)[0].Err
}
