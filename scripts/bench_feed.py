#!/usr/bin/env python3
"""Loopback benchmark of messages as torrents (BENCHMARKS.md, "Feeds").

Runs a real `megatorrentd` (SQLite, in a temporary directory, on 127.0.0.1) and real
`megatorrent` processes, and measures:

* share -> watch: the wall time from starting `megatorrent share --detach TEXT` in home A
  until a `megatorrent find --watch` of A's feed, running in home B, has printed TEXT
  (the share process, the manifest push over the WebSocket, the torrent download and the
  verification all included). `--runs` samples, after one warm-up message.
* find throughput: A shares `--messages` messages with `share --batch` (so the feed goes
  through the archive path), then a fresh home C runs `find` of the whole feed: cold
  (everything downloaded: archives and listed messages) and warm (everything already
  fetched: read, verified and printed only). Reported as messages per second.

Usage: scripts/bench_feed.py [--bin-dir DIR] [--runs N] [--messages N] [--json FILE]
The binaries default to $CARGO_TARGET_DIR/release (or target/release); build them with
`cargo build --release --features server,sqlite,client,torrent --bin megatorrent
--bin megatorrentd`.
"""

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RELAXED = {
    "MEGATORRENT_LIMITS__READ_QUOTA": "1000000r/s",
    "MEGATORRENT_LIMITS__WRITE_QUOTA": "1000000r/s",
    "MEGATORRENT_LIMITS__GLOBAL_WRITE_QUOTA": "1000000r/s",
    "MEGATORRENT_LIMITS__KEY_WRITE_QUOTA": "1000000r/s",
    "MEGATORRENT_WEBSOCKET__MESSAGE_QUOTA": "1000000r/s",
    "MEGATORRENT_WEBSOCKET__SUBSCRIBE_QUOTA": "1000000r/s",
}


class Bench:
    def __init__(self, bins, work):
        self.bins = bins
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs = []

    def start_server(self):
        env = dict(os.environ, **RELAXED)
        env["MEGATORRENT_HTTP__LISTEN"] = f"127.0.0.1:{self.port}"
        env["MEGATORRENT_UDP__ENABLED"] = "false"
        env["MEGATORRENT_METRICS__LISTEN"] = f"127.0.0.1:{free_port()}"
        env["MEGATORRENT_DATABASE__URL"] = f"sqlite://{self.work}/bench.db"
        log = open(os.path.join(self.work, "server.log"), "w")
        p = subprocess.Popen(
            [os.path.join(self.bins, "megatorrentd")],
            env=env, stdout=log, stderr=log, cwd=self.work)
        self.procs.append(p)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        sys.exit("megatorrentd did not start; see server.log")

    def home(self, name):
        d = os.path.join(self.work, name)
        os.makedirs(d, exist_ok=True)
        return d

    def env(self, home):
        return dict(os.environ, MEGATORRENT_HOME=home, MEGATORRENT_SERVER=self.url)

    def mt(self, home, *args):
        r = subprocess.run(
            [os.path.join(self.bins, "megatorrent"), *args],
            env=self.env(home), capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            sys.exit(f"megatorrent {' '.join(args[:2])} failed: {r.stderr}")
        return r.stdout

    def stop(self):
        for home in os.listdir(self.work):
            pid = os.path.join(self.work, home, "seed.pid")
            if os.path.isfile(pid):
                try:
                    os.kill(int(open(pid).read().strip()), 15)
                except (OSError, ValueError):
                    pass
        for p in self.procs:
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def summary(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def share_to_watch(b, runs):
    a, w = b.home("a"), b.home("b")
    key = b.mt(a, "keygen").strip()
    listen = ["--listen", "127.0.0.1:0"]
    b.mt(a, "share", "--detach", *listen, "warm-up")
    watch = subprocess.Popen(
        [os.path.join(b.bins, "megatorrent"), "find", key, "--watch", *listen],
        env=b.env(w), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    b.procs.append(watch)
    if "warm-up" not in watch.stdout.readline():
        sys.exit("find --watch did not print the warm-up message")
    samples = []
    for i in range(runs):
        text = f"bench message {i}"
        t0 = time.perf_counter()
        b.mt(a, "share", "--detach", *listen, text)
        line = watch.stdout.readline()
        samples.append(time.perf_counter() - t0)
        if text not in line:
            sys.exit(f"find --watch printed {line!r}, expected {text!r}")
    watch.terminate()
    return samples


def find_throughput(b, n):
    a, c = b.home("a"), b.home("c")
    key = b.mt(a, "whoami").strip()
    batch = os.path.join(b.work, "batch.txt")
    with open(batch, "w") as f:
        for i in range(n):
            f.write(f"batch message {i:05}\n")
    t0 = time.perf_counter()
    b.mt(a, "share", "--detach", "--listen", "127.0.0.1:0", "--batch", batch)
    share_secs = time.perf_counter() - t0
    out = {}
    for run in ("cold", "warm"):
        t0 = time.perf_counter()
        printed = b.mt(c, "find", key, "--listen", "127.0.0.1:0").splitlines()
        secs = time.perf_counter() - t0
        got = sum(1 for l in printed if "batch message" in l)
        if got != n:
            sys.exit(f"find printed {got} of {n} batch messages")
        out[run] = {"secs": secs, "messages": len(printed),
                    "messages_per_sec": len(printed) / secs}
    out["share_batch_secs"] = share_secs
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    ap.add_argument("--bin-dir", default=os.path.join(target, "release"))
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--json")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="mt-bench-feed-")
    b = Bench(os.path.abspath(args.bin_dir), work)
    try:
        b.start_server()
        lat = share_to_watch(b, args.runs)
        thr = find_throughput(b, args.messages)
    finally:
        b.stop()
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "bin_dir": os.path.abspath(args.bin_dir),
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(),
                 "loadavg": os.getloadavg()},
        "share_to_watch_secs": summary(lat),
        "share_to_watch_samples": lat,
        "find": thr,
        "messages": args.messages,
    }
    s = result["share_to_watch_secs"]
    print(f"| share -> watch printed | {s['median']:.2f} s median "
          f"({s['min']:.2f}-{s['max']:.2f}, n={s['n']}) |")
    print(f"| share --batch {args.messages} | {thr['share_batch_secs']:.1f} s |")
    for run in ("cold", "warm"):
        r = thr[run]
        print(f"| find {r['messages']} messages, {run} | {r['secs']:.1f} s, "
              f"{r['messages_per_sec']:.0f} messages/s |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
