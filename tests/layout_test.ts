/**
 * The layout's one rule, checked on every product module: an event flows
 * cli -> k8s -> core -> bpf, and no module imports from a folder above its
 * own in that flow; inside k8s/, the two halves (node/: a node's own files;
 * api/: the Kubernetes API) do not import each other nor k8s/'s own files,
 * and image/ (the agent image) imports nothing else of k8s/ either.
 */

import { assertEquals } from "./helpers/assert.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** Relative imports of a module (static and dynamic), resolved from the repository root. */
function importsOf(path: string): string[] {
  const text = Deno.readTextFileSync(`${ROOT}${path}`);
  const found: string[] = [];
  const pattern = /(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g;
  for (const match of text.matchAll(pattern)) {
    const url = new URL(match[1], `file://${ROOT}${path}`);
    found.push(url.pathname.slice(ROOT.length));
  }
  return found;
}

function modules(dir: string): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync(`${ROOT}${dir}`)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) found.push(...modules(path));
    else if (entry.name.endsWith(".ts")) found.push(path);
  }
  return found;
}

/** The folders a module in `dir` may import from. */
function allowed(module: string): string[] {
  if (module.startsWith("bpf/")) return ["bpf/"];
  if (module.startsWith("core/")) return ["core/", "bpf/", "deno.json"];
  if (module.startsWith("k8s/node/")) return ["k8s/node/", "core/", "bpf/"];
  if (module.startsWith("k8s/api/")) return ["k8s/api/", "core/", "bpf/"];
  if (module.startsWith("k8s/image/")) return ["k8s/image/", "core/", "bpf/"];
  if (module.startsWith("k8s/")) return ["k8s/", "core/", "bpf/"];
  return ["cli/", "k8s/", "core/", "bpf/", "deno.json"];
}

Deno.test("layout: no module imports from a folder above its own in the flow", () => {
  const wrong: string[] = [];
  for (const module of ["cli", "k8s", "core"].flatMap(modules)) {
    for (const target of importsOf(module)) {
      if (!allowed(module).some((prefix) => target.startsWith(prefix))) {
        wrong.push(`${module} imports ${target}`);
      }
    }
  }
  assertEquals(wrong, []);
});
