/**
 * LiveSource: tokend pushes its keys and revocations to a {@link Verifier}.
 *
 * The same contract as the Python client's LiveSource (tokend_client/live.py). A LiveSource
 * follows two server streams of a {@link TokendClient}:
 * - `WatchJwks`: the key set, replaced as soon as tokend publishes a new one;
 * - `WatchRevocations`: every live revocation, then each new one, kept in a
 *   {@link RevocationSet}. A verifier built on the source refuses revoked tokens
 *   (`Reason.REVOKED`): the `jti`, or any token of a revoked subject whose `iat` is at or
 *   before the revocation.
 *
 * A broken stream is reopened with exponential backoff and jitter, resuming from the last
 * sequence received, so no revocation is missed; one silent longer than `idleTimeoutMs`
 * (tokend sends a keep-alive every 15 s) is reopened too. Keys are also fetched with
 * GetJwks when a token names an unknown `kid` (rate-limited) and when no key event came
 * for `maxAgeMs`. While tokend is unreachable the last known state stays in force, until
 * the revocation stream has delivered nothing for `maxStalenessMs`: then `stalePolicy` decides,
 * "fail-closed" (default: verify throws KeySourceError) or "fail-open" (verify goes on
 * with the last known revocations); `onStale` hears of every change either way.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { JwksEvent, RevocationEvent } from "./gen/tokend/v1/tokend_pb.js";
import type { JwkSet } from "./jose.js";
import { KeySource, KeySourceError, usableKeySet, type JwksClient } from "./keys.js";
import type { RevocationChecker } from "./verifier.js";

/** The RPCs a LiveSource follows; a connected TokendClient has them. */
export interface WatchingClient extends JwksClient {
  watchJwks(request: Record<string, never>, options?: StreamOptions): AsyncIterable<JwksEvent>;
  watchRevocations(request: { fromSequence: bigint }, options?: StreamOptions): AsyncIterable<RevocationEvent>;
}

interface StreamOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

/** What to do once the revocation stream has been down longer than `maxStalenessMs`. */
export type StalenessPolicy = "fail-closed" | "fail-open";

/** How a {@link LiveSource} follows tokend. */
export interface LiveSourceOptions {
  /** How long the first use waits for the revocations in force (default 10 000 ms). */
  readyTimeoutMs?: number;
  /** A stream silent this long is reopened (default 60 000 ms; tokend sends keep-alives every 15 s). */
  idleTimeoutMs?: number;
  /** Longest wait between reconnection attempts (default 30 000 ms). */
  maxBackoffMs?: number;
  /** Rate limit of GetJwks calls caused by unknown `kid`s (default 5 000 ms). */
  cooldownMs?: number;
  /** Keys are fetched with GetJwks when no key event came for this long (default 300 000 ms). */
  maxAgeMs?: number;
  /** The revocation stream may be down this long before `stalePolicy` applies (default 120 000 ms). */
  maxStalenessMs?: number;
  /** Default "fail-closed": refuse to reach a verdict rather than miss a revocation. */
  stalePolicy?: StalenessPolicy;
  /** Called when the revocation state becomes stale (true) or fresh again (false). */
  onStale?: (stale: boolean, downForMs: number) => void;
}

const FIRST_BACKOFF_MS = 200;
const PRUNE_INTERVAL_MS = 60_000;
const WATCHDOG_MS = 1_000;

/**
 * The revocations received so far, each kept until the tokens it names expire. Times
 * are unix seconds, as in the tokens.
 */
export class RevocationSet {
  readonly #jtis = new Map<string, number>(); // jti -> when the entry expires
  readonly #subjects = new Map<string, [notBefore: number, expiresAt: number]>();
  /** The last feed sequence received: where a reconnect resumes. */
  sequence = 0n;

