/**
 * LiveSource against a scripted TokenService over real gRPC on loopback, for the faults a
 * live tokend cannot be made to produce on cue from here: streams dropped mid-way, a feed
 * that moved backwards (FAILED_PRECONDITION), a server that is down for a while, a stream
 * that goes silent, a history that never ends. The happy path against the real tokend is
 * interop/live.test.ts.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync, sign as cryptoSign } from "node:crypto";
import { createServer, type Http2Server } from "node:http2";
import type { AddressInfo } from "node:net";
import { after, afterEach, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { connectInsecureLoopback, InvalidTokenError, KeySourceError, LiveSource, Reason, TokenService, Verifier, type TokendClient } from "../src/index.js";
import { AUDIENCE, ISSUER } from "./support.js";

interface Revocation { sequence: bigint; kind: string; value: string; notBefore?: number; expiresAt: number }

function signingKey(kid: string) {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return { kid, privateKey, jwk: { ...publicKey.export({ format: "jwk" }), kid, alg: "ES256", use: "sig" } };
}
type SigningKey = ReturnType<typeof signingKey>;

function token(key: SigningKey, claims: Record<string, unknown> = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const segment = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const input = `${segment({ alg: "ES256", kid: key.kid, typ: "at+jwt" })}.${segment({
    iss: ISSUER, sub: "alice", aud: AUDIENCE, iat: now, exp: now + 300, jti: `j-${Math.random()}`, ...claims,
  })}`;
  const signature = cryptoSign("sha256", Buffer.from(input), { key: key.privateKey, dsaEncoding: "ieee-p1363" });
  return `${input}.${signature.toString("base64url")}`;
}

const stamp = (seconds: number) => ({ seconds: BigInt(Math.floor(seconds)), nanos: 0 });

/** A TokenService that serves GetJwks and both watch streams from state the test changes. */
class ScriptedTokend {
  keys: object[] = [];
  revocations: Revocation[] = [];
  /** While down, every call fails UNAVAILABLE and open streams end. */
  down = false;
  /** While silent, open streams send nothing (no keep-alives either). */
  silent = false;
  /** No checkpoint ever ends the history. */
  neverSynced = false;
  /** The next WatchRevocations fails with this code. */
  failNextWatch: Code | undefined;
  getJwksCalls = 0;
  watchJwksCalls = 0;
  fromSequences: bigint[] = [];
  #server: Http2Server;
  #generation = 0;

