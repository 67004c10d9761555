/**
 * Errors from the REAL cluster (TCPGADGET_E2E_KUBECONFIG), word for word as
 * README.md documents them ("Errors", "Permissions", "Failures on one
 * node"): the real RBAC authorizer's denials for a user with no
 * permissions (TCPGADGET_E2E_RESTRICTED_KUBECONFIG), then with the
 * documented Role and ClusterRole granted to it (it traces), without each
 * of their permissions in turn, and without the optional ones; real Pod
 * Security admission of a baseline namespace; a real image pull of an
 * image that does not exist; names that do not exist. Every run is
 * checked through the API to leave no pod.
 *
 * @module
 */

import * as k8s from "@kubernetes/client-node";
import { assertEquals, assertMatch } from "./helpers/assert.ts";
import { CliRun } from "./helpers/cli.ts";
import {
  E2E_AGENT_IMAGE,
  E2E_BASELINE_NAMESPACE,
  eventually,
  isLocalTestCluster,
  RealCluster,
  realClusterTest,
  stderrLines,
} from "./helpers/real_cluster.ts";
import { state as testClusterState } from "./real_cluster/layout.ts";

const FILE = "tests/real_cluster_errors_test.ts";
const RESTRICTED_KUBECONFIG = Deno.env.get("TCPGADGET_E2E_RESTRICTED_KUBECONFIG") ??
  (isLocalTestCluster() ? testClusterState.restrictedKubeconfig : undefined);
if (!RESTRICTED_KUBECONFIG) {
  console.warn(
    `SKIPPED (${FILE}, restricted user): TCPGADGET_E2E_RESTRICTED_KUBECONFIG is not set (a user with no permissions)`,
  );
}

/** Runs tcpgadget to its end. */
function tcpgadget(args: string[]) {
  const image = E2E_AGENT_IMAGE && args.includes("--cluster") ? ["--image", E2E_AGENT_IMAGE] : [];
  return CliRun.run([...args, ...image]);
}

/** A rule of a Role or ClusterRole, as README.md's "Permissions" writes them. */
type Rule = { resources: string[]; verbs: string[] };

/** README.md's Role (in the agent namespace) and ClusterRole. */
const DOCUMENTED_ROLE: Rule[] = [
  { resources: ["pods"], verbs: ["create", "get", "list", "watch", "delete"] },
  { resources: ["pods/exec"], verbs: ["create", "get"] },
];
const DOCUMENTED_CLUSTER_ROLE: Rule[] = [
  { resources: ["nodes"], verbs: ["list"] },
  { resources: ["pods", "services"], verbs: ["list", "watch"] },
];

/** RBAC objects granted to a user or service account, replaced at will. */
class Grants {
  readonly #cluster: RealCluster;
  readonly #namespace: string;
  readonly #kc: k8s.KubeConfig;
  readonly #name: string;
  readonly #subject: k8s.RbacV1Subject;

  /** `kc` authenticates as `subject` (to check that the grants apply). */
  constructor(
    cluster: RealCluster,
    namespace: string,
    kc: k8s.KubeConfig,
    subject: k8s.RbacV1Subject,
  ) {
    this.#cluster = cluster;
    this.#namespace = namespace;
    this.#kc = kc;
    this.#subject = subject;
    this.#name = cluster.name(`tcpgadget-e2e-${subject.kind.toLowerCase()}`);
  }

  /** Binds a Role (in the agent namespace) and a ClusterRole with these rules to the user. */
  async grant(role: Rule[], clusterRole: Rule[]): Promise<void> {
    const { rbac } = this.#cluster;
    const name = this.#name;
    const namespace = this.#namespace;
    const rules = (list: Rule[]) => list.map((rule) => ({ apiGroups: [""], ...rule }));
    const subjects = [this.#subject];
    await this.revoke();
    await rbac.createNamespacedRole({
      namespace,
      body: { metadata: { name }, rules: rules(role) },
    });
    await rbac.createNamespacedRoleBinding({
      namespace,
      body: {
        metadata: { name },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name },
        subjects,
      },
    });
    await rbac.createClusterRole({ body: { metadata: { name }, rules: rules(clusterRole) } });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name },
        subjects,
      },
    });
    // The authorizer learns of RBAC objects through its watches: wait
    // until it decides as the rules say.
    const authz = this.#kc.makeApiClient(k8s.AuthorizationV1Api);
    const checks = [
      ...role.flatMap((rule) => rule.resources.map((r) => ({ r, verb: rule.verbs[0], namespace }))),
      ...clusterRole.flatMap((rule) =>
        rule.resources.map((r) => ({ r, verb: rule.verbs[0], namespace: undefined }))
      ),
    ];
    await eventually("the RBAC authorizer to apply the grants", async () => {
      for (const { r, verb, namespace } of checks) {
        const [resource, subresource] = r.split("/");
        const review = await authz.createSelfSubjectAccessReview({
          body: { spec: { resourceAttributes: { verb, resource, subresource, namespace } } },
        });
        if (!review.status?.allowed) return undefined;
      }
      return true;
    }, 60);
  }

  /** Removes whatever was granted. */
  async revoke(): Promise<void> {
    const { rbac } = this.#cluster;
    const name = this.#name;
    const namespace = this.#namespace;
    const gone = () => undefined;
    await rbac.deleteNamespacedRoleBinding({ name, namespace }).catch(gone);
    await rbac.deleteNamespacedRole({ name, namespace }).catch(gone);
    await rbac.deleteClusterRoleBinding({ name }).catch(gone);
    await rbac.deleteClusterRole({ name }).catch(gone);
  }
}

