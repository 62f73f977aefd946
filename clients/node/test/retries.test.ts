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
import { connectInsecureLoopback, newIdempotencyKey, SERVICE_CONFIG, TokenService, type TokendClient } from "../src/index.js";

type Method = "issue" | "verify" | "refresh";

class Scripted {
  failures: Record<Method, Code[]> = { issue: [], verify: [], refresh: [] };
  calls: Record<Method, number> = { issue: 0, verify: 0, refresh: 0 };
  keys: string[] = [];
  delayMs = 0;
  #server: Http2Server;

  constructor() {
    this.#server = createServer(connectNodeAdapter({
      routes: (router) => router.service(TokenService, {
        issue: async () => { await this.#enter("issue"); return {}; },
        verify: async () => { await this.#enter("verify"); return {}; },
        refresh: async (request) => {
          this.keys.push(request.idempotencyKey);
          await this.#enter("refresh");
          return {};
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
