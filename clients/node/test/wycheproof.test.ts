/**
 * Project Wycheproof's JOSE vectors against the Node signature-only layer (verifyCompact:
 * compact JWS + JWK set + allowed algorithms -> payload bytes or InvalidTokenError).
 *
 * The vectors are read from ../shared/wycheproof/testvectors_v1 relative to the repository
 * root, or $TOKEND_WYCHEPROOF_DIR, never copied into the repository; a missing directory
 * fails the run. `valid` vectors must verify and `invalid` ones must be refused, except the
 * vectors in conformance/wycheproof-deviations.json, where tokend is deliberately stricter:
 * those must be refused, and an entry naming no valid vector (stale) fails.
 * Semantics as in tests/clients/python/jose/test_wycheproof.py.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { InvalidTokenError, JwkSet, Reason, verifyCompact } from "../src/index.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..");
const VECTOR_DIR = process.env["TOKEND_WYCHEPROOF_DIR"] || join(ROOT, "..", "shared", "wycheproof", "testvectors_v1");
const FILES = ["json_web_signature_test.json", "json_web_key_test.json", "json_web_crypto_test.json"];
// json_web_crypto_test.json holds JWE groups (jwe_aes, jwe_ec) no verifier implements.
const EXPECTED_JWE_SKIPS = 34;
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "k", "oth"];
const ALL_ALGORITHMS = ["ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"];

// Flags whose vectors must fail at a specific layer, not by an incidental earlier check.
const REASONS_BY_FLAG: Readonly<Record<string, readonly string[]>> = {
  ModifiedPadding: ["BAD_SIGNATURE"],
  ModifiedSignature: ["BAD_SIGNATURE"],
  WrongPrimitive: ["BAD_SIGNATURE", "DISALLOWED_ALGORITHM"],
  AlgIsNone: ["DISALLOWED_ALGORITHM"],
  JsonSerialization: ["MALFORMED"],
};

type Jwk = Record<string, unknown>;
interface Group { comment?: string; public?: Jwk; private?: Jwk; tests: Test[] }
interface Test { tcId: number; comment?: string; flags?: string[]; result: string; jws: unknown }
interface Vector { file: string; tcId: number; comment: string; flags: string[]; result: string; jws: unknown; jwks: { keys: Jwk[] } }

function load(name: string): { numberOfTests: number; testGroups: Group[] } | undefined {
  const path = join(VECTOR_DIR, name);
  return existsSync(path) ? JSON.parse(readFileSync(path, "utf8")) : undefined;
}

function asSet(jwkOrSet: Jwk): { keys: Jwk[] } {
  return Array.isArray(jwkOrSet["keys"]) ? jwkOrSet as { keys: Jwk[] } : { keys: [jwkOrSet] };
}

/** The group's public key set, derived from `private` when there is none. */
function publicJwks(group: Group): { keys: Jwk[] } {
  if (group.public !== undefined) return asSet(group.public);
  const keys = asSet(group.private ?? {}).keys.map((jwk) =>
    Object.fromEntries(Object.entries(jwk).filter(([name]) => !PRIVATE_MEMBERS.includes(name))));
  return { keys };
}

function collect(): { vectors: Vector[]; jweSkipped: number; total: number } {
  const vectors: Vector[] = [];
  let jweSkipped = 0;
  let total = 0;
  for (const file of FILES) {
    const data = load(file);
    total += data?.numberOfTests ?? 0;
    for (const group of data?.testGroups ?? []) {
      if (file === "json_web_crypto_test.json" && !String(group.comment ?? "").startsWith("jws_")) {
        jweSkipped += group.tests.length;
        continue;
      }
      const jwks = publicJwks(group);
      for (const test of group.tests) {
        vectors.push({ file, tcId: test.tcId, comment: test.comment ?? "", flags: test.flags ?? [], result: test.result, jws: test.jws, jwks });
      }
    }
  }
  return { vectors, jweSkipped, total };
}

function loadDeviations(): Map<string, string> {
  const path = join(ROOT, "conformance", "wycheproof-deviations.json");
  const deviations = new Map<string, string>();
  if (!existsSync(path)) return deviations;
  const document = JSON.parse(readFileSync(path, "utf8")) as { deviations: { file: string; tcId: number; reason: string }[] };
  for (const entry of document.deviations) deviations.set(`${entry.file}#${entry.tcId}`, entry.reason);
  return deviations;
}

/** "accepted", or why the vector was refused ("<REASON>: message" or "key set refused: ..."). */
function outcome(vector: Vector): string {
  let keys: JwkSet;
  try {
    keys = JwkSet.from(vector.jwks);
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    return `key set refused: ${error.message}`;
  }
  try {
    verifyCompact(vector.jws as string, keys, ALL_ALGORITHMS);
  } catch (error) {
    // Anything but InvalidTokenError escaping the signature layer fails the vector.
    if (!(error instanceof InvalidTokenError)) throw error;
    return `${Reason[error.reason]}: ${error.message}`;
  }
  return "accepted";
}

const { vectors: VECTORS, jweSkipped: JWE_SKIPPED, total: TOTAL } = collect();
const DEVIATIONS = loadDeviations();

describe("Wycheproof JOSE vectors", () => {
  it("found every vector file and the deviations", () => {
    const missing = FILES.filter((file) => !existsSync(join(VECTOR_DIR, file)));
    assert.deepEqual(missing, [], `Wycheproof vectors missing in ${VECTOR_DIR}`);
    assert.equal(JWE_SKIPPED, EXPECTED_JWE_SKIPS);
    assert.equal(VECTORS.length, TOTAL - JWE_SKIPPED);
    assert.ok(VECTORS.length > 0);
    assert.ok(DEVIATIONS.size > 0, "conformance/wycheproof-deviations.json is missing or empty");
  });

  it("lists only deviations that name valid vectors (none stale)", () => {
    const valid = new Set(VECTORS.filter((v) => v.result === "valid").map((v) => `${v.file}#${v.tcId}`));
    const stale = [...DEVIATIONS.keys()].filter((key) => !valid.has(key));
    assert.deepEqual(stale, []);
  });

  for (const vector of VECTORS) {
    const key = `${vector.file}#${vector.tcId}`;
    it(`${vector.file.replace(/_test\.json$/, "")} tcId ${vector.tcId}`, () => {
      const result = outcome(vector);
      const deviation = DEVIATIONS.get(key);
      if (vector.result === "valid" && deviation === undefined) {
        assert.equal(result, "accepted", vector.comment);
        return;
      }
      // "invalid" vectors and the documented deviations must both be refused.
      assert.notEqual(result, "accepted", `${vector.comment} (${deviation ?? vector.result}) accepted`);
      for (const flag of vector.flags) {
        const expected = REASONS_BY_FLAG[flag];
        assert.ok(expected === undefined || expected.includes(result.split(":")[0]!), `${flag}: ${result}`);
      }
    });
  }

  it("refuses whole every key set that carries private or symmetric material", () => {
    let checked = 0;
    for (const file of FILES) {
      for (const group of load(file)?.testGroups ?? []) {
        const privateSet = group.private === undefined ? undefined : asSet(group.private);
        if (privateSet === undefined || !privateSet.keys.some((jwk) => PRIVATE_MEMBERS.some((name) => name in jwk))) continue;
        assert.throws(() => JwkSet.from(privateSet), /private or symmetric/);
        checked += 1;
      }
    }
    assert.ok(checked > 0);
  });
});
