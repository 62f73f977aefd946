/**
 * Whether a URL's hostname is this machine. Plaintext (a JWKS URL over http, a gRPC
 * connection without TLS) is allowed only there, where no one else is on the path.
 */
const LOOPBACK_HOSTNAMES = new Set(["localhost", "127.0.0.1", "[::1]"]);

/** True for `localhost`, `127.0.0.1` and `[::1]` as URL.hostname spells them. */
export function isLoopbackHostname(hostname: string): boolean {
  return LOOPBACK_HOSTNAMES.has(hostname);
}
