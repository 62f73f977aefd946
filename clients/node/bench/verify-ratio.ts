/**
 * The Node row of the benchmark's per-language table (bench/verifiers.py): the Verifier's
 * ES256 verify rate divided by raw node:crypto ES256 verification of the same tokens with
 * the same key, in one process and run (target >= 0.8), so strictness is not paid for
 * with speed. Prints one JSON line.
 *
 * Run from clients/node after `npm run build`:
 *   node dist/bench/verify-ratio.js --fixture tokens.json --seconds 4 --rounds 7
 *   npm run bench:verify             # no fixture: a key and 64 tokens made here
 *
 * The loop is bench/verify_ratio.py's: every token must pass both sides and a tampered one
 * fail both; then raw and verifier take turns in rounds (alternating who goes first),
 * each bounded by time and by count, and each side reports its median round, per
 * CPU-second of this process (garbage collection included).
 */
import { readFileSync } from "node:fs";
import { createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import { parseArgs } from "node:util";
import { InvalidTokenError, Verifier } from "../src/index.js";

const MAX_PER_ROUND = 2_000_000; // verifications per side and round; time ends rounds first

interface Fixture {
  issuer: string;
  audience: string;
  jwks: { keys: Record<string, unknown>[] };
  tokens: string[];
}

interface Rates {
  cpu: number;
  wall: number;
}

/** A key and `count` distinct tokend-shaped tokens, for running without bench/verifiers.py. */
function ownFixture(count: number): Fixture {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = { ...publicKey.export({ format: "jwk" }), kid: "bench", alg: "ES256", use: "sig" };
  const segment = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const tokens = Array.from({ length: count }, (_, i) => {
    const input = `${segment({ alg: "ES256", kid: "bench", typ: "at+jwt" })}.${segment({
      iss: "https://tokend.bench", sub: `user-${i}`, aud: "bench-api", exp: now + 900, iat: now - i,
      nbf: now - i, jti: `jti-${i}-bench`, scope: "orders:read", client_id: "bench",
    })}`;
    const signature = sign("sha256", Buffer.from(input), { key: privateKey, dsaEncoding: "ieee-p1363" });
    return `${input}.${signature.toString("base64url")}`;
  });
  return { issuer: "https://tokend.bench", audience: "bench-api", jwks: { keys: [jwk] }, tokens };
}

/** (signing input, P1363 signature), decoded once outside the timing. */
function split(token: string): [Buffer, Buffer] {
  const dot = token.lastIndexOf(".");
  return [Buffer.from(token.slice(0, dot)), Buffer.from(token.slice(dot + 1), "base64url")];
}

function rawVerify(key: KeyObject, input: Buffer, signature: Buffer): boolean {
  return verify("sha256", input, { key, dsaEncoding: "ieee-p1363" }, signature);
}

/** One flipped signature bit fails both sides: neither measures a no-op. */
async function checkTampered(verifier: Verifier, key: KeyObject, token: string): Promise<void> {
  const dot = token.lastIndexOf(".");
  const bad = `${token.slice(0, dot + 1)}${token[dot + 1] === "A" ? "B" : "A"}${token.slice(dot + 2)}`;
  try {
    await verifier.verify(bad);
    throw new Error("the Verifier accepted a tampered token");
  } catch (error) {
    if (!(error instanceof InvalidTokenError)) throw error;
  }
  if (rawVerify(key, ...split(bad))) throw new Error("raw verify accepted a tampered signature");
}

async function oneRound(pass: () => Promise<number> | number, seconds: number): Promise<Rates> {
  let count = 0;
  const started = performance.now();
  const cpu = process.cpuUsage();
  while (count < MAX_PER_ROUND) {
    count += await pass();
    if (performance.now() - started >= seconds * 1000) break;
  }
  const used = process.cpuUsage(cpu);
  return {
    cpu: count / Math.max((used.user + used.system) / 1e6, 1e-9),
    wall: count / Math.max((performance.now() - started) / 1000, 1e-9),
  };
}

function median(values: number[]): number {
  const xs = [...values].sort((a, b) => a - b);
  const mid = Math.floor(xs.length / 2);
  return xs.length % 2 === 1 ? xs[mid]! : (xs[mid - 1]! + xs[mid]!) / 2;
}

async function measure(passes: (() => Promise<number> | number)[], seconds: number, rounds: number): Promise<Rates[]> {
  const perRound = seconds / rounds / passes.length;
  // Warm-up, not counted: a fifth of the time, so the JIT settles.
  for (const pass of passes) await oneRound(pass, Math.max(perRound, seconds / 5));
  const samples: Rates[][] = passes.map(() => []);
  for (let r = 0; r < rounds; r += 1) {
    const order = passes.map((_, i) => (r % 2 === 0 ? i : passes.length - 1 - i));
    for (const i of order) samples[i]!.push(await oneRound(passes[i]!, perRound));
  }
  return samples.map((values) => ({ cpu: median(values.map((v) => v.cpu)), wall: median(values.map((v) => v.wall)) }));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { fixture: { type: "string" }, seconds: { type: "string", default: "4" }, rounds: { type: "string", default: "7" } },
  });
  const seconds = Number(values.seconds);
  const rounds = Number(values.rounds);
  if (!(seconds > 0 && seconds <= 600) || !(Number.isInteger(rounds) && rounds >= 1 && rounds <= 1000)) {
    throw new Error("--seconds in (0, 600], --rounds in [1, 1000]");
  }
  const fixture: Fixture = values.fixture ? JSON.parse(readFileSync(values.fixture, "utf8")) : ownFixture(64);
  const { tokens } = fixture;
  if (tokens.length === 0) throw new Error("the fixture has no tokens");
  const verifier = new Verifier({ keys: fixture.jwks, issuer: fixture.issuer, audience: fixture.audience });
  const key = createPublicKey({ key: fixture.jwks.keys[0] as never, format: "jwk" });
  const raws = tokens.map(split);
  const rawPass = (): number => {
    for (const [input, signature] of raws) {
      if (!rawVerify(key, input, signature)) throw new HarnessError("raw verify refused a fixture token");
    }
    return raws.length;
  };
  const verifierPass = async (): Promise<number> => {
    try {
      for (const token of tokens) await verifier.verify(token);
    } catch (error) {
      throw new HarnessError(`verifier refused a fixture token: ${(error as Error).message}`);
    }
    return tokens.length;
  };
  await checkTampered(verifier, key, tokens[0]!);
  rawPass();
  await verifierPass();
  const [raw, local] = (await measure([rawPass, verifierPass], seconds, rounds)) as [Rates, Rates];
  const round3 = (x: number) => Math.round(x * 1000) / 1000;
  console.log(JSON.stringify({
    language: "node", verifier: "Verifier", raw: "node:crypto", tokens: tokens.length, rounds, checked: true,
    verifier_per_s: Math.round(local.cpu), raw_per_s: Math.round(raw.cpu),
    ratio: round3(local.cpu / raw.cpu), ratio_wall: round3(local.wall / raw.wall),
  }));
}

/** A failure of the run itself, reported as one line with no figures. */
class HarnessError extends Error {}

try {
  await main();
} catch (error) {
  console.error(`verify-ratio: ${error instanceof HarnessError ? error.message : (error as Error).stack}`);
  process.exit(1);
}
