/**
 * An image name with a tag (`tcpgadget:0.1.0`, `registry.example:5000/ops/tcpgadget:1`),
 * checked against the grammar registries accept, and the forms an archive
 * names it by: as given (Docker's `RepoTags`), fully qualified
 * (containerd's `io.containerd.image.name`), and the tag alone (OCI's
 * `org.opencontainers.image.ref.name`, as `docker save` writes it).
 *
 * @module
 */

import { UsageError } from "../../core/errors.ts";

/** An image name with a tag, in each form an archive uses. */
export interface ImageReference {
  /** The repository as given, without the tag: "tcpgadget". */
  repository: string;
  /** The registry's host (and port), if the name has one. */
  registry?: string;
  /** The tag ("latest" when none is given). */
  tag: string;
  /** Repository and tag as given: "tcpgadget:0.1.0". */
  familiar: string;
  /** Fully qualified, as containerd names images: "docker.io/library/tcpgadget:0.1.0". */
  full: string;
}

// The grammar of github.com/distribution/reference (no digests: a build has no digest yet).
const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const DOMAIN = new RegExp(`^${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*(?::[0-9]+)?$`);
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const MAX_NAME = 255;

/**
 * Parses `--tag`'s value; throws UsageError (naming `flag`) if registries
 * would refuse it.
 *
 * @example
 * ```ts
 * import { parseImageReference } from "./image_reference.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseImageReference("tcpgadget:0.1.0"), {
 *   repository: "tcpgadget",
 *   tag: "0.1.0",
 *   familiar: "tcpgadget:0.1.0",
 *   full: "docker.io/library/tcpgadget:0.1.0",
 * });
 * const mine = parseImageReference("registry.example:5000/ops/tcpgadget");
 * assert.equal(mine.registry, "registry.example:5000");
 * assert.equal(mine.full, "registry.example:5000/ops/tcpgadget:latest");
 * assert.throws(() => parseImageReference("TcpGadget:1"), /--tag/);
 * ```
 */
export function parseImageReference(text: string, flag = "--tag"): ImageReference {
  const bad = (why: string) =>
    new UsageError(`${flag} "${text}" is not an image name: ${why} (e.g. tcpgadget:0.1.0)`);
  if (text.includes("@")) throw bad("a digest cannot be given, only a tag");
  // The tag is after the last ':' that follows the last '/' (before it: a port).
  const slash = text.lastIndexOf("/");
  const colon = text.lastIndexOf(":");
  const hasTag = colon > slash;
  const repository = hasTag ? text.slice(0, colon) : text;
  const tag = hasTag ? text.slice(colon + 1) : "latest";
  if (!TAG.test(tag)) throw bad(`tag "${tag}" is not letters, digits, '_', '.' and '-'`);
  if (repository.length === 0 || repository.length > MAX_NAME) {
    throw bad(`the name must have 1 to ${MAX_NAME} characters`);
  }
  const parts = repository.split("/");
  const first = parts[0];
  const hasRegistry = parts.length > 1 &&
    (first.includes(".") || first.includes(":") || first === "localhost");
  const registry = hasRegistry ? first : undefined;
  const path = hasRegistry ? parts.slice(1) : parts;
  if (registry !== undefined && !DOMAIN.test(registry)) {
    throw bad(`"${registry}" is not a registry host`);
  }
  for (const part of path) {
    if (!PATH_COMPONENT.test(part)) {
      throw bad(`"${part}" must be lowercase letters and digits, separated by '.', '_' or '-'`);
    }
  }
  const fullRepository = registry !== undefined
    ? repository
    : `docker.io/${path.length === 1 ? "library/" : ""}${path.join("/")}`;
  const reference: ImageReference = {
    repository,
    tag,
    familiar: `${repository}:${tag}`,
    full: `${fullRepository}:${tag}`,
  };
  if (registry !== undefined) reference.registry = registry;
  return reference;
}
