/**
 * Names from kubelet's log files: parsing of link names, pod directories
 * and link targets, and the directory scan (new links, cut link names).
 */

import {
  KubeletFiles,
  parseContainerLogName,
  parseContainerLogTarget,
  parsePodLogDir,
} from "../k8s/node/kubelet_files.ts";
import { assertEquals } from "./helpers/assert.ts";
import { FakeHost } from "./helpers/fake_host.ts";

const ID = "f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830";
const UID = "0f3c8a56-2d1e-4b5a-9c7d-1e2f3a4b5c6d";

Deno.test("kubelet files: a log link name with - and . in the names", () => {
  assertEquals(parseContainerLogName(`coredns-5d78c9869d-9xq2v_kube-system_coredns-${ID}.log`), {
    pod: "coredns-5d78c9869d-9xq2v",
    namespace: "kube-system",
    container: "coredns",
    containerId: ID,
  });
  assertEquals(
    parseContainerLogName(`web.v2-0_my-shop_istio-proxy-sidecar-${ID}.log`),
    { pod: "web.v2-0", namespace: "my-shop", container: "istio-proxy-sidecar", containerId: ID },
  );
});

Deno.test("kubelet files: names that are not log links", () => {
  assertEquals(parseContainerLogName(`web_shop_nginx-${ID}`), undefined);
  assertEquals(parseContainerLogName(`web_shop_nginx-${ID.slice(1)}.log`), undefined);
  assertEquals(parseContainerLogName(`web_shop-${ID}.log`), undefined);
  assertEquals(parseContainerLogName(`web_shop_x_nginx-${ID}.log`), undefined);
});

Deno.test("kubelet files: a pod log directory name", () => {
  assertEquals(parsePodLogDir(`kube-system_kube-proxy-x7k2p_${UID}`), {
    namespace: "kube-system",
    pod: "kube-proxy-x7k2p",
    podUid: UID,
  });
  // Static pods: the UID is a hash.
  assertEquals(
    parsePodLogDir("kube-system_etcd-node1_487a0dc6dccaeefbcfedba7a7ce1ca18"),
    { namespace: "kube-system", pod: "etcd-node1", podUid: "487a0dc6dccaeefbcfedba7a7ce1ca18" },
  );
  // Before Kubernetes 1.14 the directory was the UID alone.
  assertEquals(parsePodLogDir(UID), undefined);
});

Deno.test("kubelet files: a log link target, on the host or under a host root", () => {
  const expected = { namespace: "shop", pod: "web-0", podUid: UID, container: "nginx" };
  assertEquals(parseContainerLogTarget(`/var/log/pods/shop_web-0_${UID}/nginx/0.log`), expected);
  assertEquals(
    parseContainerLogTarget(`/host/var/log/pods/shop_web-0_${UID}/nginx/3.log`),
    expected,
  );
  assertEquals(parseContainerLogTarget(`/var/log/pods/${UID}/nginx_0.log`), undefined);
});

Deno.test("kubelet files: containers and pods from a host root, new links found", async () => {
  await using host = FakeHost.create();
  const files = new KubeletFiles(host.root);
  files.refresh();
  assertEquals(files.container(ID), undefined);
  const web = { namespace: "shop", pod: "web-0", podUid: UID, container: "nginx", containerId: ID };
  host.logLink(web);
  // Right after the last read: the directory's mtime may not have moved.
  files.refresh();
  assertEquals(files.container(ID), web);
  assertEquals(files.pod(UID), { namespace: "shop", pod: "web-0", podUid: UID });
  assertEquals(files.refresh(), true, "a recently changed directory is read again");
});

Deno.test("kubelet files: a link name cut at 255 bytes is matched by pod UID and id prefix", async () => {
  await using host = FakeHost.create();
  const pod = `p${"x".repeat(199)}`;
  const c = { namespace: "shop", pod, podUid: UID, container: "app", containerId: ID };
  const full = `${pod}_shop_app-${ID}`;
  // Kubelet's logSymlink: at most 255 bytes with the ".log" suffix.
  const cut = `${full.slice(0, 255 - 4)}.log`;
  host.logLink(c, cut);
  const files = new KubeletFiles(host.root);
  files.refresh();
  assertEquals(files.container(ID), undefined, "not by id alone");
  assertEquals(files.container(ID, UID), c);
  assertEquals(files.container("0".repeat(64), UID), undefined, "another id");
  assertEquals(files.container(ID, "1f3c8a56-2d1e-4b5a-9c7d-1e2f3a4b5c6d"), undefined);
});

Deno.test("kubelet files: no directories (not a Kubernetes node)", () => {
  const files = new KubeletFiles("/nonexistent-host-root");
  files.refresh();
  assertEquals(files.container(ID, UID), undefined);
  assertEquals(files.pod(UID), undefined);
});
