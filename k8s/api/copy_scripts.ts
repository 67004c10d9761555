/**
 * The programs that receive, check and serve copies of tcpgadget in the
 * agent pods, written for what the agent image has (debian:bookworm-slim:
 * `sh`, coreutils, `gzip`, `perl` from perl-base; no curl, wget or nc):
 *
 * - {@link unpackCommand}: a gzip stream on standard input (the client's
 *   upload, through the exec API) unpacked into a file;
 * - {@link fetchCommand}: a file read from another agent over the pod
 *   network (perl: connect, read with a bound on silence, say progress);
 * - {@link serveCommand}: a small file server (perl) that hands the pod's
 *   copy to other agents, while it is still arriving;
 *
 * each receiving into a temporary file of its own attempt and renaming it
 * to its final name only once its size and SHA-256 are the client's: a
 * file under its final name has been checked, and nothing else runs. Every
 * value is passed as an argument, never spliced into the script.
 *
 * Exit statuses of the receiving commands: 0 done, 2 the source could not
 * be reached, 3 the copy was cut short (or no byte came for a while), 4 it
 * arrived whole but damaged (SHA-256), 127 a program is missing from the
 * image, anything else another failure (its message on stderr).
 *
 * @module
 */

/** What a receiving command writes, and what it must be. */
export interface ReceivedFile {
  /** Size of the file, in bytes. */
  size: number;
  /** Its SHA-256, hex: the client's, the only digest a copy is checked against. */
  sha256: string;
  /** Where this attempt writes it (no other attempt writes there). */
  part: string;
  /** Its name once checked. */
  final: string;
}

/** Exit statuses of the receiving commands. */
export const COPY_EXIT = {
  ok: 0,
  unreachable: 2,
  cutShort: 3,
  damaged: 4,
  missingProgram: 127,
} as const;

/** How long a server waits for a file that does not grow, in seconds. */
export const SERVE_GROWTH_WAIT_S = 20;
/** How long a fetch waits for a byte before it gives up, in seconds. */
export const FETCH_IDLE_S = 30;
/** A server with no new connection for this long ends by itself (its client may be gone). */
export const SERVE_IDLE_S = 120;

// Every received file is hashed as it arrives, read back from the file
// while it grows (the hash is of what is on disk, and it is ready when the
// last byte is: a node does not spend 0.6 s of CPU per 100 MB after the
// copy, and 32 simulated nodes on 2 cores do not queue for it); then it is
// checked against the client's size and SHA-256 and renamed. The receiver
// runs in the background ("$@" after the variables), the hasher follows
// the file until the receiver ends (tail --pid); "$part" and its digest are
// removed on any failure, so that an attempt leaves nothing behind.
const RECEIVE = [
  'mkdir -p "${final%/*}" || exit 1',
  // What an earlier attempt left (its commands killed before they could
  // clean up): each attempt writes its own names, so these are no one's.
  'for f in "$final".*.part "$final".*.part.sum; do',
  '  if [ "$f" != "$part" ] && [ -e "$f" ]; then rm -f "$f"; fi',
  "done",
  ': > "$part" || exit 1',
  // A command put in the background reads /dev/null unless told otherwise.
  "exec 3<&0",
  '"$@" <&3 3<&- &',
  "exec 3<&-",
  "receiver=$!",
  'tail -c +1 -s 0.2 -f --pid="$receiver" "$part" 2>/dev/null | head -c "$size" | ' +
  'sha256sum > "$part.sum" &',
  "hasher=$!",
  'wait "$receiver"; status=$?',
  'wait "$hasher"',
  'fail() { rm -f "$part" "$part.sum"; exit "$1"; }',
  'if [ "$status" -ne 0 ]; then fail "$status"; fi',
  'got=$(stat -c %s "$part") || fail 1',
  'if [ "$got" != "$size" ]; then echo "cut short: $got of $size bytes arrived" >&2; fail 3; fi',
  'read -r sum rest < "$part.sum" || fail 1',
  'if [ "$sum" != "$sha" ]; then echo "damaged: sha256 $sum, expected $sha" >&2; fail 4; fi',
  'rm -f "$part.sum"',
  'chmod 755 "$part" && mv -f "$part" "$final" || fail 1',
].join("\n");

