/**
 * Flags of `tcpgadget trace tcp`, named as Inspektor Gadget names them.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { UsageError } from "../core/errors.ts";
import { MAX_TIMEOUT_SECONDS } from "./stop_control.ts";

/** Parsed and validated flags of `trace tcp`. */
export interface TraceFlags {
  output: string;
  /** Seconds; undefined: until interrupted. */
  timeout?: number;
  pid?: number;
  comm?: string;
  connectOnly: boolean;
  acceptOnly: boolean;
  failureOnly: boolean;
  namespace?: string;
  allNamespaces: boolean;
  podname?: string;
  containername?: string;
  /** `-l k=v,k2=v2` as pairs. */
  selector?: Record<string, string>;
  nodes?: string[];
  /** Include host processes when a container filter is given. */
  host: boolean;
  /** Name remote addresses from DNS answers and hosts files (DSTNAME, `dstname`). */
  names: boolean;
  /** Where the host's root file system is (in a pod: /host). */
  hostRoot: string;
  /** Name printed as NODE (default: the host name). */
  nodeName?: string;
  /** Trace the cluster of the kubeconfig instead of this host. */
  cluster: boolean;
  kubeconfig?: string;
  context?: string;
  /** Node mode: use the service account of the pod this runs in for the API. */
  inCluster: boolean;
  /** Namespace of the agent pods (cluster mode). */
  agentNamespace?: string;
  /** Image of the agent pods, into which tcpgadget is uploaded (cluster mode). */
  image?: string;
  /** Image that holds tcpgadget (`tcpgadget image build`): nothing uploaded (cluster mode). */
  agentImage?: string;
  /** Secrets the agent pods pull their image with (imagePullSecrets; cluster mode). */
  imagePullSecrets?: string[];
  /** Internal, node mode in an agent pod: the pid file by which it stops an earlier agent. */
  agentPidFile?: string;
  /** Copies of tcpgadget at once from one sender: this machine, or an agent (cluster mode). */
  maxParallelUploads?: number;
  help: boolean;
}

/** The most copies at once from one sender that --max-parallel-uploads takes. */
export const MAX_PARALLEL_UPLOADS = 256;

/** The flags of `trace tcp`: what parses them, and what writes them back (traceArgs). */
const OPTIONS = {
  output: { type: "string", short: "o", default: "columns" },
  timeout: { type: "string", short: "t" },
  pid: { type: "string" },
  comm: { type: "string" },
  "connect-only": { type: "boolean", default: false },
  "accept-only": { type: "boolean", default: false },
  "failure-only": { type: "boolean", default: false },
  namespace: { type: "string", short: "n" },
  "all-namespaces": { type: "boolean", short: "A", default: false },
  podname: { type: "string", short: "p" },
  containername: { type: "string", short: "c" },
  selector: { type: "string", short: "l" },
  node: { type: "string" },
  host: { type: "boolean", default: false },
  names: { type: "boolean", default: false },
  "host-root": { type: "string", default: "/" },
  "node-name": { type: "string" },
  cluster: { type: "boolean", default: false },
  kubeconfig: { type: "string" },
  context: { type: "string" },
  "in-cluster": { type: "boolean", default: false },
  "agent-namespace": { type: "string" },
  image: { type: "string" },
  "agent-image": { type: "string" },
  "image-pull-secret": { type: "string" },
  "agent-pid-file": { type: "string" },
  "max-parallel-uploads": { type: "string" },
  help: { type: "boolean", short: "h", default: false },
} as const;

type OptionName = keyof typeof OPTIONS;

/** The long names of every flag of `trace tcp`. */
export const TRACE_FLAG_NAMES: readonly string[] = Object.keys(OPTIONS);

/** The field of {@link TraceFlags} each flag sets. */
const FIELDS = {
  output: "output",
  timeout: "timeout",
  pid: "pid",
  comm: "comm",
  "connect-only": "connectOnly",
  "accept-only": "acceptOnly",
  "failure-only": "failureOnly",
  namespace: "namespace",
  "all-namespaces": "allNamespaces",
  podname: "podname",
  containername: "containername",
  selector: "selector",
  node: "nodes",
  host: "host",
  names: "names",
  "host-root": "hostRoot",
  "node-name": "nodeName",
  cluster: "cluster",
  kubeconfig: "kubeconfig",
  context: "context",
  "in-cluster": "inCluster",
  "agent-namespace": "agentNamespace",
  image: "image",
  "agent-image": "agentImage",
  "image-pull-secret": "imagePullSecrets",
  "agent-pid-file": "agentPidFile",
  "max-parallel-uploads": "maxParallelUploads",
  help: "help",
} as const satisfies Record<OptionName, keyof TraceFlags>;

