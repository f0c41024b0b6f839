// Errors from the gateway as plain data: code, reason (google.rpc.ErrorInfo) and field
// violations (google.rpc.BadRequest), read from the error details with ConnectError.findDetails.
//
// gen/ts has no google/rpc; the few google.rpc detail messages used here are defined once at
// run time: a FileDescriptorProto built with @bufbuild/protobuf (field numbers and names as in
// google/rpc/error_details.proto), turned into descriptors by createFileRegistry.
import { create, createFileRegistry, type DescMessage, type Message } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FileDescriptorProtoSchema,
  file_google_protobuf_duration,
  type Duration,
} from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";

const str = (name: string, number: number, jsonName: string) => ({
  name, number, jsonName, type: Type.STRING, label: Label.OPTIONAL,
});
const msg = (name: string, number: number, jsonName: string, typeName: string, repeated = false) => ({
  name, number, jsonName, type: Type.MESSAGE, typeName, label: repeated ? Label.REPEATED : Label.OPTIONAL,
});

const errorDetailsFile = create(FileDescriptorProtoSchema, {
  name: "google/rpc/error_details.proto",
  package: "google.rpc",
  syntax: "proto3",
  dependency: ["google/protobuf/duration.proto"],
  messageType: [
    {
      name: "ErrorInfo",
      field: [
        str("reason", 1, "reason"),
        str("domain", 2, "domain"),
        msg("metadata", 3, "metadata", ".google.rpc.ErrorInfo.MetadataEntry", true),
      ],
      nestedType: [
        { name: "MetadataEntry", field: [str("key", 1, "key"), str("value", 2, "value")], options: { mapEntry: true } },
      ],
    },
    { name: "RetryInfo", field: [msg("retry_delay", 1, "retryDelay", ".google.protobuf.Duration")] },
    {
      name: "QuotaFailure",
      field: [msg("violations", 1, "violations", ".google.rpc.QuotaFailure.Violation", true)],
      nestedType: [{ name: "Violation", field: [str("subject", 1, "subject"), str("description", 2, "description")] }],
    },
    {
      name: "BadRequest",
      field: [msg("field_violations", 1, "fieldViolations", ".google.rpc.BadRequest.FieldViolation", true)],
      nestedType: [
        {
          name: "FieldViolation",
          field: [str("field", 1, "field"), str("description", 2, "description"), str("reason", 3, "reason")],
        },
      ],
    },
  ],
});

const registry = createFileRegistry(errorDetailsFile, (name) =>
  name === "google/protobuf/duration.proto" ? file_google_protobuf_duration : undefined,
);

function schema(typeName: string): DescMessage {
  const desc = registry.getMessage(typeName);
  if (!desc) throw new Error(`missing ${typeName}`);
  return desc;
}

type ErrorInfo = Message<"google.rpc.ErrorInfo"> & { reason: string; domain: string; metadata: Record<string, string> };
type BadRequest = Message<"google.rpc.BadRequest"> & { fieldViolations: { field: string; description: string }[] };
type RetryInfo = Message<"google.rpc.RetryInfo"> & { retryDelay?: Duration };

const ErrorInfoSchema = schema("google.rpc.ErrorInfo");
const BadRequestSchema = schema("google.rpc.BadRequest");
const RetryInfoSchema = schema("google.rpc.RetryInfo");

export interface FieldProblem {
  /** Proto field path, e.g. "amount" or "mev_protection.jito_tip_lamports". */
  field: string;
  description: string;
}

export interface ApiFailure {
  code: Code;
  /** "INVALID_ARGUMENT", ... */
  codeName: string;
  /** The server's message, without the "[code]" prefix. */
  message: string;
  /** ErrorInfo.reason, e.g. "UNSUPPORTED_PAIR". */
  reason: string;
  metadata: Record<string, string>;
  fieldViolations: FieldProblem[];
  retryAfterSeconds?: number;
}

export function codeName(code: Code): string {
  return (Code[code] ?? "UNKNOWN").replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

export function toFailure(err: unknown): ApiFailure {
  const ce = ConnectError.from(err);
  const info = ce.findDetails(ErrorInfoSchema)[0] as ErrorInfo | undefined;
  const bad = ce.findDetails(BadRequestSchema) as BadRequest[];
  const retry = ce.findDetails(RetryInfoSchema)[0] as RetryInfo | undefined;
  const delay = retry?.retryDelay;
  return {
    code: ce.code,
    codeName: codeName(ce.code),
    message: ce.rawMessage,
    reason: info?.reason ?? "",
    metadata: { ...(info?.metadata ?? {}) },
    fieldViolations: bad.flatMap((b) => b.fieldViolations.map((v) => ({ field: v.field, description: v.description }))),
    retryAfterSeconds: delay ? Number(delay.seconds) + delay.nanos / 1e9 : undefined,
  };
}

/** The key was refused: the only failure that should sign the user out. */
export function isAuthFailure(f: ApiFailure): boolean {
  return f.code === Code.Unauthenticated || f.code === Code.PermissionDenied;
}

/** The gateway is down, restarting or draining (UNAVAILABLE, e.g. SHUTTING_DOWN), or the
 * connection failed or was cut: the gateway's own answers carry an ErrorInfo reason, the
 * browser's and the transport's do not. Worth retrying. */
export function isUnreachable(f: ApiFailure): boolean {
  if (f.code === Code.Unavailable) return true;
  return !f.reason && f.code !== Code.Canceled && !isAuthFailure(f);
}

/** No answer came from the gateway at all (the browser could not connect, or the connection
 * was cut), as opposed to the gateway's own UNAVAILABLE refusals, which carry a reason. */
export function gotNoAnswer(f: ApiFailure): boolean {
  return isUnreachable(f) && !f.reason;
}

/** The caller's rate limit refused the call: worth retrying after \`retryAfterSeconds\`; the
 * gateway itself is fine. */
export function isRateLimited(f: ApiFailure): boolean {
  return f.code === Code.ResourceExhausted && f.reason === "RATE_LIMITED";
}

/** A failure in words: "REASON: message", or, when no answer came from the gateway, that it
 * could not be reached and the call is worth retrying. */
export function describeFailure(f: ApiFailure): string {
  if (gotNoAnswer(f)) return `Could not reach the gateway (${f.message || f.codeName}); retry when it is back.`;
  return `${f.reason || f.codeName}: ${f.message}`;
}

export { Code };
