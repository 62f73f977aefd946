/**
 * The language-neutral conformance vectors (conformance/vectors/*.json and
 * conformance/vectors-next/*.json at the repository root) against the Node Verifier: for each case a verifier from its `jwks` and `options`
 * with the clock fixed at `now`; a valid case must verify with its `sub`, an invalid one
 * must throw InvalidTokenError with exactly its reason. A vectors-next case may carry
 * `presenter_x5t_s256` (the certificate it is presented with) and `options.delegation`. Any other exception fails the
 * case, and missing or empty vector files fail the run (format: /work/coord and
 * docs/verifier-contract.md).
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { InvalidTokenError, Reason, Verifier } from "../src/index.js";

// dist/test/conformance.test.js -> the repository root.
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..");
const VECTOR_DIR = join(ROOT, "conformance", "vectors");
const NEXT_DIR = join(ROOT, "conformance", "vectors-next");
// vectors-next files this runner must find (certificate binding §9, delegation section A).
const NEXT_FILES = ["act.json", "cnf.json"];

interface Case {
  id: string;
  rule: string;
  jwks: { keys: unknown[] };
  options: {
    issuer: string;
    audience: string[] | null;
    algorithms: string[];
    leeway: number;
    max_lifetime: number | null;
    max_token_bytes: number;
    required_claims: string[];
    required_typ: string;
    delegation?: "any" | "required" | "refused";
  };
  now: number;
  token?: string;
  token_b64?: string;
  required_scopes: string[];
  presenter_x5t_s256?: string;
  expect: { valid: true; sub: string } | { valid: false; reason: string };
}

function loadCases(directory: string, prefix = ""): [string, Case][] {
  if (!existsSync(directory)) return [];
  const cases: [string, Case][] = [];
  for (const name of readdirSync(directory).filter((file) => file.endsWith(".json")).sort()) {
    const document = JSON.parse(readFileSync(join(directory, name), "utf8")) as { cases: Case[] };
    for (const entry of document.cases) cases.push([prefix + name, entry]);
  }
  return cases;
}

/** The token exactly as presented: text, or raw bytes when it is not valid UTF-8. */
function tokenOf(entry: Case): string | Uint8Array {
  return entry.token_b64 !== undefined ? Buffer.from(entry.token_b64, "base64") : entry.token!;
}

function verifierFor(entry: Case): Verifier {
  const options = entry.options;
  return new Verifier({
    keys: entry.jwks,
    issuer: options.issuer,
    audience: options.audience,
    algorithms: options.algorithms,
    leeway: options.leeway,
    maxLifetime: options.max_lifetime,
    maxTokenBytes: options.max_token_bytes,
    requiredClaims: options.required_claims,
    requiredTyp: options.required_typ,
    ...(options.delegation === undefined ? {} : { delegation: options.delegation }),
    clock: () => entry.now,
  });
}

const MAIN_CASES = loadCases(VECTOR_DIR);
const NEXT_CASES = loadCases(NEXT_DIR, "next/");
const CASES = [...MAIN_CASES, ...NEXT_CASES];

function expected(entry: Case): string {
  return entry.expect.valid ? `valid sub=${entry.expect.sub}` : `invalid ${entry.expect.reason}`;
}

/**
 * What `verifier` decides on the case, as `expected` writes it: at the verifier's clock,
 * or with `perCallNow` at the case's `now` given to verify().
 */
async function outcome(verifier: Verifier, entry: Case, perCallNow = false): Promise<string> {
  try {
    const claims = await verifier.verify(tokenOf(entry), {
      requiredScopes: entry.required_scopes,
      ...(entry.presenter_x5t_s256 === undefined ? {} : { presenterX5tS256: entry.presenter_x5t_s256 }),
      ...(perCallNow ? { now: new Date(entry.now * 1000) } : {}),
    });
    return `valid sub=${claims.sub}`;
  } catch (error) {
    // Anything but InvalidTokenError (TypeError, a crypto error...) fails the case.
    if (!(error instanceof InvalidTokenError)) throw error;
    return `invalid ${Reason[error.reason]}`;
  }
}

describe("conformance vectors", () => {
  it("found the vector files, each with cases", () => {
    assert.ok(existsSync(VECTOR_DIR), `no conformance vectors at ${VECTOR_DIR}`);
    const files = new Set(MAIN_CASES.map(([file]) => file));
    assert.ok(files.size >= 8, `only ${files.size} vector files`);
    assert.ok(MAIN_CASES.length >= 500, `only ${MAIN_CASES.length} cases`);
    const next = new Set(NEXT_CASES.map(([file]) => file));
    for (const name of NEXT_FILES) assert.ok(next.has(`next/${name}`), `no cases in ${join(NEXT_DIR, name)}`);
    const ids = CASES.map(([, entry]) => entry.id);
    assert.equal(new Set(ids).size, ids.length, "case ids must be unique");
  });

  for (const [file, entry] of CASES) {
    it(`${file.replace(/\.json$/, "")}: ${entry.id}`, async () => {
      assert.equal(await outcome(verifierFor(entry), entry), expected(entry), entry.rule);
    });
  }

  it("decides every case alike with a warm verifier (headers of valid tokens remembered)", async () => {
    const groups = new Map<string, Case[]>();
    for (const [, entry] of CASES) {
      const key = JSON.stringify([entry.jwks, entry.options]);
      groups.set(key, [...(groups.get(key) ?? []), entry]);
    }
    let decided = 0;
    for (const members of groups.values()) {
      const warm = verifierFor(members[0]!);
      for (const entry of members.filter((m) => m.expect.valid)) await outcome(warm, entry, true);
      for (const entry of members) {
        assert.equal(await outcome(warm, entry, true), expected(entry), `${entry.id}: ${entry.rule}`);
        decided += 1;
      }
    }
    assert.equal(decided, CASES.length);
  });
});
