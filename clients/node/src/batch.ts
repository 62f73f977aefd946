/**
 * The verify batcher: hand-written because neither connect-es nor the gRPC libraries batch
 * calls (each call is its own RPC), while tokend's VerifyMany answers many Verify requests
 * for one RPC's cost (issue 17; the behaviour every client shares is docs/clients.md,
 * "Verify calls are batched").
 *
 * `verify()` keeps its signature, results and errors. At most `maxInFlight` Verify or
 * VerifyMany RPCs of a client are in flight; a call enqueues its request, and whenever a slot
 * is free everything queued (at most `maxBatch`) goes out: one request as a plain Verify, two
 * or more as one VerifyMany. No timer, no linger: a lone call is sent at once (in the same
 * tick's microtask, which also gathers calls issued together, e.g. by Promise.all).
 */
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type CallOptions } from "@connectrpc/connect";
import { getAbortSignalReason } from "@connectrpc/connect/protocol";
import {
  VerifyRequestSchema,
  type VerifyManyRequestSchema,
  type VerifyManyResponse,
  type VerifyRequest,
  type VerifyResponse,
} from "./gen/tokend/v1/tokend_pb.js";
import { deadlineOf } from "./retries.js";
import { invalidVerifyRequestError } from "./rpcerrors.js";

/** What `verify()` takes: a VerifyRequest or its init shape. */
export type VerifyInit = MessageInitShape<typeof VerifyRequestSchema>;

/** One answer of {@link VerifyBatcher.verifyAll}: what `verify()` resolves with, or its error. */
export type VerifyResult = VerifyResponse | ConnectError;

/** Options of the verify batcher (part of ConnectOptions). */
export interface BatchOptions {
  /** Send overlapping `verify()` calls as one VerifyMany (default true); false: always unary Verify. */
  batchVerify?: boolean;
  /** Verify/VerifyMany RPCs in flight at once before calls queue (default 4, at least 1). */
  maxInFlight?: number;
  /** Requests per VerifyMany (default 64, 1 to 256). */
  maxBatch?: number;
}

/** The two RPCs the batcher sends through (the client's, with retries and deadlines). */
export interface VerifyRpcs {
  verify(request: VerifyInit, options?: CallOptions): Promise<VerifyResponse>;
  verifyMany(request: MessageInitShape<typeof VerifyManyRequestSchema>, options?: CallOptions): Promise<VerifyManyResponse>;
}

/** The deadline a unary Verify gets when the call sets none (src/retries.ts, `withServiceConfig`). */
export interface DeadlineDefaults {
  /** ConnectOptions.defaultTimeoutMs, else the service config's Verify timeout; undefined: none. */
  timeoutMs: number | undefined;
}

/** VerifyMany's limit per call (protos/tokend/v1/tokend.proto). */
export const MAX_VERIFY_BATCH = 256;
// A VerifyMany stays under 64 KiB, the request limit of every tokend whatever its
// tokens.max_token_bytes (docs/configuration.md; gRPC refuses a larger request whole,
// RESOURCE_EXHAUSTED for every item), so one caller's large tokens never fail another's
// verify; a request larger than this goes out alone, refused or answered as it always was.
const MAX_BATCH_BYTES = 60 * 1024;

type State = "queued" | "sent" | "done";

interface Item {
  request: VerifyRequest;
  bytes: number;
  deadline: number | undefined;
  signal: AbortSignal | undefined;
  state: State;
  batch: Batch | undefined;
  resolve(response: VerifyResponse): void;
  reject(error: ConnectError): void;
  cleanup(): void;
}

interface Batch {
  open: number;
  abort: AbortController;
}

/** Batches a client's `verify()` calls into VerifyMany RPCs; see the module comment. */
export class VerifyBatcher {
  readonly #rpcs: VerifyRpcs;
  readonly #deadlines: DeadlineDefaults;
  readonly #maxInFlight: number;
  readonly #maxBatch: number;
  readonly #queue: Item[] = [];
  readonly #batches = new Set<Batch>();
  #unaryOnly: boolean;
  #inFlight = 0;
  #scheduled = false;
  #closed = false;

