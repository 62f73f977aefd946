/**
 * Hand-written strict JWK parsing and compact JWS verification on node:crypto, because the
 * jose library is lenient where tokend's contract is not (padding, whitespace and
 * non-canonical bits in base64url, duplicate JSON members, a BOM, small RSA keys that
 * throw TypeError). The rules are those of docs/verifier-contract.md and of the reference
 * verifier (clients/python tokend_client/jose/), RFC 8725 throughout:
 *
 * - compact serialization only, three segments of canonical unpadded base64url;
 * - headers are strict JSON objects (see json.ts), UTF-8 without BOM;
 * - the key is chosen by `kid` from the configured {@link JwkSet} only; `jku`, `x5u`,
 *   `jwk`, `x5c`, any `crit` and `b64` other than true make the token MALFORMED;
 * - the algorithm is bound to the key: header `alg` must equal the key's `alg` and be
 *   allowed; `none`, HMAC and unknown algorithms are DISALLOWED_ALGORITHM;
 * - ECDSA signatures are exactly R || S with 0 < r, s < n, RSA signatures exactly the
 *   modulus length, EdDSA signatures exactly 64 or 114 bytes; PSS salt = hash length.
 *
 * A bad token raises {@link InvalidTokenError}; a bad key is dropped from its set (never
 * failing the others), and a bad set as a whole throws TypeError (configuration error).
 */
import { createPublicKey, verify as cryptoVerify, constants, type KeyObject } from "node:crypto";
import { InvalidTokenError, Reason } from "./errors.js";
import { strictJsonParse } from "./json.js";

/** Anything bigger is refused before parsing; the Verifier applies a tighter limit. */
export const MAX_COMPACT_BYTES = 64 * 1024;
/** A JWK Set may come over the network: bound it too. */
export const MAX_JWKS_BYTES = 1024 * 1024;

// ---------------------------------------------------------------------------
// base64url (RFC 7515 §2, RFC 4648 §5)
// ---------------------------------------------------------------------------

const B64URL = /^[A-Za-z0-9_-]*$/;
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/**
 * Decodes canonical unpadded base64url; throws TypeError on anything else: `=` padding,
 * `+` `/`, whitespace or any other character, a length no encoder makes (4k + 1), and
 * unused trailing bits that are not zero (RFC 4648 §3.5), so each byte string has exactly
 * one accepted encoding. (Buffer.from(s, "base64url") ignores all of these.)
 */
export function b64urlDecode(text: string): Buffer {
  if (!B64URL.test(text)) throw new TypeError("not unpadded base64url");
  const remainder = text.length & 3;
  if (remainder === 1) throw new TypeError("impossible base64url length");
  if (remainder !== 0) {
    const last = ALPHABET.indexOf(text[text.length - 1]!);
    if ((last & (remainder === 2 ? 0x0f : 0x03)) !== 0) {
      throw new TypeError("non-canonical base64url (unused bits set)");
    }
  }
  return Buffer.from(text, "base64url");
}

/** Encodes bytes as unpadded base64url. */
export function b64urlEncode(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64url");
}

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Parses UTF-8 `bytes` as strict JSON; throws TypeError (invalid UTF-8) or StrictJsonError.
 * ignoreBOM keeps a leading BOM in the text, where the parser refuses it (RFC 8259 §8.1).
 */
export function strictJsonFromBytes(bytes: Uint8Array): unknown {
  return strictJsonParse(UTF8.decode(bytes));
}

// ---------------------------------------------------------------------------
// Algorithms, curves and key policy (RFC 7518 §3, RFC 8037)
// ---------------------------------------------------------------------------

interface Curve {
  alg: string;
  size: number; // bytes per coordinate and per signature half
  p: bigint; // field prime: coordinates must be below it
  n: Buffer; // group order, big-endian over `size` bytes: r and s must be below it
  hash: string;
}

function order(hex: string, size: number): Buffer {
  return Buffer.from(hex.padStart(size * 2, "0"), "hex");
}

