/**
 * The PodSecurity admission plugin for pod creation: the namespace label
 * `pod-security.kubernetes.io/enforce` (`privileged`, `baseline`,
 * `restricted`) and `.../enforce-version` choose the policy, and a
 * violating pod is refused with the plugin's message:
 * `violates PodSecurity "baseline:latest": host namespaces (hostPID=true), ...`.
 *
 * The checks and their texts follow k8s.io/pod-security-admission/policy
 * (current versions); checks run in the order of their IDs, baseline
 * first, restricted ones replacing the baseline checks they override.
 *
 * @module
 */

// deno-lint-ignore-file no-explicit-any

type Pod = any;
type Container = any;

interface CheckResult {
  reason: string;
  detail: string;
}

interface Check {
  id: string;
  level: "baseline" | "restricted";
  /** Baseline checks this restricted check replaces at the restricted level. */
  overrides?: string[];
  run(pod: Pod): CheckResult | undefined;
}

function joinQuote(items: string[]): string {
  return items.length === 0 ? "" : `"${items.join(`", "`)}"`;
}

function pluralize(singular: string, plural: string, count: number): string {
  return count === 1 ? singular : plural;
}

/** Containers, init containers and ephemeral containers, as visitContainers. */
function containers(pod: Pod): Container[] {
  const spec = pod?.spec ?? {};
  return [
    ...(spec.initContainers ?? []),
    ...(spec.containers ?? []),
    ...(spec.ephemeralContainers ?? []),
  ];
}

const sortedUnique = (values: string[]) => [...new Set(values)].sort();

const BASELINE_CAPABILITIES = new Set([
  "AUDIT_WRITE",
  "CHOWN",
  "DAC_OVERRIDE",
  "FOWNER",
  "FSETID",
  "KILL",
  "MKNOD",
  "NET_BIND_SERVICE",
  "SETFCAP",
  "SETGID",
  "SETPCAP",
  "SETUID",
  "SYS_CHROOT",
]);

