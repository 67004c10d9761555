/**
 * Flags of `tcpgadget egress run|watch|record`, and their help texts.
 * The pod selection is read by `trace tcp`'s own parser (cli/flags.ts), so
 * it means and checks exactly what it does there.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { UsageError } from "../../core/errors.ts";
import { parseTraceFlags, type TraceFlags } from "../flags.ts";
import { formatterFor } from "../output/formatter.ts";
import type { PolicySource } from "./policy.ts";
import type { RuleAction } from "./rule.ts";
import { RECORD_FORMATS, type RecordFormat } from "./record.ts";

/** The subcommands of `egress`. */
export type EgressCommand = "run" | "watch" | "record";

/** Parsed and checked flags of an `egress` subcommand. */
export interface EgressFlags {
  command: EgressCommand;
  /** `-h`: print {@link egressHelp} for the command, do nothing else. */
  help: boolean;
  /** `--allow`, `--deny`, `--expect`, `--policy`, in command-line order (run, watch). */
  policy: PolicySource[];
  /** `--allow-lost`: lost events do not fail the run. */
  allowLost: boolean;
  /** `--junit FILE`. */
  junit?: string;
  /** `--summary FILE`. */
  summary?: string;
  /** `--baseline FILE`. */
  baseline?: string;
  /**
   * `-o` of run and watch: live events on stdout in a `trace tcp` format;
   * undefined: none (run's default; watch's is columns).
   */
  output?: string;
  /** `--timeout SECONDS` (watch, record). */
  timeout?: number;
  /** COMMAND and its ARGS (after `--`); empty: none. */
  commandLine: string[];
  /**
   * COMMAND's process tree is what is traced (run; record -- COMMAND
   * without pods); otherwise pods or this host are watched, COMMAND
   * untraced.
   */
  tree: boolean;
  /** `--grace SECONDS`: how long descendants may outlive COMMAND and still be judged (tree). */
  graceSeconds: number;
  /**
   * What to trace, as `trace tcp` flags: the pod selection and cluster
   * flags (watch, record), `--timeout`, and connect events only.
   */
  trace: TraceFlags;
  /** record: `-o FILE` (`-` for stdout). */
  recordFile?: string;
  /** record: `--format`. */
  format: RecordFormat;
  /**
   * record: scope recorded rules per workload (pods, or commands outside
   * pods): with a pod selection, `--cluster`, or no COMMAND. `record --
   * COMMAND` alone records COMMAND's process tree, its rules for everyone.
   */
  perWorkload: boolean;
}

const POLICY_OPTIONS = {
  allow: { type: "string", multiple: true },
  deny: { type: "string", multiple: true },
  expect: { type: "string", multiple: true },
  policy: { type: "string", multiple: true },
  junit: { type: "string" },
  summary: { type: "string" },
  baseline: { type: "string" },
} as const;

// Flags of `trace tcp` that choose what is traced; passed to its parser.
const SELECTION_OPTIONS = {
  namespace: { type: "string", short: "n" },
  "all-namespaces": { type: "boolean", short: "A" },
  podname: { type: "string", short: "p" },
  containername: { type: "string", short: "c" },
  selector: { type: "string", short: "l" },
  node: { type: "string" },
  host: { type: "boolean" },
  cluster: { type: "boolean" },
  kubeconfig: { type: "string" },
  context: { type: "string" },
  "agent-namespace": { type: "string" },
  image: { type: "string" },
  "agent-image": { type: "string" },
  "image-pull-secret": { type: "string" },
  // Node mode in a pod (as a DaemonSet would run it), and tests' fake nodes.
  "host-root": { type: "string" },
  "node-name": { type: "string" },
  "in-cluster": { type: "boolean" },
} as const;

const POD_SELECTION = ["namespace", "all-namespaces", "podname", "containername", "selector"];

