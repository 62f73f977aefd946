/**
 * The typed TokenService client over gRPC (HTTP/2) with mutual TLS.
 *
 * tokend authenticates callers by their client certificate (its SPIFFE SAN becomes the
 * token's `client_id`), so there is deliberately no server-only-TLS mode, and plaintext
 * only to a development server on loopback.
 */
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { SecureClientSessionOptions } from "node:http2";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type CallOptions, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import {
  TokenService,
  type CertificateBindingSchema,
  type ExchangeRequestSchema,
  type ExchangeResponse,
  type IssueRequestSchema,
  type IssueResponse,
} from "./gen/tokend/v1/tokend_pb.js";
import { VerifyBatcher, type BatchOptions, type VerifyInit, type VerifyResult } from "./batch.js";
import { isLoopbackHostname } from "./loopback.js";
import { methodRules, withServiceConfig } from "./retries.js";

/** Paths of the PEM files for mutual TLS. */
export interface TlsFiles {
  /** CA certificate(s) that signed tokend's server certificate. */
  caFile: string;
  /** This caller's certificate chain (its identity towards tokend). */
  certFile: string;
  /** This caller's private key. */
  keyFile: string;
}

/** PEM contents for mutual TLS, as read by {@link createChannelCredentials}. */
export interface ChannelCredentials {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/**
 * Options for {@link connect}. `batchVerify`, `maxInFlight` and `maxBatch` tune how
 * overlapping `verify()` calls share VerifyMany RPCs (src/batch.ts, README "Verify calls
 * are batched").
 */
export interface ConnectOptions extends BatchOptions {
  /**
   * Deadline in ms of every unary call that sets no `timeoutMs` itself, retries included,
   * for every method alike (a positive number). By default each method's from the shared
   * service config: 5 000 ms for verify, getJwks and revoke, 10 000 ms for issue, refresh
   * and exchange (docs/clients.md, "Retries and deadlines"). Streams get no deadline.
   */
  defaultTimeoutMs?: number;
  /**
   * Name to check the server certificate against, when it differs from the host in
   * the address (for example a DNS SAN while dialling an IP address).
   */
  serverName?: string;
}

/** The generated TokenService client: `issue`, `verify`, `refresh`, `revoke`, `getJwks`. */
export type TokenServiceClient = Client<typeof TokenService>;

/**
 * A connected client plus `close()`, which ends its HTTP/2 connection. Its `verify()`
 * answers as the unary RPC does, but calls that overlap go out together as one VerifyMany.
 */
export type TokendClient = TokenServiceClient & {
  /** Closes the connection; calls still in flight or queued fail with `Code.Canceled`. */
  close(): void;
  /**
   * Verifies many tokens in VerifyMany calls of up to 256 and answers in order, each a
   * VerifyResponse or the ConnectError `verify()` would throw for it (not `verifyMany`:
   * that is the raw RPC of the generated client).
   */
  verifyAll(requests: readonly VerifyInit[], options?: CallOptions): Promise<VerifyResult[]>;
};

const PEM_BLOCK = /-----BEGIN [A-Z0-9 ]+-----/;
// "host:port" or "[v6]:port", as gRPC targets are written.
const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$/;

/**
 * Reads the CA, certificate and key PEM files for {@link connect}.
 *
 * Reads synchronously because it runs once at start-up, where failing fast with the
 * offending path is what an operator wants.
 */
export function createChannelCredentials(files: TlsFiles): ChannelCredentials {
  return {
    ca: readPem(files.caFile, "caFile"),
    cert: readPem(files.certFile, "certFile"),
    key: readPem(files.keyFile, "keyFile"),
  };
}

/**
 * Connects to tokend at `address` ("host:port", "[::1]:port" or "https://host:port")
 * with mutual TLS and returns the typed client. The connection opens lazily on the
 * first call and is re-established as needed.
 */
export function connect(
  address: string,
  credentials: ChannelCredentials | TlsFiles,
  options: ConnectOptions = {},
): TokendClient {
  const tls = "caFile" in credentials ? createChannelCredentials(credentials) : credentials;
  return openClient(baseUrlOf(address), options, {
    ca: tls.ca,
    cert: tls.cert,
    key: tls.key,
    // Node checks the server certificate against the host (IP SANs included) unless
    // told otherwise; we only ever narrow it to another expected name, never disable it.
    rejectUnauthorized: true,
    ...(options.serverName === undefined ? {} : { servername: options.serverName }),
    minVersion: "TLSv1.2",
  });
}

/**
 * Connects without TLS, for the development server of `scripts/dev` only: the address
 * must be a loopback one ("127.0.0.1:port", "[::1]:port" or "localhost:port"), because
 * in plaintext the tokens, and the caller's identity, are open to anyone on the path.
 */
export function connectInsecureLoopback(
  address: string,
  options: Omit<ConnectOptions, "serverName"> = {},
): TokendClient {
  const url = HOST_PORT.test(address) ? new URL(`http://${address}`) : undefined;
  if (url === undefined || !isLoopbackHostname(url.hostname)) {
    throw new TypeError('plaintext needs a loopback "host:port"; use connect() with mutual TLS');
  }
  return openClient(url.origin, options, {});
}

function openClient(baseUrl: string, options: ConnectOptions, nodeOptions: SecureClientSessionOptions): TokendClient {
  // Keepalive as in every tokend client: a PING after 60 s without data while a call is
  // open (a Watch stream), never on an idle connection; tokend accepts one per 30 s.
  const sessionManager = new Http2SessionManager(
    baseUrl, { pingIntervalMs: 60_000, pingTimeoutMs: 20_000, pingIdleConnection: false }, nodeOptions);
  // Not the transport's defaultTimeoutMs: it would cut the Watch streams, and reach only
  // unary calls the service config gives no timeout (withServiceConfig applies it instead).
  const transport = createGrpcTransport({ baseUrl, sessionManager });
  const defaultTimeoutMs = positiveOrUndefined(options.defaultTimeoutMs, "defaultTimeoutMs");
  // Retries and deadlines of the shared service config (src/retries.ts).
  const rules = methodRules();
  const client = createClient(TokenService, withServiceConfig(transport, rules, Math.random, defaultTimeoutMs));
  // A batched verify gets exactly the deadline a unary one would.
  const batcher = new VerifyBatcher({ verify: client.verify, verifyMany: client.verifyMany }, options, {
    timeoutMs: defaultTimeoutMs ?? rules.get(`${TokenService.typeName}/Verify`)?.timeoutMs,
  });
  return Object.assign(client, {
    verify: (request: VerifyInit, callOptions?: CallOptions) => batcher.verify(request, callOptions),
    verifyAll: (requests: readonly VerifyInit[], callOptions?: CallOptions) => batcher.verifyAll(requests, callOptions),
    close: () => {
      batcher.close();
      sessionManager.abort();
    },
  });
}

/** Turns a gRPC target into the https:// base URL the transport needs. */
export function baseUrlOf(address: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(address)) {
    const url = new URL(address);
    if (url.protocol !== "https:") {
      throw new TypeError("tokend address must use https (mutual TLS is required)");
    }
    return url.origin;
  }
  if (!HOST_PORT.test(address)) {
    throw new TypeError('tokend address must be "host:port"');
  }
  return new URL(`https://${address}`).origin;
}

