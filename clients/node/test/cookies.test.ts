import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { clearTokenCookies, IssueResponseSchema, readTokenCookies, tokenCookies } from "../src/index.js";

const NOW = new Date("2030-01-01T00:00:00Z");
const ACCESS = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
const REFRESH = "tkd_rt_0123456789abcdefABCDEF-_";
const issued = create(IssueResponseSchema, {
  accessToken: ACCESS,
  tokenType: "Bearer",
  expiresAt: timestampFromMs(NOW.getTime() + 300_000),
  refreshToken: REFRESH,
  refreshExpiresAt: timestampFromMs(NOW.getTime() + 86_400_000),
});

/** The attributes of one Set-Cookie value, names lower-cased. */
function attributes(setCookie: string): Map<string, string> {
  const [, ...parts] = setCookie.split("; ");
  return new Map(parts.map((part) => {
    const [name, value = ""] = part.split("=");
    return [name!.toLowerCase(), value];
  }));
}

describe("tokenCookies", () => {
  it("writes a __Host- access cookie: HttpOnly, Secure, SameSite=Strict, Path=/, no Domain", () => {
    const [access] = tokenCookies(issued, { refreshPath: "/auth/refresh" }, NOW);
    assert.ok(access!.startsWith(`__Host-access_token=${ACCESS}; `));
    const attrs = attributes(access!);
    assert.equal(attrs.get("path"), "/");
    assert.equal(attrs.get("max-age"), "300");
    assert.equal(attrs.get("samesite"), "Strict");
    assert.ok(attrs.has("httponly") && attrs.has("secure"));
    assert.ok(!attrs.has("domain"));
  });

  it("writes a __Secure- refresh cookie scoped to the refresh path, living as long as the refresh token", () => {
    const [, refresh] = tokenCookies(issued, { refreshPath: "/auth/refresh", sameSite: "Lax" }, NOW);
    assert.ok(refresh!.startsWith(`__Secure-refresh_token=${REFRESH}; `));
    const attrs = attributes(refresh!);
    assert.equal(attrs.get("path"), "/auth/refresh");
    assert.equal(attrs.get("max-age"), "86400");
    assert.equal(attrs.get("samesite"), "Lax");
    assert.ok(attrs.has("httponly") && attrs.has("secure"));
  });

  it("writes only the access cookie when there is no refresh token, and accepts Dates", () => {
    const cookies = tokenCookies({ accessToken: ACCESS, expiresAt: new Date(NOW.getTime() + 61_500) },
      { refreshPath: "/auth/refresh" }, NOW);
    assert.equal(cookies.length, 1);
    assert.equal(attributes(cookies[0]!).get("max-age"), "61");
  });

  it("refuses expired tokens, missing expiry and values that would break the header", () => {
    const options = { refreshPath: "/auth/refresh" };
    assert.throws(() => tokenCookies({ accessToken: ACCESS, expiresAt: NOW }, options, NOW), RangeError);
    assert.throws(() => tokenCookies({ accessToken: ACCESS }, options, NOW), TypeError);
    assert.throws(() => tokenCookies({ ...issued, refreshExpiresAt: undefined }, options, NOW), TypeError);
    assert.throws(() => tokenCookies({ ...issued, accessToken: "a; Domain=evil.example" }, options, NOW), TypeError);
    assert.throws(() => tokenCookies({ ...issued, accessToken: "a\r\nSet-Cookie: x=y" }, options, NOW), TypeError);
    assert.throws(() => tokenCookies(issued, { refreshPath: "auth" }, NOW), TypeError);
    assert.throws(() => tokenCookies(issued, { refreshPath: "/a;Domain=x" }, NOW), TypeError);
    assert.throws(() => tokenCookies(issued, { ...options, accessName: "__Host-at" }, NOW), TypeError);
    assert.throws(() => tokenCookies(issued, { ...options, sameSite: "None" as "Lax" }, NOW), TypeError);
  });
});

describe("readTokenCookies", () => {
  it("reads back what tokenCookies wrote, among other cookies", () => {
    const written = tokenCookies(issued, { refreshPath: "/auth/refresh" }, NOW);
    const header = ["theme=dark", ...written.map((cookie) => cookie.split("; ")[0])].join("; ");
    assert.deepEqual(readTokenCookies(header), { accessToken: ACCESS, refreshToken: REFRESH });
  });

  it("ignores unprefixed look-alikes, bad values and absent headers", () => {
    assert.deepEqual(readTokenCookies(`access_token=${ACCESS}; __Host-access_token="quoted"`), {});
    assert.deepEqual(readTokenCookies(undefined), {});
    assert.deepEqual(readTokenCookies("__Host-access_token=first; __Host-access_token=second"),
      { accessToken: "first" });
  });

  it("uses custom names", () => {
    assert.deepEqual(readTokenCookies("__Host-at=a.b.c", { accessName: "at" }), { accessToken: "a.b.c" });
  });
});

describe("clearTokenCookies", () => {
  it("expires both cookies with the paths that set them", () => {
    const [access, refresh] = clearTokenCookies({ refreshPath: "/auth/refresh" });
    assert.ok(access!.startsWith("__Host-access_token=; "));
    assert.equal(attributes(access!).get("max-age"), "0");
    assert.equal(attributes(access!).get("path"), "/");
    assert.ok(refresh!.startsWith("__Secure-refresh_token=; "));
    assert.equal(attributes(refresh!).get("path"), "/auth/refresh");
    assert.equal(attributes(refresh!).get("max-age"), "0");
  });
});

describe("with node:http", () => {
  it("sends both Set-Cookie headers and reads the Cookie header back", async () => {
    const server = createServer((request, response) => {
      const seen = readTokenCookies(request.headers.cookie);
      response.setHeader("Set-Cookie", tokenCookies(issued, { refreshPath: "/auth/refresh" }, NOW));
      response.end(JSON.stringify({ access: seen.accessToken === ACCESS, refresh: seen.refreshToken === REFRESH }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const response = await fetch(`http://127.0.0.1:${port}/`, {
        headers: { cookie: `__Host-access_token=${ACCESS}; __Secure-refresh_token=${REFRESH}` },
      });
      assert.deepEqual(await response.json(), { access: true, refresh: true });
      const setCookies = response.headers.getSetCookie();
      assert.equal(setCookies.length, 2);
      assert.ok(setCookies.every((cookie) => cookie.includes("HttpOnly; Secure")));
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
