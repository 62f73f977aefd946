/**
 * The verify batcher (src/batch.ts) over real gRPC on loopback, against in-process
 * TokenServices of our own: one with Verify and VerifyMany that answers from the token's
 * text and can be slowed or made to fail on cue, and one with Verify only (a stand-in for a
 * tokend older than VerifyMany, which the real one cannot be made to be). The same against
 * a live tokend is interop/batch.test.ts.
 */
import assert from "node:assert/strict";
import { createServer, type Http2Server } from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  connectInsecureLoopback, invalidVerifyRequestError, Reason, TokenService, tokendErrorFrom, VerifyResponseSchema,
  type ConnectOptions, type TokendClient, type VerifyRequest, type VerifyResponse,
} from "../src/index.js";

/** What the stand-in answers for a request: "ok-<subject>" is valid, "revoked-…" revoked. */
function answer(request: VerifyRequest): VerifyResponse {
  if (request.audience === "") {
    throw invalidVerifyRequestError("audience", "audience is required", "INVALID_AUDIENCE");
  }
  if (request.token.startsWith("ok-")) {
    return create(VerifyResponseSchema, { valid: true, subject: request.token.slice(3) });
  }
  return create(VerifyResponseSchema, { valid: false, reason: Reason.REVOKED });
}

class StandIn {
  verifyCalls = 0;
  batches: number[] = [];
  active = 0;
  maxActive = 0;
  delayMs = 0;
  failMany: Code | undefined;
  dropResult = false;
  #server: Http2Server;