const CURVES: Readonly<Record<string, Curve>> = {
  "P-256": {
    alg: "ES256", size: 32, hash: "sha256",
    p: 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn,
    n: order("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", 32),
  },
  "P-384": {
    alg: "ES384", size: 48, hash: "sha384",
    p: BigInt("0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe"
      + "ffffffff0000000000000000ffffffff"),
    n: order("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
      + "581a0db248b0a77aecec196accc52973", 48),
  },
  "P-521": {
    alg: "ES512", size: 66, hash: "sha512",
    p: (1n << 521n) - 1n,
    n: order("01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
      + "fa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409", 66),
  },
};
const CURVE_BY_ALG = new Map(Object.entries(CURVES).map(([name, curve]) => [curve.alg, { name, ...curve }]));

// RFC 7518 §3.3 (RSASSA-PKCS1-v1_5) and §3.5 (RSASSA-PSS): alg -> hash, PSS salt length.
const RSA_ALGS: Readonly<Record<string, { hash: string; pssSalt?: number }>> = {
  RS256: { hash: "sha256" }, RS384: { hash: "sha384" }, RS512: { hash: "sha512" },
  PS256: { hash: "sha256", pssSalt: 32 }, PS384: { hash: "sha384", pssSalt: 48 },
  PS512: { hash: "sha512", pssSalt: 64 },
};

// RFC 8037 §2: OKP curve -> public key bytes, signature bytes.
const OKP_CURVES: Readonly<Record<string, { keyBytes: number; signatureBytes: number }>> = {
  Ed25519: { keyBytes: 32, signatureBytes: 64 },
  Ed448: { keyBytes: 57, signatureBytes: 114 },
};

/** Every algorithm the signature layer implements (tokend signs with four of them). */
export const JWS_ALGORITHMS: ReadonlySet<string> = new Set([...CURVE_BY_ALG.keys(), ...Object.keys(RSA_ALGS), "EdDSA"]);

const RSA_MIN_BITS = 2048; // RFC 7518 §3.3 / §3.5: 2048 bits or larger MUST be used
const RSA_MAX_BITS = 8192; // verification cost grows with the modulus; bound it
const RSA_MAX_EXPONENT_BITS = 64;

// ROCA (CVE-2017-15361): moduli from the flawed Infineon generator are, modulo each of
// these primes, powers of 65537; a random modulus passes all 38 tests with p ~ 2^-154.
const ROCA_PRIMES = [
  3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79,
  83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
];
let rocaResidues: [bigint, Set<number>][] | undefined;

function hasRocaFingerprint(modulus: bigint): boolean {
  rocaResidues ??= ROCA_PRIMES.map((p) => {
    const powers = new Set<number>();
    for (let k = 0, value = 1; k < p; k += 1, value = (value * (65537 % p)) % p) powers.add(value);
    return [BigInt(p), powers];
  });
  return rocaResidues.every(([p, powers]) => powers.has(Number(modulus % p)));
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

type SignatureCheck = (signingInput: Buffer, signature: Buffer) => boolean;

const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "k", "oth"];

/** One verification key: its `kid`, the single `alg` it is bound to, its check. */
export interface PublicKey {
  readonly kid: string | undefined;
  readonly alg: string;
  readonly key: KeyObject;
  /** True when `signature` is valid for `signingInput`; never throws. */
  verify(signingInput: Buffer, signature: Buffer): boolean;
}

type Jwk = Record<string, unknown>;

/** Builds a key from one public JWK (RFC 7517 §4); throws TypeError when it is unusable. */
export function publicKeyFromJwk(jwk: Jwk): PublicKey {
  if (typeof jwk !== "object" || jwk === null || Array.isArray(jwk)) throw new TypeError("JWK must be a JSON object");
  if (PRIVATE_MEMBERS.some((name) => Object.hasOwn(jwk, name))) throw new TypeError("JWK carries private key members");
  checkKeyUsage(jwk);
  const kid = jwk["kid"];
  if (kid !== undefined && (typeof kid !== "string" || kid === "")) throw new TypeError("kid must be a non-empty string");
  const alg = jwk["alg"];
  if (alg !== undefined && typeof alg !== "string") throw new TypeError("JWK alg must be a string"); // RFC 7517 §4.4
  const kty = jwk["kty"];
  let made: { key: KeyObject; check: (alg: string) => SignatureCheck; impliedAlg: string | undefined };
  if (kty === "EC") made = ecKey(jwk);
  else if (kty === "RSA") made = rsaKey(jwk);
  else if (kty === "OKP") made = okpKey(jwk);
  else if (kty === "oct") throw new TypeError("symmetric (oct) keys are never accepted"); // RFC 8725 §3.1
  else throw new TypeError("unsupported kty");
  const boundAlg = alg ?? made.impliedAlg;
  // RS* and PS* share one key type: without "alg" the token's header would choose.
  if (boundAlg === undefined) throw new TypeError("RSA JWK needs alg (RS256/384/512 or PS256/384/512)");
  const check = made.check(boundAlg);
  return Object.freeze({ kid, alg: boundAlg, key: made.key, verify: check });
}