/** Usage text of `trace tcp`. */
export const TRACE_HELP = `Trace TCP connect (C), accept (A) and close (X) events.

Usage:
  tcpgadget trace tcp [flags]

Flags:
  -o, --output FORMAT        columns (default), custom-columns=a,b,..., json, jsonpretty
  -t, --timeout SECONDS      stop after this many seconds (at most 31536000, 365 days)
      --pid PID              only events of this process (in the kernel)
      --comm NAME            only events of processes with this command name (in the kernel)
      --connect-only         only connect events (successful and failed)
      --accept-only          only accept events
      --failure-only         only failed connect events
  -n, --namespace NS         only pods of this Kubernetes namespace
  -A, --all-namespaces       pods of every namespace
  -p, --podname NAME         only this pod
  -c, --containername NAME   only this container
  -l, --selector K=V,...     only pods with these labels
      --node NAME,...        only these nodes (cluster mode)
      --host                 with a pod filter, also show host processes
      --names                name remote addresses from DNS answers and hosts files (the
                             hidden column dstname; JSON key dstname)
      --host-root PATH       the host's / (default /; in a pod, where it is mounted)
      --node-name NAME       name shown as NODE (default: the host name)
      --in-cluster           node mode: use the pod's service account for the API (as --kubeconfig)

Cluster mode (from anywhere with a kubeconfig; nothing to install):
      --cluster              trace the nodes of the current kubeconfig context
      --kubeconfig PATH      kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)
      --context NAME         kubeconfig context
      --agent-namespace NS   namespace of the short-lived agent pods (default: the context's)
      --image IMAGE          agent pod image, into which tcpgadget copies itself
                             (default: debian:bookworm-slim)
      --agent-image IMAGE    agent pod image that holds tcpgadget ('tcpgadget image build'):
                             nothing is copied
      --image-pull-secret NAME,...  secrets of the agent namespace the pods pull their image
                             with (a private registry)
      --max-parallel-uploads N  copies of tcpgadget at once from this machine, and from each
                             agent to others (default 4)
  In cluster mode, -n defaults to the context's namespace; -A traces every namespace (host
  processes only with --host); -l is matched on the pods' labels from the API; --timeout counts
  from when every node traces. 'tcpgadget cleanup' deletes pods a killed run left.
  In node mode, --kubeconfig/--context (or --in-cluster) are optional: with them, -l works and
  the hidden src/dst columns name remote pods and services.
  -h, --help                 show this help

Columns (custom-columns names; the first twelve are the default):
  node namespace pod container t pid comm ip saddr daddr sport dport
  error tid uid gid mntns netns containerid poduid src dst dstname timestamp
`;

/**
 * Parses `trace tcp` arguments.
 *
 * @example
 * ```ts
 * import { parseTraceFlags } from "./flags.ts";
 * import assert from "node:assert/strict";
 * assert.equal(parseTraceFlags(["-o", "json", "--pid", "42"]).pid, 42);
 * ```
 */
