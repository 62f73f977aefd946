package tokend

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the ErrorInfo domain of every error tokend itself answers.
const ErrorDomain = "tokend.dev"

// Error is a failed tokend call with the details the server sent
// (google.rpc.Status in the grpc-status-details-bin trailer; docs/errors.md).
// Match on Reason, never on Message.
//
// Errors tokend did not answer itself (a deadline, a failed connection, a
// proxy) carry no details: Reason is then empty.
type Error struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Message is the server's text, for people.
	Message string
	// Reason is the stable ErrorInfo reason (RATE_LIMITED, INVALID_SUBJECT, ...).
	Reason string
	// Domain is the ErrorInfo domain (ErrorDomain).
	Domain string
	// Metadata is the ErrorInfo metadata ("method", and "field" for a refused
	// field); it never holds a secret.
	Metadata map[string]string
	// FieldViolations name the request fields at fault (INVALID_ARGUMENT).
	FieldViolations []FieldViolation
	// RetryDelay is the RetryInfo delay: a retry after it may succeed. Zero when
	// the server sent no RetryInfo (it sends at least 1 ms when it does).
	RetryDelay time.Duration

	status *status.Status
}

// FieldViolation is one request field at fault, named as the proto spells it.
type FieldViolation struct {
	Field       string
	Description string
}

// Error implements error.
func (e *Error) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("tokend: %s: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("tokend: %s (%s): %s", e.Code, e.Reason, e.Message)
}

// GRPCStatus keeps status.FromError and status.Code working on an *Error.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// ErrorFrom turns the error of a TokenService call into an *Error. It returns
// nil when err is nil or carries no gRPC status (e.g. a dial error). An *Error
// already in err's chain is returned as it is.
func ErrorFrom(err error) *Error {
	if err == nil {
		return nil
	}
	var typed *Error
	if errors.As(err, &typed) {
		return typed
	}
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	out := &Error{Code: st.Code(), Message: st.Message(), status: st}
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			out.Reason, out.Domain, out.Metadata = d.GetReason(), d.GetDomain(), d.GetMetadata()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				out.FieldViolations = append(out.FieldViolations,
					FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
			}
		case *errdetails.RetryInfo:
			out.RetryDelay = d.GetRetryDelay().AsDuration()
		}
	}
	return out
}

// ErrorReason returns the ErrorInfo reason of err ("" when it has none).
func ErrorReason(err error) string {
	if typed := ErrorFrom(err); typed != nil {
		return typed.Reason
	}
	return ""
}