function checkKeyUsage(jwk: Jwk): void {
  const use = jwk["use"];
  if (use !== undefined && use !== "sig") throw new TypeError("JWK use is not sig"); // RFC 7517 §4.2
  const ops = jwk["key_ops"];
  if (ops === undefined) return;
  // RFC 7517 §4.3: an array of unique strings; we need "verify" among them.
  if (!Array.isArray(ops) || !ops.every((op) => typeof op === "string")) {
    throw new TypeError("JWK key_ops must be an array of strings");
  }
  if (new Set(ops).size !== ops.length || !ops.includes("verify")) throw new TypeError("JWK key_ops does not allow verify");
}

function memberBytes(jwk: Jwk, name: string): Buffer {
  const value = jwk[name];
  if (typeof value !== "string") throw new TypeError(`JWK member ${name} must be a base64url string`);
  return b64urlDecode(value);
}

function uintMember(jwk: Jwk, name: string): Buffer {
  const raw = memberBytes(jwk, name);
  // RFC 7518 §2 Base64urlUInt: the minimum number of octets, so no leading zero.
  if (raw.length === 0 || raw[0] === 0) throw new TypeError(`JWK member ${name} is not a minimal unsigned integer`);
  return raw;
}

function toBigInt(bytes: Buffer): bigint {
  return bytes.length === 0 ? 0n : BigInt(`0x${bytes.toString("hex")}`);
}

function ecKey(jwk: Jwk) {
  const crv = jwk["crv"];
  const curve = typeof crv === "string" && Object.hasOwn(CURVES, crv) ? CURVES[crv] : undefined;
  if (curve === undefined) throw new TypeError("unsupported EC crv");
  const x = memberBytes(jwk, "x");
  const y = memberBytes(jwk, "y");
  // RFC 7518 §6.2.1.2/§6.2.1.3: x and y are exactly the curve's coordinate size.
  if (x.length !== curve.size || y.length !== curve.size) throw new TypeError("EC coordinates have the wrong length");
  if (toBigInt(x) >= curve.p || toBigInt(y) >= curve.p) throw new TypeError("EC coordinates are not reduced");
  // OpenSSL refuses points that are not on the curve (invalid-curve attacks).
  const key = importKey({ kty: "EC", crv, x: jwk["x"], y: jwk["y"] });
  const check = (alg: string): SignatureCheck => {
    if (alg !== curve.alg) throw new TypeError(`${alg} cannot use a ${String(crv)} key`); // RFC 7518 §3.4
    return ecdsaCheck(key, curve);
  };
  return { key, check, impliedAlg: curve.alg };
}

function rsaKey(jwk: Jwk) {
  const n = uintMember(jwk, "n");
  const e = uintMember(jwk, "e");
  const bits = n.length * 8 - Math.clz32(n[0]!) + 24;
  if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) throw new TypeError(`RSA modulus must be ${RSA_MIN_BITS}-${RSA_MAX_BITS} bits`);
  const exponent = toBigInt(e);
  // e = 1 makes every "signature" equal its message; even e is not RSA.
  if (exponent < 3n || exponent % 2n === 0n || exponent.toString(2).length > RSA_MAX_EXPONENT_BITS) {
    throw new TypeError("RSA public exponent must be odd, at least 3 and at most 64 bits");
  }
  if (hasRocaFingerprint(toBigInt(n))) throw new TypeError("RSA modulus has the ROCA fingerprint (CVE-2017-15361)");
  const key = importKey({ kty: "RSA", n: jwk["n"], e: jwk["e"] });
  const check = (alg: string): SignatureCheck => {
    const spec = Object.hasOwn(RSA_ALGS, alg) ? RSA_ALGS[alg] : undefined;
    if (spec === undefined) throw new TypeError(`${alg} cannot use an RSA key`);
    return rsaCheck(key, n.length, spec);
  };
  return { key, check, impliedAlg: undefined };
}

