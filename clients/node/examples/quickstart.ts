// Issue, verify locally, refresh and revoke (the revocation reaches the local verifier
// through LiveSource): against `scripts/dev`.
// Run from clients/node: npm run build && node dist/examples/quickstart.js
import { setTimeout as sleep } from "node:timers/promises";
import { connectInsecureLoopback, InvalidTokenError, LiveSource, Reason, Verifier } from "@tokend/client";

const grpcAddress = process.env.TOKEND_ADDR ?? "127.0.0.1:50051";
const issuer = process.env.TOKEND_ISSUER ?? "http://127.0.0.1:8080"; // tokend's configured issuer

// scripts/dev serves plaintext on loopback; in production use
// connect(address, createChannelCredentials({ caFile, certFile, keyFile })).
const tokend = connectInsecureLoopback(grpcAddress);

const issued = await tokend.issue({
  subject: "alice", audience: ["orders"], scopes: ["orders:read"], includeRefreshToken: true,
});

// Create once per process: it follows tokend's keys and revocations over gRPC streams.
const live = new LiveSource(tokend);
const verifier = new Verifier({ keys: live, issuer, audience: "orders" });

async function check(token: string): Promise<string> {
  try {
    const claims = await verifier.verify(token, { requiredScopes: ["orders:read"] });
    return `valid for ${claims.sub}, scopes ${claims.scope}`;
  } catch (error) {
    if (!(error instanceof InvalidTokenError)) throw error; // no verdict: refuse as well
    return `refused: ${error.reasonName}`;
  }
}

console.log("locally:", await check(issued.accessToken));
const refreshed = await tokend.refresh({ refreshToken: issued.refreshToken });
await tokend.revoke({ target: { case: "jti", value: refreshed.jti }, reason: "example" });
await sleep(500); // the revocation arrives over WatchRevocations within about a second
console.log("locally after Revoke:", await check(refreshed.accessToken)); // refused: REVOKED
const answer = await tokend.verify({ token: refreshed.accessToken, audience: "orders" });
console.log("tokend says valid:", answer.valid, "reason:", Reason[answer.reason]); // false REVOKED

await live.close();
tokend.close();
