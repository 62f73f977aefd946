/**
 * Key sources: keep a {@link Verifier} in step with tokend's keys.
 *
 * A {@link KeySource} holds the current JWK Set and fetches a new one
 * - when the set is older than `maxAgeMs` (a timer, with ±10 % jitter), so a key tokend
 *   withdrew stops being trusted within that time, and
 * - when a token names a `kid` the set lacks (tokend just rotated its key), unless any
 *   fetch ended less than `cooldownMs` ago: a flood of tokens with made-up `kid`s causes
 *   at most one fetch per cooldown, not one per token.
 *
 * A fetch that fails or yields no usable key keeps the last good set. The same rules as
 * the Python client's KeySource (clients/python tokend_client/keysource.py).
 */
import { JwkSet, MAX_JWKS_BYTES, type JwksInput } from "./jose.js";
import { isLoopbackHostname } from "./loopback.js";

/** How a key source caches and refetches. */
export interface KeySetOptions {
  /** Least time between a fetch and one caused by an unknown `kid` (default 5 000 ms). */
  cooldownMs?: number;
  /** Keys are refetched when this old (default 300 000 ms); 0: never by age. */
  maxAgeMs?: number;
  /** Gives up on a fetch after this long (default 5 000 ms). */
  timeoutMs?: number;
}

/** The one RPC a GetJwks-based key set needs; a connected TokendClient has it. */
export interface JwksClient {
  getJwks(
    request: Record<string, never>,
    options?: { signal?: AbortSignal; timeoutMs?: number },
  ): Promise<{ jwksJson: string }>;
}

/** The key set could not be fetched or was unusable (no verdict on any token); `cause` says why. */
export class KeySourceError extends Error {
  override readonly name = "KeySourceError";
}

/** Fetches a JWK Set (JSON text or object); the signal aborts it at the timeout. */
export type FetchJwks = (signal: AbortSignal) => Promise<JwksInput>;

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const DEFAULT_COOLDOWN_MS = 5_000;
const DEFAULT_MAX_AGE_MS = 300_000;
const DEFAULT_TIMEOUT_MS = 5_000;

/** Keys from a fetch function; see the module documentation. */
export class KeySource {
  readonly #fetch: FetchJwks;
  readonly #cooldownMs: number;
  readonly #maxAgeMs: number;
  readonly #timeoutMs: number;
  #keys: JwkSet | undefined;
  #updatedAt = 0; // Date.now() of the last successful fetch or push
  #nextRefetchAt = 0;
  #inFlight: Promise<JwkSet> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  /** How many fetches were attempted (for monitoring). */
  fetchCount = 0;

  constructor(fetch: FetchJwks, options: KeySetOptions = {}) {
    if (typeof fetch !== "function") throw new TypeError("fetch must be a function");
    this.#fetch = fetch;
    this.#cooldownMs = nonNegative(options.cooldownMs ?? DEFAULT_COOLDOWN_MS, "cooldownMs");
    this.#maxAgeMs = nonNegative(options.maxAgeMs ?? DEFAULT_MAX_AGE_MS, "maxAgeMs");
    this.#timeoutMs = nonNegative(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, "timeoutMs");
  }

