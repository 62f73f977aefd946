/**
 * Cookies for web backends that hand tokend's tokens to a browser.
 *
 * Both cookies are `HttpOnly` (page scripts, and so XSS, cannot read them), `Secure`
 * (never sent over plain HTTP) and `SameSite=Strict` by default (not sent on requests
 * other sites start, which is the CSRF defence). The access cookie uses the `__Host-`
 * prefix, so the browser only accepts it from this exact host with `Path=/` and no
 * `Domain`: a sibling subdomain cannot plant or overwrite it. The refresh cookie is
 * scoped to the refresh endpoint's path so it travels only where it is spent, which
 * rules out `__Host-` (that needs `Path=/`); it uses `__Secure-` instead.
 *
 * The functions return `Set-Cookie` header values for plain Node `http`:
 * `response.setHeader("Set-Cookie", tokenCookies(issued, { refreshPath: "/auth/refresh" }))`.
 */
import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";

/** The tokens to store: an IssueResponse (from Issue or Refresh) fits as it is. */
export interface TokenPair {
  accessToken: string;
  /** When the access token expires; its cookie gets the same lifetime. */
  expiresAt?: Timestamp | Date;
  /** Empty or absent: no refresh cookie is written. */
  refreshToken?: string;
  /** When the refresh token expires; required when there is a refresh token. */
  refreshExpiresAt?: Timestamp | Date;
}

/** Where and how the cookies are scoped. */
export interface TokenCookieOptions {
  /** Path of the endpoint that spends refresh tokens, e.g. "/auth/refresh". */
  refreshPath: string;
  /** "Strict" (default) or "Lax" (sent on top-level navigations from other sites too). */
  sameSite?: "Strict" | "Lax";
  /** Access cookie name without its prefix (default "access_token"). */
  accessName?: string;
  /** Refresh cookie name without its prefix (default "refresh_token"). */
  refreshName?: string;
}

/** Tokens read back from a request's Cookie header. */
export interface TokenCookies {
  accessToken?: string;
  refreshToken?: string;
}

const HOST_PREFIX = "__Host-";
const SECURE_PREFIX = "__Secure-";
// RFC 6265 section 4.1.1: cookie-name is an RFC 7230 token, cookie-octet excludes
// CTLs, whitespace, DQUOTE, comma, semicolon and backslash; path-value excludes CTLs and ";".
const TOKEN_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const COOKIE_OCTETS = /^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]+$/;
const PATH_VALUE = /^\/[\x20-\x3A\x3C-\x7E]*$/;

/**
 * Set-Cookie values that store the access token (and the refresh token, when there is
 * one), each living exactly as long as its token. Throws RangeError for a token that
 * has already expired and TypeError for a value that cannot be a cookie.
 */
export function tokenCookies(tokens: TokenPair, options: TokenCookieOptions, now: Date = new Date()): string[] {
  const names = cookieNames(options);
  const cookies = [
    serialize(names.access, tokens.accessToken, "/", maxAge(tokens.expiresAt, now, "expiresAt"), options),
  ];
  if (tokens.refreshToken) {
    const lifetime = maxAge(tokens.refreshExpiresAt, now, "refreshExpiresAt");
    cookies.push(serialize(names.refresh, tokens.refreshToken, refreshPath(options), lifetime, options));
  }
  return cookies;
}

/**
 * Set-Cookie values that delete both cookies (at sign-out, or after a refused refresh).
 * Path and prefix must match the ones that set them, or the browser keeps the old ones.
 */
export function clearTokenCookies(options: TokenCookieOptions): string[] {
  const names = cookieNames(options);
  return [
    serialize(names.access, "", "/", 0, options),
    serialize(names.refresh, "", refreshPath(options), 0, options),
  ];
}

/**
 * Reads the tokens from a Cookie request header (`request.headers.cookie`). A cookie
 * whose value could not have been written by {@link tokenCookies} is ignored.
 */
export function readTokenCookies(
  cookieHeader: string | undefined,
  options: Pick<TokenCookieOptions, "accessName" | "refreshName"> = {},
): TokenCookies {
  const names = cookieNames({ ...options, refreshPath: "/" });
  const found: TokenCookies = {};
  for (const pair of (cookieHeader ?? "").split(";")) {
    const eq = pair.indexOf("=");
    if (eq < 0) continue;
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (!COOKIE_OCTETS.test(value)) continue;
    // The first occurrence wins: browsers send the most specific path first.
    if (name === names.access) found.accessToken ??= value;
    if (name === names.refresh) found.refreshToken ??= value;
  }
  return found;
}

function cookieNames(options: TokenCookieOptions): { access: string; refresh: string } {
  return {
    access: HOST_PREFIX + cookieName(options.accessName ?? "access_token"),
    refresh: SECURE_PREFIX + cookieName(options.refreshName ?? "refresh_token"),
  };
}

function cookieName(name: string): string {
  if (!TOKEN_CHARS.test(name) || /^__(host|secure)-/i.test(name)) {
    throw new TypeError("cookie name must be a plain token (the prefix is added here)");
  }
  return name;
}

function refreshPath(options: TokenCookieOptions): string {
  const path = options.refreshPath;
  if (typeof path !== "string" || !PATH_VALUE.test(path)) {
    throw new TypeError('refreshPath must be an absolute path such as "/auth/refresh"');
  }
  return path;
}

function serialize(
  name: string, value: string, path: string, maxAgeSeconds: number, options: TokenCookieOptions,
): string {
  // Checking here stops a header injection through a value, as well as a token that
  // the browser would silently mangle.
  if (value !== "" && !COOKIE_OCTETS.test(value)) {
    throw new TypeError(`${name} value contains characters not allowed in a cookie`);
  }
  const sameSite = options.sameSite ?? "Strict";
  if (sameSite !== "Strict" && sameSite !== "Lax") {
    throw new TypeError('sameSite must be "Strict" or "Lax"');
  }
  return `${name}=${value}; Path=${path}; Max-Age=${maxAgeSeconds}; HttpOnly; Secure; SameSite=${sameSite}`;
}

function maxAge(expiresAt: Timestamp | Date | undefined, now: Date, what: string): number {
  if (expiresAt === undefined) {
    throw new TypeError(`${what} is required to give the cookie the token's lifetime`);
  }
  const expiresMs = expiresAt instanceof Date ? expiresAt.getTime() : timestampMs(expiresAt);
  const seconds = Math.floor((expiresMs - now.getTime()) / 1000);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new RangeError(`${what} is not in the future`);
  }
  return seconds;
}