function positiveOrUndefined(value: number | undefined, name: string): number | undefined {
  if (value !== undefined && !(typeof value === "number" && Number.isFinite(value) && value > 0)) {
    throw new RangeError(`${name} must be a positive number of milliseconds`);
  }
  return value;
}

function readPem(path: string, what: string): Buffer {
  const pem = readFileSync(path);
  // Catch a swapped or empty path here, not as an opaque TLS handshake failure later.
  if (!PEM_BLOCK.test(pem.toString("latin1"))) {
    throw new TypeError(`${what} (${path}) holds no PEM block`);
  }
  return pem;
}

/**
 * What a token is bound to (RFC 8705 §3): `true` is the caller's own client certificate
 * (the one on this mutual-TLS connection); DER bytes or an X509Certificate name another
 * certificate, which the caller policy must allow (`issue.bind_other_certificates`,
 * docs/binding.md).
 */
export type BindTo = true | Uint8Array | X509Certificate;

/** The CertificateBinding message `bindTo` asks for. */
export function certificateBinding(bindTo: BindTo): MessageInitShape<typeof CertificateBindingSchema> {
  if (bindTo === true) return { certificate: { case: "callerCertificate", value: true } };
  if (bindTo instanceof X509Certificate) return { certificate: { case: "certificateDer", value: new Uint8Array(bindTo.raw) } };
  if (bindTo instanceof Uint8Array) return { certificate: { case: "certificateDer", value: bindTo } };
  throw new TypeError("bindToCertificate is true, DER bytes or an X509Certificate");
}

