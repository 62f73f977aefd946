/**
 * Typed errors from tokend calls: the google.rpc.Status details tokend sends in the
 * grpc-status-details-bin trailer (docs/errors.md), read through @connectrpc/connect's
 * error details support (`ConnectError.findDetails`).
 *
 * The three descriptors (google.rpc.ErrorInfo, RetryInfo, BadRequest) are written out
 * here as a FileDescriptorProto because no package on the npm registry ships
 * google/rpc/error_details.proto generated for protobuf-es v2; @bufbuild/protobuf builds
 * the message types from it (`createFileRegistry`), so decoding is the library's own.
 */
import { create, createFileRegistry, type DescMessage, type Message } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FileDescriptorProtoSchema,
  file_google_protobuf_duration,
} from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";

/** ErrorInfo.domain of every error tokend itself answers. */
export const ERROR_DOMAIN = "tokend.dev";

const str = (name: string, number: number) =>
  ({ name, number, label: Label.OPTIONAL, type: Type.STRING, jsonName: camel(name) });
const msg = (name: string, number: number, typeName: string, repeated = false) => ({
  name, number, label: repeated ? Label.REPEATED : Label.OPTIONAL, type: Type.MESSAGE, typeName,
  jsonName: camel(name),
});

function camel(name: string): string {
  return name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

// google/rpc/error_details.proto (googleapis), the three messages tokend sends.
const registry = createFileRegistry(
  create(FileDescriptorProtoSchema, {
    name: "google/rpc/error_details.proto",
    package: "google.rpc",
    dependency: ["google/protobuf/duration.proto"],
    syntax: "proto3",
    messageType: [
      {
        name: "ErrorInfo",
        field: [str("reason", 1), str("domain", 2),
          msg("metadata", 3, ".google.rpc.ErrorInfo.MetadataEntry", true)],
        nestedType: [{ name: "MetadataEntry", field: [str("key", 1), str("value", 2)],
          options: { mapEntry: true } }],
      },
      { name: "RetryInfo", field: [msg("retry_delay", 1, ".google.protobuf.Duration")] },
      {
        name: "BadRequest",
        field: [msg("field_violations", 1, ".google.rpc.BadRequest.FieldViolation", true)],
        nestedType: [{ name: "FieldViolation", field: [str("field", 1), str("description", 2)] }],
      },
    ],
  }),
  (name) => (name === "google/protobuf/duration.proto" ? file_google_protobuf_duration : undefined),
);

function schema(name: string): DescMessage {
  const found = registry.getMessage(name);
  if (!found) throw new Error(`descriptor ${name} missing`);
  return found;
}

const ErrorInfoSchema = schema("google.rpc.ErrorInfo");
const RetryInfoSchema = schema("google.rpc.RetryInfo");
const BadRequestSchema = schema("google.rpc.BadRequest");

type ErrorInfo = Message & { reason: string; domain: string; metadata: Record<string, string> };
type RetryInfo = Message & { retryDelay?: { seconds: bigint; nanos: number } };
type BadRequest = Message & { fieldViolations: FieldViolation[] };

/** One request field at fault, named as the proto spells it ("subject", "audience"...). */
export interface FieldViolation {
  field: string;
  description: string;
}

/**
 * A failed tokend call. Match on `reason` (stable, listed in docs/errors.md), never on
 * the message. Errors tokend did not answer itself (a deadline, a failed connection)
 * carry no details: `reason` is then "".
 */
export class TokendError extends Error {
  override readonly name = "TokendError";

  constructor(
    /** The gRPC status code. */
    readonly code: Code,
    /** The server's text, for people. */
    readonly rawMessage: string,
    /** The ErrorInfo reason (RATE_LIMITED, INVALID_SUBJECT...), "" without details. */
    readonly reason: string,
    /** The ErrorInfo domain ({@link ERROR_DOMAIN}). */
    readonly domain: string,
    /** ErrorInfo metadata: "method", and "field" for a refused field. Never a secret. */
    readonly metadata: Readonly<Record<string, string>>,
    /** The request fields at fault (INVALID_ARGUMENT). */
    readonly fieldViolations: readonly FieldViolation[],
    /** RetryInfo: a retry after this many milliseconds may succeed; undefined: none sent. */
    readonly retryDelayMs: number | undefined,
    options?: { cause?: unknown },
  ) {
    super(`${Code[code]}${reason ? ` (${reason})` : ""}: ${rawMessage}`, options);
  }
}

/** The {@link TokendError} for an error a TokenService call threw (any error: a
 * non-gRPC one becomes `Code.Unknown` without details). */
export function tokendErrorFrom(error: unknown): TokendError {
  if (error instanceof TokendError) return error;
  const connectError = ConnectError.from(error);
  const info = connectError.findDetails(ErrorInfoSchema)[0] as ErrorInfo | undefined;
  const retry = connectError.findDetails(RetryInfoSchema)[0] as RetryInfo | undefined;
  const bad = connectError.findDetails(BadRequestSchema)[0] as BadRequest | undefined;
  const delay = retry?.retryDelay;
  return new TokendError(
    connectError.code,
    connectError.rawMessage,
    info?.reason ?? "",
    info?.domain ?? "",
    { ...(info?.metadata ?? {}) },
    (bad?.fieldViolations ?? []).map((v) => ({ field: v.field, description: v.description })),
    delay === undefined ? undefined : Number(delay.seconds) * 1000 + delay.nanos / 1e6,
    { cause: error },
  );
}

/**
 * The error a unary Verify refused with INVALID_ARGUMENT raises, rebuilt from a VerifyMany
 * item's `invalid` result (its BadRequest field and description, and the ErrorInfo reason
 * the server names), so that a batched call fails exactly as a lone one: same code,
 * message, ErrorInfo and field violation.
 */
export function invalidVerifyRequestError(field: string, description: string,
                                          serverReason = ""): ConnectError {
  const reason = serverReason === "" ? "INVALID_REQUEST" : serverReason;
  const metadata: Record<string, string> = field === "" ? { method: "Verify" } : { method: "Verify", field };
  const details: ConstructorParameters<typeof ConnectError>[3] = [
    { desc: ErrorInfoSchema, value: { reason, domain: ERROR_DOMAIN, metadata } }];
  if (field !== "") details.push({ desc: BadRequestSchema, value: { fieldViolations: [{ field, description }] } });
  return new ConnectError(description, Code.InvalidArgument, undefined, details);
}
