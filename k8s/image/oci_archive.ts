/**
 * An image as one file: an OCI image layout in a tar (`oci-layout`,
 * `index.json`, `blobs/sha256/...`: what `skopeo copy oci-archive:FILE`
 * and `crane push FILE` read), with Docker's `manifest.json` beside it so
 * that `docker load` takes it too (as `docker save` of Docker 25 and later
 * writes). The archive is written under a temporary name next to the
 * output and renamed only once complete: an interrupted build leaves no
 * half archive.
 *
 * @module
 */

import { createHash } from "node:crypto";
import fs from "node:fs";
import { basename, dirname } from "node:path";
import { errorLine, TcpgadgetError } from "../../core/errors.ts";
import type { ImageReference } from "./image_reference.ts";
import { LAYER_MEDIA_TYPE, type LayerBlob } from "./image_layer.ts";
import { ReproducibleTar } from "./reproducible_tar.ts";

/** Media type of the image manifest. */
export const MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json";
/** Media type of the image config. */
export const CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json";
/** Media type of the index. */
export const INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json";

/** What {@link OciArchiveFile.write} wrote. */
export interface WrittenArchive {
  /** The archive's path (the output). */
  path: string;
  /** Its size in bytes. */
  size: number;
  /** `sha256:<hex>` of the manifest: the image's digest in any registry it is pushed to. */
  manifestDigest: string;
  /** `sha256:<hex>` of the config: the image ID Docker shows. */
  configDigest: string;
}

/** A blob of the archive: its digest, size and where its bytes are. */
interface Blob {
  digest: string;
  size: number;
  bytes?: Uint8Array;
  path?: string;
}

function jsonBlob(value: unknown): Blob & { bytes: Uint8Array } {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  return {
    digest: `sha256:${createHash("sha256").update(bytes).digest("hex")}`,
    size: bytes.length,
    bytes,
  };
}

/** A blob's name in the layout: `blobs/sha256/<hex>`. */
function blobName(digest: string): string {
  return `blobs/${digest.replace(":", "/")}`;
}

/**
 * The archive to be written at `output`: made by {@link OciArchiveFile.create}
 * (which fails at once if the output cannot be written), filled by
 * {@link OciArchiveFile.write}, and its temporary file removed by
 * {@link OciArchiveFile.discard} if it was not written (call it on every
 * way out).
 */
export class OciArchiveFile {
  readonly output: string;
  readonly #temporary: string;
  #done = false;
  readonly #removeAtExit = () => this.#removeSync();

  private constructor(output: string, temporary: string) {
    this.output = output;
    this.#temporary = temporary;
  }

