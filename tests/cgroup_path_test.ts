/**
 * Pod and container ids from cgroup paths, on paths seen on real nodes:
 * both cgroup drivers, containerd, CRI-O and Docker, cgroup v1 and v2,
 * kind and docker-in-docker prefixes, cgroup namespaces.
 */

import {
  parseCgroupPath,
  parseProcCgroup,
  podContainerOfProcCgroup,
} from "../k8s/node/cgroup_path.ts";
import { assertEquals } from "./helpers/assert.ts";

const cases: [string, string, { podUid: string; containerId: string } | undefined][] = [
  // cgroupfs driver
  [
    "cgroupfs, burstable, containerd",
    "/kubepods/burstable/pod4a163a05-439d-484b-8e53-2968bc15824f/cde6dfaf5007ed65aad2d6aed72af91b0f3d95813492f773286e29ae145d20f4",
    {
      podUid: "4a163a05-439d-484b-8e53-2968bc15824f",
      containerId: "cde6dfaf5007ed65aad2d6aed72af91b0f3d95813492f773286e29ae145d20f4",
    },
  ],
  [
    "cgroupfs, besteffort, docker",
    "/kubepods/besteffort/pod74ba62da-1a3d-11e7-bb11-080027cb0e22/cb1eadb7abe3a6545e9856411207073277838e1bdc003337c2f8685faeedc32c",
    {
      podUid: "74ba62da-1a3d-11e7-bb11-080027cb0e22",
      containerId: "cb1eadb7abe3a6545e9856411207073277838e1bdc003337c2f8685faeedc32c",
    },
  ],
  [
    "cgroupfs, guaranteed (no QoS level), static pod UID, CRI-O",
    "/kubepods/podb53dfa9e2dc9b890f7fadb2770857b03/crio-bb959773d06ad1a07d469bced637bbc49b6f8573c493fd0548d7f5810eb3e5a8",
    {
      podUid: "b53dfa9e2dc9b890f7fadb2770857b03",
      containerId: "bb959773d06ad1a07d469bced637bbc49b6f8573c493fd0548d7f5810eb3e5a8",
    },
  ],
  [
    "cgroupfs, a sub-cgroup inside the container",
    "/kubepods/besteffort/podf8a694f2-7c08-11e9-98da-000c29077430/c04e0a88a1de067f25bece337d4dbb897396e0b623c2a65330850fc9823f1903/kube-proxy",
    {
      podUid: "f8a694f2-7c08-11e9-98da-000c29077430",
      containerId: "c04e0a88a1de067f25bece337d4dbb897396e0b623c2a65330850fc9823f1903",
    },
  ],
  [
    "cgroupfs, kind's cgroup root",
    "/kubelet/kubepods/burstable/pod73dc8baf-43a0-413e-aac2-5eb0868f6c1a/f52987fbdcc7b29175fb52e01c7917e9d6d2e14550e3a2a7abf739da5a067e31",
    {
      podUid: "73dc8baf-43a0-413e-aac2-5eb0868f6c1a",
      containerId: "f52987fbdcc7b29175fb52e01c7917e9d6d2e14550e3a2a7abf739da5a067e31",
    },
  ],
  [
    "cgroupfs, the pod's own cgroup",
    "/kubepods/burstable/pod4a163a05-439d-484b-8e53-2968bc15824f",
    { podUid: "4a163a05-439d-484b-8e53-2968bc15824f", containerId: "" },
  ],
  // systemd driver
  [
    "systemd, besteffort, docker",
    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod045b1e35_7f13_11e7_ac42_0050568ffca0.slice/docker-b5b6f2da8008be266864f896f93789762b2ce50792114a5c5f2cc3315af0bc70.scope",
    {
      podUid: "045b1e35-7f13-11e7-ac42-0050568ffca0",
      containerId: "b5b6f2da8008be266864f896f93789762b2ce50792114a5c5f2cc3315af0bc70",
    },
  ],
  [
    "systemd, besteffort, containerd (Bottlerocket)",
    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-poddd1bf9d1_241d_47f5_8e25_12de83135812.slice/cri-containerd-f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830.scope",
    {
      podUid: "dd1bf9d1-241d-47f5-8e25-12de83135812",
      containerId: "f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830",
    },
  ],
  [
    "systemd, burstable, static pod UID, CRI-O",
    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod487a0dc6dccaeefbcfedba7a7ce1ca18.slice/crio-7a1fd6fe8cdfbd44dc78c4cc85dad7031eaab4365801684cad0aabdeaf863f9e.scope",
    {
      podUid: "487a0dc6dccaeefbcfedba7a7ce1ca18",
      containerId: "7a1fd6fe8cdfbd44dc78c4cc85dad7031eaab4365801684cad0aabdeaf863f9e",
    },
  ],
  [
    "systemd, CRI-O with crun's /container sub-cgroup",
    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod73dc8baf_43a0_413e_aac2_5eb0868f6c1a.slice/crio-f52987fbdcc7b29175fb52e01c7917e9d6d2e14550e3a2a7abf739da5a067e31.scope/container",
    {
      podUid: "73dc8baf-43a0-413e-aac2-5eb0868f6c1a",
      containerId: "f52987fbdcc7b29175fb52e01c7917e9d6d2e14550e3a2a7abf739da5a067e31",
    },
  ],
  [
    "systemd, CRI-O's conmon is no container",
    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod73dc8baf_43a0_413e_aac2_5eb0868f6c1a.slice/crio-conmon-f52987fbdcc7b29175fb52e01c7917e9d6d2e14550e3a2a7abf739da5a067e31.scope",
    { podUid: "73dc8baf-43a0-413e-aac2-5eb0868f6c1a", containerId: "" },
  ],
  [
    "systemd, guaranteed (no QoS level)",
    "/kubepods.slice/kubepods-pod2d51509a_fcf0_41cc_b535_57cfeeaf73d1.slice/crio-0853fad78812e955b92d871d8d597d9bc598e34320c9edbfab0a73eacf150145.scope/container",
    {
      podUid: "2d51509a-fcf0-41cc-b535-57cfeeaf73d1",
      containerId: "0853fad78812e955b92d871d8d597d9bc598e34320c9edbfab0a73eacf150145",
    },
  ],
  [
    "systemd, kind's cgroup root",
    "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod2edf54f8_6911_449f_9abe_3d468a770d6b.slice/cri-containerd-02de72688d6bb0908d279bbbb05ffa9d7e0b2ae17a8bf23683a33cc1349e55aa.scope",
    {
      podUid: "2edf54f8-6911-449f-9abe-3d468a770d6b",
      containerId: "02de72688d6bb0908d279bbbb05ffa9d7e0b2ae17a8bf23683a33cc1349e55aa",
    },
  ],
  [
    "systemd, kind node in docker",
    "/docker/65a1b6ad09655b3f1475ede1aa0061a97c0d1ada9f2b2acac959afbc92094463/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod96dd7de3_0783_4613_a707_e0effc077ef5.slice/cri-containerd-13a0f64b909e3ff2d63f196d6947927a8af997ab68f8fa9ebb6d6c7018af4ec9.scope",
    {
      podUid: "96dd7de3-0783-4613-a707-e0effc077ef5",
      containerId: "13a0f64b909e3ff2d63f196d6947927a8af997ab68f8fa9ebb6d6c7018af4ec9",
    },
  ],
  [
    "systemd, kind node in a docker scope",
    "/system.slice/docker-3350ade4226f0adcd9e4e9545d7c2a16a5aa362d12315f2a88e2024cea1246cf.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-podb6a16766_05ee_446a_8ee5_ff96a817f47c.slice/cri-containerd-679f3691f7f1b20198548be43b86f265f9fff9be0ac4c973638f5ee89decbca9.scope",
    {
      podUid: "b6a16766-05ee-446a-8ee5-ff96a817f47c",
      containerId: "679f3691f7f1b20198548be43b86f265f9fff9be0ac4c973638f5ee89decbca9",
    },
  ],
  [
    "seen from another cgroup namespace",
    "/../../../kubepods-besteffort.slice/kubepods-besteffort-pod6dc88073_2128_40d6_9dbc_0ba508da7fe8.slice/cri-containerd-123cd1db937c3c2d0d7772ef9b0a1c4b0b3dcfcb6b889452a90b2fcb43eae43a.scope",
    {
      podUid: "6dc88073-2128-40d6-9dbc-0ba508da7fe8",
      containerId: "123cd1db937c3c2d0d7772ef9b0a1c4b0b3dcfcb6b889452a90b2fcb43eae43a",
    },
  ],
  [
    "containerd's systemd cgroupsPath taken as a path (drivers disagree)",
    "/system.slice/containerd.service/kubepods-besteffort-pod2105e389_7471_476e_a50f_6074cef29bbd.slice:cri-containerd:d3d8ccf5cca91931c6285c1d7472c413dd5a7700fddc0aa9f89a9ac7008b003e",
    {
      podUid: "2105e389-7471-476e-a50f-6074cef29bbd",
      containerId: "d3d8ccf5cca91931c6285c1d7472c413dd5a7700fddc0aa9f89a9ac7008b003e",
    },
  ],
  [
    "systemd, the pod's own slice",
    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod90b1ecb8_b850_451a_97c6_c073b5ddbb53.slice",
    { podUid: "90b1ecb8-b850-451a-97c6-c073b5ddbb53", containerId: "" },
  ],
  // Not in a pod
  ["the root", "/", undefined],
  ["a QoS level", "/kubepods/burstable", undefined],
  ["the kubepods slice", "/kubepods.slice/kubepods-burstable.slice", undefined],
  [
    "a plain docker container",
    "/system.slice/docker-9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d.scope",
    undefined,
  ],
  ["a user session", "/user.slice/user-1000.slice/session-3.scope", undefined],
  [
    "a pod-like name outside kubepods",
    "/system.slice/pod4a163a05-439d-484b-8e53-2968bc15824f/cde6dfaf5007ed65aad2d6aed72af91b0f3d95813492f773286e29ae145d20f4",
    undefined,
  ],
];

