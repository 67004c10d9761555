/**
 * The agent image: an image that holds the running tcpgadget and nothing
 * else it does not need, so that agent pods run it without an upload.
 *
 * - {@link AGENT_IMAGE_PROGRAM} runs tcpgadget with its arguments, no
 *   shell involved: the compiled binary itself, or (under `deno run`) a
 *   launcher whose first line `#!/opt/tcpgadget/deno -A` has the kernel
 *   start the Deno executable put there, and which imports the program's
 *   bundle (or, for the agent pod's idle process, that command's own);
 * - the dynamic loader and every shared library the executable and the
 *   embedded libbpf need (elf_dependencies.ts), as regular files where the
 *   loader looks by default;
 * - `/tmp`, mode 1777, where Deno keeps its cache (DENO_DIR).
 *
 * Its config runs the program as entrypoint with the environment the
 * upload gives it (core/self_program.ts). Same program, same image: the
 * layer and archive are reproducible (reproducible_tar.ts), and the config
 * has no build time.
 *
 * @module
 */

import { TcpgadgetError } from "../../core/errors.ts";
import { EMBEDDED_LIBBPF } from "../../core/libbpf_embedded.ts";
import {
  bundleProgram,
  PROGRAM_V8_FLAGS,
  programEnvironment,
  type SelfProgram,
} from "../../core/self_program.ts";
import { elfDependencies } from "./elf_dependencies.ts";
import { elfLinkingOfBytes, elfLinkingOfFile } from "./elf_file.ts";
import type { ImageReference } from "./image_reference.ts";
import { type LayerBlob, type LayerEntry, writeLayer } from "./image_layer.ts";
import type { OciArchiveFile, WrittenArchive } from "./oci_archive.ts";

/** The program in the agent image: `AGENT_IMAGE_PROGRAM trace tcp ...` runs tcpgadget. */
export const AGENT_IMAGE_PROGRAM = "/usr/local/bin/tcpgadget";

/** The Deno executable in an image built under `deno run`. */
export const AGENT_IMAGE_DENO = "/opt/tcpgadget/deno";

/** Deno's cache in the image (written at each start; /tmp is writable by anyone). */
export const AGENT_IMAGE_DENO_DIR = "/tmp/deno";

/** The program's bundle in an image built under `deno run`. */
export const AGENT_IMAGE_BUNDLE = "/opt/tcpgadget/tcpgadget.js";

/** The bundle of `tcpgadget agent idle` alone (cli/agent_idle.ts), for the pod's idle process. */
export const AGENT_IMAGE_IDLE_BUNDLE = "/opt/tcpgadget/agent_idle.js";

/**
 * The launcher's first line: the kernel runs `/opt/tcpgadget/deno -A
 * /usr/local/bin/tcpgadget ARGS...`. One argument at most fits on a `#!`
 * line, so the V8 flags are in the environment (DENO_V8_FLAGS).
 */
export const BUNDLE_SHEBANG = `#!${AGENT_IMAGE_DENO} -A\n`;

/**
 * {@link AGENT_IMAGE_PROGRAM} under `deno run`: a launcher rather than the
 * bundle behind a `#!` line, for memory (RSS measured after start, Deno
 * 2.9.6, a fresh DENO_DIR as in a new pod): Deno reads a file without an
 * extension as TypeScript (the whole program: 196 MB instead of 146 MB
 * as .js), and its parse of the whole program, however little of it runs,
 * costs about 110 MB, which the pod's idle process (`agent idle SECONDS`)
 * spares with its own small bundle. The paths are not string literals, so
 * that Deno loads only the one imported.
 *
 * @example
 * ```ts
 * import { LAUNCHER } from "./agent_image.ts";
 * import assert from "node:assert/strict";
 * assert.ok(LAUNCHER.startsWith("#!/opt/tcpgadget/deno -A\n"));
 * assert.ok(LAUNCHER.includes('"/opt/tcpgadget/tcpgadget.js"'));
 * ```
 */
export const LAUNCHER =
  `${BUNDLE_SHEBANG}// tcpgadget's agent image: starts ${AGENT_IMAGE_BUNDLE} (see k8s/image/agent_image.ts).
const args = Deno.args;
const idle = args.length === 3 && args[0] === "agent" && args[1] === "idle" && /^\\d+$/.test(args[2]);
const paths = { idle: ${JSON.stringify(AGENT_IMAGE_IDLE_BUNDLE)}, program: ${
    JSON.stringify(AGENT_IMAGE_BUNDLE)
  } };
const module = await import(idle ? paths.idle : paths.program);
Deno.exit(idle ? await module.agent(args.slice(1)) : await module.main(args));
`;

/** The image's time: none (the epoch), so that it depends on the program only. */
const CREATED = "1970-01-01T00:00:00Z";

/**
 * The OCI name of a Deno architecture.
 *
 * @example
 * ```ts
 * import { ociArchitecture } from "./agent_image.ts";
 * import assert from "node:assert/strict";
 * assert.equal(ociArchitecture("x86_64"), "amd64");
 * assert.equal(ociArchitecture("aarch64"), "arm64");
 * ```
 */
export function ociArchitecture(arch: string = Deno.build.arch): string {
  if (arch === "x86_64") return "amd64";
  if (arch === "aarch64") return "arm64";
  throw new TcpgadgetError(`no image architecture for ${arch} (only x86_64, aarch64)`);
}

