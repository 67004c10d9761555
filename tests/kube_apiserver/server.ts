/**
 * The HTTPS server of the fake: authentication (client certificates and
 * bearer tokens), request info and authorization, the core/v1 REST
 * endpoints (namespaces, nodes, pods, services, events), watches, and the
 * pods/exec WebSocket upgrade.
 *
 * @module
 */

// deno-lint-ignore-file no-explicit-any

import http from "node:http";
import https from "node:https";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import { Buffer } from "node:buffer";
// @deno-types="@types/ws"
import { type WebSocket, WebSocketServer } from "ws";
import {
  apiGroupList,
  apiResourceList,
  apiVersions,
  KINDS,
  KUBE_VERSION,
  NAMESPACED,
} from "./discovery.ts";
import { type DropPlan, ExecSession, negotiateProtocol } from "./exec.ts";
import { type ImageFiles, Kubelets, nodeAddress } from "./kubelet.ts";
import { applyPodDefaults, generateName, validatePod } from "./pods.ts";
import { podSecurityViolation } from "./pod_security.ts";
import { type AccessRule, Authorizer, type RequestAttributes, type UserInfo } from "./rbac.ts";
import type { SandboxMode } from "./sandbox.ts";
import { parseFieldSelector, parseLabelSelector, type Selector } from "./selectors.ts";
import {
  alreadyExists,
  ApiError,
  badRequest,
  conflict,
  expired,
  failure,
  forbidden,
  invalid,
  methodNotAllowed,
  notFound,
  pathNotFound,
  unauthorized,
} from "./status.ts";
import { type Change, type KubeObject, Store, timestamp } from "./store.ts";

/** A timer handle (Node typings are in scope, so not `number`). */
type Timer = ReturnType<typeof setTimeout>;
/** An interval handle. */
type Interval = ReturnType<typeof setInterval>;

/** One request as the server saw it (see `FakeApiServer.requests`). */
export interface RequestRecord {
  method: string;
  /** URL path without the query. */
  path: string;
  query: Record<string, string[]>;
  /** Kubernetes verb (get, list, watch, create, delete, deletecollection, ...). */
  verb: string;
  resource: string;
  subresource: string;
  namespace: string;
  name: string;
  /** Authenticated user, "" when authentication failed. */
  user: string;
  /** HTTP status sent (101 for upgraded exec streams; 0 while in flight). */
  code: number;
  /** Whether this was a WebSocket upgrade. */
  upgrade: boolean;
  time: number;
}

/** Which requests something applies to: every field given must be equal. */
export interface RequestMatch {
  method?: string;
  verb?: string;
  resource?: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  /** Exact URL path. */
  path?: string;
}

/** True if `request` has every field that `match` gives. */
export function matchesRequest(
  match: RequestMatch,
  request: Pick<RequestRecord, keyof RequestMatch>,
): boolean {
  return (Object.keys(REQUEST_MATCH_KEYS) as (keyof RequestMatch)[]).every((key) =>
    match[key] === undefined || match[key] === request[key]
  );
}

// The keys of RequestMatch, so that a fault's other fields are not compared.
const REQUEST_MATCH_KEYS: Record<keyof RequestMatch, true> = {
  method: true,
  verb: true,
  resource: true,
  subresource: true,
  namespace: true,
  name: true,
  path: true,
};

/** A fault to inject into matching requests (see `FakeApiServer.failRequests`). */
export interface RequestFault extends RequestMatch {
  /**
   * HTTP code: 429, 500, 503, 504, 409, ...; or "no answer": the request
   * (or WebSocket upgrade) is held open without a byte sent back until the
   * client gives up or the server closes.
   */
  code: number | "no answer";
  message?: string;
  reason?: string;
  /** Sent as `Retry-After` (and in details) for 429/503. */
  retryAfterSeconds?: number;
  /** How many requests to fail (default 1; Infinity for all until removed). */
  times?: number;
}

/** Settings resolved from the public options. */
export interface ServerSettings {
  sandboxMode: SandboxMode;
  killExecOnDisconnect: boolean;
  execRequiresCreate: boolean;
  anonymousAuth: boolean;
  stepDelayMs: number;
  imagePullBackoffMs: number;
  crashLoopBackoffMs: number;
  orphanGcMs: number;
  runContainerCommands: boolean;
  watchTimeoutSeconds: number;
  bookmarkIntervalMs: number;
  historyLimit: number;
  logRequests: boolean;
  /** Kubelet's cgroups and log files on the host (see kubelet_files.ts). */
  kubeletFiles: boolean;
}

interface ActiveWatch {
  end(): void;
}

const MAX_BODY = 3 * 1024 * 1024;

function statusFor(code: number, message?: string, reason?: string, retryAfter?: number): ApiError {
  const defaults: Record<number, [string, string]> = {
    409: [
      "Conflict",
      "the object has been modified; please apply your changes to the latest version and try again",
    ],
    429: [
      "TooManyRequests",
      "the server has received too many requests and has asked us to try again later",
    ],
    500: ["InternalError", 'an error on the server ("") has prevented the request from succeeding'],
    503: ["ServiceUnavailable", "the server is currently unable to handle the request"],
    504: [
      "Timeout",
      "the server was unable to return a response in the time allotted, but may still be processing the request",
    ],
  };
  const [defReason, defMessage] = defaults[code] ?? ["", `injected failure (${code})`];
  const details = retryAfter ? { retryAfterSeconds: retryAfter } : undefined;
  return new ApiError(
    failure(code, reason ?? defReason, message ?? defMessage, details),
    retryAfter ? { "Retry-After": String(retryAfter) } : {},
  );
}

