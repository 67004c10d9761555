#!/usr/bin/env python3
"""A process that makes TCP connections on command, for the tracer's tests.

Usage: tcp_actor.py COMM
Sets its command name (what the tracer reports as COMM), then reads one
command per line on stdin and answers each with one JSON line on stdout:

  pid                              {"pid": N}
  listen ADDR [v6only]             {"sock": S, "port": P}
  connect ADDR PORT [BIND_ADDR]    {"sock": S, "sport": P, "error": null|"ECONNREFUSED"}
  accept S                         {"sock": S2, "port": local, "peer_port": P}
  fork_accept S COMM               a child named COMM accepts on S, waits
                                   for the peer to close, closes, exits:
                                   {"pid": child, "peer_port": P}
  wait_child                       {"status": N} once the fork_accept child ends
  fork_close S COMM [rst]          a child named COMM inherits S, this process
                                   closes its copy, then the child closes S
                                   (with RST if asked) and exits: {"pid": child}
  churn S N                        N connections to listener S, accepted and
                                   closed: {"connections": N}
  send S                           {"ok": true}
  wait_eof S                       reads until EOF or reset: {"reset": bool}
  shutdown S                       shutdown(SHUT_WR): {"ok": true}
  close S                          {"ok": true}
  rst S                            close with SO_LINGER 0 (sends RST): {"ok": true}
  resolve NAME [4|6]               the system resolver (getaddrinfo):
                                   {"addresses": [...]}
  resolve_tcp NAME SERVER          one A query over TCP to SERVER port 53:
                                   {"addresses": [...]}
  join_cgroup DIR...               moves itself into each cgroup: {"ok": true}
  exit                             exits
"""

import errno
import json
import os
import socket
import struct
import sys


def set_comm(name):
    # The name's bytes as given (any bytes but NUL: UTF-8, control
    # characters); the kernel keeps the first 15.
    with open("/proc/self/comm", "wb") as f:
        f.write(os.fsencode(name))


def family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def resolve_tcp(name, server):
    """The A records of NAME, asked of SERVER over TCP (RFC 1035 4.2.2)."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    query = struct.pack(">HHHHHH", 0x7C9A, 0x0100, 1, 0, 0, 0) + labels + b"\0\0\1\0\1"
    with socket.create_connection((server, 53)) as sock:
        sock.sendall(struct.pack(">H", len(query)) + query)
        data = b""
        while len(data) < 2 or len(data) < 2 + struct.unpack(">H", data[:2])[0]:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    message = data[2:]
    count = struct.unpack(">H", message[6:8])[0]
    offset = 12 + len(labels) + 1 + 4
    addresses = []
    for _ in range(count):
        while message[offset] and message[offset] < 0xC0:  # the owner's name
            offset += 1 + message[offset]
        offset += 2 if message[offset] >= 0xC0 else 1
        rtype, _, _, length = struct.unpack(">HHIH", message[offset:offset + 10])
        offset += 10
        if rtype == 1:
            addresses.append(socket.inet_ntoa(message[offset:offset + 4]))
        offset += length
    return addresses


def main():
    set_comm(sys.argv[1])
    socks = {}
    children = []
    next_id = [0]

    def keep(sock):
        next_id[0] += 1
        socks[next_id[0]] = sock
        return next_id[0]

    def reply(value):
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        command, args = words[0], words[1:]
        if command == "pid":
            reply({"pid": os.getpid()})
        elif command == "cpu":
            # Runs (and so emits its events) on that CPU only.
            os.sched_setaffinity(0, {int(args[0])})
            reply({"cpu": int(args[0])})
        elif command == "listen":
            addr = args[0]
            sock = socket.socket(family_of(addr), socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family_of(addr) == socket.AF_INET6:
                v6only = 1 if len(args) > 1 and args[1] == "v6only" else 0
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
            sock.bind((addr, 0))
            sock.listen(16)
            reply({"sock": keep(sock), "port": sock.getsockname()[1]})
        elif command == "connect":
            addr, port = args[0], int(args[1])
            family = family_of(addr)
            wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
            bind_addr = args[2] if len(args) > 2 else wildcard
            sock = socket.socket(family, socket.SOCK_STREAM)
            # Bound first, so the source port is known even if connect fails.
            sock.bind((bind_addr, 0))
            sport = sock.getsockname()[1]
            error = None
            try:
                sock.connect((addr, port))
            except OSError as e:
                error = errno.errorcode.get(e.errno, str(e.errno))
            reply({"sock": keep(sock), "sport": sport, "error": error})
        elif command == "accept":
            conn, peer = socks[int(args[0])].accept()
            reply({"sock": keep(conn), "port": conn.getsockname()[1], "peer_port": peer[1]})
        elif command == "fork_accept":
            listener = socks[int(args[0])]
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read_end)
                set_comm(args[1])
                conn, peer = listener.accept()
                os.write(write_end, json.dumps({"peer_port": peer[1]}).encode() + b"\n")
                os.close(write_end)
                while conn.recv(4096):
                    pass
                conn.close()
                os._exit(0)
            os.close(write_end)
            with os.fdopen(read_end) as pipe:
                report = json.loads(pipe.readline())
            children.append(pid)
            report["pid"] = pid
            reply(report)
        elif command == "fork_close":
            sock = socks.pop(int(args[0]))
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(write_end)
                set_comm(args[1])
                os.read(read_end, 1)  # the parent has closed its copy
                if len(args) > 2 and args[2] == "rst":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
                os._exit(0)
            os.close(read_end)
            sock.close()
            os.write(write_end, b"x")
            os.close(write_end)
            os.waitpid(pid, 0)
            reply({"pid": pid})
        elif command == "wait_child":
            _, status = os.waitpid(children.pop(0), 0)
            reply({"status": status})
        elif command == "churn":
            # N connections to the listener S, each accepted and closed by
            # both ends: C, A, X, X each.
            listener = socks[int(args[0])]
            addr = listener.getsockname()
            for _ in range(int(args[1])):
                client = socket.socket(listener.family, socket.SOCK_STREAM)
                client.connect(addr[:2])
                conn, _ = listener.accept()
                client.close()
                conn.close()
            reply({"connections": int(args[1])})
        elif command == "send":
            socks[int(args[0])].sendall(b"hello")
            reply({"ok": True})
        elif command == "wait_eof":
            sock = socks[int(args[0])]
            reset = False
            try:
                while sock.recv(4096):
                    pass
            except ConnectionResetError:
                reset = True
            reply({"reset": reset})
        elif command == "shutdown":
            socks[int(args[0])].shutdown(socket.SHUT_WR)
            reply({"ok": True})
        elif command == "close":
            socks.pop(int(args[0])).close()
            reply({"ok": True})
        elif command == "rst":
            sock = socks.pop(int(args[0]))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            reply({"ok": True})
        elif command == "resolve":
            family = {"4": socket.AF_INET, "6": socket.AF_INET6}.get(args[1] if len(args) > 1 else "")
            infos = socket.getaddrinfo(args[0], None, family or 0, socket.SOCK_STREAM)
            reply({"addresses": [info[4][0] for info in infos]})
        elif command == "resolve_tcp":
            reply({"addresses": resolve_tcp(args[0], args[1])})
        elif command == "join_cgroup":
            for directory in args:
                # Writing 0 moves the writer itself.
                with open(os.path.join(directory, "cgroup.procs"), "w") as f:
                    f.write("0")
            reply({"ok": True})
        elif command == "exit":
            break
        else:
            reply({"error": "unknown command " + command})


if __name__ == "__main__":
    main()
