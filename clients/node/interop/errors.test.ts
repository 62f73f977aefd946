/**
 * Typed errors from a live tokend: the servers of tests/support/error_servers.py, named by
 * the TOKEND_ERRORS_* variables; run by tests/interop/test_node.py::test_node_error_details
 * (`npm run test:errors`).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, connect, ERROR_DOMAIN, TokendError, tokendErrorFrom } from "../src/index.js";

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run through tests/interop/test_node.py`);
  return value;
}

function client(caller: string) {
  const who = caller.toUpperCase();
  return connect(env("TOKEND_ERRORS_ADDR_MAIN"), {
    caFile: env("TOKEND_ERRORS_CA_FILE"),
    certFile: env(`TOKEND_ERRORS_CERT_${who}`),
    keyFile: env(`TOKEND_ERRORS_KEY_${who}`),
  });
}

async function failure(call: () => Promise<unknown>, attempts = 1): Promise<TokendError> {
  for (let i = 0; i < attempts; i++) {
    try {
      await call();
    } catch (error) {
      return tokendErrorFrom(error);
    }
  }
  throw new Error(`every one of ${attempts} attempts succeeded`);
}

describe("tokend error details", () => {
  const audience = env("TOKEND_ERRORS_AUDIENCE");

  it("INVALID_ARGUMENT carries the reason and the field at fault", async () => {
    const tokend = client("main");
    try {
      const error = await failure(() => tokend.issue({ subject: "", audience: [audience] }));
      assert.equal(error.code, Code.InvalidArgument);
      assert.equal(error.reason, "INVALID_SUBJECT");
      assert.equal(error.domain, ERROR_DOMAIN);
      assert.equal(error.metadata["method"], "Issue");
      assert.deepEqual(error.fieldViolations.map((v) => v.field), ["subject"]);
      assert.equal(error.retryDelayMs, undefined);
      assert.match(error.message, /INVALID_SUBJECT/);
    } finally {
      tokend.close();
    }
  });

  it("RATE_LIMITED carries the time until the caller's bucket refills", async () => {
    const tokend = client("limited");
    try {
      // The limited caller's bucket holds one call (burst 1, 0.05 per second).
      const error = await failure(() => tokend.issue({ subject: "alice", audience: [audience] }), 3);
      assert.equal(error.code, Code.ResourceExhausted);
      assert.equal(error.reason, "RATE_LIMITED");
      assert.equal(error.domain, ERROR_DOMAIN);
      assert.ok(error.retryDelayMs !== undefined && error.retryDelayMs > 0 && error.retryDelayMs <= 20_000,
        `retry delay ${error.retryDelayMs} ms`);
    } finally {
      tokend.close();
    }
  });

  it("a non-gRPC error becomes Unknown without details", () => {
    const error = tokendErrorFrom(new Error("boom"));
    assert.equal(error.code, Code.Unknown);
    assert.equal(error.reason, "");
  });
});
