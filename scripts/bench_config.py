#!/usr/bin/env python3
"""Helpers of scripts/bench-compare (no third-party modules).

  bench_config.py CONFIG PORT server            point an aquatic tracker config at 127.0.0.1:PORT
  bench_config.py CONFIG PORT server-tls DIR    the same with TLS on, DIR/cert.pem and DIR/key.pem
  bench_config.py CONFIG PORT load-PROTO SECS   point an aquatic load-test config at it, for SECS
  bench_config.py LOG 0 parse                   print "<responses/s> <announce responses/s> <invalid>",
                                                then drop the per-packet complaints from LOG; for
                                                aquatic_ws_load_test "<responses/s> <successful/s>
                                                <invalid> <error responses/s> <announce responses/s>"
  bench_config.py TRACKERS 0 summary            markdown: medians, spreads and ratios
"""
import os
import re
import statistics
import sys

# scripts/bench-compare --no-keep-alive sets MEGATORRENT_BENCH_KEEP_ALIVE=false.
KEEP_ALIVE_ON = os.environ.get("MEGATORRENT_BENCH_KEEP_ALIVE", "true") != "false"
KEEP_ALIVE = "true" if KEEP_ALIVE_ON else "false"


def patch(path, port, mode, secs):
    tls_dir = secs if mode == "server-tls" else None
    out = []
    for line in open(path, encoding="utf-8").read().splitlines():
        m = re.match(r'^(\s*)(\w+)\s*=\s*"(.*)"\s*$', line)
        if m and re.search(r"address", m.group(2)) and re.search(r":\d+$", m.group(3)):
            ipv6 = m.group(3).startswith("[")
            host = "[::1]" if ipv6 else "127.0.0.1"
            line = f'{m.group(1)}{m.group(2)} = "{host}:{port}"'
        elif re.match(r"^\s*use_ipv6\s*=", line):
            line = "use_ipv6 = false"
        elif re.match(r"^\s*drop_privileges\s*=", line):
            line = "drop_privileges = false"
        elif mode.startswith("load") and re.match(r"^duration\s*=", line):
            line = f"duration = {secs}"
        elif re.match(r"^\s*log_level\s*=", line):
            line = 'log_level = "error"'
        elif re.match(r"^\s*enable_tls\s*=", line):
            # Plain HTTP on loopback, unless asked for aquatic_ws's own TLS (server-tls).
            line = f"enable_tls = {'true' if tls_dir else 'false'}"
        elif tls_dir and re.match(r"^\s*tls_certificate_path\s*=", line):
            line = f'tls_certificate_path = "{tls_dir}/cert.pem"'
        elif tls_dir and re.match(r"^\s*tls_private_key_path\s*=", line):
            line = f'tls_private_key_path = "{tls_dir}/key.pem"'
        elif mode == "load-http" and re.match(r"^keep_alive\s*=", line):
            line = f"keep_alive = {KEEP_ALIVE}"
        elif mode == "load-http" and not KEEP_ALIVE_ON and re.match(r"^connection_creation_interval_ms\s*=", line):
            # Without keep-alive every request is a new connection: open them at once.
            line = "connection_creation_interval_ms = 0"
        out.append(line)
    open(path, "w", encoding="utf-8").write("\n".join(out) + "\n")


