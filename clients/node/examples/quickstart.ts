// Issue, verify locally, verify with tokend, refresh and revoke: against `scripts/dev`.
// Run from clients/node: npm run build && node dist/examples/quickstart.js
import {
  AccessTokenVerifier, connectInsecureLoopback, InvalidTokenError, Reason, remoteKeySet,
} from "@tokend/client";

const grpcAddress = process.env.TOKEND_ADDR ?? "127.0.0.1:50051";
const httpBase = process.env.TOKEND_HTTP ?? "http://127.0.0.1:8080";

// scripts/dev serves plaintext on loopback; in production use
// connect(address, createChannelCredentials({ caFile, certFile, keyFile })).
const tokend = connectInsecureLoopback(grpcAddress);

const issued = await tokend.issue({
  subject: "alice", audience: ["orders"], scopes: ["orders:read"], includeRefreshToken: true,
});

// Create once per process: it caches the keys and refetches on an unknown kid.
const verifier = new AccessTokenVerifier({
  keys: remoteKeySet(`${httpBase}/.well-known/jwks.json`),
  issuer: httpBase, // tokend's configured issuer
  audience: "orders",
});

try {
  const claims = await verifier.verify(issued.accessToken, { requiredScopes: ["orders:read"] });
  console.log("valid locally for", claims.sub, "scopes", claims.scope);
} catch (error) {
  if (!(error instanceof InvalidTokenError)) throw error; // no verdict: refuse as well
  console.log("refused:", error.reasonName);
}

const refreshed = await tokend.refresh({ refreshToken: issued.refreshToken });
await tokend.revoke({ target: { case: "jti", value: refreshed.jti }, reason: "example" });
// Revocation is known to tokend, not to local verification: ask it where that matters.
const answer = await tokend.verify({ token: refreshed.accessToken, audience: "orders" });
console.log("tokend says valid:", answer.valid, "reason:", Reason[answer.reason]); // false REVOKED

tokend.close();
