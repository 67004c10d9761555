/**
 * Authorization of the fake: everything is allowed for authenticated users
 * unless a test denies it, or restricts a user to an allow-list. Denials
 * produce the real authorizer's 403 messages
 * (apiserver/pkg/endpoints/handlers/responsewriters.forbiddenMessage).
 *
 * @module
 */

import { type ApiError, forbidden } from "./status.ts";

/** An authenticated (or anonymous) user. */
export interface UserInfo {
  name: string;
  groups: string[];
}

/**
 * What a request asks to do, as the API server's RequestInfo sees it:
 * `verb` is get/list/watch/create/update/patch/delete/deletecollection
 * for resource requests, the lower-case HTTP method for others.
 */
export interface RequestAttributes {
  user: UserInfo;
  verb: string;
  isResourceRequest: boolean;
  /** URL path (for non-resource requests). */
  path: string;
  apiGroup: string;
  resource: string;
  subresource: string;
  namespace: string;
  name: string;
}

/**
 * A rule that selects requests. Unset fields match everything.
 *
 * `resource` uses RBAC notation: `"pods"` (not its subresources),
 * `"pods/exec"`, `"pods/*"`, `"*"` (everything, subresources included).
 * `verb` may be `"*"`. `nonResourceURL` matches a path exactly or, ending in
 * `*`, by prefix.
 */
export interface AccessRule {
  user?: string;
  group?: string;
  verb?: string | string[];
  resource?: string;
  namespace?: string;
  name?: string;
  nonResourceURL?: string;
}

function matchesSubject(rule: AccessRule, user: UserInfo): boolean {
  if (rule.user !== undefined && rule.user !== user.name) return false;
  if (rule.group !== undefined && !user.groups.includes(rule.group)) return false;
  return true;
}

function matchesResource(pattern: string, resource: string, subresource: string): boolean {
  if (pattern === "*") return true;
  const full = subresource ? `${resource}/${subresource}` : resource;
  if (pattern === full) return true;
  const [res, sub] = pattern.split("/", 2);
  if (sub === "*" && res === resource && subresource) return true;
  if (res === "*" && sub !== undefined && sub === subresource) return true;
  return false;
}

/** Whether a rule covers the request (subject included). */
export function ruleMatches(rule: AccessRule, attrs: RequestAttributes): boolean {
  if (!matchesSubject(rule, attrs.user)) return false;
  if (rule.verb !== undefined) {
    const verbs = Array.isArray(rule.verb) ? rule.verb : [rule.verb];
    if (!verbs.includes("*") && !verbs.includes(attrs.verb)) return false;
  }
  if (!attrs.isResourceRequest) {
    if (rule.resource !== undefined && rule.resource !== "*") return false;
    if (rule.nonResourceURL === undefined) return rule.resource === "*";
    const url = rule.nonResourceURL;
    return url.endsWith("*") ? attrs.path.startsWith(url.slice(0, -1)) : attrs.path === url;
  }
  if (rule.nonResourceURL !== undefined) return false;
  if (rule.resource !== undefined) {
    if (!matchesResource(rule.resource, attrs.resource, attrs.subresource)) return false;
  }
  if (rule.namespace !== undefined && rule.namespace !== attrs.namespace) return false;
  if (rule.name !== undefined && rule.name !== attrs.name) return false;
  return true;
}

/** Non-resource paths that system:anonymous may read (system:public-info-viewer). */
const PUBLIC_PATHS = ["/version", "/version/", "/healthz", "/livez", "/readyz"];

/** The fake's authorizer: deny rules and per-user allow-lists. */
export class Authorizer {
  readonly #denies = new Set<AccessRule>();
  readonly #allowLists = new Map<string, AccessRule[]>();

  /** Adds a denial; returns a function that removes it. */
  deny(rule: AccessRule): () => void {
    const copy = { ...rule };
    this.#denies.add(copy);
    return () => this.#denies.delete(copy);
  }

  /**
   * Restricts `user` to what `allow` grants (like a Role with only these
   * rules), or lifts the restriction when `allow` is undefined.
   */
  restrict(user: string, allow: AccessRule[] | undefined): void {
    if (allow === undefined) this.#allowLists.delete(user);
    else this.#allowLists.set(user, allow.map((r) => ({ ...r, user: undefined })));
  }

  /** Whether the request is allowed. */
  allowed(attrs: RequestAttributes): boolean {
    if (attrs.user.name === "system:anonymous") {
      return !attrs.isResourceRequest && PUBLIC_PATHS.includes(attrs.path);
    }
    for (const rule of this.#denies) if (ruleMatches(rule, attrs)) return false;
    const allowList = this.#allowLists.get(attrs.user.name);
    if (allowList && !allowList.some((rule) => ruleMatches(rule, attrs))) return false;
    return true;
  }

  /** Throws the real 403 when the request is not allowed. */
  check(attrs: RequestAttributes): void {
    if (!this.allowed(attrs)) throw forbiddenError(attrs);
  }
}

/** The 403 of the authorization filter, with the real message. */
export function forbiddenError(attrs: RequestAttributes): ApiError {
  return forbidden(
    attrs.isResourceRequest ? attrs.resource : "",
    attrs.isResourceRequest ? attrs.name : "",
    forbiddenMessage(attrs),
    attrs.apiGroup,
  );
}

/** `forbiddenMessage` of the API server. */
export function forbiddenMessage(attrs: RequestAttributes): string {
  const user = attrs.user.name;
  if (!attrs.isResourceRequest) {
    return `User "${user}" cannot ${attrs.verb} path "${attrs.path}"`;
  }
  const resource = attrs.subresource ? `${attrs.resource}/${attrs.subresource}` : attrs.resource;
  if (attrs.namespace) {
    return `User "${user}" cannot ${attrs.verb} resource "${resource}" in API group "${attrs.apiGroup}" in the namespace "${attrs.namespace}"`;
  }
  return `User "${user}" cannot ${attrs.verb} resource "${resource}" in API group "${attrs.apiGroup}" at the cluster scope`;
}
