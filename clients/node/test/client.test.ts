import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { baseUrlOf, connect, connectInsecureLoopback, createChannelCredentials } from "../src/index.js";

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
