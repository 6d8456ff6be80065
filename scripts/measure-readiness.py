#!/usr/bin/env python3
"""Measures how long `acr-autoattach serve` takes from process start to its first answer to GET /.

The Functions host polls GET / every 25 ms from the moment it starts the handler; this polls every 1 ms to see the
handler's own start-up time. Usage: scripts/measure-readiness.py [BINARY] [RUNS]
"""
import http.client
import os
import socket
import statistics
import subprocess
import sys
import time

binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/acr-autoattach"
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


samples = []
for _ in range(runs):
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "FUNCTIONS_CUSTOMHANDLER_PORT": str(port)}
    start = time.perf_counter()
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/")
                status = conn.getresponse().status
                conn.close()
                samples.append((time.perf_counter() - start) * 1000)
                break
            except OSError:
                if time.perf_counter() - start > 10:
                    raise SystemExit("no answer within 10 s")
                time.sleep(0.001)
    finally:
        proc.terminate()
        proc.wait(timeout=10)

samples.sort()
print(f"readiness of {binary} over {runs} starts: min {samples[0]:.1f} ms, "
      f"median {statistics.median(samples):.1f} ms, max {samples[-1]:.1f} ms (status {status})")
