/**
 * `trace tcp --names` through the command line: a process resolves names
 * with a real DNS server (dnsmasq in a network namespace, A and CNAME
 * records) and its hosts file, and connects; its events carry the name of
 * each remote address, where it came from and its CNAMEs (JSON `dstname`,
 * the hidden column dstname), and nothing without --names.
 */

import { Actor } from "./helpers/actors.ts";
import { assertEquals } from "./helpers/assert.ts";
import { CliRun } from "./helpers/cli.ts";
import { DNSMASQ_SKIP_REASON } from "./helpers/dnsmasq.ts";
import { DnsWorld } from "./helpers/dns_world.ts";
import { needsBpf } from "./helpers/privileges.ts";

const FILE = "cli_dstname_test.ts";
const noBpf = needsBpf(FILE);
if (!noBpf && DNSMASQ_SKIP_REASON) {
  console.warn(`SKIPPED (${FILE}, real DNS): ${DNSMASQ_SKIP_REASON}`);
}
const ignore = noBpf || DNSMASQ_SKIP_REASON !== undefined;

Deno.test({
  name: "cli: trace tcp --names names remote addresses (JSON dstname, column dstname)",
  ignore,
  async fn() {
    await using w = await DnsWorld.create({
      names: { "allowed.test": "11", "target.test": "13" },
      cnames: { "alias.test": "target.test" },
      hosted: { "hosted.test": "14" },
    });
    const client = await Actor.start("tg-dn-client", { binds: w.files("host") });
    try {
      const outputs = [["-o", "json"], ["-o", "custom-columns=comm,daddr,dport,dstname"]];
      const results: string[][] = [];
      for (const output of [...outputs.map((o) => ["--names", ...o]), ["-o", "json"]]) {
        const run = CliRun.start(["trace", "tcp", "--comm", "tg-dn-client", ...output]);
        await run.ready();
        for (const name of ["allowed.test", "alias.test", "hosted.test"]) {
          const { addresses } = await client.do(`resolve ${name} 4`);
          assertEquals((await client.do(`connect ${addresses[0]} ${w.port4}`)).error, null);
        }
        assertEquals((await client.do(`connect ${w.netns.nsAddress} ${w.port4}`)).error, null);
        await run.waitFor(
          () => run.stdoutLines.filter((l) => l.includes(String(w.port4))).length === 4,
          "the four connects",
        );
        run.child.kill("SIGINT");
        assertEquals((await run.finish()).code, 0, run.stderr);
        results.push(run.stdoutLines);
      }
      const [json, columns, without] = results;
      assertEquals(
        json.map((line) => JSON.parse(line)).map((e) => [e.operation, e.daddr, e.dstname]),
        [
          ["connect", w.address("allowed.test", 4), {
            name: "allowed.test",
            source: "dns",
            chain: ["allowed.test"],
          }],
          ["connect", w.address("target.test", 4), {
            name: "alias.test",
            source: "dns",
            chain: ["alias.test", "target.test"],
          }],
          ["connect", w.hosted["hosted.test"], { name: "hosted.test", source: "hosts" }],
          ["connect", w.netns.nsAddress, undefined],
        ],
      );
      assertEquals(columns.map((line) => line.split(/ +/)), [
        ["COMM", "DADDR", "DPORT", "DSTNAME"],
        ["tg-dn-client", w.address("allowed.test", 4), String(w.port4), "allowed.test"],
        ["tg-dn-client", w.address("target.test", 4), String(w.port4), "alias.test"],
        ["tg-dn-client", w.hosted["hosted.test"], String(w.port4), "hosted.test"],
        ["tg-dn-client", w.netns.nsAddress, String(w.port4), ""],
      ]);
      // Without --names: no name, and no key.
      assertEquals(without.map((line) => "dstname" in JSON.parse(line)), [
        false,
        false,
        false,
        false,
      ]);
    } finally {
      await client.stop();
    }
  },
});
