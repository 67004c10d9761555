/**
 * kubeconfig files in the format kubectl and client libraries read
 * (`apiVersion: v1`, `kind: Config`, clusters/users/contexts and
 * `current-context`), written as YAML.
 *
 * @module
 */

/** Credentials of one user of the fake cluster. */
export interface Credentials {
  user: string;
  groups: string[];
  /** Bearer token that authenticates as this user. */
  token: string;
  /** Client certificate (PEM) and key, and their files. */
  cert: string;
  key: string;
  certFile: string;
  keyFile: string;
}

/** What to put in a kubeconfig. */
export interface KubeconfigInput {
  server: string;
  ca: string;
  caFile: string;
  credentials: Credentials;
  auth: "cert" | "token";
  /** Embed PEM data (`*-data`) rather than file paths. */
  embed: boolean;
  context: string;
  cluster: string;
  namespace?: string;
}

const b64 = (text: string) => btoa(text);

function quote(value: string): string {
  return JSON.stringify(value);
}

/** Renders a kubeconfig as YAML. */
export function renderKubeconfig(input: KubeconfigInput): string {
  const c = input.credentials;
  const cluster = input.embed
    ? `    certificate-authority-data: ${b64(input.ca)}\n`
    : `    certificate-authority: ${quote(input.caFile)}\n`;
  let user: string;
  if (input.auth === "token") user = `    token: ${quote(c.token)}\n`;
  else if (input.embed) {
    user = `    client-certificate-data: ${b64(c.cert)}\n    client-key-data: ${b64(c.key)}\n`;
  } else {
    user = `    client-certificate: ${quote(c.certFile)}\n    client-key: ${quote(c.keyFile)}\n`;
  }
  const userName = `${c.user}@${input.cluster}`;
  return [
    "apiVersion: v1",
    "kind: Config",
    "preferences: {}",
    "clusters:",
    "- cluster:",
    cluster + `    server: ${quote(input.server)}`,
    `  name: ${quote(input.cluster)}`,
    "contexts:",
    "- context:",
    `    cluster: ${quote(input.cluster)}`,
    ...(input.namespace ? [`    namespace: ${quote(input.namespace)}`] : []),
    `    user: ${quote(userName)}`,
    `  name: ${quote(input.context)}`,
    `current-context: ${quote(input.context)}`,
    "users:",
    `- name: ${quote(userName)}`,
    "  user:",
    user.trimEnd(),
    "",
  ].join("\n");
}
