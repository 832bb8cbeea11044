#!/usr/bin/env python3
"""Offline checks of the megatorrent Helm chart (run by scripts/check-deploy).

For every value set in helm/megatorrent/ci/*-values.yaml:
  * `helm lint --strict` (Helm's Go SDK through helm-python-sdk) and the values schema;
  * render, then validate every object with kubernetes-validate --strict against the
    oldest supported Kubernetes version and the newest one it knows;
  * assertions that schemas cannot make: selectors match pod labels, Service ports and the
    ServiceMonitor's port name exist, probes use the server's real paths on the real port,
    no container can run as root, service links are off, the ConfigMap's TOML is accepted
    by `megatorrentd --check-config` with the pod's environment, torrc passes
    `tor --verify-config`, and the checksum annotations follow config changes.
Every file in ci/invalid/ must be rejected, with the error its `# expect:` line names.
docker/compose.yaml's server environment is checked with `megatorrentd --check-config` too.

`--self-test` breaks copies of the chart in several ways and asserts each break is caught.
"""

from __future__ import annotations

import argparse
import base64
import copy
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import yaml

try:
    import helm_python as helm
    import kubernetes_validate.utils as kv
    import promql_parser
except ImportError as exc:  # pragma: no cover - the venv is set up by scripts/check-deploy
    sys.exit(f"check_chart.py needs the deploy venv (scripts/check-deploy): {exc}")

REPO = Path(__file__).resolve().parent.parent
CHART_NAME = "megatorrent"
NAMESPACE = "megatorrent"
DEFAULT_RELEASE = "megatorrent"
SERVER_CONTAINER = "megatorrentd"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"
# Kinds from CRDs: kubernetes-validate has no schema, our assertions cover them.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
SAFE_VOLUME_SOURCES = {"configMap", "secret", "emptyDir", "persistentVolumeClaim", "projected", "downwardAPI"}


class Failures:
    """Collects failures per stage; prints them as they happen."""

    def __init__(self, quiet: bool = False) -> None:
        self.items: list[tuple[str, str]] = []
        self.quiet = quiet

    def add(self, stage: str, msg: str) -> None:
        self.items.append((stage, msg))
        print(f"FAIL [{stage}] {msg}", flush=True)

    def check(self, cond: bool, stage: str, msg: str) -> bool:
        if not cond:
            self.add(stage, msg)
        return bool(cond)

    def info(self, msg: str) -> None:
        if not self.quiet:
            print(msg, flush=True)


# --------------------------------------------------------------------------------------
# kubernetes-validate: cache the (large) schema files between objects.
_schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)
kv.schema_contents = _schema_contents


def k8s_validate(obj: dict, version: str, fails: Failures, where: str) -> None:
    kind = obj.get("kind", "?")
    name = obj.get("metadata", {}).get("name", "?")
    try:
        kv.validate(obj, version, strict=True)
    except kv.SchemaNotFoundError as e:
        if kind not in CRD_KINDS:
            fails.add("kubernetes-validate", f"{where}: {kind}/{name}: {e.message}")
    except kv.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        fails.add("kubernetes-validate", f"{where}: {kind}/{name} against {version}: {path}: {e.message}")
    except Exception as e:  # noqa: BLE001 - report anything the validator throws
        fails.add("kubernetes-validate", f"{where}: {kind}/{name}: {type(e).__name__}: {e}")


# --------------------------------------------------------------------------------------
# Helpers over rendered objects.


@dataclass
class Rendered:
    where: str
    values: dict
    release: str
    manifests: dict[str, str]
    objects: list[dict] = field(default_factory=list)

    def of(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o.get("kind") == kind]

    def one(self, kind: str, name: str | None = None) -> dict | None:
        found = [o for o in self.of(kind) if name is None or o["metadata"]["name"] == name]
        return found[0] if len(found) == 1 else None


def subset(small: dict, big: dict) -> bool:
    return all(big.get(k) == v for k, v in (small or {}).items())


def merged(values: dict, chart_values: dict) -> dict:
    """Chart defaults overlaid with `values` (null deletes), as Helm coalesces them."""

    def merge(base, over):
        out = copy.deepcopy(base)
        for k, v in over.items():
            if v is None:
                out.pop(k, None)
            elif isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = merge(out[k], v)
            else:
                out[k] = copy.deepcopy(v)
        return out

    return merge(chart_values, values)


