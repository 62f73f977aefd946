/**
 * The Node row of issue 12's benchmark: the Verifier's ES256 verify rate divided by raw
 * node:crypto ES256 verification in the same process and run (target >= 0.8), so
 * strictness is not paid for with speed. Prints one JSON line.
 *
 * Run from clients/node: npm run build && node dist/bench/verify-ratio.js [seconds]
 * Rounds alternate between the two so that noise from other processes hits both alike.
 */
import { createPublicKey, generateKeyPairSync, sign, verify } from "node:crypto";
import { Verifier } from "../src/index.js";

const seconds = Math.min(Math.max(Number(process.argv[2] ?? 3), 0.5), 60);
const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
const jwk = { ...publicKey.export({ format: "jwk" }), kid: "bench", alg: "ES256", use: "sig" };
const now = Math.floor(Date.now() / 1000);
const segment = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
// The shape of a tokend access token.
const input = `${segment({ alg: "ES256", kid: "bench", typ: "at+jwt" })}.${segment({
  iss: "https://tokend.example", sub: "alice", aud: "orders", exp: now + 900, iat: now, nbf: now,
  jti: "3f1c2a9e-7d4b-4c1e-9a8f-2b6d5e4c3a21", scope: "orders:read orders:write", client_id: "spiffe://example.org/web",
})}`;
const signature = sign("sha256", Buffer.from(input), { key: privateKey, dsaEncoding: "ieee-p1363" });
const token = `${input}.${signature.toString("base64url")}`;
const verifier = new Verifier({ keys: { keys: [jwk] }, issuer: "https://tokend.example", audience: "orders" });
const key = createPublicKey({ key: jwk as never, format: "jwk" });

async function local(count: number): Promise<void> {
  for (let i = 0; i < count; i += 1) await verifier.verify(token);
}

function raw(count: number): void {
  for (let i = 0; i < count; i += 1) {
    if (!verify("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" }, signature)) throw new Error("raw verify failed");
  }
}

const BATCH = 500;
let rounds = 0;
let localMs = 0;
let rawMs = 0;
await local(BATCH); // warm-up
raw(BATCH);
const deadline = performance.now() + seconds * 1000;
while (performance.now() < deadline) {
  let started = performance.now();
  await local(BATCH);
  localMs += performance.now() - started;
  started = performance.now();
  raw(BATCH);
  rawMs += performance.now() - started;
  rounds += 1;
}
const localRate = (rounds * BATCH * 1000) / localMs;
const rawRate = (rounds * BATCH * 1000) / rawMs;
console.log(JSON.stringify({
  language: "node", local_es256_per_s: Math.round(localRate), raw_es256_per_s: Math.round(rawRate),
  ratio: Number((localRate / rawRate).toFixed(3)),
}));
