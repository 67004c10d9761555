/**
 * A real container registry on loopback for the tests: Debian's
 * `docker-registry` (the CNCF Distribution registry), plain HTTP, its
 * storage in a temporary directory, open or behind a user and password
 * (htpasswd, bcrypt); images pushed to it with `skopeo`. Removed, process
 * and storage, when disposed.
 *
 * @module
 */

import bcrypt from "bcryptjs";
import { hasCommand } from "./privileges.ts";

const REGISTRY = "/usr/bin/docker-registry";

/** Why a registry cannot be run here, or undefined. */
export function registrySkipReason(): string | undefined {
  if (!hasCommand(REGISTRY)) return `${REGISTRY} is missing (apt-get install docker-registry)`;
  if (!hasCommand("skopeo")) return "skopeo is missing (apt-get install skopeo)";
  return undefined;
}

function freePort(): number {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = probe.addr as Deno.NetAddr;
  probe.close();
  return port;
}

async function run(command: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder();
  if (!output.success) {
    throw new Error(`${command} ${args.join(" ")} failed: ${text.decode(output.stderr).trim()}`);
  }
  return text.decode(output.stdout);
}

/** A running registry on 127.0.0.1. */
export class Registry implements AsyncDisposable {
  /** `127.0.0.1:PORT`: the registry part of its image references. */
  readonly host: string;
  readonly #dir: string;
  readonly #child: Deno.ChildProcess;

  private constructor(host: string, dir: string, child: Deno.ChildProcess) {
    this.host = host;
    this.#dir = dir;
    this.#child = child;
  }

  /** The user and password it requires, if any. */
  credentials: { user: string; password: string } | undefined;

  /**
   * Starts a registry, which requires `credentials` if given, and waits
   * until it answers `/v2/`.
   */
  static async start(credentials?: { user: string; password: string }): Promise<Registry> {
    const dir = await Deno.makeTempDir({ prefix: "tcpgadget-registry-" });
    const host = `127.0.0.1:${freePort()}`;
    if (credentials) {
      Deno.writeTextFileSync(
        `${dir}/htpasswd`,
        `${credentials.user}:${bcrypt.hashSync(credentials.password, 4)}\n`,
      );
    }
    Deno.writeTextFileSync(
      `${dir}/config.yml`,
      [
        "version: 0.1",
        "log:",
        "  level: warn",
        "storage:",
        "  filesystem:",
        `    rootdirectory: ${dir}/storage`,
        "  delete:",
        "    enabled: true",
        "http:",
        `  addr: ${host}`,
        ...(credentials
          ? ["auth:", "  htpasswd:", "    realm: tcpgadget-test", `    path: ${dir}/htpasswd`]
          : []),
        "",
      ].join("\n"),
    );
    const child = new Deno.Command(REGISTRY, {
      args: ["serve", `${dir}/config.yml`],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const registry = new Registry(host, dir, child);
    registry.credentials = credentials;
    let stderr = "";
    const reading = (async () => {
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) stderr += chunk;
    })();
    registry.#stderr = reading;
    let exited = false;
    child.status.then(() => exited = true);
    for (const deadline = Date.now() + 30_000; Date.now() < deadline && !exited;) {
      try {
        const response = await fetch(`http://${host}/v2/`);
        await response.body?.cancel();
        if (response.status === (credentials ? 401 : 200)) return registry;
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await registry[Symbol.asyncDispose]();
    throw new Error(`the registry did not start on ${host}: ${stderr.trim()}`);
  }

  #stderr: Promise<void> | undefined;

  /**
   * Pushes an OCI archive as `repository:tag` (skopeo, plain HTTP); returns
   * the manifest digest the registry stored.
   */
  async push(archive: string, repositoryTag: string): Promise<string> {
    const digestFile = `${this.#dir}/digest-${crypto.randomUUID()}`;
    await run("skopeo", [
      "copy",
      "--quiet",
      "--dest-tls-verify=false",
      ...(this.credentials
        ? [`--dest-creds=${this.credentials.user}:${this.credentials.password}`]
        : []),
      "--digestfile",
      digestFile,
      `oci-archive:${archive}`,
      `docker://${this.host}/${repositoryTag}`,
    ]);
    const digest = Deno.readTextFileSync(digestFile).trim();
    Deno.removeSync(digestFile);
    return digest;
  }

  /** The digest of `repository:tag` as the registry serves it (skopeo inspect). */
  async digest(repositoryTag: string): Promise<string> {
    const inspected = JSON.parse(
      await run("skopeo", [
        "inspect",
        "--tls-verify=false",
        ...(this.credentials
          ? [`--creds=${this.credentials.user}:${this.credentials.password}`]
          : []),
        `docker://${this.host}/${repositoryTag}`,
      ]),
    );
    return inspected.Digest;
  }

  /** A `kubernetes.io/dockerconfigjson` Secret's data for its credentials. */
  dockerConfigJson(): string {
    const { user, password } = this.credentials!;
    return JSON.stringify({
      auths: { [this.host]: { username: user, password, auth: btoa(`${user}:${password}`) } },
    });
  }

  /**
   * Declares the registry to a containerd whose registry config_path is
   * `hostsDir` (pulled from over plain HTTP, as registries on loopback
   * are; containerd reads the directory at each pull); undone on dispose.
   */
  declareTo(hostsDir: string): void {
    const dir = `${hostsDir}/${this.host}`;
    Deno.mkdirSync(dir, { recursive: true });
    Deno.writeTextFileSync(
      `${dir}/hosts.toml`,
      [
        `server = "http://${this.host}"`,
        "",
        `[host."http://${this.host}"]`,
        '  capabilities = ["pull", "resolve"]',
        "",
      ].join("\n"),
    );
    this.#declared.push(dir);
  }

  #declared: string[] = [];

  async [Symbol.asyncDispose](): Promise<void> {
    for (const dir of this.#declared.splice(0)) await Deno.remove(dir, { recursive: true });
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // ended
    }
    await this.#child.status;
    await this.#stderr;
    await Deno.remove(this.#dir, { recursive: true });
  }
}

/**
 * Removes from a containerd (the CRI namespace, `k8s.io`) the images whose
 * names start with `prefix`: what its kubelet pulled from a test registry.
 */
export async function forgetImages(containerdSocket: string, prefix: string): Promise<void> {
  const ctr = (args: string[]) =>
    new Deno.Command("ctr", {
      args: ["--address", containerdSocket, "--namespace", "k8s.io", ...args],
      stdout: "piped",
      stderr: "null",
    }).output();
  const listed = new TextDecoder().decode((await ctr(["images", "ls", "--quiet"])).stdout);
  const refs = listed.split("\n").filter((ref) => ref.startsWith(prefix));
  if (refs.length > 0) await ctr(["images", "rm", ...refs]);
}
