/**
 * A growable byte buffer that output lines are written into directly, as
 * UTF-8: at hundreds of thousands of events per second, building a string
 * per line and encoding it afterwards costs several times more than
 * copying cached bytes and writing digits.
 *
 * @module
 */

const encoder = new TextEncoder();

// "00", "01", ... "99" as character codes.
const DIGIT_PAIRS = utf8(
  Array.from({ length: 100 }, (_, i) => String(i).padStart(2, "0")).join(""),
);

// Below this length a loop copies faster than a call into TypedArray#set.
const SHORT_COPY = 16;

/** UTF-8 bytes of `text`. */
export function utf8(text: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(text);
}

/**
 * Bytes being assembled into lines.
 *
 * @example
 * ```ts
 * import { LineBuffer, utf8 } from "./line_buffer.ts";
 * import assert from "node:assert/strict";
 * const out = new LineBuffer();
 * out.bytes(utf8("pid="));
 * out.uint(4242);
 * out.newline();
 * assert.equal(new TextDecoder().decode(out.view()), "pid=4242\n");
 * ```
 */
export class LineBuffer {
  /** The storage; replaced when it grows, so never keep a reference. */
  data: Uint8Array;
  /** Bytes written so far. */
  length = 0;
  /** Times {@link clear} was called: tells whether earlier bytes are still there. */
  clears = 0;

  constructor(capacity = 256 * 1024) {
    this.data = new Uint8Array(capacity);
  }

  /** What has been written (a view: valid until the next write). */
  view(): Uint8Array {
    return this.data.subarray(0, this.length);
  }

  /** Forgets what has been written. */
  clear(): void {
    this.length = 0;
    this.clears++;
  }

  /**
   * Forgets what was written after the first `length` bytes. As after
   * {@link clear}, bytes written earlier are not there to be copied.
   */
  truncate(length: number): void {
    this.length = length;
    this.clears++;
  }

  /** Makes room for `count` more bytes. */
  reserve(count: number): void {
    if (this.length + count <= this.data.length) return;
    const grown = new Uint8Array(Math.max(this.data.length * 2, this.length + count));
    grown.set(this.data.subarray(0, this.length));
    this.data = grown;
  }

  /** Appends bytes. */
  bytes(source: Uint8Array): void {
    const count = source.length;
    if (this.length + count > this.data.length) this.reserve(count);
    const data = this.data;
    const at = this.length;
    if (count <= SHORT_COPY) {
      for (let i = 0; i < count; i++) data[at + i] = source[i];
    } else {
      data.set(source, at);
    }
    this.length = at + count;
  }

  /** Appends one byte (an ASCII character code). */
  byte(code: number): void {
    if (this.length + 1 > this.data.length) this.reserve(1);
    this.data[this.length++] = code;
  }

  /** Appends a newline. */
  newline(): void {
    this.byte(0x0a);
  }

  /** Appends `count` spaces. */
  spaces(count: number): void {
    if (count <= 0) return;
    if (this.length + count > this.data.length) this.reserve(count);
    const data = this.data;
    const end = this.length + count;
    for (let i = this.length; i < end; i++) data[i] = 0x20;
    this.length = end;
  }

  /** Appends the decimal digits of a whole number in [0, 2^53); returns how many. */
  uint(value: number): number {
    if (value > 0x7fffffff) {
      // Split so that the digits are made with 32-bit integer arithmetic,
      // several times faster than with doubles.
      const high = Math.floor(value / 1e9);
      const digits = this.uint(high);
      this.zeroPadded(value - high * 1e9, 9);
      return digits + 9;
    }
    const digits = decimalDigits(value);
    this.zeroPadded(value, digits);
    return digits;
  }

  /** Appends `value` as exactly `width` digits, with leading zeros (0 <= value < 10^width < 2^31). */
  zeroPadded(value: number, width: number): void {
    if (this.length + width > this.data.length) this.reserve(width);
    const data = this.data;
    let at = this.length + width;
    this.length = at;
    let rest = value | 0;
    let left = width;
    // Two digits per division.
    while (left >= 2) {
      const next = (rest / 100) | 0;
      const pair = (rest - next * 100) << 1;
      data[--at] = DIGIT_PAIRS[pair + 1];
      data[--at] = DIGIT_PAIRS[pair];
      rest = next;
      left -= 2;
    }
    if (left === 1) data[--at] = 0x30 + rest;
  }

  /** Copies `count` bytes written earlier, from `from`, to the end. */
  repeat(from: number, count: number): void {
    if (this.length + count > this.data.length) this.reserve(count);
    this.data.copyWithin(this.length, from, from + count);
    this.length += count;
  }

  /** Appends a string as UTF-8; returns the bytes written. */
  text(value: string): number {
    // UTF-8 needs at most 3 bytes per UTF-16 unit.
    this.reserve(value.length * 3);
    const { written } = encoder.encodeInto(value, this.data.subarray(this.length));
    this.length += written;
    return written;
  }
}

/** How many decimal digits a whole number in [0, 2^31) has. */
function decimalDigits(value: number): number {
  if (value < 100000) {
    if (value < 100) return value < 10 ? 1 : 2;
    return value < 1000 ? 3 : value < 10000 ? 4 : 5;
  }
  if (value < 10000000) return value < 1000000 ? 6 : 7;
  return value < 100000000 ? 8 : value < 1000000000 ? 9 : 10;
}

const decoder = new TextDecoder();

/** The one line in `scratch`, without its newline. */
export function lineIn(scratch: LineBuffer): string {
  return decoder.decode(scratch.data.subarray(0, scratch.length - 1));
}