/** The user a kubeconfig authenticates as (asked of the API server). */
async function userOf(kc: k8s.KubeConfig): Promise<string> {
  const review = await kc.makeApiClient(k8s.AuthenticationV1Api).createSelfSubjectReview({
    body: {},
  });
  return review.status!.userInfo!.username!;
}

realClusterTest(
  FILE,
  "real cluster, real RBAC: a user with no permissions gets the documented message; with README's Role and ClusterRole it traces; without each permission, the documented message; without the optional ones it says what it loses; an error after the pods are made leaves none",
  {},
  async () => {
    if (!RESTRICTED_KUBECONFIG) return;
    await using cluster = new RealCluster();
    const namespace = await cluster.agentNamespace();
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(RESTRICTED_KUBECONFIG);
    const user = await userOf(kc);
    const grants = new Grants(cluster, namespace, kc, {
      kind: "User",
      name: user,
      apiGroup: "rbac.authorization.k8s.io",
    });
    cluster.defer(() => grants.revoke());
    const trace = (...args: string[]) =>
      tcpgadget([
        "trace",
        "tcp",
        "--cluster",
        "--kubeconfig",
        RESTRICTED_KUBECONFIG,
        "--agent-namespace",
        namespace,
        ...args,
      ]);
    /** Runs, and checks status, stdout, stderr and that no pod is left. */
    const expect = async (args: string[], code: number, stderr: string[]) => {
      const result = await trace(...args);
      assertEquals([result.code, result.stdout, stderrLines(result.stderr)], [code, "", stderr]);
      assertEquals(await cluster.agentPods(), [], "no agent pod left");
    };
    const [node] = await cluster.readyNodes();
    const denied = (verb: string, resource: string, where?: string) =>
      `permission denied: tcpgadget needs verb "${verb}" on resource "${resource}"${
        where ? ` in namespace "${where}"` : " (cluster-wide)"
      }; ${
        resource.split("/")[0]
      } is forbidden: User "${user}" cannot ${verb} resource "${resource}" in API group ""${
        where ? ` in the namespace "${where}"` : " at the cluster scope"
      }`;

    // Nothing granted: the first thing it asks for (README "Errors").
    await expect([], 1, [`tcpgadget: ${denied("list", "nodes")}`]);

    // README's Role and ClusterRole: it traces.
    await grants.grant(DOCUMENTED_ROLE, DOCUMENTED_CLUSTER_ROLE);
    const traced = await trace("--timeout", "3", "-o", "json");
    assertEquals(traced.code, 0, traced.stderr);
    assertEquals(stderrLines(traced.stderr), [
      `tcpgadget: node ${node}: uploaded N MB in T s (size and SHA-256 verified)`,
      "tcpgadget: tracing TCP connections on 1 node",
    ]);
    assertEquals(await cluster.agentPods(), []);

    // Without the ClusterRole's second rule: said, and it traces all the
    // same; pods are watched where the Role allows (the agent namespace).
    await grants.grant(DOCUMENTED_ROLE, DOCUMENTED_CLUSTER_ROLE.slice(0, 1));
    const degraded = await trace("-n", namespace, "--timeout", "3", "-o", "json");
    assertEquals(degraded.code, 0, degraded.stderr);
    assertEquals(stderrLines(degraded.stderr), [
      `tcpgadget: pods watched in namespace ${namespace} only (cannot list them in every namespace)`,
      `tcpgadget: services not watched, remote addresses are not named: ${
        denied("list", "services")
      }`,
      `tcpgadget: node ${node}: uploaded N MB in T s (size and SHA-256 verified)`,
      "tcpgadget: tracing TCP connections on 1 node",
    ]);

    // Without listing pods at all, -l cannot work: an error once the pods
    // are made, which deletes them.
    await grants.grant([
      { resources: ["pods"], verbs: ["create", "get", "delete"] },
      DOCUMENTED_ROLE[1],
    ], DOCUMENTED_CLUSTER_ROLE.slice(0, 1));
    await expect(["-n", namespace, "-l", "app=web"], 1, [
      `tcpgadget: pods not watched, names come from the nodes alone: ${
        denied("list", "pods", namespace)
      }`,
      `tcpgadget: services not watched, remote addresses are not named: ${
        denied("list", "services")
      }`,
      "tcpgadget: -l/--selector needs the pods' labels, but pods cannot be listed and watched (see above)",
    ]);

    // Each permission the run cannot do without, missing in turn.
    await grants.grant(DOCUMENTED_ROLE, []);
    await expect([], 1, [`tcpgadget: ${denied("list", "nodes")}`]);
    await grants.grant([
      { resources: ["pods"], verbs: ["get", "list", "watch", "delete"] },
      DOCUMENTED_ROLE[1],
    ], DOCUMENTED_CLUSTER_ROLE);
    await expect([], 1, [`tcpgadget: ${denied("create", "pods", namespace)}`]);
    // Exec over WebSocket is a GET (Kubernetes 1.35 also checks create).
    await grants.grant([
      DOCUMENTED_ROLE[0],
      { resources: ["pods/exec"], verbs: ["create"] },
    ], DOCUMENTED_CLUSTER_ROLE);
    const noExec = await trace();
    assertEquals(noExec.code, 1, noExec.stderr);
    const execDenied = stderrLines(noExec.stderr);
    assertEquals(execDenied.length, 2, noExec.stderr);
    assertMatch(
      execDenied[0],
      new RegExp(
        `^tcpgadget: node ${node}: permission denied: tcpgadget needs verb "get" on resource "pods/exec" in namespace "${namespace}"; pods "tcpgadget-RUN-0" is forbidden: User "${user}" cannot get resource "pods/exec" in API group "" in the namespace "${namespace}"$`,
      ),
    );
    assertEquals(execDenied[1], "tcpgadget: no node could be traced (the node failed)");
    assertEquals(await cluster.agentPods(), []);
    // Without delete, the pods cannot be removed: said, with what to run.
    await grants.grant([
      { resources: ["pods"], verbs: ["create", "get", "list", "watch"] },
      DOCUMENTED_ROLE[1],
    ], DOCUMENTED_CLUSTER_ROLE);
    const noDelete = await trace("--timeout", "2", "-o", "json");
    assertEquals(noDelete.code, 1, noDelete.stderr);
    const left = await cluster.agentPods();
    assertEquals(left.length, 1, `pods left: ${left}`);
    const [, leftName] = left[0].split("/");
    assertEquals(stderrLines(noDelete.stderr), [
      `tcpgadget: node ${node}: uploaded N MB in T s (size and SHA-256 verified)`,
      "tcpgadget: tracing TCP connections on 1 node",
      `tcpgadget: cannot delete pod ${namespace}/tcpgadget-RUN-0: ${
        denied("delete", "pods", namespace).replace(
          "; pods is forbidden",
          `; pods "tcpgadget-RUN-0" is forbidden`,
        )
      }`,
    ]);
    await cluster.core.deleteNamespacedPod({ namespace, name: leftName, gracePeriodSeconds: 0 });
  },
);

