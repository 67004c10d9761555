/**
 * Every way a kubeconfig can be wrong is one line naming the file and what
 * is wrong in it: empty, not YAML, no contexts, a current context or a
 * context's cluster or user that it does not define, a file it names that
 * cannot be read. Through loadKubeconfig, and through the command line for
 * each command that takes --kubeconfig.
 */

import { assertEquals, assertThrows } from "./helpers/assert.ts";
import { CliRun } from "./helpers/cli.ts";
import { TcpgadgetError } from "../core/errors.ts";
import { loadKubeconfig } from "../k8s/api/kubeconfig.ts";

/** A kubeconfig with one context "x" of cluster "c" and user "u", changed by `edit`. */
function kubeconfig(edit: (lines: string[]) => string[] = (lines) => lines): string {
  return edit([
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: c",
    "  cluster:",
    '    server: "https://127.0.0.1:6443"',
    "users:",
    "- name: u",
    "  user:",
    "    token: abc",
    "contexts:",
    "- name: x",
    "  context: {cluster: c, user: u, namespace: shop}",
    "current-context: x",
  ]).join("\n") + "\n";
}

/** Writes `text` to `dir/name` and returns the path. */
function write(dir: string, name: string, text: string): string {
  const path = `${dir}/${name}`;
  Deno.writeTextFileSync(path, text);
  return path;
}

Deno.test("kubeconfig: each mistake is one line naming the file and what is wrong", () => {
  const dir = Deno.makeTempDirSync({ prefix: "tgtest-kubeconfig-" });
  try {
    const cases: [string, string, string][] = [
      ["empty", "", "kubeconfig $F is empty"],
      ["blank", "\n  \n", "kubeconfig $F is empty"],
      ["comments", "# nothing yet\n---\n", "kubeconfig $F is empty (no YAML document in it)"],
      [
        "malformed",
        "clusters: [\n",
        "invalid kubeconfig $F: unexpected end of the stream within a flow collection (2:1)",
      ],
      ["scalar", "hello\n", "kubeconfig $F defines no contexts"],
      [
        "no-contexts",
        "apiVersion: v1\nkind: Config\nclusters: []\n",
        "kubeconfig $F defines no contexts",
      ],
      [
        "no-current",
        kubeconfig((l) => l.filter((line) => !line.startsWith("current-context"))),
        "kubeconfig $F has no current context: pass --context (contexts: x)",
      ],
      [
        "wrong-current",
        kubeconfig((l) =>
          l.map((line) => line.replace("current-context: x", "current-context: y"))
        ),
        'kubeconfig $F: its current context "y" is not defined in it (contexts: x)',
      ],
      [
        "missing-cluster",
        kubeconfig((l) => l.map((line) => line.replace("cluster: c,", "cluster: gone,"))),
        'kubeconfig $F: context "x" names cluster "gone", which is not defined in it (clusters: c)',
      ],
      [
        "missing-user",
        kubeconfig((l) => l.map((line) => line.replace("user: u,", "user: nobody,"))),
        'kubeconfig $F: context "x" names user "nobody", which is not defined in it (users: u)',
      ],
      [
        "no-server",
        kubeconfig((l) =>
          l.map((line) => line.includes("server:") ? "    insecure-skip-tls-verify: true" : line)
        ),
        "invalid kubeconfig $F: clusters[0].cluster.server is missing",
      ],
      [
        "missing-ca",
        kubeconfig((l) =>
          [...l, ""].map((line) =>
            line.replace(
              'server: "https://127.0.0.1:6443"',
              'server: "https://127.0.0.1:6443"\n    certificate-authority: ca.crt',
            )
          )
        ),
        'kubeconfig $F: cannot read $D/ca.crt (certificate-authority of cluster "c"): no such file',
      ],
      [
        "missing-cert",
        kubeconfig((l) =>
          l.map((line) =>
            line.replace(
              "token: abc",
              "client-certificate: /nonexistent/u.crt\n    client-key: u.key",
            )
          )
        ),
        'kubeconfig $F: cannot read /nonexistent/u.crt (client-certificate of user "u"): no such file',
      ],
      [
        "missing-token-file",
        kubeconfig((l) =>
          l.map((line) => line.replace("token: abc", "token-file: /nonexistent/t"))
        ),
        "kubeconfig $F: cannot read /nonexistent/t: no such file",
      ],
    ];
    for (const [name, text, message] of cases) {
      const file = write(dir, name, text);
      assertThrows(
        () => loadKubeconfig({ kubeconfig: file }),
        TcpgadgetError,
        message.replaceAll("$F", file).replaceAll("$D", dir),
      );
    }
    Deno.mkdirSync(`${dir}/a-directory`);
    assertThrows(
      () => loadKubeconfig({ kubeconfig: `${dir}/a-directory` }),
      TcpgadgetError,
      `cannot read kubeconfig ${dir}/a-directory: it is a directory`,
    );

    // Through KUBECONFIG, the file that is wrong is named.
    const good = write(dir, "good", kubeconfig());
    const empty = `${dir}/empty`;
    assertThrows(
      () => loadKubeconfig({ env: (v) => v === "KUBECONFIG" ? `${good}:${empty}` : undefined }),
      TcpgadgetError,
      `kubeconfig ${empty} is empty`,
    );

    // Files named relative to the kubeconfig are found next to it.
    Deno.writeTextFileSync(`${dir}/u.crt`, "not checked here");
    Deno.writeTextFileSync(`${dir}/u.key`, "not checked here");
    const relative = write(
      dir,
      "relative",
      kubeconfig((l) =>
        l.map((line) =>
          line.replace("token: abc", "client-certificate: u.crt\n    client-key: u.key")
        )
      ),
    );
    const loaded = loadKubeconfig({ kubeconfig: relative });
    assertEquals(
      [loaded.context, loaded.namespace, loaded.server, loaded.config.getCurrentUser()?.certFile],
      ["x", "shop", "https://127.0.0.1:6443", `${dir}/u.crt`],
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("kubeconfig: an empty kubeconfig is one line for every command, status 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tgtest-kubeconfig-" });
  try {
    const empty = write(dir, "empty", "");
    for (
      const args of [
        ["trace", "tcp", "--kubeconfig", empty],
        ["trace", "tcp", "--cluster", "--kubeconfig", empty],
        ["cleanup", "--kubeconfig", empty],
      ]
    ) {
      const result = await CliRun.run(args);
      assertEquals(
        result,
        { code: 1, stdout: "", stderr: `tcpgadget: kubeconfig ${empty} is empty\n` },
        args.join(" "),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