// A container that may create cgroups below its own (privileged, or with
// cgroup delegation) makes one named like another pod's and moves into it:
// it keeps its own identity.
const ATTACKER = {
  podUid: "4a163a05-439d-484b-8e53-2968bc15824f",
  containerId: "cde6dfaf5007ed65aad2d6aed72af91b0f3d95813492f773286e29ae145d20f4",
};
const VICTIM_UID = "74ba62da-1a3d-11e7-bb11-080027cb0e22";
const VICTIM_ID = "cb1eadb7abe3a6545e9856411207073277838e1bdc003337c2f8685faeedc32c";
const VICTIM_CGROUPFS = `kubepods/besteffort/pod${VICTIM_UID}/${VICTIM_ID}`;
const VICTIM_SYSTEMD = "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" +
  `${VICTIM_UID.replaceAll("-", "_")}.slice/cri-containerd-${VICTIM_ID}.scope`;
const ATTACKER_UNDERSCORES = ATTACKER.podUid.replaceAll("-", "_");

cases.push(
  [
    "nested: cgroupfs, another pod's path below a container",
    `/kubepods/burstable/pod${ATTACKER.podUid}/${ATTACKER.containerId}/${VICTIM_CGROUPFS}`,
    ATTACKER,
  ],
  [
    "nested: systemd, another pod's slices below a container",
    `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${ATTACKER_UNDERSCORES}.slice/` +
    `cri-containerd-${ATTACKER.containerId}.scope/${VICTIM_SYSTEMD}`,
    ATTACKER,
  ],
  [
    "nested: guaranteed, below crun's sub-cgroup",
    `/kubepods/pod${ATTACKER.podUid}/crio-${ATTACKER.containerId}/container/${VICTIM_CGROUPFS}`,
    ATTACKER,
  ],
  [
    "nested: below kind's cgroup root",
    `/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod${ATTACKER_UNDERSCORES}.slice/` +
    `cri-containerd-${ATTACKER.containerId}.scope/${VICTIM_SYSTEMD}`,
    ATTACKER,
  ],
  [
    "nested: below the pod's own cgroup",
    `/kubepods/besteffort/pod${ATTACKER.podUid}/${VICTIM_CGROUPFS}`,
    { podUid: ATTACKER.podUid, containerId: "" },
  ],
  [
    "nested: seen from another cgroup namespace",
    `/../../kubepods-besteffort-pod${ATTACKER_UNDERSCORES}.slice/` +
    `cri-containerd-${ATTACKER.containerId}.scope/${VICTIM_CGROUPFS}`,
    ATTACKER,
  ],
  [
    "nested: seen from another cgroup namespace, from above the QoS level",
    `/../../../kubepods-burstable.slice/kubepods-burstable-pod${ATTACKER_UNDERSCORES}.slice/` +
    `cri-containerd-${ATTACKER.containerId}.scope/${VICTIM_SYSTEMD}`,
    ATTACKER,
  ],
  [
    "nested: the colon form",
    "/system.slice/containerd.service/kubepods-besteffort-pod" +
    `${ATTACKER_UNDERSCORES}.slice:cri-containerd:${ATTACKER.containerId}/` +
    `kubepods-besteffort-pod${VICTIM_UID.replaceAll("-", "_")}.slice:cri-containerd:${VICTIM_ID}`,
    ATTACKER,
  ],
  [
    "nested: a cluster in a pod is that pod's",
    `/kubepods/burstable/pod${ATTACKER.podUid}/${ATTACKER.containerId}/kubelet/${VICTIM_CGROUPFS}`,
    ATTACKER,
  ],
  [
    "nested: a kubepods root below a name that is not a pod's is no pod",
    `/kubepods/burstable/notapod/${VICTIM_CGROUPFS}`,
    undefined,
  ],
);

