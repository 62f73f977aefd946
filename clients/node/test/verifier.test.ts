import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { exportJWK, SignJWT } from "jose";
import {
  AccessTokenVerifier, InvalidTokenError, JwkSet, KeySourceError, Reason, remoteKeySet, tokendKeySet, Verifier, type VerifierOptions,
} from "../src/index.js";
import { AUDIENCE, b64json, claims, ISSUER, JwksServer, makeKey, sign, type TestKey } from "./support.js";

const ALGORITHMS = ["ES256", "RS256", "PS256", "EdDSA"] as const;

/** Asserts that verification fails with `reason`, and that the message leaks nothing. */
async function refused(verifier: AccessTokenVerifier, token: string, reason: Reason,
                       options: Parameters<AccessTokenVerifier["verify"]>[1] = {}): Promise<void> {
  await assert.rejects(verifier.verify(token, options), (error: unknown) => {
    assert.ok(error instanceof InvalidTokenError, `expected InvalidTokenError, got ${String(error)}`);
    assert.equal(error.reasonName, Reason[reason]);
    for (const part of token.split(".")) {
      if (part.length > 8) assert.ok(!error.message.includes(part), "message must not quote the token");
    }
    return true;
  });
}

describe("AccessTokenVerifier", () => {
  const keys = new Map<string, TestKey>();
  let server: JwksServer;
  let verifier: AccessTokenVerifier;
  const options = (extra: Partial<VerifierOptions> = {}): VerifierOptions => ({
    keys: remoteKeySet(server.url, { cooldownMs: 200 }), issuer: ISSUER, audience: AUDIENCE, ...extra,
  });

  before(async () => {
    for (const alg of ALGORITHMS) keys.set(alg, await makeKey(alg));
    server = await JwksServer.start([...keys.values()].map((key) => key.jwk));
    verifier = new AccessTokenVerifier(options());
  });
  after(() => server.close());
  const key = (alg: string) => keys.get(alg)!;

  for (const alg of ALGORITHMS) {
    it(`accepts a valid ${alg} token and returns its claims`, async () => {
      const verified = await verifier.verify(await sign(key(alg)));
      assert.equal(verified.sub, "alice");
      assert.equal(verified.client_id, "spiffe://tokend.test/web");
    });
  }

  it("accepts typ application/at+jwt in any case", async () => {
    await verifier.verify(await sign(key("ES256"), claims(), { typ: "application/AT+JWT" }));
    await verifier.verify(await sign(key("ES256"), claims(), { typ: "AT+JWT" }));
  });

  it("refuses a tampered payload and a tampered signature", async () => {
    const [header, , signature] = (await sign(key("ES256"))).split(".");
    const forged = b64json(claims({ sub: "mallory" }));
    await refused(verifier, `${header}.${forged}.${signature}`, Reason.BAD_SIGNATURE);
    const valid = await sign(key("RS256"));
    const flipped = valid.slice(0, -4) + (valid.endsWith("AAAA") ? "BBBB" : "AAAA");
    await refused(verifier, flipped, Reason.BAD_SIGNATURE);
  });

  it("refuses a token signed by another key under a published kid", async () => {
    const impostor = await makeKey("ES256", key("ES256").kid);
    await refused(verifier, await sign(impostor), Reason.BAD_SIGNATURE);
  });

  it("refuses the wrong audience, issuer and type", async () => {
    await refused(verifier, await sign(key("ES256"), claims({ aud: ["billing"] })), Reason.WRONG_AUDIENCE);
    await refused(verifier, await sign(key("ES256")), Reason.WRONG_AUDIENCE, { audience: "billing" });
    await refused(verifier, await sign(key("ES256"), claims({ iss: `${ISSUER}/` })), Reason.WRONG_ISSUER);
    await refused(verifier, await sign(key("ES256"), claims(), { typ: "JWT" }), Reason.WRONG_TYPE);
    await refused(verifier, await sign(key("ES256"), claims(), { typ: undefined }), Reason.WRONG_TYPE);
  });

  it("refuses alg none", async () => {
    const header = b64json({ alg: "none", kid: key("ES256").kid, typ: "at+jwt" });
    await refused(verifier, `${header}.${b64json(claims())}.`, Reason.DISALLOWED_ALGORITHM);
  });

  it("refuses HS256 signed with the public key as the secret", async () => {
    const rsa = key("RS256");
    const header = b64json({ alg: "HS256", kid: rsa.kid, typ: "at+jwt" });
    const input = `${header}.${b64json(claims())}`;
    for (const secret of [JSON.stringify(rsa.jwk), rsa.jwk.n!]) {
      const mac = createHmac("sha256", secret).update(input).digest("base64url");
      await refused(verifier, `${input}.${mac}`, Reason.DISALLOWED_ALGORITHM);
    }
  });

  it("binds the algorithm to the key's own alg", async () => {
    // One RSA key pair can sign RS256 and PS256; it is published for RS256 only.
    const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const jwk = await exportJWK(publicKey);
    const local = await JwksServer.start([{ ...jwk, kid: "rs", alg: "RS256", use: "sig" }, { ...jwk, kid: "bare", use: "sig" }]);
    try {
      const strict = new AccessTokenVerifier({ ...options(), keys: remoteKeySet(local.url) });
      const signWith = (alg: string, kid: string) =>
        new SignJWT(claims()).setProtectedHeader({ alg, kid, typ: "at+jwt" }).sign(privateKey);
      await strict.verify(await signWith("RS256", "rs"));
      await refused(strict, await signWith("PS256", "rs"), Reason.DISALLOWED_ALGORITHM);
      // An RSA key published without alg binds to nothing: it is dropped from the set.
      await refused(strict, await signWith("RS256", "bare"), Reason.UNKNOWN_KEY);
    } finally {
      await local.close();
    }
  });

  it("refuses algorithms outside the configured allowlist", async () => {
    const esOnly = new AccessTokenVerifier(options({ algorithms: ["ES256"] }));
    await esOnly.verify(await sign(key("ES256")));
    await refused(esOnly, await sign(key("RS256")), Reason.DISALLOWED_ALGORITHM);
  });

  it("checks exp, nbf and iat with a small clock tolerance", async () => {
    const now = Math.floor(Date.now() / 1000);
    await refused(verifier, await sign(key("ES256"), claims({ iat: now - 400, exp: now - 60 })), Reason.EXPIRED);
    await verifier.verify(await sign(key("ES256"), claims({ iat: now - 300, exp: now - 10 })));
    await refused(verifier, await sign(key("ES256"), claims({ nbf: now + 120 })), Reason.NOT_YET_VALID);
    await refused(verifier, await sign(key("ES256"), claims({ iat: now + 120, exp: now + 400 })),
      Reason.ISSUED_IN_FUTURE);
    const strictClock = new AccessTokenVerifier(options({ clockToleranceSeconds: 0 }));
    await refused(strictClock, await sign(key("ES256"), claims({ iat: now - 300, exp: now - 10 })), Reason.EXPIRED);
  });

  for (const name of ["exp", "iat", "iss", "sub", "aud", "jti"]) {
    it(`refuses a token without ${name}`, async () => {
      await refused(verifier, await sign(key("ES256"), claims({ [name]: undefined })), Reason.MISSING_CLAIM);
    });
  }

  it("refuses claims of the wrong type", async () => {
    await refused(verifier, await sign(key("ES256"), claims({ sub: 42 })), Reason.MALFORMED);
    await refused(verifier, await sign(key("ES256"), claims({ jti: "" })), Reason.MALFORMED);
    await refused(verifier, await sign(key("ES256"), claims({ exp: "never" })), Reason.MALFORMED);
    await refused(verifier, await sign(key("ES256"), claims({ aud: [AUDIENCE, 7] })), Reason.MALFORMED);
    await refused(verifier, await sign(key("ES256"), claims({ scope: ["orders:read"] })), Reason.MALFORMED);
  });

  it("checks required scopes and the maximum lifetime", async () => {
    const token = await sign(key("ES256"));
    await verifier.verify(token, { requiredScopes: ["orders:read", "orders:write"] });
    await refused(verifier, token, Reason.MISSING_SCOPE, { requiredScopes: ["orders:admin"] });
    const shortLived = new AccessTokenVerifier(options({ maxLifetimeSeconds: 60 }));
    await refused(shortLived, token, Reason.LIFETIME_TOO_LONG);
  });

  it("refuses malformed and oversized tokens before fetching keys", async () => {
    const fresh = new AccessTokenVerifier(options());
    const before = server.fetches;
    await refused(fresh, "x".repeat(9000), Reason.TOO_LARGE);
    await refused(fresh, "not-a-jwt", Reason.MALFORMED);
    await refused(fresh, `${b64json("header")}.${b64json(claims())}.sig`, Reason.MALFORMED);
    await refused(fresh, `!!.${b64json(claims())}.sig`, Reason.MALFORMED);
    assert.equal(server.fetches, before);
  });

  it("refuses a token without kid", async () => {
    await refused(verifier, await sign(key("ES256"), claims(), { kid: undefined }), Reason.UNKNOWN_KEY);
  });

  it("refetches once for an unknown kid, then not again within the cooldown", async () => {
    const jwks = await JwksServer.start([key("ES256").jwk]);
    try {
      const rotating = new AccessTokenVerifier({ ...options(), keys: remoteKeySet(jwks.url, { cooldownMs: 500 }) });
      await rotating.verify(await sign(key("ES256")));
      assert.equal(jwks.fetches, 1);
      await sleep(600);
      const rotated = await makeKey("ES256", "rotated");
      jwks.keys = [key("ES256").jwk, rotated.jwk];
      await rotating.verify(await sign(rotated)); // unknown kid: one refetch finds it
      assert.equal(jwks.fetches, 2);
      const stranger = await makeKey("ES256", "never-published");
      await refused(rotating, await sign(stranger), Reason.UNKNOWN_KEY);
      await refused(rotating, await sign(stranger), Reason.UNKNOWN_KEY);
      assert.equal(jwks.fetches, 2, "no refetch within the cooldown");
      await sleep(600);
      await refused(rotating, await sign(stranger), Reason.UNKNOWN_KEY);
      assert.equal(jwks.fetches, 3, "one refetch once the cooldown is over");
    } finally {
      await jwks.close();
    }
  });

  it("takes keys from GetJwks with the same refetch rule", async () => {
    let calls = 0;
    let published = [key("EdDSA").jwk];
    const client = { getJwks: async () => { calls += 1; return { jwksJson: JSON.stringify({ keys: published }) }; } };
    const viaRpc = new AccessTokenVerifier({ ...options(), keys: tokendKeySet(client, { cooldownMs: 60_000 }) });
    await viaRpc.verify(await sign(key("EdDSA")));
    assert.equal(calls, 1);
    published = [key("EdDSA").jwk, key("PS256").jwk];
    await refused(viaRpc, await sign(key("PS256")), Reason.UNKNOWN_KEY); // within the cooldown
    assert.equal(calls, 1);
  });

  it("reaches no verdict (and no InvalidTokenError) when the keys cannot be fetched", async () => {
    const gone = await JwksServer.start([]);
    const url = gone.url;
    await gone.close();
    const blind = new AccessTokenVerifier({ ...options(), keys: remoteKeySet(url, { timeoutMs: 2_000 }) });
    await assert.rejects(blind.verify(await sign(key("ES256"))),
      (error: unknown) => error instanceof Error && !(error instanceof InvalidTokenError));
  });

  it("refetches keys older than maxAgeMs, and keeps the last good set when a fetch fails", async () => {
    const jwks = await JwksServer.start([key("ES256").jwk]);
    try {
      const aging = remoteKeySet(jwks.url, { maxAgeMs: 200, cooldownMs: 60_000 });
      const fresh = new AccessTokenVerifier({ ...options(), keys: aging });
      await fresh.verify(await sign(key("ES256")));
      assert.equal(jwks.fetches, 1);
      jwks.keys = [key("EdDSA").jwk]; // the ES256 key is withdrawn
      await sleep(400);
      assert.ok(jwks.fetches >= 2, "refetched by age");
      await refused(fresh, await sign(key("ES256")), Reason.UNKNOWN_KEY);
      await fresh.verify(await sign(key("EdDSA")));
      jwks.keys = []; // a set with no usable key: the last good one stays
      await sleep(400);
      await fresh.verify(await sign(key("EdDSA")));
      aging.close();
    } finally {
      await jwks.close();
    }
  });

  it("refuses a JWK Set over 1 MiB without reading it all", async () => {
    const huge = await JwksServer.start([{ ...key("ES256").jwk, padding: "x".repeat(1 << 20) } as never]);
    try {
      const blind = new AccessTokenVerifier({ ...options(), keys: remoteKeySet(huge.url) });
      await assert.rejects(blind.verify(await sign(key("ES256"))), (error: unknown) =>
        error instanceof KeySourceError && /larger than 1 MiB/.test(error.message));
    } finally {
      await huge.close();
    }
  });

  it("verifies against a fixed JWK Set, drops unusable keys one by one, refuses private material whole", async () => {
    // An oct key carries "k", a private member: the whole set is refused, at construction.
    assert.throws(() => new Verifier({
      keys: { keys: [key("ES256").jwk, { kty: "oct", k: "c2VjcmV0" }] }, issuer: ISSUER, audience: AUDIENCE,
    }), /private or symmetric/);
    const dropped = new Verifier({
      keys: JSON.stringify({ keys: [key("ES256").jwk, { kty: "RSA", n: "AQAB", e: "AQAB", kid: "tiny", alg: "RS256" }] }),
      issuer: ISSUER, audience: AUDIENCE, clock: () => Date.now() / 1000,
    });
    await dropped.verify(await sign(key("ES256")));
    const set = JwkSet.from({ keys: [{ kty: "RSA", n: "AQAB", e: "AQAB", kid: "tiny", alg: "RS256" }] });
    assert.deepEqual(set.kids, []);
    assert.equal(set.rejected[0]?.[0], "tiny");
  });

  it("takes audience none as: the token must carry no aud", async () => {
    const noAudience = new Verifier({
      keys: remoteKeySet(server.url), issuer: ISSUER, requiredClaims: ["exp", "iat", "iss", "sub", "jti"],
    });
    await refused(noAudience, await sign(key("ES256")), Reason.WRONG_AUDIENCE);
    assert.equal((await noAudience.verify(await sign(key("ES256"), claims({ aud: undefined })))).sub, "alice");
  });

  it("uses the injected clock, and leeway 0 exactly", async () => {
    const token = await sign(key("ES256"), claims({ iat: 1_000, exp: 2_000, nbf: 1_000 }));
    const at = (now: number) => new Verifier({ ...options(), leeway: 0, clock: () => now });
    assert.equal((await at(1_999.5).verify(token)).sub, "alice");
    await refused(at(2_000), token, Reason.EXPIRED);
    await refused(at(999.9), token, Reason.NOT_YET_VALID);
  });

  it("rejects unsafe configuration", () => {
    const keysFrom = remoteKeySet(server.url);
    assert.throws(() => new AccessTokenVerifier({ keys: keysFrom, issuer: ISSUER, audience: [] }), TypeError);
    assert.throws(() => new AccessTokenVerifier({ keys: keysFrom, issuer: "", audience: AUDIENCE }), TypeError);
    assert.throws(() => new AccessTokenVerifier({
      keys: keysFrom, issuer: ISSUER, audience: AUDIENCE, algorithms: ["HS256" as "ES256"],
    }), TypeError);
    assert.throws(() => new AccessTokenVerifier({
      keys: keysFrom, issuer: ISSUER, audience: AUDIENCE, clockToleranceSeconds: 3600,
    }), RangeError);
    assert.throws(() => remoteKeySet("http://tokend.example/.well-known/jwks.json"), TypeError);
    remoteKeySet("http://[::1]:8080/.well-known/jwks.json");
  });
});
