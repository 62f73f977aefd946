/**
 * Certificate-bound access tokens (RFC 8705 §3): the `cnf` rule (docs/verifier-contract.md
 * §9, rules B1-B5) and where a resource server finds the presenter's certificate. The Envoy
 * `x-forwarded-client-cert` parser is hand-written: no maintained npm package parses that
 * header, and its grammar (quoted strings in `;`/`,` lists) is small. It follows
 * clients/python/tokend_client/binding.py rule for rule.
 *
 * A bound token carries `"cnf": {"x5t#S256": base64url(SHA-256(DER certificate))}`
 * (RFC 8705 §3.1) and is valid only when presented over a mutual-TLS connection whose
 * client certificate has that thumbprint. Where the certificate comes from:
 *
 * - a Node TLS/HTTPS/HTTP2 server with `requestCert: true`: {@link presenterFromTlsSocket}
 *   (`socket.getPeerX509Certificate()`, or `getPeerCertificate(true).raw`);
 * - behind an Envoy sidecar that terminates mutual TLS: {@link presenterFromXfcc} on the
 *   `x-forwarded-client-cert` header. Trust that header ONLY on a connection from your own
 *   sidecar (loopback or a socket only it can reach) set to
 *   `forward_client_cert_details: SANITIZE_SET`; anyone who can reach the application
 *   directly could otherwise write any thumbprint into it.
 */
import { createHash, timingSafeEqual, X509Certificate } from "node:crypto";
import type { TLSSocket } from "node:tls";
import { InvalidTokenError, Reason } from "./errors.js";

/** RFC 8705 §3.1: the confirmation method's member name. */
export const X5T_S256 = "x5t#S256";
/** A presented certificate larger than this (DER bytes) is an argument error. */
export const MAX_CERTIFICATE_DER_BYTES = 16 * 1024;
/** Longest `x-forwarded-client-cert` accepted: an URL-encoded PEM of 16 KiB fits. */
export const MAX_XFCC_CHARS = 64 * 1024;

// SHA-256 is 32 bytes: 43 base64url characters, the last carrying 2 bits that must be
// zero (a canonical encoding has one spelling per value).
const THUMBPRINT = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;
const HEX_SHA256 = /^[0-9A-Fa-f]{64}$/;

/** A presented certificate: its DER bytes or a parsed X509Certificate. */
export type Certificate = Uint8Array | X509Certificate;

/** Whether `value` is a canonical `x5t#S256` (43 base64url characters). */
export function isThumbprint(value: unknown): value is string {
  return typeof value === "string" && THUMBPRINT.test(value);
}

/** `value` if it is an `x5t#S256` thumbprint; TypeError/RangeError otherwise. */
export function checkThumbprint(value: unknown, name = "presenterX5tS256"): string {
  if (typeof value !== "string") throw new TypeError(`${name} must be a string`);
  if (!THUMBPRINT.test(value)) {
    throw new RangeError(`${name} must be a SHA-256 thumbprint: 43 base64url characters without padding (RFC 8705 §3.1)`);
  }
  return value;
}

/**
 * `x5t#S256` of a certificate: base64url(SHA-256(DER)) (RFC 8705 §3.1). DER bytes must be
 * 1-16 KiB and parse as an X.509 certificate (RangeError otherwise).
 */
export function certificateThumbprint(certificate: Certificate): string {
  let der: Uint8Array;
  if (certificate instanceof X509Certificate) {
    der = certificate.raw;
  } else if (certificate instanceof Uint8Array) {
    der = certificate;
    if (der.length === 0 || der.length > MAX_CERTIFICATE_DER_BYTES) {
      throw new RangeError(`a certificate must be 1-${MAX_CERTIFICATE_DER_BYTES} bytes of DER`);
    }
    // X509Certificate also parses PEM and ignores bytes after the DER, but a thumbprint
    // is of exactly one DER certificate: its re-encoding must be the input, byte for byte.
    let parsed = der[0] === 0x30;
    try {
      if (parsed) parsed = Buffer.from(der.buffer, der.byteOffset, der.byteLength).equals(new X509Certificate(der).raw);
    } catch {
      parsed = false;
    }
    if (!parsed) throw new RangeError("the certificate is not a DER-encoded X.509 certificate (PEM? pass new X509Certificate(pem))");
  } else {
    throw new TypeError("a certificate is DER bytes (Buffer/Uint8Array) or an X509Certificate");
  }
  return createHash("sha256").update(der).digest("base64url");
}

