/**
 * Every version the test cluster is made of, in one place. A cache entry
 * (binaries, images) is keyed by these, so changing one here rebuilds only
 * what depends on it.
 *
 * @module
 */

export const VERSIONS = {
  /**
   * k8s.io/kubernetes module version. 1.34 is the newest release whose
   * kubelet runs on cgroup v1 without opting out of `failCgroupV1` (1.35
   * refuses it by default) and which still supports containerd 1.x (1.35 is
   * the last, 1.36 needs containerd 2), so Debian 12's containerd 1.6 works.
   */
  kubernetes: "v1.34.4",
  /** The staging modules (k8s.io/api, ...) at the matching v0.x version. */
  kubernetesStaging: "v0.34.4",
  /** go.etcd.io/etcd/server/v3: 1.34 is tested with etcd 3.6. */
  etcd: "v3.6.16",
  /** Oldest Go that builds both (the machines have 1.26). */
  minGo: "1.24",
  /**
   * Debian 12 packages, checked (by upstream version prefix) at `up`:
   * containerd, runc and the CNI plugins run the pods.
   */
  debian: {
    containerd: "1.6.",
    runc: "1.1.",
    "containernetworking-plugins": "1.1.",
  },
  /** The suite the local images are made from (debootstrap --variant=minbase). */
  imageSuite: "bookworm",
  /**
   * Images made locally and imported into containerd's k8s.io namespace.
   * `recipe` is bumped whenever images.ts changes how an image is made, so
   * the cache is not reused across recipes.
   */
  images: {
    /** tcpgadget's default `--image` (`debian:bookworm-slim`, as containerd normalizes it). */
    agent: { name: "docker.io/library/debian:bookworm-slim", recipe: 1 },
    /** Test workloads: the agent image plus python3 (the whole standard library). */
    workload: { name: "localhost/tcpgadget-e2e/workload:1", recipe: 2 },
    /** The sandbox ("pause") image containerd's CRI plugin is configured with. */
    pause: { name: "localhost/tcpgadget-e2e/pause:1", recipe: 1 },
  },
} as const;
