/**
 * Certificate binding (RFC 8705 §3, contract §9) and delegation (RFC 8693 §4.1, contract
 * section A) in the Node verifier: thumbprints, the Envoy x-forwarded-client-cert header
 * (the same cases as tests/client/test_binding.py), a real TLS server on loopback taking
 * the presenter from its socket, and the actor chain. Certificates come from the openssl
 * command (a test CA in a temporary directory).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { connect as tlsConnect, createServer, type TLSSocket } from "node:tls";
import {
  actors, certificateThumbprint, InvalidTokenError, JwkSet, Reason, presenterFromTlsSocket, presenterFromXfcc, Verifier,
} from "../src/index.js";
import { AUDIENCE, claims, ISSUER, makeKey, sign, type TestKey } from "./support.js";

interface Identity { cert: Buffer; key: Buffer; der: Buffer; x5t: string }

/** A throwaway CA and certificates signed by it, made with the openssl command. */
class TestPki {
  readonly dir = mkdtempSync(join(tmpdir(), "tokend-node-binding-"));
  readonly ca: Identity;

  constructor() {
    this.ca = this.#make("ca", ["-x509", "-subj", "/CN=test ca", "-addext", "basicConstraints=critical,CA:TRUE"]);
  }

  issue(name: string, san: string): Identity {
    const csr = join(this.dir, `${name}.csr`);
    const key = join(this.dir, `${name}.key`);
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
      "-out", csr, "-subj", `/CN=${name}`);
    const ext = join(this.dir, `${name}.ext`);
    writeFileSync(ext, `subjectAltName=${san}\n`);
    const cert = join(this.dir, `${name}.pem`);
    openssl("x509", "-req", "-in", csr, "-CA", join(this.dir, "ca.pem"), "-CAkey", join(this.dir, "ca.key"),
      "-CAcreateserial", "-days", "1", "-extfile", ext, "-out", cert);
    return identity(readFileSync(cert), readFileSync(key));
  }

  #make(name: string, extra: string[]): Identity {
    const key = join(this.dir, `${name}.key`);
    const cert = join(this.dir, `${name}.pem`);
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
      "-out", cert, "-days", "1", ...extra);
    return identity(readFileSync(cert), readFileSync(key));
  }

  close(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function openssl(...args: string[]): void {
  execFileSync("openssl", args, { stdio: "pipe", timeout: 20_000 });
}

function identity(cert: Buffer, key: Buffer): Identity {
  const der = Buffer.from(new X509Certificate(cert).raw);
  return { cert, key, der, x5t: createHash("sha256").update(der).digest("base64url") };
}

async function reasonOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return "valid";
  } catch (error) {
    if (!(error instanceof InvalidTokenError)) throw error;
    return Reason[error.reason]!;
  }
}