export function parseTraceFlags(args: string[]): TraceFlags {
  let values;
  try {
    ({ values } = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (error) {
    throw new UsageError(describeParseError(error));
  }
  const flags: TraceFlags = {
    output: values.output,
    connectOnly: values["connect-only"],
    acceptOnly: values["accept-only"],
    failureOnly: values["failure-only"],
    allNamespaces: values["all-namespaces"],
    host: values.host,
    names: values.names,
    hostRoot: values["host-root"],
    help: values.help,
    cluster: values.cluster,
    inCluster: values["in-cluster"],
  };
  for (
    const [flag, key] of [
      ["--kubeconfig", "kubeconfig"],
      ["--context", "context"],
      ["--agent-namespace", "agentNamespace"],
      ["--image", "image"],
      ["--agent-image", "agentImage"],
      ["--agent-pid-file", "agentPidFile"],
    ] as const
  ) {
    const value = values[flag.slice(2) as OptionName];
    if (value !== undefined) flags[key] = nonEmpty(flag, value as string);
  }
  if (values.timeout !== undefined) flags.timeout = timeoutSeconds(values.timeout);
  if (values["max-parallel-uploads"] !== undefined) {
    const text = values["max-parallel-uploads"];
    flags.maxParallelUploads = positiveInteger("--max-parallel-uploads", text);
    if (flags.maxParallelUploads > MAX_PARALLEL_UPLOADS) {
      throw new UsageError(
        `--max-parallel-uploads must be at most ${MAX_PARALLEL_UPLOADS}, got "${text}"`,
      );
    }
  }
  if (values.pid !== undefined) flags.pid = positiveInteger("--pid", values.pid);
  if (values.comm !== undefined) {
    if (values.comm === "") throw new UsageError("--comm needs a command name");
    flags.comm = values.comm;
  }
  if (values.namespace !== undefined) flags.namespace = nonEmpty("--namespace", values.namespace);
  if (values.podname !== undefined) flags.podname = nonEmpty("--podname", values.podname);
  if (values.containername !== undefined) {
    flags.containername = nonEmpty("--containername", values.containername);
  }
  if (values.selector !== undefined) flags.selector = parseSelector(values.selector);
  if (values["node-name"] !== undefined) {
    flags.nodeName = nonEmpty("--node-name", values["node-name"]);
  }
  if (values.node !== undefined) {
    flags.nodes = values.node.split(",").map((n) => n.trim()).filter(Boolean);
    if (flags.nodes.length === 0) throw new UsageError("--node needs at least one node name");
  }
  if (values["image-pull-secret"] !== undefined) {
    flags.imagePullSecrets = values["image-pull-secret"].split(",").map((n) => n.trim())
      .filter(Boolean);
    if (flags.imagePullSecrets.length === 0) {
      throw new UsageError("--image-pull-secret needs at least one secret name");
    }
  }
  if (flags.namespace !== undefined && flags.allNamespaces) {
    throw new UsageError("--namespace and --all-namespaces cannot be used together");
  }
  checkClusterFlags(flags, values["host-root"] !== "/");
  return flags;
}

/**
 * The command line that {@link parseTraceFlags} reads back as `flags`: every
 * flag set to other than its default, in the table's order, each one word
 * (`--comm=-x`, so that no value is taken for a flag).
 *
 * @example
 * ```ts
 * import { parseTraceFlags, traceArgs } from "./flags.ts";
 * import assert from "node:assert/strict";
 * const args = traceArgs({ output: "json", comm: "-x", connectOnly: true });
 * assert.deepEqual(args, ["--output=json", "--comm=-x", "--connect-only"]);
 * assert.deepEqual(parseTraceFlags(args).comm, "-x");
 * ```
 */
export function traceArgs(flags: Partial<TraceFlags>): string[] {
  const args: string[] = [];
  for (const [option, field] of Object.entries(FIELDS) as [OptionName, keyof TraceFlags][]) {
    const value = flags[field];
    const spec: { type: string; default?: unknown } = OPTIONS[option];
    if (value === undefined || value === spec.default) continue;
    if (spec.type === "boolean") {
      if (value === true) args.push(`--${option}`);
      continue;
    }
    const text = Array.isArray(value)
      ? value.join(",")
      : typeof value === "object"
      ? Object.entries(value).map(([k, v]) => `${k}=${v}`).join(",")
      : String(value);
    args.push(`--${option}=${text}`);
  }
  return args;
}

/** Flags of one mode given to the other are mistakes, not silently ignored. */
function checkClusterFlags(flags: TraceFlags, hostRootGiven: boolean): void {
  if (flags.cluster) {
    const nodeOnly = [
      ["--host-root", hostRootGiven],
      ["--node-name", flags.nodeName !== undefined],
      ["--in-cluster", flags.inCluster],
      ["--agent-pid-file", flags.agentPidFile !== undefined],
    ].find(([, given]) => given);
    if (nodeOnly) {
      throw new UsageError(`${nodeOnly[0]} is for node mode; it cannot be used with --cluster`);
    }
    // The image holds tcpgadget: no image to upload into, nothing to upload.
    const uploadOnly = [
      ["--image", flags.image !== undefined],
      ["--max-parallel-uploads", flags.maxParallelUploads !== undefined],
    ].find(([, given]) => given);
    if (flags.agentImage !== undefined && uploadOnly) {
      throw new UsageError(
        `${uploadOnly[0]} is for the upload; with --agent-image nothing is uploaded`,
      );
    }
    return;
  }
  const clusterOnly = [
    ["--node", flags.nodes !== undefined],
    ["--agent-namespace", flags.agentNamespace !== undefined],
    ["--image", flags.image !== undefined],
    ["--agent-image", flags.agentImage !== undefined],
    ["--image-pull-secret", flags.imagePullSecrets !== undefined],
    ["--max-parallel-uploads", flags.maxParallelUploads !== undefined],
  ].find(([, given]) => given);
  if (clusterOnly) throw new UsageError(`${clusterOnly[0]} needs --cluster`);
}

/** Parses a label selector `k=v,k2=v2` (equality only, as Inspektor Gadget). */
export function parseSelector(text: string): Record<string, string> {
  const selector: Record<string, string> = {};
  for (const part of text.split(",")) {
    const match = part.trim().match(/^([^=!\s]+)==?([^=\s]*)$/);
    if (!match) throw new UsageError(`invalid selector "${part}": expected key=value`);
    selector[match[1]] = match[2];
  }
  return selector;
}

function nonEmpty(flag: string, value: string): string {
  if (value.trim() === "") throw new UsageError(`${flag} needs a value`);
  return value;
}

function positiveNumber(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0 || text.trim() === "") {
    throw new UsageError(`${flag} must be a positive number of seconds, got "${text}"`);
  }
  return value;
}

function timeoutSeconds(text: string): number {
  const value = positiveNumber("--timeout", text);
  if (value > MAX_TIMEOUT_SECONDS) {
    throw new UsageError(
      `--timeout must be at most ${MAX_TIMEOUT_SECONDS} seconds (365 days), got "${text}"`,
    );
  }
  return value;
}

function positiveInteger(flag: string, text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value <= 0 || value > 0xffff_ffff) {
    throw new UsageError(`${flag} must be a positive integer, got "${text}"`);
  }
  return value;
}

