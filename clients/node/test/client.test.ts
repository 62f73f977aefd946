import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  baseUrlOf, certificateBinding, connect, connectInsecureLoopback, createChannelCredentials, ExchangeRequestSchema, exchangeToken,
  IssueRequestSchema, issueToken, type TokenServiceClient,
} from "../src/index.js";

describe("baseUrlOf", () => {
  it("turns gRPC targets into https origins", () => {
    assert.equal(baseUrlOf("127.0.0.1:50051"), "https://127.0.0.1:50051");
    assert.equal(baseUrlOf("[::1]:50051"), "https://[::1]:50051");
    assert.equal(baseUrlOf("tokend.internal:443"), "https://tokend.internal");
    assert.equal(baseUrlOf("https://tokend.internal:8443"), "https://tokend.internal:8443");
  });

  it("refuses plaintext and addresses without a port", () => {
    assert.throws(() => baseUrlOf("http://127.0.0.1:50051"), TypeError);
    assert.throws(() => baseUrlOf("tokend.internal"), TypeError);
    assert.throws(() => baseUrlOf("tokend.internal:443/path"), TypeError);
  });
});

describe("createChannelCredentials", () => {
  const dir = mkdtempSync(join(tmpdir(), "tokend-node-"));
  const pem = (name: string, body: string) => {
    const path = join(dir, name);
    writeFileSync(path, body);
    return path;
  };

  it("reads the three PEM files", () => {
    const block = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const creds = createChannelCredentials({
      caFile: pem("ca.pem", block), certFile: pem("cert.pem", block),
      keyFile: pem("key.pem", "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"),
    });
    assert.ok(creds.ca.toString().includes("BEGIN CERTIFICATE"));
    assert.ok(creds.key.toString().includes("BEGIN PRIVATE KEY"));
  });

  it("names the file that holds no PEM", () => {
    const good = pem("good.pem", "-----BEGIN CERTIFICATE-----\n");
    assert.throws(() => createChannelCredentials({ caFile: pem("empty.pem", ""), certFile: good, keyFile: good }),
      /caFile/);
  });

  it("builds a client without dialling (the connection opens on the first call)", () => {
    const block = Buffer.from("-----BEGIN CERTIFICATE-----\n");
    const client = connect("127.0.0.1:1", { ca: block, cert: block, key: block });
    assert.equal(typeof client.issue, "function");
    client.close();
  });
});

describe("connectInsecureLoopback", () => {
  it("allows loopback only", () => {
    for (const address of ["127.0.0.1:50051", "[::1]:50051", "localhost:50051"]) {
      connectInsecureLoopback(address).close();
    }
    assert.throws(() => connectInsecureLoopback("10.0.0.5:50051"), TypeError);
    assert.throws(() => connectInsecureLoopback("tokend.internal:50051"), TypeError);
    assert.throws(() => connectInsecureLoopback("127.0.0.1.evil.example:50051"), TypeError);
    assert.throws(() => connectInsecureLoopback("http://127.0.0.1:50051"), TypeError);
  });
});

describe("issueToken / exchangeToken requests", () => {
  // Captures the request a helper builds; the live behaviour is in interop/chain.test.ts.
  const capture = () => {
    const seen: { issue?: unknown; exchange?: unknown } = {};
    const client = {
      issue: async (request: unknown) => { seen.issue = request; return {}; },
      exchange: async (request: unknown) => { seen.exchange = request; return {}; },
    } as unknown as TokenServiceClient;
    return { client, seen };
  };
  const der = Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]);

  it("asks for a binding to the caller's or a named certificate (RFC 8705 §3)", () => {
    assert.deepEqual(certificateBinding(true), { certificate: { case: "callerCertificate", value: true } });
    assert.deepEqual(certificateBinding(der), { certificate: { case: "certificateDer", value: der } });
    assert.throws(() => certificateBinding("yes" as unknown as true), TypeError);
  });

  it("builds an IssueRequest that serializes (scopes, ttl, binding)", async () => {
    const { client, seen } = capture();
    await issueToken(client, { subject: "alice", audience: "orders", scopes: "a b", ttlSeconds: 90.5, bindToCertificate: true, claims: { tenant: "t1" } });
    const request = create(IssueRequestSchema, seen.issue as Parameters<typeof create<typeof IssueRequestSchema>>[1]);
    assert.deepEqual(request.scopes, ["a", "b"]);
    assert.deepEqual(request.audience, ["orders"]);
    assert.equal(request.ttl?.seconds, 90n);
    assert.equal(request.ttl?.nanos, 500_000_000);
    assert.equal(request.binding?.certificate.case, "callerCertificate");
    assert.ok(toBinary(IssueRequestSchema, request).length > 0);
    await assert.rejects(issueToken(client, { subject: "a", audience: "o", ttlSeconds: -1 }), RangeError);
  });

  it("builds an ExchangeRequest (RFC 8693 §2.1) with no binding unless asked", async () => {
    const { client, seen } = capture();
    await exchangeToken(client, { subjectToken: "t", audience: ["payments"], scopes: ["payments:charge"] });
    const plain = create(ExchangeRequestSchema, seen.exchange as Parameters<typeof create<typeof ExchangeRequestSchema>>[1]);
    assert.equal(plain.binding, undefined);
    assert.equal(plain.actorToken, "");
    await exchangeToken(client, { subjectToken: "t", audience: "payments", actorToken: "a", bindToCertificate: der });
    const bound = create(ExchangeRequestSchema, seen.exchange as Parameters<typeof create<typeof ExchangeRequestSchema>>[1]);
    assert.equal(bound.binding?.certificate.case, "certificateDer");
    assert.equal(bound.actorToken, "a");
    assert.deepEqual(bound.audience, ["payments"]);
  });
});
