/**
 * Builds the cluster's Go programs into the cache, once per version:
 * kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
 * kube-proxy and kubectl from the `k8s.io/kubernetes` module, and etcd from
 * `go.etcd.io/etcd/server/v3`. Each gets a module of its own (their
 * dependency graphs differ) under the cache, Go's module and build caches
 * are kept there too, and the binaries land in `<component>-<version>/bin`,
 * renamed into place only when the whole build succeeded.
 *
 * @module
 */

import { cache, ETCD_BINARY, KUBERNETES_BINARIES, kubernetesBinary } from "./layout.ts";
import { VERSIONS } from "./versions.ts";
import { ClusterError, elapsed, exists, hasCommand, run, say } from "./util.ts";

function goCommand(): string {
  if (hasCommand("go")) return "go";
  if (exists("/usr/local/go/bin/go")) return "/usr/local/go/bin/go";
  throw new ClusterError("the Go toolchain is not installed (go on PATH or /usr/local/go/bin/go)");
}

function goEnv(): Record<string, string> {
  return {
    GOMODCACHE: cache.gomodcache,
    GOCACHE: cache.gocache,
    GOPATH: `${cache.dir}/go/path`,
    // Static binaries; -mod=mod lets `go get` write go.sum in the build module.
    CGO_ENABLED: "0",
    GOFLAGS: "-mod=mod -buildvcs=false",
    // Never fetch another toolchain behind our back.
    GOTOOLCHAIN: "local",
  };
}

/** Checks that the Go found is new enough, with one clear line if not. */
async function checkGo(go: string): Promise<void> {
  const { stdout } = await run(go, ["env", "GOVERSION"]);
  const match = stdout.trim().match(/^go(\d+)\.(\d+)/);
  const [major, minor] = VERSIONS.minGo.split(".").map(Number);
  if (
    !match || Number(match[1]) < major || (Number(match[1]) === major && Number(match[2]) < minor)
  ) {
    throw new ClusterError(`Go ${VERSIONS.minGo} or newer is needed, found ${stdout.trim()}`);
  }
}

function allPresent(paths: string[]): boolean {
  return paths.every(exists);
}

/** The Kubernetes binaries, built unless cached. */
export async function buildKubernetes(): Promise<void> {
  const binaries = KUBERNETES_BINARIES.map(kubernetesBinary);
  if (allPresent(binaries)) return;
  const go = goCommand();
  await checkGo(go);
  const start = Date.now();
  say(`building Kubernetes ${VERSIONS.kubernetes} (first run on this machine: several minutes)`);
  const env = goEnv();
  const src = `${cache.kubernetes}/src`;
  Deno.mkdirSync(src, { recursive: true });

  // The module's own go.mod replaces its staging modules (k8s.io/api, ...)
  // with ./staging/src/..., which the module zip does not contain and which
  // a dependency's replacements cannot do anyway: replace each with its
  // published version instead.
  const download = await run(go, [
    "mod",
    "download",
    "-json",
    `k8s.io/kubernetes@${VERSIONS.kubernetes}`,
  ], {
    env,
    cwd: src,
  });
  const goModPath = JSON.parse(download.stdout).GoMod as string;
  const staging = [
    ...Deno.readTextFileSync(goModPath).matchAll(/^\s+(k8s\.io\/[\w.-]+) => \.\/staging\//gm),
  ]
    .map((m) => m[1]);
  if (staging.length === 0) throw new ClusterError(`no staging modules found in ${goModPath}`);
  Deno.writeTextFileSync(
    `${src}/go.mod`,
    [
      "module tcpgadget.test/kubernetes",
      "",
      "go 1.24.0",
      "",
      // As k8s.io/kubernetes's own go.mod says.
      "godebug default=go1.24",
      "",
      `require k8s.io/kubernetes ${VERSIONS.kubernetes}`,
      "",
      "replace (",
      ...staging.map((mod) => `\t${mod} => ${mod} ${VERSIONS.kubernetesStaging}`),
      ")",
      "",
    ].join("\n"),
  );
  const packages = KUBERNETES_BINARIES.map((name) => `k8s.io/kubernetes/cmd/${name}`);
  await run(go, ["get", ...packages.map((p) => `${p}@${VERSIONS.kubernetes}`)], { env, cwd: src });

  // The version the binaries report (kubectl version, the node's kubelet
  // version), as Kubernetes' own build sets it.
  const [major, minor] = VERSIONS.kubernetes.replace(/^v/, "").split(".");
  const ldflags = ["-s", "-w"];
  for (const pkg of ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"]) {
    ldflags.push(
      `-X ${pkg}.gitVersion=${VERSIONS.kubernetes}`,
      `-X ${pkg}.gitMajor=${major}`,
      `-X ${pkg}.gitMinor=${minor}`,
      `-X ${pkg}.gitTreeState=clean`,
    );
  }
  const tmp = `${cache.kubernetes}/bin.tmp`;
  removeIfExists(tmp);
  await buildInto(go, env, src, tmp, ldflags.join(" "), packages);
  removeIfExists(`${cache.kubernetes}/bin`);
  Deno.renameSync(tmp, `${cache.kubernetes}/bin`);
  say(`built Kubernetes ${VERSIONS.kubernetes} in ${elapsed(start)} s`);
}

/** etcd, built unless cached: a main that calls etcdmain, as etcd's own main does. */
export async function buildEtcd(): Promise<void> {
  if (exists(ETCD_BINARY)) return;
  const go = goCommand();
  await checkGo(go);
  const start = Date.now();
  say(`building etcd ${VERSIONS.etcd}`);
  const env = goEnv();
  const src = `${cache.etcd}/src`;
  Deno.mkdirSync(src, { recursive: true });
  Deno.writeTextFileSync(
    `${src}/main.go`,
    [
      "package main",
      "",
      'import (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)',
      "",
      "func main() { etcdmain.Main(os.Args) }",
      "",
    ].join("\n"),
  );
  Deno.writeTextFileSync(
    `${src}/go.mod`,
    `module tcpgadget.test/etcd\n\ngo 1.24.0\n\nrequire go.etcd.io/etcd/server/v3 ${VERSIONS.etcd}\n`,
  );
  await run(go, ["mod", "tidy"], { env, cwd: src });
  const tmp = `${cache.etcd}/bin.tmp`;
  removeIfExists(tmp);
  await buildInto(go, env, src, tmp, "-s -w", ["."], "etcd");
  removeIfExists(`${cache.etcd}/bin`);
  Deno.renameSync(tmp, `${cache.etcd}/bin`);
  say(`built etcd ${VERSIONS.etcd} in ${elapsed(start)} s`);
}

function removeIfExists(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

async function buildInto(
  go: string,
  env: Record<string, string>,
  cwd: string,
  outDir: string,
  ldflags: string,
  packages: string[],
  single?: string,
): Promise<void> {
  Deno.mkdirSync(outDir, { recursive: true });
  const out = single ? `${outDir}/${single}` : `${outDir}/`;
  const result = await run(
    go,
    ["build", "-trimpath", "-ldflags", ldflags, "-o", out, ...packages],
    {
      env,
      cwd,
      allowFail: true,
    },
  );
  if (result.code !== 0) {
    const tail = result.stderr.trim().split("\n").slice(-5).join(" | ");
    throw new ClusterError(`go build in ${cwd} failed: ${tail}`);
  }
}
