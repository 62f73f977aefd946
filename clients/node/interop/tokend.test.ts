/**
 * Against a live tokend (mutual TLS) named by the TOKEND_* environment variables that
 * tests/conftest.py sets; run with `npm run test:interop`.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  AccessTokenVerifier, baseUrlOf, TokenService, Code, connect, ConnectError, createChannelCredentials, InvalidTokenError,
  Reason, remoteKeySet, tokendKeySet, type AccessTokenClaims, type TokendClient,
} from "../src/index.js";

const CALLER_SPIFFE_ID = "spiffe://tokend.test/interop";

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run through tests/interop/test_node.py`);
  return value;
}

/** Asserts that local verification refuses `token` with `reason`. */
async function refusedLocally(verifier: AccessTokenVerifier, token: string, reason: Reason,
                              audience?: string): Promise<void> {
  await assert.rejects(verifier.verify(token, audience === undefined ? {} : { audience }),
    (error: unknown) => error instanceof InvalidTokenError && error.reason === reason);
}

describe("tokend over mutual TLS", () => {
  const audience = env("TOKEND_AUDIENCE");
  const credentials = createChannelCredentials({
    caFile: env("TOKEND_CA_FILE"), certFile: env("TOKEND_CLIENT_CERT"), keyFile: env("TOKEND_CLIENT_KEY"),
  });
  let tokend: TokendClient;
  let verifier: AccessTokenVerifier;

  before(() => {
    tokend = connect(env("TOKEND_ADDR"), credentials);
    verifier = new AccessTokenVerifier({
      keys: remoteKeySet(env("TOKEND_JWKS_URL"), { cooldownMs: 2_000 }),
      issuer: env("TOKEND_ISSUER"),
      audience,
    });
  });
  after(() => tokend.close());

  it("issues, verifies, refreshes and revokes", async () => {
    const issued = await tokend.issue({
      subject: "node-interop", audience: [audience], scopes: ["orders:read", "orders:write"],
      includeRefreshToken: true,
    });
    assert.equal(issued.tokenType, "Bearer");
    assert.ok(issued.refreshToken.length > 0 && issued.refreshExpiresAt !== undefined);

    const claims: AccessTokenClaims = await verifier.verify(issued.accessToken, {
      requiredScopes: ["orders:read"],
    });
    assert.equal(claims.sub, "node-interop");
    assert.equal(claims.jti, issued.jti);
    assert.equal(claims.client_id, CALLER_SPIFFE_ID);

    const remote = await tokend.verify({ token: issued.accessToken, audience });
    assert.equal(remote.valid, true);
    assert.equal(remote.reason, Reason.UNSPECIFIED);
    assert.equal(remote.claims?.["client_id"], CALLER_SPIFFE_ID);

    const refreshed = await tokend.refresh({ refreshToken: issued.refreshToken, scopes: ["orders:read"] });
    assert.notEqual(refreshed.jti, issued.jti);
    assert.ok(refreshed.refreshToken.length > 0);
    const narrowed = await verifier.verify(refreshed.accessToken);
    assert.equal(narrowed.scope, "orders:read");

    const revoked = await tokend.revoke({ target: { case: "token", value: refreshed.accessToken }, reason: "node interop" });
    assert.ok(revoked.revoked >= 1);
    const after = await tokend.verify({ token: refreshed.accessToken, audience });
    assert.equal(after.valid, false);
    assert.equal(after.reason, Reason.REVOKED);
  });

  it("refuses a tampered token and the wrong audience locally", async () => {
    const { accessToken } = await tokend.issue({ subject: "node-interop", audience: [audience] });
    const [header, payload, signature] = accessToken.split(".");
    const claims = JSON.parse(Buffer.from(payload!, "base64url").toString());
    const forged = Buffer.from(JSON.stringify({ ...claims, sub: "mallory" })).toString("base64url");
    await refusedLocally(verifier, `${header}.${forged}.${signature}`, Reason.BAD_SIGNATURE);
    await refusedLocally(verifier, accessToken, Reason.WRONG_AUDIENCE, "some-other-api");
  });

  it("refuses lenient re-encodings of a genuine token (signature still valid to a lenient decoder)", async () => {
    const { accessToken } = await tokend.issue({ subject: "node-interop", audience: [audience] });
    await verifier.verify(accessToken);
    const [header, payload, signature] = accessToken.split(".") as [string, string, string];
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const pad = (segment: string) => segment + "=".repeat((4 - (segment.length % 4)) % 4 || 1);
    const variants = [
      `${header}.${payload}.${pad(signature)}`,
      `${header}.${payload}.${signature.slice(0, 40)} ${signature.slice(40)}`,
      `${header}.${payload}.${signature.slice(0, 40)}\n${signature.slice(40)}`,
      `${accessToken}\n`,
      ` ${accessToken}`,
    ];
    if (signature.length % 4 !== 0) {
      // The last character then carries unused bits: set one, the bytes stay the same.
      variants.push(`${header}.${payload}.${signature.slice(0, -1)}${alphabet[alphabet.indexOf(signature.at(-1)!) | 1]}`);
    }
    assert.ok(variants.length >= 5);
    for (const variant of variants) await refusedLocally(verifier, variant, Reason.MALFORMED);
  });

  it("verifies with keys from GetJwks", async () => {
    const viaRpc = new AccessTokenVerifier({
      keys: tokendKeySet(tokend), issuer: env("TOKEND_ISSUER"), audience,
    });
    const { accessToken } = await tokend.issue({ subject: "node-interop", audience: [audience] });
    assert.equal((await viaRpc.verify(accessToken)).client_id, CALLER_SPIFFE_ID);
  });

  it("reports an unknown refresh token as UNAUTHENTICATED", async () => {
    await assert.rejects(tokend.refresh({ refreshToken: `tkd_rt_${"A".repeat(43)}` }),
      (error: unknown) => ConnectError.from(error).code === Code.Unauthenticated);
  });

  it("is refused without a client certificate", async () => {
    // connect() always presents a certificate, so build the anonymous client by hand.
    const transport = createGrpcTransport({
      baseUrl: baseUrlOf(env("TOKEND_ADDR")), nodeOptions: { ca: credentials.ca },
    });
    // Under TLS 1.3 the client finishes its handshake before the server has checked the
    // (missing) certificate, so the refusal shows as a failed connection or a cancelled stream.
    await assert.rejects(createClient(TokenService, transport).getJwks({}, { timeoutMs: 5_000 }),
      (error: unknown) => [Code.Unavailable, Code.Canceled].includes(ConnectError.from(error).code));
  });
});