const CHECKS: Check[] = [
  {
    id: "capabilities_baseline",
    level: "baseline",
    run(pod) {
      const bad: string[] = [];
      const caps: string[] = [];
      for (const c of containers(pod)) {
        const add: string[] = c.securityContext?.capabilities?.add ?? [];
        const forbidden = add.filter((cap) => !BASELINE_CAPABILITIES.has(cap));
        if (forbidden.length > 0) {
          bad.push(c.name);
          caps.push(...forbidden);
        }
      }
      if (bad.length === 0) return undefined;
      return {
        reason: "non-default capabilities",
        detail: `${pluralize("container", "containers", bad.length)} ${
          joinQuote(bad)
        } must not include ${joinQuote(sortedUnique(caps))} in securityContext.capabilities.add`,
      };
    },
  },
  {
    id: "hostNamespaces",
    level: "baseline",
    run(pod) {
      const found: string[] = [];
      if (pod.spec?.hostNetwork) found.push("hostNetwork=true");
      if (pod.spec?.hostPID) found.push("hostPID=true");
      if (pod.spec?.hostIPC) found.push("hostIPC=true");
      return found.length ? { reason: "host namespaces", detail: found.join(", ") } : undefined;
    },
  },
  {
    id: "hostPathVolumes",
    level: "baseline",
    run(pod) {
      const volumes = (pod.spec?.volumes ?? []).filter((v: any) => v.hostPath).map((v: any) =>
        v.name
      );
      if (volumes.length === 0) return undefined;
      return {
        reason: "hostPath volumes",
        detail: `${pluralize("volume", "volumes", volumes.length)} ${joinQuote(volumes)}`,
      };
    },
  },
  {
    id: "hostPorts",
    level: "baseline",
    run(pod) {
      const bad: string[] = [];
      const ports: string[] = [];
      for (const c of containers(pod)) {
        let uses = false;
        for (const p of c.ports ?? []) {
          if (p.hostPort) {
            uses = true;
            ports.push(String(p.hostPort));
          }
        }
        if (uses) bad.push(c.name);
      }
      if (bad.length === 0) return undefined;
      const unique = sortedUnique(ports);
      return {
        reason: "hostPort",
        detail: `${pluralize("container", "containers", bad.length)} ${joinQuote(bad)} ${
          pluralize("uses", "use", bad.length)
        } ${pluralize("hostPort", "hostPorts", unique.length)} ${unique.join(", ")}`,
      };
    },
  },
  {
    id: "privileged",
    level: "baseline",
    run(pod) {
      const bad = containers(pod).filter((c) => c.securityContext?.privileged === true).map((
        c,
      ) => c.name);
      if (bad.length === 0) return undefined;
      return {
        reason: "privileged",
        detail: `${pluralize("container", "containers", bad.length)} ${
          joinQuote(bad)
        } must not set securityContext.privileged=true`,
      };
    },
  },
  {
    id: "allowPrivilegeEscalation",
    level: "restricted",
    run(pod) {
      const bad = containers(pod).filter((c) =>
        c.securityContext?.allowPrivilegeEscalation !== false
      ).map((c) => c.name);
      if (bad.length === 0) return undefined;
      return {
        reason: "allowPrivilegeEscalation != false",
        detail: `${pluralize("container", "containers", bad.length)} ${
          joinQuote(bad)
        } must set securityContext.allowPrivilegeEscalation=false`,
      };
    },
  },
  {
    id: "capabilities_restricted",
    level: "restricted",
    overrides: ["capabilities_baseline"],
    run(pod) {
      const missingDrop: string[] = [];
      const adding: string[] = [];
      const caps: string[] = [];
      for (const c of containers(pod)) {
        const capabilities = c.securityContext?.capabilities;
        if (!capabilities) {
          missingDrop.push(c.name);
          continue;
        }
        if (!(capabilities.drop ?? []).includes("ALL")) missingDrop.push(c.name);
        const forbidden = (capabilities.add ?? []).filter((cap: string) =>
          cap !== "NET_BIND_SERVICE"
        );
        if (forbidden.length > 0) {
          adding.push(c.name);
          caps.push(...forbidden);
        }
      }
      const details: string[] = [];
      if (missingDrop.length) {
        details.push(
          `${pluralize("container", "containers", missingDrop.length)} ${
            joinQuote(missingDrop)
          } must set securityContext.capabilities.drop=["ALL"]`,
        );
      }
      if (adding.length) {
        details.push(
          `${pluralize("container", "containers", adding.length)} ${
            joinQuote(adding)
          } must not include ${joinQuote(sortedUnique(caps))} in securityContext.capabilities.add`,
        );
      }
      return details.length
        ? { reason: "unrestricted capabilities", detail: details.join("; ") }
        : undefined;
    },
  },
  {
    id: "restrictedVolumes",
    level: "restricted",
    overrides: ["hostPathVolumes"],
    run(pod) {
      const allowed = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
      ];
      const bad: string[] = [];
      const types: string[] = [];
      for (const volume of pod.spec?.volumes ?? []) {
        const sources = Object.keys(volume).filter((k) => k !== "name");
        if (sources.some((s) => allowed.includes(s))) continue;
        bad.push(volume.name);
        types.push(sources[0] ?? "unknown");
      }
      if (bad.length === 0) return undefined;
      const unique = sortedUnique(types);
      return {
        reason: "restricted volume types",
        detail: `${pluralize("volume", "volumes", bad.length)} ${joinQuote(bad)} ${
          pluralize("uses", "use", bad.length)
        } ${pluralize("restricted volume type", "restricted volume types", unique.length)} ${
          joinQuote(unique)
        }`,
      };
    },
  },
  {
    id: "runAsNonRoot",
    level: "restricted",
    run(pod) {
      const badSetters: string[] = [];
      let podNonRoot = false;
      const podValue = pod.spec?.securityContext?.runAsNonRoot;
      if (podValue === false) badSetters.push("pod");
      if (podValue === true) podNonRoot = true;
      const explicit: string[] = [];
      const implicit: string[] = [];
      for (const c of containers(pod)) {
        const value = c.securityContext?.runAsNonRoot;
        if (value === false) explicit.push(c.name);
        else if (value === undefined && !podNonRoot) implicit.push(c.name);
      }
      if (explicit.length) {
        badSetters.push(
          `${pluralize("container", "containers", explicit.length)} ${joinQuote(explicit)}`,
        );
      }
      if (badSetters.length) {
        return {
          reason: "runAsNonRoot != true",
          detail: `${badSetters.join(" and ")} must not set securityContext.runAsNonRoot=false`,
        };
      }
      if (implicit.length) {
        return {
          reason: "runAsNonRoot != true",
          detail: `pod or ${pluralize("container", "containers", implicit.length)} ${
            joinQuote(implicit)
          } must set securityContext.runAsNonRoot=true`,
        };
      }
      return undefined;
    },
  },
  {
    id: "runAsUser",
    level: "restricted",
    run(pod) {
      const badSetters: string[] = [];
      if (pod.spec?.securityContext?.runAsUser === 0) badSetters.push("pod");
      const bad = containers(pod).filter((c) => c.securityContext?.runAsUser === 0).map((c) =>
        c.name
      );
      if (bad.length) {
        badSetters.push(`${pluralize("container", "containers", bad.length)} ${joinQuote(bad)}`);
      }
      if (badSetters.length === 0) return undefined;
      return {
        reason: "runAsUser=0",
        detail: `${badSetters.join(" and ")} must not set runAsUser=0`,
      };
    },
  },
  {
    id: "seccompProfile_restricted",
    level: "restricted",
    run(pod) {
      const valid = (t: string) => t === "RuntimeDefault" || t === "Localhost";
      const badSetters: string[] = [];
      const badValues: string[] = [];
      let podSet = false;
      const podProfile = pod.spec?.securityContext?.seccompProfile;
      if (podProfile) {
        if (!valid(podProfile.type)) {
          badSetters.push("pod");
          badValues.push(podProfile.type);
        } else podSet = true;
      }
      const explicit: string[] = [];
      const implicit: string[] = [];
      for (const c of containers(pod)) {
        const profile = c.securityContext?.seccompProfile;
        if (profile) {
          if (!valid(profile.type)) {
            explicit.push(c.name);
            badValues.push(profile.type);
          }
        } else if (!podSet) implicit.push(c.name);
      }
      if (explicit.length) {
        badSetters.push(
          `${pluralize("container", "containers", explicit.length)} ${joinQuote(explicit)}`,
        );
      }
      if (badSetters.length) {
        return {
          reason: "seccompProfile",
          detail: `${
            badSetters.join(" and ")
          } must not set securityContext.seccompProfile.type to ${
            joinQuote(sortedUnique(badValues))
          }`,
        };
      }
      if (implicit.length) {
        return {
          reason: "seccompProfile",
          detail: `pod or ${pluralize("container", "containers", implicit.length)} ${
            joinQuote(implicit)
          } must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"`,
        };
      }
      return undefined;
    },
  },
];