  constructor(rpcs: VerifyRpcs, options: BatchOptions = {}, deadlines: DeadlineDefaults = { timeoutMs: undefined }) {
    this.#rpcs = rpcs;
    this.#deadlines = deadlines;
    this.#unaryOnly = options.batchVerify === false;
    this.#maxInFlight = whole(options.maxInFlight ?? 4, "maxInFlight", 1, 1024);
    this.#maxBatch = whole(options.maxBatch ?? 64, "maxBatch", 1, MAX_VERIFY_BATCH);
  }

  /** False once batching is off: by the option, or after a tokend without VerifyMany. */
  get batching(): boolean {
    return !this.#unaryOnly;
  }

  /** What a unary Verify of `request` would answer, sent alone or in a batch. */
  verify(request: VerifyInit, options: CallOptions = {}): Promise<VerifyResponse> {
    if (this.#unaryOnly || this.#closed || ownsCall(options)) return this.#rpcs.verify(request, options);
    const { message, bytes } = prepare(request);
    // Too large to share a batch, or no VerifyRequest: the unary call answers or fails it.
    if (message === undefined || bytes > MAX_BATCH_BYTES) return this.#rpcs.verify(request, options);
    if (options.signal?.aborted) return Promise.reject(cancelled(options.signal));
    return new Promise((resolve, reject) => {
      const item = this.#item(message, bytes, options, resolve, reject);
      this.#queue.push(item);
      this.#schedule();
    });
  }

  /**
   * Verifies every request, in VerifyMany calls of up to 256 requests and 60 KiB (at
   * most `maxInFlight` at once), and answers in order: each a VerifyResponse or the
   * ConnectError `verify()` would have thrown. `options` (timeoutMs, signal) cover the
   * whole call.
   */
  async verifyAll(requests: readonly VerifyInit[], options: CallOptions = {}): Promise<VerifyResult[]> {
    if (!Array.isArray(requests)) throw new TypeError("verifyAll takes an array of VerifyRequests");
    const prepared = requests.map(prepare);
    const deadline = this.#deadline(options.timeoutMs);
    const results: VerifyResult[] = new Array<VerifyResult>(requests.length);
    const sizes = prepared.map(({ bytes }) => bytes);
    const chunks = this.#unaryOnly ? sizes.map((_, index) => [index]) : chunked(sizes, MAX_VERIFY_BATCH);
    await mapLimit(chunks, this.#maxInFlight, async (chunk) => {
      const chunkRequests = chunk.map((index) => prepared[index]!.message ?? requests[index]!);
      const answers = await this.#verifyChunk(chunkRequests, deadline, options.signal);
      chunk.forEach((index, position) => { results[index] = answers[position]!; });
    });
    return results;
  }

  /** Fails every queued call with Code.Canceled and cancels the batches in flight. */
  close(): void {
    this.#closed = true;
    const closed = new ConnectError("the client was closed", Code.Canceled);
    for (const item of this.#queue.splice(0)) settle(item, () => item.reject(closed));
    for (const batch of this.#batches) batch.abort.abort(closed);
  }

  #item(request: VerifyRequest, bytes: number, options: CallOptions,
    resolve: (response: VerifyResponse) => void, reject: (error: ConnectError) => void): Item {
    const deadline = this.#deadline(options.timeoutMs);
    const signal = options.signal;
    const item: Item = {
      request, bytes, deadline, signal, state: "queued", batch: undefined, resolve, reject,
      cleanup: () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", aborted);
      },
    };
    // Each call keeps its own deadline and cancellation, whatever its batch does.
    const timer = deadline === undefined ? undefined : setTimeout(
      () => this.#drop(item, new ConnectError("the operation timed out", Code.DeadlineExceeded)),
      deadline - Date.now());
    const aborted = () => this.#drop(item, cancelled(signal as AbortSignal));
    signal?.addEventListener("abort", aborted, { once: true });
    return item;
  }

