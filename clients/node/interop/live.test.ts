/**
 * LiveSource against a live tokend (mutual TLS, real OpenBao), started for this test by
 * tests/interop/test_node.py::test_node_live with fast key refresh and propagation, and
 * named by the TOKEND_* environment variables (TOKEND_BAO_ADDR, TOKEND_BAO_TOKEN,
 * TOKEND_KEY_NAME name its transit key, which this test rotates). Run with
 * `npm run test:live`.
 *
 * A revocation on the server (by jti, by subject) must reach the Node verifier within a
 * second, and a token signed with a key rotated in on the server must verify without a
 * restart, the new key arriving over WatchJwks (the unknown-kid refetch is disabled).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { connect, InvalidTokenError, LiveSource, Reason, Verifier, type TokendClient } from "../src/index.js";

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run through tests/interop/test_node.py`);
  return value;
}

/** Milliseconds until `verifier` refuses `token` as REVOKED; fails after `limitMs`. */
async function refusedWithin(verifier: Verifier, token: string, limitMs: number): Promise<number> {
  const started = performance.now();
  for (;;) {
    try {
      await verifier.verify(token);
    } catch (error) {
      assert.ok(error instanceof InvalidTokenError, `unexpected ${String(error)}`);
      assert.equal(Reason[error.reason], "REVOKED");
      return performance.now() - started;
    }
    assert.ok(performance.now() - started < limitMs, `still accepted after ${limitMs} ms`);
    await sleep(5);
  }
}

function kidOf(token: string): string {
  return JSON.parse(Buffer.from(token.split(".")[0]!, "base64url").toString()).kid;
}

describe("LiveSource against tokend", () => {
  const audience = env("TOKEND_AUDIENCE");
  let tokend: TokendClient;
  let live: LiveSource;
  let verifier: Verifier;

  before(async () => {
    tokend = connect(env("TOKEND_ADDR"), {
      caFile: env("TOKEND_CA_FILE"), certFile: env("TOKEND_CLIENT_CERT"), keyFile: env("TOKEND_CLIENT_KEY"),
    });
    // No unknown-kid refetch and no periodic refresh: new keys can only come over WatchJwks.
    live = new LiveSource(tokend, { cooldownMs: 3_600_000, maxAgeMs: 3_600_000 });
    verifier = new Verifier({ keys: live, issuer: env("TOKEND_ISSUER"), audience });
    await live.keys(); // GetJwks, both streams open, the revocations in force arrived
    assert.ok(live.synced);
  });
  after(async () => {
    await live.close();
    tokend.close();
  });

  it("refuses a token revoked by jti within a second", async () => {
    const issued = await tokend.issue({ subject: "node-live-alice", audience: [audience] });
    assert.equal((await verifier.verify(issued.accessToken)).sub, "node-live-alice");
    await tokend.revoke({ target: { case: "jti", value: issued.jti }, reason: "node live test" });
    const elapsed = await refusedWithin(verifier, issued.accessToken, 1_000);
    console.log(`# jti revocation reached the Node verifier in ${elapsed.toFixed(0)} ms`);
  });

  it("refuses a revoked subject's tokens within a second, and accepts its later ones", async () => {
    const issued = await tokend.issue({ subject: "node-live-mallory", audience: [audience] });
    await verifier.verify(issued.accessToken);
    await tokend.revoke({ target: { case: "subject", value: "node-live-mallory" }, reason: "node live test" });
    const elapsed = await refusedWithin(verifier, issued.accessToken, 1_000);
    console.log(`# subject revocation reached the Node verifier in ${elapsed.toFixed(0)} ms`);
    await sleep(1_100); // iat has one-second resolution: the next token is newer
    const later = await tokend.issue({ subject: "node-live-mallory", audience: [audience] });
    assert.equal((await verifier.verify(later.accessToken)).sub, "node-live-mallory");
  });

  it("verifies a token signed with a key rotated in on the server, without a restart", async () => {
    const before = await tokend.issue({ subject: "node-live-bob", audience: [audience] });
    await verifier.verify(before.accessToken);
    const fetches = live.fetchCount;
    const rotated = await fetch(`${env("TOKEND_BAO_ADDR")}/v1/transit/keys/${env("TOKEND_KEY_NAME")}/rotate`, {
      method: "POST", headers: { "X-Vault-Token": env("TOKEND_BAO_TOKEN") },
    });
    assert.ok(rotated.ok, `OpenBao refused the rotation: HTTP ${rotated.status}`);
    // tokend publishes the new version at once and signs with it after its propagation delay.
    const deadline = performance.now() + 20_000;
    let token = before.accessToken;
    while (kidOf(token) === kidOf(before.accessToken)) {
      assert.ok(performance.now() < deadline, "tokend did not start signing with the rotated key");
      await sleep(100);
      token = (await tokend.issue({ subject: "node-live-bob", audience: [audience] })).accessToken;
    }
    assert.equal((await verifier.verify(token)).sub, "node-live-bob");
    assert.equal(live.fetchCount, fetches, "the new key came over WatchJwks, not GetJwks");
    assert.ok(live.current()?.kids.includes(kidOf(token)));
  });
});
