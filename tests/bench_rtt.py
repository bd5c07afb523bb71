#!/usr/bin/env python3
"""Interactive round trip: one byte typed into a terminal comes back from `cat` on the remote
PTY. Each command given runs in its own local pseudo-terminal; rounds alternate between the
commands in blocks of 10 so that machine noise falls on both alike. Prints medians, p90 and
each median's ratio to the first command's.

Usage: bench_rtt.py ROUNDS NAME COMMAND [NAME COMMAND ...]
"""
import os
import pty
import select
import shlex
import statistics
import sys
import time


def spawn(command):
    pid, fd = pty.fork()
    if pid == 0:
        args = shlex.split(command)
        os.execvp(args[0], args)
    return pid, fd


def drain(fd, seconds):
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                os.read(fd, 65536)
            except OSError:
                return


def round_trip(fd, byte):
    start = time.perf_counter()
    os.write(fd, byte)
    seen = b""
    while byte not in seen:
        ready, _, _ = select.select([fd], [], [], 10)
        if not ready:
            raise RuntimeError("no echo within 10 s")
        seen += os.read(fd, 4096)
    return time.perf_counter() - start


def main():
    rounds = int(sys.argv[1])
    pairs = list(zip(sys.argv[2::2], sys.argv[3::2]))
    sessions = []
    for name, command in pairs:
        pid, fd = spawn(command)
        sessions.append((name, pid, fd))
    # Let logins finish and `stty raw -echo` run before measuring.
    for _, _, fd in sessions:
        drain(fd, 3.0)
    times = {name: [] for name, _, _ in sessions}
    letters = b"abcdefghijklmnopqrstuvwxyz"
    done = 0
    while done < rounds:
        block = min(10, rounds - done)
        for name, _, fd in sessions:
            for i in range(block):
                times[name].append(round_trip(fd, letters[(done + i) % 26 : (done + i) % 26 + 1]))
        done += block
    base = statistics.median(times[pairs[0][0]])
    for name, samples in times.items():
        median = statistics.median(samples)
        p90 = sorted(samples)[int(len(samples) * 0.9) - 1]
        print(f"    {name:<8} median {median * 1000:7.3f} ms  p90 {p90 * 1000:7.3f} ms  ratio {median / base:5.2f}"
              + ("  (goal <= 1.3)" if name != pairs[0][0] else ""))
    for _, pid, fd in sessions:
        try:
            os.write(fd, b"\x03\x04")
            os.close(fd)
        except OSError:
            pass
        try:
            os.kill(pid, 15)
            os.waitpid(pid, 0)
        except OSError:
            pass


if __name__ == "__main__":
    main()
