"""No drift between the Kubernetes manifests and the code they deploy (static: nothing runs).

Every overlay is rendered with `kubectl kustomize` and compared with what the executables read
and serve, as their Swift sources say (deploy_drift.py explains how the code is read): the set
of services, their ports, probes and Prometheus scrape, the configuration keys given to them
(and their values' types and ranges), the keys a cluster must set, secrets, shutdown timing, the
migration Jobs and subcommands, the securityContext and companions the issue asks for, network
policies against the calls the code makes, and the Strimzi example's topics and ACLs.

The second half breaks a copy of k8s/ one way at a time and asserts the check reports it, so
none of the checks above can pass vacuously. `make lint-deploy` (deploy/lint) is the other half
of the deploy checks: schema validation and checkov.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "dev"))

import deploy_drift as drift  # noqa: E402
from deploy_drift import ENVIRONMENTS, ROOT, code_model, expected_overlays, load_overlay  # noqa: E402

K8S = ROOT / "k8s"
CODE = code_model()
WORKLOAD_CHECKS = (
    drift.check_serve_command,
    drift.check_config_keys,
    drift.check_provided,
    drift.check_ports_and_probes,
    drift.check_shutdown,
    drift.check_migration,
    drift.check_security,
    drift.check_companions,
)
# (overlay, service) for every overlay the services need (a missing one fails, it is not skipped).
PAIRS = [(label, svc) for label, services in expected_overlays(CODE).items() for svc in services]


@pytest.fixture(scope="module", autouse=True)
def kubectl():
    if drift.kubectl_available():
        return
    message = "kubectl (with kustomize v5) is not on PATH: the overlays cannot be rendered"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI must run these checks)")
    pytest.skip(message)


def assert_no_problems(problems: list[str]) -> None:
    assert not problems, f"{len(problems)} problem(s):\n  " + "\n  ".join(problems)


# =========================================================================== the code scan itself


def test_the_code_scan_finds_what_the_executables_are_known_to_read():
    """If the scan found nothing, every 'key not read' check would be meaningless: pin known facts."""
    from suite import DEFAULT_PORTS  # the launcher's ports: the same executables, run locally

    ex = CODE.executables
    assert set(ex) == {"gateway", "identity", "listings", "billing", "orders", "messaging"}
    assert {name: e.port for name, e in ex.items()} == DEFAULT_PORTS
    for name in ex:
        assert {"HTTP_HOST", "HTTP_PORT", "LOG_LEVEL", "SHUTDOWN_GRACE_MS", "CONFIG_FILE"} <= ex[name].keys, name
    assert {"DATABASE_URL", "IDENTITY_KEY_ENCRYPTION_KEY", "IDENTITY_REFRESH_IDLE_DAYS", "OUTBOX_POLL_INTERVAL_MS"} <= ex["identity"].keys
    assert {"BREAKER_OPEN_SECONDS", "GATEWAY_BEHIND_TLS", "CORS_ALLOWED_ORIGINS", "ROUTES_FILE"} <= ex["gateway"].keys
    assert {f"UPSTREAM_{n.upper()}" for n in ("identity", "listings", "billing", "orders", "messaging")} <= ex["gateway"].keys
    # What only one executable reads is not accepted for another.
    assert "BREAKER_OPEN_SECONDS" not in ex["listings"].keys
    assert "IDENTITY_KEY_ENCRYPTION_KEY" not in ex["listings"].keys
    # The gateway links the platform but never builds the services' settings.
    assert not {"DATABASE_URL", "DATABASE_POOL_SIZE", "OUTBOX_POLL_INTERVAL_MS", "CONSUMER_MAX_ATTEMPTS"} & ex["gateway"].keys
    # Defaults, ranges and kinds are read too.
    shutdown = ex["listings"].reads["SHUTDOWN_GRACE_MS"][0]
    assert (shutdown.method, shutdown.default, shutdown.low, shutdown.high) == ("duration", "20000", 1, 86_400_000)
    port = ex["gateway"].reads["HTTP_PORT"][0]
    assert (port.method, port.default, port.low, port.high) == ("int", "8080", 1, 65535)
    assert ex["gateway"].reads["GATEWAY_BEHIND_TLS"][0].method == "bool"
    assert ex["gateway"].loopback_default_keys >= {"HTTP_HOST", "UPSTREAM_LISTINGS", "JWKS_URL"}
    assert ex["identity"].own_verification_keys and "JWKS_URL" not in ex["identity"].loopback_default_keys
    assert CODE.is_secret("DATABASE_URL") and CODE.is_secret("IDENTITY_KEY_ENCRYPTION_KEY") and not CODE.is_secret("HTTP_PORT")


def test_the_code_scan_finds_subcommands_and_topics():
    ex = CODE.executables
    assert ex["gateway"].subcommands == {"serve"}
    for name in ("identity", "listings", "billing", "orders", "messaging"):
        assert {"serve", "migrate", "dlq"} <= ex[name].subcommands, name
    assert {"keys", "create-admin"} <= ex["identity"].subcommands
    assert "rotate" not in ex["identity"].subcommands  # `identity keys rotate`, not a top-level command
    assert {"identity.users.v1", "identity.sessions.v1", "listings.privacy.v1", "messaging.dlq.v1"} <= set(CODE.topics.all)
    assert len(CODE.topics.all) == len(set(CODE.topics.all)) >= 12
    assert ex["listings"].consumed_topics == ["identity.users.v1", "billing.entitlements.v1", "orders.orders.v1"]
    assert set(ex["identity"].consumed_topics) == {f"{s}.privacy.v1" for s in ("listings", "billing", "orders", "messaging")}


def test_the_swift_reader_ignores_comments_and_keeps_braces_in_strings_apart(tmp_path):
    source = tmp_path / "Sample.swift"
    source.write_text(
        '// config.string("COMMENTED_OUT")\n'
        "/* nested /* block */ config.int(\"ALSO_COMMENTED\", default: 1) */\n"
        "struct Reader {\n"
        '    let brace = "}{ \\(value.map { "}" })"\n'
        "    init(_ config: ConfigReader, flag: Bool) throws {\n"
        '        _ = try config.int("REAL_KEY", default: 5, range: 1...9)\n'
        '        _ = try config.required("ALWAYS_NEEDED")\n'
        '        if flag { _ = try config.required("ONLY_WITH_FLAG") }\n'
        '        for (key, property) in [("LOOP_KEY_A", "a.b"), ("LOOP_KEY_B", "c.d")] { _ = config.string(key) }\n'
        "    }\n"
        "}\n"
        "struct After {}\n"
    )
    units = drift.swift_units(source)
    assert [u.name for u in units] == ["Reader", "After", ""]
    reads = {read.key: read for unit in units for read in CODE._reads(unit)}
    assert set(reads) == {"REAL_KEY", "ALWAYS_NEEDED", "ONLY_WITH_FLAG", "LOOP_KEY_A", "LOOP_KEY_B"}
    assert (reads["REAL_KEY"].default, reads["REAL_KEY"].low, reads["REAL_KEY"].high) == ("5", 1, 9)
    assert not reads["ALWAYS_NEEDED"].conditional and reads["ONLY_WITH_FLAG"].conditional


# =========================================================================== the manifests


def test_every_executable_has_a_base_and_overlays_and_the_suite_overlays_deploy_exactly_them():
    assert_no_problems(drift.check_overlay_set(K8S, CODE))


@pytest.mark.parametrize("check", WORKLOAD_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("label,svc", PAIRS, ids=[f"{label}:{svc}" if "/" not in label else label for label, svc in PAIRS])
def test_workload(label, svc, check):
    if not (K8S / "overlays" / label).is_dir():
        pytest.fail(f"k8s/overlays/{label} does not exist")
    assert_no_problems(check(load_overlay(K8S, label), svc, CODE))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_network_policies_allow_the_calls_the_code_makes_and_no_others(env):
    assert_no_problems(drift.check_network(load_overlay(K8S, env), CODE))


def test_no_secret_values_in_the_repository():
    assert_no_problems(drift.check_no_secret_values(K8S, CODE))


def test_strimzi_example_topics_and_acls_match_the_code():
    if not list((K8S / "examples").rglob("*.y*ml")):
        pytest.skip("no k8s/examples")
    assert_no_problems(drift.check_topics(K8S, CODE))


# =========================================================================== each check can fail


def broken_copy(tmp_path: Path, *edits: tuple[str, str | re.Pattern, str]) -> Path:
    """A copy of k8s/ with (file, old, new) replacements (every occurrence; `old` a string or a
    compiled pattern); each `old` must occur."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    for relative, old, new in edits:
        path = copy / relative
        text = path.read_text()
        changed = old.sub(new, text) if isinstance(old, re.Pattern) else text.replace(old, new)
        assert changed != text, f"the negative case no longer applies: {old!r} is not in k8s/{relative}"
        path.write_text(changed)
    return copy