/** Parsed request target, like the API server's RequestInfo. */
interface RequestInfo {
  isResourceRequest: boolean;
  path: string;
  verb: string;
  resource: string;
  subresource: string;
  namespace: string;
  name: string;
}

function truthy(value: string | null): boolean {
  return value === "true" || value === "1";
}

function parseRequestInfo(method: string, url: URL): RequestInfo {
  const path = url.pathname;
  const parts = path.split("/").filter((p) => p !== "").map(decodeURIComponent);
  const info: RequestInfo = {
    isResourceRequest: false,
    path,
    verb: method.toLowerCase(),
    resource: "",
    subresource: "",
    namespace: "",
    name: "",
  };
  if (parts[0] !== "api" || parts[1] !== "v1" || parts.length < 3) return info;
  let rest = parts.slice(2);
  info.isResourceRequest = true;
  let watchPath = false;
  if (rest[0] === "watch") {
    watchPath = true;
    rest = rest.slice(1);
  }
  if (rest[0] === "namespaces" && rest.length > 1) {
    info.namespace = rest[1];
    if (rest.length > 2 && rest[2] !== "status" && rest[2] !== "finalize") rest = rest.slice(2);
  }
  info.resource = rest[0] ?? "";
  info.name = rest[1] ?? "";
  info.subresource = rest[2] ?? "";
  switch (method) {
    case "GET":
    case "HEAD":
      info.verb = watchPath || (!info.name && truthy(url.searchParams.get("watch")))
        ? "watch"
        : info.name
        ? "get"
        : "list";
      break;
    case "POST":
      info.verb = "create";
      break;
    case "PUT":
      info.verb = "update";
      break;
    case "PATCH":
      info.verb = "patch";
      break;
    case "DELETE":
      info.verb = info.name ? "delete" : "deletecollection";
      break;
  }
  return info;
}

function stripListItem(object: KubeObject): KubeObject {
  const { apiVersion: _a, kind: _k, ...rest } = object;
  return rest as KubeObject;
}

/** The HTTPS API server with its store, kubelets and test controls. */
export class ApiServer {
  readonly settings: ServerSettings;
  readonly store: Store;
  readonly kubelets: Kubelets;
  readonly authorizer = new Authorizer();
  readonly requests: RequestRecord[] = [];
  readonly #tokens = new Map<string, UserInfo>();
  readonly #faults = new Set<RequestFault & { remaining: number }>();
  readonly #drops: DropPlan[] = [];
  readonly #images = new Map<string, ImageFiles>();
  readonly #failingImages = new Set<{ image: string | RegExp; message: string; node?: string }>();
  readonly #watches = new Set<ActiveWatch>();
  readonly #sessions = new Set<ExecSession>();
  readonly #sockets = new Set<Socket>();
  readonly #wss: WebSocketServer;
  #server: http.Server | undefined;
  #port = 0;
  #closed = false;