const COMMON_OPTIONS = {
  "allow-lost": { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

const OPTIONS = {
  run: {
    ...POLICY_OPTIONS,
    ...COMMON_OPTIONS,
    output: { type: "string", short: "o" },
    grace: { type: "string" },
  },
  watch: {
    ...POLICY_OPTIONS,
    ...SELECTION_OPTIONS,
    ...COMMON_OPTIONS,
    output: { type: "string", short: "o" },
    timeout: { type: "string", short: "t" },
  },
  record: {
    ...SELECTION_OPTIONS,
    ...COMMON_OPTIONS,
    output: { type: "string", short: "o" },
    format: { type: "string" },
    timeout: { type: "string", short: "t" },
    grace: { type: "string" },
  },
} as const;

/** How long COMMAND's descendants may outlive it and still be judged, by default. */
export const DEFAULT_GRACE_SECONDS = 3;

/**
 * Parses the arguments after `egress` (the subcommand first).
 *
 * @example
 * ```ts
 * import { parseEgressFlags } from "./egress_flags.ts";
 * import assert from "node:assert/strict";
 * const flags = parseEgressFlags(["run", "--allow", "@loopback", "--policy", "p.yaml", "--", "npm", "ci"]);
 * assert.deepEqual(flags.policy, [
 *   { kind: "rule", action: "allow", text: "@loopback" },
 *   { kind: "file", path: "p.yaml" },
 * ]);
 * assert.deepEqual(flags.commandLine, ["npm", "ci"]);
 * assert.equal(flags.output, undefined);
 * ```
 */
export function parseEgressFlags(args: readonly string[]): EgressFlags {
  const [command, ...rest] = args;
  if (command !== "run" && command !== "watch" && command !== "record") {
    throw new UsageError(
      command === undefined || command.startsWith("-")
        ? "egress needs a command: run, watch or record (see 'tcpgadget egress --help')"
        : `unknown egress command "${command}": run, watch or record`,
    );
  }
  // Everything after the first "--" is COMMAND: none of it is a flag of ours.
  const dashes = rest.indexOf("--");
  const flagArgs = dashes < 0 ? rest : rest.slice(0, dashes);
  const commandLine = dashes < 0 ? [] : rest.slice(dashes + 1);
  let parsed;
  try {
    parsed = parseArgs({
      args: flagArgs,
      options: OPTIONS[command],
      strict: true,
      allowPositionals: true,
      tokens: true,
    });
  } catch (error) {
    throw new UsageError(describeParseError(error, command));
  }
  const values = parsed.values as Record<string, string | string[] | boolean | undefined>;
  const tokens = parsed.tokens as { kind: string; name: string; value?: string }[];
  const positional = parsed.positionals[0];
  if (positional !== undefined) {
    throw new UsageError(
      `unexpected argument "${positional}": the command goes after -- ` +
        `(tcpgadget egress ${command} [flags] -- COMMAND [ARGS...])`,
    );
  }
  const string = (name: string): string | undefined => {
    const value = values[name] as string | undefined;
    if (value !== undefined && value.trim() === "") throw new UsageError(`--${name} needs a value`);
    return value;
  };
  const flags: EgressFlags = {
    command,
    help: values.help === true,
    policy: [],
    allowLost: values["allow-lost"] === true,
    commandLine,
    tree: false,
    graceSeconds: DEFAULT_GRACE_SECONDS,
    trace: parseTraceFlags([]),
    format: "policy",
    perWorkload: false,
  };
  if (flags.help) return flags;

  for (const token of tokens) {
    if (token.kind !== "option" || !(token.name in POLICY_OPTIONS)) continue;
    const value = token.value ?? "";
    if (token.name === "policy") {
      if (value.trim() === "") throw new UsageError("--policy needs a file name");
      flags.policy.push({ kind: "file", path: value });
    } else if (token.name === "allow" || token.name === "deny" || token.name === "expect") {
      if (value.trim() === "") throw new UsageError(`--${token.name} needs a rule (DEST[:PORTS])`);
      flags.policy.push({ kind: "rule", action: token.name as RuleAction, text: value });
    }
  }
  for (const name of ["junit", "summary", "baseline"] as const) {
    const value = string(name);
    if (value !== undefined) flags[name] = value;
  }

  // The selection, --timeout and connects only, read as `trace tcp` reads them.
  const traceArgs = ["--connect-only"];
  for (const token of tokens) {
    if (token.kind !== "option" || !(token.name in SELECTION_OPTIONS || token.name === "timeout")) {
      continue;
    }
    traceArgs.push(
      token.value === undefined ? `--${token.name}` : `--${token.name}=${token.value}`,
    );
  }
  flags.trace = parseTraceFlags(traceArgs);
  if (flags.trace.timeout !== undefined) flags.timeout = flags.trace.timeout;
  const selects = POD_SELECTION.some((name) => values[name] !== undefined) ||
    values.cluster === true;

  const output = string("output");
  if (command === "record") {
    if (output === undefined) {
      throw new UsageError("egress record needs -o FILE (the policy file to write; - for stdout)");
    }
    flags.recordFile = output;
    const format = string("format");
    if (format !== undefined) {
      if (!(RECORD_FORMATS as string[]).includes(format)) {
        throw new UsageError(
          `unknown --format "${format}"; valid: ${RECORD_FORMATS.join(", ")}`,
        );
      }
      flags.format = format as RecordFormat;
    }
    flags.perWorkload = selects || commandLine.length === 0;
  } else if (output !== undefined && output !== "none") {
    formatterFor(output); // throws a UsageError naming the valid formats
    flags.output = output;
  } else if (output === undefined && command === "watch") {
    flags.output = "columns";
  }

  if (command === "run" && commandLine.length === 0) {
    throw new UsageError(
      "egress run needs a command: tcpgadget egress run [flags] -- COMMAND [ARGS...]",
    );
  }
  if (command !== "run") {
    if (commandLine.length === 0 && flags.timeout === undefined) {
      throw new UsageError(
        `egress ${command} needs --timeout SECONDS or -- COMMAND [ARGS...] (what ends it)`,
      );
    }
    if (commandLine.length > 0 && flags.timeout !== undefined) {
      throw new UsageError(
        `egress ${command}: give --timeout or -- COMMAND, not both (the command's end ends it)`,
      );
    }
  }
  if (dashes >= 0 && commandLine.length === 0) {
    throw new UsageError(`egress ${command}: nothing after --: expected COMMAND [ARGS...]`);
  }
  flags.tree = command === "run" || (command === "record" && !flags.perWorkload);
  const grace = string("grace");
  if (grace !== undefined) {
    if (!flags.tree) {
      throw new UsageError(
        "--grace is for a traced COMMAND (egress run, or egress record -- COMMAND without pods)",
      );
    }
    const seconds = Number(grace);
    if (!/^\d+(\.\d+)?$/.test(grace.trim()) || seconds > 3600) {
      throw new UsageError(`--grace must be a number of seconds from 0 to 3600, got "${grace}"`);
    }
    flags.graceSeconds = seconds;
  }
  // Watching names destinations on each node (and agents say so in their events).
  flags.trace.names = true;
  return flags;
}

function describeParseError(error: unknown, command: EgressCommand): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: string }).code;
  const option = message.match(/'(-[^' ]+)/)?.[1];
  switch (code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown flag ${option ?? message} for egress ${command} ` +
        `(see 'tcpgadget egress ${command} --help')`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE": {
      const flag = message.match(/(--[a-z-]+)/)?.[1] ?? option ?? "flag";
      if (message.includes("ambiguous")) {
        return `${flag} needs a value; for one that starts with '-', write ${flag}=VALUE`;
      }
      return `${flag} needs a value`;
    }
    default:
      return message.split("\n")[0];
  }
}

const POLICY_HELP =
  `Policy (in order; the first rule that matches decides; nothing is allowed unless a rule allows it):
      --allow RULE           allow connections to RULE (repeatable)
      --deny RULE            forbid them (carves out of later allows)
      --expect RULE          allow, and require at least one established connection
      --policy FILE          the rules of a YAML policy file, here in the order
  RULE is DEST[:PORTS]. DEST: a host name (registry.npmjs.org), a wildcard (*.github.com: one
  label or more under github.com, not github.com itself), an IPv4 or IPv6 address or CIDR block
  (10.0.0.0/8, 2001:db8::/32), a preset (@loopback, @private, @link-local), or * (anything).
  PORTS: 443, 8000-8999, or * (default). IPv6 with ports in brackets: [2001:db8::1]:443.
  Host names come from the DNS answers and hosts file the process used; a destination whose
  name is unknown is judged by address rules only.

Reports:
      --junit FILE           JUnit XML: a test case per rule, expectation, violating destination
      --summary FILE         JSON summary
      --baseline FILE        a recorded policy: also list destinations added and removed
  Under GitHub Actions (GITHUB_ACTIONS=true): ::error annotations for violations, and a table
  appended to $GITHUB_STEP_SUMMARY. The table of destinations is printed on stderr.`;

const SELECTION_HELP = `Pods (as in trace tcp; default in node mode: every process of this host):
  -n, --namespace NS         pods of this namespace
  -A, --all-namespaces       pods of every namespace
  -p, --podname NAME         this pod
  -c, --containername NAME   this container
  -l, --selector K=V,...     pods with these labels
      --host                 with a pod filter, also processes outside pods
      --node NAME,...        these nodes (cluster mode)
      --cluster              every node of the kubeconfig's cluster
      --kubeconfig PATH, --context NAME, --agent-namespace NS, --image IMAGE,
      --agent-image IMAGE, --image-pull-secret NAME,...   as in trace tcp
      --host-root PATH, --node-name NAME, --in-cluster   node mode in a pod, as in trace tcp`;

const EXIT_HELP =
  `Exit status: 3 if a connection broke the policy or an expectation was not met; 4 if events
were lost (--allow-lost to accept); 2 for a usage error; otherwise COMMAND's own status (0
without one).`;

/** Usage texts of `egress` and of each subcommand. */
export const EGRESS_HELP: Readonly<Record<EgressCommand | "egress", string>> = {
  egress: `Verify the TCP connections a workload makes against a policy.

