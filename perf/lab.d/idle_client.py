#!/usr/bin/python3
"""Client for the idle-connections test.

Opens COUNT connections to HOST:PORT (at most --inflight connects at a time), sends one byte
on each and waits for the echo, which proves the connection reaches the backend through the
proxy. Then prints "ready N SECONDS" and holds every connection idle until a line arrives on
stdin (or stdin closes, or --hold-seconds pass), then closes them all and prints "closed".
If not every connection is up within --timeout it prints "partial N" and exits 1.
"""
import argparse
import errno
import os
import resource
import select
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--inflight", type=int, default=256)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--hold-seconds", type=float, default=120.0)
    a = ap.parse_args()

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    ep = select.epoll()
    socks = {}        # fd -> socket
    state = {}        # fd -> "connecting" | "waiting" | "up"
    started = 0
    up = 0
    failed = 0
    pending = 0
    t0 = time.monotonic()
    deadline = t0 + a.timeout

    def start_one():
        nonlocal started, pending, failed
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((a.host, a.port))
        started += 1
        if err not in (0, errno.EINPROGRESS):
            failed += 1
            s.close()
            return
        socks[s.fileno()] = s
        state[s.fileno()] = "connecting"
        ep.register(s.fileno(), select.EPOLLOUT)
        pending += 1

    while up < a.count and time.monotonic() < deadline:
        while pending < a.inflight and pending + up < a.count:
            start_one()
        for fd, ev in ep.poll(0.2, 1024):
            s = socks[fd]
            st = state[fd]
            if st == "connecting":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    ep.unregister(fd); del socks[fd]; del state[fd]; s.close()
                    pending -= 1; failed += 1
                    continue
                try:
                    s.send(b"p")
                except OSError:
                    ep.unregister(fd); del socks[fd]; del state[fd]; s.close()
                    pending -= 1; failed += 1
                    continue
                state[fd] = "waiting"
                ep.modify(fd, select.EPOLLIN)
            elif st == "waiting":
                try:
                    d = s.recv(16)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    d = b""
                ep.unregister(fd)
                pending -= 1
                if d:
                    state[fd] = "up"
                    up += 1
                else:
                    del socks[fd]; del state[fd]; s.close()
                    failed += 1
        if failed > a.count:  # everything refused: give up early
            break
    elapsed = time.monotonic() - t0
    if up < a.count:
        print(f"partial {up} failed {failed}", flush=True)
        for s in socks.values():
            s.close()
        sys.exit(1)
    print(f"ready {up} {elapsed:.3f}", flush=True)
    r, _, _ = select.select([sys.stdin], [], [], a.hold_seconds)
    if r:
        sys.stdin.readline()
    for s in socks.values():
        s.close()
    print("closed", flush=True)


if __name__ == "__main__":
    main()
