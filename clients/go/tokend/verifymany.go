package tokend

import (
	"context"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"

	"github.com/tokend/tokend/clients/go/tokendv1"
)

// VerifyMany verifies requests with as few VerifyMany RPCs as it can (chunks of
// MaxVerifyMany requests and at most 60 KiB, at most DefaultMaxInFlight at once), for a caller that already holds many
// tokens. results[i] answers requests[i] exactly as client.Verify would have: a response,
// or the error (a request Verify refuses with INVALID_ARGUMENT gets that same error; a
// whole-call error fails each request of its chunk). Against a tokend without VerifyMany
// (UNIMPLEMENTED) each request goes out as its own Verify. opts apply to every RPC.
func VerifyMany(ctx context.Context, client tokendv1.TokenServiceClient,
	requests []*tokendv1.VerifyRequest, opts ...grpc.CallOption) []VerifyResult {
	results := make([]VerifyResult, len(requests))
	slots := make(chan struct{}, DefaultMaxInFlight)
	var wg sync.WaitGroup
	for start, end := 0, 0; start < len(requests); start = end {
		end = chunkEnd(requests, start, MaxVerifyMany)
		chunk, answers := requests[start:end], results[start:end]
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			verifyChunk(ctx, client, chunk, answers, opts)
		})
	}
	wg.Wait()
	return results
}

// chunkEnd ends the chunk from start after maxCount requests or maxBatchBytes,
// whichever comes first (at least one request). conformance/batching/cases.json holds
// the cases every client's split passes.
func chunkEnd(requests []*tokendv1.VerifyRequest, start, maxCount int) int {
	end, bytes := start, 0
	for end < len(requests) && end-start < maxCount {
		size := entrySize(requests[end])
		if end > start && bytes+size > maxBatchBytes {
			break
		}
		end, bytes = end+1, bytes+size
	}
	return end
}

// entrySize is what request adds to a VerifyManyRequest (field 1: tag, length, message),
// the size a batch's maxBatchBytes counts.
func entrySize(request *tokendv1.VerifyRequest) int {
	return protowire.SizeTag(1) + protowire.SizeBytes(proto.Size(request))
}

func verifyChunk(ctx context.Context, client tokendv1.TokenServiceClient,
	requests []*tokendv1.VerifyRequest, results []VerifyResult, opts []grpc.CallOption) {
	all := append([]grpc.CallOption{grpc.MaxCallRecvMsgSize(recvLimit(requests))}, opts...)
	answer, err := client.VerifyMany(ctx, &tokendv1.VerifyManyRequest{Requests: requests}, all...)
	if status.Code(err) != codes.Unimplemented {
		copy(results, itemResults(requests, answer, err))
		return
	}
	// An older tokend: one Verify per request, DefaultMaxInFlight at a time.
	slots := make(chan struct{}, DefaultMaxInFlight)
	var wg sync.WaitGroup
	for n, request := range requests {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			response, err := client.Verify(ctx, request, opts...)
			results[n] = VerifyResult{Response: response, Err: err}
		})
	}
	wg.Wait()
}

// invalidRequestError is the error a unary Verify refused for this reason returns: status
// INVALID_ARGUMENT with the description as message, and the ErrorInfo and BadRequest
// details tokend sends (docs/errors.md), so ErrorFrom reads it the same.
func invalidRequestError(invalid *tokendv1.InvalidRequest) error {
	field, description, reason := invalid.GetField(), invalid.GetDescription(), invalid.GetReason()
	if reason == "" { // the server names it (proto InvalidRequest.reason)
		reason = "INVALID_REQUEST"
	}
	info := &errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain,
		Metadata: map[string]string{"method": "Verify"}}
	details := []protoadapt.MessageV1{info}
	if field != "" {
		info.Metadata["field"] = field
		details = append(details, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: field, Description: description}}})
	}
	st, err := status.New(codes.InvalidArgument, description).WithDetails(details...)
	if err != nil { // only for details that cannot be marshalled; these always can
		return status.Error(codes.InvalidArgument, description)
	}
	return st.Err()
}