  constructor(settings: ServerSettings) {
    this.settings = settings;
    this.store = new Store(settings.historyLimit);
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: 64 * 1024 * 1024,
      perMessageDeflate: false,
      handleProtocols: (_offered: Set<string>, req: IncomingMessage) =>
        (req as any).negotiatedProtocol || false,
    });
    this.kubelets = new Kubelets({
      store: this.store,
      sandboxMode: settings.sandboxMode,
      stepDelayMs: settings.stepDelayMs,
      imagePullBackoffMs: settings.imagePullBackoffMs,
      crashLoopBackoffMs: settings.crashLoopBackoffMs,
      orphanGcMs: settings.orphanGcMs,
      runContainerCommands: settings.runContainerCommands,
      imagePullFailure: (image, node) => this.#imagePullFailure(image, node),
      imageFiles: (image) => this.#images.get(image),
      apiServer: () => ({ host: "127.0.0.1", port: this.#port }),
      kubeletFiles: settings.kubeletFiles,
    });
  }

  get port(): number {
    return this.#port;
  }

  /**
   * Starts listening on 127.0.0.1 (random port): TLS in this process
   * ("deno"), or TLS in a Node.js front end that forwards to a plain
   * loopback listener here ("node", see tls_frontend.mjs).
   */
  async listen(
    tls: { key: string; cert: string; ca: string },
    frontend: "deno" | "node",
    dir: string,
  ): Promise<void> {
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      this.#handle(req, res).catch((error) => {
        console.error("kube_apiserver: request failed:", error);
        try {
          if (!res.headersSent) this.#sendError(res, error);
          else res.destroy();
        } catch {
          // connection gone
        }
      });
    };
    const server = frontend === "deno"
      ? https.createServer(
        { key: tls.key, cert: tls.cert, ca: tls.ca, requestCert: true, rejectUnauthorized: false },
        handler,
      )
      : http.createServer(handler);
    server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.#handleUpgrade(req, socket, head).catch((error) => {
        console.error("kube_apiserver: upgrade failed:", error);
        socket.destroy();
      });
    });
    const track = (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
    };
    server.on("connection", track);
    server.on("secureConnection", track);
    server.on("tlsClientError", () => {});
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    this.#server = server;
    this.#port = (server.address() as { port: number }).port;
    if (frontend === "node") await this.#startFrontend(tls, dir);
  }

  async #startFrontend(tls: { key: string; cert: string; ca: string }, dir: string) {
    this.#frontendSecret = crypto.randomUUID();
    const config = join(dir, "frontend.json");
    await Deno.writeTextFile(
      config,
      JSON.stringify({ ...tls, backendPort: this.#port, secret: this.#frontendSecret }),
      { mode: 0o600 },
    );
    const script = fileURLToPath(new URL("./tls_frontend.mjs", import.meta.url));
    const child = new Deno.Command("node", {
      args: [script, config],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#frontend = child;
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    try {
      while (!text.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error("the TLS front end (node) exited at start");
        text += value;
      }
    } finally {
      reader.releaseLock();
    }
    this.#port = JSON.parse(text.split("\n")[0]).port;
  }

  /** Port of the plain backend listener when a front end terminates TLS. */
  #frontend: Deno.ChildProcess | undefined;
  #frontendSecret: string | undefined;

  /** Registers a bearer token for a user. */
  addToken(token: string, user: UserInfo): void {
    this.#tokens.set(token, user);
  }

  // ---- test controls --------------------------------------------------------

  failImagePull(image: string | RegExp, message: string, node?: string): () => void {
    const key = { image, message, node };
    this.#failingImages.add(key);
    return () => this.#failingImages.delete(key);
  }

  provideImage(image: string, files: ImageFiles): () => void {
    this.#images.set(image, files);
    return () => this.#images.delete(image);
  }

  #imagePullFailure(image: string, node: string): string | undefined {
    for (const { image: pattern, message, node: only } of this.#failingImages) {
      if (only !== undefined && only !== node) continue;
      if (typeof pattern === "string" ? pattern === image : pattern.test(image)) return message;
    }
    return undefined;
  }

  dropExecStreams(count: number, plan: DropPlan): void {
    for (let i = 0; i < count; i++) this.#drops.push({ ...plan });
  }

  failRequests(fault: RequestFault): () => void {
    const entry = { ...fault, remaining: fault.times ?? 1 };
    this.#faults.add(entry);
    return () => this.#faults.delete(entry);
  }

  closeWatches(): number {
    const watches = [...this.#watches];
    for (const w of watches) w.end();
    return watches.length;
  }

  get activeExecs(): number {
    return this.#sessions.size;
  }

  get activeWatches(): number {
    return this.#watches.size;
  }

  // ---- request pipeline ------------------------------------------------------

  #record(req: IncomingMessage, url: URL, info: RequestInfo, upgrade: boolean): RequestRecord {
    const query: Record<string, string[]> = {};
    for (const [k, v] of url.searchParams) (query[k] ??= []).push(v);
    const record: RequestRecord = {
      method: req.method ?? "GET",
      path: url.pathname,
      query,
      verb: info.verb,
      resource: info.resource,
      subresource: info.subresource,
      namespace: info.namespace,
      name: info.name,
      user: "",
      code: 0,
      upgrade,
      time: Date.now(),
    };
    this.requests.push(record);
    return record;
  }

  #authenticate(req: IncomingMessage): UserInfo {
    const viaFrontend = this.#frontendSecret !== undefined &&
      req.headers["x-fake-frontend"] === this.#frontendSecret;
    const header = req.headers.authorization;
    if (header) {
      const m = header.match(/^Bearer\s+(\S+)\s*$/i);
      const user = m ? this.#tokens.get(m[1]) : undefined;
      if (!user) throw unauthorized();
      return { name: user.name, groups: [...user.groups, "system:authenticated"] };
    }
    const identity = req.headers["x-fake-identity"];
    if (viaFrontend && typeof identity === "string") {
      const { user, groups } = JSON.parse(Buffer.from(identity, "base64").toString("utf8"));
      return { name: user, groups: [...groups, "system:authenticated"] };
    }
    const socket = req.socket as TLSSocket;
    if (this.#frontendSecret === undefined && socket.authorized) {
      const peer = socket.getPeerCertificate?.();
      const subject: any = peer?.subject;
      const cn = Array.isArray(subject?.CN) ? subject.CN[0] : subject?.CN;
      if (cn) {
        const o = subject?.O;
        const groups: string[] = o === undefined ? [] : Array.isArray(o) ? o : [o];
        return { name: cn, groups: [...groups, "system:authenticated"] };
      }
    }
    if (this.settings.anonymousAuth) {
      return { name: "system:anonymous", groups: ["system:unauthenticated"] };
    }
    throw unauthorized();
  }

  /** Throws the Status of a matching fault; returns "no answer" for one that holds the request. */
  #applyFaults(info: RequestInfo, method: string): "no answer" | undefined {
    for (const fault of this.#faults) {
      if (!matchesRequest(fault, { ...info, method })) continue;
      fault.remaining--;
      if (fault.remaining <= 0) this.#faults.delete(fault);
      if (fault.code === "no answer") return fault.code;
      throw statusFor(fault.code, fault.message, fault.reason, fault.retryAfterSeconds);
    }
    return undefined;
  }

  #attributes(info: RequestInfo, user: UserInfo): RequestAttributes {
    return { ...info, user, apiGroup: "" };
  }

  #sendJson(
    res: ServerResponse,
    code: number,
    body: unknown,
    headers: Record<string, string> = {},
  ) {
    const text = JSON.stringify(body);
    res.writeHead(code, {
      "Content-Type": "application/json",
      "Content-Length": String(Buffer.byteLength(text)),
      "Cache-Control": "no-cache, private",
      ...headers,
    });
    res.end(text);
  }

  #sendError(res: ServerResponse, error: unknown): void {
    if (error instanceof ApiError) {
      this.#sendJson(res, error.status.code, error.status, error.headers);
      return;
    }
    console.error("kube_apiserver: internal error:", error);
    const message = error instanceof Error ? error.message : String(error);
    this.#sendJson(res, 500, failure(500, "InternalError", `Internal error occurred: ${message}`));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "https://127.0.0.1");
    const method = req.method ?? "GET";
    const info = parseRequestInfo(method, url);
    const record = this.#record(req, url, info, false);
    res.on("finish", () => (record.code = res.statusCode));
    res.on("close", () => (record.code ||= res.statusCode));
    if (this.settings.logRequests) console.error(`kube_apiserver: ${method} ${req.url}`);
    try {
      const user = this.#authenticate(req);
      record.user = user.name;
      const attrs = this.#attributes(info, user);
      if (this.#applyFaults(info, method) === "no answer") {
        await new Promise((resolve) => res.on("close", resolve));
        return;
      }
      this.authorizer.check(attrs);
      await this.#route(req, res, url, info);
    } catch (error) {
      if (!res.headersSent) this.#sendError(res, error);
      else res.end();
    }
  }

  async #readBody(req: IncomingMessage): Promise<any> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += chunk.length;
      if (size > MAX_BODY) {
        throw new ApiError(
          failure(413, "RequestEntityTooLarge", `Request entity too large: limit is ${MAX_BODY}`),
        );
      }
      chunks.push(chunk);
    }
    const text = Buffer.concat(chunks).toString("utf8");
    if (text.trim() === "") return undefined;
    try {
      return JSON.parse(text);
    } catch (error) {
      throw badRequest(`error decoding request body: ${(error as Error).message}`);
    }
  }

  async #route(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    info: RequestInfo,
  ): Promise<void> {
    const method = req.method ?? "GET";
    if (!info.isResourceRequest) {
      if (method !== "GET" && method !== "HEAD") throw methodNotAllowed();
      switch (info.path.replace(/\/$/, "") || "/") {
        case "/api":
          return this.#sendJson(res, 200, apiVersions(`127.0.0.1:${this.#port}`));
        case "/api/v1":
          return this.#sendJson(res, 200, apiResourceList());
        case "/apis":
          return this.#sendJson(res, 200, apiGroupList());
        case "/version":
          return this.#sendJson(res, 200, KUBE_VERSION);
        case "/healthz":
        case "/livez":
        case "/readyz":
          res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" });
          res.end("ok");
          return;
        default:
          throw pathNotFound();
      }
    }
    const resource = info.resource;
    if (!(resource in KINDS)) throw pathNotFound();
    if (NAMESPACED[resource] === false && info.namespace && resource !== "namespaces") {
      throw pathNotFound();
    }
    if (info.subresource) {
      if (resource !== "pods") throw pathNotFound();
      switch (info.subresource) {
        case "exec":
          if (method !== "GET" && method !== "POST") throw methodNotAllowed();
          throw badRequest("Upgrade request required");
        case "log":
          if (method !== "GET") throw methodNotAllowed();
          return this.#podLog(res, url, info);
        case "status":
          if (method !== "GET") throw methodNotAllowed();
          return this.#sendJson(res, 200, this.#get("pods", info.namespace, info.name));
        default:
          throw pathNotFound();
      }
    }
    switch (info.verb) {
      case "get":
        return this.#sendJson(res, 200, this.#get(resource, this.#ns(resource, info), info.name));
      case "list":
        return this.#sendJson(res, 200, this.#list(resource, info.namespace, url));
      case "watch":
        return this.#watch(req, res, resource, this.#ns(resource, info), info.name, url);
      case "create": {
        const body = await this.#readBody(req);
        if (resource === "pods") return this.#createPod(res, info.namespace, body, url);
        if (resource === "namespaces" && !info.name) return this.#createNamespace(res, body, url);
        throw methodNotAllowed();
      }
      case "delete": {
        const body = await this.#readBody(req);
        if (resource === "pods") {
          return this.#sendJson(res, 200, this.#deletePod(info.namespace, info.name, url, body));
        }
        if (resource === "namespaces") {
          return this.#sendJson(res, 200, this.deleteNamespace(info.name));
        }
        throw methodNotAllowed();
      }
      case "deletecollection": {
        const body = await this.#readBody(req);
        if (resource !== "pods") throw methodNotAllowed();
        return this.#deletePods(res, info.namespace, url, body);
      }
      default:
        throw methodNotAllowed();
    }
  }

  /** The namespace part of the key: none for cluster-scoped resources. */
  #ns(resource: string, info: RequestInfo): string | undefined {
    return NAMESPACED[resource] ? info.namespace : undefined;
  }

  #get(resource: string, namespace: string | undefined, name: string): KubeObject {
    const object = this.store.get(resource, namespace, name);
    if (!object) throw notFound(resource, name);
    return object;
  }

  #selectors(resource: string, url: URL): Selector {
    const labels = parseLabelSelector(url.searchParams.get("labelSelector"));
    const fields = parseFieldSelector(resource, url.searchParams.get("fieldSelector"));
    return (o) => labels(o) && fields(o);
  }

  #list(resource: string, namespace: string, url: URL): unknown {
    const matches = this.#selectors(resource, url);
    let items = this.store.list(resource, NAMESPACED[resource] ? namespace : undefined).filter(
      matches,
    );
    const rv = String(this.store.resourceVersion);
    const metadata: Record<string, unknown> = { resourceVersion: rv };
    const limit = Number(url.searchParams.get("limit") ?? "0");
    const cont = url.searchParams.get("continue");
    const keyOf = (o: KubeObject) =>
      o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;
    if (cont) {
      let start: string;
      try {
        start = JSON.parse(atob(cont)).start;
      } catch {
        throw badRequest("continue key is not valid: illegal base64 data at input byte 0");
      }
      items = items.filter((o) => keyOf(o) >= start);
    }
    if (limit > 0 && items.length > limit) {
      const next = items[limit];
      metadata.continue = btoa(
        JSON.stringify({ v: "meta.k8s.io/v1", rv: Number(rv), start: keyOf(next) }),
      );
      metadata.remainingItemCount = items.length - limit;
      items = items.slice(0, limit);
    }
    return {
      kind: `${KINDS[resource]}List`,
      apiVersion: "v1",
      metadata,
      items: items.map(stripListItem),
    };
  }

  #watch(
    req: IncomingMessage,
    res: ServerResponse,
    resource: string,
    namespace: string | undefined,
    name: string,
    url: URL,
  ): void {
    const selector = this.#selectors(resource, url);
    const matches = (o: KubeObject | undefined) =>
      !!o && (!namespace || o.metadata.namespace === namespace) &&
      (!name || o.metadata.name === name) &&
      selector(o);
    const rvParam = url.searchParams.get("resourceVersion") ?? "";
    const sendInitial = url.searchParams.get("sendInitialEvents") === "true";
    const bookmarks = truthy(url.searchParams.get("allowWatchBookmarks"));
    const timeoutParam = Number(url.searchParams.get("timeoutSeconds") ?? "0");
    const timeout = timeoutParam > 0 ? timeoutParam : this.settings.watchTimeoutSeconds;

    res.writeHead(200, {
      "Content-Type": "application/json",
      "Cache-Control": "no-cache, private",
      "Transfer-Encoding": "chunked",
    });
    res.flushHeaders();
    let lastRv = this.store.resourceVersion;
    const send = (type: string, object: unknown) => {
      res.write(JSON.stringify({ type, object }) + "\n");
    };
    const emit = (change: Change) => {
      if (change.resource !== resource) return;
      const event = toWatchEvent(change, matches);
      lastRv = change.resourceVersion;
      if (event) send(event.type, event.object);
    };
    let ended = false;
    let unsubscribe = () => {};
    const timers: { bookmark?: Interval; timeout?: Timer } = {};
    const watch: ActiveWatch = {
      end: () => {
        if (ended) return;
        ended = true;
        unsubscribe();
        clearInterval(timers.bookmark);
        clearTimeout(timers.timeout);
        this.#watches.delete(watch);
        res.end();
      },
    };
    this.#watches.add(watch);
    req.on("close", () => watch.end());
    res.on("close", () => watch.end());

    if (rvParam === "" || rvParam === "0" || sendInitial) {
      for (const object of this.store.list(resource, namespace)) {
        if (matches(object)) send("ADDED", object);
      }
      if (sendInitial && bookmarks) {
        send("BOOKMARK", {
          kind: KINDS[resource],
          apiVersion: "v1",
          metadata: {
            resourceVersion: String(this.store.resourceVersion),
            annotations: { "k8s.io/initial-events-end": "true" },
          },
        });
      }
    } else {
      const from = Number(rvParam);
      if (!Number.isFinite(from)) {
        send("ERROR", badRequest(`invalid resource version: ${rvParam}`).status);
        watch.end();
        return;
      }
      const changes = this.store.changesSince(resource, from);
      if (changes === "expired") {
        send("ERROR", expired(from, this.store.compactedResourceVersion).status);
        watch.end();
        return;
      }
      for (const change of changes) emit(change);
    }
    if (ended) return;
    unsubscribe = this.store.subscribe(emit);
    if (bookmarks && this.settings.bookmarkIntervalMs > 0) {
      timers.bookmark = setInterval(() => {
        send("BOOKMARK", {
          kind: KINDS[resource],
          apiVersion: "v1",
          metadata: { resourceVersion: String(lastRv) },
        });
      }, this.settings.bookmarkIntervalMs);
    }
    timers.timeout = setTimeout(() => watch.end(), timeout * 1000);
  }

  // ---- namespaces -------------------------------------------------------------

  /** Creates a namespace object (API create and test control). */
  createNamespace(name: string, labels: Record<string, string> = {}): KubeObject {
    if (this.store.has("namespaces", undefined, name)) throw alreadyExists("namespaces", name);
    return this.store.create("namespaces", {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name, labels: { ...labels, "kubernetes.io/metadata.name": name } },
      spec: { finalizers: ["kubernetes"] },
      status: { phase: "Active" },
    });
  }

  #createNamespace(res: ServerResponse, body: any, url: URL): void {
    const name: string | undefined = body?.metadata?.name ??
      (body?.metadata?.generateName ? generateName(body.metadata.generateName) : undefined);
    if (!name) {
      throw invalid("Namespace", "", [{
        type: "FieldValueRequired",
        field: "metadata.name",
        detail: "name or generateName is required",
      }]);
    }
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name) || name.length > 63) {
      throw invalid("Namespace", name, [{
        type: "FieldValueInvalid",
        field: "metadata.name",
        value: name,
        detail:
          "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
      }]);
    }
    if (url.searchParams.get("dryRun") === "All") {
      if (this.store.has("namespaces", undefined, name)) throw alreadyExists("namespaces", name);
      return this.#sendJson(res, 201, { apiVersion: "v1", kind: "Namespace", metadata: { name } });
    }
    const created = this.createNamespace(name, body?.metadata?.labels ?? {});
    this.#sendJson(res, 201, created);
  }

  /**
   * Deletes a namespace like the namespace controller: Terminating first,
   * its pods deleted, then removal once they are gone.
   */
  deleteNamespace(name: string): KubeObject {
    const ns = this.store.get("namespaces", undefined, name);
    if (!ns) throw notFound("namespaces", name);
    if (ns.status?.phase === "Terminating") return ns;
    const updated = this.store.mutate("namespaces", undefined, name, (o) => {
      o.metadata.deletionTimestamp = timestamp();
      o.status = { ...o.status, phase: "Terminating" };
    })!;
    queueMicrotask(() => {
      for (const pod of this.store.list("pods", name)) {
        try {
          this.#deletePod(name, pod.metadata.name, new URL("https://x/"), undefined);
        } catch {
          // already gone
        }
      }
      for (const resource of ["services", "events"]) {
        for (const o of this.store.list(resource, name)) {
          this.store.delete(resource, name, o.metadata.name);
        }
      }
      const finish = () => {
        if (this.store.list("pods", name).length === 0) {
          unsubscribe();
          this.store.delete("namespaces", undefined, name);
        }
      };
      const unsubscribe = this.store.subscribe((c) => {
        if (c.resource === "pods" && c.type === "DELETED") finish();
      });
      finish();
    });
    return updated;
  }

  // ---- pods -------------------------------------------------------------------

  #createPod(res: ServerResponse, namespace: string, body: any, url: URL): void {
    if (!body || typeof body !== "object") throw badRequest("the body of the request was empty");
    if (body.kind !== undefined && body.kind !== "Pod") {
      throw badRequest(
        `the API version in the data (${body.apiVersion}) does not match the expected API version (v1)`,
      );
    }
    const pod: KubeObject = {
      ...body,
      apiVersion: "v1",
      kind: "Pod",
      metadata: { ...(body.metadata ?? {}) },
    };
    if (pod.metadata.namespace && pod.metadata.namespace !== namespace) {
      throw badRequest(
        "the namespace of the provided object does not match the namespace sent on the request",
      );
    }
    pod.metadata.namespace = namespace;
    for (
      const field of [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "managedFields",
        "selfLink",
      ]
    ) delete pod.metadata[field];
    // NamespaceLifecycle admission.
    const ns = this.store.get("namespaces", undefined, namespace);
    if (!ns) throw notFound("namespaces", namespace);
    if (!pod.metadata.name && pod.metadata.generateName) {
      do {
        pod.metadata.name = generateName(pod.metadata.generateName);
      } while (this.store.has("pods", namespace, pod.metadata.name));
    }
    if (ns.status?.phase === "Terminating") {
      throw forbidden(
        "pods",
        pod.metadata.name ?? "",
        `unable to create new content in namespace ${namespace} because it is being terminated`,
      );
    }
    applyPodDefaults(pod);
    const errors = validatePod(pod);
    if (errors.length > 0) throw invalid("Pod", pod.metadata.name ?? "", errors);
    const violation = podSecurityViolation(pod, ns.metadata.labels);
    if (violation) throw forbidden("pods", pod.metadata.name, violation);
    if (this.store.has("pods", namespace, pod.metadata.name)) {
      throw alreadyExists("pods", pod.metadata.name);
    }
    if (url.searchParams.get("dryRun") === "All") {
      pod.metadata.uid = crypto.randomUUID();
      pod.metadata.creationTimestamp = timestamp();
      return this.#sendJson(res, 201, pod);
    }
    this.#sendJson(res, 201, this.store.create("pods", pod));
  }

  #deleteOptions(url: URL, body: any): {
    grace: number | undefined;
    dryRun: boolean;
    preconditions: { uid?: string; resourceVersion?: string };
  } {
    let grace: number | undefined;
    const q = url.searchParams.get("gracePeriodSeconds");
    if (q !== null && q !== "") grace = Number(q);
    if (body?.gracePeriodSeconds !== undefined && body.gracePeriodSeconds !== null) {
      grace = Number(body.gracePeriodSeconds);
    }
    if (grace !== undefined && !Number.isFinite(grace)) {
      throw badRequest(`invalid gracePeriodSeconds: ${q}`);
    }
    const dryRun = url.searchParams.get("dryRun") === "All" ||
      (Array.isArray(body?.dryRun) && body.dryRun.includes("All"));
    return { grace, dryRun, preconditions: body?.preconditions ?? {} };
  }

  #deletePod(namespace: string, name: string, url: URL, body: any): KubeObject {
    const options = this.#deleteOptions(url, body);
    const pod = this.store.get("pods", namespace, name);
    if (!pod) throw notFound("pods", name);
    const pre = options.preconditions;
    if (pre.uid && pre.uid !== pod.metadata.uid) {
      throw conflict(
        "pods",
        name,
        `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${pod.metadata.uid}`,
      );
    }
    if (pre.resourceVersion && pre.resourceVersion !== pod.metadata.resourceVersion) {
      throw conflict(
        "pods",
        name,
        `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${pod.metadata.resourceVersion}`,
      );
    }
    // podStrategy.CheckGracefulDelete.
    let grace = options.grace ?? pod.spec?.terminationGracePeriodSeconds ?? 0;
    const phase = pod.status?.phase;
    if (!pod.spec?.nodeName || phase === "Succeeded" || phase === "Failed") grace = 0;
    if (grace < 0) grace = 1;
    if (options.dryRun) return pod;
    if (pod.metadata.deletionTimestamp) {
      const current = pod.metadata.deletionGracePeriodSeconds ?? 0;
      if (grace !== 0 && grace >= current) return pod;
    }
    if (grace === 0) return this.store.delete("pods", namespace, name)!;
    return this.store.mutate("pods", namespace, name, (o) => {
      o.metadata.deletionTimestamp = timestamp(new Date(Date.now() + grace * 1000));
      o.metadata.deletionGracePeriodSeconds = grace;
    })!;
  }

  #deletePods(res: ServerResponse, namespace: string, url: URL, body: any): void {
    const selector = this.#selectors("pods", url);
    const deleted: KubeObject[] = [];
    for (const pod of this.store.list("pods", namespace || undefined)) {
      if (!selector(pod)) continue;
      try {
        deleted.push(this.#deletePod(pod.metadata.namespace!, pod.metadata.name, url, body));
      } catch (error) {
        if (!(error instanceof ApiError) || error.status.code !== 404) throw error;
      }
    }
    this.#sendJson(res, 200, {
      kind: "PodList",
      apiVersion: "v1",
      metadata: { resourceVersion: String(this.store.resourceVersion) },
      items: deleted.map(stripListItem),
    });
  }

  #podLog(res: ServerResponse, url: URL, info: RequestInfo): void {
    const pod = this.#get("pods", info.namespace, info.name);
    const container = containerOf(pod, url, info.name);
    const status = (pod.status?.containerStatuses ?? []).find((s: any) => s.name === container);
    const waiting = status?.state?.waiting;
    const logs = this.kubelets.logs(info.namespace, info.name, container);
    if (!status || (waiting && status.restartCount === 0 && !logs?.previous)) {
      throw badRequest(
        `container "${container}" in pod "${info.name}" is waiting to start: ${
          waiting?.reason ?? "ContainerCreating"
        }`,
      );
    }
    const previous = truthy(url.searchParams.get("previous"));
    const buffer = previous ? logs?.previous : logs?.current;
    if (previous && !buffer) {
      throw badRequest(
        `previous terminated container "${container}" in pod "${info.name}" not found`,
      );
    }
    let data = buffer?.bytes() ?? new Uint8Array();
    const tail = url.searchParams.get("tailLines");
    if (tail !== null) {
      const lines = new TextDecoder().decode(data).split(/(?<=\n)/);
      data = new TextEncoder().encode(
        lines.slice(Math.max(0, lines.length - Number(tail))).join(""),
      );
    }
    res.writeHead(200, { "Content-Type": "text/plain", "Transfer-Encoding": "chunked" });
    res.write(data);
    if (!truthy(url.searchParams.get("follow")) || previous || !buffer || !status?.state?.running) {
      res.end();
      return;
    }
    const watch: ActiveWatch = {
      end: () => {
        stop();
        this.#watches.delete(watch);
        res.end();
      },
    };
    const stop = buffer.follow((chunk) => (chunk ? res.write(chunk) : watch.end()));
    this.#watches.add(watch);
    res.on("close", () => watch.end());
  }

  // ---- exec -------------------------------------------------------------------

  #rawError(socket: Duplex, code: number, body: string, contentType: string): void {
    const reasons: Record<number, string> = {
      400: "Bad Request",
      401: "Unauthorized",
      403: "Forbidden",
      404: "Not Found",
      429: "Too Many Requests",
      500: "Internal Server Error",
      503: "Service Unavailable",
    };
    const bytes = Buffer.from(body);
    socket.end(
      `HTTP/1.1 ${code} ${reasons[code] ?? "Error"}\r\n` +
        `Content-Type: ${contentType}\r\n` +
        `Content-Length: ${bytes.length}\r\n` +
        "Cache-Control: no-cache, private\r\n" +
        "Connection: close\r\n\r\n" + body,
    );
  }

  async #handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const url = new URL(req.url ?? "/", "https://127.0.0.1");
    const method = req.method ?? "GET";
    const info = parseRequestInfo(method, url);
    const record = this.#record(req, url, info, true);
    const fail = (error: ApiError) => {
      record.code = error.status.code;
      this.#rawError(socket, error.status.code, JSON.stringify(error.status), "application/json");
    };
    socket.on("error", () => {});
    if (this.#closed) return void socket.destroy();
    try {
      const user = this.#authenticate(req);
      record.user = user.name;
      // Held: the socket stays open, unanswered, until either end closes it.
      if (this.#applyFaults(info, method) === "no answer") return;
      const attrs = this.#attributes(info, user);
      this.authorizer.check(attrs);
      if (info.resource !== "pods" || info.subresource !== "exec" || !info.name) {
        throw pathNotFound();
      }
      if ((req.headers.upgrade ?? "").toLowerCase() !== "websocket") {
        throw badRequest("Upgrade request required");
      }
      // AuthorizePodWebsocketUpgradeCreatePermission: a WebSocket exec also needs `create`.
      if (this.settings.execRequiresCreate && attrs.verb !== "create") {
        this.authorizer.check({ ...attrs, verb: "create" });
      }
      const pod = this.#get("pods", info.namespace, info.name);
      const container = containerOf(pod, url, info.name);
      if (!pod.spec?.nodeName) {
        throw badRequest(`pod ${info.name} does not have a host assigned`);
      }
      // The kubelet's address comes from the Node object.
      if (!this.store.has("nodes", undefined, pod.spec.nodeName)) {
        throw notFound("nodes", pod.spec.nodeName);
      }
      const command = url.searchParams.getAll("command");
      const stdin = truthy(url.searchParams.get("stdin"));
      const stdout = truthy(url.searchParams.get("stdout"));
      const stderr = truthy(url.searchParams.get("stderr"));
      const tty = truthy(url.searchParams.get("tty"));
      if (command.length === 0) throw badRequest("you must specify at least 1 command");
      if (!stdin && !stdout && !stderr) {
        throw badRequest("you must specify at least 1 of stdin, stdout, stderr");
      }
      const offered = (req.headers["sec-websocket-protocol"] ?? "").split(",").map((p) => p.trim())
        .filter((p) => p);
      const protocol = negotiateProtocol(offered);
      if (protocol === undefined) {
        throw badRequest(
          `unable to upgrade connection: requested protocol(s) are not supported: [${
            offered.join(" ")
          }]`,
        );
      }
      const target = this.kubelets.execTarget(info.namespace, info.name, container);
      const translated = protocol.startsWith("v5.");
      if (!target.ok && !translated) {
        // Pre-v5 protocols are proxied to the kubelet, whose refusals come back as-is.
        if (target.why === "node-not-ready") {
          throw new ApiError(
            failure(
              500,
              "",
              `error dialing backend: dial tcp ${target.nodeAddress}:10250: connect: connection refused`,
            ),
          );
        }
        record.code = 500;
        this.#rawError(socket, 500, `container not found ("${container}")`, "text/plain");
        return;
      }
      (req as any).negotiatedProtocol = protocol;
      const ws = await new Promise<WebSocket>((resolve) => {
        this.#wss.handleUpgrade(req, socket, head, (ws: WebSocket) => resolve(ws));
      });
      record.code = 101;
      if (!target.ok) {
        // v5 goes through the API server's stream translator: the upgrade
        // succeeds and the kubelet's refusal arrives as a status.
        const cause = target.why === "node-not-ready"
          ? `error dialing backend: dial tcp ${target.nodeAddress}:10250: connect: connection refused`
          : `unable to upgrade connection: container not found ("${container}")`;
        const status = {
          metadata: {},
          status: "Failure",
          message: `Internal error occurred: ${cause}`,
          reason: "InternalError",
          details: { causes: [{ message: cause }] },
          code: 500,
        };
        ws.send(Uint8Array.of(1), { binary: true });
        const frame = new TextEncoder().encode(" " + JSON.stringify(status));
        frame[0] = 3;
        ws.send(frame, { binary: true }, () => ws.close(1000));
        setTimeout(() => ws.terminate(), 2000);
        return;
      }
      const drop = this.#drops.shift();
      const session = new ExecSession({
        ws,
        protocol,
        sandbox: target.sandbox,
        command,
        env: target.env,
        cwd: target.cwd,
        stdin,
        stdout,
        stderr,
        tty,
        killOnDisconnect: this.settings.killExecOnDisconnect,
        drop,
        cgroupProcs: target.cgroupProcs,
      });
      this.#sessions.add(session);
      session.done.finally(() => this.#sessions.delete(session));
    } catch (error) {
      if (error instanceof ApiError) fail(error);
      else throw error;
    }
  }

  // ---- shutdown ---------------------------------------------------------------

  /** Stops everything: watches, exec sessions, pods' processes, the listener. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of [...this.#watches]) w.end();
    for (const s of this.#sessions) s.abort();
    for (const client of this.#wss.clients) client.terminate();
    await this.kubelets.close();
    await Promise.allSettled([...this.#sessions].map((s) => s.done));
    const frontend = this.#frontend;
    if (frontend) {
      await frontend.stdin.close().catch(() => {});
      const timer = setTimeout(() => {
        try {
          frontend.kill("SIGKILL");
        } catch {
          // gone
        }
      }, 2000);
      await frontend.status;
      clearTimeout(timer);
      await frontend.stdout.cancel().catch(() => {});
    }
    const server = this.#server;
    if (server) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of this.#sockets) socket.destroy();
      (server as any).closeAllConnections?.();
      await closed;
    }
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
  }

  /** Node address (for tests building expectations). */
  nodeAddress(name: string): string {
    return nodeAddress(this.store.get("nodes", undefined, name));
  }

  /** Authorizer shortcut used by the public API. */
  deny(rule: AccessRule): () => void {
    return this.authorizer.deny(rule);
  }
}

/** Turns a store change into the event a filtered watch sees (or none). */
export function toWatchEvent(
  change: Change,
  matches: (o: KubeObject | undefined) => boolean,
): { type: string; object: KubeObject } | undefined {
  const current = change.object;
  const previous = change.previous;
  switch (change.type) {
    case "ADDED":
      return matches(current) ? { type: "ADDED", object: current } : undefined;
    case "MODIFIED": {
      const now = matches(current);
      const before = matches(previous);
      if (now && before) return { type: "MODIFIED", object: current };
      if (now) return { type: "ADDED", object: current };
      if (before) {
        // The object left the selection: a DELETED of its previous state at the new RV.
        const gone = structuredClone(previous!);
        gone.metadata.resourceVersion = current.metadata.resourceVersion;
        return { type: "DELETED", object: gone };
      }
      return undefined;
    }
    case "DELETED":
      return matches(previous ?? current) ? { type: "DELETED", object: current } : undefined;
  }
}

/**
 * The container a logs or exec request names (`?container=`), or the pod's
 * only one; the apiserver's 400 otherwise.
 */
function containerOf(pod: any, url: URL, podName: string): string {
  const names: string[] = (pod.spec?.containers ?? []).map((c: any) => c.name);
  const container = url.searchParams.get("container") ?? "";
  if (!container) {
    if (names.length !== 1) {
      throw badRequest(
        `a container name must be specified for pod ${podName}, choose one of: [${
          names.join(" ")
        }]`,
      );
    }
    return names[0];
  }
  if (!names.includes(container)) {
    throw badRequest(`container ${container} is not valid for pod ${podName}`);
  }
  return container;
}