for (const [name, path, expected] of cases) {
  Deno.test(`cgroup path: ${name}`, () => {
    assertEquals(parseCgroupPath(path), expected);
  });
}

Deno.test("cgroup path: a container segment that is not an id is no container", () => {
  assertEquals(
    parseCgroupPath("/kubepods/burstable/pod4a163a05-439d-484b-8e53-2968bc15824f/abc123"),
    { podUid: "4a163a05-439d-484b-8e53-2968bc15824f", containerId: "" },
  );
});

Deno.test("proc cgroup: lines, controllers, and paths with colons", () => {
  assertEquals(
    parseProcCgroup("12:cpu,cpuacct:/a\n1:name=systemd:/b:c:d\n0::/\n\nbogus\n"),
    [
      { hierarchy: 12, controllers: ["cpu", "cpuacct"], path: "/a" },
      { hierarchy: 1, controllers: ["name=systemd"], path: "/b:c:d" },
      { hierarchy: 0, controllers: [], path: "/" },
    ],
  );
});

const KUBEPODS_V1 =
  `11:freezer:/kubepods/besteffort/pod1fe19bf5-e8ef-11e8-900c-52daee5a874d/da31e536c8d61304a6d5998d163d12400a7a9a1003e1d86369e8fadb022fc17d
8:pids:/kubepods/besteffort/pod1fe19bf5-e8ef-11e8-900c-52daee5a874d/da31e536c8d61304a6d5998d163d12400a7a9a1003e1d86369e8fadb022fc17d
3:rdma:/
2:cpuset,cpu,cpuacct,memory,net_cls,net_prio,hugetlb:/kubepods/besteffort/pod1fe19bf5-e8ef-11e8-900c-52daee5a874d/da31e536c8d61304a6d5998d163d12400a7a9a1003e1d86369e8fadb022fc17d
1:name=systemd:/kubepods/besteffort/pod1fe19bf5-e8ef-11e8-900c-52daee5a874d/da31e536c8d61304a6d5998d163d12400a7a9a1003e1d86369e8fadb022fc17d
`;

