/**
 * Strict local verification of tokend access tokens (RFC 9068, RFC 7519, RFC 8725).
 *
 * The rules are tokend's verifier contract (docs/verifier-contract.md), the same in every
 * client; the reference is the Python client's LocalVerifier. The signature layer is
 * ./jose.ts (strict base64url, strict JSON, keys bound to one algorithm); this module adds
 * `typ`, the claim rules, scopes, the actor chain (`act`, ./delegation.ts), certificate
 * binding (`cnf`, ./binding.ts) and, with a {@link LiveSource}, revocations. Every
 * refusal is an {@link InvalidTokenError} with a {@link Reason}; a bad configuration
 * throws TypeError or RangeError at construction.
 */
import { checkConfirmation, presenterThumbprint, type Certificate } from "./binding.js";
import { checkDelegation, delegationOption, type Delegation } from "./delegation.js";
import { InvalidTokenError, Reason } from "./errors.js";
import { HeaderCache, JWS_ALGORITHMS, JwkSet, MAX_COMPACT_BYTES, parseCompact, strictJsonFromBytes, verifyParsed, type JwksInput, type ParsedJws, type VerifiedJws } from "./jose.js";
import { KeySource } from "./keys.js";

/** The signature algorithms tokend signs with (the default allowlist). */
export const SUPPORTED_ALGORITHMS = ["ES256", "RS256", "PS256", "EdDSA"] as const;
/** One of {@link SUPPORTED_ALGORITHMS}. */
export type Algorithm = (typeof SUPPORTED_ALGORITHMS)[number];

/** Claims every tokend access token carries (RFC 9068 section 2.2), plus tokend's own. */
export interface AccessTokenClaims {
  iss: string;
  sub: string;
  aud: string | string[];
  exp: number;
  iat: number;
  jti: string;
  nbf?: number;
  /** Space-separated scopes, when the token has any. */
  scope?: string;
  /** The caller that asked for the token (its SPIFFE ID under mutual TLS). */
  client_id?: string;
  [claim: string]: unknown;
}

/** Something that knows tokend's revocations (a {@link LiveSource}). */
export interface RevocationChecker {
  /** Throws (KeySourceError) when the revocation state cannot be trusted (fail-closed). */
  checkFresh(): void;
  /** Whether verified `claims` name a revoked token at `now` (unix seconds). */
  isRevoked(claims: Readonly<Record<string, unknown>>, now: number): boolean;
}

/** How a {@link Verifier} decides; the names follow docs/verifier-contract.md. */
export interface VerifierOptions {
  /** The keys: a KeySource (remoteKeySet, tokendKeySet, LiveSource), a JwkSet, or a JWK Set. */
  keys: KeySource | JwkSet | JwksInput;
  /** tokend's issuer; `iss` must equal it exactly. */
  issuer: string;
  /**
   * The audience(s) this service answers to: `aud` must contain one. None (undefined or
   * null): the token must carry no `aud` (RFC 7519 §4.1.3).
   */
  audience?: string | readonly string[] | null;
  /** Allowed algorithms (default the four tokend signs with). */
  algorithms?: readonly string[];
  /** Clock skew allowed on exp/nbf/iat, 0-300 s (default 30). 0 is exact. */
  leeway?: number;
  /** @deprecated the old name of {@link leeway}. */
  clockToleranceSeconds?: number;
  /** When set, `exp - iat` above this many seconds is refused (and both are required). */
  maxLifetime?: number | null;
  /** @deprecated the old name of {@link maxLifetime}. */
  maxLifetimeSeconds?: number;
  /** Tokens longer than this are refused before any parsing (default 8192, as tokend). */
  maxTokenBytes?: number;
  /** Claims that must be present (default exp, iat, iss, sub, aud, jti). */
  requiredClaims?: readonly string[];
  /** The header `typ` required (default "at+jwt"; case-insensitive, "application/" implied). */
  requiredTyp?: string;
  /** The clock, in unix seconds (default Date.now() / 1000): inject it in tests. */
  clock?: () => number;
  /**
   * Delegated tokens (with `act`, RFC 8693 §4.1): "any" (default) accepts direct and
   * delegated ones, "required" only delegated, "refused" only direct (else
   * Reason.DELEGATION). The `act` shape is always checked.
   */
  delegation?: Delegation;
}

