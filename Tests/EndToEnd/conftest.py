"""Session fixtures: the whole suite started through deploy/dev/suite.py on free ports in a
temporary directory, the contract registry every response is checked against, and users."""

from __future__ import annotations

import contextlib
import importlib
import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
E2E_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "Tests" / "Contract"))
sys.path.insert(0, str(E2E_DIR))

from openapi_contract import ContractRegistry  # noqa: E402
from e2e_http import Api  # noqa: E402
from e2e_support import (  # noqa: E402
    PASSWORD,
    SERVICES,
    ManagedProcess,
    base_env,
    free_ports,
    http_ok,
    unique_email,
    wait_until,
)

BINARIES = ("gateway", *SERVICES, "devbroker")
READY_TIMEOUT = float(os.environ.get("E2E_READY_TIMEOUT", "90"))

# ------------------------------------------------------------------------ collection


def pytest_configure(config):
    config.addinivalue_line("markers", "contract_coverage: runs last; needs the whole suite to have run")
    config._e2e_deselected = False


def pytest_deselected(items):
    for item in items:
        if Path(str(item.path)).parent == E2E_DIR:
            item.config._e2e_deselected = True


def pytest_collection_modifyitems(session, config, items):
    """Coverage tests go last; they only judge a run of every end-to-end test."""
    ours = [i for i in items if Path(str(i.path)).parent == E2E_DIR]
    final = [i for i in ours if i.get_closest_marker("contract_coverage")]
    items[:] = [i for i in items if i not in final] + final
    collected_files = {Path(str(i.path)).name for i in ours}
    all_files = {p.name for p in E2E_DIR.glob("test_*.py")}
    config._e2e_full_run = (
        collected_files == all_files
        and not any("::" in str(arg) for arg in config.args)
        and not config.getoption("keyword")
        and not config.getoption("markexpr")
    )


def is_full_run(config) -> bool:
    return bool(getattr(config, "_e2e_full_run", False)) and not config._e2e_deselected


# ------------------------------------------------------------------------ the suite


@dataclass
class SuiteHandle:
    suite: object  # deploy/dev/suite.py's Suite
    work_dir: Path
    log_dir: Path
    bin_dir: Path
    ports: dict[str, int]
    gateway_url: str
    superuser_dsn: str

    def service_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def jwks_url(self) -> str:
        return f"{self.service_url('identity')}/.well-known/jwks.json"

    def binary(self, name: str) -> str:
        return str(self.bin_dir / name)

    @property
    def mail_url(self) -> str:
        """The dev mail catcher's HTTP API (Mailpit's: /api/v1/messages ...)."""
        return self.suite.mail_url


def _resolve_bin_dir() -> Path:
    configured = os.environ.get("MARKETPLACE_BIN_DIR")
    candidates = [Path(configured)] if configured else [ROOT / ".build" / "debug", ROOT / ".build" / "release"]
    for candidate in candidates:
        if all(os.access(candidate / name, os.X_OK) for name in BINARIES):
            return candidate.resolve()
    where = configured or " or ".join(str(c) for c in candidates)
    missing = [n for n in BINARIES if not os.access((candidates[0] / n), os.X_OK)]
    pytest.exit(
        f"end-to-end tests need the built executables {', '.join(BINARIES)} in {where} "
        f"(missing in {candidates[0]}: {', '.join(missing)}). Run `swift build` (or set MARKETPLACE_BIN_DIR).",
        returncode=2,
    )


def _import_suite_class():
    # E2E_SUITE_PY points at another launcher with the same API (used to test this harness).
    launcher = Path(os.environ.get("E2E_SUITE_PY") or ROOT / "deploy" / "dev" / "suite.py")
    if not launcher.exists():
        pytest.exit(f"the launcher {launcher} does not exist yet", returncode=2)
    sys.path.insert(0, str(launcher.parent))  # the launcher may import its neighbours
    try:
        module = importlib.import_module(launcher.stem)
        return module.Suite
    except Exception as error:  # noqa: BLE001
        pytest.exit(f"cannot import Suite from {launcher}: {error!r}", returncode=2)


def _value(obj, name):
    value = getattr(obj, name)
    return value() if callable(value) else value


