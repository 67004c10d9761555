/**
 * The test cluster's certificates, keys and kubeconfigs, made with the
 * `openssl` CLI: one CA (P-256) signs every serving and client certificate;
 * the service account token key pair is separate. Users are named by their
 * certificate: CN is the user, O the groups.
 *
 * @module
 */

import {
  API_SERVER_URL,
  API_SERVICE_IP,
  NAMESPACE,
  NODE_IP,
  NODE_NAME,
  RESTRICTED_USER,
  state,
} from "./layout.ts";
import { run, writeFileAtomic } from "./util.ts";

interface CertSpec {
  /** File name stem under pki/. */
  file: string;
  cn: string;
  groups?: string[];
  /** subjectAltName entries (DNS:..., IP:...) for serving certificates. */
  sans?: string[];
}

/** Client identities and serving certificates of the cluster. */
const CERTS: CertSpec[] = [
  {
    file: "apiserver",
    cn: "kube-apiserver",
    sans: [
      "DNS:kubernetes",
      "DNS:kubernetes.default",
      "DNS:kubernetes.default.svc",
      "DNS:kubernetes.default.svc.cluster.local",
      "DNS:localhost",
      "IP:127.0.0.1",
      `IP:${NODE_IP}`,
      `IP:${API_SERVICE_IP}`,
    ],
  },
  // The API server's identity towards kubelets (exec, logs, port-forward).
  {
    file: "apiserver-kubelet-client",
    cn: "kube-apiserver-kubelet-client",
    groups: ["system:masters"],
  },
  { file: "admin", cn: "kubernetes-admin", groups: ["system:masters"] },
  // No groups: only what a test binds to it (system:authenticated aside).
  { file: "restricted", cn: RESTRICTED_USER },
  { file: "controller-manager", cn: "system:kube-controller-manager" },
  { file: "scheduler", cn: "system:kube-scheduler" },
  { file: "kube-proxy", cn: "system:kube-proxy" },
  // The Node authorizer and NodeRestriction know the kubelet by this name and group.
  { file: "kubelet-client", cn: `system:node:${NODE_NAME}`, groups: ["system:nodes"] },
  {
    file: "kubelet",
    cn: NODE_NAME,
    sans: [`DNS:${NODE_NAME}`, "DNS:localhost", "IP:127.0.0.1", `IP:${NODE_IP}`],
  },
];

export const pki = {
  ca: `${state.pki}/ca.crt`,
  caKey: `${state.pki}/ca.key`,
  saKey: `${state.pki}/sa.key`,
  saPub: `${state.pki}/sa.pub`,
  cert: (file: string) => `${state.pki}/${file}.crt`,
  key: (file: string) => `${state.pki}/${file}.key`,
};

function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] &= 0x7f; // positive
  return `0x${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

const NEW_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/** Makes the CA, every certificate and the service account keys. */
export async function makePki(): Promise<void> {
  Deno.mkdirSync(state.pki, { recursive: true, mode: 0o700 });
  const caConfig = `${state.pki}/ca.cnf`;
  Deno.writeTextFileSync(
    caConfig,
    [
      "[req]",
      "distinguished_name = dn",
      "prompt = no",
      "[dn]",
      "CN = tcpgadget-e2e-ca",
      "[ext]",
      "basicConstraints = critical,CA:TRUE",
      "keyUsage = critical,keyCertSign,cRLSign,digitalSignature",
      "subjectKeyIdentifier = hash",
      "",
    ].join("\n"),
  );
  await run("openssl", [
    "req",
    "-x509",
    "-new",
    ...NEW_KEY,
    "-keyout",
    pki.caKey,
    "-out",
    pki.ca,
    "-days",
    "3650",
    "-config",
    caConfig,
    "-extensions",
    "ext",
  ]);
  await Promise.all(CERTS.map(makeCert));
  await run("openssl", [
    "genpkey",
    "-algorithm",
    "EC",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-out",
    pki.saKey,
  ]);
  await run("openssl", ["pkey", "-in", pki.saKey, "-pubout", "-out", pki.saPub]);
}

async function makeCert(spec: CertSpec): Promise<void> {
  const config = `${state.pki}/${spec.file}.cnf`;
  const csr = `${state.pki}/${spec.file}.csr`;
  Deno.writeTextFileSync(
    config,
    [
      "[req]",
      "distinguished_name = dn",
      "prompt = no",
      "[dn]",
      ...(spec.groups ?? []).map((group, i) => `${i}.O = ${group}`),
      `CN = ${spec.cn}`,
      "[ext]",
      "basicConstraints = critical,CA:FALSE",
      "keyUsage = critical,digitalSignature,keyEncipherment",
      `extendedKeyUsage = ${spec.sans ? "serverAuth,clientAuth" : "clientAuth"}`,
      "authorityKeyIdentifier = keyid",
      ...(spec.sans ? [`subjectAltName = ${spec.sans.join(",")}`] : []),
      "",
    ].join("\n"),
  );
  await run("openssl", [
    "req",
    "-new",
    ...NEW_KEY,
    "-keyout",
    pki.key(spec.file),
    "-out",
    csr,
    "-config",
    config,
  ]);
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    pki.ca,
    "-CAkey",
    pki.caKey,
    "-set_serial",
    randomSerial(),
    "-days",
    "365",
    "-extfile",
    config,
    "-extensions",
    "ext",
    "-out",
    pki.cert(spec.file),
  ]);
  Deno.removeSync(csr);
}

function base64File(path: string): string {
  const bytes = Deno.readFileSync(path);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/** A kubeconfig with the CA and the client certificate embedded, so it can be copied anywhere. */
export function writeKubeconfig(
  path: string,
  certFile: string,
  user: string,
  namespace = NAMESPACE,
): void {
  const text = `apiVersion: v1
kind: Config
clusters:
- name: tcpgadget-e2e
  cluster:
    server: ${API_SERVER_URL}
    certificate-authority-data: ${base64File(pki.ca)}
users:
- name: ${user}
  user:
    client-certificate-data: ${base64File(pki.cert(certFile))}
    client-key-data: ${base64File(pki.key(certFile))}
contexts:
- name: ${user}@tcpgadget-e2e
  context:
    cluster: tcpgadget-e2e
    user: ${user}
    namespace: ${namespace}
current-context: ${user}@tcpgadget-e2e
`;
  writeFileAtomic(path, text, 0o600);
}
