#!/usr/bin/env python3
"""A process tree that connects from every kind of member, for the tests
of the traced process tree (egress run).

Usage: tree_workload.py HOST PORT EXIT_STATUS

Each connection to HOST:PORT sends one line, "ROLE PID TID\\n", and then
waits for the server to close it, so the server knows who made it:

  main          this process, first thing after naming itself
  thread        two threads of this process
  child         a forked child (waited for)
  leader-first  a child whose main thread exits first (pthread_exit): its
                other thread connects after that, then ends the process
  abandon       a child that starts a connect that cannot finish (to a
                listener of its own whose queue is full) and exits: the
                kernel aborts it as the process exits (ECONNABORTED); its
                line ends with that connection's local port
  daemon        a grandchild, double-forked (its parent exits at once),
                that connects only once this process is gone (reaped)

Each process names itself (its COMM) tg-tree-ROLE. This process echoes
stdin to stdout, writes "stderr" to stderr, and exits with EXIT_STATUS once
its threads and children are done (the daemon outlives it).
"""

import ctypes
import os
import socket
import sys
import threading
import time

HOST, PORT, STATUS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def set_comm(role):
    with open("/proc/self/comm", "w") as f:
        f.write("tg-tree-" + role)


def connect(role, *extra):
    sock = socket.create_connection((HOST, PORT))
    words = [role, os.getpid(), threading.get_native_id(), *extra]
    sock.sendall((" ".join(map(str, words)) + "\n").encode())
    while sock.recv(4096):
        pass
    sock.close()


def in_child(body):
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    return pid


def leader_first():
    set_comm("leader-first")
    libc = ctypes.CDLL(None)

    def late():
        while True:  # until the main thread has exited
            with open(f"/proc/{os.getpid()}/task/{os.getpid()}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in "ZX":
                    break
            time.sleep(0.01)
        connect("leader-first")
        os._exit(0)

    threading.Thread(target=late).start()
    libc.pthread_exit(None)


def abandon():
    set_comm("abandon")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    # One connection fills a queue of 0; the kernel drops later SYNs.
    blocker = socket.create_connection(listener.getsockname())
    time.sleep(0.05)
    late = socket.socket()
    late.bind(("127.0.0.1", 0))
    late.setblocking(False)
    connect("abandon", late.getsockname()[1])
    try:
        late.connect(listener.getsockname())
    except BlockingIOError:
        pass
    os._exit(0)  # with blocker open and late unfinished: closed by the exit


def daemon(main_pid):
    """The middle process: forks the daemon and exits at once."""
    if os.fork() == 0:
        os.setsid()
        set_comm("daemon")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(main_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.01)
        connect("daemon")
    os._exit(0)


def main():
    set_comm("main")
    connect("main")
    threads = [threading.Thread(target=connect, args=("thread",)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    os.waitpid(in_child(lambda: (set_comm("child"), connect("child"))), 0)
    os.waitpid(in_child(leader_first), 0)
    os.waitpid(in_child(abandon), 0)
    main_pid = os.getpid()
    middle = os.fork()
    if middle == 0:
        daemon(main_pid)
    os.waitpid(middle, 0)
    sys.stdout.write(sys.stdin.read())
    sys.stderr.write("stderr\n")
    sys.exit(STATUS)


main()
