/**
 * verify() batching (src/batch.ts) against a live tokend (mutual TLS) named by the TOKEND_*
 * variables tests/conftest.py sets; run with `npm run test:batch`. What the server received
 * is read from its Prometheus /metrics (tokend_rpc_duration_seconds_count{method}), on the
 * HTTP listener that serves TOKEND_JWKS_URL. The tests of one file run one after another,
 * and nothing else calls this tokend meanwhile, so the counters' differences are ours.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  Code, connect, ConnectError, createChannelCredentials, Reason, tokendErrorFrom,
  type ConnectOptions, type TokendClient, type VerifyResponse,
} from "../src/index.js";

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run through tests/interop/test_node.py`);
  return value;
}

const METRICS_URL = new URL("/metrics", env("TOKEND_JWKS_URL"));
const COUNT = /^tokend_rpc_duration_seconds_count\{([^}]*)\} ([0-9.e+]+)$/;

/** Calls per RPC so far, as tokend counts them (every status code). */
async function rpcCounts(): Promise<{ verify: number; verifyMany: number }> {
  const response = await fetch(METRICS_URL, { signal: AbortSignal.timeout(5_000) });
  assert.equal(response.status, 200);
  const counts = { verify: 0, verifyMany: 0 };
  for (const line of (await response.text()).split("\n")) {
    const match = COUNT.exec(line);
    if (match === null) continue;
    if (match[1]!.includes('method="Verify"')) counts.verify += Number(match[2]);
    if (match[1]!.includes('method="VerifyMany"')) counts.verifyMany += Number(match[2]);
  }
  return counts;
}

/** A call's answer, or its error's code, message and details: what must be equal. */
async function outcome(call: Promise<VerifyResponse>): Promise<unknown> {
  try {
    return { response: await call };
  } catch (error) {
    const failure = tokendErrorFrom(error);
    return { code: failure.code, message: failure.rawMessage, reason: failure.reason, domain: failure.domain,
      metadata: failure.metadata, violations: failure.fieldViolations };
  }
}

describe("verify() batching against tokend", () => {
  const audience = env("TOKEND_AUDIENCE");
  const credentials = createChannelCredentials({
    caFile: env("TOKEND_CA_FILE"), certFile: env("TOKEND_CLIENT_CERT"), keyFile: env("TOKEND_CLIENT_KEY"),
  });
  const clients: TokendClient[] = [];
  const open = (options: ConnectOptions = {}) => {
    const client = connect(env("TOKEND_ADDR"), credentials, options);
    clients.push(client);
    return client;
  };
  let tokens: string[] = [];
  let revoked = "";

  before(async () => {
    const issuer = open({ batchVerify: false });
    tokens = await Promise.all(Array.from({ length: 5 }, async (_, i) =>
      (await issuer.issue({ subject: `node-batch-${i}`, audience: [audience], scopes: ["orders:read"] })).accessToken));
    revoked = (await issuer.issue({ subject: "node-batch-revoked", audience: [audience] })).accessToken;
    await issuer.revoke({ target: { case: "token", value: revoked }, reason: "node batch interop" });
  });
  after(() => { for (const client of clients) client.close(); });

  /** The i-th of a mix: valid, revoked, wrong audience, missing scope, empty audience (refused). */
  const mixed = (i: number) => {
    const token = tokens[i % tokens.length]!;
    switch (i % 8) {
      case 1: return { token: revoked, audience };
      case 3: return { token, audience: "interop-elsewhere" };
      case 5: return { token, audience, requiredScopes: ["orders:write"] };
      case 6: return { token, audience: "" };
      default: return { token, audience };
    }
  };

  it("answers 200 concurrent mixed calls as unary Verify does, in fewer RPCs", async (t) => {
    const unary = open({ batchVerify: false });
    const expected = await Promise.all(Array.from({ length: 200 }, (_, i) => outcome(unary.verify(mixed(i)))));
    // The mix is what it claims to be.
    assert.equal((expected[0] as { response: VerifyResponse }).response.valid, true);
    assert.equal((expected[1] as { response: VerifyResponse }).response.reason, Reason.REVOKED);
    assert.equal((expected[3] as { response: VerifyResponse }).response.reason, Reason.WRONG_AUDIENCE);
    assert.equal((expected[5] as { response: VerifyResponse }).response.reason, Reason.MISSING_SCOPE);
    assert.deepEqual([(expected[6] as { code: Code }).code, (expected[6] as { reason: string }).reason],
      [Code.InvalidArgument, "INVALID_AUDIENCE"]);

    const batched = open();
    const before = await rpcCounts();
    const got = await Promise.all(Array.from({ length: 200 }, (_, i) => outcome(batched.verify(mixed(i)))));
    const counted = await rpcCounts();
    got.forEach((answer, i) => assert.deepEqual(answer, expected[i], `call ${i}`));
    const verifyMany = counted.verifyMany - before.verifyMany;
    const rpcs = verifyMany + counted.verify - before.verify;
    t.diagnostic(`200 verify() calls: ${verifyMany} VerifyMany + ${rpcs - verifyMany} Verify RPCs`);
    assert.ok(verifyMany > 0, "no VerifyMany reached tokend");
    assert.ok(rpcs < 200, `${rpcs} RPCs for 200 verify() calls`);
  });

  it("sends a lone call as one unary Verify", async () => {
    const client = open();
    const before = await rpcCounts();
    assert.equal((await client.verify({ token: tokens[0]!, audience })).valid, true);
    const counted = await rpcCounts();
    assert.deepEqual([counted.verify - before.verify, counted.verifyMany - before.verifyMany], [1, 0]);
  });

  it("sends only unary Verify with batchVerify: false", async () => {
    const client = open({ batchVerify: false });
    const before = await rpcCounts();
    await Promise.all(Array.from({ length: 50 }, (_, i) => client.verify(mixed(i % 2 === 0 ? 0 : 1))));
    const counted = await rpcCounts();
    assert.deepEqual([counted.verify - before.verify, counted.verifyMany - before.verifyMany], [50, 0]);
  });

  it("fails a queued call at its deadline", async () => {
    const client = open({ maxInFlight: 1, maxBatch: 256 });
    const busy = Promise.all(Array.from({ length: 256 }, (_, i) => client.verify(mixed(i))
      .catch((error: unknown) => ConnectError.from(error))));
    const started = Date.now();
    await assert.rejects(client.verify({ token: tokens[0]!, audience }, { timeoutMs: 1 }),
      (error: unknown) => ConnectError.from(error).code === Code.DeadlineExceeded);
    assert.ok(Date.now() - started < 1_000);
    assert.equal((await busy).length, 256);
  });

  it("verifyAll answers in order, as verify() does", async () => {
    const client = open();
    const requests = Array.from({ length: 300 }, (_, i) => mixed(i));
    const before = await rpcCounts();
    const all = await client.verifyAll(requests);
    const counted = await rpcCounts();
    // 300 tokens of ~0.5 KB: a few VerifyMany (60 KiB each at most), no unary Verify.
    const verifyMany = counted.verifyMany - before.verifyMany;
    assert.ok(verifyMany >= 2 && verifyMany <= 10, `${verifyMany} VerifyMany calls`);
    assert.equal(counted.verify - before.verify, 0);
    const unary = open({ batchVerify: false });
    for (const i of [0, 1, 3, 5, 6, 299]) {
      const expected = await outcome(unary.verify(requests[i]!));
      const result = all[i];
      assert.deepEqual(await outcome(result instanceof ConnectError ? Promise.reject(result) : Promise.resolve(result!)),
        expected, `request ${i}`);
    }
  });
});