Usage:
  tcpgadget egress run    [policy] [reports] -- COMMAND [ARGS...]
  tcpgadget egress watch  [policy] [reports] [pods] (--timeout N | -- COMMAND [ARGS...])
  tcpgadget egress record -o FILE [pods] (-- COMMAND [ARGS...] | --timeout N)

  run      start COMMAND once tracing is attached; judge the connections of COMMAND and
           every process it starts
  watch    judge the connections of the selected pods (or this host) until --timeout, or
           until COMMAND (run here, e.g. the test that drives the pods) ends
  record   write what was seen as a policy that run and watch accept

See 'tcpgadget egress run|watch|record --help'.
`,
  run: `Run COMMAND and judge every TCP connection it and its descendants attempt.

Usage:
  tcpgadget egress run [policy] [reports] [flags] -- COMMAND [ARGS...]

${POLICY_HELP}

Flags:
  -o, --output FORMAT        live events on stdout: columns, custom-columns=..., json,
                             jsonpretty (default: none)
      --grace SECONDS        how long processes COMMAND started may outlive it and still be
                             judged (default ${DEFAULT_GRACE_SECONDS}); those still running then are listed
      --allow-lost           do not fail when events were lost
  -h, --help                 show this help

${EXIT_HELP}
`,
  watch: `Judge the TCP connections of pods (or of this host) against a policy.