  /** Fails `item` early (deadline, abort): out of the queue, or its answer ignored. */
  #drop(item: Item, error: ConnectError): void {
    if (item.state === "queued") this.#queue.splice(this.#queue.indexOf(item), 1);
    settle(item, () => item.reject(error));
  }

  /** The call's deadline, exactly as the unary path sets it. */
  #deadline(timeoutMs: number | undefined): number | undefined {
    return deadlineOf(timeoutMs, this.#deadlines.timeoutMs);
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#inFlight < this.#maxInFlight && this.#queue.length > 0) {
      const items = this.#take();
      const batch: Batch = { open: items.length, abort: new AbortController() };
      for (const item of items) {
        item.state = "sent";
        item.batch = batch;
      }
      this.#inFlight += 1;
      this.#batches.add(batch);
      void this.#send(items, batch).catch((error: unknown) => {
        for (const item of items) fail(item, ConnectError.from(error, Code.Internal));
      }).finally(() => {
        this.#inFlight -= 1;
        this.#batches.delete(batch);
        this.#schedule();
      });
    }
  }

  /** The next batch: queued requests in order, up to maxBatch and MAX_BATCH_BYTES. */
  #take(): Item[] {
    return this.#queue.splice(0, batchLength(this.#queue, (item) => item.bytes, 0, this.#maxBatch));
  }

  async #send(items: Item[], batch: Batch): Promise<void> {
    const options = { signal: batch.abort.signal, timeoutMs: latest(items) };
    const [first] = items;
    if (items.length === 1 && first !== undefined) {
      await this.#rpcs.verify(first.request, options).then(
        (response) => finish(first, response), (error: unknown) => fail(first, ConnectError.from(error)));
      return;
    }
    let answer: VerifyManyResponse;
    try {
      answer = await this.#rpcs.verifyMany({ requests: items.map((item) => item.request) }, options);
    } catch (error) {
      const failure = ConnectError.from(error);
      if (failure.code === Code.Unimplemented) {
        this.#fallBack();
        for (const item of items) this.#sendAlone(item);
      } else {
        for (const item of items) fail(item, failure);
      }
      return;
    }
    const outcomes = resultsOf(answer, items.length);
    items.forEach((item, index) => {
      const outcome = outcomes[index]!;
      if (outcome instanceof ConnectError) fail(item, outcome);
      else finish(item, outcome);
    });
  }

  /** A tokend older than VerifyMany: unary Verify from now on, for this client. */
  #fallBack(): void {
    if (this.#unaryOnly) return;
    this.#unaryOnly = true;
    process.emitWarning("tokend answered UNIMPLEMENTED to VerifyMany (a tokend older than it): " +
      "this client sends each verify() as a unary Verify from now on", { code: "TOKEND_VERIFY_MANY_UNIMPLEMENTED" });
  }

  #sendAlone(item: Item): void {
    if (item.state === "done") return;
    const remaining = item.deadline === undefined ? 0 : Math.max(1, item.deadline - Date.now());
    void this.#rpcs.verify(item.request, { timeoutMs: remaining, ...(item.signal ? { signal: item.signal } : {}) })
      .then((response) => finish(item, response), (error: unknown) => fail(item, ConnectError.from(error)));
  }

  /** One chunk of verifyAll: a VerifyMany (a Verify for one request), never thrown. */
  async #verifyChunk(requests: VerifyInit[], deadline: number | undefined,
    signal: AbortSignal | undefined): Promise<VerifyResult[]> {
    const options = (): CallOptions => ({
      timeoutMs: deadline === undefined ? 0 : Math.max(1, deadline - Date.now()),
      ...(signal ? { signal } : {}),
    });
    const alone = (request: VerifyInit) => this.#rpcs.verify(request, options()).then(
      (response): VerifyResult => response, (error: unknown) => ConnectError.from(error));
    if (requests.length === 1 || this.#unaryOnly) return mapLimit(requests, this.#maxInFlight, alone);
    try {
      return resultsOf(await this.#rpcs.verifyMany({ requests }, options()), requests.length);
    } catch (error) {
      const failure = ConnectError.from(error);
      if (failure.code !== Code.Unimplemented) return requests.map(() => failure);
      this.#fallBack();
      return mapLimit(requests, this.#maxInFlight, alone);
    }
  }
}

/** Each result of a VerifyMany as `verify()` would give it; a wrong count fails them all. */
function resultsOf(answer: VerifyManyResponse, count: number): VerifyResult[] {
  if (answer.results.length !== count) {
    // Fail closed: with a result missing, none can be matched to its request.
    const error = new ConnectError(`VerifyMany answered ${answer.results.length} results for ${count} requests`, Code.Internal);
    return Array<VerifyResult>(count).fill(error);
  }
  return answer.results.map((result): VerifyResult => {
    switch (result.outcome.case) {
      case "response": return result.outcome.value;
      case "invalid": {
        const { field, description, reason } = result.outcome.value;
        return invalidVerifyRequestError(field, description, reason);
      }
      default: return new ConnectError("VerifyMany answered a result without an outcome", Code.Internal);
    }
  });
}

function settle(item: Item, action: () => void): void {
  if (item.state === "done") return;
  item.state = "done";
  item.cleanup();
  action();
  const batch = item.batch;
  // Everyone in the batch has given up: cancel the RPC and free its slot.
  if (batch !== undefined && --batch.open === 0) batch.abort.abort(new ConnectError("every caller gave up", Code.Canceled));
}

function finish(item: Item, response: VerifyResponse): void {
  settle(item, () => item.resolve(response));
}

function fail(item: Item, error: ConnectError): void {
  settle(item, () => item.reject(error));
}

/** The batch RPC's timeout: its latest member's deadline (0: none, a member has none). */
function latest(items: readonly Item[]): number {
  let last = 0;
  for (const item of items) {
    if (item.deadline === undefined) return 0;
    last = Math.max(last, item.deadline);
  }
  return Math.max(1, last - Date.now());
}

/** A call that sets its own headers or reads the response's goes out alone, as before. */
function ownsCall(options: CallOptions): boolean {
  return options.headers !== undefined || options.onHeader !== undefined ||
    options.onTrailer !== undefined || options.contextValues !== undefined;
}

/** What connect throws for a call whose signal is aborted. */
function cancelled(signal: AbortSignal): ConnectError {
  return ConnectError.from(getAbortSignalReason(signal), Code.Canceled);
}

/** The request as a message and its size; no message (size Infinity) if it is none. */
function prepare(request: VerifyInit): { message: VerifyRequest | undefined; bytes: number } {
  try {
    const message = create(VerifyRequestSchema, request);
    return { message, bytes: requestBytes(message) };
  } catch {
    return { message: undefined, bytes: Infinity };
  }
}

/**
 * What the request adds to a VerifyManyRequest (field 1: tag, length varint, the encoded
 * VerifyRequest): exactly the bytes the other clients count, so that every client cuts
 * batches at the same place (conformance/batching/cases.json).
 */
function requestBytes(request: VerifyRequest): number {
  const length = toBinary(VerifyRequestSchema, request).length;
  return 1 + varintBytes(length) + length;
}

function varintBytes(value: number): number {
  let bytes = 1;
  for (let rest = value; rest >= 0x80; rest = Math.floor(rest / 0x80)) bytes += 1;
  return bytes;
}

/** `work` on each value, at most `limit` at once; the answers in order. */
async function mapLimit<T, R>(values: readonly T[], limit: number, work: (value: T) => Promise<R>): Promise<R[]> {
  const answers = new Array<R>(values.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let index = next++; index < values.length; index = next++) answers[index] = await work(values[index]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, values.length) }, worker));
  return answers;
}

