/**
 * @tokend/client: the typed tokend gRPC client over mutual TLS, a strict local
 * verifier for its access tokens, and cookie helpers for web backends.
 */
export {
  baseUrlOf,
  connect,
  connectInsecureLoopback,
  createChannelCredentials,
  type ChannelCredentials,
  type ConnectOptions,
  type TlsFiles,
  type TokendClient,
  type TokenServiceClient,
} from "./client.js";
export {
  clearTokenCookies,
  readTokenCookies,
  tokenCookies,
  type TokenCookieOptions,
  type TokenCookies,
  type TokenPair,
} from "./cookies.js";
export { InvalidTokenError, Reason } from "./errors.js";
export { remoteKeySet, tokendKeySet, type JwksClient, type KeySet, type KeySetOptions } from "./keys.js";
export {
  AccessTokenVerifier,
  SUPPORTED_ALGORITHMS,
  type AccessTokenClaims,
  type Algorithm,
  type VerifierOptions,
  type VerifyOptions,
} from "./verifier.js";
export * from "./gen/tokend/v1/tokend_pb.js";
export { Code, ConnectError } from "@connectrpc/connect";