describe("certificate binding", () => {
  let pki: TestPki;
  let orders: Identity;
  let thief: Identity;
  let key: TestKey;
  let verifier: Verifier;

  before(async () => {
    pki = new TestPki();
    orders = pki.issue("orders", "URI:spiffe://t.test/ns/a/sa/orders");
    thief = pki.issue("thief", "URI:spiffe://t.test/ns/a/sa/thief");
    key = await makeKey("ES256");
    verifier = new Verifier({ keys: JwkSet.from({ keys: [key.jwk] }), issuer: ISSUER, audience: AUDIENCE });
  });
  after(() => pki.close());

  const bound = (x5t: string) => sign(key, claims({ cnf: { "x5t#S256": x5t } }));

  it("thumbprints DER and X509Certificate alike (base64url SHA-256 of the DER)", () => {
    assert.equal(certificateThumbprint(orders.der), orders.x5t);
    assert.equal(certificateThumbprint(new X509Certificate(orders.cert)), orders.x5t);
    assert.equal(orders.x5t.length, 43);
    assert.throws(() => certificateThumbprint(orders.cert), RangeError); // PEM is not DER
    assert.throws(() => certificateThumbprint(Buffer.alloc(0)), RangeError);
    assert.throws(() => certificateThumbprint(Buffer.concat([orders.der, Buffer.from([0])])), RangeError); // trailing bytes
    assert.equal(certificateThumbprint(new Uint8Array(orders.der)), orders.x5t);
    assert.throws(() => certificateThumbprint(Buffer.alloc(16 * 1024 + 1, 0x30)), RangeError);
    assert.throws(() => certificateThumbprint("x" as unknown as Buffer), TypeError);
  });

  it("accepts a bound token only from its certificate", async () => {
    const token = await bound(orders.x5t);
    assert.equal((await verifier.verify(token, { presenterCertificate: orders.der })).sub, "alice");
    assert.equal((await verifier.verify(token, { presenterX5tS256: orders.x5t })).sub, "alice");
    assert.equal(await reasonOf(verifier.verify(token, { presenterCertificate: thief.der })), "CERTIFICATE_MISMATCH");
    assert.equal(await reasonOf(verifier.verify(token)), "CERTIFICATE_MISMATCH");
    // checkClaims (for a cache of verified tokens) applies the binding per call too.
    const verified = await verifier.verify(token, { presenterX5tS256: orders.x5t });
    verifier.checkClaims(verified, { presenterX5tS256: orders.x5t });
    assert.throws(() => verifier.checkClaims(verified, { presenterX5tS256: thief.x5t }),
      (error: unknown) => error instanceof InvalidTokenError && error.reason === Reason.CERTIFICATE_MISMATCH);
  });

  it("ignores the presenter for an unbound token; refuses cnf it cannot check", async () => {
    assert.equal((await verifier.verify(await sign(key), { presenterX5tS256: thief.x5t })).sub, "alice");
    assert.equal(await reasonOf(verifier.verify(await sign(key, claims({ cnf: { jkt: orders.x5t } })),
      { presenterX5tS256: orders.x5t })), "CERTIFICATE_MISMATCH");
    assert.equal(await reasonOf(verifier.verify(await sign(key, claims({ cnf: "x" })))), "MALFORMED");
    assert.equal(await reasonOf(verifier.verify(await sign(key, claims({ cnf: { "x5t#S256": `${orders.x5t}=` } })),
      { presenterX5tS256: orders.x5t })), "MALFORMED");
  });

  it("treats bad presenter arguments as argument errors", async () => {
    const token = await bound(orders.x5t);
    await assert.rejects(verifier.verify(token, { presenterX5tS256: "short" }), RangeError);
    await assert.rejects(verifier.verify(token, { presenterX5tS256: orders.x5t, presenterCertificate: orders.der }), TypeError);
    await assert.rejects(verifier.verify(token, { presenterCertificate: Buffer.from("not a certificate") }), RangeError);
  });

  it("reads Envoy's x-forwarded-client-cert (Hash, Cert, last element)", () => {
    const digest = createHash("sha256").update(orders.der).digest("hex");
    const pem = encodeURIComponent(orders.cert.toString("ascii"));
    assert.equal(presenterFromXfcc(`By=spiffe://t.test/ns/a/sa/pay;Hash=${digest}`), orders.x5t);
    assert.equal(presenterFromXfcc(`Hash=${digest.toUpperCase()}`), orders.x5t);
    assert.equal(presenterFromXfcc(`Cert="${pem}"`), orders.x5t);
    assert.equal(presenterFromXfcc(`By=spiffe://x;Hash=${digest};Cert="${pem}";Subject="/C=US/CN=a,b;c=\\"d\\"";`
      + "URI=spiffe://t.test/ns/a/sa/orders;DNS=a.test;DNS=b.test"), orders.x5t);
    const thiefDigest = createHash("sha256").update(thief.der).digest("hex");
    // Each proxy appends its element: the last is the one the nearest sidecar wrote.
    assert.equal(presenterFromXfcc(`Hash=${thiefDigest},By=spiffe://x;Hash=${digest}`), orders.x5t);
    assert.equal(presenterFromXfcc([`Hash=${thiefDigest}`, `Hash=${digest}`]), orders.x5t);
    assert.equal(presenterFromXfcc("By=spiffe://x;URI=spiffe://y"), undefined);
    assert.equal(presenterFromXfcc(""), undefined);
    assert.equal(presenterFromXfcc(undefined), undefined);
    assert.throws(() => presenterFromXfcc(`Hash=${thiefDigest};Cert=${pem}`), /different/);
  });

  for (const header of ["Hash=abc", `Hash=${"g".repeat(64)}`, 'Cert="not%20a%20certificate"',
    `Hash=${"ab".repeat(32)};Hash=${"cd".repeat(32)}`, 'Subject="unterminated', "justtext", "=value",
    `Hash=${"a".repeat(70_000)}`, "Cert=%E0%A4%A"]) {
    it(`refuses a malformed x-forwarded-client-cert: ${header.slice(0, 40)}`, () => {
      assert.throws(() => presenterFromXfcc(header), RangeError);
    });
  }

  it("takes the presenter from a mutual-TLS socket on a Node TLS server", async () => {
    const server = pki.issue("server", "IP:127.0.0.1");
    const token = await bound(orders.x5t);
    const tls = createServer({ cert: server.cert, key: server.key, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: false },
      (socket: TLSSocket) => {
        socket.once("data", (data) => {
          const presenter = presenterFromTlsSocket(socket);
          reasonOf(verifier.verify(data.toString("ascii"), { presenterX5tS256: presenter }))
            .then((outcome) => socket.end(`${presenter ?? "none"} ${outcome}`), (error) => socket.end(`error ${String(error)}`));
        });
      });
    await new Promise<void>((resolve) => tls.listen(0, "127.0.0.1", resolve));
    const port = (tls.address() as { port: number }).port;
    const present = (client?: Identity) => new Promise<string>((resolve, reject) => {
      const socket = tlsConnect({ host: "127.0.0.1", port, ca: pki.ca.cert, ...(client ? { cert: client.cert, key: client.key } : {}) },
        () => socket.write(token));
      let answer = "";
      socket.setTimeout(5_000, () => socket.destroy(new Error("timed out")));
      socket.on("data", (data) => { answer += data.toString(); });
      socket.on("end", () => resolve(answer));
      socket.on("error", reject);
    });
    try {
      assert.equal(await present(orders), `${orders.x5t} valid`);
      assert.equal(await present(thief), `${thief.x5t} CERTIFICATE_MISMATCH`);
      assert.equal(await present(), "none CERTIFICATE_MISMATCH");
      // The getPeerCertificate(true).raw path (older TLS socket shapes) gives the same.
      const fake = { getPeerCertificate: () => ({ raw: orders.der }) } as unknown as TLSSocket;
      assert.equal(presenterFromTlsSocket(fake), orders.x5t);
      assert.equal(presenterFromTlsSocket({ getPeerCertificate: () => ({}) } as unknown as TLSSocket), undefined);
    } finally {
      await new Promise<void>((resolve) => tls.close(() => resolve()));
    }
  });
});

