/**
 * Why a token was refused, as a value a program can branch on.
 *
 * The reasons are the proto's `Reason` enum, so a local refusal and the Verify RPC's
 * answer read the same. Messages name the rule that failed and never contain the token
 * or values copied from it, so they are safe to log.
 */
import { Reason } from "./gen/tokend/v1/tokend_pb.js";

export { Reason };

const MESSAGES: Readonly<Partial<Record<Reason, string>>> = {
  [Reason.MALFORMED]: "token is malformed",
  [Reason.TOO_LARGE]: "token is too large",
  [Reason.BAD_SIGNATURE]: "token signature does not verify",
  [Reason.UNKNOWN_KEY]: "token names no known key",
  [Reason.DISALLOWED_ALGORITHM]: "token algorithm is not allowed",
  [Reason.WRONG_TYPE]: "token has the wrong type",
  [Reason.MISSING_CLAIM]: "token lacks a required claim",
  [Reason.EXPIRED]: "token has expired",
  [Reason.NOT_YET_VALID]: "token is not yet valid",
  [Reason.ISSUED_IN_FUTURE]: "token was issued in the future",
  [Reason.LIFETIME_TOO_LONG]: "token lifetime exceeds the allowed maximum",
  [Reason.WRONG_AUDIENCE]: "token is not meant for this audience",
  [Reason.WRONG_ISSUER]: "token comes from an unexpected issuer",
  [Reason.MISSING_SCOPE]: "token lacks a required scope",
  [Reason.REVOKED]: "token has been revoked",
  [Reason.CERTIFICATE_MISMATCH]: "token is bound to another certificate",
  [Reason.DELEGATION]: "token delegation is not accepted here",
};

/** A token was refused; `reason` says why, `message` says it for people. */
export class InvalidTokenError extends Error {
  override readonly name = "InvalidTokenError";

  /**
   * @param reason why the token was refused (never `Reason.UNSPECIFIED`)
   * @param message optional detail; must not contain the token or claim values
   * @param options `cause`: the underlying library error, kept for debugging
   */
  constructor(
    readonly reason: Reason,
    message?: string,
    options?: { cause?: unknown },
  ) {
    super(message ?? MESSAGES[reason] ?? "token is invalid", options);
  }

  /** The reason's proto name without its prefix, e.g. "EXPIRED" (for logs and metrics). */
  get reasonName(): string {
    return Reason[this.reason] ?? "UNSPECIFIED";
  }
}
