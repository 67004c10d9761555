/**
 * The agent image of this tcpgadget for the test API server, whose fake
 * kubelets run pods on this machine: built as a user builds it, unpacked,
 * and given to the pods of the image.
 *
 * @module
 */

import { assert, assertEquals } from "./assert.ts";
import { CliRun } from "./cli.ts";
import type { ImageFiles } from "../kube_apiserver/mod.ts";

/**
 * Builds the agent image of this tcpgadget (`tcpgadget image build`) and
 * unpacks its layer into `dir`/root: the files and Env the test API
 * server's pods of the image see (its provideImage).
 */
export async function unpackedAgentImage(dir: string): Promise<ImageFiles> {
  const archive = `${dir}/image.tar`;
  const built = await CliRun.run(["image", "build", "--output", archive]);
  assertEquals(built.code, 0, built.stderr);
  const layout = `${dir}/layout`;
  const root = `${dir}/root`;
  await Deno.mkdir(layout);
  await Deno.mkdir(root);
  const untar = (args: string[]) => new Deno.Command("tar", { args }).output();
  assert((await untar(["-xf", archive, "-C", layout])).success, "the archive unpacks");
  const blob = (digest: string) => `${layout}/blobs/sha256/${digest.slice("sha256:".length)}`;
  const index = JSON.parse(await Deno.readTextFile(`${layout}/index.json`));
  const manifest = JSON.parse(await Deno.readTextFile(blob(index.manifests[0].digest)));
  const config = JSON.parse(await Deno.readTextFile(blob(manifest.config.digest)));
  assert((await untar(["-xzf", blob(manifest.layers[0].digest), "-C", root])).success);
  const env = Object.fromEntries(
    (config.config.Env as string[]).map((line) => {
      const at = line.indexOf("=");
      return [line.slice(0, at), line.slice(at + 1)];
    }),
  );
  // What the image adds to a machine that has its libraries: the program.
  return {
    binds: { "/usr/local/bin": `${root}/usr/local/bin`, "/opt/tcpgadget": `${root}/opt/tcpgadget` },
    env,
  };
}
