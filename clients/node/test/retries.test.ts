/**
 * Retries and default deadlines of the client (src/retries.ts) against a scripted
 * TokenService over real gRPC on loopback: the real tokend cannot answer UNAVAILABLE or
 * slowly on cue.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer, type Http2Server } from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  connectInsecureLoopback, newIdempotencyKey, SERVICE_CONFIG, TokenService, type ConnectOptions, type TokendClient,
} from "../src/index.js";

type Method = "issue" | "verify" | "refresh";

class Scripted {
  failures: Record<Method, Code[]> = { issue: [], verify: [], refresh: [] };
  calls: Record<Method, number> = { issue: 0, verify: 0, refresh: 0 };
  keys: string[] = [];
  delayMs = 0;
  streamGapMs = 0;
  #server: Http2Server;

  constructor() {
    const scripted = this;
    this.#server = createServer(connectNodeAdapter({
      routes: (router) => router.service(TokenService, {
        issue: async () => { await this.#enter("issue"); return {}; },
        verify: async () => { await this.#enter("verify"); return {}; },
        refresh: async (request) => {
          this.keys.push(request.idempotencyKey);
          await this.#enter("refresh");
          return {};
        },
        // A feed that stays quiet for streamGapMs between two events, then ends.
        watchRevocations: async function* (this: void) {
          yield { sequence: 1n, checkpoint: true };
          await sleep(scripted.streamGapMs);
          yield { sequence: 2n, checkpoint: true };
        },
      }),
    }));
  }

  async #enter(method: Method): Promise<void> {
    this.calls[method] += 1;
    if (this.delayMs) await sleep(this.delayMs);
    const code = this.failures[method].shift();
    if (code !== undefined) throw new ConnectError("scripted failure", code);
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    return `127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

const unavailable = (n: number): Code[] => Array<Code>(n).fill(Code.Unavailable);
const codeOf = (code: Code) => (error: unknown) => ConnectError.from(error).code === code;

/** How long `call` took to fail with `code`, in ms. */
async function failsWith(code: Code, call: () => Promise<unknown>): Promise<number> {
  const started = Date.now();
  await assert.rejects(call(), codeOf(code));
  return Date.now() - started;
}

describe("retries and deadlines (shared service config)", () => {
  const server = new Scripted();
  let client: TokendClient;

  before(async () => { client = connectInsecureLoopback(await server.start()); });
  after(async () => { client.close(); await server.close(); });
  beforeEach(() => {
    server.calls = { issue: 0, verify: 0, refresh: 0 };
    server.keys = [];
    server.delayMs = 0;
  });

  it("retries an UNAVAILABLE Verify and Issue transparently", async () => {
    server.failures.verify = unavailable(2);
    server.failures.issue = unavailable(3);
    await client.verify({ token: "a.b.c", audience: "orders" });
    await client.issue({ subject: "alice" });
    assert.deepEqual([server.calls.verify, server.calls.issue], [3, 4]);
  });

  it("stops after 4 attempts, and never retries another code", async () => {
    server.failures.verify = unavailable(10);
    server.failures.issue = [Code.InvalidArgument];
    await assert.rejects(client.verify({ token: "a.b.c", audience: "orders" }),
      (error) => ConnectError.from(error).code === Code.Unavailable);
    await assert.rejects(client.issue({ subject: "alice" }),
      (error) => ConnectError.from(error).code === Code.InvalidArgument);
    assert.deepEqual([server.calls.verify, server.calls.issue], [4, 1]);
    server.failures.verify = [];
  });

  it("gives a keyless Refresh one key for all its retries, and keeps a caller's key", async () => {
    server.failures.refresh = unavailable(2);
    const request = { refreshToken: "tkd_rt_x" };
    await client.refresh(request);
    assert.equal("idempotencyKey" in request, false, "the caller's request was modified");
    const mine = newIdempotencyKey();
    server.failures.refresh = unavailable(1);
    await client.refresh({ refreshToken: "tkd_rt_y", idempotencyKey: mine });
    const [a, b, c, d, e] = server.keys;
    assert.equal(server.keys.length, 5);
    assert.equal(a?.length, 32);
    assert.ok(a === b && b === c && a !== mine);
    assert.ok(d === mine && e === mine);
  });

  it("applies the config's 5 s default deadline to Verify, once for all attempts", async () => {
    server.delayMs = 6_000;
    const started = Date.now();
    await assert.rejects(client.verify({ token: "a.b.c", audience: "orders" }),
      (error) => ConnectError.from(error).code === Code.DeadlineExceeded);
    const took = Date.now() - started;
    assert.ok(took >= 4_900 && took < 5_800, `took ${took} ms`);
    assert.equal(server.calls.verify, 1);
    // A call's own deadline wins.
    const short = Date.now();
    await assert.rejects(client.verify({ token: "a.b.c", audience: "orders" }, { timeoutMs: 300 }),
      (error) => ConnectError.from(error).code === Code.DeadlineExceeded);
    assert.ok(Date.now() - short < 1_000);
  });

  it("carries the repository's service config", () => {
    const source = new URL("../../../service-config.json", import.meta.url);
    const copy = new URL("../../src/service-config.json", import.meta.url);
    assert.equal(readFileSync(copy, "utf8"), readFileSync(source, "utf8"),
      "src/service-config.json drifted from clients/service-config.json: copy it again");
    assert.deepEqual(SERVICE_CONFIG, JSON.parse(readFileSync(source, "utf8")));
  });
});