function okpKey(jwk: Jwk) {
  const crv = jwk["crv"];
  const spec = typeof crv === "string" && Object.hasOwn(OKP_CURVES, crv) ? OKP_CURVES[crv] : undefined;
  if (spec === undefined) throw new TypeError("unsupported OKP crv"); // RFC 8037 §2: X25519/X448 cannot sign
  const x = memberBytes(jwk, "x");
  if (x.length !== spec.keyBytes) throw new TypeError("OKP x has the wrong length");
  checkEdwardsPoint(crv as string, x);
  const key = importKey({ kty: "OKP", crv, x: jwk["x"] });
  const check = (alg: string): SignatureCheck => {
    if (alg !== "EdDSA") throw new TypeError(`${alg} cannot use an OKP key`); // RFC 8037 §3.1
    return eddsaCheck(key, spec.signatureBytes);
  };
  return { key, check, impliedAlg: "EdDSA" };
}

const ED25519_P = (1n << 255n) - 19n;
const ED448_P = (1n << 448n) - (1n << 224n) - 1n;
// y of the two order-8 points of edwards25519 (-y gives the other two); the other points
// of small order have y in {0, 1, p - 1}.
const ED25519_ORDER_8_Y = 2707385501144840649318225287225658788936804267575313519463743609750303402022n;
const SMALL_ORDER_Y: Readonly<Record<string, ReadonlySet<bigint>>> = {
  Ed25519: new Set([0n, 1n, ED25519_P - 1n, ED25519_ORDER_8_Y, ED25519_P - ED25519_ORDER_8_Y]),
  Ed448: new Set([0n, 1n, ED448_P - 1n]), // cofactor 4: orders 1, 2 and 4
};

/**
 * Refuses non-canonical encodings and points of small order: with such a public key (the
 * identity, say) forged signatures verify for chosen messages, which OpenSSL accepts.
 */
function checkEdwardsPoint(crv: string, x: Buffer): void {
  let p: bigint;
  let y: bigint;
  if (crv === "Ed25519") {
    p = ED25519_P;
    y = toBigInt(Buffer.from(x).reverse()) & ((1n << 255n) - 1n); // little-endian, sign bit cleared
  } else {
    // RFC 8032 §5.2.3: the last octet holds only the sign of x, in its top bit.
    if ((x[x.length - 1]! & 0x7f) !== 0) throw new TypeError("OKP x is not a canonical Ed448 point encoding");
    p = ED448_P;
    y = toBigInt(Buffer.from(x.subarray(0, -1)).reverse());
  }
  // RFC 8032 §5.1.3 / §5.2.3 step 1: y must be below p.
  if (y >= p) throw new TypeError("OKP x is not a canonical point encoding");
  if (SMALL_ORDER_Y[crv]!.has(y)) throw new TypeError("OKP x is a point of small order");
}

function importKey(jwk: Jwk): KeyObject {
  try {
    return createPublicKey({ key: jwk as never, format: "jwk" });
  } catch {
    throw new TypeError("the JWK is not a valid public key");
  }
}

function ecdsaCheck(key: KeyObject, curve: Curve): SignatureCheck {
  const zero = Buffer.alloc(curve.size);
  return (signingInput, signature) => {
    // RFC 7518 §3.4: the JWS signature is R || S, each exactly the curve size.
    if (signature.length !== 2 * curve.size) return false;
    const r = signature.subarray(0, curve.size);
    const s = signature.subarray(curve.size);
    // FIPS 186-5 §6.4.2: r and s in [1, n-1]; equal-length big-endian bytes compare as integers.
    if (!(zero.compare(r) < 0 && r.compare(curve.n) < 0 && zero.compare(s) < 0 && s.compare(curve.n) < 0)) return false;
    return safeVerify(curve.hash, signingInput, { key, dsaEncoding: "ieee-p1363" }, signature);
  };
}