/** The one presenter a verify call names: its thumbprint, or undefined (none presented). */
export function presenterThumbprint(certificate: Certificate | undefined, x5tS256: string | undefined): string | undefined {
  if (certificate !== undefined && x5tS256 !== undefined) {
    throw new TypeError("give presenterCertificate or presenterX5tS256, not both");
  }
  if (certificate !== undefined) return certificateThumbprint(certificate);
  return x5tS256 === undefined ? undefined : checkThumbprint(x5tS256);
}

/**
 * The `cnf` rule (contract §9, B1-B4): throws InvalidTokenError unless the token is
 * unbound, or bound to the presenter (`presenter`: its `x5t#S256`, undefined when no
 * certificate was presented).
 */
export function checkConfirmation(claims: Readonly<Record<string, unknown>>, presenter: string | undefined): void {
  if (!Object.hasOwn(claims, "cnf")) return; // B4: not bound, the presenter does not matter
  const cnf = claims["cnf"];
  // B1, RFC 7800 §3.1: cnf is a JSON object of confirmation members.
  if (typeof cnf !== "object" || cnf === null || Array.isArray(cnf)) {
    throw new InvalidTokenError(Reason.MALFORMED, "claim cnf is not a JSON object");
  }
  const members = cnf as Record<string, unknown>;
  const bound = Object.hasOwn(members, X5T_S256);
  const thumbprint = bound ? members[X5T_S256] : undefined;
  if (bound && !isThumbprint(thumbprint)) {
    throw new InvalidTokenError(Reason.MALFORMED, "claim cnf.x5t#S256 is not a SHA-256 thumbprint");
  }
  // B2, RFC 7800 §3: a method this verifier cannot check (jkt, jwk, an empty cnf...) is
  // refused, never treated as an unbound token.
  if (!bound || Object.keys(members).length !== 1) {
    throw new InvalidTokenError(Reason.CERTIFICATE_MISMATCH, "claim cnf holds a confirmation method this verifier cannot check");
  }
  // B3, RFC 8705 §3: a bound token is never a bearer token.
  if (presenter === undefined) {
    throw new InvalidTokenError(Reason.CERTIFICATE_MISMATCH, "token is bound to a certificate and none was presented");
  }
  // Both are 43 ASCII characters here; constant time so a timing probe learns nothing.
  if (!timingSafeEqual(Buffer.from(thumbprint as string, "latin1"), Buffer.from(presenter, "latin1"))) {
    throw new InvalidTokenError(Reason.CERTIFICATE_MISMATCH, "token is bound to another certificate than the presenter's");
  }
}

/**
 * The thumbprint of the client certificate on a server-side TLS connection that asked for
 * one (`requestCert: true`), or undefined if the client sent none. For an HTTP/2 request:
 * `presenterFromTlsSocket(request.socket as TLSSocket)`; for https:
 * `request.socket`. The TLS handshake proved the client holds the certificate's key.
 */
export function presenterFromTlsSocket(socket: TLSSocket): string | undefined {
  if (typeof socket?.getPeerX509Certificate === "function") {
    const certificate = socket.getPeerX509Certificate();
    return certificate === undefined ? undefined : certificateThumbprint(certificate);
  }
  const peer = socket.getPeerCertificate(true);
  // An empty object (no `raw`) means the client presented no certificate.
  return peer?.raw === undefined ? undefined : certificateThumbprint(peer.raw);
}

