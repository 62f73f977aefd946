/**
 * conformance/batching/cases.json (format: conformance/README.md "Batching cases"), read by
 * the Python, Go and Java clients' tests too, against VerifyBatcher: how `verifyAll` splits
 * requests into VerifyMany calls (each chunk and its encoded size), how the `verify()` queue
 * takes its batches by the same rule, and the error a VerifyMany item's InvalidRequest
 * becomes. The batcher runs over stand-in RPCs that record
 * what each call carries and answer at once (no network: these are the batcher's rules).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { splitRequests } from "../src/batch.js";
import {
  tokendErrorFrom, VerifyBatcher, VerifyManyRequestSchema, VerifyManyResponseSchema, VerifyRequestSchema,
  VerifyResponseSchema, type VerifyInit, type VerifyRequest, type VerifyRpcs,
} from "../src/index.js";

// dist/test/batchconformance.test.js -> the repository root.
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..");
const CASES_FILE = join(ROOT, "conformance", "batching", "cases.json");

interface RequestSpec { token_length: number; audience: string; required_scopes: string[] }
interface SplitCase {
  id: string;
  max_batch: number;
  requests: RequestSpec[];
  expect: { chunks: number[][]; chunk_bytes: number[] };
}
interface InvalidCase {
  id: string;
  invalid: { field: string; description: string; reason: string };
  expect: {
    code: string; message: string; reason: string; domain: string; metadata: Record<string, string>;
    field_violations: { field: string; description: string }[]; retry: boolean;
  };
}
interface Cases { max_batch_bytes: number; split: SplitCase[]; invalid: InvalidCase[] }

const cases = JSON.parse(readFileSync(CASES_FILE, "utf8")) as Cases;

/** A case's request; the token is 'x' repeated token_length times (README). */
function request(spec: RequestSpec): VerifyRequest {
  return create(VerifyRequestSchema, {
    token: "x".repeat(spec.token_length), audience: spec.audience, requiredScopes: spec.required_scopes,
  });
}

/** verifyAll's RPCs for `requests`, each as the indexes of the requests it carried. */
async function verifyAllCalls(requests: VerifyRequest[], maxBatch: number): Promise<number[][]> {
  const calls: number[][] = [];
  const indexOf = (message: VerifyInit) => requests.indexOf(message as VerifyRequest);
  const rpcs: VerifyRpcs = {
    verify: async (message) => {
      calls.push([indexOf(message)]);
      return create(VerifyResponseSchema, { valid: true });
    },
    verifyMany: async ({ requests: carried = [] }) => {
      calls.push(carried.map(indexOf));
      return create(VerifyManyResponseSchema, {
        results: carried.map(() => ({ outcome: { case: "response" as const, value: { valid: true } } })),
      });
    },
  };
  const results = await new VerifyBatcher(rpcs, { maxBatch }).verifyAll(requests);
  assert.equal(results.length, requests.length);
  return calls.sort((a, b) => (a[0] ?? 0) - (b[0] ?? 0));
}

/** A case's code ("INVALID_ARGUMENT") as connect's Code names it ("InvalidArgument"). */
function codeName(upper: string): string {
  return upper.toLowerCase().replace(/(^|_)(.)/g, (_, __: string, letter: string) => letter.toUpperCase());
}

describe("conformance/batching/cases.json", () => {
  it("has cases of both kinds", () => {
    // A runner that finds nothing to check must not pass.
    assert.ok(cases.split.length >= 10 && cases.invalid.length >= 5);
    assert.equal(cases.max_batch_bytes, 60 * 1024);
  });

  describe("verifyAll splits requests as each case says", () => {
    for (const c of cases.split) {
      it(c.id, async () => {
        const requests = c.requests.map(request);
        assert.deepEqual(splitRequests(requests, c.max_batch), c.expect.chunks);
        // verifyAll itself, whose count cap is MAX_VERIFY_BATCH (256), whatever maxBatch.
        if (c.max_batch === 256) {
          assert.deepEqual(await verifyAllCalls(requests, 64), c.expect.chunks);
        }
        const sizes = c.expect.chunks.map((chunk) => toBinary(VerifyManyRequestSchema,
          create(VerifyManyRequestSchema, { requests: chunk.map((n) => requests[n]!) })).length);
        assert.deepEqual(sizes, c.expect.chunk_bytes);
      });
    }
  });

  describe("the verify() queue takes batches by the same rule", () => {
    for (const c of cases.split) {
      // The requests over the cap: each is a chunk of its own whose bytes exceed the cap.
      const oversize = c.expect.chunks.filter((chunk, n) => c.expect.chunk_bytes[n]! > cases.max_batch_bytes)
        .map(([index]) => index!);
      it(c.id, async () => {
        const requests = c.requests.map(request);
        const calls: number[][] = [];
        let release: () => void = () => undefined;
        const held = new Promise<void>((resolve) => { release = resolve; });
        const rpcs: VerifyRpcs = {
          verify: async (message) => {
            const index = requests.indexOf(message as VerifyRequest);
            if (index < 0) await held; // the first call holds the only slot
            else calls.push([index]);
            return create(VerifyResponseSchema, { valid: true });
          },
          verifyMany: async ({ requests: carried = [] }) => {
            calls.push(carried.map((message) => requests.indexOf(message as VerifyRequest)));
            return create(VerifyManyResponseSchema, {
              results: carried.map(() => ({ outcome: { case: "response" as const, value: { valid: true } } })),
            });
          },
        };
        const batcher = new VerifyBatcher(rpcs, { maxInFlight: 1, maxBatch: c.max_batch });
        const first = batcher.verify({ token: "held", audience: "orders" });
        await new Promise((resolve) => setImmediate(resolve)); // it is sent: the slot is taken
        const answers = requests.map((message) => batcher.verify(message));
        await new Promise((resolve) => setImmediate(resolve));
        // This client sends a request over the cap at once as a unary Verify, outside the
        // queue (README "Verify calls are batched"); the others wait for the slot.
        assert.deepEqual(calls, oversize.map((index) => [index]), "only requests over the cap went out");
        release();
        await first;
        await Promise.all(answers);
        if (oversize.length === 0) {
          assert.deepEqual(calls, c.expect.chunks);
        } else {
          // The others then batch without them, so not as the split's chunks: each sent once.
          assert.deepEqual(calls.flat().sort((a, b) => a - b), requests.map((_, index) => index));
        }
      });
    }
  });

  describe("an invalid item fails as a unary Verify refusing it", () => {
    for (const c of cases.invalid) {
      it(c.id, async () => {
        const rpcs: VerifyRpcs = {
          verify: async () => { throw new Error("verifyAll sends two requests as one VerifyMany"); },
          verifyMany: async () => create(VerifyManyResponseSchema, {
            results: [{ outcome: { case: "invalid", value: c.invalid } },
              { outcome: { case: "response", value: { valid: true } } }],
          }),
        };
        const [outcome] = await new VerifyBatcher(rpcs).verifyAll([
          { token: "a.b.c", audience: "orders" }, { token: "d.e.f", audience: "orders" }]);
        assert.ok(outcome instanceof ConnectError);
        assert.equal(Code[outcome.code], codeName(c.expect.code));
        assert.equal(outcome.rawMessage, c.expect.message);
        const error = tokendErrorFrom(outcome);
        assert.equal(error.reason, c.expect.reason);
        assert.equal(error.domain, c.expect.domain);
        assert.deepEqual(error.metadata, c.expect.metadata);
        assert.deepEqual(error.fieldViolations, c.expect.field_violations);
        assert.equal(error.retryDelayMs !== undefined, c.expect.retry);
      });
    }
  });
});
