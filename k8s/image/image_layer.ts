/**
 * An image layer: the files of an image as a reproducible tar, compressed
 * with gzip once, into a file, with the two digests an image names it by
 * (of the gzip: the blob; of the tar: the config's diff_id), computed as
 * it is written.
 *
 * @module
 */

import fs from "node:fs";
import zlib from "node:zlib";
import { GZIP_LEVEL } from "../../core/gzip_file.ts";
import { DigestStream } from "./digest_stream.ts";
import { ReproducibleTar } from "./reproducible_tar.ts";

/** Media type of a layer: a tar compressed with gzip. */
export const LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip";

/** One entry of a layer: a directory, or a file copied from here. */
export type LayerEntry =
  | { kind: "directory"; path: string; mode: number }
  | { kind: "file"; path: string; mode: number; source: string };

/** A layer written to a file. */
export interface LayerBlob {
  /** The file here (the gzip). */
  path: string;
  /** `sha256:<hex>` of the gzip: the blob's name. */
  digest: string;
  /** Size of the gzip. */
  size: number;
  /** `sha256:<hex>` of the tar: the config's diff_id. */
  diffId: string;
  /** Size of the tar. */
  tarSize: number;
  /** The tar's entries in order (directories end with "/"). */
  names: string[];
}

/**
 * The tar entries for `entries` (absolute paths in the image): each
 * directory on the way made too (mode 0755 unless given), sorted so that
 * a directory comes before what it holds.
 *
 * @example
 * ```ts
 * import { layerEntries } from "./image_layer.ts";
 * import assert from "node:assert/strict";
 * const entries = layerEntries([
 *   { kind: "file", path: "/usr/bin/a", mode: 0o755, source: "/bin/true" },
 *   { kind: "directory", path: "/tmp", mode: 0o1777 },
 * ]);
 * assert.deepEqual(entries.map(([name, entry]) => [name, entry.mode]), [
 *   ["tmp/", 0o1777], ["usr/", 0o755], ["usr/bin/", 0o755], ["usr/bin/a", 0o755],
 * ]);
 * ```
 */
export function layerEntries(entries: LayerEntry[]): [string, LayerEntry][] {
  const byName = new Map<string, LayerEntry>();
  for (const entry of entries) {
    const parts = entry.path.split("/").slice(1);
    if (!entry.path.startsWith("/") || parts.some((part) => ["", ".", ".."].includes(part))) {
      throw new Error(`layer path "${entry.path}" is not a plain absolute path`);
    }
    const name = parts.join("/") + (entry.kind === "directory" ? "/" : "");
    if (byName.has(name)) throw new Error(`layer path "${entry.path}" given twice`);
    byName.set(name, entry);
  }
  for (const entry of entries) {
    const parts = entry.path.split("/").slice(1, -1);
    for (let i = 1; i <= parts.length; i++) {
      const name = `${parts.slice(0, i).join("/")}/`;
      if (!byName.has(name)) {
        byName.set(name, { kind: "directory", path: `/${name.slice(0, -1)}`, mode: 0o755 });
      }
    }
  }
  return [...byName].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);
}

/**
 * Writes the layer of `entries` to `destination` (a tar, gzip level
 * GZIP_LEVEL). Aborting `signal` stops it: this rejects, and the partial
 * file is the caller's to remove.
 */
export async function writeLayer(
  entries: LayerEntry[],
  destination: string,
  signal?: AbortSignal,
): Promise<LayerBlob> {
  const sorted = layerEntries(entries);
  const tarDigest = new DigestStream();
  const gzipDigest = new DigestStream();
  const tar = new ReproducibleTar([
    tarDigest,
    // Node's gzip header has no time nor name: the same tar gives the same bytes.
    zlib.createGzip({ level: GZIP_LEVEL }),
    gzipDigest,
    fs.createWriteStream(destination, { mode: 0o600 }),
  ], { what: `the image layer ${destination}`, signal });
  for (const [name, entry] of sorted) {
    if (entry.kind === "directory") await tar.directory(name, entry.mode);
    else await tar.file(name, entry.source, entry.mode);
  }
  await tar.close();
  return {
    path: destination,
    digest: gzipDigest.digest,
    size: gzipDigest.size,
    diffId: tarDigest.digest,
    tarSize: tarDigest.size,
    names: sorted.map(([name]) => name),
  };
}