  /**
   * Creates the archive's temporary file next to `output`; throws a
   * one-line TcpgadgetError if its directory is missing or not writable.
   */
  static async create(output: string): Promise<OciArchiveFile> {
    const directory = dirname(output);
    const suffix = [...crypto.getRandomValues(new Uint8Array(4))]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    const temporary = `${directory}/.${basename(output)}.${suffix}.part`;
    try {
      const info = await Deno.stat(output).catch(() => undefined);
      if (info?.isDirectory) throw new TcpgadgetError(`cannot write ${output}: it is a directory`);
      (await Deno.open(temporary, { createNew: true, write: true, mode: 0o644 })).close();
    } catch (error) {
      if (error instanceof TcpgadgetError) throw error;
      const why = error instanceof Deno.errors.NotFound
        ? `directory ${directory} does not exist`
        : error instanceof Deno.errors.PermissionDenied
        ? `directory ${directory} is not writable`
        : error instanceof Deno.errors.NotADirectory
        ? `${directory} is not a directory`
        : (error as { code?: string }).code === "EROFS"
        ? `directory ${directory} is on a read-only file system`
        : errorLine(error);
      throw new TcpgadgetError(`cannot write ${output}: ${why}`);
    }
    const archive = new OciArchiveFile(output, temporary);
    // However the process ends short of SIGKILL, no half archive stays.
    globalThis.addEventListener("unload", archive.#removeAtExit);
    return archive;
  }

  /**
   * Writes the image of `config` (its rootfs is filled in from `layers`)
   * named `reference`, and renames the archive to the output. Aborting
   * `signal` stops it (then this rejects; `discard` removes the file).
   */
  async write(
    options: {
      reference: ImageReference;
      config: Record<string, unknown>;
      layers: LayerBlob[];
      signal?: AbortSignal;
    },
  ): Promise<WrittenArchive> {
    const { reference, layers, signal } = options;
    const config = jsonBlob({
      ...options.config,
      rootfs: { type: "layers", diff_ids: layers.map((layer) => layer.diffId) },
    });
    const manifest = jsonBlob({
      schemaVersion: 2,
      mediaType: MANIFEST_MEDIA_TYPE,
      config: { mediaType: CONFIG_MEDIA_TYPE, digest: config.digest, size: config.size },
      layers: layers.map((layer) => ({
        mediaType: LAYER_MEDIA_TYPE,
        digest: layer.digest,
        size: layer.size,
      })),
    });
    const index = jsonBlob({
      schemaVersion: 2,
      mediaType: INDEX_MEDIA_TYPE,
      manifests: [{
        mediaType: MANIFEST_MEDIA_TYPE,
        digest: manifest.digest,
        size: manifest.size,
        annotations: {
          "io.containerd.image.name": reference.full,
          "org.opencontainers.image.ref.name": reference.tag,
        },
      }],
    });
    const dockerManifest = jsonBlob([{
      Config: blobName(config.digest),
      RepoTags: [reference.familiar],
      Layers: layers.map((layer) => blobName(layer.digest)),
    }]);
    const blobs = new Map<string, Blob>();
    for (const blob of [config, manifest, ...layers]) blobs.set(blob.digest, blob);
    // Sorted by name: the same image gives the same archive.
    const files: [string, Blob][] = [
      ...[...blobs.values()].map((blob): [string, Blob] => [blobName(blob.digest), blob]),
      ["index.json", index],
      ["manifest.json", dockerManifest],
      ["oci-layout", jsonBlob({ imageLayoutVersion: "1.0.0" })],
    ];
    files.sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);

    const tar = new ReproducibleTar([fs.createWriteStream(this.#temporary)], {
      what: this.output,
      signal,
    });
    await tar.directory("blobs/");
    await tar.directory("blobs/sha256/");
    for (const [name, blob] of files) {
      if (blob.path !== undefined) await tar.file(name, blob.path);
      else await tar.bytes(name, blob.bytes!);
    }
    await tar.close();
    let size: number;
    try {
      // On disk before it takes the output's name: a crash then leaves the
      // old file or the whole new one.
      using file = await Deno.open(this.#temporary, { write: true });
      await file.sync();
      size = (await file.stat()).size;
      signal?.throwIfAborted();
      await Deno.rename(this.#temporary, this.output);
    } catch (error) {
      if (signal?.aborted || error instanceof TcpgadgetError) throw error;
      throw new TcpgadgetError(`writing ${this.output}: ${errorLine(error)}`, { cause: error });
    }
    this.#done = true;
    globalThis.removeEventListener("unload", this.#removeAtExit);
    return {
      path: this.output,
      size,
      manifestDigest: manifest.digest,
      configDigest: config.digest,
    };
  }

  /** Removes the temporary file unless the archive was written. */
  async discard(): Promise<void> {
    globalThis.removeEventListener("unload", this.#removeAtExit);
    if (this.#done) return;
    this.#done = true;
    await Deno.remove(this.#temporary).catch(() => {});
  }

  #removeSync(): void {
    if (this.#done) return;
    this.#done = true;
    try {
      Deno.removeSync(this.#temporary);
    } catch {
      // already removed
    }
  }
}