function describeParseError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: string }).code;
  const option = message.match(/'(-[^' ]+)/)?.[1];
  switch (code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown flag ${option ?? message} (see 'tcpgadget trace tcp --help')`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE": {
      // "Option '-o, --output <value>' argument missing": name the long form.
      const flag = message.match(/(--[a-z-]+)/)?.[1] ?? option ?? "flag";
      if (message.includes("does not take an argument")) {
        return `${flag} takes no value (give ${flag} alone to turn it on)`;
      }
      if (message.includes("ambiguous")) {
        return `${flag} needs a value; for one that starts with '-', write ${flag}=VALUE`;
      }
      return `${flag} needs a value`;
    }
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument ${
        message.match(/'([^']+)'/)?.[1] ?? ""
      } (see 'tcpgadget trace tcp --help')`;
    default:
      return message.split("\n")[0];
  }
}

/** Usage text of `cleanup`. */
export const CLEANUP_HELP =
  `Delete the agent pods of earlier cluster-mode runs (label app.kubernetes.io/managed-by=tcpgadget).

Usage:
  tcpgadget cleanup [--kubeconfig PATH] [--context NAME] [--agent-namespace NS]

Without --agent-namespace, every namespace is searched. Pods of runs still going are deleted
too. It waits until the pods are gone (at most 30 s).
`;

/** Parses `cleanup` arguments; "help" for -h. */
export function parseCleanupFlags(
  args: string[],
): { kubeconfig?: string; context?: string; namespace?: string } | "help" {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        kubeconfig: { type: "string" },
        context: { type: "string" },
        "agent-namespace": { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new UsageError(describeParseError(error).replace("trace tcp --help", "cleanup --help"));
  }
  if (values.help) return "help";
  return {
    kubeconfig: values.kubeconfig,
    context: values.context,
    namespace: values["agent-namespace"],
  };
}

/** Usage text of `image build`. */
export const IMAGE_BUILD_HELP =
  `Write an agent image holding this tcpgadget, as an OCI archive to push to your registry.

Usage:
  tcpgadget image build [--output FILE] [--tag NAME]

Flags:
      --output FILE   the archive to write (default tcpgadget-image.tar)
      --tag NAME      the image's name and tag in the archive (default tcpgadget:VERSION)
  -h, --help          show this help

The image holds tcpgadget (the compiled binary, or Deno and a bundle of the program), its
loader and libraries, and nothing else: its entrypoint is /usr/local/bin/tcpgadget. The same
program gives the same archive, byte for byte. Push it with, for example:
  skopeo copy oci-archive:tcpgadget-image.tar docker://registry.example/tcpgadget:0.1.0
and trace a cluster without uploading anything:
  tcpgadget trace tcp --cluster -A --agent-image registry.example/tcpgadget:0.1.0
`;

/** Parsed flags of `image build`. */
export interface ImageBuildFlags {
  output: string;
  /** The image name given, if any (default: tcpgadget:VERSION). */
  tag?: string;
}

/**
 * Parses `image build` arguments; "help" for -h.
 *
 * @example
 * ```ts
 * import { parseImageBuildFlags } from "./flags.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseImageBuildFlags([]), { output: "tcpgadget-image.tar" });
 * assert.deepEqual(parseImageBuildFlags(["--output=a.tar", "--tag", "x:1"]), {
 *   output: "a.tar",
 *   tag: "x:1",
 * });
 * ```
 */
export function parseImageBuildFlags(args: string[]): ImageBuildFlags | "help" {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        output: { type: "string", default: "tcpgadget-image.tar" },
        tag: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new UsageError(
      describeParseError(error).replace("trace tcp --help", "image build --help"),
    );
  }
  if (values.help) return "help";
  const flags: ImageBuildFlags = { output: nonEmpty("--output", values.output) };
  if (values.tag !== undefined) flags.tag = nonEmpty("--tag", values.tag);
  return flags;
}