const UNPACK = [
  "packed=$1 size=$2 sha=$3 part=$4 final=$5",
  "shift 5",
  // `head -c` ends the input after the packed bytes: protocol v4 cannot
  // close standard input. A stream cut short makes gzip fail.
  "unpack() {",
  '  head -c "$packed" | gzip -dc > "$part" ||',
  '    { echo "the upload did not unpack (cut short?)" >&2; return 3; }',
  "}",
  "set -- unpack",
  RECEIVE,
].join("\n");

/**
 * The command that unpacks a gzip stream of `packedSize` bytes from
 * standard input into `file`, checked.
 *
 * @example
 * ```ts
 * import { unpackCommand } from "./copy_scripts.ts";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * const data = new TextEncoder().encode("tcpgadget\n");
 * const wrong = "0".repeat(64);
 * const real = [...new Uint8Array(await crypto.subtle.digest("SHA-256", data))]
 *   .map((b) => b.toString(16).padStart(2, "0")).join("");
 * const packed = new Uint8Array(
 *   await new Response(new Blob([data]).stream().pipeThrough(new CompressionStream("gzip")))
 *     .arrayBuffer(),
 * );
 * const run = async (sha: string) => {
 *   const [command, ...args] = unpackCommand(packed.length, {
 *     size: data.length, sha256: sha, part: `${dir}/f.1.part`, final: `${dir}/f`,
 *   });
 *   const child = new Deno.Command(command, { args, stdin: "piped", stderr: "piped" }).spawn();
 *   const writer = child.stdin.getWriter();
 *   await writer.write(packed);
 *   await writer.close();
 *   const { code, stderr } = await child.output();
 *   return [code, new TextDecoder().decode(stderr).trim()];
 * };
 * assert.deepEqual(await run(wrong), [4, `damaged: sha256 ${real}, expected ${wrong}`]);
 * assert.deepEqual([...Deno.readDirSync(dir)], []);
 * assert.deepEqual(await run(real), [0, ""]);
 * assert.equal(Deno.readTextFileSync(`${dir}/f`), "tcpgadget\n");
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function unpackCommand(packedSize: number, file: ReceivedFile): string[] {
  return [
    "sh",
    "-c",
    UNPACK,
    "sh",
    String(packedSize),
    String(file.size),
    file.sha256,
    file.part,
    file.final,
  ];
}

// The fetch: connect (bounded), ask for the file by name, read exactly its
// size with a bound on silence, write it; "progress N" on stderr at most
// once a second. perl-base has IO::Socket::IP (IPv4 and IPv6) but not
// Time::HiRes, hence whole seconds.
const FETCH_PERL = `
use strict; use IO::Socket::IP;
$SIG{PIPE} = 'IGNORE';
my ($host, $port, $name, $size, $out, $idle) = @ARGV;
my $s = IO::Socket::IP->new(PeerHost => $host, PeerPort => $port, Timeout => 10)
  or do { my $e = $@; $e =~ s/^IO::Socket::IP: //; print STDERR "cannot connect to $host port $port: $e\\n"; exit 2 };
syswrite($s, "$name\\n") or do { print STDERR "cannot send the request: $!\\n"; exit 2 };
open(my $o, '>', $out) or do { print STDERR "cannot write $out: $!\\n"; exit 1 };
my ($got, $shown) = (0, time);
while ($got < $size) {
  my $rin = ''; vec($rin, fileno($s), 1) = 1;
  select(my $r = $rin, undef, undef, $idle)
    or do { print STDERR "no data for $idle s after $got of $size bytes\\n"; exit 3 };
  my $want = $size - $got; $want = 1048576 if $want > 1048576;
  my $n = sysread($s, my $buf, $want);
  $n or do { print STDERR "cut short after $got of $size bytes\\n"; exit 3 };
  for (my $off = 0; $off < $n;) {
    my $w = syswrite($o, $buf, $n - $off, $off) or do { print STDERR "cannot write $out: $!\\n"; exit 1 };
    $off += $w;
  }
  $got += $n;
  if (time != $shown) { $shown = time; print STDERR "progress $got\\n" }
}
close($o) or do { print STDERR "cannot write $out: $!\\n"; exit 1 };
print STDERR "progress $got\\n";
`;

const FETCH = [
  "host=$1 port=$2 name=$3 size=$4 sha=$5 part=$6 final=$7 idle=$8 program=$9",
  'set -- perl -e "$program" "$host" "$port" "$name" "$size" "$part" "$idle"',
  RECEIVE,
].join("\n");

/** Where a peer serves its copy. */
export interface PeerAddress {
  /** The pod's IP (v4 or v6). */
  ip: string;
  port: number;
}

