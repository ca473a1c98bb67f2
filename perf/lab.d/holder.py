#!/usr/bin/python3
"""Backend for the idle-connections test: accepts connections and holds them.

Every byte received is echoed back (the client uses a one-byte ping to prove that each
connection reached the backend end to end); a connection is closed when its peer closes.
Runs until SIGTERM/SIGINT or --max-seconds, whichever comes first.
"""
import argparse
import errno
import os
import resource
import select
import signal
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--max-seconds", type=float, default=3600.0)
    a = ap.parse_args()

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.host, a.port))
    ls.listen(4096)
    ls.setblocking(False)
    ep = select.epoll()
    ep.register(ls.fileno(), select.EPOLLIN)
    conns = {}
    print("listening", flush=True)
    deadline = time.monotonic() + a.max_seconds
    while not stop and time.monotonic() < deadline:
        try:
            events = ep.poll(0.2, 1024)
        except InterruptedError:
            continue
        for fd, _ in events:
            if fd == ls.fileno():
                while True:
                    try:
                        c, _ = ls.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:  # EMFILE and friends: keep serving the rest
                        if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                            print(f"accept: {e}", file=sys.stderr, flush=True)
                        break
                    c.setblocking(False)
                    conns[c.fileno()] = c
                    ep.register(c.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
                continue
            c = conns.get(fd)
            if c is None:
                continue
            try:
                data = c.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                try:
                    c.send(data)
                except OSError:
                    pass
                continue
            ep.unregister(fd)
            del conns[fd]
            c.close()
    for c in conns.values():
        c.close()
    ls.close()


if __name__ == "__main__":
    main()
