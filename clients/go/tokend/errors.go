package tokend

import (
	"errors"
	"fmt"

	"github.com/tokend/tokend/clients/go/tokendv1"
)

// Reason says why a token is not valid. It is the proto enum, so a local
// verdict and the Verify RPC's reason use the same names (REASON_EXPIRED, ...).
type Reason = tokendv1.Reason

// ErrKeysUnavailable is wrapped by the error Verify returns when the JWK Set
// could not be fetched or parsed. It is not a verdict on the token: callers
// should answer "try again later" (HTTP 503), not "unauthorized".
var ErrKeysUnavailable = errors.New("tokend: signing keys unavailable")

// ErrInvalidOption is wrapped by the error VerifyWithOptions returns for
// options that are a programming error (not a verdict on the token).
var ErrInvalidOption = errors.New("tokend: invalid verify option")

// InvalidTokenError reports a token that failed verification. It never holds
// the token itself, so it is safe to log.
type InvalidTokenError struct {
	// Reason is the failed check.
	Reason Reason
	// Detail says more for some reasons (which claim, which header); may be empty.
	Detail string
}

// Error implements error.
func (e *InvalidTokenError) Error() string {
	if e.Detail == "" {
		return "tokend: invalid token: " + e.Reason.String()
	}
	return fmt.Sprintf("tokend: invalid token: %s: %s", e.Reason, e.Detail)
}

// ReasonOf returns the Reason of the *InvalidTokenError in err's chain, or
// REASON_UNSPECIFIED when err is nil or not a verdict on a token.
func ReasonOf(err error) Reason {
	var invalidErr *InvalidTokenError
	if errors.As(err, &invalidErr) {
		return invalidErr.Reason
	}
	return tokendv1.Reason_REASON_UNSPECIFIED
}

func invalid(reason Reason, detail string) error {
	return &InvalidTokenError{Reason: reason, Detail: detail}
}

func malformed(detail string) error {
	return invalid(tokendv1.Reason_REASON_MALFORMED, detail)
}
