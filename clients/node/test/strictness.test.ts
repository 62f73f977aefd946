/**
 * The attacks of issue 12 against the Node verifier, each with a correctly signed token
 * (typ at+jwt) so that the rule under test is the one reached: duplicate member names,
 * base64url leniency, a BOM, invalid UTF-8, NumericDates that are not numbers, signature
 * lengths, a 1024-bit RSA key, embedded keys and crit. Written against the API the old
 * verifier had too (AccessTokenVerifier + remoteKeySet), so they show what it accepted.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync, sign as cryptoSign, type KeyObject } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { AccessTokenVerifier, InvalidTokenError, Reason, remoteKeySet } from "../src/index.js";
import { AUDIENCE, ISSUER, JwksServer } from "./support.js";

const es = generateKeyPairSync("ec", { namedCurve: "P-256" });
const ed = generateKeyPairSync("ed25519");
const weak = generateKeyPairSync("rsa", { modulusLength: 1024 });
const JWKS = [
  { ...es.publicKey.export({ format: "jwk" }), kid: "es", alg: "ES256", use: "sig" },
  { ...ed.publicKey.export({ format: "jwk" }), kid: "ed", alg: "EdDSA", use: "sig" },
  { ...weak.publicKey.export({ format: "jwk" }), kid: "weak", alg: "RS256", use: "sig" },
];

const now = Math.floor(Date.now() / 1000);
const HEADER = `{"alg":"ES256","kid":"es","typ":"at+jwt"}`;
const CLAIMS = `"iss":"${ISSUER}","sub":"alice","aud":"${AUDIENCE}","exp":${now + 300},"iat":${now - 10},"jti":"j-1"`;
const PAYLOAD = `{${CLAIMS}}`;

const b64 = (data: string | Buffer) => Buffer.from(data).toString("base64url");

/** Signs the exact segment texts given (which may be non-canonical on purpose). */
function signSegments(headerSegment: string, payloadSegment: string, key: KeyObject = es.privateKey, alg = "ES256"): string {
  const input = Buffer.from(`${headerSegment}.${payloadSegment}`);
  const signature = alg === "EdDSA"
    ? cryptoSign(null, input, key)
    : cryptoSign(alg === "RS256" ? "sha256" : "sha256", input, alg === "ES256" ? { key, dsaEncoding: "ieee-p1363" } : key);
  return `${headerSegment}.${payloadSegment}.${b64(signature)}`;
}

/** A token with these header and payload bytes, correctly signed. */
function token(header: string | Buffer = HEADER, payload: string | Buffer = PAYLOAD, key?: KeyObject, alg?: string): string {
  return signSegments(b64(header), b64(payload), key, alg);
}

