// Package tokend is the Go client helper for tokend, the gRPC JWT access-token
// service.
//
// It has two parts:
//
//   - [DialMTLS] opens a gRPC connection with mutual TLS; use it with the
//     generated stubs in [github.com/tokend/tokend/clients/go/tokendv1].
//   - [Verifier] verifies tokend access tokens in-process (RFC 9068, RFC 8725)
//     against the published JWK Set, fetched from the HTTP JWKS endpoint
//     ([HTTPJWKS]) or the GetJwks RPC ([GRPCJWKS]). It checks the signature with
//     the key the `kid` names and only that key's algorithm, the `typ` header,
//     issuer, audience, lifetime and required claims. Revocation is not checked
//     locally: call the Verify RPC where a revoked token must be refused at once.
//
// A refused token is an [*InvalidTokenError] whose [Reason] is the proto enum,
// so local and server verdicts compare directly.
package tokend
