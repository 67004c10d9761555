/** The byte buffer output lines are written into: digits, text, growth. */

import { LineBuffer, utf8 } from "../cli/output/line_buffer.ts";
import { assertEquals } from "./helpers/assert.ts";

const text = (out: LineBuffer) => new TextDecoder().decode(out.view());

Deno.test("uint: every digit count, both sides of 2^31, up to 2^53 - 1", () => {
  const values = [0, 7, 10, 99, 100, 65535, 999_999_999, 1_000_000_000, 2 ** 31 - 1, 2 ** 31];
  values.push(4_026_531_840, 9_999_999_999, 10_000_000_000, 1_000_000_000_000_007);
  values.push(Number.MAX_SAFE_INTEGER);
  for (let digits = 1; digits <= 16; digits++) values.push(10 ** digits - 1, 10 ** (digits - 1));
  for (const value of values) {
    const out = new LineBuffer(4);
    const written = out.uint(value);
    assertEquals(text(out), String(value));
    assertEquals(written, String(value).length);
  }
});

Deno.test("zeroPadded: fixed width with leading zeros, odd and even widths", () => {
  const out = new LineBuffer(2);
  out.zeroPadded(5, 9);
  out.byte(0x2c);
  out.zeroPadded(123_456_789, 9);
  out.byte(0x2c);
  out.zeroPadded(42, 4);
  out.byte(0x2c);
  out.zeroPadded(0, 1);
  assertEquals(text(out), "000000005,123456789,0042,0");
});

Deno.test("bytes, spaces, text: short and long copies, multi-byte text, growth past capacity", () => {
  const out = new LineBuffer(8);
  out.bytes(utf8("ab"));
  out.spaces(3);
  out.bytes(utf8("x".repeat(40)));
  const written = out.text("nöde-ü€");
  out.spaces(0);
  out.newline();
  assertEquals(text(out), `ab   ${"x".repeat(40)}nöde-ü€\n`);
  assertEquals(written, utf8("nöde-ü€").length);
});

Deno.test("repeat copies earlier bytes; clear counts, so old offsets are known stale", () => {
  const out = new LineBuffer(4);
  out.bytes(utf8("hello "));
  out.repeat(0, 5);
  assertEquals(text(out), "hello hello");
  const clears = out.clears;
  out.clear();
  assertEquals(out.length, 0);
  assertEquals(out.clears, clears + 1);
});
