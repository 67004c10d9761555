/**
 * A counting semaphore for async work: at most `limit` holders at once,
 * the others wait in order.
 *
 * @module
 */

/**
 * At most `limit` holders at once.
 *
 * @example
 * ```ts
 * import { Semaphore } from "./semaphore.ts";
 * import assert from "node:assert/strict";
 * const semaphore = new Semaphore(2);
 * let running = 0;
 * let most = 0;
 * await Promise.all([1, 2, 3, 4].map(() =>
 *   semaphore.use(async () => {
 *     most = Math.max(most, ++running);
 *     await new Promise((resolve) => setTimeout(resolve, 5));
 *     running--;
 *   })
 * ));
 * assert.deepEqual(most, 2);
 * ```
 */
export class Semaphore {
  #free: number;
  readonly #waiting: (() => void)[] = [];

  constructor(limit: number) {
    this.#free = limit;
  }

  /** Runs `run` once a place is free; frees it when `run` settles. */
  async use<T>(run: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await run();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}