@pytest.fixture(scope="session")
def work_dir(request) -> Path:
    path = Path(tempfile.mkdtemp(prefix="marketplace-e2e-"))
    path.chmod(0o755)  # the postgres user must reach its data directory below this one
    yield path
    keep = os.environ.get("E2E_KEEP_DATA") == "1" or request.session.testsfailed
    if keep:
        sys.stderr.write(f"\nend-to-end data and logs kept in {path}\n")
    else:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def launched_suite(work_dir: Path, keep_data: Callable[[], bool]) -> Iterator[SuiteHandle]:
    """A whole suite on throwaway data under `work_dir` (its own Postgres, broker, mail catcher
    and the six services on free ports), ready when this yields; stopped, and its data removed
    unless `keep_data()`, on the way out."""
    bin_dir = _resolve_bin_dir()
    os.environ["MARKETPLACE_BIN_DIR"] = str(bin_dir)  # the launcher reads it
    Suite = _import_suite_class()
    pg_port, gateway_port, *service_ports = free_ports(2 + len(SERVICES))
    ports = dict(zip(SERVICES, service_ports), gateway=gateway_port, postgres=pg_port)
    log_dir = work_dir / "logs"
    log_dir.mkdir()
    suite = Suite(
        ROOT,
        work_dir / "data",
        pg_port=pg_port,
        gateway_port=gateway_port,
        service_ports={name: ports[name] for name in SERVICES},
        log_dir=log_dir,
        mail_ports={"smtp": 0, "http": 0},  # the mail catcher picks free ports
        # The whole suite runs from one address; the auth-route limit itself is tested on a
        # gateway of its own (test_upstream_failures.py), with the defaults.
        service_env={
            "gateway": {"RATE_LIMIT_AUTH_BURST": "10000", "RATE_LIMIT_AUTH_PER_MINUTE": "60000"},
            # A short reuse grace window keeps the refresh-reuse tests quick (default 10 s).
            "identity": {"IDENTITY_REFRESH_REUSE_GRACE_SECONDS": "1",
                         # Every test logs in from 127.0.0.1: the per-address lock is tested on real Postgres
                         # (Tests/IntegrationTests), the per-account lock in test_login_throttling.py.
                         "IDENTITY_LOGIN_ADDRESS_FAILURES": "100000",
                         # Likewise for reset and verification requests per address; the limit is
                         # exercised with addresses of its own through X-Forwarded-For.
                         "IDENTITY_RECOVERY_ADDRESS_REQUESTS": "100"},
        },
    )
    try:
        for step in ("start_postgres", "start_broker", "start_mail", "migrate_all", "start_all"):
            try:
                getattr(suite, step)()
            except Exception as error:  # noqa: BLE001
                raise RuntimeError(f"Suite.{step}() failed: {error!r}; logs in {log_dir}") from error
        handle = SuiteHandle(
            suite=suite,
            work_dir=work_dir,
            log_dir=log_dir,
            bin_dir=bin_dir,
            ports=ports,
            gateway_url=str(_value(suite, "gateway_url")).rstrip("/"),
            superuser_dsn=str(_value(suite, "superuser_dsn")),
        )
        for name in (*SERVICES, "gateway"):
            url = handle.gateway_url if name == "gateway" else handle.service_url(name)
            wait_until(
                lambda: http_ok(f"{url}/health/ready"),
                timeout=READY_TIMEOUT,
                interval=0.25,
                describe=f"{name} to answer 200 on {url}/health/ready (logs in {log_dir})",
            )
        yield handle
    finally:
        suite.stop()
        # When the postgres user cannot reach work_dir (a TMPDIR under a 0700 directory) the
        # launcher keeps the cluster outside it; it goes with work_dir (see the work_dir fixture).
        if not keep_data() and hasattr(suite, "remove_data_dir"):
            suite.remove_data_dir()


@pytest.fixture(scope="session")
def suite(work_dir, request) -> Iterator[SuiteHandle]:
    with launched_suite(work_dir, lambda: os.environ.get("E2E_KEEP_DATA") == "1" or bool(request.session.testsfailed)) as handle:
        yield handle


# ------------------------------------------------------------------------ clients


@pytest.fixture(scope="session")
def contracts() -> ContractRegistry:
    return ContractRegistry(ROOT / "Services")


@pytest.fixture(scope="session")
def gateway(suite, contracts) -> Api:
    return Api(suite.gateway_url, "gateway", contracts, wait_out_rate_limits=True)


@pytest.fixture(scope="session")
def direct(suite, contracts) -> dict[str, Api]:
    """Clients for each service's own port (bypassing the gateway)."""
    return {name: Api(suite.service_url(name), name, contracts) for name in SERVICES}


@pytest.fixture(scope="module")
def jwks(gateway) -> dict:
    # Per module: test_key_rotation.py rotates the signing key, later modules must see the new set.
    return gateway.get("/.well-known/jwks.json").expect(200).json()


# ------------------------------------------------------------------------ users


@dataclass
class E2EUser:
    gateway: Api
    email: str
    password: str
    display_name: str
    role: str
    user: dict
    registered_at: float
    tokens: dict = field(default_factory=dict)
    tokens_at: float = 0.0

    @property
    def id(self) -> str:
        return self.user["id"]

    def login(self) -> dict:
        response = self.gateway.post("/v1/auth/login", json={"email": self.email, "password": self.password})
        self.tokens = response.expect(200).json()
        self.tokens_at = time.monotonic()
        return self.tokens

    @property
    def access_token(self) -> str:
        """A usable access token (logs in again when the current one is near its 15 minutes)."""
        if not self.tokens or time.monotonic() - self.tokens_at > 600:
            self.login()
        return self.tokens["accessToken"]


@pytest.fixture(scope="session")
def register(gateway) -> Callable[..., E2EUser]:
    def register(role: str = "buyer", *, display_name: str | None = None, password: str = PASSWORD) -> E2EUser:
        email = unique_email(role)
        display_name = display_name or f"E2E {role.title()} {secrets.token_hex(3)}"
        body = {"email": email, "password": password, "displayName": display_name, "role": role}
        if role == "vendor":
            body["businessProfile"] = {"businessName": f"{display_name} Kennels", "location": {"city": "York", "country": "GB"}}
        response = gateway.post("/v1/auth/register", json=body)
        registered_at = time.monotonic()
        user = response.expect(201).json()
        return E2EUser(gateway, email, password, display_name, role, user, registered_at)

    return register


@pytest.fixture(scope="session")
def buyer(register) -> E2EUser:
    user = register("buyer")
    user.login()
    return user


@pytest.fixture(scope="session")
def vendor(register) -> E2EUser:
    user = register("vendor")
    user.login()
    return user


# ------------------------------------------------------------------------ extra processes


@pytest.fixture()
def spawn(suite):
    """Starts extra service/gateway processes (own ports, own env); stops them afterwards."""
    started: list[ManagedProcess] = []

    def spawn(binary: str, env: dict[str, str], label: str) -> ManagedProcess:
        process = ManagedProcess(
            label, [suite.binary(binary), "serve"], {**base_env(), **env}, suite.log_dir / f"extra-{label}.log"
        )
        started.append(process)
        return process

    yield spawn
    for process in started:
        process.stop()