  /** Records one WatchRevocations event (a checkpoint only moves `sequence`). */
  apply(event: RevocationEvent): void {
    if (!event.checkpoint) {
      const expiresAt = seconds(event.expiresAt);
      if (event.kind === "jti") {
        this.#jtis.set(event.value, Math.max(expiresAt, this.#jtis.get(event.value) ?? 0));
      } else if (event.kind === "subject") {
        const known = this.#subjects.get(event.value);
        // Both maxima: only ever denies more, and each entry ends with the tokens it names.
        const notBefore = seconds(event.notBefore);
        this.#subjects.set(event.value, known === undefined
          ? [notBefore, expiresAt]
          : [Math.max(notBefore, known[0]), Math.max(expiresAt, known[1])]);
      }
      // "family" is informational (its tokens arrive as jti events); newer kinds are ignored.
    }
    if (event.sequence > this.sequence) this.sequence = event.sequence;
  }

  /** Whether verified `claims` name a revoked jti or a revoked subject's token at `now`. */
  isRevoked(claims: Readonly<Record<string, unknown>>, now: number): boolean {
    const jti = claims["jti"];
    if (typeof jti === "string" && (this.#jtis.get(jti) ?? 0) > now) return true;
    const subject = claims["sub"];
    const entry = typeof subject === "string" ? this.#subjects.get(subject) : undefined;
    if (entry === undefined || entry[1] <= now) return false;
    const iat = claims["iat"];
    // Without a usable iat the token cannot prove it came after the revocation.
    if (typeof iat !== "number") return true;
    return iat <= entry[0]; // the same second counts as before: iat has 1 s resolution
  }

  /** Forgets entries whose tokens have all expired; returns how many. */
  prune(now: number): number {
    let pruned = 0;
    for (const [jti, expiry] of this.#jtis) {
      if (expiry <= now && this.#jtis.delete(jti)) pruned += 1;
    }
    for (const [subject, entry] of this.#subjects) {
      if (entry[1] <= now && this.#subjects.delete(subject)) pruned += 1;
    }
    return pruned;
  }

  get size(): number {
    return this.#jtis.size + this.#subjects.size;
  }
}

/** Keeps one server stream open: reopen with backoff and jitter, abort when idle. */
class Follower<Event> {
  reconnects = 0;
  lastEventAt = Date.now();
  #controller: AbortController | undefined;
  #running: Promise<void> | undefined;
  #wake: (() => void) | undefined;

  constructor(
    readonly name: string,
    readonly open: (signal: AbortSignal) => AsyncIterable<Event>,
    readonly handle: (event: Event) => void,
    readonly stopped: () => boolean,
    readonly idleTimeoutMs: number,
    readonly maxBackoffMs: number,
    readonly onError: (error: ConnectError) => void = () => undefined,
  ) {}

  start(): void {
    this.#running ??= this.#run();
  }

  cancel(): void {
    this.#controller?.abort();
  }

  abortIfIdle(): void {
    if (Date.now() - this.lastEventAt > this.idleTimeoutMs) {
      this.lastEventAt = Date.now();
      this.cancel();
    }
  }

  async stop(): Promise<void> {
    this.cancel();
    this.#wake?.();
    await this.#running;
  }

  async #run(): Promise<void> {
    let delay = FIRST_BACKOFF_MS;
    while (!this.stopped()) {
      if (await this.#followOnce()) delay = FIRST_BACKOFF_MS; // it worked for a while: reconnect promptly
      if (this.stopped()) return;
      this.reconnects += 1;
      // Jitter: a fleet of backends must not reconnect to a restarted tokend at once.
      await this.#sleep(delay * (0.5 + Math.random() * 0.5));
      delay = Math.min(delay * 2, this.maxBackoffMs);
    }
  }

  /** One stream until it ends; true when it delivered at least one event. */
  async #followOnce(): Promise<boolean> {
    let received = false;
    const controller = new AbortController();
    this.#controller = controller;
    this.lastEventAt = Date.now();
    try {
      for await (const event of this.open(controller.signal)) {
        this.lastEventAt = Date.now();
        this.handle(event);
        received = true;
      }
    } catch (error) {
      if (!controller.signal.aborted) this.onError(ConnectError.from(error));
    } finally {
      controller.abort(); // after a failure in handle(): do not leave the call open
    }
    return received;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = undefined;
        resolve();
      }, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

/** Keys and revocations pushed by tokend over `client`'s channel; see the module. */
export class LiveSource extends KeySource implements RevocationChecker {
  /** The revocations received so far. */
  readonly revocations = new RevocationSet();
  readonly #readyTimeoutMs: number;
  readonly #maxStalenessMs: number;
  readonly #policy: StalenessPolicy;
  readonly #onStale: (stale: boolean, downForMs: number) => void;
  readonly #followers: readonly [Follower<JwksEvent>, Follower<RevocationEvent>];
  #synced = false;
  #syncWaiters: (() => void)[] = [];
  #started: Promise<void> | undefined;
  #watchdog: NodeJS.Timeout | undefined;
  #revocationsFreshAt = Date.now();
  #caughtUp = false; // the current revocation stream has sent its first checkpoint
  #stale = false;
  #nextPrune = 0;

  constructor(client: WatchingClient, options: LiveSourceOptions = {}) {
    for (const name of ["getJwks", "watchJwks", "watchRevocations"] as const) {
      if (typeof client?.[name] !== "function") throw new TypeError("LiveSource needs a connected TokendClient");
    }
    super(async (signal) => (await client.getJwks({}, { signal })).jwksJson, {
      cooldownMs: options.cooldownMs ?? 5_000, maxAgeMs: options.maxAgeMs ?? 300_000,
    });
    this.#readyTimeoutMs = positive(options.readyTimeoutMs ?? 10_000, "readyTimeoutMs");
    this.#maxStalenessMs = positive(options.maxStalenessMs ?? 120_000, "maxStalenessMs");
    const policy = options.stalePolicy ?? "fail-closed";
    if (policy !== "fail-closed" && policy !== "fail-open") throw new TypeError('stalePolicy must be "fail-closed" or "fail-open"');
    this.#policy = policy;
    this.#onStale = options.onStale ?? (() => undefined);
    const idle = positive(options.idleTimeoutMs ?? 60_000, "idleTimeoutMs");
    const backoff = positive(options.maxBackoffMs ?? 30_000, "maxBackoffMs");
    const stopped = () => this.closed;
    this.#followers = [
      new Follower("jwks", (signal) => client.watchJwks({}, { signal, timeoutMs: 0 }),
        (event) => this.#onJwks(event), stopped, idle, backoff),
      new Follower("revocations",
        (signal) => {
          this.#caughtUp = false;
          return client.watchRevocations({ fromSequence: this.revocations.sequence }, { signal, timeoutMs: 0 });
        },
        (event) => this.#onRevocation(event), stopped, idle, backoff, (error) => this.#onRevocationError(error)),
    ];
  }

  /** True once the revocations in force when the stream opened have all arrived. */
  get synced(): boolean {
    return this.#synced;
  }

  /** How many times a stream was reopened (for monitoring). */
  get reconnects(): number {
    return this.#followers[0].reconnects + this.#followers[1].reconnects;
  }

  /** Whether the revocation stream has been down longer than `maxStalenessMs`. */
  get stale(): boolean {
    this.#updateStale();
    return this.#stale;
  }

  /**
   * The current key set. The first call fetches it with GetJwks, opens both streams and
   * waits up to `readyTimeoutMs` for the revocations in force (KeySourceError if they do
   * not arrive), so a verifier never starts out accepting a revoked token.
   */
  override async keys(): Promise<JwkSet> {
    const keys = await super.keys();
    if (!this.#synced) await (this.#started ??= this.#start());
    return keys;
  }

  /** Applies the staleness policy; called by the verifier on every verify. */
  checkFresh(): void {
    this.#updateStale();
    if (this.#stale && this.#policy === "fail-closed") {
      const down = Math.round((Date.now() - this.#revocationsFreshAt) / 1000);
      throw new KeySourceError(`tokend's revocation feed has been unreachable for ${down} s (fail-closed)`);
    }
  }

  /** Whether verified `claims` name a revoked token at `now` (unix seconds). */
  isRevoked(claims: Readonly<Record<string, unknown>>, now: number = Date.now() / 1000): boolean {
    return this.revocations.isRevoked(claims, now);
  }

  /** Closes both streams and stops the timers (the last state stays usable). */
  override async close(): Promise<void> {
    super.close();
    clearInterval(this.#watchdog);
    await Promise.all(this.#followers.map((follower) => follower.stop()));
    for (const wake of this.#syncWaiters.splice(0)) wake();
  }

  async #start(): Promise<void> {
    if (this.closed) throw new KeySourceError("this LiveSource is closed");
    this.#revocationsFreshAt = Date.now();
    for (const follower of this.#followers) follower.start();
    this.#watchdog ??= setInterval(() => {
      for (const follower of this.#followers) follower.abortIfIdle();
      this.#updateStale();
    }, WATCHDOG_MS);
    this.#watchdog.unref();
    const synced = new Promise<void>((resolve) => this.#syncWaiters.push(resolve));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.#readyTimeoutMs);
    });
    await Promise.race([synced, timeout]);
    clearTimeout(timer);
    if (!this.#synced) {
      this.#started = undefined; // the next call waits again
      throw new KeySourceError(
        `tokend's revocations did not arrive within ${this.#readyTimeoutMs} ms; is tokend reachable?`);
    }
  }

  #onJwks(event: JwksEvent): void {
    if (event.keepAlive && this.current() !== undefined) {
      this.accept(this.current()!); // unchanged, but confirmed: the keys are fresh
      return;
    }
    let keys: JwkSet;
    try {
      keys = usableKeySet(event.jwksJson);
    } catch {
      return; // an unusable set: keep the current keys
    }
    this.accept(keys);
  }

  #onRevocation(event: RevocationEvent): void {
    this.revocations.apply(event);
    // Fresh on every event of a stream that caught up; after a reconnect, only from the
    // first checkpoint on (the history before it may still hold revocations).
    if (event.checkpoint) this.#caughtUp = true;
    if (this.#caughtUp) this.#revocationsFreshAt = Date.now();
    this.#updateStale();
    if (!event.checkpoint) return;
    if (!this.#synced) {
      this.#synced = true;
      for (const wake of this.#syncWaiters.splice(0)) wake();
    }
    const now = Date.now();
    if (now >= this.#nextPrune) {
      this.revocations.prune(now / 1000);
      this.#nextPrune = now + PRUNE_INTERVAL_MS;
    }
  }

  #onRevocationError(error: ConnectError): void {
    if (error.code === Code.FailedPrecondition) {
      // Our sequence is ahead of tokend's feed (its store was replaced): replay from the
      // start. What we hold stays: it only ever denies more, and expires.
      this.revocations.sequence = 0n;
    }
  }

  #updateStale(): void {
    if (!this.#synced) return;
    const down = Date.now() - this.#revocationsFreshAt;
    const stale = down > this.#maxStalenessMs;
    if (stale === this.#stale) return;
    this.#stale = stale;
    try {
      this.#onStale(stale, down);
    } catch {
      // a failing callback must not break verification
    }
  }
}

function seconds(stamp: { seconds: bigint; nanos: number } | undefined): number {
  return stamp === undefined ? 0 : Number(stamp.seconds) + stamp.nanos / 1e9;
}

function positive(value: number, name: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new RangeError(`${name} must be a positive number of milliseconds`);
  }
  return value;
}
