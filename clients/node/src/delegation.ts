/**
 * The `act` (actor) claim of delegated tokens (RFC 8693 §4.1) and the `delegation` option
 * (docs/verifier-contract.md section A, rules A1 and A2).
 *
 * A token obtained by token exchange names who acts on the subject's behalf in `act`:
 * `{"sub": "alice", "act": {"sub": "payments", "act": {"sub": "orders"}}}` means payments
 * acts for alice, having received the token from orders. {@link actors} lists that chain,
 * the current actor (outermost `act`) first.
 */
import { InvalidTokenError, Reason } from "./errors.js";

/** Rule A1: at most this many nested act objects (tokend's policy cannot allow more). */
export const MAX_ACT_DEPTH = 8;

/** `any` accepts direct and delegated tokens, `required` only delegated, `refused` only direct. */
export type Delegation = "any" | "required" | "refused";

const DELEGATION_OPTIONS: ReadonlySet<string> = new Set(["any", "required", "refused"]);

/**
 * The actor chain of verified claims, the current actor first; empty for a direct token.
 * Throws InvalidTokenError(MALFORMED) for an `act` that breaks rule A1 (a verifier has
 * refused such a token already).
 */
export function actors(claims: Readonly<Record<string, unknown>>): string[] {
  const chain: string[] = [];
  let holder: Readonly<Record<string, unknown>> = claims;
  while (Object.hasOwn(holder, "act")) {
    const act = holder["act"];
    // RFC 8693 §4.1: the value of act is a JSON object naming the actor by `sub`.
    if (typeof act !== "object" || act === null || Array.isArray(act)) {
      throw new InvalidTokenError(Reason.MALFORMED, "claim act is not a JSON object");
    }
    const sub = (act as Record<string, unknown>)["sub"];
    if (!Object.hasOwn(act, "sub") || typeof sub !== "string" || sub === "") {
      throw new InvalidTokenError(Reason.MALFORMED, "an act object lacks a non-empty string sub");
    }
    chain.push(sub);
    if (chain.length > MAX_ACT_DEPTH) {
      throw new InvalidTokenError(Reason.MALFORMED, `claim act is nested deeper than ${MAX_ACT_DEPTH}`);
    }
    holder = act as Record<string, unknown>;
  }
  return chain;
}

/** Rules A1 (act shape → MALFORMED) then A2 (the delegation option → DELEGATION). */
export function checkDelegation(claims: Readonly<Record<string, unknown>>, delegation: Delegation): void {
  const delegated = actors(claims).length > 0;
  if (delegation === "required" && !delegated) {
    throw new InvalidTokenError(Reason.DELEGATION, "only delegated tokens (with act) are accepted");
  }
  if (delegation === "refused" && delegated) {
    throw new InvalidTokenError(Reason.DELEGATION, "delegated tokens (with act) are refused here");
  }
}

/** `value` if it is a {@link Delegation}; TypeError otherwise (a configuration error). */
export function delegationOption(value: unknown): Delegation {
  if (typeof value !== "string" || !DELEGATION_OPTIONS.has(value)) {
    throw new TypeError('delegation must be one of "any", "required", "refused"');
  }
  return value as Delegation;
}
