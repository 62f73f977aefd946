/**
 * Strict local verification of tokend access tokens (RFC 9068, RFC 8725) with jose.
 *
 * jose does the JWS work and the standard claim checks; this module pins the options
 * that must never be left to the token (algorithm allowlist, `typ`, issuer, audience,
 * required claims), binds the algorithm to the key's own `alg`, adds the checks jose
 * leaves to the application (`iat` in the future, lifetime, claim types, scopes) and
 * turns every refusal into an {@link InvalidTokenError} with a {@link Reason}.
 *
 * Revocation is not checked here: call tokend's Verify RPC where it matters.
 */
import { errors, jwtVerify, type JWTHeaderParameters, type JWTPayload, type FlattenedJWSInput } from "jose";
import { InvalidTokenError, Reason } from "./errors.js";
import type { KeySet } from "./keys.js";

/** The signature algorithms tokend signs with; anything else (none, HS*) is refused. */
export const SUPPORTED_ALGORITHMS = ["ES256", "RS256", "PS256", "EdDSA"] as const;
/** One of {@link SUPPORTED_ALGORITHMS}. */
export type Algorithm = (typeof SUPPORTED_ALGORITHMS)[number];

/** Claims every tokend access token carries (RFC 9068 section 2.2), plus tokend's own. */
export interface AccessTokenClaims extends JWTPayload {
  iss: string;
  sub: string;
  aud: string | string[];
  exp: number;
  iat: number;
  jti: string;
  /** Space-separated scopes, when the token has any. */
  scope?: string;
  /** The caller that asked for the token (its SPIFFE ID under mutual TLS). */
  client_id?: string;
}

/** How an {@link AccessTokenVerifier} decides. */
export interface VerifierOptions {
  /** Where the public keys come from: remoteKeySet(url) or tokendKeySet(client). */
  keys: KeySet;
  /** tokend's issuer; `iss` must equal it exactly. */
  issuer: string;
  /** The audience(s) this service answers to; `aud` must contain one (required). */
  audience: string | readonly string[];
  /** Allowed algorithms, a subset of {@link SUPPORTED_ALGORITHMS} (default: all four). */
  algorithms?: readonly Algorithm[];
  /** Clock skew allowed on exp/nbf/iat, 0-300 s (default 30). */
  clockToleranceSeconds?: number;
  /** When set, `exp - iat` above this many seconds is refused. */
  maxLifetimeSeconds?: number;
  /** Tokens longer than this are refused before any parsing (default 8192, as tokend). */
  maxTokenBytes?: number;
}

/** Per-call options for {@link AccessTokenVerifier.verify}. */
export interface VerifyOptions {
  /** Overrides the verifier's audience for this call. */
  audience?: string | readonly string[];
  /** Scopes that must all be in the token's `scope` claim. */
  requiredScopes?: readonly string[];
  /** The time to check against (default: now). */
  now?: Date;
}

const REQUIRED_CLAIMS = ["exp", "iat", "iss", "sub", "aud", "jti"];
const REQUIRED_TYP = "at+jwt"; // jose compares case-insensitively, with or without "application/"
const MAX_CLOCK_TOLERANCE_SECONDS = 300;
const DEFAULT_MAX_TOKEN_BYTES = 8192;

/** Verifies tokend access tokens in-process; reuse one instance (it caches keys). */
export class AccessTokenVerifier {
  readonly #keys: KeySet;
  readonly #issuer: string;
  readonly #audience: string[];
  readonly #algorithms: Algorithm[];
  readonly #clockTolerance: number;
  readonly #maxLifetime: number | undefined;
  readonly #maxTokenBytes: number;

