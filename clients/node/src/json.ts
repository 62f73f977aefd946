/**
 * Hand-written strict JSON parser, because JSON.parse silently keeps the last of duplicate
 * member names, accepts lone UTF-16 surrogate escapes and turns 1e999 into Infinity.
 *
 * The rules are those of tokend's reference verifier (clients/python tokend_client.jose
 * strict_json_loads), so every language refuses the same documents:
 * - RFC 8259 grammar only, whitespace limited to space, tab, CR and LF (so no BOM);
 * - duplicate member names are refused at any depth (RFC 7515 §4, RFC 7519 §4);
 * - numbers must be finite; integer literals longer than 64 characters are refused;
 * - lone surrogates, escaped or raw, are refused (RFC 7493 §2.1);
 * - more than {@link MAX_DEPTH} arrays and objects open at once are refused.
 */

/** Arrays and objects open at once, the outer one included (contract C3; RFC 8259 §9 allows a limit). */
export const MAX_DEPTH = 64;
const MAX_INT_CHARS = 64;

/** A document the strict rules refuse; the message names the rule, never the content. */
export class StrictJsonError extends Error {
  override readonly name = "StrictJsonError";
}

// \uD800-\uDFFF written as an escape; only then may an escape produce a lone surrogate.
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;
const LONG_DIGITS = /[0-9]{64}/;

/**
 * Parses `text` strictly; throws {@link StrictJsonError}.
 *
 * Tries JSON.parse first for the flat objects tokens are (every member a string, a finite
 * number, a boolean, null or an array of strings, and no comma to spare, so no name was
 * dropped); anything else takes the full parser below.
 */
export function strictJsonParse(text: string): unknown {
  const fast = flatObject(text);
  return fast !== undefined ? fast : new Parser(text).document();
}

function flatObject(text: string): Record<string, unknown> | undefined {
  if (LONG_DIGITS.test(text) || (text.includes("\\") && SURROGATE_ESCAPE.test(text))) return undefined;
  if (!(text as string & { isWellFormed(): boolean }).isWellFormed()) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const record = value as Record<string, unknown>;
  let members = 0;
  let commas = 0;
  for (const name in record) {
    members += 1;
    const member = record[name];
    if (typeof member === "number") {
      if (!Number.isFinite(member)) return undefined;
    } else if (Array.isArray(member)) {
      if (!member.every((item) => typeof item === "string")) return undefined;
      commas += Math.max(member.length - 1, 0);
    } else if (typeof member === "object" && member !== null) {
      return undefined;
    }
  }
  // Each of the m members but the last is followed by a comma, each array of k strings
  // holds k - 1: any comma beyond those is inside a string, or separated a dropped duplicate.
  let textCommas = 0;
  for (let at = text.indexOf(","); at !== -1; at = text.indexOf(",", at + 1)) textCommas += 1;
  return textCommas === members - 1 + commas && members > 0 ? record : undefined;
}

const WHITESPACE = new Set([0x20, 0x09, 0x0a, 0x0d]);
const ESCAPES: Readonly<Record<string, string>> = {
  '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t",
};
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

class Parser {
  #at = 0;

  constructor(readonly text: string) {}

  document(): unknown {
    const value = this.#value(0);
    this.#skipWhitespace();
    if (this.#at !== this.text.length) this.#fail("trailing data after the JSON value");
    return value;
  }

  #fail(message: string): never {
    throw new StrictJsonError(message);
  }

  #skipWhitespace(): void {
    while (this.#at < this.text.length && WHITESPACE.has(this.text.charCodeAt(this.#at))) this.#at += 1;
  }

  #value(depth: number): unknown {
    this.#skipWhitespace();
    const char = this.text[this.#at];
    if (char === "{") return this.#object(depth + 1);
    if (char === "[") return this.#array(depth + 1);
    if (char === '"') return this.#string();
    if (char === "-" || (char !== undefined && char >= "0" && char <= "9")) return this.#number();
    for (const [word, value] of [["true", true], ["false", false], ["null", null]] as const) {
      if (this.text.startsWith(word, this.#at)) {
        this.#at += word.length;
        return value;
      }
    }
    return this.#fail("unexpected character");
  }

  #object(depth: number): Record<string, unknown> {
    if (depth > MAX_DEPTH) this.#fail("JSON nested too deeply");
    this.#at += 1;
    const result: Record<string, unknown> = {};
    this.#skipWhitespace();
    if (this.text[this.#at] === "}") {
      this.#at += 1;
      return result;
    }
    for (;;) {
      this.#skipWhitespace();
      if (this.text[this.#at] !== '"') this.#fail("expected a member name");
      const name = this.#string();
      // RFC 7515 §4 / RFC 7519 §4: member names MUST be unique; refuse, never pick one.
      if (Object.hasOwn(result, name)) this.#fail("duplicate member name");
      this.#skipWhitespace();
      if (this.text[this.#at] !== ":") this.#fail("expected ':'");
      this.#at += 1;
      // defineProperty: a member named "__proto__" stays data, never a prototype.
      Object.defineProperty(result, name, {
        value: this.#value(depth), writable: true, enumerable: true, configurable: true,
      });
      this.#skipWhitespace();
      const next = this.text[this.#at++];
      if (next === "}") return result;
      if (next !== ",") this.#fail("expected ',' or '}'");
    }
  }

  #array(depth: number): unknown[] {
    if (depth > MAX_DEPTH) this.#fail("JSON nested too deeply");
    this.#at += 1;
    const result: unknown[] = [];
    this.#skipWhitespace();
    if (this.text[this.#at] === "]") {
      this.#at += 1;
      return result;
    }
    for (;;) {
      result.push(this.#value(depth));
      this.#skipWhitespace();
      const next = this.text[this.#at++];
      if (next === "]") return result;
      if (next !== ",") this.#fail("expected ',' or ']'");
    }
  }

  #string(): string {
    const text = this.text;
    let at = this.#at + 1;
    let out = "";
    let runStart = at;
    for (;;) {
      if (at >= text.length) this.#fail("unterminated string");
      const code = text.charCodeAt(at);
      if (code === 0x22) break;
      if (code < 0x20) this.#fail("control character in string"); // RFC 8259 §7
      if (code !== 0x5c) {
        at += 1;
        continue;
      }
      out += text.slice(runStart, at);
      const escape = text[at + 1];
      if (escape === "u") {
        const hex = text.slice(at + 2, at + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.#fail("bad \\u escape");
        out += String.fromCharCode(parseInt(hex, 16));
        at += 6;
      } else {
        const replacement = escape === undefined ? undefined : ESCAPES[escape];
        if (replacement === undefined) this.#fail("bad escape");
        out += replacement;
        at += 2;
      }
      runStart = at;
    }
    out += text.slice(runStart, at);
    this.#at = at + 1;
    // RFC 7493 §2.1: no lone surrogates (escaped halves must pair up).
    if (!(out as string & { isWellFormed(): boolean }).isWellFormed()) this.#fail("lone surrogate in string");
    return out;
  }

  #number(): number {
    NUMBER.lastIndex = this.#at;
    const match = NUMBER.exec(this.text);
    if (match === null) return this.#fail("bad number");
    const literal = match[0];
    this.#at += literal.length;
    // The reference parser refuses long integers (int() of long digit strings is slow there).
    if (match[1] === undefined && match[2] === undefined && literal.length > MAX_INT_CHARS) {
      this.#fail("integer too long");
    }
    const value = Number(literal);
    if (!Number.isFinite(value)) this.#fail("number out of range");
    return value;
  }
}