/** The enforced level and version of a namespace, from its labels. */
export function enforcedPolicy(
  labels: Record<string, string> | undefined,
): { level: string; version: string } | undefined {
  const level = labels?.["pod-security.kubernetes.io/enforce"];
  if (!level || level === "privileged") return undefined;
  const version = labels?.["pod-security.kubernetes.io/enforce-version"] || "latest";
  return { level, version };
}

/**
 * The PodSecurity verdict on a pod for a namespace's labels: undefined if
 * allowed, else the error text (`violates PodSecurity "<level>:<version>":
 * <reasons>`).
 */
export function podSecurityViolation(
  pod: Pod,
  namespaceLabels: Record<string, string> | undefined,
): string | undefined {
  const policy = enforcedPolicy(namespaceLabels);
  if (!policy) return undefined;
  const level = policy.level === "restricted" ? "restricted" : "baseline";
  let checks = CHECKS.filter((c) => c.level === "baseline");
  if (level === "restricted") {
    const overridden = new Set(CHECKS.flatMap((c) => c.overrides ?? []));
    checks = [
      ...checks.filter((c) => !overridden.has(c.id)),
      ...CHECKS.filter((c) => c.level === "restricted"),
    ];
  }
  // Baseline checks first, then restricted, each group ordered by ID (byte order).
  const byId = (a: Check, b: Check) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  const ordered = [
    ...checks.filter((c) => c.level === "baseline").sort(byId),
    ...checks.filter((c) => c.level === "restricted").sort(byId),
  ];
  const failures = ordered.map((c) => c.run(pod)).filter((r): r is CheckResult => !!r);
  if (failures.length === 0) return undefined;
  const text = failures.map((f) => (f.detail ? `${f.reason} (${f.detail})` : f.reason)).join(
    ", ",
  );
  return `violates PodSecurity "${level}:${policy.version}": ${text}`;
}