describe("delegation (act)", () => {
  let key: TestKey;
  let verifier: Verifier;
  const chain = { sub: "spiffe://t/payments", act: { sub: "spiffe://t/orders", client_id: "x" } };

  before(async () => {
    key = await makeKey("ES256");
    verifier = new Verifier({ keys: JwkSet.from({ keys: [key.jwk] }), issuer: ISSUER, audience: AUDIENCE });
  });

  it("exposes the actor chain, outermost first", async () => {
    const verified = await verifier.verify(await sign(key, claims({ act: chain })));
    assert.deepEqual(actors(verified), ["spiffe://t/payments", "spiffe://t/orders"]);
    assert.deepEqual(actors(await verifier.verify(await sign(key))), []);
  });

  it("applies the delegation option (constructor and per call)", async () => {
    const delegated = await sign(key, claims({ act: chain }));
    const direct = await sign(key);
    const required = new Verifier({ keys: JwkSet.from({ keys: [key.jwk] }), issuer: ISSUER, audience: AUDIENCE, delegation: "required" });
    assert.equal(await reasonOf(required.verify(direct)), "DELEGATION");
    assert.equal(await reasonOf(required.verify(delegated)), "valid");
    assert.equal(await reasonOf(required.verify(delegated, { delegation: "refused" })), "DELEGATION");
    assert.equal(await reasonOf(verifier.verify(delegated, { delegation: "refused" })), "DELEGATION");
    assert.equal(await reasonOf(verifier.verify(direct, { delegation: "refused" })), "valid");
    assert.throws(() => new Verifier({ keys: { keys: [key.jwk] }, issuer: ISSUER, delegation: "maybe" as "any" }), TypeError);
    await assert.rejects(verifier.verify(direct, { delegation: "REQUIRED" as "required" }), TypeError);
  });

  it("refuses a malformed act (A1), also before delegation and binding (order)", async () => {
    let deep: Record<string, unknown> = { sub: "a9" };
    for (let i = 8; i >= 1; i -= 1) deep = { sub: `a${i}`, act: deep };
    for (const act of ["x", [], null, {}, { sub: "" }, { sub: 1 }, { sub: "a", act: "b" }, deep]) {
      assert.equal(await reasonOf(verifier.verify(await sign(key, claims({ act })))), "MALFORMED", JSON.stringify(act));
    }
    let eight: Record<string, unknown> = { sub: "a8" };
    for (let i = 7; i >= 1; i -= 1) eight = { sub: `a${i}`, act: eight };
    assert.equal(actors(await verifier.verify(await sign(key, claims({ act: eight })))).length, 8);
    // A delegated token refused by the option and presented with no certificate: DELEGATION.
    const both = await sign(key, claims({ act: chain, cnf: { "x5t#S256": "A".repeat(43) } }));
    assert.equal(await reasonOf(verifier.verify(both, { delegation: "refused" })), "DELEGATION");
    assert.equal(await reasonOf(verifier.verify(both)), "CERTIFICATE_MISMATCH");
    // Claim rules come first: an expired token with a bad act is EXPIRED.
    const expired = await sign(key, claims({ act: "x", exp: Math.floor(Date.now() / 1000) - 3600 }));
    assert.equal(await reasonOf(verifier.verify(expired)), "EXPIRED");
  });
});
