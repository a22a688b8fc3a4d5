"""What the Kubernetes manifests promise, against the real executables.

- Every probe path (startup, liveness, readiness) and the Prometheus scrape path that each
  Deployment of k8s/overlays/production declares answers 200 on the running executable, and the
  scrape is Prometheus text.
- Every subcommand the manifests run (`serve`, `migrate`) exists in that executable, and one it
  lacks is refused.
- Each executable, started with the configuration its manifests give it (ConfigMap and literal
  env; only addresses, the port and secrets replaced by the test suite's own), starts and serves
  those probes: the values are ones it accepts, and LOG_FORMAT takes effect.

The static half (ports, keys, probes as declared) is Tests/Contract/test_deploy_manifests.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from e2e_http import Api
from e2e_support import SERVICES, closed_port, free_ports, wait_for_answer, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Contract"))
import deploy_drift as drift  # noqa: E402

EXECUTABLES = ("gateway", *SERVICES)
# Another tree of manifests (a broken copy, to see these tests fail): DEPLOY_CHECK_K8S_DIR.
K8S_DIR = Path(os.environ.get("DEPLOY_CHECK_K8S_DIR") or drift.ROOT / "k8s")
OVERLAY = "production"
SAMPLE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? [-+]?([0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?|Inf|NaN)( -?[0-9]+)?$")
# Values that name places in the cluster, or secrets: the test suite's own are used instead.
ADDRESS_KEYS = {"HTTP_HOST", "HTTP_PORT", "DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "JWKS_URL"}


@pytest.fixture(scope="module")
def manifests() -> drift.Rendered:
    if not drift.kubectl_available():
        message = "kubectl (with kustomize v5) is not on PATH: the overlays cannot be rendered"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI must run these checks)")
        pytest.skip(message)
    return drift.load_overlay(K8S_DIR.resolve(), OVERLAY)


def deployment(manifests: drift.Rendered, name: str) -> dict:
    found = manifests.get("Deployment", name)
    assert found, f"k8s/overlays/{OVERLAY} has no Deployment {name}"
    return found


def assert_prometheus_text(response) -> None:
    assert response.media_type == "text/plain", response.describe()
    lines = [line for line in response.text().splitlines() if line.strip()]
    samples = [line for line in lines if not line.startswith("#")]
    assert samples and any(line.startswith("# TYPE ") for line in lines), f"no metric samples: {response.describe()}"
    bad = [line for line in samples if not SAMPLE.match(line)]
    assert not bad, f"lines that are not Prometheus samples: {bad[:5]}"


@pytest.mark.parametrize("name", EXECUTABLES)
def test_the_declared_probes_and_scrape_path_are_served(manifests, gateway, direct, name):
    paths = drift.probe_paths(deployment(manifests, name), name)
    assert set(paths) == {"startupProbe", "livenessProbe", "readinessProbe", "prometheus"}, paths
    api = gateway if name == "gateway" else direct[name]
    for kind, path in sorted(paths.items()):
        response = api.get(path).expect(200)
        if kind == "prometheus":
            assert_prometheus_text(response)


@pytest.mark.parametrize("name", EXECUTABLES)
def test_the_subcommands_the_manifests_run_exist(manifests, suite, name):
    workloads = [deployment(manifests, name)] + [j for j in manifests.of_kind("Job") if j["metadata"]["name"] == f"{name}-migrate"]
    commands = {c["args"][0] for w in workloads for c in drift.containers(w) if c.get("args")}
    assert "serve" in commands and ("migrate" in commands) == (name != "gateway"), commands

    def usage(command: str) -> str:
        done = subprocess.run([suite.binary(name), command, "--help"], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"`{name} {command} --help` exited {done.returncode}: {done.stderr[-500:]}"
        match = re.search(r"^USAGE: (.*)$", done.stdout, re.M)
        assert match, done.stdout
        return match.group(1)

    for command in sorted(commands):
        assert usage(command).startswith(f"{name} {command}"), f"{name} has no subcommand {command}: {usage(command)}"
    # Asked about a subcommand it lacks, an executable answers with its own usage instead.
    lacking = "migrate" if name == "gateway" else "deploy"
    assert not usage(lacking).startswith(f"{name} {lacking}"), usage(lacking)


def manifest_environment(manifests: drift.Rendered, name: str) -> tuple[dict[str, str], set[str]]:
    """The main container's literal variables (ConfigMap and env values), and the names of those
    it takes from Secrets."""
    container = drift.main_container(deployment(manifests, name), name)
    values, problems = drift.environment(manifests, container)
    assert not problems, problems
    literal = {key: value for key, value in values.items() if isinstance(value, str)}
    secret = {key for key, value in values.items() if isinstance(value, dict) and "secretKeyRef" in value}
    return literal, secret


def local_stand_ins(manifests, suite, name: str, port: int) -> tuple[dict[str, str], dict[str, str]]:
    """The manifest's environment for `name`, with what only exists in a cluster replaced:
    addresses (the suite's own; Kafka a closed port, see below), secrets (the suite's value, or a
    placeholder), PEM file locations (the machine's CA bundle). Returns (env, what was kept as is)."""
    env, secret = manifest_environment(manifests, name)
    local = suite.suite.env_for(name)
    replaced = set(ADDRESS_KEYS) | {k for k in env if k.startswith("UPSTREAM_")} | secret
    env.update(HTTP_HOST="127.0.0.1", HTTP_PORT=str(port), JWKS_URL=suite.jwks_url)
    env.update({k: v for k, v in local.items() if k.startswith("UPSTREAM_") or k == "DATABASE_URL"})
    # A second consumer in the suite's consumer groups would rebalance them under the other tests,
    # and the suite's dev broker speaks neither TLS nor SASL: this instance gets a closed port, so it
    # parses and applies the manifest's Kafka settings, and is alive and not ready because of Kafka.
    env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{closed_port()}"
    for key in secret - {"DATABASE_URL"}:
        if key in local:
            env[key] = local[key]
        elif key == "IDENTITY_KEY_ENCRYPTION_KEY":
            env.pop(key, None)  # must unseal the suite's signing keys: the suite runs on the development key
        else:
            env[key] = "placeholder-secret"
    for key in [k for k in env if k.endswith("_LOCATION")]:
        assert key == "KAFKA_SSL_CA_LOCATION", f"{name}: no local stand-in for the file {key}={env[key]} (extend the test)"
        env[key] = "/etc/ssl/certs/ca-certificates.crt"
        replaced.add(key)
    return env, {k: v for k, v in env.items() if k not in replaced}


@pytest.mark.parametrize("name", EXECUTABLES)
def test_the_executable_starts_with_its_manifest_configuration(manifests, suite, spawn, contracts, name):
    (port,) = free_ports(1)
    env, kept = local_stand_ins(manifests, suite, name, port)
    assert kept, f"the manifests give {name} nothing but addresses and secrets: nothing to try"
    process = spawn(name, env, f"{name}-manifest-config")
    api = Api(f"http://127.0.0.1:{port}", name, contracts)

    paths = drift.probe_paths(deployment(manifests, name), name)
    api.validate(wait_for_answer(api, process, paths["startupProbe"], timeout=60)).expect(200)
    api.get(paths["livenessProbe"]).expect(200)
    assert_prometheus_text(api.get(paths["prometheus"]).expect(200))
    # Everything but Kafka is there: not ready, and Kafka is the only reason.
    expected = {"jwks": "ok", "revocations": "fail"} if name == "gateway" else {"postgres": "ok", "migrations": "ok", "kafka": "fail"}
    if name == "listings":
        expected["search"] = "ok"  # its read model loads from Postgres, Kafka or not

    def settled():
        ready = api.get(paths["readinessProbe"], timeout=20)
        return ready if ready.status == 503 and ready.json().get("checks") == expected else None

    wait_until(settled, timeout=30, interval=0.5,
               describe=lambda: f"{name}'s readiness to be 503 with {expected}: {process.describe()}")
    assert process.exited() is None, process.describe()
    if kept.get("LOG_FORMAT") == "json":
        lines = [line for line in Path(process.log_path).read_text().splitlines() if line.strip()]
        assert lines, process.describe()
        for line in lines[:20]:
            json.loads(line)  # the manifest's LOG_FORMAT took effect
