#!/usr/bin/env python3
"""A workload for the egress tests: resolves names with the system resolver
and connects, as a CI job's command would, and says exactly what it did.

Usage: egress_workload.py REPORT STEP...

Names itself (its COMM) tg-egress, runs each STEP in order, then exits with
the status of the last exit step (0 without one). Each connection appends
one JSON line to REPORT: {"step", "pid", "comm", "name", "address", "port",
"sport", "error"} (error: null, or the errno name of a failed connect).

Steps (fields separated by commas: IPv6 addresses have colons):
  name,NAME,4|6,PORT      resolve NAME (getaddrinfo, that family) and connect
                          to its first address
  addr,ADDRESS,PORT       connect to ADDRESS
  burst,ADDRESS,PORT,N    N connects in a row (refused ones are quick)
  daemon,STEP             double fork: a grandchild (COMM tg-eg-daemon),
                          in a session of its own, runs STEP once this
                          process has exited (its parent exits at once)
  exit,N                  the exit status
"""

import errno
import json
import os
import socket
import sys
import time


def set_comm(name):
    with open("/proc/self/comm", "w") as f:
        f.write(name)


def report(path, record):
    # One write per line, appended: the daemon writes to the same file.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


def connect(path, step, address, port, name=None):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
    sport = sock.getsockname()[1]
    error = None
    try:
        sock.settimeout(10)
        sock.connect((address, port))
    except OSError as e:
        error = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else "ETIMEDOUT"
    sock.close()
    with open("/proc/self/comm") as f:
        comm = f.read().strip()
    report(path, {"step": step, "pid": os.getpid(), "comm": comm, "name": name,
                  "address": address, "port": port, "sport": sport, "error": error})


def run(path, step, main_pid):
    kind, *fields = step.split(",")
    if kind == "name":
        name, family, port = fields[0], fields[1], int(fields[2])
        family = socket.AF_INET6 if family == "6" else socket.AF_INET
        address = socket.getaddrinfo(name, None, family, socket.SOCK_STREAM)[0][4][0]
        connect(path, step, address, port, name)
    elif kind == "addr":
        connect(path, step, fields[0], int(fields[1]))
    elif kind == "burst":
        address, port, count = fields[0], int(fields[1]), int(fields[2])
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        refused = 0
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            if sock.connect_ex((address, port)) != 0:
                refused += 1
            sock.close()
        report(path, {"step": step, "pid": os.getpid(), "count": count, "refused": refused})
    elif kind == "daemon":
        if os.fork() == 0:
            if os.fork() == 0:
                os.setsid()
                set_comm("tg-eg-daemon")
                # Connects only once the main process is gone (reaped).
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    try:
                        os.kill(main_pid, 0)
                    except ProcessLookupError:
                        break
                    time.sleep(0.01)
                run(path, ",".join(fields), main_pid)
            os._exit(0)
        os.wait()
    elif kind == "exit":
        return int(fields[0])
    else:
        raise SystemExit("unknown step " + step)
    return None


def main():
    set_comm("tg-egress")
    path, steps = sys.argv[1], sys.argv[2:]
    status = 0
    for step in steps:
        result = run(path, step, os.getpid())
        if result is not None:
            status = result
    sys.stdout.flush()
    os._exit(status)


main()
