// TLS front end of the fake API server, run with Node.js.
//
// Deno's node:tls server reads a connection's data eagerly whatever the
// socket's pause state, so a slow exec consumer would make it buffer a
// whole upload in memory. Node's TLS sockets do push back. This process
// terminates TLS (requesting client certificates), and forwards each
// request and each upgraded connection to the Deno server on a plain
// loopback port, with the client certificate's identity in a request header
// (X-Fake-Identity: base64 JSON {user, groups}, like the API server's
// request-header authentication of a front proxy) and a shared secret
// (X-Fake-Frontend) that proves the header comes from here.
//
// Usage: node tls_frontend.mjs <config.json>
// config: { key, cert, ca (PEM), backendPort, secret }
// Prints {"port": N} on stdout once listening; exits when stdin closes.

import { Buffer } from "node:buffer";
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const IDENTITY_HEADERS = ["x-fake-identity", "x-fake-frontend"];

/** Header lines for the backend: the client's, minus spoofed identity, plus ours. */
function forwardedHeaders(req) {
  const headers = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i];
    if (IDENTITY_HEADERS.includes(name.toLowerCase())) continue;
    headers.push([name, req.rawHeaders[i + 1]]);
  }
  headers.push(["X-Fake-Frontend", config.secret]);
  const socket = req.socket;
  if (socket.authorized) {
    const subject = socket.getPeerCertificate().subject ?? {};
    const cn = Array.isArray(subject.CN) ? subject.CN[0] : subject.CN;
    if (cn) {
      const groups = subject.O === undefined
        ? []
        : Array.isArray(subject.O)
        ? subject.O
        : [subject.O];
      const identity = Buffer.from(JSON.stringify({ user: cn, groups })).toString("base64");
      headers.push(["X-Fake-Identity", identity]);
    }
  }
  return headers;
}

const server = https.createServer({
  key: config.key,
  cert: config.cert,
  ca: config.ca,
  requestCert: true,
  rejectUnauthorized: false,
});

server.on("request", (req, res) => {
  const upstream = http.request({
    host: "127.0.0.1",
    port: config.backendPort,
    method: req.method,
    path: req.url,
    headers: forwardedHeaders(req),
    agent,
  }, (reply) => {
    res.writeHead(reply.statusCode ?? 502, reply.rawHeaders);
    // Watches may stay silent for long: the client must get the headers now.
    res.flushHeaders();
    reply.pipe(res);
    reply.on("error", () => res.destroy());
  });
  upstream.on("error", () => {
    if (!res.headersSent) {
      res.writeHead(502, { "Content-Type": "text/plain" });
      res.end("fake API server backend unavailable");
    } else res.destroy();
  });
  // A client that goes away (e.g. an aborted watch) closes the backend request too.
  res.on("close", () => {
    if (!res.writableFinished) upstream.destroy();
  });
  req.pipe(upstream);
});

server.on("upgrade", (req, socket, head) => {
  const upstream = net.connect(config.backendPort, "127.0.0.1", () => {
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (const [name, value] of forwardedHeaders(req)) lines.push(`${name}: ${value}`);
    upstream.write(lines.join("\r\n") + "\r\n\r\n");
    if (head.length > 0) upstream.write(head);
    // pipe() pauses the faster side: this is the flow control Deno's TLS lacks.
    socket.pipe(upstream);
    upstream.pipe(socket);
  });
  const close = () => {
    socket.destroy();
    upstream.destroy();
  };
  upstream.on("error", close);
  upstream.on("close", close);
  socket.on("error", close);
  socket.on("close", close);
});

server.on("tlsClientError", () => {});

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
});

// The parent owns this process: go when it goes.
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
