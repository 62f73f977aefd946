package tokend_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tokend/tokend/clients/go/tokend"
)

func TestErrorFromReadsEveryDetail(t *testing.T) {
	st, err := status.New(codes.InvalidArgument, "subject is required").WithDetails(
		&errdetails.ErrorInfo{Reason: "INVALID_SUBJECT", Domain: tokend.ErrorDomain,
			Metadata: map[string]string{"method": "Issue", "field": "subject"}},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "subject", Description: "subject is required"}}},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)},
	)
	if err != nil {
		t.Fatal(err)
	}
	wrapped := fmt.Errorf("issuing: %w", st.Err())
	got := tokend.ErrorFrom(wrapped)
	if got == nil || got.Code != codes.InvalidArgument || got.Reason != "INVALID_SUBJECT" ||
		got.Domain != tokend.ErrorDomain || got.Metadata["field"] != "subject" ||
		len(got.FieldViolations) != 1 || got.FieldViolations[0].Field != "subject" ||
		got.RetryDelay != 1500*time.Millisecond {
		t.Fatalf("ErrorFrom = %+v", got)
	}
	if status.Code(got) != codes.InvalidArgument || tokend.ErrorReason(wrapped) != "INVALID_SUBJECT" {
		t.Fatalf("status.Code = %v, ErrorReason = %q", status.Code(got), tokend.ErrorReason(wrapped))
	}
	var typed *tokend.Error
	if !errors.As(got, &typed) || tokend.ErrorFrom(got) != got {
		t.Fatal("an *Error is not found again in its own chain")
	}
}

func TestErrorFromWithoutDetails(t *testing.T) {
	if tokend.ErrorFrom(nil) != nil || tokend.ErrorFrom(errors.New("dial failed")) != nil {
		t.Fatal("an error without a gRPC status became an *Error")
	}
	got := tokend.ErrorFrom(status.Error(codes.DeadlineExceeded, "deadline"))
	if got == nil || got.Reason != "" || got.RetryDelay != 0 || got.Code != codes.DeadlineExceeded {
		t.Fatalf("ErrorFrom = %+v", got)
	}
	if got := tokend.ErrorFrom(context.Canceled); got != nil {
		t.Fatalf("ErrorFrom(context.Canceled) = %+v, want nil (no gRPC status)", got)
	}
}