/**
 * The command that fetches the file `name` from a peer's server into
 * `file`, checked. Its stderr says `progress BYTES` as bytes arrive.
 *
 * @example
 * ```ts
 * import { fetchCommand } from "./copy_scripts.ts";
 * import assert from "node:assert/strict";
 * // Nothing listens there: the source cannot be reached (exit 2), nothing is left.
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const port = (listener.addr as Deno.NetAddr).port;
 * listener.close();
 * const dir = await Deno.makeTempDir();
 * const [command, ...args] = fetchCommand({ ip: "127.0.0.1", port }, "deno", {
 *   size: 5, sha256: "0".repeat(64), part: `${dir}/deno.1.part`, final: `${dir}/deno`,
 * });
 * const { code, stderr } = await new Deno.Command(command, { args, stderr: "piped" }).output();
 * assert.equal(code, 2);
 * assert.match(new TextDecoder().decode(stderr), /^cannot connect to 127\.0\.0\.1 port \d+: /);
 * assert.deepEqual([...Deno.readDirSync(dir)], []);
 * Deno.removeSync(dir);
 * ```
 */
export function fetchCommand(
  source: PeerAddress,
  name: string,
  file: ReceivedFile,
  idleSeconds = FETCH_IDLE_S,
): string[] {
  return [
    "sh",
    "-c",
    FETCH,
    "sh",
    source.ip,
    String(source.port),
    name,
    String(file.size),
    file.sha256,
    file.part,
    file.final,
    String(idleSeconds),
    FETCH_PERL,
  ];
}

