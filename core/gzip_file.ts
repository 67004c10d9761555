/**
 * Compressing a file into another with gzip, streamed (never whole in
 * memory) and in small steps, so that the program stays responsive (a
 * Ctrl-C is honoured at once) while ~100 MB are compressed.
 *
 * @module
 */

import fs from "node:fs";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";

/**
 * The level tcpgadget packs its upload with. Measured on tcpgadget's
 * payload (the Deno executable, 95.6 MB; 2026-12-06, this project's 2-core
 * VM): level 1 52.7 MB in 0.70 s, 3 43.4 MB in 1.23 s, 5 42.6 MB in 1.31 s,
 * 6 42.6 MB in 1.55 s, 9 41.3 MB in 5.1 s; gzip -dc unpacks any of them in
 * 0.6 to 0.75 s. Level 5: past it, each second of compression saves less
 * than 0.1 s of upload at 10 MB/s.
 */
export const GZIP_LEVEL = 5;

/**
 * Writes the gzip of `source` to `destination` and returns its size.
 * Aborting `signal` stops it (rejecting with the abort's reason).
 *
 * @example
 * ```ts
 * import { gzipFile } from "./gzip_file.ts";
 * import { gunzipSync } from "node:zlib";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * Deno.writeTextFileSync(`${dir}/a`, "tcpgadget ".repeat(1000));
 * const size = await gzipFile(`${dir}/a`, `${dir}/a.gz`);
 * assert.equal(size, Deno.statSync(`${dir}/a.gz`).size);
 * assert.ok(size < 200); // 10,000 bytes of a repeated word
 * assert.equal(gunzipSync(Deno.readFileSync(`${dir}/a.gz`)).toString(), "tcpgadget ".repeat(1000));
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export async function gzipFile(
  source: string,
  destination: string,
  options: { level?: number; signal?: AbortSignal } = {},
): Promise<number> {
  await pipeline(
    fs.createReadStream(source, { highWaterMark: 1 << 20 }),
    zlib.createGzip({ level: options.level ?? GZIP_LEVEL }),
    fs.createWriteStream(destination, { mode: 0o600 }),
    { signal: options.signal },
  );
  return (await Deno.stat(destination)).size;
}