/** What {@link issueToken} asks for; the server validates the values. */
export interface IssueParams {
  subject: string;
  audience: string | readonly string[];
  /** Scope names (a string: space-separated). */
  scopes?: string | readonly string[];
  /** Custom claims (reserved names such as cnf and act are refused by tokend). */
  claims?: Record<string, unknown>;
  /** Lifetime in seconds (default: the server's). */
  ttlSeconds?: number;
  /** Also return a refresh token (not for a bound token: tokend issues none). */
  refresh?: boolean;
  /** Bind the token to a certificate (`cnf`, RFC 8705 §3). */
  bindToCertificate?: BindTo;
}

/** What {@link exchangeToken} asks for (RFC 8693 token exchange, docs/exchange.md). */
export interface ExchangeParams {
  /** The token to exchange (issued by this tokend; its `sub` is kept). */
  subjectToken: string;
  /** The audience(s) of the new token (the policy's `exchange.audiences`). */
  audience: string | readonly string[];
  /** Scopes for the new token, a subset of the subject token's (a string: space-separated). */
  scopes?: string | readonly string[];
  /** Lifetime in seconds, capped at the subject token's remaining life. */
  ttlSeconds?: number;
  /** A token naming the actor (its `client_id` must be the caller); default: the caller's mTLS identity. */
  actorToken?: string;
  /** Bind the new token to a certificate; never inherited from the subject token. */
  bindToCertificate?: BindTo;
}

/** Issues a token with {@link IssueParams} (certificate binding included). */
export async function issueToken(client: TokenServiceClient, params: IssueParams, options?: CallOptions): Promise<IssueResponse> {
  const request: MessageInitShape<typeof IssueRequestSchema> = {
    subject: params.subject,
    audience: list(params.audience, "audience"),
    scopes: params.scopes === undefined ? [] : list(params.scopes, "scopes"),
    includeRefreshToken: params.refresh ?? false,
    ...(params.claims === undefined ? {} : { claims: params.claims as MessageInitShape<typeof IssueRequestSchema>["claims"] }),
    ...(params.ttlSeconds === undefined ? {} : { ttl: duration(params.ttlSeconds) }),
    ...(params.bindToCertificate === undefined ? {} : { binding: certificateBinding(params.bindToCertificate) }),
  };
  return client.issue(request, options);
}

/**
 * Exchanges `subjectToken` for a token for another audience on the subject's behalf
 * (RFC 8693 §2.1): `sub` is kept, the caller is recorded in `act` (§4.1), scopes only
 * narrow, and revoking the subject token revokes this one too.
 */
export async function exchangeToken(client: TokenServiceClient, params: ExchangeParams, options?: CallOptions): Promise<ExchangeResponse> {
  const request: MessageInitShape<typeof ExchangeRequestSchema> = {
    subjectToken: params.subjectToken,
    audience: list(params.audience, "audience"),
    scopes: params.scopes === undefined ? [] : list(params.scopes, "scopes"),
    actorToken: params.actorToken ?? "",
    ...(params.ttlSeconds === undefined ? {} : { ttl: duration(params.ttlSeconds) }),
    ...(params.bindToCertificate === undefined ? {} : { binding: certificateBinding(params.bindToCertificate) }),
  };
  return client.exchange(request, options);
}

function list(value: string | readonly string[], name: string): string[] {
  if (typeof value === "string") return value.split(" ").filter((item) => item !== "");
  if (!Array.isArray(value) || !value.every((item) => typeof item === "string")) throw new TypeError(`${name} must be strings`);
  return [...value];
}

function duration(seconds: number): { seconds: bigint; nanos: number } {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds <= 0) throw new RangeError("ttlSeconds must be a positive number");
  const whole = Math.floor(seconds);
  return { seconds: BigInt(whole), nanos: Math.round((seconds - whole) * 1e9) };
}