realClusterTest(
  FILE,
  "real cluster: a service account's bearer token, and the same token from an exec credential plugin, with README's permissions, trace",
  {},
  async () => {
    await using cluster = new RealCluster();
    const namespace = await cluster.agentNamespace();
    const account = cluster.name("tcpgadget-e2e-tracer");
    await cluster.core.createNamespacedServiceAccount({
      namespace,
      body: { metadata: { name: account } },
    });
    const { status } = await cluster.core.createNamespacedServiceAccountToken({
      name: account,
      namespace,
      // No audiences: the API server's own.
      body: { spec: { audiences: [], expirationSeconds: 900 } },
    });
    const token = status!.token;
    const server = cluster.kc.getCurrentCluster()!;
    const kubeconfig = (user: string) =>
      `apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: ${server.server}
    certificate-authority-data: ${server.caData}
users:
- name: tracer
  user:
${user}
contexts:
- name: tracer
  context: { cluster: e2e, user: tracer, namespace: ${namespace} }
current-context: tracer
`;
    const credential = JSON.stringify({
      apiVersion: "client.authentication.k8s.io/v1",
      kind: "ExecCredential",
      status: { token },
    });
    const dir = await Deno.makeTempDir({ prefix: "tcpgadget-e2e-token-" });
    cluster.defer(() => Deno.remove(dir, { recursive: true }));
    const files = {
      token: `${dir}/token.kubeconfig`,
      plugin: `${dir}/plugin.kubeconfig`,
    };
    await Deno.writeTextFile(files.token, kubeconfig(`    token: ${token}`), { mode: 0o600 });
    await Deno.writeTextFile(
      files.plugin,
      kubeconfig([
        "    exec:",
        "      apiVersion: client.authentication.k8s.io/v1",
        "      command: sh",
        `      args: ["-c", ${JSON.stringify(`echo '${credential}'`)}]`,
        "      interactiveMode: Never",
      ].join("\n")),
      { mode: 0o600 },
    );
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(files.token);
    const grants = new Grants(cluster, namespace, kc, {
      kind: "ServiceAccount",
      name: account,
      namespace,
    });
    cluster.defer(() => grants.revoke());
    await grants.grant(DOCUMENTED_ROLE, DOCUMENTED_CLUSTER_ROLE);
    const [node] = await cluster.readyNodes();
    // The context's namespace is the agent namespace.
    const results = await Promise.all(
      Object.values(files).map((file) =>
        tcpgadget([
          "trace",
          "tcp",
          "--cluster",
          "--kubeconfig",
          file,
          "--timeout",
          "3",
          "-o",
          "json",
        ])
      ),
    );
    for (const result of results) {
      assertEquals([result.code, stderrLines(result.stderr)], [0, [
        `tcpgadget: node ${node}: uploaded N MB in T s (size and SHA-256 verified)`,
        "tcpgadget: tracing TCP connections on 1 node",
      ]]);
    }
    assertEquals(await cluster.agentPods(), []);
  },
);