  /** Checks the options once; a bad configuration throws TypeError or RangeError. */
  constructor(options: VerifierOptions) {
    if (typeof options.keys !== "function" || typeof options.keys.jwks !== "function") {
      throw new TypeError("keys must come from remoteKeySet() or tokendKeySet()");
    }
    this.#keys = options.keys;
    this.#issuer = nonEmptyString(options.issuer, "issuer");
    this.#audience = audienceList(options.audience);
    this.#algorithms = algorithmList(options.algorithms ?? SUPPORTED_ALGORITHMS);
    this.#clockTolerance = inRange(
      options.clockToleranceSeconds ?? 30, 0, MAX_CLOCK_TOLERANCE_SECONDS, "clockToleranceSeconds");
    this.#maxLifetime = options.maxLifetimeSeconds === undefined
      ? undefined
      : inRange(options.maxLifetimeSeconds, 1, Number.MAX_SAFE_INTEGER, "maxLifetimeSeconds");
    this.#maxTokenBytes = inRange(options.maxTokenBytes ?? DEFAULT_MAX_TOKEN_BYTES, 1, 1 << 20, "maxTokenBytes");
  }

  /**
   * Returns the claims of a valid token. Throws {@link InvalidTokenError} for a token
   * that is refused; any other error (keys unreachable, for instance) means no verdict
   * could be reached, and the token must be refused all the same.
   */
  async verify(token: string, options: VerifyOptions = {}): Promise<AccessTokenClaims> {
    if (typeof token !== "string") {
      throw new TypeError("token must be a string");
    }
    // Size first, before any decoding: bounds the work a hostile token can cause.
    if (Buffer.byteLength(token, "utf8") > this.#maxTokenBytes) {
      throw new InvalidTokenError(Reason.TOO_LARGE);
    }
    const now = options.now ?? new Date();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.#resolveKey, {
        algorithms: this.#algorithms,
        typ: REQUIRED_TYP,
        issuer: this.#issuer,
        audience: options.audience === undefined ? this.#audience : audienceList(options.audience),
        requiredClaims: REQUIRED_CLAIMS,
        clockTolerance: this.#clockTolerance,
        currentDate: now,
      }));
    } catch (error) {
      throw toInvalidToken(error);
    }
    return this.#checkRemainingClaims(payload, now, options.requiredScopes ?? []);
  }

  /**
   * Resolves the key the header's `kid` names and insists that the header's `alg` is
   * that key's own `alg` (RFC 8725 section 3.1): a JWK without `alg`, or a token that
   * uses an RSA key with PS256 when it was published for RS256, is refused.
   */
  readonly #resolveKey = async (header: JWTHeaderParameters, token: FlattenedJWSInput) => {
    const kid = header.kid;
    if (typeof kid !== "string" || kid === "") {
      throw new InvalidTokenError(Reason.UNKNOWN_KEY, "token header names no key (kid)");
    }
    let key;
    try {
      key = await this.#keys(header, token);
    } catch (error) {
      // jose reports "no key for this kid and alg" the same way as "no such kid".
      if (error instanceof errors.JWKSNoMatchingKey && this.#publishedKey(kid) !== undefined) {
        throw new InvalidTokenError(Reason.DISALLOWED_ALGORITHM, "token alg is not its key's algorithm");
      }
      throw error;
    }
    if (this.#publishedKey(kid)?.alg !== header.alg) {
      throw new InvalidTokenError(Reason.DISALLOWED_ALGORITHM, "token alg is not its key's algorithm");
    }
    return key;
  };

  #publishedKey(kid: string) {
    const matches = this.#keys.jwks()?.keys.filter((jwk) => jwk.kid === kid) ?? [];
    // Two keys under one kid would make the binding ambiguous: treat it as no key.
    return matches.length === 1 ? matches[0] : undefined;
  }

  #checkRemainingClaims(payload: JWTPayload, now: Date, requiredScopes: readonly string[]): AccessTokenClaims {
    checkIdentifiers(payload);
    const claims = payload as AccessTokenClaims;
    const nowSeconds = Math.floor(now.getTime() / 1000);
    // RFC 7519 section 4.1.6: iat later than now means a bad clock or a forged token.
    if (claims.iat > nowSeconds + this.#clockTolerance) {
      throw new InvalidTokenError(Reason.ISSUED_IN_FUTURE);
    }
    if (this.#maxLifetime !== undefined && claims.exp - claims.iat > this.#maxLifetime) {
      throw new InvalidTokenError(Reason.LIFETIME_TOO_LONG);
    }
    checkScopes(claims, requiredScopes);
    return claims;
  }
}