def parse(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    if "Offer responses:" in text:
        return parse_ws(text)
    avg = re.findall(r"Average responses per second:\s*([\d.]+)", text)
    # The load tester prints a sample every second; their mean is the run's rate of
    # successful announce answers (refusals such as "torrent is full" are not counted).
    ann = [float(x) for x in re.findall(r"Announce responses:\s*([\d.]+)", text)]
    invalid = text.count("Received invalid response")
    mean = statistics.mean(ann) if ann else 0
    print(f"{avg[-1] if avg else 0} {mean:.2f} {invalid}")


def parse_ws(text):
    """aquatic_ws_load_test: each socket sends its next request once any message arrives
    (an announce answer, a relayed offer or answer, or an error), so every message counts.
    "Successful" is all of them but the error responses. The samples are the load tester's
    own: those after the one in which it printed "Max connections reached" (that one is
    printed after the marker but not averaged), every 5 s."""
    avg = re.findall(r"Average responses per second:\s*([\d.]+)", text)
    start = text.find("Max connections reached")
    samples = re.split(r"^Requests out:", text[max(start, 0):], flags=re.M)[1:]
    if start >= 0:
        samples = samples[1:]

    def mean(kind):
        values = []
        for sample in samples:
            m = re.search(kind + r" responses:\s*([\d.]+)", sample)
            values.append(float(m.group(1)) if m else 0.0)
        return statistics.mean(values) if values else 0.0

    ok = mean("Announce") + mean("Offer") + mean("Answer") + mean("Scrape")
    invalid = text.count("error deserializing message")
    print(f"{avg[-1] if avg else 0} {ok:.2f} {invalid} {mean('Error'):.2f} {mean('Announce'):.2f}")


def compact(path):
    """Replace the load tester's per-answer complaints by their counts (they run to MBs)."""
    lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    invalid = sum(1 for l in lines if l.startswith("Received invalid response"))
    failures = {}
    for l in lines:
        if l.startswith("failure response: "):
            failures[l] = failures.get(l, 0) + 1
    if not invalid and not failures:
        return
    noise = re.compile(r"^(Received invalid response|\s+kind:|\s+error:|}|failure response: )")
    kept = [l for l in lines if not noise.match(l)] if invalid else [
        l for l in lines if not l.startswith("failure response: ")
    ]
    notes = [f"[{n} × '{text}' removed by bench_config.py]" for text, n in sorted(failures.items())]
    if invalid:
        notes.append(f"[{invalid} 'Received invalid response' entries removed by bench_config.py]")
    open(path, "w", encoding="utf-8").write("\n".join(notes + kept) + "\n")


def summary(path):
    rows = {}  # (proto, name) -> [(round, responses, successful, invalid, errors, announces)]
    for line in open(path, encoding="utf-8"):
        parts = line.split()
        if len(parts) < 6:
            continue
        proto, name, rnd = parts[0], parts[1], int(parts[2])
        extra = [float(x) for x in parts[6:8]] + [0.0, 0.0]
        rows.setdefault((proto, name), []).append(
            (rnd, float(parts[3]), float(parts[4]), int(parts[5]), extra[0], extra[1])
        )

    import json

    def record(p, n, r):
        d = {"protocol": p, "tracker": n, "round": r[0], "responses_per_s": r[1]}
        if p == "ws":
            d.update({"successful_responses_per_s": r[2], "error_responses_per_s": r[4],
                      "announce_responses_per_s": r[5], "invalid_answers": r[3]})
        else:
            d.update({"announce_responses_per_s": r[2], "invalid_answers": r[3]})
        return d

    json_path = re.sub(r"\.txt$", "", path) + ".json"
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump([record(p, n, r) for (p, n), runs in sorted(rows.items()) for r in runs], f,
                  indent=1)

    def spread(values, digits=0):
        if not values:
            return "n/a"
        m, lo, hi = statistics.median(values), min(values), max(values)
        return f"{m:,.{digits}f} ({lo:,.{digits}f}–{hi:,.{digits}f})"

    plain = [(k, v) for k, v in sorted(rows.items()) if k[0] != "ws"]
    ws = [(k, v) for k, v in sorted(rows.items()) if k[0] == "ws"]
    if plain:
        print("| protocol | tracker | responses/s median (min–max) | announce responses/s | invalid answers |")
        print("| --- | --- | ---: | ---: | ---: |")
        for (proto, name), runs in plain:
            print(
                f"| {proto} | {name} | {spread([r[1] for r in runs])} | "
                f"{spread([r[2] for r in runs])} | {sum(r[3] for r in runs)} |"
            )
        print()
    if ws:
        print("| protocol | tracker | responses/s median (min–max) | successful responses/s "
              "| announce responses/s | error responses/s | undecodable |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for (proto, name), runs in ws:
            print(
                f"| {proto} | {name} | {spread([r[1] for r in runs])} | "
                f"{spread([r[2] for r in runs])} | {spread([r[5] for r in runs])} | "
                f"{spread([r[4] for r in runs], 1)} | {sum(r[3] for r in runs)} |"
            )
        print()
    print("| protocol | ours / other | per-round ratios median (min–max) |")
    print("| --- | --- | ---: |")
    for proto in sorted({p for p, _ in rows}):
        # Ratios compare successful answers per second (column 3: announce answers for
        # UDP/HTTP, every non-error message for WebSocket), so a tracker answering fast with
        # refusals gains nothing.
        ours = {r[0]: r[2] for r in rows.get((proto, "megatorrent"), [])}
        # An anchor whose answers the load tester cannot read (opentracker's whitelist build
        # refuses unknown info-hashes) is no anchor.
        anchors = [
            (name, runs)
            for (p, name), runs in rows.items()
            if p == proto and name != "megatorrent" and sum(r[3] for r in runs) == 0
            and statistics.median([r[2] for r in runs] or [0]) > 0
        ]
        if not ours or not anchors:
            print(f"| {proto} | no valid anchor measured | |")
            continue
        anchors.sort(key=lambda a: -statistics.median([r[2] for r in a[1]]))
        for i, (name, runs) in enumerate(anchors):
            ratios = [ours[r[0]] / r[2] for r in runs if r[0] in ours and r[2] > 0]
            label = f"vs {name}" + (" (fastest)" if i == 0 else "")
            print(f"| {proto} | {label} | {spread_ratio(ratios)} |")


def spread_ratio(values):
    if not values:
        return "n/a"
    return f"{statistics.median(values):.2f}× ({min(values):.2f}–{max(values):.2f})"


if __name__ == "__main__":
    target, port, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "parse":
        parse(target)
        compact(target)
    elif mode == "summary":
        summary(target)
    elif mode in ("server", "server-tls") or mode.startswith("load-"):
        patch(target, port, mode, sys.argv[4] if len(sys.argv) > 4 else "0")
    else:
        sys.exit(f"bench_config.py: unknown mode {mode!r} (see the docstring)")
