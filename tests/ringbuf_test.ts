/**
 * MergedRingBuffers on rings built in memory with the kernel's layout
 * (kernel/bpf/ringbuf.c): records of several CPUs handed out in time order,
 * nothing stamped after the call started, busy and discarded records, and
 * the space handed back. The tracer's tests read real rings.
 */

import { MergedRingBuffers, type RingSource } from "../core/ringbuf.ts";
import { assertEquals } from "./helpers/assert.ts";

const BUSY = 0x8000_0000;
const DISCARD = 0x4000_0000;

/** A ring in memory: data pages twice in a row, like the kernel's mapping. */
class MemoryRing implements RingSource {
  readonly fd = -1;
  readonly size: number;
  readonly data: DataView;
  readonly words: Uint32Array;
  readonly #bytes: Uint8Array;
  consumerPosition = 0;
  producerPosition = 0;

  constructor(size: number) {
    this.size = size;
    const buffer = new ArrayBuffer(2 * size);
    this.data = new DataView(buffer);
    this.words = new Uint32Array(buffer);
    this.#bytes = new Uint8Array(buffer);
  }

  get pending(): number {
    return this.producerPosition - this.consumerPosition;
  }

  /** Reserves and writes a record: a u64 time, then a u32 tag; returns its position. */
  add(time: number, tag: number, flags = 0): number {
    const length = 12;
    const at = this.producerPosition;
    const record = new Uint8Array(8 + length);
    const view = new DataView(record.buffer);
    view.setUint32(0, length | flags, true);
    view.setBigUint64(8, BigInt(time), true);
    view.setUint32(16, tag, true);
    this.#write(at, record);
    this.producerPosition += (8 + length + 7) & ~7;
    return at;
  }

  /** Commits a busy record (clears BUSY in its header). */
  commit(at: number): void {
    const header = new Uint8Array(4);
    new DataView(header.buffer).setUint32(0, 12, true);
    this.#write(at, header);
  }

  #write(position: number, bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length; i++) {
      const offset = (position + i) & (this.size - 1);
      this.#bytes[offset] = bytes[i];
      this.#bytes[offset + this.size] = bytes[i];
    }
  }

  close(): void {}
}

async function withRings(
  count: number,
  fn: (rings: MemoryRing[], merged: MergedRingBuffers, clock: { now: number }) => void,
): Promise<void> {
  const rings = Array.from({ length: count }, () => new MemoryRing(4096));
  const clock = { now: 1_000_000 };
  const merged = new MergedRingBuffers(rings, { timeOffset: 0, now: () => clock.now });
  try {
    fn(rings, merged, clock);
  } finally {
    await merged.close();
  }
}

/** The tags of what one consume() hands out, in order. */
function consumeTags(merged: MergedRingBuffers): number[] {
  const tags: number[] = [];
  const count = merged.consume((data, offset, length) => {
    assertEquals(length, 12);
    tags.push(data.getUint32(offset + 8, true));
  });
  assertEquals(count, tags.length);
  return tags;
}

Deno.test("merged rings: records of all rings come out in time order", () =>
  withRings(3, (rings, merged) => {
    // Each ring in order, interleaved across rings; one ring empty.
    rings[0].add(10, 1);
    rings[1].add(20, 2);
    rings[0].add(30, 3);
    rings[0].add(40, 4);
    rings[1].add(50, 5);
    rings[1].add(60, 6);
    rings[0].add(70, 7);
    assertEquals(consumeTags(merged), [1, 2, 3, 4, 5, 6, 7]);
    for (const ring of rings) assertEquals(ring.pending, 0);
    assertEquals(consumeTags(merged), []);
  }));

Deno.test("merged rings: records stamped after the call started wait for the next", () =>
  withRings(2, (rings, merged, clock) => {
    rings[0].add(100, 1);
    rings[1].add(clock.now + 5, 2);
    rings[0].add(clock.now + 10, 3);
    assertEquals(consumeTags(merged), [1]);
    // Left where they were, not skipped (a record takes 24 bytes).
    assertEquals(rings[0].pending, 24);
    assertEquals(rings[1].pending, 24);
    rings[1].add(clock.now + 7, 4); // after 2 in its ring, before 3 in time
    clock.now += 20;
    assertEquals(consumeTags(merged), [2, 4, 3]);
  }));

Deno.test("merged rings: a busy record holds back its ring only; discarded ones are skipped", () =>
  withRings(2, (rings, merged) => {
    rings[0].add(10, 1);
    const busy = rings[0].add(20, 2, BUSY);
    rings[0].add(30, 3);
    rings[1].add(15, 4, DISCARD);
    rings[1].add(25, 5);
    assertEquals(consumeTags(merged), [1, 5]);
    // Ring 0 is handed back up to the busy record; ring 1 past the discarded one.
    assertEquals(rings[0].consumerPosition, busy);
    assertEquals(rings[1].pending, 0);
    rings[0].commit(busy);
    assertEquals(consumeTags(merged), [2, 3]);
  }));

Deno.test("merged rings: records that wrap around the end of a ring", () =>
  withRings(2, (rings, merged, clock) => {
    // Fill and drain most of a 4096-byte ring, then write across its end.
    let time = 1;
    for (let i = 0; i < 160; i++) rings[0].add(time++, 0);
    assertEquals(consumeTags(merged).length, 160);
    const tags: number[] = [];
    for (let i = 0; i < 20; i++) {
      rings[i % 2].add(time++, 100 + i);
      tags.push(100 + i);
    }
    clock.now = time;
    assertEquals(consumeTags(merged), tags);
  }));
