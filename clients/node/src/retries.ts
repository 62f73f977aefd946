/**
 * Retries and default deadlines from the gRPC service config every tokend client shares
 * (clients/service-config.json; src/service-config.json is a copy a test keeps equal).
 *
 * Hand-written because connect-node has no service-config support and no retries: this
 * Transport wrapper applies the config's retryPolicy and per-method timeouts as gRPC
 * does (gRFC A6: random backoff in [0, min(initial × multiplier^n, max)), the deadline
 * covering every attempt, streams never retried).
 */
import { randomBytes } from "node:crypto";
import type { DescMessage, DescMethodStreaming, DescMethodUnary, MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, type Transport } from "@connectrpc/connect";
import serviceConfigJson from "./service-config.json" with { type: "json" };

/** The shared gRPC service config, as parsed JSON. */
export const SERVICE_CONFIG: ServiceConfig = serviceConfigJson;

/** The parts of a gRPC service config this client reads. */
export interface ServiceConfig {
  methodConfig: {
    name: { service: string; method?: string }[];
    timeout?: string;
    retryPolicy?: {
      maxAttempts: number;
      initialBackoff: string;
      maxBackoff: string;
      backoffMultiplier: number;
      retryableStatusCodes: string[];
    };
  }[];
}

/** One method's rules, in milliseconds. */
export interface MethodRules {
  timeoutMs?: number;
  retry?: {
    maxAttempts: number;
    initialBackoffMs: number;
    maxBackoffMs: number;
    multiplier: number;
    codes: ReadonlySet<Code>;
  };
}

const REFRESH = "tokend.v1.TokenService/Refresh";
type Header = Parameters<Transport["unary"]>[3];

/** "5s", "0.1s" (protobuf JSON Duration) as milliseconds. */
function durationMs(text: string): number {
  const match = /^([0-9]+(?:\.[0-9]{1,9})?)s$/.exec(text);
  if (match === null) {
    throw new TypeError(`service config: ${JSON.stringify(text)} is not a duration`);
  }
  return Number(match[1]) * 1000;
}

/** "UNAVAILABLE" as connect's Code.Unavailable. */
function codeOf(name: string): Code {
  const camel = name.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
  const code = (Code as unknown as Record<string, Code | undefined>)[camel.charAt(0).toUpperCase() + camel.slice(1)];
  if (code === undefined) {
    throw new TypeError(`service config: unknown status code ${name}`);
  }
  return code;
}

/** The rules of each "package.Service/Method" the config names. */
export function methodRules(config: ServiceConfig = SERVICE_CONFIG): Map<string, MethodRules> {
  const rules = new Map<string, MethodRules>();
  for (const entry of config.methodConfig) {
    const policy = entry.retryPolicy;
    const rule: MethodRules = {
      ...(entry.timeout === undefined ? {} : { timeoutMs: durationMs(entry.timeout) }),
      ...(policy === undefined ? {} : {
        retry: {
          // gRPC caps attempts at 5, whatever the config says.
          maxAttempts: Math.min(policy.maxAttempts, 5),
          initialBackoffMs: durationMs(policy.initialBackoff),
          maxBackoffMs: durationMs(policy.maxBackoff),
          multiplier: policy.backoffMultiplier,
          codes: new Set(policy.retryableStatusCodes.map(codeOf)),
        },
      }),
    };
    for (const name of entry.name) {
      rules.set(`${name.service}/${name.method ?? ""}`, rule);
    }
  }
  return rules;
}

/** A fresh RefreshRequest.idempotencyKey: 24 random bytes, base64url (32 characters). */
export function newIdempotencyKey(): string {
  return randomBytes(24).toString("base64url");
}

/**
 * Wraps `inner` so that unary calls get a default deadline (when the call sets none) and
 * are retried after the config's status codes, and a Refresh without an idempotencyKey
 * gets one, the same for all its attempts (tokend then answers a retry of a Refresh it
 * had committed with that answer, instead of revoking the family as reuse).
 *
 * A unary call's deadline, covering all its attempts, is the call's `timeoutMs` (0 or
 * less: none, as in connect), else `defaultTimeoutMs` (ConnectOptions.defaultTimeoutMs,
 * for every method), else the config's timeout for the method. Streams get none of them.
 */
export function withServiceConfig(inner: Transport, rules = methodRules(),
  random: () => number = Math.random, defaultTimeoutMs?: number): Transport {
  return {
    async unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>, signal: AbortSignal | undefined, timeoutMs: number | undefined,
      header: Header, input: MessageInitShape<I>, contextValues?: ContextValues) {
      const name = `${method.parent.typeName}/${method.name}`;
      const rule = rules.get(name) ?? rules.get(`${method.parent.typeName}/`) ?? {};
      const message = name === REFRESH ? withKey(input) : input;
      const deadline = deadlineOf(timeoutMs, defaultTimeoutMs ?? rule.timeoutMs);
      for (let attempt = 1; ; attempt++) {
        // No deadline: the call's own timeoutMs (0: none) reaches the transport unchanged.
        const remaining = deadline === undefined ? timeoutMs : Math.max(1, deadline - Date.now());
        try {
          return await inner.unary(method, signal, remaining, header, message, contextValues);
        } catch (error) {
          const delay = retryDelay(rule, attempt, error, random);
          if (delay === undefined || signal?.aborted ||
              (deadline !== undefined && Date.now() + delay >= deadline)) {
            throw error;
          }
          await sleep(delay, signal);
        }
      }
    },
    stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>, signal: AbortSignal | undefined, timeoutMs: number | undefined,
      header: Header, input: AsyncIterable<MessageInitShape<I>>, contextValues?: ContextValues) {
      // Streams have no default deadline and are never retried: LiveSource resumes them.
      return inner.stream(method, signal, timeoutMs, header, input, contextValues);
    },
  };
}

/**
 * When a unary call must end (epoch ms): `timeoutMs` from now, else `fallbackMs` (the
 * defaultTimeoutMs or the method's config timeout); 0 or less, or neither: never. The
 * verify batcher (src/batch.ts) computes its calls' deadlines with this too.
 */
export function deadlineOf(timeoutMs: number | undefined, fallbackMs: number | undefined): number | undefined {
  const budget = timeoutMs ?? fallbackMs;
  return budget !== undefined && budget > 0 ? Date.now() + budget : undefined;
}

function withKey<T>(input: T): T {
  const keyed = input as { idempotencyKey?: string };
  return keyed.idempotencyKey ? input : { ...input, idempotencyKey: newIdempotencyKey() };
}

/** Milliseconds before the next attempt, or undefined when the error is final. */
function retryDelay(rule: MethodRules, attempt: number, error: unknown,
  random: () => number): number | undefined {
  const retry = rule.retry;
  if (retry === undefined || attempt >= retry.maxAttempts ||
      !retry.codes.has(ConnectError.from(error).code)) {
    return undefined;
  }
  const cap = Math.min(retry.initialBackoffMs * retry.multiplier ** (attempt - 1), retry.maxBackoffMs);
  return random() * cap;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      signal?.removeEventListener("abort", aborted);
      resolve();
    }
    function aborted(): void {
      clearTimeout(timer);
      reject(new ConnectError("the call was cancelled", Code.Canceled));
    }
    signal?.addEventListener("abort", aborted, { once: true });
  });
}
