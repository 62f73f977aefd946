/**
 * Token exchange (RFC 8693) and certificate-bound tokens (RFC 8705 §3) against a live
 * tokend (mutual TLS, real OpenBao), started by tests/interop/test_node.py::test_node_chain
 * with four workload identities (login, orders, payments, thief) whose PEM files the
 * TOKEND_* variables name. Run with `npm run test:chain`.
 *
 * login issues alice's token for orders; orders exchanges it for a token for payments,
 * bound to its own certificate; payments is a real HTTPS server here, with mutual TLS,
 * that takes the presenter from its socket and verifies with a LiveSource-backed Verifier:
 * it sees sub alice and actors [orders]. The same token replayed over another client
 * certificate is refused (by payments' verifier and by tokend's Verify), and revoking
 * alice's original token kills the exchanged one within a second.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, request, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { TLSSocket } from "node:tls";
import {
  actors, connect, exchangeToken, InvalidTokenError, issueToken, LiveSource, presenterFromTlsSocket, Reason, tokendKeySet, Verifier,
  type TokendClient,
} from "../src/index.js";

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run through tests/interop/test_node.py`);
  return value;
}

interface Workload { name: string; id: string; cert: Buffer; key: Buffer; der: Buffer; client: TokendClient }

function workload(name: string): Workload {
  const upper = name.toUpperCase();
  const certFile = env(`TOKEND_${upper}_CERT`);
  const keyFile = env(`TOKEND_${upper}_KEY`);
  const cert = readFileSync(certFile);
  return {
    name, id: env(`TOKEND_${upper}_ID`), cert, key: readFileSync(keyFile),
    der: Buffer.from(new X509Certificate(cert).raw),
    client: connect(env("TOKEND_ADDR"), { caFile: env("TOKEND_CA_FILE"), certFile, keyFile }),
  };
}

/** The payments service: HTTPS with mutual TLS, the presenter taken from the socket. */
class PaymentsService {
  readonly #server: Server;