/**
 * The files of the agent image for `program` (absolute paths in the
 * image). Under `deno run`, the program file (the bundle behind its `#!`
 * line) is written into `workDir` first.
 */
export async function agentImageEntries(
  program: SelfProgram,
  workDir: string,
  options: { idleEntry?: URL; signal?: AbortSignal } = {},
): Promise<LayerEntry[]> {
  const executable = program.compiled ? program.binary : program.deno;
  const dependencies = elfDependencies([
    { name: executable, linking: elfLinkingOfFile(executable) },
    // Loaded at run time from memory (core/libbpf_embedded.ts): its needs count too.
    { name: "the embedded libbpf", linking: elfLinkingOfBytes(EMBEDDED_LIBBPF, "libbpf") },
  ]);
  const entries: LayerEntry[] = [{ kind: "directory", path: "/tmp", mode: 0o1777 }];
  if (program.compiled) {
    entries.push({ kind: "file", path: AGENT_IMAGE_PROGRAM, mode: 0o755, source: program.binary });
  } else {
    if (!options.idleEntry) {
      throw new TcpgadgetError("an image of a bundle needs the idle command's module");
    }
    const launcher = `${workDir}/agent-launcher`;
    await Deno.writeTextFile(launcher, LAUNCHER, { createNew: true });
    const idle = `${workDir}/agent_idle.js`;
    await bundleProgram(options.idleEntry, idle, options.signal);
    entries.push(
      { kind: "file", path: AGENT_IMAGE_PROGRAM, mode: 0o755, source: launcher },
      { kind: "file", path: AGENT_IMAGE_DENO, mode: 0o755, source: program.deno },
      { kind: "file", path: AGENT_IMAGE_BUNDLE, mode: 0o644, source: program.bundle },
      { kind: "file", path: AGENT_IMAGE_IDLE_BUNDLE, mode: 0o644, source: idle },
    );
  }
  for (const file of [dependencies.interpreter ?? [], dependencies.libraries].flat()) {
    entries.push({ kind: "file", path: file.path, mode: 0o755, source: file.source });
  }
  return entries;
}

/**
 * The image config (without rootfs, which the archive fills in):
 * entrypoint, environment, labels, and one history entry.
 *
 * @example
 * ```ts
 * import { agentImageConfig } from "./agent_image.ts";
 * import assert from "node:assert/strict";
 * const config = agentImageConfig({ version: "0.1.0", architecture: "amd64", compiled: false });
 * assert.deepEqual(config.config, {
 *   Entrypoint: ["/usr/local/bin/tcpgadget"],
 *   Env: [
 *     "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
 *     "DENO_DIR=/tmp/deno",
 *     "DENO_NO_UPDATE_CHECK=1",
 *     "DENO_V8_FLAGS=--max-semi-space-size=4",
 *   ],
 *   WorkingDir: "/",
 *   Labels: {
 *     "org.opencontainers.image.title": "tcpgadget",
 *     "org.opencontainers.image.version": "0.1.0",
 *   },
 * });
 * ```
 */
export function agentImageConfig(
  options: { version: string; architecture: string; compiled: boolean },
): Record<string, unknown> {
  const env = {
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ...programEnvironment(AGENT_IMAGE_DENO_DIR),
    DENO_V8_FLAGS: PROGRAM_V8_FLAGS,
  };
  return {
    created: CREATED,
    architecture: options.architecture,
    os: "linux",
    config: {
      Entrypoint: [AGENT_IMAGE_PROGRAM],
      Env: Object.entries(env).map(([name, value]) => `${name}=${value}`),
      WorkingDir: "/",
      Labels: {
        "org.opencontainers.image.title": "tcpgadget",
        "org.opencontainers.image.version": options.version,
      },
    },
    history: [{
      created: CREATED,
      created_by: "tcpgadget image build",
      comment: `tcpgadget ${options.version} (${
        options.compiled ? "compiled binary" : "Deno and a bundle"
      }), its loader and libraries`,
    }],
  };
}

/** The agent image written: the archive, and its one layer. */
export interface AgentImage extends WrittenArchive {
  layer: LayerBlob;
}

/**
 * Writes the agent image of `program` into `archive` (renamed to its
 * output when complete). Temporary files go to `workDir` (the caller
 * removes it). Aborting `signal` stops it within a chunk (1 MiB).
 */
export async function writeAgentImage(
  archive: OciArchiveFile,
  options: {
    program: SelfProgram;
    version: string;
    reference: ImageReference;
    workDir: string;
    /** The module of `tcpgadget agent idle` (cli/agent_idle.ts): bundled alone under `deno run`. */
    idleEntry?: URL;
    signal?: AbortSignal;
  },
): Promise<AgentImage> {
  const { program, workDir, signal } = options;
  const entries = await agentImageEntries(program, workDir, {
    idleEntry: options.idleEntry,
    signal,
  });
  signal?.throwIfAborted();
  const layer = await writeLayer(entries, `${workDir}/layer.tar.gz`, signal);
  const config = agentImageConfig({
    version: options.version,
    architecture: ociArchitecture(),
    compiled: program.compiled,
  });
  const written = await archive.write({
    reference: options.reference,
    config,
    layers: [layer],
    signal,
  });
  return { ...written, layer };
}
