#!/usr/bin/env python3
"""`make lint-deploy`: the Kubernetes manifests and the Dockerfile, checked offline.

1. Every overlay (`k8s/overlays/*` and `k8s/overlays/*/*`, each a directory with a
   kustomization file) is rendered with `kubectl kustomize`. The overlays every service needs
   (`dev`, `production`, and `<env>/<service>` for each executable in Package.swift but the dev
   broker) must exist: a missing one fails, it is not skipped.
2. Every rendered resource is validated strictly (unknown fields rejected) against the
   Kubernetes JSON schemas bundled with `kubernetes-validate`, for KUBERNETES_VERSIONS. A kind
   without a schema fails (a custom resource has no place in an overlay). The examples under
   `k8s/examples` (Strimzi, CloudNativePG, Ingress: applied by hand, not by the overlays) are
   validated the same way, except that their custom resources, which no bundled schema knows,
   are left to checkov.
3. `checkov` scans each rendered overlay and each example on its own (framework kubernetes:
   an overlay is applied alone, so its graph checks, such as "a NetworkPolicy selects every
   pod", must not see another overlay's resources) and `deploy/Dockerfile` (framework
   dockerfile). Any failed check fails, and so does a skip without a reason: skips belong
   inline, next to what they excuse, with a reason (`checkov.io/skip1: CKV_K8S_35=why` on the
   resource, `# checkov:skip=CKV_DOCKER_2:why` in the Dockerfile). checkov's runners are called
   in this process with an empty filter: no skip list is passed, and neither `CKV_*` variables
   nor a `.checkov.yaml` can add one.

The tools are installed on first use, pinned (TOOLS), into their own directory
(`$LINT_DEPLOY_TOOLS_DIR`, default `.data/tools/lint-deploy-py<version>`) with `pip
--target`: checkov brings ~80 distributions, some pinned older than what the test suite uses,
so they stay out of the interpreter's site-packages. A new checkov adds checks; bump the pin
deliberately. kubectl (with kustomize v5) must be installed already; it is not installed here.

Quiet on success (one line); on failure, one line per finding naming the overlay, the
resource and the check, and exit 1. Exit 2 when the tools are missing or cannot be installed.

    python3 deploy/lint/lint_deploy.py [--kubernetes-version 1.30,1.32] [--root DIR] [--no-install] [-v]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # where the tools are cached
SOURCE = REPO  # what is linted (--root)
K8S = SOURCE / "k8s"
DOCKERFILE = SOURCE / "deploy" / "Dockerfile"
ENVIRONMENTS = ("dev", "production")
# The Kubernetes releases the manifests are validated against: the oldest k8s/README.md names
# (1.30) and the kubectl on our machines (1.32, whose kustomize renders them). Move them with the
# clusters we deploy to.
KUBERNETES_VERSIONS = ("1.30", "1.32")
TOOLS = {"kubernetes-validate": "1.37.0", "checkov": "3.3.30"}
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SKIP_WITHOUT_REASON = "No comment provided"  # what checkov records for a bare skip


class SetupError(RuntimeError):
    """A tool is missing or cannot be installed (exit 2)."""


def say(message: str) -> None:
    print(f"lint-deploy: {message}", flush=True)


def rel(path: Path | str) -> str:
    try:
        return str(Path(path).resolve().relative_to(SOURCE))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- tools


def tools_dir() -> Path:
    configured = os.environ.get("LINT_DEPLOY_TOOLS_DIR")
    version = f"py{sys.version_info.major}{sys.version_info.minor}"
    return Path(configured) if configured else REPO / ".data" / "tools" / f"lint-deploy-{version}"


def ensure_tools(install: bool) -> Path:
    """The pinned tools in their own directory; installs them there when missing."""
    target = tools_dir()
    wanted = " ".join(f"{name}=={version}" for name, version in sorted(TOOLS.items()))
    marker = target / ".installed"
    if marker.exists() and marker.read_text().strip() == wanted:
        return target
    if not install:
        raise SetupError(f"{wanted} are not installed in {target} (run without --no-install)")
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        if os.geteuid() != 0:
            raise SetupError(f"pip is missing for {sys.executable}; install python3-pip")
        say("installing python3-pip")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "python3-pip"]):
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
            if done.returncode != 0:
                raise SetupError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
    say(f"installing {wanted} into {rel(target)} (first run only)")
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # --target keeps checkov's dependencies out of site-packages (and PEP 668 does not apply).
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-warn-conflicts", "--no-warn-script-location", "--target", str(target),
         *wanted.split()],
        capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        raise SetupError(f"pip install {wanted} failed:\n{done.stdout}{done.stderr}")
    marker.write_text(wanted + "\n")
    say(f"installed in {time.monotonic() - started:.0f}s")
    return target


def check_kubectl() -> None:
    if shutil.which("kubectl") is None:
        raise SetupError("kubectl is not on PATH: it must be installed with kustomize v5 (kubectl "
                         "kustomize renders the overlays). Do not apt-get install kubernetes-client.")
    done = subprocess.run(["kubectl", "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60)
    try:
        kustomize = json.loads(done.stdout).get("kustomizeVersion", "")
    except ValueError:
        kustomize = ""
    match = re.match(r"v?(\d+)\.", kustomize)
    if not match or int(match.group(1)) < 5:
        raise SetupError(f"kubectl's kustomize must be v5 or later, found {kustomize or 'none'!r} "
                         f"({(done.stdout + done.stderr).strip()[:200]})")


# ----------------------------------------------------------------------------- what to lint


def executables() -> list[str]:
    """The suite's executables (Package.swift products) that are deployed: all but the dev broker."""
    text = (SOURCE / "Package.swift").read_text()
    names = re.findall(r'\.executable\(\s*name:\s*"([^"]+)"', text)
    if not names:
        raise SetupError("no .executable products found in Package.swift")
    return [name for name in names if name != "devbroker"]