  constructor(private readonly verifier: Verifier) {
    this.#server = createServer({
      cert: readFileSync(env("TOKEND_SERVICE_CERT")), key: readFileSync(env("TOKEND_SERVICE_KEY")),
      ca: readFileSync(env("TOKEND_CA_FILE")), requestCert: true, rejectUnauthorized: true,
    }, (req, res) => {
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1] ?? "";
      const presenterX5tS256 = presenterFromTlsSocket(req.socket as TLSSocket);
      this.verifier.verify(token, { requiredScopes: ["payments:charge"], presenterX5tS256 }).then(
        (claims) => res.end(JSON.stringify({ sub: claims.sub, actors: actors(claims) })),
        (error: unknown) => res.end(JSON.stringify({
          reason: error instanceof InvalidTokenError ? Reason[error.reason] : `error ${String(error)}`,
        })));
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
  }

  /** What payments answers to `token` presented over `caller`'s certificate. */
  call(caller: Workload, token: string): Promise<Record<string, unknown>> {
    const { port } = this.#server.address() as AddressInfo;
    return new Promise((resolve, reject) => {
      const req = request({
        host: "127.0.0.1", port, path: "/charge", method: "POST", agent: false, timeout: 5_000,
        ca: readFileSync(env("TOKEND_CA_FILE")), cert: caller.cert, key: caller.key,
        headers: { authorization: `Bearer ${token}` },
      }, (res) => {
        let body = "";
        res.on("data", (chunk) => { body += chunk; });
        res.on("end", () => resolve(JSON.parse(body) as Record<string, unknown>));
      });
      req.on("timeout", () => req.destroy(new Error("payments did not answer in 5 s")));
      req.on("error", reject);
      req.end();
    });
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

describe("login → orders → payments against tokend", () => {
  let login: Workload;
  let orders: Workload;
  let payments: Workload;
  let thief: Workload;
  let live: LiveSource;
  let service: PaymentsService;
  let ordersVerifier: Verifier;

  before(async () => {
    [login, orders, payments, thief] = ["login", "orders", "payments", "thief"].map(workload) as [Workload, Workload, Workload, Workload];
    live = new LiveSource(payments.client, { cooldownMs: 3_600_000, maxAgeMs: 3_600_000 });
    // payments is only ever called through orders: it requires a delegated token.
    const paymentsVerifier = new Verifier({ keys: live, issuer: env("TOKEND_ISSUER"), audience: "payments", delegation: "required" });
    await live.keys();
    service = new PaymentsService(paymentsVerifier);
    await service.start();
    // orders serves end users directly: their tokens are never delegated.
    ordersVerifier = new Verifier({ keys: tokendKeySet(orders.client), issuer: env("TOKEND_ISSUER"), audience: "orders", delegation: "refused" });
  });
  after(async () => {
    await service?.close();
    await live?.close();
    for (const w of [login, orders, payments, thief]) w?.client.close();
  });

  /** alice's token for orders (as login gets it) and what orders exchanges it for. */
  async function chain(): Promise<{ subject: { accessToken: string; jti: string }; exchanged: string }> {
    const subject = await issueToken(login.client, { subject: "alice", audience: "orders", scopes: ["orders:read", "payments:charge"] });
    const claims = await ordersVerifier.verify(subject.accessToken, { requiredScopes: "orders:read" });
    assert.equal(claims.sub, "alice");
    assert.deepEqual(actors(claims), []);
    const exchanged = await exchangeToken(orders.client, {
      subjectToken: subject.accessToken, audience: "payments", scopes: ["payments:charge"], bindToCertificate: true,
    });
    return { subject, exchanged: exchanged.accessToken };
  }

  it("payments sees alice as subject and orders as actor", async () => {
    const { exchanged } = await chain();
    assert.deepEqual(await service.call(orders, exchanged), { sub: "alice", actors: [orders.id] });
    const answer = await payments.client.verify({
      token: exchanged, audience: "payments", presenter: { case: "presenterCertificateDer", value: orders.der },
    });
    assert.equal(answer.valid, true);
    assert.equal(answer.subject, "alice");
    assert.deepEqual(answer.actors, [orders.id]);
  });

  it("refuses the bound token replayed from another certificate (Node verifier and tokend Verify)", async () => {
    const { exchanged } = await chain();
    assert.deepEqual(await service.call(thief, exchanged), { reason: "CERTIFICATE_MISMATCH" });
    assert.deepEqual(await service.call(payments, exchanged), { reason: "CERTIFICATE_MISMATCH" });
    for (const presenter of [thief.der, payments.der]) {
      const answer = await thief.client.verify({
        token: exchanged, audience: "payments", presenter: { case: "presenterCertificateDer", value: presenter },
      });
      assert.equal(answer.valid, false);
      assert.equal(Reason[answer.reason], "CERTIFICATE_MISMATCH");
    }
    const bare = await thief.client.verify({ token: exchanged, audience: "payments" });
    assert.equal(Reason[bare.reason], "CERTIFICATE_MISMATCH");
    // The rightful presenter still gets through after the replays.
    assert.deepEqual(await service.call(orders, exchanged), { sub: "alice", actors: [orders.id] });
  });

  it("binds an issued token to the caller's certificate (issueToken)", async () => {
    const issued = await issueToken(login.client, { subject: "alice", audience: "orders", scopes: "orders:read", bindToCertificate: true });
    await assert.rejects(ordersVerifier.verify(issued.accessToken, { presenterCertificate: thief.der }),
      (error: unknown) => error instanceof InvalidTokenError && error.reason === Reason.CERTIFICATE_MISMATCH);
    assert.equal((await ordersVerifier.verify(issued.accessToken, { presenterCertificate: login.der })).sub, "alice");
  });

  it("kills the exchanged token with its parent on Revoke, within a second", async () => {
    const { subject, exchanged } = await chain();
    assert.deepEqual(await service.call(orders, exchanged), { sub: "alice", actors: [orders.id] });
    const started = performance.now();
    await login.client.revoke({ target: { case: "jti", value: subject.jti }, reason: "node chain test" });
    let answer: Record<string, unknown> = {};
    while (performance.now() - started < 1_000) {
      answer = await service.call(orders, exchanged);
      if (answer["reason"] === "REVOKED") break;
      await sleep(5);
    }
    const elapsed = performance.now() - started;
    assert.deepEqual(answer, { reason: "REVOKED" }, `still ${JSON.stringify(answer)} after ${elapsed.toFixed(0)} ms`);
    console.log(`exchanged token refused by the Node verifier ${elapsed.toFixed(0)} ms after Revoke of its parent`);
    const verdict = await payments.client.verify({
      token: exchanged, audience: "payments", presenter: { case: "presenterCertificateDer", value: orders.der },
    });
    assert.equal(Reason[verdict.reason], "REVOKED");
  });
});