describe("connect({ defaultTimeoutMs })", () => {
  const server = new Scripted();
  let address: string;
  const clients: TokendClient[] = [];
  const open = (options: ConnectOptions) => {
    const client = connectInsecureLoopback(address, options);
    clients.push(client);
    return client;
  };

  before(async () => { address = await server.start(); });
  after(async () => { for (const client of clients) client.close(); await server.close(); });
  beforeEach(() => {
    server.calls = { issue: 0, verify: 0, refresh: 0 };
    server.failures = { issue: [], verify: [], refresh: [] };
    server.delayMs = 0;
    server.streamGapMs = 0;
  });

  // The service config would give verify 5 s and issue 10 s: well over the server's 2 s.
  for (const batchVerify of [true, false]) {
    it(`replaces every unary method's config deadline (batchVerify: ${batchVerify})`, async () => {
      const client = open({ defaultTimeoutMs: 300, batchVerify });
      server.delayMs = 2_000;
      const calls = {
        verify: () => client.verify({ token: "a.b.c", audience: "orders" }),
        issue: () => client.issue({ subject: "alice" }),
        refresh: () => client.refresh({ refreshToken: "tkd_rt_x" }),
      };
      for (const [name, call] of Object.entries(calls)) {
        const took = await failsWith(Code.DeadlineExceeded, call);
        assert.ok(took >= 250 && took < 1_500, `${name} took ${took} ms`);
      }
      assert.deepEqual(server.calls, { issue: 1, verify: 1, refresh: 1 });
    });
  }

  it("lets a call's own timeoutMs win, longer or shorter, and 0 mean none", async () => {
    const client = open({ defaultTimeoutMs: 300 });
    server.delayMs = 700;
    await client.verify({ token: "a.b.c", audience: "orders" }, { timeoutMs: 5_000 });
    await client.issue({ subject: "alice" }, { timeoutMs: 5_000 });
    await client.issue({ subject: "alice" }, { timeoutMs: 0 });
    await client.verify({ token: "a.b.c", audience: "orders" }, { timeoutMs: 0 });
    // Shorter: far enough below the default to tell them apart on a loaded machine.
    const patient = open({ defaultTimeoutMs: 3_000 });
    server.delayMs = 5_000;
    const took = await failsWith(Code.DeadlineExceeded,
      () => patient.issue({ subject: "alice" }, { timeoutMs: 100 }));
    assert.ok(took < 1_500, `took ${took} ms`);
  });

  it("covers all the retries with one deadline", async () => {
    const client = open({ defaultTimeoutMs: 300, batchVerify: false });
    server.delayMs = 100;
    server.failures.verify = unavailable(10);
    const started = Date.now();
    // The deadline cuts an attempt (DeadlineExceeded) or leaves no time for another.
    await assert.rejects(client.verify({ token: "a.b.c", audience: "orders" }),
      (error) => [Code.DeadlineExceeded, Code.Unavailable].includes(ConnectError.from(error).code));
    const took = Date.now() - started;
    assert.ok(took < 1_000, `took ${took} ms`);
    // 4 attempts of 100 ms each cannot fit in 300 ms (with the config's 5 s they all run).
    assert.ok(server.calls.verify >= 1 && server.calls.verify <= 3, `${server.calls.verify} attempts`);
  });

  it("gives the streams no deadline", async () => {
    const client = open({ defaultTimeoutMs: 300 });
    server.streamGapMs = 1_000;
    const sequences: bigint[] = [];
    for await (const event of client.watchRevocations({ fromSequence: 0n })) sequences.push(event.sequence);
    assert.deepEqual(sequences, [1n, 2n]);
  });

  it("must be a positive number", () => {
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, "300" as unknown as number]) {
      assert.throws(() => open({ defaultTimeoutMs: bad }), RangeError, String(bad));
    }
  });
});