/**
 * How many of `items` from `start` make one batch: at most `count`, and at most
 * MAX_BATCH_BYTES together (each `sizeOf`) unless it is a single one (a larger request goes
 * alone). The rule every client shares (conformance/batching/cases.json).
 */
function batchLength<T>(items: readonly T[], sizeOf: (item: T) => number, start: number, count: number): number {
  let bytes = 0;
  let end = start;
  while (end < items.length && end - start < count) {
    const size = sizeOf(items[end]!);
    if (end > start && bytes + size > MAX_BATCH_BYTES) break;
    bytes += size;
    end += 1;
  }
  return end - start;
}

/** Indexes of `sizes` in order, cut into batches of at most `count` (see batchLength). */
function chunked(sizes: readonly number[], count: number): number[][] {
  const chunks: number[][] = [];
  for (let start = 0; start < sizes.length;) {
    const length = batchLength(sizes, (size) => size, start, count);
    chunks.push(Array.from({ length }, (_, offset) => start + offset));
    start += length;
  }
  return chunks;
}

/**
 * verifyAll's split of `requests` into VerifyMany calls (with `count` in place of
 * MAX_VERIFY_BATCH): each call's indexes. For conformance/batching/cases.json; not part of
 * the package's API (index.ts does not export it).
 */
export function splitRequests(requests: readonly VerifyInit[], count: number = MAX_VERIFY_BATCH): number[][] {
  return chunked(requests.map((request) => prepare(request).bytes), count);
}

function whole(value: number, name: string, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be a whole number from ${min} to ${max}`);
  }
  return value;
}