Usage:
  tcpgadget egress watch [policy] [reports] [pods] (--timeout N | -- COMMAND [ARGS...])

${POLICY_HELP}

${SELECTION_HELP}

Flags:
  -t, --timeout SECONDS      watch this long
  -o, --output FORMAT        live events on stdout: columns (default), custom-columns=...,
                             json, jsonpretty, none
      --allow-lost           do not fail when events were lost
  -h, --help                 show this help
  With -- COMMAND, the watch ends when COMMAND ends; COMMAND runs here, untraced.

${EXIT_HELP}
`,
  record: `Record the TCP connections of COMMAND (or of pods) as a policy.

Usage:
  tcpgadget egress record -o FILE [pods] [flags] (-- COMMAND [ARGS...] | --timeout N)

${SELECTION_HELP}

Flags:
  -o, --output FILE          where to write the policy (- for stdout)
      --format FORMAT        policy (default: a policy file for run and watch), networkpolicy
                             (Kubernetes NetworkPolicy objects, address blocks), cilium
                             (CiliumNetworkPolicy, toFQDNs for host names)
  -t, --timeout SECONDS      record this long
      --grace SECONDS        -- COMMAND without pods: how long processes it started may outlive
                             it and still be recorded (default ${DEFAULT_GRACE_SECONDS})
      --allow-lost           do not fail when events were lost
  -h, --help                 show this help
  Destinations are recorded by host name where known, else by address, with their ports; with
  pods, --cluster or --timeout, each rule is scoped to its pod (labels, else name) and
  container, or to its command outside pods.

Exit status: 4 if events were lost (--allow-lost to accept); 2 for a usage error; otherwise
COMMAND's own status (0 without one).
`,
};
