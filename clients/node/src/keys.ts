/**
 * Key sets for local verification: tokend's JWKS over HTTP, or over the GetJwks RPC.
 *
 * Both are jose's remote JWK Set: keys are cached for `maxAgeMs`, and a token naming a
 * `kid` the cache lacks triggers one refetch, at most once per `cooldownMs`. The
 * cooldown is what stops a flood of tokens with made-up `kid`s from turning every
 * verification into a request to tokend, while still picking up a rotated key within
 * seconds.
 */
import { createRemoteJWKSet, customFetch, type JSONWebKeySet, type JWTVerifyGetKey } from "jose";
import { isLoopbackHostname } from "./loopback.js";

/** A key resolver for jwtVerify that also exposes the key set it resolved from. */
export type KeySet = JWTVerifyGetKey & {
  /** The JWK Set as last fetched; undefined before the first fetch. */
  jwks(): JSONWebKeySet | undefined;
};

/** How a key set caches and refetches. */
export interface KeySetOptions {
  /** Least time between two fetches caused by unknown `kid`s (default 5 000 ms). */
  cooldownMs?: number;
  /** Keys older than this are refetched before use (default 600 000 ms). */
  maxAgeMs?: number;
  /** Gives up on a fetch after this long (default 5 000 ms). */
  timeoutMs?: number;
}

/** The one RPC a GetJwks-based key set needs; a connected TokendClient has it. */
export interface JwksClient {
  getJwks(
    request: Record<string, never>,
    options?: { signal?: AbortSignal },
  ): Promise<{ jwksJson: string }>;
}

const DEFAULT_COOLDOWN_MS = 5_000;
const DEFAULT_MAX_AGE_MS = 600_000;
const DEFAULT_TIMEOUT_MS = 5_000;
// Never fetched: jose needs a URL, but the fetch below goes to the RPC instead.
const GET_JWKS_URL = new URL("https://tokend.invalid/tokend.v1.TokenService/GetJwks");

/**
 * Keys from tokend's JWKS URL (e.g. `https://tokend.example/.well-known/jwks.json`).
 *
 * The URL must be https, except on a loopback host: over plain HTTP anyone on the path
 * could substitute their own keys and mint tokens this verifier would accept.
 */
export function remoteKeySet(url: string | URL, options: KeySetOptions = {}): KeySet {
  const parsed = new URL(url);
  if (parsed.protocol !== "https:" && !(parsed.protocol === "http:" && isLoopbackHostname(parsed.hostname))) {
    throw new TypeError("JWKS URL must be https (plain http only on a loopback host)");
  }
  return createRemoteJWKSet(parsed, joseOptions(options));
}

/**
 * Keys from tokend's GetJwks RPC, over the client's mutual-TLS channel: no second
 * endpoint to secure, and the same cache and cooldown rules as {@link remoteKeySet}.
 */
export function tokendKeySet(client: JwksClient, options: KeySetOptions = {}): KeySet {
  const fetchViaRpc = async (_url: string, init: { signal: AbortSignal }): Promise<Response> => {
    const { jwksJson } = await client.getJwks({}, { signal: init.signal });
    // jose parses and validates the set exactly as it would an HTTP answer.
    return new Response(jwksJson, { status: 200, headers: { "content-type": "application/json" } });
  };
  return createRemoteJWKSet(GET_JWKS_URL, { ...joseOptions(options), [customFetch]: fetchViaRpc });
}

function joseOptions(options: KeySetOptions) {
  return {
    cooldownDuration: nonNegative(options.cooldownMs ?? DEFAULT_COOLDOWN_MS, "cooldownMs"),
    cacheMaxAge: nonNegative(options.maxAgeMs ?? DEFAULT_MAX_AGE_MS, "maxAgeMs"),
    timeoutDuration: Math.ceil(nonNegative(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, "timeoutMs")),
  };
}

function nonNegative(value: number, name: string): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(`${name} must be a finite number >= 0`);
  }
  return value;
}