/**
 * The thumbprint of the client certificate an Envoy sidecar reports in
 * `x-forwarded-client-cert`; undefined if the header names none; RangeError if malformed.
 *
 * Only the last element is read: each proxy appends its own, so the last is the one your
 * sidecar wrote (with SANITIZE_SET, the only one). `Hash=` (hex SHA-256 of the DER) is
 * converted to base64url; `Cert=` (URL-encoded PEM) is hashed; when both are present
 * they must agree. Trust the header only from your own sidecar (module documentation).
 */
export function presenterFromXfcc(header: string | readonly string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  // Node joins repeated headers into an array for this name; they form one list.
  const text = typeof header === "string" ? header : Array.isArray(header) ? header.join(",") : undefined;
  if (text === undefined) throw new TypeError("the x-forwarded-client-cert header is a string");
  if (text.length > MAX_XFCC_CHARS) throw new RangeError(`x-forwarded-client-cert is longer than ${MAX_XFCC_CHARS} characters`);
  const elements = splitXfcc(text);
  const pairs = elements.at(-1);
  if (pairs === undefined) return undefined;
  const fromHash = hashThumbprint(pairs.get("hash"));
  const fromCert = certThumbprint(pairs.get("cert"));
  if (fromHash !== undefined && fromCert !== undefined && fromHash !== fromCert) {
    throw new RangeError("x-forwarded-client-cert: Hash and Cert name different certificates");
  }
  return fromCert ?? fromHash;
}

function hashThumbprint(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (!HEX_SHA256.test(value)) throw new RangeError("x-forwarded-client-cert: Hash is not a hex SHA-256 digest");
  return Buffer.from(value, "hex").toString("base64url");
}

function certThumbprint(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  let certificate: X509Certificate;
  try {
    const pem = decodeURIComponent(value);
    if (!pem.startsWith("-----BEGIN CERTIFICATE-----")) throw new RangeError("not PEM");
    certificate = new X509Certificate(pem);
  } catch {
    throw new RangeError("x-forwarded-client-cert: Cert is not a URL-encoded PEM certificate");
  }
  return certificateThumbprint(certificate);
}

/**
 * Elements (split on `,`) of `key=value` pairs (split on `;`); values may be
 * double-quoted, with `\"` inside (Envoy's header format). Keys are caseless.
 */
function splitXfcc(header: string): Map<string, string>[] {
  const elements: Map<string, string>[] = [];
  let pairs = new Map<string, string>();
  let key = "";
  let value = "";
  let inValue = false;
  let quoted = false;
  const closePair = (): void => {
    const name = key.trim().toLowerCase();
    if (name === "" && value === "") return;
    if (name === "" || !inValue) throw new RangeError("x-forwarded-client-cert: an element is not key=value pairs");
    // DNS (one per SAN) may repeat; the certificate itself must be named once.
    if (pairs.has(name) && (name === "hash" || name === "cert")) {
      throw new RangeError(`x-forwarded-client-cert: ${name} appears twice in an element`);
    }
    if (!pairs.has(name)) pairs.set(name, value.trim());
  };
  for (let i = 0; i < header.length; i += 1) {
    const char = header[i]!;
    if (quoted) {
      if (char === "\\" && i + 1 < header.length) {
        value += header[i + 1];
        i += 1;
      } else if (char === '"') {
        quoted = false;
      } else {
        value += char;
      }
    } else if (char === '"' && inValue) {
      quoted = true;
    } else if (char === "=" && !inValue) {
      inValue = true;
    } else if (char === ";" || char === ",") {
      closePair();
      key = "";
      value = "";
      inValue = false;
      if (char === ",") {
        if (pairs.size > 0) elements.push(pairs);
        pairs = new Map();
      }
    } else if (inValue) {
      value += char;
    } else {
      key += char;
    }
  }
  if (quoted) throw new RangeError("x-forwarded-client-cert: unterminated quoted value");
  closePair();
  if (pairs.size > 0) elements.push(pairs);
  return elements;
}