realClusterTest(
  FILE,
  "real cluster: real Pod Security admission of a baseline namespace, a real pull of an image that does not exist, a node and a namespace that do not exist: the documented messages, no pod left",
  {},
  async () => {
    await using cluster = new RealCluster();
    const namespace = await cluster.agentNamespace();
    const [node] = await cluster.readyNodes();
    const trace = (...args: string[]) =>
      tcpgadget(["trace", "tcp", "--cluster", "--kubeconfig", cluster.kubeconfig, ...args]);

    // README "Errors": the PodSecurity line, with the API server's own words.
    const baseline = await trace("--agent-namespace", E2E_BASELINE_NAMESPACE);
    assertEquals([baseline.code, baseline.stdout, stderrLines(baseline.stderr)], [1, "", [
      `tcpgadget: PodSecurity admission (level "baseline") rejects tcpgadget's privileged pod in namespace "${E2E_BASELINE_NAMESPACE}": label it pod-security.kubernetes.io/enforce=privileged, or choose another namespace with --agent-namespace (pods "tcpgadget-RUN-0" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostPID=true), hostPath volumes (volume "host"), privileged (container "agent" must not set securityContext.privileged=true))`,
    ]]);
    const agentsIn = async (ns: string) =>
      (await cluster.core.listNamespacedPod({
        namespace: ns,
        labelSelector: "app.kubernetes.io/managed-by=tcpgadget",
      })).items.map((pod) => pod.metadata!.name);
    assertEquals(await agentsIn(E2E_BASELINE_NAMESPACE), []);

    // README "Failures on one node": the kubelet's pull error, in the
    // documented frame; with every node failed, status 1 and no pod left.
    const image = `registry.invalid/tcpgadget-e2e/agent:${cluster.suffix}`;
    const pull = await trace("--agent-namespace", namespace, "--image", image);
    const lines = stderrLines(pull.stderr);
    assertEquals([pull.code, pull.stdout, lines.length], [1, "", 2], pull.stderr);
    const frame = new RegExp(
      `^tcpgadget: node ${node}: cannot pull image "${
        image.replaceAll(".", "\\.")
      }": (.+) \\(--image names another image\\)$`,
    );
    assertMatch(lines[0], frame);
    const why = lines[0].match(frame)![1];
    // The pull's own error, not the back-off's words around it.
    assertMatch(why, new RegExp(image.replaceAll(".", "\\.")));
    assertEquals([/Back-off|ErrImagePull/.test(why), lines[1]], [
      false,
      "tcpgadget: no node could be traced (the node failed)",
    ]);
    assertEquals(await cluster.agentPods(), []);

    // Names that do not exist.
    const noNode = await trace("--agent-namespace", namespace, "--node", "nope");
    assertEquals([noNode.code, noNode.stdout, noNode.stderr], [
      1,
      "",
      `tcpgadget: no node named "nope" (nodes: ${(await cluster.readyNodes()).join(", ")})\n`,
    ]);
    const missing = cluster.name("tcpgadget-e2e-missing");
    const noNamespace = await trace("--agent-namespace", missing);
    assertEquals([noNamespace.code, noNamespace.stdout, noNamespace.stderr], [
      1,
      "",
      `tcpgadget: namespace "${missing}" does not exist (the agent pods' namespace: --agent-namespace, else the context's)\n`,
    ]);
    assertEquals(await cluster.agentPods(), []);
  },
);
