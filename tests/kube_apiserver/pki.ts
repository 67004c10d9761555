/**
 * A throw-away PKI made with the `openssl` CLI (works offline): a CA, a
 * serving certificate for 127.0.0.1/localhost and client certificates
 * whose CN is the user name and whose O entries are the groups, as the
 * API server's x509 authenticator reads them.
 *
 * @module
 */

import { join } from "node:path";

/** PEM contents and file paths of a key pair. */
export interface CertPair {
  cert: string;
  key: string;
  certFile: string;
  keyFile: string;
}

const OPENSSL = "openssl";

async function openssl(args: string[]): Promise<void> {
  const out = await new Deno.Command(OPENSSL, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(
      `openssl ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
}

/** Escapes a value for an openssl `-subj` string. */
function subjectValue(value: string): string {
  return value.replace(/[\\/=+,]/g, (c) => `\\${c}`);
}

/** A CA that signs serving and client certificates in a directory. */
export class Pki {
  readonly dir: string;
  readonly ca: CertPair;
  #serial = 0;

  private constructor(dir: string, ca: CertPair) {
    this.dir = dir;
    this.ca = ca;
  }

  /** Creates the CA in `dir` (which must exist). */
  static async create(dir: string): Promise<Pki> {
    const certFile = join(dir, "ca.crt");
    const keyFile = join(dir, "ca.key");
    await openssl([
      ...newCertificate(keyFile, certFile, "/CN=fake-kubernetes-ca"),
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    ]);
    return new Pki(dir, await readPair(certFile, keyFile));
  }

  async #issue(
    base: string,
    subject: string,
    extensions: string[],
  ): Promise<CertPair> {
    const certFile = join(this.dir, `${base}.crt`);
    const keyFile = join(this.dir, `${base}.key`);
    const args = [
      ...newCertificate(keyFile, certFile, subject),
      "-CA",
      this.ca.certFile,
      "-CAkey",
      this.ca.keyFile,
      "-set_serial",
      String(Date.now() * 1000 + ++this.#serial),
      "-addext",
      "basicConstraints=critical,CA:FALSE",
      "-addext",
      "keyUsage=critical,digitalSignature,keyEncipherment",
    ];
    for (const ext of extensions) args.push("-addext", ext);
    await openssl(args);
    return await readPair(certFile, keyFile);
  }

  /** The API server's serving certificate (SAN 127.0.0.1, ::1, localhost). */
  serving(): Promise<CertPair> {
    return this.#issue("apiserver", "/CN=kube-apiserver", [
      "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default",
      "extendedKeyUsage=serverAuth",
    ]);
  }

  /** A client certificate: CN = user, one O per group. */
  client(user: string, groups: string[]): Promise<CertPair> {
    const subject = groups.map((g) => `/O=${subjectValue(g)}`).join("") +
      `/CN=${subjectValue(user)}`;
    const base = `client-${user.replace(/[^A-Za-z0-9_.-]/g, "_")}-${++this.#serial}`;
    return this.#issue(base, subject, ["extendedKeyUsage=clientAuth"]);
  }
}

async function readPair(certFile: string, keyFile: string): Promise<CertPair> {
  return {
    cert: await Deno.readTextFile(certFile),
    key: await Deno.readTextFile(keyFile),
    certFile,
    keyFile,
  };
}

/** openssl req arguments for a new P-256 key and a 2-day certificate of `subject`. */
function newCertificate(keyFile: string, certFile: string, subject: string): string[] {
  return [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    keyFile,
    "-out",
    certFile,
    "-subj",
    subject,
    "-days",
    "2",
  ];
}
