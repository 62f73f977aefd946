/** Test keys, signed tokens and a loopback JWKS server for the verifier tests. */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from "jose";

export const ISSUER = "https://tokend.test";
export const AUDIENCE = "orders";

/** A signing key and its public JWK (kid, alg, use as tokend publishes them). */
export interface TestKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  jwk: JWK;
}

/** Generates a key pair for `alg` and its public JWK under `kid`. */
export async function makeKey(alg: string, kid = `test-${alg}`): Promise<TestKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { kid, alg, privateKey, jwk };
}

/** Standard valid claims, overridable; `undefined` values remove a claim. */
export function claims(overrides: Record<string, unknown> = {}): JWTPayload {
  const now = Math.floor(Date.now() / 1000);
  const base: Record<string, unknown> = {
    iss: ISSUER, sub: "alice", aud: [AUDIENCE], iat: now, exp: now + 300,
    jti: `jti-${Math.random().toString(36).slice(2)}`, scope: "orders:read orders:write",
    client_id: "spiffe://tokend.test/web",
  };
  for (const [name, value] of Object.entries(overrides)) {
    if (value === undefined) delete base[name];
    else base[name] = value;
  }
  return base as JWTPayload;
}

/** Signs `payload` with `key`; header fields (typ, alg, kid) can be overridden. */
export async function sign(key: TestKey, payload: JWTPayload = claims(),
                           header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(payload)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "at+jwt", ...header })
    .sign(key.privateKey);
}

/** base64url of a JSON value, for hand-made tokens. */
export function b64json(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

/** A JWKS endpoint on 127.0.0.1 whose key set the test can change; counts fetches. */
export class JwksServer {
  fetches = 0;
  keys: JWK[];
  readonly #server: Server;

  private constructor(keys: JWK[]) {
    this.keys = keys;
    this.#server = createServer((_request, response) => {
      this.fetches += 1;
      response.setHeader("content-type", "application/json");
      response.end(JSON.stringify({ keys: this.keys }));
    });
  }

  /** Starts a server publishing `keys`. */
  static async start(keys: JWK[]): Promise<JwksServer> {
    const server = new JwksServer(keys);
    await new Promise<void>((resolve) => server.#server.listen(0, "127.0.0.1", resolve));
    return server;
  }

  get url(): string {
    const { port } = this.#server.address() as AddressInfo;
    return `http://127.0.0.1:${port}/.well-known/jwks.json`;
  }

  /** Stops the server. */
  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
