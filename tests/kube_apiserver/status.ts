/**
 * `metav1.Status` error objects as the real API server builds them
 * (k8s.io/apimachinery/pkg/api/errors), with the same messages, reasons,
 * codes and details, so clients that parse them behave as against a real
 * cluster.
 *
 * @module
 */

/** A cause inside `Status.details` (`metav1.StatusCause`). */
export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}

/** `metav1.StatusDetails`. */
export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: StatusCause[];
  retryAfterSeconds?: number;
}

/** A `metav1.Status` as sent on the wire (JSON). */
export interface Status {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Success" | "Failure";
  message?: string;
  reason?: string;
  details?: StatusDetails;
  code: number;
}

/** An error that the HTTP layer turns into a `Status` response. */
export class ApiError extends Error {
  readonly status: Status;
  /** Extra response headers (e.g. `Retry-After`). */
  readonly headers: Record<string, string>;

  constructor(status: Status, headers: Record<string, string> = {}) {
    super(status.message ?? status.reason ?? "error");
    this.name = "ApiError";
    this.status = status;
    this.headers = headers;
  }
}

/** Builds a failure `Status`, with fields in the order Go marshals them. */
export function failure(
  code: number,
  reason: string,
  message: string,
  details?: StatusDetails,
): Status {
  const status: Status = {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
    code,
  };
  // StatusReasonUnknown is the empty string, which Go omits.
  if (!reason) delete status.reason;
  if (details !== undefined) {
    // Go's field order: message, reason, details, code.
    delete (status as Partial<Status>).code;
    status.details = cleanDetails(details);
    status.code = code;
  }
  return status;
}

function cleanDetails(details: StatusDetails): StatusDetails {
  const out: StatusDetails = {};
  if (details.name) out.name = details.name;
  if (details.group) out.group = details.group;
  if (details.kind) out.kind = details.kind;
  if (details.uid) out.uid = details.uid;
  if (details.causes && details.causes.length > 0) out.causes = details.causes;
  if (details.retryAfterSeconds) out.retryAfterSeconds = details.retryAfterSeconds;
  return out;
}

/** `group/resource` as `schema.GroupResource.String()` prints it. */
function qualified(resource: string, group = ""): string {
  return group ? `${resource}.${group}` : resource;
}

/** 404: `pods "x" not found`. */
export function notFound(resource: string, name: string, group = ""): ApiError {
  return new ApiError(
    failure(404, "NotFound", `${qualified(resource, group)} "${name}" not found`, {
      name,
      group,
      kind: resource,
    }),
  );
}

/** 409: `pods "x" already exists`. */
export function alreadyExists(resource: string, name: string, group = ""): ApiError {
  return new ApiError(
    failure(409, "AlreadyExists", `${qualified(resource, group)} "${name}" already exists`, {
      name,
      group,
      kind: resource,
    }),
  );
}

/** 409 Conflict (e.g. a stale resourceVersion on update). */
export function conflict(resource: string, name: string, why: string): ApiError {
  return new ApiError(
    failure(
      409,
      "Conflict",
      `Operation cannot be fulfilled on ${resource} "${name}": ${why}`,
      { name, kind: resource },
    ),
  );
}

/**
 * 403 as `apierrors.NewForbidden`: `pods "x" is forbidden: <why>`,
 * `pods is forbidden: <why>` without a name, `forbidden: <why>` without a
 * resource (non-resource URLs).
 */
export function forbidden(resource: string, name: string, why: string, group = ""): ApiError {
  let message: string;
  if (!resource) message = `forbidden: ${why}`;
  else if (!name) message = `${qualified(resource, group)} is forbidden: ${why}`;
  else message = `${qualified(resource, group)} "${name}" is forbidden: ${why}`;
  return new ApiError(failure(403, "Forbidden", message, { name, group, kind: resource }));
}

/** 401 `Unauthorized`, as the authentication filter writes it. */
export function unauthorized(): ApiError {
  return new ApiError(failure(401, "Unauthorized", "Unauthorized"));
}

/** 400 `BadRequest`. */
export function badRequest(message: string): ApiError {
  return new ApiError(failure(400, "BadRequest", message));
}

/** 405 for verbs the fake does not serve on a path. */
export function methodNotAllowed(): ApiError {
  return new ApiError(
    failure(
      405,
      "MethodNotAllowed",
      "the server does not allow this method on the requested resource",
    ),
  );
}

/** 404 for unknown paths (no resource matched). */
export function pathNotFound(): ApiError {
  return new ApiError(
    failure(404, "NotFound", "the server could not find the requested resource", {}),
  );
}

/** 410 `Expired`, for watches from a compacted resourceVersion. */
export function expired(requested: number, oldest: number): ApiError {
  return new ApiError(
    failure(410, "Expired", `too old resource version: ${requested} (${oldest})`),
  );
}

/** 500 `InternalError` (`Internal error occurred: ...`). */
export function internalError(message: string): ApiError {
  return new ApiError(
    failure(500, "InternalError", `Internal error occurred: ${message}`, {
      causes: [{ message }],
    }),
  );
}

/** One field error of a validation failure (`field.Error`). */
export interface FieldError {
  /** `FieldValueRequired`, `FieldValueInvalid`, ... */
  type:
    | "FieldValueRequired"
    | "FieldValueInvalid"
    | "FieldValueNotSupported"
    | "FieldValueDuplicate"
    | "FieldValueForbidden";
  field: string;
  /** For Invalid/NotSupported/Duplicate: the offending value. */
  value?: unknown;
  detail?: string;
}

/** `field.Error.ErrorBody()`: the message without the field path. */
export function fieldErrorBody(error: FieldError): string {
  const value = error.value === undefined
    ? ""
    : typeof error.value === "string"
    ? `"${error.value}"`
    : JSON.stringify(error.value);
  let body: string;
  switch (error.type) {
    case "FieldValueRequired":
      body = "Required value";
      break;
    case "FieldValueForbidden":
      body = "Forbidden";
      break;
    case "FieldValueInvalid":
      body = `Invalid value: ${value}`;
      break;
    case "FieldValueNotSupported":
      body = `Unsupported value: ${value}`;
      break;
    case "FieldValueDuplicate":
      body = `Duplicate value: ${value}`;
      break;
  }
  return error.detail ? `${body}: ${error.detail}` : body;
}

/**
 * 422 as `apierrors.NewInvalid`: `Pod "x" is invalid: spec.containers:
 * Required value`, several errors as `[a, b]`.
 */
export function invalid(kind: string, name: string, errors: FieldError[]): ApiError {
  const texts = errors.map((e) => `${e.field}: ${fieldErrorBody(e)}`);
  const aggregate = texts.length === 1 ? texts[0] : `[${texts.join(", ")}]`;
  return new ApiError(
    failure(422, "Invalid", `${kind} "${name}" is invalid: ${aggregate}`, {
      name,
      kind,
      causes: errors.map((e) => ({
        reason: e.type,
        message: fieldErrorBody(e),
        field: e.field,
      })),
    }),
  );
}