/** Per-call options for {@link Verifier.verify}. */
export interface VerifyOptions {
  /** Overrides the verifier's audience for this call. */
  audience?: string | readonly string[];
  /** Scopes that must all be in the token's `scope` claim (a string: space-separated). */
  requiredScopes?: string | readonly string[];
  /** The time to check against (default: the verifier's clock). */
  now?: Date;
  /** Overrides the verifier's `delegation` for this call. */
  delegation?: Delegation;
  /**
   * The certificate the token was presented with (DER or X509Certificate), for
   * certificate-bound tokens (RFC 8705 §3): see presenterFromTlsSocket and
   * presenterFromXfcc. A bound token with no presenter is Reason.CERTIFICATE_MISMATCH.
   */
  presenterCertificate?: Certificate;
  /** The presenter's `x5t#S256` thumbprint instead of its certificate (not both). */
  presenterX5tS256?: string;
}

const DEFAULT_REQUIRED_CLAIMS = ["exp", "iat", "iss", "sub", "aud", "jti"];
const MAX_LEEWAY_SECONDS = 300;
const DEFAULT_MAX_TOKEN_BYTES = 8192;
const NUMERIC_DATE_CLAIMS = ["exp", "nbf", "iat"];

type Claims = Record<string, unknown>;

/** Verifies tokend access tokens in-process; reuse one instance (it caches keys). */
export class Verifier {
  readonly #source: KeySource | undefined;
  readonly #keys: JwkSet | undefined;
  readonly #revocations: RevocationChecker | undefined;
  readonly #issuer: string;
  readonly #audience: ReadonlySet<string> | undefined;
  readonly #algorithms: ReadonlySet<string>;
  readonly #leeway: number;
  readonly #maxLifetime: number | undefined;
  readonly #maxTokenBytes: number;
  readonly #requiredClaims: readonly string[];
  readonly #typ: string;
  readonly #clock: () => number;
  readonly #delegation: Delegation;
  readonly #headers = new HeaderCache();

  /** Checks the options once; a bad configuration throws TypeError or RangeError. */
  constructor(options: VerifierOptions) {
    this.#issuer = nonEmptyString(options.issuer, "issuer");
    this.#audience = audienceSet(options.audience);
    this.#algorithms = algorithmSet(options.algorithms ?? SUPPORTED_ALGORITHMS);
    this.#leeway = inRange(options.leeway ?? options.clockToleranceSeconds ?? 30, 0, MAX_LEEWAY_SECONDS, "leeway");
    const maxLifetime = options.maxLifetime ?? options.maxLifetimeSeconds;
    this.#maxLifetime = maxLifetime === undefined || maxLifetime === null
      ? undefined
      : inRange(maxLifetime, Number.MIN_VALUE, Number.MAX_VALUE, "maxLifetime");
    this.#maxTokenBytes = integerInRange(options.maxTokenBytes ?? DEFAULT_MAX_TOKEN_BYTES, 1, MAX_COMPACT_BYTES, "maxTokenBytes");
    this.#requiredClaims = names(options.requiredClaims ?? DEFAULT_REQUIRED_CLAIMS, "requiredClaims");
    this.#typ = normalizeTyp(nonEmptyString(options.requiredTyp ?? "at+jwt", "requiredTyp"));
    if (options.clock !== undefined && typeof options.clock !== "function") throw new TypeError("clock must be a function");
    this.#clock = options.clock ?? (() => Date.now() / 1000);
    this.#delegation = delegationOption(options.delegation ?? "any");
    const keys = options.keys;
    if (keys instanceof KeySource) {
      this.#source = keys;
      const checker = keys as unknown as Partial<RevocationChecker>;
      if (typeof checker.isRevoked === "function" && typeof checker.checkFresh === "function") {
        this.#revocations = checker as RevocationChecker;
      }
    } else if (keys instanceof JwkSet || typeof keys === "string" || (typeof keys === "object" && keys !== null)) {
      this.#keys = JwkSet.from(keys as JwksInput | JwkSet);
    } else {
      throw new TypeError("keys must be a KeySource, a JwkSet or a JWK Set");
    }
  }