function rsaCheck(key: KeyObject, modulusBytes: number, spec: { hash: string; pssSalt?: number }): SignatureCheck {
  const options = spec.pssSalt === undefined
    ? { key, padding: constants.RSA_PKCS1_PADDING }
    // RFC 7518 §3.5: MGF1 with the same hash, salt length equal to the hash size.
    : { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: spec.pssSalt };
  return (signingInput, signature) =>
    // RFC 8017 §8.1.2 / §8.2.2 step 1: the signature is exactly k octets long.
    signature.length === modulusBytes && safeVerify(spec.hash, signingInput, options, signature);
}

function eddsaCheck(key: KeyObject, signatureBytes: number): SignatureCheck {
  // RFC 8032 §5.1.7 / §5.2.7: the signature has a fixed length.
  return (signingInput, signature) =>
    signature.length === signatureBytes && safeVerify(null, signingInput, key, signature);
}

function safeVerify(hash: string | null, data: Buffer, key: Parameters<typeof cryptoVerify>[2], signature: Buffer): boolean {
  try {
    return cryptoVerify(hash, data, key, signature);
  } catch {
    return false; // OpenSSL errors on malformed signatures are bad signatures too
  }
}

// ---------------------------------------------------------------------------
// Key sets
// ---------------------------------------------------------------------------

/** A JWK Set as JSON text or as its parsed object. */
export type JwksInput = string | { keys: unknown };

/**
 * An immutable set of verification keys, looked up by `kid`. From a JWK Set document
 * (RFC 7517 §5), {@link JwkSet.from}:
 * - refuses the whole set (TypeError) when it is not `{"keys": [objects...]}`, when an
 *   entry carries private members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `k`, `oth`; so every
 *   `oct` key), or when two entries share a `kid`;
 * - drops each other key that cannot verify (RFC 7517 §5 says to ignore them): unknown
 *   kty/crv, `use` not `sig`, `key_ops` without `verify`, RSA without `alg`, below 2048
 *   bits, bad exponent or ROCA, points off the curve, `alg` that does not fit the key.
 *   {@link JwkSet.rejected} lists them.
 */
export class JwkSet {
  readonly #byKid = new Map<string, PublicKey>();

  private constructor(
    /** The usable keys, in document order. */
    readonly keys: readonly PublicKey[],
    /** `[kid, reason]` for each entry that was dropped. */
    readonly rejected: readonly (readonly [string | undefined, string])[],
  ) {
    for (const key of keys) {
      if (key.kid !== undefined) this.#byKid.set(key.kid, key);
    }
  }

  /** Parses a JWK Set given as JSON text or as an object (see the class policy). */
  static from(input: JwksInput | JwkSet): JwkSet {
    if (input instanceof JwkSet) return input;
    let document: unknown = input;
    if (typeof input === "string") {
      if (input.length > MAX_JWKS_BYTES) throw new TypeError("JWK Set document is too large");
      try {
        document = strictJsonParse(input);
      } catch {
        throw new TypeError("JWK Set is not strict JSON");
      }
    }
    const entries = jwksEntries(document);
    const keys: PublicKey[] = [];
    const rejected: [string | undefined, string][] = [];
    for (const entry of entries) {
      try {
        keys.push(publicKeyFromJwk(entry));
      } catch (error) {
        const kid = typeof entry["kid"] === "string" ? entry["kid"] : undefined;
        rejected.push([kid, error instanceof Error ? error.message : "unusable key"]);
      }
    }
    return new JwkSet(keys, rejected);
  }

  /** The key named `kid`, or undefined. */
  get(kid: unknown): PublicKey | undefined {
    return typeof kid === "string" ? this.#byKid.get(kid) : undefined;
  }