def is_kustomization_dir(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in KUSTOMIZATION_FILES)


def overlays() -> list[Path]:
    root = K8S / "overlays"
    if not root.is_dir():
        return []
    found = [p for p in sorted(root.iterdir()) if is_kustomization_dir(p)]
    found += [p for env in sorted(root.iterdir()) if env.is_dir() for p in sorted(env.iterdir()) if is_kustomization_dir(p)]
    return sorted(found)


def render(directory: Path) -> tuple[str | None, str]:
    done = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip()
        return None, re.sub(r'^E\d{4} [\d:.]+\s+\d+ \S+\] "command failed" err=', "", message)
    return done.stdout, ""


def describe(resource: dict) -> str:
    meta = resource.get("metadata") or {}
    name = meta.get("name", "?")
    namespace = meta.get("namespace")
    return f"{resource.get('kind', '?')}/{namespace + '/' if namespace else ''}{name}"


# ----------------------------------------------------------------------------- the run


class Lint:
    def __init__(self, k8s_versions: list[str], verbose: bool):
        self.k8s_versions = k8s_versions
        self.verbose = verbose
        self.failures: list[tuple[str, str]] = []  # (where, what)
        self.notes: list[str] = []
        self.custom_resources: dict[str, set[str]] = {}  # example file -> kinds without a bundled schema

    def fail(self, where: str, what: str) -> None:
        if (where, what) not in self.failures:
            self.failures.append((where, what))

    def report_failures(self) -> None:
        """One line per problem; the overlays that share it (a base renders into several) on it."""
        grouped: dict[str, list[str]] = {}
        for where, what in self.failures:
            grouped.setdefault(what, []).append(where)
        for what, wheres in grouped.items():
            say(f"FAIL {', '.join(sorted(wheres))}: {what}")

    def validate(self, where: str, resources: list[dict], *, custom_resources_allowed: bool) -> int:
        import kubernetes_validate.utils as kv  # installed by ensure_tools

        if not hasattr(kv.schema_contents, "cache_info"):  # it re-reads the schema files per resource
            kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)
        checked = 0
        for resource in resources:
            if not isinstance(resource, dict) or "apiVersion" not in resource or "kind" not in resource:
                self.fail(where, f"a document that is not a Kubernetes resource: {str(resource)[:120]}")
                continue
            for version in self.k8s_versions:
                try:
                    kv.validate(resource, version, strict=True)
                    checked += 1
                except kv.ValidationError as error:
                    path = ".".join(str(p) for p in error.path) or "(top level)"
                    self.fail(where, f"{describe(resource)} is not valid Kubernetes {version}: {path}: {error.message}")
                except kv.SchemaNotFoundError:
                    if custom_resources_allowed:
                        self.custom_resources.setdefault(where, set()).add(f"{resource['kind']} ({resource['apiVersion']})")
                    else:
                        self.fail(where, f"{describe(resource)}: Kubernetes {version} has no {resource['kind']} in "
                                         f"{resource['apiVersion']} (a typo, a removed API, or a custom resource)")
                except kv.VersionNotSupportedError:
                    raise SetupError(f"kubernetes-validate {TOOLS['kubernetes-validate']} has no schemas for Kubernetes {version}")
        return checked

    def run(self, install: bool) -> int:
        started = time.monotonic()
        check_kubectl()
        tools = ensure_tools(install)
        sys.path.insert(0, str(tools))
        import yaml  # from the tools directory (a kubernetes-validate dependency) or site-packages

        services = executables()
        if not K8S.is_dir():
            self.fail("k8s/", "does not exist: no manifests to lint")
        found = overlays()
        expected = [K8S / "overlays" / env for env in ENVIRONMENTS]
        expected += [K8S / "overlays" / env / svc for env in ENVIRONMENTS for svc in services]
        for path in expected:
            if path not in found:
                self.fail(rel(path), "missing overlay (no kustomization file): every environment has one for all "
                                     "services and one per service")
        if not DOCKERFILE.is_file():
            self.fail(rel(DOCKERFILE), "does not exist")

        scan = Path(tempfile.mkdtemp(prefix="lint-deploy-"))
        try:
            # What checkov scans, one unit at a time: each overlay is applied on its own, so its
            # graph checks (a NetworkPolicy selecting every pod, ...) must not see another's resources.
            units: list[tuple[str, str, Path]] = []  # (framework, what it stands for, directory)
            resource_count = 0
            for overlay in found:
                where = rel(overlay)
                text, error = render(overlay)
                if text is None:
                    self.fail(where, f"kubectl kustomize failed: {error}")
                    continue
                resources = self.parse(where, text, yaml)
                if resources is None:
                    continue
                if not resources:
                    self.fail(where, "renders no resources")
                    continue
                resource_count += len(resources)
                self.validate(where, resources, custom_resources_allowed=False)
                units.append(("kubernetes", where, self.unit_dir(scan, len(units), "rendered.yaml", text)))

            example_count = 0
            for where, text in self.examples():
                resources = self.parse(where, text, yaml)
                if resources is None:
                    continue
                example_count += len(resources)
                self.validate(where, resources, custom_resources_allowed=True)
                units.append(("kubernetes", where, self.unit_dir(scan, len(units), "example.yaml", text)))

            if DOCKERFILE.is_file():
                units.append(("dockerfile", rel(DOCKERFILE), self.unit_dir(scan, len(units), "Dockerfile", DOCKERFILE.read_text())))
            checkov = self.checkov(units)
        finally:
            shutil.rmtree(scan, ignore_errors=True)

        elapsed = time.monotonic() - started
        for where, kinds in sorted(self.custom_resources.items()):
            self.notes.append(f"{where}: custom resources, no bundled schema, scanned by checkov only: {', '.join(sorted(kinds))}")
        if self.verbose:
            for note in self.notes:
                say(note)
        if self.failures:
            self.report_failures()
            say(f"{len(self.failures)} problem(s) in {elapsed:.1f}s (above); the manifests are in k8s/, "
                "the Dockerfile in deploy/")
            return 1
        say(f"ok: {len(found)} overlays ({resource_count} resources) and {example_count} example resources valid "
            f"against Kubernetes {', '.join(self.k8s_versions)} (strict); checkov {checkov}; {elapsed:.1f}s")
        return 0

    def parse(self, where: str, text: str, yaml) -> list | None:
        try:
            return [r for r in yaml.safe_load_all(text) if r is not None]
        except yaml.YAMLError as error:
            self.fail(where, f"does not parse as YAML: {error}")
            return None

    @staticmethod
    def unit_dir(scan: Path, index: int, name: str, text: str) -> Path:
        directory = scan / f"unit{index:03d}"
        directory.mkdir()
        (directory / name).write_text(text)
        return directory

    def examples(self) -> list[tuple[str, str]]:
        """(where, YAML text): each kustomization under k8s/examples rendered, and every other YAML file."""
        root = K8S / "examples"
        if not root.is_dir():
            self.notes.append("k8s/examples does not exist: no examples linted")
            return []
        sources: list[tuple[str, str]] = []
        rendered: list[Path] = []
        for directory in sorted([root, *[p for p in root.rglob("*") if p.is_dir()]]):
            if any(directory.is_relative_to(r) for r in rendered) or not is_kustomization_dir(directory):
                continue
            rendered.append(directory)
            text, error = render(directory)
            if text is None:
                self.fail(rel(directory), f"kubectl kustomize failed: {error}")
            else:
                sources.append((rel(directory), text))
        for path in sorted(root.rglob("*")):
            if (path.is_file() and path.suffix in (".yaml", ".yml") and path.name not in KUSTOMIZATION_FILES
                    and not any(path.is_relative_to(r) for r in rendered)):
                sources.append((rel(path), path.read_text()))
        return sources

    def checkov(self, units: list[tuple[str, str, Path]]) -> str:
        """checkov's kubernetes and dockerfile runners, in this process (its import is most of its time)."""
        # Only inline skips count: checkov's CLI also takes skip lists from CKV_* variables and a
        # .checkov.yaml; its runners are called here with an empty filter instead.
        for key in [k for k in os.environ if k.startswith(("CKV_", "BC_", "CHECKOV_", "PRISMA_"))]:
            del os.environ[key]
        os.environ["CKV_SKIP_PACKAGE_UPDATE_CHECK"] = "true"
        logging.getLogger().setLevel(logging.ERROR)
        from checkov.dockerfile.runner import Runner as DockerfileRunner
        from checkov.kubernetes.runner import Runner as KubernetesRunner
        from checkov.runner_filter import RunnerFilter

        runners = {"kubernetes": KubernetesRunner, "dockerfile": DockerfileRunner}
        totals = {"passed": 0, "failed": 0, "skipped": 0}
        for framework, where, directory in units:
            try:
                report = runners[framework]().run(root_folder=str(directory), runner_filter=RunnerFilter(framework=[framework]))
            except Exception as error:  # noqa: BLE001 - reported as a failure of this unit
                self.fail(where, f"checkov ({framework}) crashed: {error!r}")
                continue
            summary = report.get_summary()
            for key in totals:
                totals[key] += int(summary.get(key, 0))
            if not summary.get("resource_count"):
                self.fail(where, f"checkov ({framework}) found nothing to check in it")
            for path in report.parsing_errors:
                self.fail(where, f"checkov ({framework}) could not parse it")
            for record in report.failed_checks:
                self.fail(where, f"{subject(record, framework)}{record.check_id} {record.check_name}")
            for record in report.skipped_checks:
                reason = ((record.check_result or {}).get("suppress_comment") or "").strip()
                if not reason or reason == SKIP_WITHOUT_REASON:
                    self.fail(where, f"{subject(record, framework)}{record.check_id} is skipped without a reason "
                                     "(write `checkov.io/skipN: CKV_...=why` / `# checkov:skip=CKV_...:why`)")
        return f"{totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped inline with reasons"


def subject(record, framework: str) -> str:
    if framework == "dockerfile":
        lines = record.file_line_range or []
        return f"line {lines[0]}: " if lines else ""
    return f"{record.resource}: "  # Kind.namespace.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubernetes-version", default=os.environ.get("LINT_KUBERNETES_VERSIONS", ",".join(KUBERNETES_VERSIONS)),
                        help="comma-separated Kubernetes versions to validate against (default %(default)s)")
    parser.add_argument("--root", type=Path, default=REPO,
                        help="repository root holding Package.swift, k8s/ and deploy/Dockerfile (default: this checkout)")
    parser.add_argument("--no-install", action="store_true", help="fail instead of installing the tools")
    parser.add_argument("-v", "--verbose", action="store_true", help="also list what was not schema-validated and why")
    args = parser.parse_args(argv)
    versions = [v.strip() for v in args.kubernetes_version.split(",") if v.strip()]
    global SOURCE, K8S, DOCKERFILE
    SOURCE = args.root.resolve()
    K8S, DOCKERFILE = SOURCE / "k8s", SOURCE / "deploy" / "Dockerfile"
    try:
        return Lint(versions, args.verbose).run(install=not args.no_install)
    except SetupError as error:
        say(f"cannot run: {error}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
