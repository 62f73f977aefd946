// Package tokend is the Go client helper for tokend, the gRPC JWT access-token
// service.
//
// It has three parts:
//
//   - [DialMTLS] opens a gRPC connection with mutual TLS; use it with the
//     generated stubs in [github.com/tokend/tokend/clients/go/tokendv1]. Its
//     [DialOptions] send Verify calls that overlap in time as one VerifyMany
//     ([VerifyBatching]); [VerifyMany] verifies many tokens at once.
//   - [Verifier] verifies tokend access tokens in-process under the shared
//     verifier contract (docs/verifier-contract.md; RFC 7515, 7519, 8725, 9068),
//     exactly as the Python LocalVerifier does: strict base64url and JSON, the
//     key the `kid` names and only its algorithm, `typ`, issuer, audience,
//     lifetime and required claims. [VerifyCompact] is its signature-only layer.
//   - Key sources: a fixed [KeySet], a [KeySource] that fetches the JWK Set
//     ([HTTPJWKS], [GRPCJWKS]) and keeps it current, or a [LiveSource] that
//     follows tokend's WatchJwks and WatchRevocations streams, so revoked tokens
//     are refused locally too.
//
// A refused token is an [*InvalidTokenError] whose [Reason] is the proto enum,
// so local and server verdicts compare directly.
package tokend