// The server: listens on the pod's IP (any free port, printed as "port N"
// on stdout), one process per connection. A request is a file's name; the
// answer is exactly its size in bytes, from the checked file if it is
// there, else from the copy still arriving, read as it grows (so that
// peers copy while the pod receives). It ends when its standard input ends
// (the client closed it) or after a long time without a connection.
const SERVE_PERL = `
use strict; use IO::Socket::IP; use IO::Select;
$SIG{PIPE} = 'IGNORE'; $SIG{CHLD} = 'IGNORE';
my ($ip, $idle, $growth, @spec) = @ARGV;
my %files;
while (@spec >= 4) { my ($n, $s, $f, $p) = splice(@spec, 0, 4); $files{$n} = [$s, $f, $p]; }
my $server = IO::Socket::IP->new(LocalHost => $ip, LocalPort => 0, Listen => 64, ReuseAddr => 1)
  or do { my $e = $@; $e =~ s/^IO::Socket::IP: //; print STDERR "cannot listen on $ip: $e\\n"; exit 2 };
$| = 1;
print "port " . $server->sockport . "\\n";
my $select = IO::Select->new($server, \\*STDIN);
my $last = time;
my %kids;
# Its children end with it: each would hold the exec's output open (the
# client's stream) for up to $growth seconds, serving a copy no one wants.
sub finish { kill 'KILL', keys %kids; exit 0 }
while (1) {
  for my $fh ($select->can_read(1)) {
    if (fileno($fh) == fileno(STDIN)) { sysread(STDIN, my $b, 4096) or finish(); next }
    my $peer = $server->accept or next;
    $last = time;
    my $pid = fork;
    if (defined $pid && $pid == 0) {
      close $server;
      open(STDIN, '<', '/dev/null'); open(STDOUT, '>', '/dev/null'); open(STDERR, '>', '/dev/null');
      serve($peer);
      exit 0;
    }
    $kids{$pid} = 1 if $pid;
    close $peer;
  }
  finish() if time - $last > $idle;
}
sub serve {
  my ($s) = @_;
  local $SIG{ALRM} = sub { exit 1 };
  alarm 10;
  my $line = '';
  while ($line !~ /\\n/) { sysread($s, $line, 256, length $line) or exit 1 }
  my ($name) = split /\\n/, $line;
  my $f = $files{$name} or exit 1;
  my ($size, $final, $part) = @$f;
  my ($in, $quiet, $sent) = (undef, 0, 0);
  until (open($in, '<', $final) || open($in, '<', $part)) {
    exit 1 if ($quiet += 0.1) > $growth;
    select(undef, undef, undef, 0.1);
  }
  $quiet = 0;
  while ($sent < $size) {
    my $want = $size - $sent; $want = 1048576 if $want > 1048576;
    my $n = sysread($in, my $buf, $want);
    defined $n or exit 1;
    if ($n == 0) {
      exit 1 if ($quiet += 0.05) > $growth;
      select(undef, undef, undef, 0.05);
      next;
    }
    $quiet = 0;
    for (my $off = 0; $off < $n;) {
      alarm $growth;
      my $w = syswrite($s, $buf, $n - $off, $off) or exit 1;
      $off += $w;
    }
    $sent += $n;
  }
  alarm 0;
}
`;

/** A file a server hands out. */
export interface ServedFile {
  /** The name peers ask for. */
  name: string;
  size: number;
  /** The checked copy. */
  final: string;
  /** The copy still arriving (served, as it grows, while `final` is not there). */
  part: string;
}

/**
 * The command that serves `files` on `ip` (any free port, printed as
 * `port N` on stdout) until its standard input ends.
 *
 * @example
 * ```ts
 * import { fetchCommand, serveCommand } from "./copy_scripts.ts";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * Deno.writeTextFileSync(`${dir}/a`, "tcpgadget\n");
 * const [command, ...args] = serveCommand("127.0.0.1", [
 *   { name: "a", size: 10, final: `${dir}/a`, part: `${dir}/a.1.part` },
 * ]);
 * const server = new Deno.Command(command, { args, stdin: "piped", stdout: "piped" }).spawn();
 * const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
 * const port = Number((await reader.read()).value?.match(/^port (\d+)/)?.[1]);
 * const digest = await crypto.subtle.digest("SHA-256", Deno.readFileSync(`${dir}/a`));
 * const real = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
 * // A copy whose digest is not the one given is not kept; one that is, is.
 * for (const [sha, code] of [["0".repeat(64), 4], [real, 0]] as const) {
 *   const [fetch, ...fetchArgs] = fetchCommand({ ip: "127.0.0.1", port }, "a", {
 *     size: 10, sha256: sha, part: `${dir}/b.1.part`, final: `${dir}/b`,
 *   });
 *   assert.equal((await new Deno.Command(fetch, { args: fetchArgs, stderr: "null" }).output()).code, code);
 * }
 * assert.equal(Deno.readTextFileSync(`${dir}/b`), "tcpgadget\n");
 * await server.stdin.close(); // the end of its input ends it
 * assert.equal((await server.status).code, 0);
 * await reader.cancel();
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function serveCommand(
  ip: string,
  files: ServedFile[],
  options: { idleSeconds?: number; growthWaitSeconds?: number } = {},
): string[] {
  return [
    "perl",
    "-e",
    SERVE_PERL,
    ip,
    String(options.idleSeconds ?? SERVE_IDLE_S),
    String(options.growthWaitSeconds ?? SERVE_GROWTH_WAIT_S),
    ...files.flatMap((file) => [file.name, String(file.size), file.final, file.part]),
  ];
}