def parse_listen(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def workload(r: Rendered) -> dict | None:
    ws = r.of("Deployment") + r.of("StatefulSet")
    return ws[0] if len(ws) == 1 else None


def container(pod: dict, name: str) -> dict | None:
    for c in pod.get("containers", []):
        if c.get("name") == name:
            return c
    return None


def container_port(c: dict, ref) -> dict | None:
    for p in c.get("ports", []):
        if p.get("name") == ref or p.get("containerPort") == ref:
            return p
    return None


# --------------------------------------------------------------------------------------
# The megatorrentd binary's --check-config.


class Binary:
    def __init__(self, path: Path | None) -> None:
        self.path = path

    def check_config(self, toml_text: str, env: dict[str, str], fails: Failures, where: str) -> None:
        if self.path is None:
            fails.add("check-config", f"{where}: no megatorrentd binary given")
            return
        try:
            tomllib.loads(toml_text)
        except tomllib.TOMLDecodeError as e:
            fails.add("check-config", f"{where}: the rendered TOML does not parse: {e}")
            return
        text = toml_text
        with tempfile.TemporaryDirectory(prefix="mt-check-config.") as tmp:
            path = Path(tmp, "megatorrentd.toml")
            path.write_text(text)
            run_env = {"PATH": "/usr/bin:/bin", **env}
            res = subprocess.run(
                [str(self.path), "--check-config", str(path)], capture_output=True, text=True, env=run_env
            )
            if res.returncode != 0:
                fails.add(
                    "check-config",
                    f"{where}: megatorrentd --check-config rejected the rendered config:\n"
                    f"{res.stderr.strip() or res.stdout.strip()}\n--- config ---\n{text}",
                )


def image_env(dockerfile: Path) -> dict[str, str]:
    """MEGATORRENT_* variables the image sets with ENV (they reach the server in the pod)."""
    env = {}
    for m in re.finditer(r"^ENV\s+(MEGATORRENT_\w+)=(\S+)", dockerfile.read_text(), re.M):
        env[m.group(1)] = m.group(2)
    return env


def service_link_env(services: list[dict]) -> dict[str, str]:
    """The variables Kubernetes injects when enableServiceLinks is true."""
    env = {}
    for svc in services:
        prefix = svc["metadata"]["name"].upper().replace("-", "_")
        ports = svc["spec"].get("ports", [])
        if not ports or svc["spec"].get("clusterIP") == "None":
            continue
        first = ports[0]
        env[f"{prefix}_SERVICE_HOST"] = "10.0.0.10"
        env[f"{prefix}_SERVICE_PORT"] = str(first["port"])
        env[f"{prefix}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://10.0.0.10:{first['port']}"
        for p in ports:
            proto = p.get("protocol", "TCP")
            if p.get("name"):
                env[f"{prefix}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
            base = f"{prefix}_PORT_{p['port']}_{proto}"
            env[base] = f"{proto.lower()}://10.0.0.10:{p['port']}"
            env[f"{base}_PROTO"] = proto.lower()
            env[f"{base}_PORT"] = str(p["port"])
            env[f"{base}_ADDR"] = "10.0.0.10"
    return env


def tor_verify(torrc: str, fails: Failures, where: str) -> None:
    tor = shutil.which("tor")
    if tor is None:
        fails.add("tor-verify-config", f"{where}: `tor` is not installed")
        return
    with tempfile.TemporaryDirectory(prefix="mt-torrc.") as tmp:
        os.chmod(tmp, 0o700)
        text = torrc.replace("/var/lib/tor", tmp)
        path = Path(tmp, "torrc")
        path.write_text(text)
        res = subprocess.run(
            [tor, "--verify-config", "--defaults-torrc", "/dev/null", "-f", str(path)],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0 or "Configuration was valid" not in res.stdout:
            fails.add("tor-verify-config", f"{where}: tor rejects the torrc:\n{res.stdout}{res.stderr}")


def tor_sidecar_rehearsal(pod: dict, torrc: str, fails: Failures, where: str) -> None:
    """Run the pod's onion-key init script and the tor sidecar for real, offline.

    Keys made by one Tor are put in a directory shaped like a Secret volume (root-owned,
    0440, group = fsGroup); the rendered init script copies them into an emptyDir-like state
    directory as UID 65532, and tor (network disabled, in a private network namespace) must
    accept them and publish the *same* onion address.
    """
    st = "tor-sidecar"
    tor = shutil.which("tor")
    if tor is None:
        fails.add(st, f"{where}: `tor` is not installed")
        return
    init = next((c for c in pod.get("initContainers", []) if c["name"] == "onion-keys"), None)
    if not fails.check(
        init is not None and init["command"][:2] == ["sh", "-ec"], st, f"{where}: no onion-keys init script"
    ):
        return
    key_mount = next(m["mountPath"] for m in init["volumeMounts"] if m["name"] == "onion-keys")
    state_mount = next(m["mountPath"] for m in init["volumeMounts"] if m["name"] == "tor-state")
    uid = str(pod.get("securityContext", {}).get("runAsUser", 65532))
    gid = str(pod.get("securityContext", {}).get("fsGroup", 65532))
    as_user = ["setpriv", f"--reuid={uid}", f"--regid={gid}", f"--groups={gid}"] if os.geteuid() == 0 else []

    def run_tor(torrc_path: Path, log: Path, wait_for: Path, user: list[str]) -> bool:
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [
                    "unshare",
                    "--net",
                    "--",
                    *user,
                    tor,
                    "--defaults-torrc",
                    "/dev/null",
                    "-f",
                    str(torrc_path),
                    "--DisableNetwork",
                    "1",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if wait_for.exists() and wait_for.stat().st_size > 0:
                        return True
                    if proc.poll() is not None:
                        return False
                    time.sleep(0.1)
                return False
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()

    with tempfile.TemporaryDirectory(prefix="mt-tor-sidecar.") as tmp:
        t = Path(tmp)
        os.chmod(t, 0o755)
        # 1. An onion service key pair, as an operator would have made it.
        gen = t / "gen"
        gen.mkdir(mode=0o700)
        (gen / "torrc").write_text(
            f"DataDirectory {gen}/data\nSocksPort 0\nHiddenServiceDir {gen}/hs\nHiddenServicePort 80 127.0.0.1:9\n"
        )
        if not fails.check(
            run_tor(gen / "torrc", gen / "log", gen / "hs" / "hostname", []),
            st,
            f"{where}: tor did not create onion keys:\n{(gen / 'log').read_text()[-2000:]}",
        ):
            return
        address = (gen / "hs" / "hostname").read_text().strip()
        # 2. The Secret volume: only the secret key, root-owned, group-readable by fsGroup.
        keys = t / "onion-keys"
        keys.mkdir(mode=0o755)
        shutil.copy(gen / "hs" / "hs_ed25519_secret_key", keys / "hs_ed25519_secret_key")
        os.chmod(keys / "hs_ed25519_secret_key", 0o440)
        if os.geteuid() == 0:
            os.chown(keys / "hs_ed25519_secret_key", 0, int(gid))
        # 3. The emptyDir, then the init container's script.
        state = t / "state"
        state.mkdir()
        os.chmod(state, 0o777)
        script = init["command"][2].replace(key_mount, str(keys)).replace(state_mount, str(state))
        res = subprocess.run([*as_user, "sh", "-ec", script], capture_output=True, text=True)
        if not fails.check(res.returncode == 0, st, f"{where}: the onion-keys init script failed: {res.stderr}"):
            return
        # 4. The sidecar with the rendered torrc.
        rendered = torrc.replace(state_mount, str(state))
        (t / "torrc").write_text(rendered)
        os.chmod(t / "torrc", 0o644)
        hostname = state / "hidden_service" / "hostname"
        ok = run_tor(t / "torrc", t / "sidecar.log", hostname, as_user)
        log = (t / "sidecar.log").read_text()
        if fails.check(ok, st, f"{where}: tor did not start the onion service from the copied keys:\n{log[-3000:]}"):
            got = hostname.read_text().strip()
            fails.check(got == address, st, f"{where}: onion address changed: {got} != {address}")
            fails.check(
                "[err]" not in log and "[warn]" not in log,
                st,
                f"{where}: tor logged warnings or errors:\n{log[-3000:]}",
            )
            fails.info(f"   tor sidecar: keys from the Secret give the same address {address[:16]}…")


# --------------------------------------------------------------------------------------
# Assertions on one rendered value set.


def assert_rendered(r: Rendered, vals: dict, binary: Binary, fails: Failures, ctx: dict) -> None:
    st = "assert"
    w = r.where
    postgres = vals["database"]["mode"] == "postgres"

    # Every object: the standard labels; names that fit.
    for o in r.objects:
        md = o.get("metadata", {})
        labels = md.get("labels", {})
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by"):
            fails.check(key in labels, st, f"{w}: {o['kind']}/{md.get('name')} lacks label {key}")
        fails.check(len(md.get("name", "")) <= 63, st, f"{w}: {o['kind']}/{md.get('name')} name longer than 63")

    # The workload and its pod.
    wl = workload(r)
    if not fails.check(wl is not None, st, f"{w}: expected exactly one Deployment or StatefulSet"):
        return
    expected_kind = "Deployment" if postgres else "StatefulSet"
    fails.check(wl["kind"] == expected_kind, st, f"{w}: {vals['database']['mode']} mode must use a {expected_kind}")
    tmpl = wl["spec"]["template"]
    pod = tmpl["spec"]
    pod_labels = tmpl["metadata"]["labels"]
    fails.check(
        subset(wl["spec"]["selector"]["matchLabels"], pod_labels),
        st,
        f"{w}: {wl['kind']} selector does not match its pod labels",
    )
    if postgres:
        if vals["autoscaling"]["enabled"]:
            fails.check("replicas" not in wl["spec"], st, f"{w}: Deployment sets replicas although an HPA scales it")
        else:
            fails.check(
                wl["spec"].get("replicas") == vals["replicaCount"],
                st,
                f"{w}: Deployment replicas {wl['spec'].get('replicas')} != replicaCount {vals['replicaCount']}",
            )
    else:
        fails.check(wl["spec"].get("replicas") == 1, st, f"{w}: SQLite StatefulSet must run exactly one replica")
        fails.check(not r.of("HorizontalPodAutoscaler"), st, f"{w}: SQLite mode must not have an HPA")
        fails.check(not r.of("PodDisruptionBudget"), st, f"{w}: SQLite mode must not have a PDB")
        headless = r.one("Service", wl["spec"].get("serviceName"))
        fails.check(
            headless is not None and headless["spec"].get("clusterIP") == "None",
            st,
            f"{w}: StatefulSet serviceName {wl['spec'].get('serviceName')!r} is not a headless Service of the chart",
        )

    # Pod-level safety.
    fails.check(pod.get("enableServiceLinks") is False, st, f"{w}: pod spec must set enableServiceLinks: false")
    fails.check(
        pod.get("automountServiceAccountToken") is False, st, f"{w}: pod must not mount a service account token"
    )
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        fails.check(not pod.get(key), st, f"{w}: pod sets {key}")
    psc = pod.get("securityContext", {})
    fails.check(psc.get("runAsNonRoot") is True, st, f"{w}: pod securityContext.runAsNonRoot must be true")
    fails.check(psc.get("runAsUser", 1) != 0, st, f"{w}: pod runs as UID 0")
    for vol in pod.get("volumes", []):
        kinds = set(vol) - {"name"}
        fails.check(kinds <= SAFE_VOLUME_SOURCES, st, f"{w}: volume {vol['name']} uses {kinds}")

    all_containers = pod.get("initContainers", []) + pod.get("containers", [])
    for c in all_containers:
        sc = c.get("securityContext", {})
        name = c["name"]

        def eff(key: str, sc: dict = sc):  # the container's setting wins over the pod's
            return sc.get(key, psc.get(key))

        fails.check(eff("runAsNonRoot") is True, st, f"{w}: container {name} may run as root (runAsNonRoot)")
        fails.check(eff("runAsUser") != 0, st, f"{w}: container {name} runs as UID 0")
        fails.check(sc.get("readOnlyRootFilesystem") is True, st, f"{w}: container {name} root FS is writable")
        fails.check(
            sc.get("allowPrivilegeEscalation") is False, st, f"{w}: container {name} allows privilege escalation"
        )
        fails.check(not sc.get("privileged"), st, f"{w}: container {name} is privileged")
        caps = sc.get("capabilities", {})
        fails.check("ALL" in caps.get("drop", []), st, f"{w}: container {name} does not drop ALL capabilities")
        fails.check(not caps.get("add"), st, f"{w}: container {name} adds capabilities")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        fails.check(seccomp == "RuntimeDefault", st, f"{w}: container {name} seccompProfile is {seccomp}")
        image = c.get("image", "")
        fails.check(
            "@sha256:" in image or (":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")),
            st,
            f"{w}: container {name} image {image!r} is not pinned to a tag or digest",
        )
        for p in c.get("ports", []):
            fails.check("hostPort" not in p, st, f"{w}: container {name} uses a hostPort")

    srv = container(pod, SERVER_CONTAINER)
    if not fails.check(srv is not None, st, f"{w}: no {SERVER_CONTAINER} container"):
        return

    # The config file: mounted where --config points, parsed, matching the ports.
    cms = {o["metadata"]["name"]: o for o in r.of("ConfigMap")}
    args = srv.get("args", [])
    cfg_path = args[args.index("--config") + 1] if "--config" in args else None
    if not fails.check(cfg_path is not None, st, f"{w}: {SERVER_CONTAINER} is not started with --config"):
        return
    toml_text = None
    for m in srv.get("volumeMounts", []):
        if m["mountPath"] == cfg_path:
            vol = next((v for v in pod["volumes"] if v["name"] == m["name"]), {})
            cm = cms.get(vol.get("configMap", {}).get("name"))
            if cm is not None:
                toml_text = cm["data"].get(m.get("subPath", ""))
    if not fails.check(toml_text is not None, st, f"{w}: --config {cfg_path} is not a mounted ConfigMap key"):
        return
    try:
        cfg = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as e:
        fails.add(st, f"{w}: rendered config is not TOML: {e}")
        return
    fails.check("postgres://" not in toml_text, st, f"{w}: a database URL is in the ConfigMap")

    http_host, http_port = parse_listen(cfg["http"]["listen"])
    p_http = container_port(srv, "http")
    fails.check(
        p_http is not None
        and p_http["containerPort"] == http_port
        and p_http.get("protocol", "TCP") == "TCP"
        and http_host == "0.0.0.0",
        st,
        f"{w}: container port `http` does not match http.listen {cfg['http']['listen']}",
    )
    if vals["udp"]["enabled"]:
        udp_listen = cfg.get("udp", {}).get("listen", "")
        p_udp = container_port(srv, "udp")
        fails.check(
            bool(udp_listen)
            and p_udp is not None
            and p_udp.get("protocol") == "UDP"
            and p_udp["containerPort"] == parse_listen(udp_listen)[1],
            st,
            f"{w}: container port `udp` does not match udp.listen {udp_listen!r}",
        )
    metrics_port = None
    if vals["metrics"]["enabled"]:
        m_listen = cfg.get("metrics", {}).get("listen", "")
        p_m = container_port(srv, "metrics")
        ok = bool(m_listen) and p_m is not None and p_m["containerPort"] == parse_listen(m_listen)[1]
        fails.check(
            ok and parse_listen(m_listen)[0] == "0.0.0.0",
            st,
            f"{w}: container port `metrics` does not match metrics.listen {m_listen!r} on 0.0.0.0",
        )
        metrics_port = p_m["containerPort"] if p_m else None
    else:
        fails.check(
            cfg.get("metrics") == {"enabled": False}, st, f"{w}: metrics disabled but not metrics.enabled = false"
        )
    if not vals["udp"]["enabled"]:
        fails.check(cfg.get("udp") == {"enabled": False}, st, f"{w}: UDP disabled but not udp.enabled = false")

    # Probes: the server's real paths, on the HTTP listener.
    for probe, path in (("startupProbe", HEALTH_PATH), ("livenessProbe", HEALTH_PATH), ("readinessProbe", READY_PATH)):
        get = srv.get(probe, {}).get("httpGet")
        if not fails.check(get is not None, st, f"{w}: {probe} is not an HTTP GET"):
            continue
        fails.check(get.get("path") == path, st, f"{w}: {probe} path {get.get('path')!r}, want {path}")
        p = container_port(srv, get.get("port"))
        fails.check(
            p is not None and p["containerPort"] == http_port,
            st,
            f"{w}: {probe} port {get.get('port')!r} is not the HTTP listener",
        )
    for path in (HEALTH_PATH, READY_PATH):
        fails.check(path in ctx["router_paths"], st, f"{w}: the server's router has no route {path}")

    # Draining: the pod is not killed before the server's shutdown grace is over.
    grace = cfg["http"].get("shutdown_grace_secs", 10) + cfg["http"].get("shutdown_delay_secs", 0)
    sleep = srv.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    fails.check(
        tgps > grace + sleep,
        st,
        f"{w}: terminationGracePeriodSeconds {tgps} <= shutdown grace + delay {grace} + preStop {sleep}",
    )

    # Database wiring.
    env = {e["name"]: e.get("value", "") for e in srv.get("env", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    for name, value in env.items():
        fails.check("postgres://" not in value, st, f"{w}: env {name} carries a database URL")
    db_files = {}
    if postgres:
        url_file = cfg["database"].get("url_file", "")
        found = False
        for m in srv.get("volumeMounts", []):
            v = vols.get(m["name"], {})
            sec = v.get("secret")
            if not sec:
                continue
            for item in sec.get("items", []):
                if f"{m['mountPath']}/{item['path']}" == url_file:
                    found = True
                    secret = r.one("Secret", sec["secretName"])
                    if vals["database"]["postgres"].get("existingSecret"):
                        fails.check(
                            sec["secretName"] == vals["database"]["postgres"]["existingSecret"]
                            and item["key"] == vals["database"]["postgres"]["existingSecretKey"],
                            st,
                            f"{w}: database Secret is not the existingSecret/key",
                        )
                        url = "postgres://megatorrent:pw@db.example:5432/megatorrent"
                    else:
                        if not fails.check(
                            secret is not None and item["key"] in secret.get("data", {}),
                            st,
                            f"{w}: Secret {sec['secretName']} with key {item['key']} is not rendered",
                        ):
                            continue
                        url = base64.b64decode(secret["data"][item["key"]]).decode()
                        fails.check(
                            url == vals["database"]["postgres"]["url"], st, f"{w}: Secret URL differs from values"
                        )
                    db_files[url_file] = url
        fails.check(found, st, f"{w}: database.url_file {url_file!r} is not a mounted Secret key")
    else:
        url = env.get("MEGATORRENT_DATABASE__URL", cfg["database"].get("url", ""))
        fails.check(url == cfg["database"].get("url"), st, f"{w}: env and config disagree on the SQLite URL")
        data_dir = url.removeprefix("sqlite://").rsplit("/", 1)[0]
        m = next((m for m in srv.get("volumeMounts", []) if m["mountPath"] == data_dir), None)
        if fails.check(
            m is not None and not m.get("readOnly"), st, f"{w}: SQLite directory {data_dir} is not a writable volume"
        ):
            claims = [t["metadata"]["name"] for t in wl["spec"].get("volumeClaimTemplates", [])]
            v = vols.get(m["name"])
            if vals["persistence"]["enabled"]:
                fails.check(
                    m["name"] in claims or (v and "persistentVolumeClaim" in v),
                    st,
                    f"{w}: persistence enabled but {data_dir} is not on a PVC",
                )
            else:
                fails.check(
                    v is not None and "emptyDir" in v,
                    st,
                    f"{w}: persistence disabled but {data_dir} is not an emptyDir",
                )

    # --check-config with the pod's environment, plus what service links would inject.
    run_env = {**ctx["image_env"], **env, **service_link_env(r.of("Service"))}
    text = toml_text
    for path, url in db_files.items():
        local = Path(ctx["tmp"], hashlib.sha256(w.encode()).hexdigest()[:12] + ".url")
        local.write_text(url + "\n")
        text = text.replace(toml_string(path), toml_string(str(local)))
    binary.check_config(text, run_env, fails, w)

    # Services: selectors find the pods, target ports exist with the right protocol.
    svc_by_name = {s["metadata"]["name"]: s for s in r.of("Service")}
    for svc in svc_by_name.values():
        name = svc["metadata"]["name"]
        fails.check(
            re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) is not None,
            st,
            f"{w}: Service name {name} is not DNS-1035",
        )
        fails.check(
            subset(svc["spec"].get("selector", {}), pod_labels) and svc["spec"].get("selector"),
            st,
            f"{w}: Service {name} selector does not match the pods",
        )
        for p in svc["spec"]["ports"]:
            cp = container_port(srv, p.get("targetPort", p["port"]))
            fails.check(
                cp is not None and cp.get("protocol", "TCP") == p.get("protocol", "TCP"),
                st,
                f"{w}: Service {name} port {p.get('name')} targets {p.get('targetPort')!r}, not a container port with protocol {p.get('protocol', 'TCP')}",
            )
    if r.release == DEFAULT_RELEASE and not vals.get("fullnameOverride"):
        # The case enableServiceLinks guards against: a Service called `megatorrent` would give
        # every pod MEGATORRENT_PORT=tcp://… and friends, in the server's config namespace.
        links = service_link_env([svc_by_name[n] for n in svc_by_name if n == DEFAULT_RELEASE])
        fails.check(
            "MEGATORRENT_PORT" in links,
            st,
            f"{w}: with the default release name the HTTP Service should be `{DEFAULT_RELEASE}`",
        )

    for ing in r.of("Ingress"):
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                b = p["backend"]["service"]
                svc = svc_by_name.get(b["name"])
                ok = svc is not None and any(
                    sp.get("name") == b["port"].get("name") or sp["port"] == b["port"].get("number")
                    for sp in svc["spec"]["ports"]
                )
                fails.check(ok, st, f"{w}: Ingress backend {b} is not a Service port of the chart")

    for hpa in r.of("HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        fails.check(ref["kind"] == wl["kind"] and ref["name"] == wl["metadata"]["name"], st, f"{w}: HPA targets {ref}")
        on_cpu = any(m.get("resource", {}).get("name") == "cpu" for m in hpa["spec"].get("metrics", []))
        requests = srv.get("resources", {}).get("requests") or {}
        fails.check(not on_cpu or "cpu" in requests, st, f"{w}: HPA on CPU needs a CPU request")
    for pdb in r.of("PodDisruptionBudget"):
        fails.check(
            subset(pdb["spec"]["selector"]["matchLabels"], pod_labels), st, f"{w}: PDB selector misses the pods"
        )

    # ServiceMonitor: selects exactly the metrics Service, by a port name it has.
    for sm in r.of("ServiceMonitor"):
        sel = sm["spec"]["selector"]["matchLabels"]
        matches = [s for s in svc_by_name.values() if subset(sel, s["metadata"]["labels"])]
        if not fails.check(len(matches) == 1, st, f"{w}: ServiceMonitor selects {len(matches)} Services, want 1"):
            continue
        svc = matches[0]
        names = {p.get("name"): p for p in svc["spec"]["ports"]}
        for ep in sm["spec"]["endpoints"]:
            p = names.get(ep.get("port"))
            if fails.check(
                p is not None,
                st,
                f"{w}: ServiceMonitor port {ep.get('port')!r} is not a port name of Service {svc['metadata']['name']}",
            ):
                cp = container_port(srv, p.get("targetPort"))
                fails.check(
                    cp is not None and cp["containerPort"] == metrics_port,
                    st,
                    f"{w}: ServiceMonitor port does not lead to the metrics listener",
                )
            fails.check(ep.get("path") == METRICS_PATH, st, f"{w}: ServiceMonitor path {ep.get('path')!r}")
    for pr in r.of("PrometheusRule"):
        groups = pr["spec"]["groups"]
        fails.check(groups and all(g.get("rules") for g in groups), st, f"{w}: PrometheusRule without rules")
        for g in groups:
            for rule in g.get("rules", []):
                check_promql(str(rule.get("expr", "")), fails, f"{w}: rule {rule.get('alert') or rule.get('record')}")

    ann = tmpl["metadata"].get("annotations", {})
    if ann.get("prometheus.io/scrape") == "true":
        fails.check(
            ann.get("prometheus.io/port") == str(metrics_port) and ann.get("prometheus.io/path") == METRICS_PATH,
            st,
            f"{w}: prometheus.io annotations do not point at the metrics listener",
        )
    fails.check("checksum/config" in ann, st, f"{w}: no checksum/config annotation")

    # NetworkPolicy: selects the pods and lets every served port in.
    for np in r.of("NetworkPolicy"):
        fails.check(
            subset(np["spec"]["podSelector"]["matchLabels"], pod_labels), st, f"{w}: NetworkPolicy misses the pods"
        )
        allowed = {
            (p.get("port"), p.get("protocol", "TCP"))
            for rule in np["spec"].get("ingress", [])
            for p in rule.get("ports", [])
        }
        for cp in srv.get("ports", []):
            fails.check(
                (cp["name"], cp.get("protocol", "TCP")) in allowed,
                st,
                f"{w}: NetworkPolicy blocks container port {cp['name']}",
            )
        egress_ports = {
            (p.get("port"), p.get("protocol", "TCP"))
            for rule in np["spec"].get("egress", [])
            for p in rule.get("ports", [])
        }
        fails.check((53, "UDP") in egress_ports, st, f"{w}: NetworkPolicy blocks DNS")
        if postgres:
            fails.check(
                (vals["networkPolicy"]["postgresPort"], "TCP") in egress_ports,
                st,
                f"{w}: NetworkPolicy blocks PostgreSQL",
            )

    # Tor sidecar: torrc is valid and points at the loopback PROXY listener.
    tor = container(pod, "tor")
    if vals["tor"]["enabled"]:
        if fails.check(tor is not None, st, f"{w}: tor.enabled but no tor container"):
            torrc_cm = next(
                (cms[v["configMap"]["name"]] for v in pod["volumes"] if v["name"] == "torrc" and v.get("configMap")),
                None,
            )
            torrc = torrc_cm["data"]["torrc"] if torrc_cm else ""
            torrc_path = tor["args"][tor["args"].index("-f") + 1]
            mount = next((m for m in tor["volumeMounts"] if m["name"] == "torrc"), {})
            fails.check(
                torrc_path == f"{mount.get('mountPath')}/torrc",
                st,
                f"{w}: tor -f {torrc_path} is not the mounted torrc",
            )
            onion = cfg.get("onion_proxy", {}).get("listen", "")
            target = re.search(r"^HiddenServicePort\s+\d+\s+(\S+)$", torrc, re.M)
            fails.check(
                bool(onion) and onion.startswith("127.0.0.1:") and target and target.group(1) == onion,
                st,
                f"{w}: HiddenServicePort target {target.group(1) if target else None!r} != onion_proxy.listen {onion!r} (loopback)",
            )
            fails.check(
                re.search(r"^HiddenServiceExportCircuitID haproxy$", torrc, re.M) is not None,
                st,
                f"{w}: torrc does not export circuit ids with the PROXY protocol",
            )
            keys = next(
                (v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == vals["tor"]["existingSecret"]),
                None,
            )
            fails.check(keys is not None, st, f"{w}: onion keys Secret is not mounted")
            fails.check(
                not any(p.get("containerPort") == parse_listen(onion)[1] for p in srv.get("ports", []))
                if onion
                else True,
                st,
                f"{w}: the onion PROXY listener must not be a container port",
            )
            tor_verify(torrc, fails, w)
            if ctx.get("rehearse_tor"):
                tor_sidecar_rehearsal(pod, torrc, fails, w)
    else:
        fails.check(
            tor is None and "onion_proxy" not in cfg,
            st,
            f"{w}: tor disabled but a tor container or onion listener exists",
        )


def toml_string(s: str) -> str:
    """A TOML basic string (JSON string syntax is valid TOML)."""
    return json.dumps(s)


# --------------------------------------------------------------------------------------
# Stages.


def load_values_file(path: Path) -> tuple[dict, str | None, str]:
    text = path.read_text()
    values = yaml.safe_load(text) or {}
    release = re.search(r"^# release: (\S+)$", text, re.M)
    expect = re.search(r"^# expect: (.+)$", text, re.M)
    return values, (release.group(1) if release else None), (expect.group(1).strip() if expect else "")


def render(chart_dir: Path, values: dict, release: str) -> dict[str, str]:
    with helm.Chart.load(chart_dir) as chart:
        return chart.render(values, name=release, namespace=NAMESPACE, is_install=True)


def to_rendered(where: str, values: dict, release: str, manifests: dict[str, str], fails: Failures) -> Rendered:
    r = Rendered(where, values, release, manifests)
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            fails.check(bool(text.strip()), "render", f"{where}: NOTES.txt is empty")
            continue
        try:
            docs = [d for d in yaml.safe_load_all(text) if d]
        except yaml.YAMLError as e:
            fails.add("render", f"{where}: {path} is not YAML: {e}")
            continue
        for d in docs:
            if not fails.check(
                isinstance(d, dict) and "kind" in d and "apiVersion" in d,
                "render",
                f"{where}: {path} has a document without kind/apiVersion",
            ):
                continue
            r.objects.append(d)
    return r


def lint(chart_dir: Path, values: dict, kube_version: str, fails: Failures, where: str) -> None:
    report = helm.lint(chart_dir, values, strict=True, namespace=NAMESPACE, kube_version=f"v{kube_version}")
    for e in report.get("errors", []):
        fails.add("lint", f"{where}: {e}")
    for m in report.get("messages", []):
        if m.get("severity", 0) >= 2:
            fails.add("lint", f"{where}: {m.get('path')}: {m.get('error')}")


def check_checksums(chart_dir: Path, fails: Failures) -> None:
    st = "checksum"

    def ann(values: dict) -> dict:
        r = to_rendered("checksum", values, DEFAULT_RELEASE, render(chart_dir, values, DEFAULT_RELEASE), fails)
        wl = workload(r)
        return wl["spec"]["template"]["metadata"].get("annotations", {}) if wl else {}

    base = ann({})
    fails.check(base == ann({}), st, "rendering is not deterministic (pod annotations differ between two renders)")
    changed = ann({"config": {"log": {"level": "debug"}}})
    fails.check(
        base.get("checksum/config") != changed.get("checksum/config"),
        st,
        "checksum/config does not change when the config changes",
    )
    pg = {"database": {"mode": "postgres", "postgres": {"url": "postgres://a@db/x"}}}
    pg2 = {"database": {"mode": "postgres", "postgres": {"url": "postgres://b@db/x"}}}
    fails.check(
        ann(pg).get("checksum/database-secret") not in (None, ann(pg2).get("checksum/database-secret")),
        st,
        "checksum/database-secret does not change when the database URL changes",
    )
    tor = {"tor": {"enabled": True, "existingSecret": "k"}}
    tor2 = {"tor": {"enabled": True, "existingSecret": "k", "maxStreams": 7}}
    fails.check(
        ann(tor).get("checksum/torrc") not in (None, ann(tor2).get("checksum/torrc")),
        st,
        "checksum/torrc does not change when the torrc changes",
    )


def check_compose(binary: Binary, compose: Path, fails: Failures, ctx: dict) -> None:
    st = "compose"
    doc = yaml.safe_load(compose.read_text())
    svc = doc["services"]["megatorrentd"]
    env = {k: re.sub(r"\$\{[^}]+\}", "compose-password", str(v)) for k, v in svc.get("environment", {}).items()}
    fails.check(svc.get("read_only") is True, st, "megatorrentd is not read_only")
    fails.check("ALL" in svc.get("cap_drop", []), st, "megatorrentd keeps capabilities")
    fails.check(
        svc.get("build", {}).get("dockerfile") == "docker/Dockerfile",
        st,
        "megatorrentd is not built from docker/Dockerfile",
    )
    grace = re.fullmatch(r"(\d+)s", svc.get("stop_grace_period", ""))
    fails.check(
        grace is not None and int(grace.group(1)) > 10,
        st,
        "stop_grace_period must exceed http.shutdown_grace_secs (10s)",
    )
    binary.check_config("", {**ctx["image_env"], **env}, fails, "compose megatorrentd environment")
    tor = doc["services"].get("tor", {})
    fails.check(tor.get("profiles") == ["onion"], st, "tor is not behind the `onion` profile")
    fails.check(
        tor.get("network_mode") == "service:megatorrentd", st, "tor does not share megatorrentd's network namespace"
    )
    torrc = (compose.parent / "tor" / "torrc").read_text()
    target = re.search(r"^HiddenServicePort\s+\d+\s+(\S+)$", torrc, re.M)
    fails.check(
        target is not None and target.group(1) == env.get("MEGATORRENT_ONION_PROXY__LISTEN"),
        st,
        "docker/tor/torrc HiddenServicePort does not target MEGATORRENT_ONION_PROXY__LISTEN",
    )
    tor_verify(torrc, fails, "docker/tor/torrc")


def leaf_paths(values: dict, prefix: str = ""):
    """Dotted paths of values.yaml's leaves (scalars, lists, empty maps, nulls)."""
    for key, v in values.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(v, dict) and v:
            yield from leaf_paths(v, path)
        else:
            yield path


def schema_node(schema: dict, root: dict, path: list[str]) -> dict | None:
    """The schema for a dotted path, following $ref, `properties` and typed maps."""
    node = schema
    for part in path:
        while "$ref" in node:
            node = root["definitions"][node["$ref"].rsplit("/", 1)[-1]]
        props = node.get("properties", {})
        if part in props:
            node = props[part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]  # a typed map such as resources.requests
        else:
            return None
    return node


def check_values_docs(chart_dir: Path, fails: Failures) -> None:
    """Every value is in the README table and declared in the schema, and nothing else is."""
    st = "values-docs"
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    readme = (chart_dir / "README.md").read_text()
    section = re.search(r"^## Values\n(.*?)(^## |\Z)", readme, re.M | re.S)
    readme = section.group(1) if section else ""
    documented = set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", readme, re.M))
    leaves = set(leaf_paths(values))
    for path in sorted(leaves - documented):
        fails.add(st, f"values.yaml `{path}` is missing from the README values table")
    for path in sorted(documented - leaves):
        fails.add(st, f"README documents `{path}`, which values.yaml does not have")
    for path in sorted(leaves):
        fails.check(
            schema_node(schema, schema, path.split(".")) is not None,
            st,
            f"values.schema.json does not declare `{path}`",
        )


METRIC_PREFIXES = ("megatorrent_", "process_")
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def check_promql(expr: str, fails: Failures, where: str) -> None:
    """The expression parses, and reads only the server's own metrics (or `up`)."""
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    try:
        tree = promql_parser.parse(expr)
    except Exception as e:  # noqa: BLE001 - the parser raises plain exceptions
        fails.add("promql", f"{where}: {e}: {expr.strip()}")
        return
    names: list[str] = []
    promql_parser.walk(tree, lambda e: names.append(e.name) if isinstance(e, promql_parser.VectorSelector) else None)
    for name in names:
        fails.check(
            name == "up" or name.startswith(METRIC_PREFIXES), "promql", f"{where}: {name!r} is not a megatorrent metric"
        )


def check_monitoring_docs(chart_dir: Path, fails: Failures) -> None:
    """docs/operations.md's example alerts and the Grafana dashboard."""
    ops = (REPO / "docs" / "operations.md").read_text()
    fails.check(
        re.search(r"^#{2,3} Metrics reference$", ops, re.M) is not None,
        "docs",
        "docs/operations.md lost its `Metrics reference` heading",
    )
    block = re.search(r"<!-- check-deploy: prometheus-rules -->\n```yaml\n(.*?)```", ops, re.S)
    if fails.check(block is not None, "docs", "docs/operations.md has no example rules block"):
        rules = yaml.safe_load(block.group(1))
        values = {"metrics": {"prometheusRule": {"enabled": True, "rules": rules}}}
        try:
            r = to_rendered("docs rules", values, DEFAULT_RELEASE, render(chart_dir, values, DEFAULT_RELEASE), fails)
            fails.check(len(r.of("PrometheusRule")) == 1, "docs", "the example rules do not render a PrometheusRule")
        except helm.HelmError as e:
            fails.add("docs", f"the example rules are not valid metrics.prometheusRule.rules: {e}")
        for rule in rules:
            check_promql(str(rule["expr"]), fails, f"docs/operations.md {rule.get('alert')}")
    dash_path = REPO / "docs" / "grafana" / "megatorrent.json"
    try:
        dash = json.loads(dash_path.read_text())
    except (OSError, ValueError) as e:
        fails.add("docs", f"{dash_path}: {e}")
        return
    targets = [(p["title"], t["expr"]) for p in dash.get("panels", []) for t in p.get("targets", [])]
    fails.check(len(targets) >= 10, "docs", f"the dashboard has only {len(targets)} queries")
    for title, expr in targets:
        check_promql(expr, fails, f"dashboard panel {title!r}")
    var_names = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    used = set(re.findall(r"\$\{?([A-Za-z_]+)", json.dumps(dash)))
    for var in sorted(used - var_names):
        fails.check(var.startswith("__"), "docs", f"the dashboard uses ${var}, which it does not define")


def run_checks(
    chart_dir: Path,
    binary: Binary,
    kube_versions: list[str],
    fails: Failures,
    compose: Path | None = None,
    rehearse_tor: bool = False,
) -> None:
    with helm.Chart.load(chart_dir) as chart:
        chart_values = chart.values
    fails.info("== values.yaml vs README and schema")
    check_values_docs(chart_dir, fails)
    router = (REPO / "src" / "server" / "mod.rs").read_text()
    ctx = {
        "image_env": image_env(REPO / "docker" / "Dockerfile"),
        "router_paths": set(re.findall(r'\.route\(\s*"([^"]+)"', router)),
        "rehearse_tor": rehearse_tor,
    }
    with tempfile.TemporaryDirectory(prefix="mt-chart.") as tmp:
        ctx["tmp"] = tmp
        sets = sorted((chart_dir / "ci").glob("*-values.yaml"))
        fails.check(bool(sets), "render", f"no value sets in {chart_dir / 'ci'}")
        renders: list[tuple[str, dict, str]] = []
        for path in sets:
            values, release, _ = load_values_file(path)
            renders.append((path.name, values, release or DEFAULT_RELEASE))
        renders.append(("default-values.yaml as release `prod`", {}, "prod"))
        for where, values, release in renders:
            fails.info(f"== {where} (release {release})")
            lint(chart_dir, values, kube_versions[0], fails, where)
            try:
                with helm.Chart.load(chart_dir) as chart:
                    chart.validate_schema(values)
            except helm.HelmError as e:
                fails.add("schema", f"{where}: good values rejected: {e}")
                continue
            try:
                manifests = render(chart_dir, values, release)
            except helm.HelmError as e:
                fails.add("render", f"{where}: {e}")
                continue
            r = to_rendered(where, values, release, manifests, fails)
            fails.info(
                f"   {len(r.objects)} objects: "
                + ", ".join(sorted(f"{o['kind']}/{o['metadata']['name']}" for o in r.objects))
            )
            for o in r.objects:
                for v in kube_versions:
                    k8s_validate(o, v, fails, where)
            try:
                assert_rendered(r, merged(values, chart_values), binary, fails, ctx)
            except Exception:  # noqa: BLE001 - a crash in an assertion is a failed check
                fails.add("assert", f"{where}: assertion crashed:\n{traceback.format_exc()}")

        fails.info("== values that must be rejected (ci/invalid)")
        bad = sorted((chart_dir / "ci" / "invalid").glob("*.yaml"))
        fails.check(bool(bad), "bad-values", "no invalid value sets")
        for path in bad:
            values, release, expect = load_values_file(path)
            if not fails.check(bool(expect), "bad-values", f"{path.name}: no `# expect:` line"):
                continue
            try:
                render(chart_dir, values, release or DEFAULT_RELEASE)
                fails.add("bad-values", f"{path.name}: accepted, but must be rejected ({expect})")
            except helm.HelmError as e:
                if expect not in str(e):
                    fails.add("bad-values", f"{path.name}: rejected for another reason (want {expect!r}):\n{e}")
                else:
                    fails.info(f"   rejected as expected: {path.name}")

        fails.info("== helm package")
        try:
            archive = helm.package(chart_dir, destination=tmp)
            with tarfile.open(archive) as tar:
                names = tar.getnames()
            fails.check(
                f"{CHART_NAME}/values.schema.json" in names and f"{CHART_NAME}/README.md" in names,
                "package",
                "the packaged chart lacks values.schema.json or README.md",
            )
            fails.check(
                not any(n.startswith(f"{CHART_NAME}/ci/") for n in names),
                "package",
                "the packaged chart contains the ci/ test values (.helmignore)",
            )
            fails.info(f"   {Path(archive).name}: {len(names)} files")
        except helm.HelmError as e:
            fails.add("package", f"helm package failed: {e}")
        fails.info("== PrometheusRule examples and the Grafana dashboard")
        check_monitoring_docs(chart_dir, fails)
        fails.info("== checksum annotations")
        check_checksums(chart_dir, fails)
        if compose is not None:
            fails.info("== docker/compose.yaml")
            check_compose(binary, compose, fails, ctx)


# --------------------------------------------------------------------------------------
# Self-test: every kind of break must be caught.

MUTATIONS = [
    # (name, file relative to the chart, old text, new text, stage expected to fail)
    ("template syntax error", "templates/service.yaml", "spec:\n", "spec:\n  {{ if }}\n", "render"),
    (
        "template error at render time",
        "templates/configmap.yaml",
        "data:\n",
        "data:\n  x: {{ .Values.nope.missing }}\n",
        "render",
    ),
    (
        "ServiceMonitor port name drifts from the Service",
        "templates/servicemonitor.yaml",
        "- port: metrics",
        "- port: http-metrics",
        "assert",
    ),
    ("service links back on", "templates/_pod.tpl", "enableServiceLinks: false", "enableServiceLinks: true", "assert"),
    ("readiness probe on a path the server lacks", "templates/_pod.tpl", "path: /readyz", "path: /ready", "assert"),
    (
        "a field Kubernetes does not have",
        "templates/deployment.yaml",
        "  strategy:\n",
        "  minReadySecond: 5\n  strategy:\n",
        "kubernetes-validate",
    ),
    (
        "a config key the server rejects",
        "templates/_helpers.tpl",
        '$_ := set $http "listen"',
        '$_ := set $http "bogus_key" 1 }}{{- $_ = set $http "listen"',
        "check-config",
    ),
    ("a bad default value", "values.yaml", "    max_manifest_bytes: 65536", "    max_manifest_bytes: 10", "schema"),
    (
        "the schema stops guarding root",
        "values.schema.json",
        '"runAsUser": { "type": "integer", "minimum": 1 },\n        "runAsGroup": { "type": "integer", "minimum": 0 },\n        "fsGroup"',
        '"runAsUser": { "type": "integer", "minimum": 0 },\n        "runAsGroup": { "type": "integer", "minimum": 0 },\n        "fsGroup"',
        "bad-values",
    ),
    (
        "a broken torrc option",
        "templates/_helpers.tpl",
        "HiddenServiceExportCircuitID haproxy",
        "HiddenServiceExportCircuitID haproxy\nHiddenServiceBogusOption 1",
        "tor-verify-config",
    ),
    (
        "a value nobody documented",
        "values.yaml",
        "replicaCount: 1\n",
        "replicaCount: 1\nsurprise: true\n",
        "values-docs",
    ),
    ("a PromQL typo in a rule", "ci/servicemonitor-values.yaml", "== 0", "== 0)", "promql"),
    (
        "config checksum no longer follows the config",
        "templates/_pod.tpl",
        '(print $.Template.BasePath "/configmap.yaml") . | sha256sum',
        '(print $.Template.BasePath "/serviceaccount.yaml") . | sha256sum',
        "checksum",
    ),
]


def self_test(chart_dir: Path, binary: Binary, kube_versions: list[str]) -> int:
    problems = 0
    for name, rel, old, new, stage in MUTATIONS:
        with tempfile.TemporaryDirectory(prefix="mt-chart-selftest.") as tmp:
            copy_dir = Path(tmp, CHART_NAME)
            shutil.copytree(chart_dir, copy_dir)
            target = copy_dir / rel
            text = target.read_text()
            if text.count(old) < 1:
                print(f"SELF-TEST BROKEN: {name}: {old!r} not found in {rel}")
                problems += 1
                continue
            target.write_text(text.replace(old, new))
            fails = Failures(quiet=True)
            print(f"-- self-test: {name} ({rel}) ...", flush=True)
            old_stdout = sys.stdout
            sys.stdout = open(os.devnull, "w")
            try:
                run_checks(copy_dir, binary, kube_versions, fails)
            except Exception as e:  # noqa: BLE001
                fails.add("crash", f"{type(e).__name__}: {e}")
            finally:
                sys.stdout.close()
                sys.stdout = old_stdout
            stages = sorted({s for s, _ in fails.items})
            if stage in stages:
                print(f"   caught by [{stage}] ({len(fails.items)} failures)")
            else:
                print(f"SELF-TEST FAILED: {name}: expected a [{stage}] failure, got {stages or 'none'}")
                for s, m in fails.items[:5]:
                    print(f"   [{s}] {m[:300]}")
                problems += 1
    print(f"{len(MUTATIONS) - problems} passed, {problems} failed")
    return 1 if problems else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chart", type=Path, default=REPO / "helm" / CHART_NAME)
    ap.add_argument("--binary", type=Path, required=True, help="megatorrentd used for --print-config/--check-config")
    ap.add_argument(
        "--kube-version",
        action="append",
        dest="kube_versions",
        help="Kubernetes versions to validate against (first: the oldest supported, used for lint)",
    )
    ap.add_argument("--compose", type=Path, default=REPO / "docker" / "compose.yaml")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    kube_versions = args.kube_versions or ["1.29.0", kv.latest_version()]
    binary = Binary(args.binary)
    print(f"megatorrentd {args.binary}")
    print(f"helm SDK {helm.helm_sdk_version()}, kubernetes-validate schemas {kube_versions}")
    if args.self_test:
        return self_test(args.chart, binary, kube_versions)
    fails = Failures()
    run_checks(args.chart, binary, kube_versions, fails, compose=args.compose, rehearse_tor=True)
    if fails.items:
        print(f"\nchart checks: {len(fails.items)} failure(s)")
        return 1
    print("\nchart checks: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