  constructor() {
    const adapter = connectNodeAdapter({
      routes: (router) => router.service(TokenService, {
        getJwks: async () => {
          this.#checkUp();
          this.getJwksCalls += 1;
          return { jwksJson: JSON.stringify({ keys: this.keys }) };
        },
        watchJwks: (_request, context) => this.#watchJwks(context),
        watchRevocations: (request, context) => this.#watchRevocations(request.fromSequence, context),
      }),
    });
    this.#server = createServer(adapter);
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    return `127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.down = true;
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  revoke(kind: string, value: string, notBefore?: number): void {
    const sequence = BigInt(this.revocations.length + 1);
    this.revocations.push({ sequence, kind, value, notBefore, expiresAt: Date.now() / 1000 + 3600 });
  }

  /** Ends every open stream with UNAVAILABLE, as a restarting tokend does. */
  drop(): void {
    this.#generation += 1;
  }

  #checkUp(): void {
    if (this.down) throw new ConnectError("tokend is down", Code.Unavailable);
  }

  async *#watchJwks(context: HandlerContext) {
    this.#checkUp();
    this.watchJwksCalls += 1;
    const generation = this.#generation;
    let sent = "";
    for (;;) {
      const current = JSON.stringify({ keys: this.keys });
      if (!this.silent && current !== sent) {
        yield { jwksJson: current, keepAlive: false };
        sent = current;
      }
      await this.#tick(generation, context);
    }
  }

  async *#watchRevocations(fromSequence: bigint, context: HandlerContext) {
    this.#checkUp();
    this.fromSequences.push(fromSequence);
    const failure = this.failNextWatch;
    this.failNextWatch = undefined;
    if (failure !== undefined) throw new ConnectError("scripted failure", failure);
    if (fromSequence > BigInt(this.revocations.length)) {
      throw new ConnectError("from_sequence is ahead of the feed", Code.FailedPrecondition);
    }
    const generation = this.#generation;
    let sent = fromSequence;
    let checkpointed = false;
    for (;;) {
      if (!this.silent) {
        for (const entry of this.revocations.filter((r) => r.sequence > sent)) {
          yield {
            sequence: entry.sequence, kind: entry.kind, value: entry.value, expiresAt: stamp(entry.expiresAt),
            ...(entry.notBefore === undefined ? {} : { notBefore: stamp(entry.notBefore) }),
          };
          sent = entry.sequence;
        }
        if (!checkpointed && !this.neverSynced) {
          yield { sequence: sent, checkpoint: true };
          checkpointed = true;
        }
      }
      await this.#tick(generation, context);
    }
  }

  async #tick(generation: number, context: HandlerContext): Promise<void> {
    await sleep(10);
    if (context.signal.aborted) throw new ConnectError("cancelled", Code.Canceled);
    if (this.down || generation !== this.#generation) throw new ConnectError("shutting down", Code.Unavailable);
  }
}

// The limit bounds a wait for something that must happen, not how fast: generous, for a
// loaded machine (CI, or 8 jobs on 2 cores).
async function waitFor(what: string, condition: () => boolean | Promise<boolean>, limitMs = 10_000): Promise<number> {
  const started = performance.now();
  while (!(await condition())) {
    assert.ok(performance.now() - started < limitMs, `${what}: not within ${limitMs} ms`);
    await sleep(10);
  }
  return performance.now() - started;
}

async function outcome(verifier: Verifier, candidate: string): Promise<string> {
  try {
    return `valid ${(await verifier.verify(candidate)).sub}`;
  } catch (error) {
    if (error instanceof InvalidTokenError) return Reason[error.reason]!;
    if (error instanceof KeySourceError) return "no verdict";
    throw error;
  }
}

describe("LiveSource", () => {
  const key = signingKey("k1");
  let tokend: ScriptedTokend;
  let client: TokendClient;
  const sources: LiveSource[] = [];

  const follow = async (options: ConstructorParameters<typeof LiveSource>[1] = {}) => {
    const live = new LiveSource(client, { maxBackoffMs: 100, ...options });
    sources.push(live);
    const verifier = new Verifier({ keys: live, issuer: ISSUER, audience: AUDIENCE });
    return { live, verifier };
  };

  before(async () => {
    tokend = new ScriptedTokend();
    tokend.keys = [key.jwk];
    client = connectInsecureLoopback(await tokend.start());
  });
  // Each test's sources stop with it: an earlier test's source, reconnecting after this
  // test's drop(), would otherwise add its own requests to tokend.fromSequences.
  afterEach(async () => { await Promise.all(sources.splice(0).map((live) => live.close())); });
  after(async () => {
    client.close();
    await tokend.close();
  });

  it("refuses revoked jtis and subjects, and resumes from the last sequence after a drop", async () => {
    tokend.revoke("jti", "revoked-before-start");
    const { live, verifier } = await follow();
    assert.equal(await outcome(verifier, token(key, { jti: "revoked-before-start" })), "REVOKED");
    const alice = token(key, { jti: "alice-1" });
    assert.equal(await outcome(verifier, alice), "valid alice");
    tokend.revoke("jti", "alice-1");
    await waitFor("jti revocation", async () => (await outcome(verifier, alice)) === "REVOKED");

    const iat = Math.floor(Date.now() / 1000);
    const bob = token(key, { sub: "bob", iat });
    tokend.revoke("subject", "bob", iat); // the same second counts as before
    await waitFor("subject revocation", async () => (await outcome(verifier, bob)) === "REVOKED");
    assert.equal(await outcome(verifier, token(key, { sub: "bob", iat: iat + 1 })), "valid bob");
    assert.equal(await outcome(verifier, token(key, { sub: "bob", iat: "early" })), "MALFORMED");

    const seen = live.revocations.sequence;
    const opened = tokend.fromSequences.length;
    tokend.drop();
    tokend.revoke("jti", "while-reconnecting");
    await waitFor("resumed stream", () => tokend.fromSequences.length > opened);
    assert.equal(tokend.fromSequences[opened], seen, "a reconnect asks for what follows, not everything again");
    await waitFor("revocation after the reconnect",
      async () => (await outcome(verifier, token(key, { jti: "while-reconnecting" }))) === "REVOKED");
    assert.ok(live.reconnects >= 1);
  });

  it("replays from 0 when tokend's feed is behind the client's sequence", async () => {
    const { live } = await follow();
    await live.keys();
    const opened = tokend.fromSequences.length;
    live.revocations.sequence = 1_000n; // as after tokend's store was replaced
    tokend.drop();
    // This is the only source open (afterEach), so these are its two requests, in order.
    await waitFor("a refused resume and a replay", () => tokend.fromSequences.length >= opened + 2);
    assert.deepEqual(tokend.fromSequences.slice(opened), [1_000n, 0n]);
    await waitFor("synced again", () => live.revocations.sequence === BigInt(tokend.revocations.length));
    assert.deepEqual(tokend.fromSequences.slice(opened), [1_000n, 0n], "the replay stays open");
  });

  it("fails closed when the revocation stream is down too long, and recovers", async () => {
    const events: boolean[] = [];
    // 150 ms of outage must stay well under maxStalenessMs, also when timers run late.
    const { live, verifier } = await follow({ maxStalenessMs: 1_000, onStale: (stale) => events.push(stale) });
    const valid = token(key);
    assert.equal(await outcome(verifier, valid), "valid alice");
    tokend.revoke("jti", "revoked-before-closing");
    const revoked = token(key, { jti: "revoked-before-closing" });
    await waitFor("revocation", async () => (await outcome(verifier, revoked)) === "REVOKED");
    tokend.down = true;
    tokend.drop();
    try {
      await sleep(150);
      assert.equal(await outcome(verifier, valid), "valid alice", "a short outage changes nothing");
      await waitFor("fail-closed", async () => (await outcome(verifier, valid)) === "no verdict");
      assert.ok(live.stale);
      await assert.rejects(verifier.verify(valid), (error: unknown) => error instanceof KeySourceError
        && !(error instanceof InvalidTokenError) && /fail-closed/.test(error.message));
      // A token known to be revoked still gets its verdict.
      assert.equal(await outcome(verifier, revoked), "REVOKED");
    } finally {
      tokend.down = false;
    }
    await waitFor("recovery", async () => (await outcome(verifier, valid)) === "valid alice");
    assert.deepEqual(events, [true, false]);
  });

  it("fails open when told to, and says so through the callback", async () => {
    const events: boolean[] = [];
    const { live, verifier } = await follow({ maxStalenessMs: 300, stalePolicy: "fail-open", onStale: (stale) => events.push(stale) });
    tokend.revoke("jti", "revoked-before-outage");
    const revoked = token(key, { jti: "revoked-before-outage" });
    await waitFor("revocation", async () => (await outcome(verifier, revoked)) === "REVOKED");
    tokend.down = true;
    tokend.drop();
    try {
      await waitFor("stale", () => live.stale);
      assert.deepEqual(events, [true]);
      assert.equal(await outcome(verifier, token(key)), "valid alice");
      assert.equal(await outcome(verifier, revoked), "REVOKED", "the last known revocations stay in force");
    } finally {
      tokend.down = false;
    }
    await waitFor("fresh again", () => !live.stale);
  });

  it("refuses to start before the revocations in force have arrived", async () => {
    tokend.neverSynced = true;
    try {
      const { verifier } = await follow({ readyTimeoutMs: 300 });
      await assert.rejects(verifier.verify(token(key)), KeySourceError);
    } finally {
      tokend.neverSynced = false;
    }
  });

  it("reopens a stream that went silent", async () => {
    const { live } = await follow({ idleTimeoutMs: 200 });
    await live.keys();
    const opened = tokend.fromSequences.length;
    tokend.silent = true;
    try {
      await waitFor("reopened", () => tokend.fromSequences.length > opened);
    } finally {
      tokend.silent = false;
    }
  });

  it("takes new keys from WatchJwks, refetches an unknown kid once per cooldown, and refreshes by age", async () => {
    // The two verifies after the k3 fetch must fall within one cooldown, also when slow.
    const { live, verifier } = await follow({ cooldownMs: 1_000, maxAgeMs: 3_600_000 });
    await live.keys();
    const calls = tokend.getJwksCalls;
    const next = signingKey("k2");
    tokend.keys = [key.jwk, next.jwk];
    await waitFor("pushed key", () => live.current()?.get("k2") !== undefined);
    assert.equal(await outcome(verifier, token(next)), "valid alice");
    assert.equal(tokend.getJwksCalls, calls, "pushed, not fetched");

    tokend.silent = true; // the stream stops delivering: only GetJwks can bring keys now
    await sleep(1_050); // the first GetJwks is older than the cooldown
    try {
      const third = signingKey("k3");
      tokend.keys = [key.jwk, next.jwk, third.jwk];
      assert.equal(await outcome(verifier, token(third)), "valid alice"); // unknown kid: one GetJwks
      assert.equal(tokend.getJwksCalls, calls + 1);
      assert.equal(await outcome(verifier, token(signingKey("never-published"))), "UNKNOWN_KEY");
      assert.equal(tokend.getJwksCalls, calls + 1, "no second fetch within the cooldown");
    } finally {
      tokend.silent = false;
      tokend.keys = [key.jwk];
    }

    const aging = await follow({ maxAgeMs: 300 });
    await aging.live.keys();
    tokend.silent = true;
    try {
      const fetched = tokend.getJwksCalls;
      await waitFor("refresh by age", () => tokend.getJwksCalls > fetched);
    } finally {
      tokend.silent = false;
    }
  });
});
