/**
 * @tokend/client: the typed tokend gRPC client over mutual TLS, a strict local
 * verifier for its access tokens, and cookie helpers for web backends.
 */
export {
  baseUrlOf,
  certificateBinding,
  connect,
  connectInsecureLoopback,
  createChannelCredentials,
  exchangeToken,
  issueToken,
  type BindTo,
  type ChannelCredentials,
  type ExchangeParams,
  type IssueParams,
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
export { MAX_VERIFY_BATCH, VerifyBatcher, type BatchOptions, type VerifyInit, type VerifyResult, type VerifyRpcs } from "./batch.js";
export { InvalidTokenError, Reason } from "./errors.js";
export { ERROR_DOMAIN, invalidVerifyRequestError, TokendError, tokendErrorFrom, type FieldViolation } from "./rpcerrors.js";
export {
  certificateThumbprint,
  checkConfirmation,
  isThumbprint,
  MAX_CERTIFICATE_DER_BYTES,
  presenterFromTlsSocket,
  presenterFromXfcc,
  X5T_S256,
  type Certificate,
} from "./binding.js";
export { actors, checkDelegation, MAX_ACT_DEPTH, type Delegation } from "./delegation.js";
export {
  methodRules,
  newIdempotencyKey,
  SERVICE_CONFIG,
  withServiceConfig,
  type MethodRules,
  type ServiceConfig,
} from "./retries.js";
export {
  b64urlDecode,
  b64urlEncode,
  JwkSet,
  MAX_COMPACT_BYTES,
  verifyCompact,
  type JwksInput,
  type PublicKey,
} from "./jose.js";
export { StrictJsonError, strictJsonParse } from "./json.js";
export {
  KeySource,
  KeySourceError,
  remoteKeySet,
  tokendKeySet,
  type FetchJwks,
  type JwksClient,
  type KeySet,
  type KeySetOptions,
} from "./keys.js";
export {
  LiveSource,
  RevocationSet,
  type LiveSourceOptions,
  type StalenessPolicy,
  type WatchingClient,
} from "./live.js";
export {
  AccessTokenVerifier,
  SUPPORTED_ALGORITHMS,
  Verifier,
  type AccessTokenClaims,
  type Algorithm,
  type RevocationChecker,
  type VerifierOptions,
  type VerifyOptions,
} from "./verifier.js";
export * from "./gen/tokend/v1/tokend_pb.js";
export { Code, ConnectError } from "@connectrpc/connect";
