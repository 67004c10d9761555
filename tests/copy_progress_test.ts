/**
 * Upload progress on stderr (cli/copy_progress.ts): on a terminal, one
 * line per node rewritten in place, node names escaped, lines cut to the
 * terminal's width; elsewhere, plain occasional lines. (The plain lines'
 * wording: its doc test.)
 */

import { assertEquals } from "./helpers/assert.ts";
import { CopyProgress } from "../cli/copy_progress.ts";

function terminal(columns = 80) {
  let text = "";
  return {
    get text() {
      return text;
    },
    take() {
      const taken = text;
      text = "";
      return taken;
    },
    output: { write: (chunk: string) => text += chunk, columns: () => columns },
  };
}

const redrawn = () => new Promise((resolve) => setTimeout(resolve, 300));

Deno.test("copy progress: on a terminal, one line per node rewritten in place; other lines above them", async () => {
  const screen = terminal();
  let now = 0;
  const progress = new CopyProgress({ warn: () => {}, terminal: screen.output }, () => now);
  progress.update("node-a", "this machine", 0, 40e6);
  progress.update("node-b", "node node-a", 0, 100e6);
  now = 2000;
  progress.update("node-a", "this machine", 20e6, 40e6);
  await redrawn();
  assertEquals(
    screen.take(),
    [
      "tcpgadget: node node-a: 20.0 of 40.0 MB from this machine, 10.0 MB/s\n",
      "tcpgadget: node node-b: 0.0 of 100.0 MB from node node-a, 0.0 MB/s\n",
    ].join(""),
  );
  // A warning goes above the block, which is drawn again below it.
  progress.line("node node-c: not Ready, not traced");
  assertEquals(
    screen.take(),
    [
      "\x1b[2A\r\x1b[J",
      "tcpgadget: node node-c: not Ready, not traced\n",
      "tcpgadget: node node-a: 20.0 of 40.0 MB from this machine, 10.0 MB/s\n",
      "tcpgadget: node node-b: 0.0 of 100.0 MB from node node-a, 0.0 MB/s\n",
    ].join(""),
  );
  // A node done: its last word stays, its progress line goes.
  progress.done("node-a", "uploaded 40.0 MB in 4.0 s (size and SHA-256 verified)");
  assertEquals(
    screen.take(),
    [
      "\x1b[2A\r\x1b[J",
      "tcpgadget: node node-a: uploaded 40.0 MB in 4.0 s (size and SHA-256 verified)\n",
      "tcpgadget: node node-b: 0.0 of 100.0 MB from node node-a, 0.0 MB/s\n",
    ].join(""),
  );
  progress.close();
  assertEquals(screen.take(), "\x1b[1A\r\x1b[J");
});

Deno.test("copy progress: names from the cluster never move the cursor; lines never wrap", async () => {
  const screen = terminal(40);
  const progress = new CopyProgress({ warn: () => {}, terminal: screen.output }, () => 0);
  progress.update("evil\x1b[2J\nnode", "this machine", 0, 1e6);
  await redrawn();
  const drawn = screen.take();
  assertEquals(drawn, "tcpgadget: node evil\\x1b[2J\\nnode: 0.0…\n");
  progress.line("node \x1b]0;owned\x07: message");
  assertEquals(
    screen.take(),
    "\x1b[1A\r\x1b[Jtcpgadget: node \\x1b]0;owned\\x07: message\n" + drawn,
  );
  progress.close();
});

Deno.test("copy progress: without a terminal, a line for a copy under way every 10 s, none in between", () => {
  const lines: string[] = [];
  let now = 0;
  const progress = new CopyProgress({ warn: (line) => lines.push(line) }, () => now);
  for (now = 0; now <= 25_000; now += 1000) {
    progress.update("node-a", "this machine", now * 1000, 40e6);
  }
  assertEquals(lines, [
    "node node-a: 10.0 of 40.0 MB from this machine, 1.0 MB/s",
    "node node-a: 20.0 of 40.0 MB from this machine, 1.0 MB/s",
  ]);
  progress.close();
});