  constructor(withVerifyMany: boolean) {
    this.#server = createServer(connectNodeAdapter({
      routes: (router) => router.service(TokenService, {
        // Calls are counted on arrival, so that one still running from an earlier test
        // (a cancelled one) cannot count in the next.
        verify: (request) => {
          this.verifyCalls += 1;
          return this.#enter(async () => answer(request));
        },
        ...(withVerifyMany ? {
          verifyMany: (request) => {
            this.batches.push(request.requests.length);
            return this.#enter(async () => this.#many(request.requests));
          },
        } : {}),
      }),
    }));
  }

  /** VerifyMany's answer: each request's, or its field violation; or the scripted failure. */
  #many(requests: VerifyRequest[]) {
    if (this.failMany !== undefined) throw new ConnectError("scripted failure", this.failMany);
    return {
      results: requests.slice(this.dropResult ? 1 : 0).map((item) => {
        try {
          return { outcome: { case: "response" as const, value: answer(item) } };
        } catch (error) {
          const refused = tokendErrorFrom(error);
          const value = { ...refused.fieldViolations[0]!, reason: refused.reason };
          return { outcome: { case: "invalid" as const, value } };
        }
      }),
    };
  }

  async #enter<T>(work: () => Promise<T>): Promise<T> {
    this.active += 1;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      if (this.delayMs) await sleep(this.delayMs);
      return await work();
    } finally {
      this.active -= 1;
    }
  }

  reset(): void {
    this.verifyCalls = 0;
    this.batches = [];
    this.maxActive = 0;
    this.delayMs = 0;
    this.failMany = undefined;
    this.dropResult = false;
  }

  get rpcs(): number {
    return this.verifyCalls + this.batches.length;
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    return `127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** What a call settled with: the response, or the error's code, message and details. */
async function outcome(call: Promise<VerifyResponse>): Promise<unknown> {
  try {
    const response = await call;
    return { valid: response.valid, reason: response.reason, subject: response.subject };
  } catch (error) {
    const failure = tokendErrorFrom(error);
    return { code: failure.code, message: failure.rawMessage, reason: failure.reason,
      metadata: failure.metadata, violations: failure.fieldViolations };
  }
}

const request = (index: number) => {
  switch (index % 10) {
    case 3: return { token: `revoked-${index}`, audience: "orders" };
    case 7: return { token: `ok-${index}`, audience: "" };
    default: return { token: `ok-${index}`, audience: "orders" };
  }
};

const codeOf = (code: Code) => (error: unknown) => ConnectError.from(error).code === code;

describe("verify() batching against a VerifyMany server", () => {
  const server = new StandIn(true);
  let address: string;
  const clients: TokendClient[] = [];
  const open = (options: ConnectOptions = {}) => {
    const client = connectInsecureLoopback(address, options);
    clients.push(client);
    return client;
  };

  before(async () => { address = await server.start(); });
  after(async () => { for (const client of clients) client.close(); await server.close(); });
  beforeEach(() => server.reset());

  it("sends a lone call as a unary Verify", async () => {
    const client = open();
    assert.equal((await client.verify({ token: "ok-alice", audience: "orders" })).subject, "alice");
    assert.deepEqual([server.verifyCalls, server.batches], [1, []]);
  });

  it("answers 200 concurrent calls as unary Verify would, in fewer RPCs", async () => {
    const unary = open({ batchVerify: false });
    const expected = await Promise.all(Array.from({ length: 200 }, (_, i) => outcome(unary.verify(request(i)))));
    assert.equal(server.verifyCalls, 200);
    assert.deepEqual(server.batches, []);
    server.reset();
    server.delayMs = 20;
    const batched = open();
    const got = await Promise.all(Array.from({ length: 200 }, (_, i) => outcome(batched.verify(request(i)))));
    assert.deepEqual(got, expected);
    assert.ok(server.batches.length > 0 && server.rpcs < 200, `${server.rpcs} RPCs for 200 calls`);
    assert.ok(server.batches.every((size) => size >= 2 && size <= 64), `batches ${server.batches}`);
    assert.ok(server.maxActive <= 4, `${server.maxActive} RPCs in flight`);
    // The refused request fails as a unary INVALID_ARGUMENT does, details included.
    assert.deepEqual(got[7], { code: Code.InvalidArgument, message: "audience is required",
      reason: "INVALID_AUDIENCE", metadata: { method: "Verify", field: "audience" },
      violations: [{ field: "audience", description: "audience is required" }] });
  });

  it("keeps to maxInFlight and maxBatch", async () => {
    const client = open({ maxInFlight: 2, maxBatch: 5 });
    server.delayMs = 20;
    const got = await Promise.all(Array.from({ length: 23 }, (_, i) => client.verify({ token: `ok-${i}`, audience: "a" })));
    assert.deepEqual(got.map((response) => response.subject), Array.from({ length: 23 }, (_, i) => `${i}`));
    assert.deepEqual(server.batches, [5, 5, 5, 5, 3]);
    assert.equal(server.maxActive, 2);
    assert.throws(() => open({ maxBatch: 257 }), RangeError);
    assert.throws(() => open({ maxInFlight: 0 }), RangeError);
  });

  it("fails every call of a batch with the batch's error", async () => {
    const client = open();
    server.failMany = Code.PermissionDenied;
    const calls = Array.from({ length: 5 }, (_, i) => client.verify({ token: `ok-${i}`, audience: "a" }));
    for (const call of calls) await assert.rejects(call, codeOf(Code.PermissionDenied));
    assert.deepEqual(server.batches, [5]);
    // A retryable code is retried (the service config gives VerifyMany 4 attempts).
    server.reset();
    server.failMany = Code.Unavailable;
    const retried = Array.from({ length: 3 }, (_, i) => client.verify({ token: `ok-${i}`, audience: "a" }));
    for (const call of retried) await assert.rejects(call, codeOf(Code.Unavailable));
    assert.deepEqual(server.batches, [3, 3, 3, 3]);
    // An answer with a result missing cannot be matched to its requests: all fail, closed.
    server.reset();
    server.dropResult = true;
    const short = Array.from({ length: 3 }, (_, i) => client.verify({ token: `ok-${i}`, audience: "a" }));
    for (const call of short) await assert.rejects(call, codeOf(Code.Internal));
  });

  it("fails a queued call at its own deadline, without waiting for the batch", async () => {
    const client = open({ maxInFlight: 1 });
    server.delayMs = 2_000;
    const slow = client.verify({ token: "ok-slow", audience: "a" });
    await sleep(50);
    const started = Date.now();
    const queued = client.verify({ token: "ok-queued", audience: "a" }, { timeoutMs: 200 });
    const patient = client.verify({ token: "ok-patient", audience: "a" });
    await assert.rejects(queued, codeOf(Code.DeadlineExceeded));
    const took = Date.now() - started;
    assert.ok(took >= 190 && took < 1_500, `took ${took} ms`);
    assert.equal((await slow).subject, "slow");
    assert.equal((await patient).subject, "patient");
    // The expired call never reached the server: the patient one went out alone.
    assert.deepEqual([server.verifyCalls, server.batches], [2, []]);
  });

  it("gives batched and queued calls connect's defaultTimeoutMs, as a unary verify gets", async () => {
    const client = open({ defaultTimeoutMs: 300, maxInFlight: 1 });
    server.delayMs = 2_000;
    const started = Date.now();
    const batched = [1, 2, 3].map((i) => client.verify({ token: `ok-${i}`, audience: "a" }));
    await sleep(50);
    const queued = client.verify({ token: "ok-queued", audience: "a" });
    for (const call of [...batched, queued]) await assert.rejects(call, codeOf(Code.DeadlineExceeded));
    const took = Date.now() - started;
    // Not the service config's 5 s (nor the server's 2 s).
    assert.ok(took >= 290 && took < 1_500, `took ${took} ms`);
    assert.deepEqual(server.batches, [3]);
    const all = Date.now();
    const results = await client.verifyAll([{ token: "ok-x", audience: "a" }, { token: "ok-y", audience: "a" }]);
    assert.ok(results.every((result) => result instanceof ConnectError && result.code === Code.DeadlineExceeded));
    assert.ok(Date.now() - all < 1_500, `verifyAll took ${Date.now() - all} ms`);
    // A call's own timeoutMs still wins over the default.
    server.delayMs = 700;
    const patient = await Promise.all([1, 2].map((i) => client.verify({ token: `ok-${i}`, audience: "a" }, { timeoutMs: 5_000 })));
    assert.deepEqual(patient.map((response) => response.subject), ["1", "2"]);
  });

  it("fails a sent call at its deadline while its batch goes on", async () => {
    const client = open();
    server.delayMs = 1_500;
    const started = Date.now();
    const short = client.verify({ token: "ok-short", audience: "a" }, { timeoutMs: 150 });
    const long = client.verify({ token: "ok-long", audience: "a" });
    await assert.rejects(short, codeOf(Code.DeadlineExceeded));
    assert.ok(Date.now() - started < 1_200, `took ${Date.now() - started} ms`);
    assert.equal((await long).subject, "long");
    assert.deepEqual(server.batches, [2]);
  });

  it("drops an aborted call from the queue, and ignores an aborted call's answer", async () => {
    const client = open({ maxInFlight: 1 });
    server.delayMs = 300;
    const first = new AbortController();
    const sent = client.verify({ token: "ok-sent", audience: "a" }, { signal: first.signal });
    const mate = client.verify({ token: "ok-mate", audience: "a" });
    await sleep(20);
    const second = new AbortController();
    const queued = client.verify({ token: "ok-queued", audience: "a" }, { signal: second.signal });
    const last = client.verify({ token: "ok-last", audience: "a" });
    first.abort();
    second.abort();
    await assert.rejects(sent, codeOf(Code.Canceled));
    await assert.rejects(queued, codeOf(Code.Canceled));
    assert.equal((await mate).subject, "mate");
    assert.equal((await last).subject, "last");
    assert.deepEqual([server.batches, server.verifyCalls], [[2], 1]);
    const already = AbortSignal.abort();
    await assert.rejects(client.verify({ token: "ok-x", audience: "a" }, { signal: already }), codeOf(Code.Canceled));
  });

  it("cancels the RPC when every caller of its batch gave up", async () => {
    const client = open({ maxInFlight: 1 });
    server.delayMs = 2_000;
    const gone = new AbortController();
    const calls = [1, 2].map((i) => client.verify({ token: `ok-${i}`, audience: "a" }, { signal: gone.signal }));
    await sleep(50);
    gone.abort();
    for (const call of calls) await assert.rejects(call, codeOf(Code.Canceled));
    // The slot is free again at once, not after the server's 2 s.
    server.delayMs = 0;
    const started = Date.now();
    assert.equal((await client.verify({ token: "ok-next", audience: "a" })).subject, "next");
    assert.ok(Date.now() - started < 1_000);
  });

  it("sends a call with its own headers, and a very large request, alone", async () => {
    const client = open();
    const big = `ok-${"x".repeat(70 * 1024)}`;
    const calls = [
      client.verify({ token: "ok-a", audience: "a" }),
      client.verify({ token: "ok-b", audience: "a" }, { headers: { "x-trace": "1" } }),
      client.verify({ token: big, audience: "a" }),
      client.verify({ token: "ok-c", audience: "a" }),
    ];
    assert.deepEqual((await Promise.all(calls)).map((response) => response.subject.length), [1, 1, big.length - 3, 1]);
    assert.deepEqual([server.batches, server.verifyCalls], [[2], 2]);
  });

  it("keeps each VerifyMany under tokend's 64 KiB request limit", async () => {
    const client = open();
    const requests = Array.from({ length: 10 }, (_, i) => ({ token: `ok-${i}${"x".repeat(10 * 1024)}`, audience: "a" }));
    const got = await Promise.all(requests.map((item) => client.verify(item)));
    assert.deepEqual(got.map((response) => response.subject.slice(0, 1)), "0123456789".split(""));
    assert.deepEqual(server.batches, [5, 5]);
    server.reset();
    const all = await client.verifyAll(requests);
    assert.equal(all.length, 10);
    assert.deepEqual(server.batches, [5, 5]);
  });

  it("settles a request that is no VerifyRequest as the unary call does, never throws", async () => {
    const client = open();
    const unary = open({ batchVerify: false });
    for (const bad of [{ token: 42, audience: "a" }, { token: "ok-a", audience: "a", requiredScopes: 7 }, null]) {
      const request = bad as unknown as VerifyRequest;
      const [got, expected] = await Promise.allSettled([client.verify(request), unary.verify(request)]);
      assert.equal(got.status, expected.status);
      assert.deepEqual(got.status === "fulfilled" ? got.value : String(got.reason),
        expected.status === "fulfilled" ? expected.value : String(expected.reason));
      const all = await client.verifyAll([{ token: "ok-b", audience: "a" }, request, { token: "ok-c", audience: "a" }]);
      assert.deepEqual([(all[0] as VerifyResponse).subject, (all[2] as VerifyResponse).subject], ["b", "c"]);
    }
  });

  it("never batches with batchVerify: false", async () => {
    const client = open({ batchVerify: false });
    server.delayMs = 20;
    await Promise.all(Array.from({ length: 30 }, (_, i) => client.verify({ token: `ok-${i}`, audience: "a" })));
    assert.deepEqual([server.verifyCalls, server.batches], [30, []]);
  });

  it("fails queued calls with Canceled on close()", async () => {
    const client = connectInsecureLoopback(address, { maxInFlight: 1 });
    server.delayMs = 500;
    const sent = client.verify({ token: "ok-sent", audience: "a" });
    await sleep(20);
    const calls = [sent, ...[1, 2].map((i) => client.verify({ token: `ok-${i}`, audience: "a" }))];
    client.close();
    for (const call of calls) await assert.rejects(call, codeOf(Code.Canceled));
  });

  it("verifyAll answers in order, in chunks of 256", async () => {
    const client = open();
    const requests = Array.from({ length: 600 }, (_, i) => request(i));
    const got = await client.verifyAll(requests);
    assert.equal(got.length, 600);
    assert.deepEqual([...server.batches].sort(), [256, 256, 88].sort());
    got.forEach((result, i) => {
      if (i % 10 === 7) {
        assert.ok(result instanceof ConnectError && result.code === Code.InvalidArgument);
        assert.deepEqual(tokendErrorFrom(result).fieldViolations, [{ field: "audience", description: "audience is required" }]);
      } else if (i % 10 === 3) {
        assert.equal((result as VerifyResponse).reason, Reason.REVOKED);
      } else {
        assert.equal((result as VerifyResponse).subject, `${i}`);
      }
    });
    assert.deepEqual(await client.verifyAll([]), []);
    server.reset();
    server.failMany = Code.PermissionDenied;
    const denied = await client.verifyAll(requests.slice(0, 3));
    assert.ok(denied.every((result) => result instanceof ConnectError && result.code === Code.PermissionDenied));
  });
});

describe("verify() against a tokend without VerifyMany", () => {
  const server = new StandIn(false);
  let address: string;

  before(async () => { address = await server.start(); });
  after(async () => { await server.close(); });
  beforeEach(() => server.reset());

  it("falls back to unary Verify for good, says so once, and answers right", async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error & { code?: string }) => { warnings.push(warning.code ?? ""); };
    process.on("warning", onWarning);
    const client = connectInsecureLoopback(address);
    try {
      server.delayMs = 20;
      const got = await Promise.all(Array.from({ length: 40 }, (_, i) => outcome(client.verify(request(i)))));
      got.forEach((result, i) => {
        const expected = i % 10 === 7 ? { code: Code.InvalidArgument } : i % 10 === 3
          ? { valid: false, reason: Reason.REVOKED } : { valid: true, subject: `${i}` };
        assert.deepEqual(Object.fromEntries(Object.entries(result as object).filter(([key]) => key in expected)), expected);
      });
      assert.equal(server.verifyCalls, 40);
      const calls = server.verifyCalls;
      await Promise.all(Array.from({ length: 10 }, (_, i) => client.verify({ token: `ok-${i}`, audience: "a" })));
      assert.equal(server.verifyCalls, calls + 10);
      const all = await client.verifyAll([{ token: "ok-x", audience: "a" }, { token: "ok-y", audience: "" }]);
      assert.equal((all[0] as VerifyResponse).subject, "x");
      assert.ok(all[1] instanceof ConnectError && all[1].code === Code.InvalidArgument);
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(warnings.filter((code) => code === "TOKEND_VERIFY_MANY_UNIMPLEMENTED"), ["TOKEND_VERIFY_MANY_UNIMPLEMENTED"]);
    } finally {
      process.off("warning", onWarning);
      client.close();
    }
  });

  it("verifyAll falls back too", async () => {
    const client = connectInsecureLoopback(address);
    try {
      const got = await client.verifyAll(Array.from({ length: 20 }, (_, i) => ({ token: `ok-${i}`, audience: "a" })));
      assert.deepEqual(got.map((result) => (result as VerifyResponse).subject), Array.from({ length: 20 }, (_, i) => `${i}`));
      assert.equal(server.verifyCalls, 20);
    } finally {
      client.close();
    }
  });
});
