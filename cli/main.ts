/**
 * The `tcpgadget` command line: subcommands, error reporting, exit status.
 *
 * @module
 */

import { errorLine, TcpgadgetError, UsageError } from "../core/errors.ts";
import { printWarning } from "../core/warning.ts";
import {
  CLEANUP_HELP,
  IMAGE_BUILD_HELP,
  parseCleanupFlags,
  parseImageBuildFlags,
  parseTraceFlags,
  TRACE_HELP,
} from "./flags.ts";
import { traceTcp } from "./node_mode.ts";
import { versionReport } from "./version.ts";

/** Top-level usage text. */
export const HELP = `tcpgadget: trace TCP connections with eBPF, with process, container and pod.

Usage:
  tcpgadget trace tcp [flags]   trace connect, accept and close events (see --help)
  tcpgadget egress run|watch|record [flags]
                                judge a workload's connections against a policy (see egress --help)
  tcpgadget cleanup [flags]     delete agent pods left in the cluster by earlier runs
  tcpgadget image build [flags] write an agent image holding this tcpgadget (an OCI archive)
  tcpgadget version             versions of tcpgadget, libbpf and the BPF object
  tcpgadget help                this text
`;

/**
 * Runs the command line and returns the exit status. User errors are
 * printed as one line; anything else is a bug and says so.
 */
export async function main(args: string[]): Promise<number> {
  try {
    return await dispatch(args);
  } catch (error) {
    // Messages may quote what a cluster or a node sent: printed as one safe line.
    if (error instanceof TcpgadgetError) {
      printWarning(error.message);
      return error.exitCode;
    }
    if (Deno.env.get("TCPGADGET_DEBUG")) console.error(error);
    printWarning(`internal error: ${errorLine(error)} (set TCPGADGET_DEBUG=1 for details)`);
    return 70;
  }
}

async function dispatch(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  switch (command) {
    case undefined:
    case "help":
    case "-h":
    case "--help":
      console.log(HELP);
      return command === undefined ? 2 : 0;
    case "version":
    case "--version":
      console.log(versionReport());
      return 0;
    case "trace": {
      const [gadget, ...flags] = rest;
      if (gadget !== "tcp") {
        throw new UsageError(
          gadget === undefined || gadget.startsWith("-")
            ? "trace needs a gadget: tcpgadget trace tcp"
            : `unknown gadget "${gadget}": only "tcp" is available`,
        );
      }
      const parsed = parseTraceFlags(flags);
      if (parsed.help) {
        console.log(TRACE_HELP);
        return 0;
      }
      if (parsed.cluster) {
        const { traceCluster } = await import("./cluster_mode.ts");
        return await traceCluster(parsed, { main: new URL("../mod.ts", import.meta.url) });
      }
      return await traceTcp(parsed);
    }
    case "egress": {
      const { egress } = await import("./egress_mode.ts");
      return await egress(rest);
    }
    case "agent": {
      // Internal (not in the help): the idle process of an --agent-image pod.
      const { agent } = await import("./agent_idle.ts");
      return await agent(rest);
    }
    case "cleanup": {
      const flags = parseCleanupFlags(rest);
      if (flags === "help") {
        console.log(CLEANUP_HELP);
        return 0;
      }
      const { cleanup } = await import("./cleanup.ts");
      return await cleanup(flags);
    }
    case "image": {
      const [subcommand, ...flags] = rest;
      if (subcommand !== "build") {
        throw new UsageError(
          subcommand === undefined || subcommand.startsWith("-")
            ? "image needs a subcommand: tcpgadget image build [--output FILE] [--tag NAME]"
            : `unknown image subcommand "${subcommand}": only "build" is available`,
        );
      }
      const parsed = parseImageBuildFlags(flags);
      if (parsed === "help") {
        console.log(IMAGE_BUILD_HELP);
        return 0;
      }
      const { imageBuild } = await import("./image_build.ts");
      return await imageBuild(parsed, { main: new URL("../mod.ts", import.meta.url) });
    }
    default:
      throw new UsageError(`unknown command "${command}" (see 'tcpgadget help')`);
  }
}