  /** The kids of the usable keys. */
  get kids(): string[] {
    return [...this.#byKid.keys()];
  }
}

function jwksEntries(document: unknown): Jwk[] {
  if (typeof document !== "object" || document === null || Array.isArray(document)) {
    throw new TypeError("JWK Set must be a JSON object");
  }
  const entries = (document as Jwk)["keys"];
  // RFC 7517 §5: a JWK Set is an object whose "keys" member is an array of JWKs.
  if (!Array.isArray(entries) || !entries.every((e) => typeof e === "object" && e !== null && !Array.isArray(e))) {
    throw new TypeError('JWK Set needs a "keys" array of objects');
  }
  const jwks = entries as Jwk[];
  if (jwks.some((entry) => PRIVATE_MEMBERS.some((name) => Object.hasOwn(entry, name)))) {
    throw new TypeError("JWK Set contains private or symmetric key material");
  }
  const kids = jwks.map((entry) => entry["kid"]).filter((kid) => typeof kid === "string");
  if (new Set(kids).size !== kids.length) throw new TypeError("duplicate kid in JWK Set"); // RFC 7517 §4.5
  return jwks;
}

// ---------------------------------------------------------------------------
// Compact JWS verification (RFC 7515 §5.2, RFC 8725)
// ---------------------------------------------------------------------------

// RFC 8725 §3.10 / RFC 7515 §4.1.2-4.1.6: keys come from our JWKS, never the token.
const KEY_SOURCE_HEADERS = ["jku", "x5u", "jwk", "x5c"];
const ASCII_ONLY = /^[\x00-\x7f]*$/;

/** A JWS whose signature verified: its header, payload bytes and the key used. */
export interface VerifiedJws {
  header: Readonly<Record<string, unknown>>;
  payload: Buffer;
  key: PublicKey;
}

/**
 * The signature-only layer: verifies a compact JWS against `jwks` and `algorithms` and
 * returns its payload bytes; throws {@link InvalidTokenError} for a bad token. An unusable
 * `jwks` throws TypeError (a configuration error). No claim is looked at.
 */
export function verifyCompact(token: string | Uint8Array, jwks: JwksInput | JwkSet, algorithms: Iterable<string>): Buffer {
  return verifyJws(token, JwkSet.from(jwks), new Set(algorithms)).payload;
}

/** Like {@link verifyCompact}, with the header and the key as well. */
export function verifyJws(token: string | Uint8Array, keys: JwkSet, algorithms: ReadonlySet<string>): VerifiedJws {
  return verifyParsed(parseCompact(token), keys, algorithms);
}

/** A compact JWS split into its segments, with its header decoded; nothing verified yet. */
export interface ParsedJws {
  readonly text: string;
  readonly first: number;
  readonly last: number;
  readonly header: Readonly<Record<string, unknown>>;
}

/** RFC 7515 §5.2 steps 1-3: the three segments and the header; throws InvalidTokenError. */
export function parseCompact(token: string | Uint8Array, knownHeaders?: HeaderCache): ParsedJws {
  const text = tokenText(token);
  const first = text.indexOf(".");
  const last = text.lastIndexOf(".");
  // RFC 7515 §7.1: exactly three segments; JSON serialization and JWE are refused.
  if (first === -1 || first === last || text.indexOf(".", first + 1) !== last) {
    throw new InvalidTokenError(Reason.MALFORMED, "token is not a three-segment compact JWS");
  }
  const segment = text.slice(0, first);
  // The same header text always decodes to the same header: decode it once.
  const header = knownHeaders?.get(segment) ?? decodeHeader(segment);
  return { text, first, last, header };
}

/**
 * Decoded headers by their segment text, for headers of tokens that verified: a signer
 * uses one header per key version, so a few entries spare nearly every token the header
 * decoding. Bounded, and filled only by validly signed tokens.
 */
export class HeaderCache {
  static readonly MAX_ENTRIES = 32;
  readonly #headers = new Map<string, Readonly<Record<string, unknown>>>();

  get(segment: string): Readonly<Record<string, unknown>> | undefined {
    return this.#headers.get(segment);
  }