/** Maps jose's errors to reasons; errors that are not about the token pass through. */
function toInvalidToken(error: unknown): unknown {
  if (error instanceof InvalidTokenError) return error;
  const reason = reasonOf(error);
  return reason === undefined ? error : new InvalidTokenError(reason, undefined, { cause: error });
}

function reasonOf(error: unknown): Reason | undefined {
  if (error instanceof errors.JWTExpired) return Reason.EXPIRED;
  if (error instanceof errors.JWTClaimValidationFailed) return claimReason(error);
  if (error instanceof errors.JOSEAlgNotAllowed) return Reason.DISALLOWED_ALGORITHM;
  if (error instanceof errors.JWSSignatureVerificationFailed) return Reason.BAD_SIGNATURE;
  if (error instanceof errors.JWKSNoMatchingKey) return Reason.UNKNOWN_KEY;
  if (error instanceof errors.JWKSMultipleMatchingKeys) return Reason.UNKNOWN_KEY;
  // Bad base64url/JSON, unencoded payloads, unknown `crit` extensions.
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid) return Reason.MALFORMED;
  if (error instanceof errors.JOSENotSupported) return Reason.MALFORMED;
  return undefined;
}

function claimReason(error: errors.JWTClaimValidationFailed): Reason {
  if (error.reason === "missing") return Reason.MISSING_CLAIM;
  if (error.reason === "invalid") return Reason.MALFORMED;
  switch (error.claim) {
    case "typ": return Reason.WRONG_TYPE;
    case "iss": return Reason.WRONG_ISSUER;
    case "aud": return Reason.WRONG_AUDIENCE;
    case "nbf": return Reason.NOT_YET_VALID;
    default: return Reason.MALFORMED;
  }
}

/** Type checks jose leaves to the application (RFC 7519 sections 4.1.2, 4.1.3, 4.1.7). */
function checkIdentifiers(payload: JWTPayload): void {
  for (const name of ["sub", "jti"] as const) {
    if (typeof payload[name] !== "string" || payload[name] === "") {
      throw new InvalidTokenError(Reason.MALFORMED, `claim ${name} is not a non-empty string`);
    }
  }
  const aud = payload.aud;
  const audOk = typeof aud === "string"
    || (Array.isArray(aud) && aud.length > 0 && aud.every((v) => typeof v === "string"));
  if (!audOk) {
    throw new InvalidTokenError(Reason.MALFORMED, "claim aud is not a string or array of strings");
  }
}

/** RFC 9068 section 2.2.3: `scope` is one space-separated string. */
function checkScopes(claims: AccessTokenClaims, required: readonly string[]): void {
  if (claims.scope !== undefined && typeof claims.scope !== "string") {
    throw new InvalidTokenError(Reason.MALFORMED, "claim scope is not a string");
  }
  if (required.length === 0) return;
  const granted = new Set((claims.scope ?? "").split(" "));
  for (const name of required) {
    if (!granted.has(name)) {
      throw new InvalidTokenError(Reason.MISSING_SCOPE);
    }
  }
}

function nonEmptyString(value: unknown, name: string): string {
  if (typeof value !== "string" || value === "") {
    throw new TypeError(`${name} must be a non-empty string`);
  }
  return value;
}

function audienceList(audience: string | readonly string[]): string[] {
  const list = typeof audience === "string" ? [audience] : [...(audience ?? [])];
  if (list.length === 0) {
    // RFC 7519 section 4.1.3: a verifier must know who it is to check `aud`.
    throw new TypeError("audience must name at least one audience");
  }
  return list.map((value) => nonEmptyString(value, "audience"));
}

function algorithmList(algorithms: readonly string[]): Algorithm[] {
  const supported: readonly string[] = SUPPORTED_ALGORITHMS;
  if (algorithms.length === 0 || algorithms.some((alg) => !supported.includes(alg))) {
    throw new TypeError(`algorithms must be a non-empty subset of ${SUPPORTED_ALGORITHMS.join(", ")}`);
  }
  return [...algorithms] as Algorithm[];
}

function inRange(value: number, min: number, max: number, name: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) {
    throw new RangeError(`${name} must be a number between ${min} and ${max}`);
  }
  return value;
}