  /**
   * Returns the claims of a valid token; throws {@link InvalidTokenError} for a token
   * that is refused. A KeySourceError means no verdict could be reached (keys never
   * fetched, or the revocation feed down longer than allowed under fail-closed): the
   * token must be refused all the same.
   */
  async verify(token: string | Uint8Array, options: VerifyOptions = {}): Promise<AccessTokenClaims> {
    const now = options.now === undefined ? this.#clock() : options.now.getTime() / 1000;
    const audience = options.audience === undefined ? this.#audience : audienceSet(options.audience);
    const scopes = requiredScopes(options.requiredScopes);
    const delegation = options.delegation === undefined ? this.#delegation : delegationOption(options.delegation);
    const presenter = presenterThumbprint(options.presenterCertificate, options.presenterX5tS256);
    // Size first, before any decoding: bounds the work a hostile token can cause.
    if (tokenLength(token) > this.#maxTokenBytes) throw new InvalidTokenError(Reason.TOO_LARGE);
    const parsed = parseCompact(token, this.#headers);
    const verified = await this.#verifySignature(parsed);
    // RFC 9068 §4 / RFC 8725 §3.11: explicit typing keeps other JWTs out.
    const typ = verified.header["typ"];
    if (typeof typ !== "string" || normalizeTyp(typ) !== this.#typ) throw new InvalidTokenError(Reason.WRONG_TYPE);
    const claims = claimsObject(verified.payload);
    this.#checkClaims(claims, now, audience, scopes);
    checkDelegation(claims, delegation); // A1, A2: after every claim rule
    checkConfirmation(claims, presenter); // B1-B5: after delegation, before revocation
    this.#headers.remember(parsed);
    // Last: only a token that is otherwise valid is worth looking up.
    if (this.#revocations !== undefined) {
      if (this.#revocations.isRevoked(claims, now)) throw new InvalidTokenError(Reason.REVOKED);
      // Not known to be revoked; under fail-closed a stale feed allows no verdict.
      this.#revocations.checkFresh();
    }
    return claims as AccessTokenClaims;
  }

  /**
   * Throws {@link InvalidTokenError} unless verified `claims` still pass the claim rules
   * at `now`, `act`/delegation and the binding to this call's presenter (a cache of
   * verified tokens must call this on every hit: the presenter changes per call).
   */
  checkClaims(claims: Readonly<Record<string, unknown>>, options: VerifyOptions = {}): void {
    const now = options.now === undefined ? this.#clock() : options.now.getTime() / 1000;
    const audience = options.audience === undefined ? this.#audience : audienceSet(options.audience);
    const scopes = requiredScopes(options.requiredScopes);
    const delegation = options.delegation === undefined ? this.#delegation : delegationOption(options.delegation);
    const presenter = presenterThumbprint(options.presenterCertificate, options.presenterX5tS256);
    this.#checkClaims(claims, now, audience, scopes);
    checkDelegation(claims, delegation);
    checkConfirmation(claims, presenter);
  }

  /** The header was decoded before any key is fetched: malformed tokens cost no request. */
  async #verifySignature(parsed: ParsedJws): Promise<VerifiedJws> {
    if (this.#source === undefined) return verifyParsed(parsed, this.#keys!, this.#algorithms);
    const keys = await this.#source.keys();
    try {
      return verifyParsed(parsed, keys, this.#algorithms);
    } catch (error) {
      // Only an unknown kid can be cured by newer keys; the source rate-limits the refetch.
      if (!(error instanceof InvalidTokenError) || error.reason !== Reason.UNKNOWN_KEY) throw error;
      const newer = await this.#source.refetchForUnknownKey(keys);
      if (newer === undefined) throw error;
      return verifyParsed(parsed, newer, this.#algorithms);
    }
  }

  #checkClaims(claims: Readonly<Claims>, now: number, audience: ReadonlySet<string> | undefined, scopes: readonly string[]): void {
    for (const name of this.#requiredClaims) {
      if (!Object.hasOwn(claims, name)) throw new InvalidTokenError(Reason.MISSING_CLAIM, `token lacks required claim ${name}`);
    }
    for (const name of NUMERIC_DATE_CLAIMS) {
      // RFC 7519 §2: NumericDate is a JSON number (not null, a string or a boolean).
      if (Object.hasOwn(claims, name) && !isNumericDate(claims[name])) {
        throw new InvalidTokenError(Reason.MALFORMED, `claim ${name} is not a NumericDate`);
      }
    }
    checkIssuer(claims, this.#issuer);
    checkTimes(claims, now, this.#leeway, this.#maxLifetime);
    checkAudience(claims, audience);
    // RFC 7519 §4.1.2 (sub: StringOrURI) and §4.1.7 (jti: case-sensitive string).
    for (const name of ["sub", "jti"]) {
      if (Object.hasOwn(claims, name) && (typeof claims[name] !== "string" || claims[name] === "")) {
        throw new InvalidTokenError(Reason.MALFORMED, `claim ${name} is not a non-empty string`);
      }
    }
    checkScopes(claims, scopes);
  }
}

/** The old name of {@link Verifier}, kept for existing code. */
export const AccessTokenVerifier = Verifier;
/** The old name of {@link Verifier}, kept for existing code. */
export type AccessTokenVerifier = Verifier;

function claimsObject(payload: Buffer): Claims {
  let claims: unknown;
  try {
    claims = strictJsonFromBytes(payload);
  } catch {
    throw new InvalidTokenError(Reason.MALFORMED, "claims are not strict JSON");
  }
  // RFC 7519 §7.2 step 10: the payload of a JWT is a JSON object.
  if (typeof claims !== "object" || claims === null || Array.isArray(claims)) {
    throw new InvalidTokenError(Reason.MALFORMED, "claims are not a JSON object");
  }
  return claims as Claims;
}

function isNumericDate(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value);
}

function checkIssuer(claims: Readonly<Claims>, issuer: string): void {
  const iss = claims["iss"];
  if (Object.hasOwn(claims, "iss") && typeof iss !== "string") {
    throw new InvalidTokenError(Reason.MALFORMED, "claim iss is not a string"); // RFC 7519 §4.1.1
  }
  // RFC 9068 §4 step 3: iss must exactly match the expected issuer.
  if (iss !== issuer) throw new InvalidTokenError(Reason.WRONG_ISSUER);
}

function checkTimes(claims: Readonly<Claims>, now: number, leeway: number, maxLifetime: number | undefined): void {
  const exp = claims["exp"] as number | undefined;
  const nbf = claims["nbf"] as number | undefined;
  const iat = claims["iat"] as number | undefined;
  // RFC 7519 §4.1.4: the current time MUST be before exp (plus a small leeway).
  if (exp !== undefined && now >= exp + leeway) throw new InvalidTokenError(Reason.EXPIRED);
  // RFC 7519 §4.1.5: the current time MUST be at or after nbf (minus leeway).
  if (nbf !== undefined && now + leeway < nbf) throw new InvalidTokenError(Reason.NOT_YET_VALID);
  // RFC 7519 §4.1.6: iat later than now means a bad clock or a forged token.
  if (iat !== undefined && iat > now + leeway) throw new InvalidTokenError(Reason.ISSUED_IN_FUTURE);
  if (maxLifetime === undefined) return;
  // Without both ends the lifetime is unbounded, which the limit exists to refuse.
  if (exp === undefined || iat === undefined) {
    throw new InvalidTokenError(Reason.MISSING_CLAIM, `maxLifetime needs claim ${exp === undefined ? "exp" : "iat"}`);
  }
  if (exp - iat > maxLifetime) throw new InvalidTokenError(Reason.LIFETIME_TOO_LONG);
}

function checkAudience(claims: Readonly<Claims>, expected: ReadonlySet<string> | undefined): void {
  if (!Object.hasOwn(claims, "aud")) return;
  const aud = claims["aud"];
  const values = typeof aud === "string" ? [aud] : aud;
  // RFC 7519 §4.1.3: a string or an array of strings (we require a non-empty array).
  if (!Array.isArray(values) || values.length === 0 || !values.every((v) => typeof v === "string")) {
    throw new InvalidTokenError(Reason.MALFORMED, "claim aud is not a string or array of strings");
  }
  // RFC 7519 §4.1.3: a recipient that does not identify itself with aud MUST reject.
  if (expected === undefined || !values.some((v: string) => expected.has(v))) {
    throw new InvalidTokenError(Reason.WRONG_AUDIENCE);
  }
}

function checkScopes(claims: Readonly<Claims>, required: readonly string[]): void {
  const scope = claims["scope"];
  // RFC 9068 §2.2.3 / RFC 8693 §4.2: scope is one space-separated string.
  if (Object.hasOwn(claims, "scope") && typeof scope !== "string") {
    throw new InvalidTokenError(Reason.MALFORMED, "claim scope is not a string");
  }
  if (required.length === 0) return;
  const granted = new Set(typeof scope === "string" && scope !== "" ? scope.split(" ") : []);
  for (const name of required) {
    if (!granted.has(name)) throw new InvalidTokenError(Reason.MISSING_SCOPE, `token lacks scope ${name}`);
  }
}

function tokenLength(token: unknown): number {
  if (token instanceof Uint8Array) return token.length;
  if (typeof token !== "string") throw new InvalidTokenError(Reason.MALFORMED, "token must be a string");
  // Characters (code points), as the reference counts them; only astral ones differ.
  let length = token.length;
  if (length > 0 && /[\uD800-\uDBFF][\uDC00-\uDFFF]/.test(token)) length = [...token].length;
  return length;
}

function nonEmptyString(value: unknown, name: string): string {
  if (typeof value !== "string" || value === "") throw new TypeError(`${name} must be a non-empty string`);
  return value;
}

function names(values: unknown, name: string): string[] {
  // A bare string is a collection of characters: refuse it instead of misreading it.
  if (typeof values === "string" || !Array.isArray(values)) throw new TypeError(`${name} must be an array of strings`);
  return values.map((value) => nonEmptyString(value, name));
}

function audienceSet(audience: string | readonly string[] | null | undefined): ReadonlySet<string> | undefined {
  if (audience === undefined || audience === null) return undefined;
  const list = typeof audience === "string" ? [nonEmptyString(audience, "audience")] : names(audience, "audience");
  if (list.length === 0) throw new TypeError("audience must name at least one audience (or be null: no aud)");
  return new Set(list);
}

function algorithmSet(algorithms: readonly string[]): ReadonlySet<string> {
  const list = names(algorithms, "algorithms");
  if (list.length === 0 || list.some((alg) => !JWS_ALGORITHMS.has(alg))) {
    throw new TypeError(`algorithms must be a non-empty subset of ${[...JWS_ALGORITHMS].join(", ")}`);
  }
  return new Set(list);
}

function requiredScopes(required: string | readonly string[] | undefined): readonly string[] {
  if (required === undefined) return [];
  if (typeof required === "string") return required.split(" ").filter((name) => name !== "");
  return names(required, "requiredScopes");
}

function inRange(value: number, min: number, max: number, name: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) {
    throw new RangeError(`${name} must be a number between ${min} and ${max}`);
  }
  return value;
}

function integerInRange(value: number, min: number, max: number, name: string): number {
  if (!Number.isInteger(value)) throw new TypeError(`${name} must be an integer`);
  return inRange(value, min, max, name);
}

function normalizeTyp(typ: string): string {
  // RFC 7515 §4.1.9: media types are case-insensitive and "application/" is implied
  // when the value has no "/", so "at+jwt" and "application/at+jwt" are the same.
  const lower = typ.toLowerCase();
  return lower.includes("/") ? lower : `application/${lower}`;
}