  /** The current key set; the first call fetches it (KeySourceError on failure). */
  async keys(): Promise<JwkSet> {
    if (this.#keys !== undefined) return this.#keys;
    const keys = await this.refresh();
    this.#startTimer();
    return keys;
  }

  /** The key set as last fetched, without fetching; undefined before the first fetch. */
  current(): JwkSet | undefined {
    return this.#keys;
  }

  /** When the current set was fetched or pushed (ms since the epoch); 0 before. */
  get updatedAt(): number {
    return this.#updatedAt;
  }

  /** Fetches now, whatever the cooldown; a failure (KeySourceError) keeps the current set. */
  refresh(): Promise<JwkSet> {
    this.#inFlight ??= this.#load().finally(() => {
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  /**
   * A newer key set after a token named a `kid` missing from `seen`, or undefined. If the
   * set changed since `seen` was read it is returned at once; otherwise one fetch is made
   * unless one ended less than `cooldownMs` ago.
   */
  async refetchForUnknownKey(seen: JwkSet): Promise<JwkSet | undefined> {
    if (this.#keys !== seen) return this.#keys;
    if (this.#inFlight === undefined && Date.now() < this.#nextRefetchAt) return undefined;
    try {
      return await this.refresh();
    } catch {
      return undefined; // the current keys stay; the token stays UNKNOWN_KEY
    }
  }

  /** Stops the periodic refresh (the last keys stay usable). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  /** Replaces the key set (for sources that are pushed keys, such as LiveSource). */
  protected accept(keys: JwkSet): void {
    this.#keys = keys;
    this.#updatedAt = Date.now();
  }

  protected get closed(): boolean {
    return this.#closed;
  }

  async #load(): Promise<JwkSet> {
    this.fetchCount += 1;
    const signal = AbortSignal.timeout(Math.max(1, this.#timeoutMs));
    try {
      const keys = usableKeySet(await this.#fetch(signal));
      this.accept(keys);
      return keys;
    } catch (error) {
      throw new KeySourceError(`fetching the JWK Set failed: ${describe(error)}`, { cause: error });
    } finally {
      // Counted from the end of every attempt, failed ones included: a slow or failing
      // publisher must not turn unknown kids into back-to-back fetches.
      this.#nextRefetchAt = Date.now() + this.#cooldownMs;
    }
  }

  #startTimer(): void {
    if (this.#maxAgeMs === 0 || this.#timer !== undefined || this.#closed) return;
    const tick = () => {
      if (this.#closed) return;
      // Jitter keeps a fleet of verifiers started together from fetching together.
      const wait = this.#maxAgeMs * (0.9 + Math.random() * 0.2);
      this.#timer = setTimeout(() => {
        // Keys pushed meanwhile (LiveSource) are fresh enough: no fetch.
        const due = Date.now() - this.#updatedAt >= this.#maxAgeMs * 0.9;
        (due ? this.refresh() : Promise.resolve()).catch(() => undefined).finally(tick);
      }, wait);
      this.#timer.unref(); // never keeps the process alive
    };
    tick();
  }
}

/** A parsed key set with at least one usable key; an empty set would fail every token. */
export function usableKeySet(input: JwksInput | JwkSet): JwkSet {
  const keys = JwkSet.from(input);
  if (keys.kids.length === 0) throw new TypeError("the JWK Set has no usable key with a kid");
  return keys;
}

/**
 * Keys from tokend's JWKS URL (e.g. `https://tokend.example/.well-known/jwks.json`).
 *
 * The URL must be https, except on a loopback host: over plain HTTP anyone on the path
 * could substitute their own keys and mint tokens this verifier would accept. Redirects
 * are not followed and answers over 1 MiB are refused.
 */
export function remoteKeySet(url: string | URL, options: KeySetOptions = {}): KeySource {
  const parsed = new URL(url);
  if (parsed.protocol !== "https:" && !(parsed.protocol === "http:" && isLoopbackHostname(parsed.hostname))) {
    throw new TypeError("JWKS URL must be https (plain http only on a loopback host)");
  }
  return new KeySource(async (signal) => {
    const response = await fetch(parsed, {
      signal, redirect: "error", headers: { accept: "application/jwk-set+json, application/json" },
    });
    if (response.status !== 200) throw new Error(`${parsed.href} answered HTTP ${response.status}`);
    return readLimited(response, MAX_JWKS_BYTES);
  }, options);
}

/** The body as text, refusing (and no longer reading) one over `limit` bytes. */
async function readLimited(response: Response, limit: number): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = response.body?.getReader();
  if (reader === undefined) return "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      throw new Error("JWK Set is larger than 1 MiB");
    }
    chunks.push(value);
  }
  return UTF8.decode(Buffer.concat(chunks)); // invalid UTF-8 is refused, never replaced
}

/**
 * Keys from tokend's GetJwks RPC, over the client's mutual-TLS channel: no second
 * endpoint to secure, and the same cache and refetch rules as {@link remoteKeySet}.
 */
export function tokendKeySet(client: JwksClient, options: KeySetOptions = {}): KeySource {
  return new KeySource(async (signal) => (await client.getJwks({}, { signal })).jwksJson, options);
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function nonNegative(value: number, name: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`${name} must be a finite number >= 0`);
  }
  return value;
}

/** The old name of {@link KeySource}, kept for existing code. */
export type KeySet = KeySource;