def problems_in(k8s: Path, label: str, svc: str, check) -> list[str]:
    return check(load_overlay(k8s, label), svc, CODE)


BROKEN = {
    "a gateway-only key given to listings": (
        [("base/listings/configmap.yaml", 'HTTP_HOST: "0.0.0.0"', 'HTTP_HOST: "0.0.0.0"\n  BREAKER_OPEN_SECONDS: "5"')],
        "production/listings", "listings", drift.check_config_keys, "BREAKER_OPEN_SECONDS (ConfigMap listings-config) is not read by listings (only by gateway)"),
    "a key nobody reads": (
        [("base/orders/configmap.yaml", 'LOG_LEVEL: "info"', 'LOG_LEVEL: "info"\n  ORDERS_TURBO: "on"')],
        "dev", "orders", drift.check_config_keys, "ORDERS_TURBO (ConfigMap orders-config) is not read by orders (no executable reads it)"),
    "the test clock in a manifest (even dev)": (
        [("base/orders/configmap.yaml", 'LOG_LEVEL: "info"', 'LOG_LEVEL: "info"\n  TEST_CLOCK: "on"')],
        "dev/orders", "orders", drift.check_config_keys, "TEST_CLOCK (ConfigMap orders-config) is for `make run` and the tests only"),
    "a value outside the code's range": (
        [("base/billing/configmap.yaml", 'DATABASE_POOL_SIZE: "10"', 'DATABASE_POOL_SIZE: "500"')],
        "production/billing", "billing", drift.check_config_keys, "DATABASE_POOL_SIZE (ConfigMap billing-config) is 500, outside 1...200"),
    "a secret in the ConfigMap": (
        [("base/messaging/configmap.yaml", 'LOG_LEVEL: "info"', 'LOG_LEVEL: "info"\n  DATABASE_URL: "postgres://m:pw@db/marketplace"')],
        "production/messaging", "messaging", drift.check_config_keys, "DATABASE_URL (ConfigMap messaging-config) is a secret"),
    "HTTP_PORT drifted from the container port": (
        [("base/listings/configmap.yaml", 'HTTP_PORT: "8082"', 'HTTP_PORT: "9082"')],
        "production/listings", "listings", drift.check_ports_and_probes, "HTTP_PORT is 9082; listings's port is 8082"),
    "the Service targets a number that is not the http port": (
        [("base/orders/service.yaml", "targetPort: http", "targetPort: 9999")],
        "dev/orders", "orders", drift.check_ports_and_probes, "Service orders has no port with targetPort http"),
    "prometheus scraping the wrong port": (
        [("base/billing/deployment.yaml", 'prometheus.io/port: "8083"', 'prometheus.io/port: "9090"')],
        "production", "billing", drift.check_ports_and_probes, "prometheus.io/port is 9090"),
    "readiness on a path the service does not serve": (
        [("base/messaging/deployment.yaml", "path: /health/ready", "path: /healthz")],
        "production/messaging", "messaging", drift.check_ports_and_probes, "readinessProbe is"),
    "HTTP_HOST left on loopback": (
        [("base/identity/configmap.yaml", 'HTTP_HOST: "0.0.0.0"', 'HTTP_HOST: "127.0.0.1"')],
        "production/identity", "identity", drift.check_provided, "HTTP_HOST is '127.0.0.1', not 0.0.0.0"),
    "no JWKS_URL (the default is this machine)": (
        [("base/orders/configmap.yaml", '  JWKS_URL: "http://identity:8081/.well-known/jwks.json"\n', "")],
        "production/orders", "orders", drift.check_provided, "does not set JWKS_URL"),
    "identity without its key-encryption key": (
        [("base/identity/deployment.yaml", "            - name: IDENTITY_KEY_ENCRYPTION_KEY", "            - name: IDENTITY_KEY_ENCRYPTION_KEY_OLD")],
        "production/identity", "identity", drift.check_provided, "does not set IDENTITY_KEY_ENCRYPTION_KEY"),
    "an upstream on the wrong port": (
        [("base/gateway/configmap.yaml", '"http://listings:8082"', '"http://listings:8080"')],
        "production/gateway", "gateway", drift.check_provided, "UPSTREAM_LISTINGS is 'http://listings:8080': listings listens on 8082"),
    "a grace period shorter than the drain": (
        [("base/listings/deployment.yaml", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 20")],
        "production/listings", "listings", drift.check_shutdown, "terminationGracePeriodSeconds is 20"),
    "a longer drain without a longer grace period": (
        [("base/orders/configmap.yaml", 'SHUTDOWN_GRACE_MS: "20000"', 'SHUTDOWN_GRACE_MS: "60000"')],
        "production/orders", "orders", drift.check_shutdown, "need 65 s"),
    "a subcommand the executable does not have": (
        [("base/listings/migrate-job.yaml", 'args: ["migrate"]', 'args: ["upgrade"]')],
        "production/listings", "listings", drift.check_serve_command, "runs `listings upgrade`"),
    "serve replaced by a command": (
        [("base/gateway/deployment.yaml", 'args: ["serve"]', 'command: ["/app/service", "serve"]')],
        "production/gateway", "gateway", drift.check_serve_command, "args are None, not [serve]"),
    "a container that may escalate": (
        [("base/orders/deployment.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true")],
        "production/orders", "orders", drift.check_security, "allowPrivilegeEscalation is not false"),
    "a low UID": (
        [("base/messaging/migrate-job.yaml", "runAsUser: 65532", "runAsUser: 1000")],
        "dev/messaging", "messaging", drift.check_security, "runAsUser 1000 is not a high UID"),
    "no PodDisruptionBudget": (
        [("base/billing/kustomization.yaml", "  - pdb.yaml\n", "")],
        "production/billing", "billing", drift.check_companions, "0 PodDisruptionBudgets select billing's pods"),
    "a PDB that blocks every drain": (
        [("base/listings/pdb.yaml", "maxUnavailable: 1", "minAvailable: 2")],
        "production/listings", "listings", drift.check_companions, "no pod can ever be evicted"),
    "a ServiceAccount that mounts a token": (
        [("base/identity/serviceaccount.yaml", "automountServiceAccountToken: false", "automountServiceAccountToken: true")],
        "production/identity", "identity", drift.check_companions, "does not set automountServiceAccountToken: false"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_copy_is_reported(tmp_path, case):
    edits, label, svc, check, expected = BROKEN[case]
    problems = problems_in(broken_copy(tmp_path, *edits), label, svc, check)
    assert any(expected in p for p in problems), f"{case}: expected a problem containing {expected!r}, got {problems}"


def test_a_migration_job_on_another_image_is_reported(tmp_path):
    copy = broken_copy(tmp_path, ("base/orders/migrate-job.yaml", "image: marketplace/orders", "image: marketplace/orders-legacy"))
    problems = problems_in(copy, "production/orders", "orders", drift.check_migration)
    assert any("image marketplace/orders-legacy" in p and "is not the Deployment's" in p for p in problems), problems


def test_a_missing_migration_job_is_reported(tmp_path):
    copy = broken_copy(tmp_path, ("base/billing/kustomization.yaml", "  - migrate-job.yaml\n", ""))
    assert "production/billing: no Job billing-migrate" in problems_in(copy, "production/billing", "billing", drift.check_migration)


def test_a_missing_per_service_overlay_and_a_stray_deployment_are_reported(tmp_path):
    copy = broken_copy(tmp_path, ("overlays/dev/orders/kustomization.yaml", "  - ../../../base/orders\n",
                                  "  - ../../../base/orders\n  - ../../../base/billing\n"))
    shutil.rmtree(copy / "overlays" / "production" / "messaging")
    problems = drift.check_overlay_set(copy, CODE)
    assert "k8s/overlays/production/messaging: missing (no kustomization.yaml)" in problems, problems
    # (the copy without production/messaging is not rendered further; check the stray Deployment alone)
    (copy / "overlays" / "production" / "messaging").mkdir()
    shutil.copy(K8S / "overlays" / "production" / "messaging" / "kustomization.yaml", copy / "overlays" / "production" / "messaging")
    problems = drift.check_overlay_set(copy, CODE)
    assert any("k8s/overlays/dev/orders deploys ['billing', 'orders'], not just orders" in p for p in problems), problems


def test_a_secret_with_values_is_reported(tmp_path):
    copy = broken_copy(tmp_path)
    (copy / "base" / "listings" / "secret.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: listings-secrets\nstringData:\n  DATABASE_URL: postgres://x:y@db/m\n")
    assert any("Secret listings-secrets holds values" in p for p in drift.check_no_secret_values(copy, CODE))


def test_network_policy_gaps_and_openings_are_reported(tmp_path):
    copy = broken_copy(
        tmp_path,
        # The gateway's egress to listings removed: its rule names listings' pods and port.
        ("base/gateway/networkpolicy.yaml", "port: 8082", "port: 18082"),
        # billing opened to every pod in the namespace.
        ("base/billing/networkpolicy.yaml", "  ingress:\n    - from:\n", "  ingress:\n    - {}\n    - from:\n"),
        # orders loses its DNS egress (and the namespace-wide DNS policy goes to another port).
        ("base/platform/networkpolicy.yaml", "port: 53\n", "port: 5353\n"),
        ("base/orders/networkpolicy.yaml", "port: 53\n", "port: 5353\n"),
    )
    problems = drift.check_network(load_overlay(copy, "production"), CODE)
    assert any("the gateway cannot reach listings:8082" in p for p in problems), problems
    assert any("billing accepts connections from listings on 8083" in p for p in problems), problems
    assert any("Deployment orders cannot resolve names" in p for p in problems), problems
    assert not any("Deployment listings cannot resolve names" in p for p in problems), problems


def test_topics_and_acls_that_drift_from_the_code_are_reported(tmp_path):
    if not (K8S / "examples" / "kafka" / "topics.yaml").exists():
        pytest.skip("no Strimzi example")
    copy = broken_copy(tmp_path, ("examples/kafka/topics.yaml", "name: orders.privacy.v1", "name: orders.privacy.v2"))
    problems = drift.check_topics(copy, CODE)
    assert any("missing: ['orders.privacy.v1'], extra: ['orders.privacy.v2']" in p for p in problems), problems


def test_a_key_the_code_requires_and_the_manifests_do_not_set_is_reported():
    """No key is required unconditionally today; a code model where listings requires one must fail."""
    import copy
    import dataclasses

    code = copy.copy(CODE)
    listings = CODE.executables["listings"]
    reads = dict(listings.reads, LISTINGS_SEARCH_URL=[drift.KeyRead("LISTINGS_SEARCH_URL", "required", None)])
    code.executables = dict(CODE.executables, listings=dataclasses.replace(listings, reads=reads))
    problems = drift.check_provided(load_overlay(K8S, "production/listings"), "listings", code)
    assert "production/listings: Deployment listings does not set LISTINGS_SEARCH_URL: it has no default" in problems, problems


def test_network_policy_gaps_to_dependencies_are_reported(tmp_path):
    copy = broken_copy(
        tmp_path,
        ("base/orders/networkpolicy.yaml", "port: 8081", "port: 18081"),  # identity's JWKS
        ("base/listings/networkpolicy.yaml", "kubernetes.io/metadata.name: monitoring", "kubernetes.io/metadata.name: observability"),
        ("base/messaging/networkpolicy.yaml", "port: 5432", "port: 5433"),  # the Deployment's and the Job's
        # a Kafka listener the policy does not open
        ("base/billing/configmap.yaml", re.compile(r'(KAFKA_BOOTSTRAP_SERVERS: "[^"]*:)\d+'), r"\g<1>9094"),
        ("base/gateway/networkpolicy.yaml", "    - ports:\n        - port: http\n", "    - from:\n        - podSelector: {}\n      ports:\n        - port: http\n"),
    )
    problems = drift.check_network(load_overlay(copy, "production"), CODE)
    for expected in ("orders cannot reach identity's JWKS (identity:8081)",
                     "Prometheus (monitoring/app.kubernetes.io/name=prometheus) cannot scrape listings:8082",
                     "Deployment messaging cannot reach Postgres", "Job messaging-migrate cannot reach Postgres",
                     "billing cannot reach Kafka (no egress to port 9094",
                     "nothing outside the namespace (an ingress controller) can reach the gateway"):
        assert any(expected in p for p in problems), f"{expected!r} not in {problems}"