  /** Remembers the header of `parsed`, a token that passed every check. */
  remember(parsed: ParsedJws): void {
    if (this.#headers.size < HeaderCache.MAX_ENTRIES) this.#headers.set(parsed.text.slice(0, parsed.first), parsed.header);
  }
}

/** The rest of RFC 7515 §5.2: key, algorithm, payload and signature; throws InvalidTokenError. */
export function verifyParsed(parsed: ParsedJws, keys: JwkSet, algorithms: ReadonlySet<string>): VerifiedJws {
  const { text, first, last, header } = parsed;
  const key = selectKey(header, keys, algorithms);
  const payload = decodeSegment(text.slice(first + 1, last), "payload");
  const signature = decodeSegment(text.slice(last + 1), "signature");
  // RFC 7515 §5.2 step 8: the signing input is the ASCII text "header.payload".
  if (!key.verify(Buffer.from(text.slice(0, last), "latin1"), signature)) {
    throw new InvalidTokenError(Reason.BAD_SIGNATURE);
  }
  return { header, payload, key };
}

function tokenText(token: unknown): string {
  if (typeof token === "string") {
    if (token.length > MAX_COMPACT_BYTES) throw new InvalidTokenError(Reason.TOO_LARGE);
    if (!ASCII_ONLY.test(token)) throw new InvalidTokenError(Reason.MALFORMED, "token contains non-ASCII characters");
    return token;
  }
  if (token instanceof Uint8Array) {
    if (token.length > MAX_COMPACT_BYTES) throw new InvalidTokenError(Reason.TOO_LARGE);
    if (token.some((byte) => byte > 0x7f)) throw new InvalidTokenError(Reason.MALFORMED, "token contains non-ASCII bytes");
    return Buffer.from(token).toString("latin1");
  }
  throw new InvalidTokenError(Reason.MALFORMED, "token must be a string");
}

function decodeSegment(segment: string, name: string): Buffer {
  try {
    return b64urlDecode(segment);
  } catch {
    throw new InvalidTokenError(Reason.MALFORMED, `${name} is not canonical base64url`);
  }
}

function decodeHeader(segment: string): Readonly<Record<string, unknown>> {
  const raw = decodeSegment(segment, "header");
  let header: unknown;
  try {
    header = strictJsonFromBytes(raw);
  } catch {
    throw new InvalidTokenError(Reason.MALFORMED, "header is not strict JSON");
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new InvalidTokenError(Reason.MALFORMED, "header is not a JSON object"); // RFC 7515 §5.2
  }
  return Object.freeze(header as Record<string, unknown>);
}

function selectKey(header: Readonly<Record<string, unknown>>, keys: JwkSet, algorithms: ReadonlySet<string>): PublicKey {
  const alg = header["alg"];
  if (typeof alg !== "string") throw new InvalidTokenError(Reason.MALFORMED, "header alg is missing or not a string");
  // RFC 8725 §3.1/§3.2: never "none", never HMAC, nothing outside what we implement.
  if (!JWS_ALGORITHMS.has(alg)) throw new InvalidTokenError(Reason.DISALLOWED_ALGORITHM);
  checkHeaderMembers(header);
  const key = keys.get(header["kid"]);
  if (key === undefined) throw new InvalidTokenError(Reason.UNKNOWN_KEY);
  // RFC 8725 §3.1: the key fixes the algorithm; the header may only agree with it.
  if (alg !== key.alg || !algorithms.has(alg)) throw new InvalidTokenError(Reason.DISALLOWED_ALGORITHM);
  return key;
}

function checkHeaderMembers(header: Readonly<Record<string, unknown>>): void {
  const embedded = KEY_SOURCE_HEADERS.filter((name) => Object.hasOwn(header, name));
  if (embedded.length > 0) throw new InvalidTokenError(Reason.MALFORMED, `header ${embedded.join(", ")} not accepted`);
  if (Object.hasOwn(header, "crit")) {
    const crit = header["crit"];
    // RFC 7515 §4.1.11: a non-empty array of names; we understand no extension.
    if (!Array.isArray(crit) || crit.length === 0 || !crit.every((c) => typeof c === "string")) {
      throw new InvalidTokenError(Reason.MALFORMED, "header crit is not a non-empty array");
    }
    throw new InvalidTokenError(Reason.MALFORMED, "header crit names unsupported extensions");
  }
  // RFC 7797 §3: unencoded payloads are not supported.
  if (Object.hasOwn(header, "b64") && header["b64"] !== true) {
    throw new InvalidTokenError(Reason.MALFORMED, "unencoded payload (b64) not accepted");
  }
}
