/**
 * The process, container and addresses of the last event a formatter saw:
 * most lines repeat those of the line before, and the formatters reuse
 * their text.
 *
 * @module
 */

import type { TraceEvent } from "../../core/trace_event.ts";

/**
 * The process, container and addresses of the last event seen: most lines
 * repeat those of the line before, and their text is reused.
 */
export class SourceMemo {
  #pid = -1;
  #comm = "";
  #saddr = "";
  #daddr = "";
  #ipversion = 0;
  #node: string | undefined;
  #namespace: string | undefined;
  #pod: string | undefined;
  #container: string | undefined;
  #uid = -1;
  #gid = -1;
  #mntns = -1;
  #netns = -1;
  #containerId: string | undefined;
  #podUid: string | undefined;

  /** True if `event` has the last event's; else remembers its. */
  same(event: TraceEvent): boolean {
    if (
      event.pid === this.#pid && event.comm === this.#comm && event.saddr === this.#saddr &&
      event.daddr === this.#daddr && event.ipversion === this.#ipversion &&
      event.node === this.#node && event.namespace === this.#namespace &&
      event.pod === this.#pod && event.container === this.#container &&
      event.uid === this.#uid && event.gid === this.#gid && event.mntns === this.#mntns &&
      event.netns === this.#netns && event.containerId === this.#containerId &&
      event.podUid === this.#podUid
    ) {
      return true;
    }
    this.#pid = event.pid;
    this.#comm = event.comm;
    this.#saddr = event.saddr;
    this.#daddr = event.daddr;
    this.#ipversion = event.ipversion;
    this.#node = event.node;
    this.#namespace = event.namespace;
    this.#pod = event.pod;
    this.#container = event.container;
    this.#uid = event.uid;
    this.#gid = event.gid;
    this.#mntns = event.mntns;
    this.#netns = event.netns;
    this.#containerId = event.containerId;
    this.#podUid = event.podUid;
    return false;
  }
}