describe("strict verification (issue 12 attack corpus)", () => {
  let server: JwksServer;
  let verifier: AccessTokenVerifier;

  async function refused(candidate: string, reason: Reason): Promise<void> {
    let caught: unknown;
    try {
      await verifier.verify(candidate);
    } catch (error) {
      caught = error;
    }
    assert.ok(caught !== undefined, "token accepted");
    assert.ok(caught instanceof InvalidTokenError, `expected InvalidTokenError, got ${String(caught)}`);
    assert.equal(Reason[caught.reason], Reason[reason]);
  }

  before(async () => {
    server = await JwksServer.start(JWKS as never);
    verifier = new AccessTokenVerifier({ keys: remoteKeySet(server.url), issuer: ISSUER, audience: AUDIENCE });
  });
  after(() => server.close());

  it("accepts the well-formed token the attacks start from", async () => {
    assert.equal((await verifier.verify(token())).sub, "alice");
    assert.equal((await verifier.verify(token(`{"alg":"EdDSA","kid":"ed","typ":"at+jwt"}`, PAYLOAD, ed.privateKey, "EdDSA"))).sub, "alice");
  });

  for (const member of ["alg", "kid"]) {
    it(`refuses a duplicate ${member} in the header`, async () => {
      const value = member === "alg" ? `"ES256"` : `"es"`;
      await refused(token(`{"alg":"ES256","kid":"es","typ":"at+jwt","${member}":${value}}`), Reason.MALFORMED);
    });
  }

  for (const [member, value] of [["iss", `"${ISSUER}"`], ["sub", `"mallory"`], ["exp", `${now + 99_999}`], ["aud", `"${AUDIENCE}"`]]) {
    it(`refuses a duplicate ${member} in the payload`, async () => {
      await refused(token(HEADER, `{${CLAIMS},"${member}":${value}}`), Reason.MALFORMED);
    });
  }

  it("refuses = padding in any segment", async () => {
    const header = b64(HEADER);
    const payload = b64(PAYLOAD);
    const pad = (segment: string) => segment + "=".repeat((4 - (segment.length % 4)) % 4 || 1);
    await refused(signSegments(pad(header), payload), Reason.MALFORMED);
    await refused(signSegments(header, pad(payload)), Reason.MALFORMED);
    await refused(`${token()}==`, Reason.MALFORMED); // an ES256 signature is 86 characters: 2 pad
  });

  it("refuses whitespace inside a segment", async () => {
    const valid = token();
    const [header, payload, signature] = valid.split(".") as [string, string, string];
    await refused(`${header}.${payload}.${signature.slice(0, 20)} ${signature.slice(20)}`, Reason.MALFORMED);
    await refused(`${header}.${payload}.${signature.slice(0, 20)}\n${signature.slice(20)}`, Reason.MALFORMED);
    await refused(signSegments(header, `${payload.slice(0, 8)}\t${payload.slice(8)}`), Reason.MALFORMED);
  });

  it("refuses non-canonical trailing bits", async () => {
    const valid = token();
    // 64 signature bytes are 86 characters; the last one carries 4 unused bits.
    const last = valid[valid.length - 1]!;
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const twin = alphabet[alphabet.indexOf(last) | 1]!;
    assert.notEqual(twin, last);
    await refused(valid.slice(0, -1) + twin, Reason.MALFORMED);
  });

  it("refuses a BOM before the payload JSON and before the header JSON", async () => {
    await refused(token(HEADER, `\uFEFF${PAYLOAD}`), Reason.MALFORMED);
    await refused(token(`\uFEFF${HEADER}`), Reason.MALFORMED);
  });

  it("refuses invalid UTF-8 in the payload", async () => {
    await refused(token(HEADER, Buffer.concat([Buffer.from(`{${CLAIMS},"name":"`), Buffer.from([0xc3, 0x28]), Buffer.from(`"}`)])),
      Reason.MALFORMED);
  });

  for (const value of ["null", `"${now + 300}"`, "true"]) {
    it(`refuses exp ${value} (NumericDates are JSON numbers)`, async () => {
      await refused(token(HEADER, PAYLOAD.replace(`"exp":${now + 300}`, `"exp":${value}`)), Reason.MALFORMED);
    });
  }

  it("refuses a 1024-bit RSA key per token, never throwing anything else, and keeps the other keys", async () => {
    await refused(token(`{"alg":"RS256","kid":"weak","typ":"at+jwt"}`, PAYLOAD, weak.privateKey, "RS256"), Reason.UNKNOWN_KEY);
    assert.equal((await verifier.verify(token())).sub, "alice");
  });

  it("refuses signatures of the wrong length", async () => {
    const eddsa = token(`{"alg":"EdDSA","kid":"ed","typ":"at+jwt"}`, PAYLOAD, ed.privateKey, "EdDSA");
    const [h, p, s] = eddsa.split(".") as [string, string, string];
    await refused(`${h}.${p}.${b64(Buffer.concat([Buffer.from(s, "base64url"), Buffer.from([0])]))}`, Reason.BAD_SIGNATURE);
    const [eh, ep] = token().split(".") as [string, string];
    const der = cryptoSign("sha256", Buffer.from(`${eh}.${ep}`), es.privateKey); // DER, not R || S
    await refused(`${eh}.${ep}.${b64(der)}`, Reason.BAD_SIGNATURE);
  });

  it("refuses embedded keys and crit", async () => {
    const jwk = JSON.stringify(JWKS[0]);
    await refused(token(`{"alg":"ES256","kid":"es","typ":"at+jwt","jwk":${jwk}}`), Reason.MALFORMED);
    await refused(token(`{"alg":"ES256","kid":"es","typ":"at+jwt","jku":"https://evil.example/jwks"}`), Reason.MALFORMED);
    await refused(token(`{"alg":"ES256","kid":"es","typ":"at+jwt","crit":["exp"],"exp":1}`), Reason.MALFORMED);
  });

  it("refuses whitespace around the token and non-ASCII text", async () => {
    await refused(` ${token()}`, Reason.MALFORMED);
    await refused(`${token()}\n`, Reason.MALFORMED);
    await refused(`${token()}\u200b`, Reason.MALFORMED);
  });
});

describe("nothing but InvalidTokenError escapes", () => {
  // A bounded, seeded mutation run over valid tokens of every key type (xorshift32: the
  // same inputs every run, so a failure reproduces).
  let state = 0x9e3779b9;
  const random = (n: number) => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) % n;
  };
  const CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \n\u00e9\u200b{}\":,[]\\";

  function mutate(text: string): string {
    const at = random(text.length + 1);
    switch (random(4)) {
      case 0: return text.slice(0, at) + CHARS[random(CHARS.length)] + text.slice(at);
      case 1: return text.slice(0, at) + text.slice(at + 1 + random(4));
      case 2: return text.slice(0, at) + CHARS[random(CHARS.length)] + text.slice(at + 1);
      default: return text.slice(0, at) + text.slice(random(text.length + 1));
    }
  }

  it("on 4000 mutated tokens and 1000 mutated JSON documents", async () => {
    const server = await JwksServer.start(JWKS as never);
    try {
      const verifier = new AccessTokenVerifier({ keys: remoteKeySet(server.url), issuer: ISSUER, audience: AUDIENCE });
      const seeds = [
        token(),
        token(`{"alg":"EdDSA","kid":"ed","typ":"at+jwt"}`, PAYLOAD, ed.privateKey, "EdDSA"),
        token(`{"alg":"RS256","kid":"weak","typ":"at+jwt"}`, PAYLOAD, weak.privateKey, "RS256"),
      ];
      const outcomes = new Map<string, number>();
      for (let i = 0; i < 5000; i += 1) {
        const seed = seeds[random(seeds.length)]!;
        const candidate = i < 4000
          ? mutate(mutate(seed))
          : token(random(2) === 0 ? mutate(HEADER) : HEADER, mutate(mutate(PAYLOAD)));
        try {
          await verifier.verify(candidate);
          outcomes.set("valid", (outcomes.get("valid") ?? 0) + 1);
        } catch (error) {
          assert.ok(error instanceof InvalidTokenError, `${JSON.stringify(candidate)}: ${String(error)}`);
          outcomes.set(error.reasonName, (outcomes.get(error.reasonName) ?? 0) + 1);
        }
      }
      assert.ok((outcomes.get("MALFORMED") ?? 0) > 1000, JSON.stringify(Object.fromEntries(outcomes)));
    } finally {
      await server.close();
    }
  });
});