Deno.test("proc cgroup: cgroup v1, any kubepods line", () => {
  assertEquals(podContainerOfProcCgroup(KUBEPODS_V1), {
    podUid: "1fe19bf5-e8ef-11e8-900c-52daee5a874d",
    containerId: "da31e536c8d61304a6d5998d163d12400a7a9a1003e1d86369e8fadb022fc17d",
  });
});

Deno.test("proc cgroup: hybrid, the v2 line at / and v1 lines in the pod", () => {
  assertEquals(podContainerOfProcCgroup(`3:rdma:/\n${KUBEPODS_V1}0::/\n`), {
    podUid: "1fe19bf5-e8ef-11e8-900c-52daee5a874d",
    containerId: "da31e536c8d61304a6d5998d163d12400a7a9a1003e1d86369e8fadb022fc17d",
  });
});

Deno.test("proc cgroup: cgroup v2", () => {
  const text =
    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod73dc8baf_43a0_413e_aac2_5eb0868f6c1a.slice/crio-f52987fbdcc7b29175fb52e01c7917e9d6d2e14550e3a2a7abf739da5a067e31.scope/container\n";
  assertEquals(podContainerOfProcCgroup(text), {
    podUid: "73dc8baf-43a0-413e-aac2-5eb0868f6c1a",
    containerId: "f52987fbdcc7b29175fb52e01c7917e9d6d2e14550e3a2a7abf739da5a067e31",
  });
});

Deno.test("proc cgroup: the v2 line wins over v1 lines", () => {
  const v2Id = "ab".repeat(32);
  const text =
    `${KUBEPODS_V1}0::/kubepods/besteffort/pod1fe19bf5-e8ef-11e8-900c-52daee5a874d/${v2Id}\n`;
  assertEquals(podContainerOfProcCgroup(text)?.containerId, v2Id);
});

Deno.test("proc cgroup: a line with the container wins over one with only the pod", () => {
  const text = "0::/kubepods/besteffort/pod1fe19bf5-e8ef-11e8-900c-52daee5a874d\n" + KUBEPODS_V1;
  assertEquals(
    podContainerOfProcCgroup(text)?.containerId,
    "da31e536c8d61304a6d5998d163d12400a7a9a1003e1d86369e8fadb022fc17d",
  );
});

Deno.test("proc cgroup: host processes are in no pod", () => {
  assertEquals(
    podContainerOfProcCgroup("13:name=systemd:/\n12:pids:/\n5:memory:/\n0::/init.scope\n"),
    undefined,
  );
  assertEquals(
    podContainerOfProcCgroup(
      "13:name=systemd:/user/1000.user/c2.session\n12:pids:/\n0::/user.slice/user-1000.slice\n",
    ),
    undefined,
  );
  assertEquals(podContainerOfProcCgroup(""), undefined);
});
