#!/usr/bin/env bash
# `make test`: installs what is missing, checks the deployment files (deploy/lint/lint_deploy.py,
# `make lint-deploy`: the rendered k8s overlays validated and scanned, and the Dockerfile), builds
# the package with its tests, starts a throwaway Postgres + dev broker (deploy/dev/suite.py infra),
# runs `swift test` with that env, stops them, runs the end-to-end tests (pytest Tests/EndToEnd,
# which start their own suite through suite.py; Tests/Contract's static checks run in the same
# pytest), and ends with a summary. Every phase always runs; exit 1 if any step failed.
#
# Swift integration tests read (see suite.py): TEST_DATABASE_URL (superuser, db marketplace),
# TEST_DATABASE_ADMIN_URL (superuser, db postgres), TEST_DATABASE_URL_<SERVICE> (per-service
# role), TEST_POSTGRES_HOST, TEST_POSTGRES_PORT, KAFKA_BOOTSTRAP_SERVERS (= TEST_KAFKA_BOOTSTRAP_SERVERS).
# The e2e tests get MARKETPLACE_BIN_DIR (built executables) and MARKETPLACE_LOG_DIR (keep logs).
#
# Knobs (env): LINT_TIMEOUT (10m), BUILD_TIMEOUT (40m), SWIFT_TEST_TIMEOUT (20m), E2E_TIMEOUT (20m),
#   SWIFT_TEST_ARGS (e.g. "--filter OutboxTests"), PYTEST_ARGS (e.g. "-k smoke -x"),
#   TEST_LOG_DIR (default .data/test-logs/<UTC timestamp>), PYTHON (python3).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
PYTHON=${PYTHON:-python3}
SUITE="$REPO/deploy/dev/suite.py"
LINT_TIMEOUT=${LINT_TIMEOUT:-10m}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-40m}
SWIFT_TEST_TIMEOUT=${SWIFT_TEST_TIMEOUT:-20m}
E2E_TIMEOUT=${E2E_TIMEOUT:-20m}
LOGS=${TEST_LOG_DIR:-$REPO/.data/test-logs/$(date -u +%Y%m%dT%H%M%SZ)}

WORK=""
INFRA_PID=""

step() { printf '\n==> %s\n' "$*"; }
note() { printf 'run-tests: %s\n' "$*" >&2; }

stop_infra() {
  [[ -n "$INFRA_PID" ]] || return 0
  if kill -0 "$INFRA_PID" 2>/dev/null; then
    kill -TERM "$INFRA_PID" 2>/dev/null
    for ((i = 0; i < 600; i++)); do kill -0 "$INFRA_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$INFRA_PID" 2>/dev/null; then
      note "infra (pid $INFRA_PID) did not stop within 60s: SIGKILL"
      kill -KILL "$INFRA_PID" 2>/dev/null
    fi
  fi
  wait "$INFRA_PID" 2>/dev/null
  INFRA_PID=""
  # If the launcher died without cleaning up, its pid files and postmaster.pid still say what
  # to stop (suite.py stop only touches processes it recorded in that data dir).
  if [[ -n "$WORK" && -f "$WORK/infra/postgres/postmaster.pid" ]]; then
    "$PYTHON" "$SUITE" stop --data-dir "$WORK/infra" || note "could not stop infra leftovers"
  fi
}

cleanup() {
  stop_infra
  if [[ -n "$WORK" ]]; then
    # A cluster suite.py kept outside the data dir (the postgres user could not reach it) goes too.
    if [[ -L "$WORK/infra/postgres" ]]; then
      "$PYTHON" "$SUITE" clean-data --data-dir "$WORK/infra" || note "could not remove the infra cluster"
    fi
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'note "interrupted"; exit 130' INT
trap 'note "terminated"; exit 143' TERM

describe_rc() {  # describe_rc RC TIMEOUT
  case "$1" in
    0) echo "ok" ;;
    124 | 137) echo "FAILED (timed out after $2)" ;;
    *) echo "FAILED (exit $1)" ;;
  esac
}

# apt-get that waits (up to 15 min) while another install holds Debian's package locks, as
# suite.py ensure does; apt 2.x waits for dpkg's locks itself but not for `update`'s lists lock.
apt_get() {
  local out rc i
  for ((i = 0; i < 180; i++)); do
    out=$(DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 "$@" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    [[ $rc -eq 0 ]] && return 0
    grep -qE "Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock" <<<"$out" || return "$rc"
    ((i == 0)) && note "waiting for the Debian package lock held by another install …"
    sleep 5
  done
  return 1
}

# ---------------------------------------------------------------- prerequisites
step "prerequisites"
if ! command -v "$PYTHON" >/dev/null; then
  note "installing python3"
  apt_get update -q && apt_get install -y -q python3 python3-pip \
    || { note "cannot install python3"; exit 1; }
fi
if ! command -v swift >/dev/null; then
  note "swift is not on PATH (a Swift 6.3 toolchain is required)"
  exit 1
fi
# Debian packages, and the pip packages the Python tests import (suite.py TEST_PIP_PACKAGES).
"$PYTHON" "$SUITE" ensure --test || { note "installing packages failed"; exit 1; }
mkdir -p "$LOGS"
echo "logs: $LOGS"

# ---------------------------------------------------------------- deployment files
# First: it needs no build, and its failure must not hide (or wait for) the tests'.
step "lint-deploy: k8s overlays and deploy/Dockerfile (timeout $LINT_TIMEOUT)"
timeout --kill-after=30s "$LINT_TIMEOUT" "$PYTHON" deploy/lint/lint_deploy.py 2>&1 | tee "$LOGS/lint-deploy.log"
LINT_RC=${PIPESTATUS[0]}

# ---------------------------------------------------------------- build
step "swift build --build-tests (timeout $BUILD_TIMEOUT)"
timeout --kill-after=30s "$BUILD_TIMEOUT" swift build --build-tests 2>&1 | tee "$LOGS/build.log"
BUILD_RC=${PIPESTATUS[0]}
EXE_RC=$BUILD_RC
if [[ $BUILD_RC -ne 0 ]]; then
  # The tests did not compile; the executables may, and the e2e tests only need those.
  step "swift build (executables only, for the e2e tests)"
  timeout --kill-after=30s "$BUILD_TIMEOUT" swift build 2>&1 | tee "$LOGS/build-executables.log"
  EXE_RC=${PIPESTATUS[0]}
fi
BIN_DIR=$(swift build --show-bin-path 2>/dev/null || echo "$REPO/.build/debug")
echo "binaries: $BIN_DIR"

# ---------------------------------------------------------------- swift test
SWIFT_RC=0
if [[ $BUILD_RC -ne 0 ]]; then
  SWIFT_RC=$BUILD_RC
  echo "not running swift test: the build failed" | tee "$LOGS/swift-test.log"
else
  step "throwaway Postgres + dev broker"
  WORK=$(mktemp -d /tmp/marketplace-test.XXXXXX)
  chmod 755 "$WORK"  # the cluster can then stay in it (else suite.py keeps it outside, removed with it)
  "$PYTHON" "$SUITE" infra --data-dir "$WORK/infra" --env-file "$WORK/infra.env" \
    --bin-dir "$BIN_DIR" --log-dir "$LOGS/infra" >"$LOGS/infra-launcher.log" 2>&1 &
  INFRA_PID=$!
  for ((i = 0; i < 1200; i++)); do  # 120 s
    [[ -s "$WORK/infra.env" ]] && break
    kill -0 "$INFRA_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [[ ! -s "$WORK/infra.env" ]]; then
    note "infra did not come up; $LOGS/infra-launcher.log:"
    tail -n 40 "$LOGS/infra-launcher.log" >&2
    SWIFT_RC=1
    echo "not running swift test: infra did not start" >"$LOGS/swift-test.log"
  else
    cat "$LOGS/infra-launcher.log"
    step "swift test --skip-build ${SWIFT_TEST_ARGS:-} (timeout $SWIFT_TEST_TIMEOUT)"
    # shellcheck disable=SC1091,SC2086
    (source "$WORK/infra.env" && exec timeout --kill-after=30s "$SWIFT_TEST_TIMEOUT" \
      swift test --skip-build ${SWIFT_TEST_ARGS:-}) 2>&1 | tee "$LOGS/swift-test.log"
    SWIFT_RC=${PIPESTATUS[0]}
  fi
  stop_infra
fi

# ---------------------------------------------------------------- end-to-end (+ contract)
E2E_RC=0
PY_TEST_DIRS=(Tests/EndToEnd)
[[ -d Tests/Contract ]] && PY_TEST_DIRS=(Tests/Contract Tests/EndToEnd)  # static, fast, same run
# The launcher's own tests (real Postgres, stand-in executables): make run and these tests rely on it.
PY_TEST_DIRS+=(deploy/test/selftest_suite.py)
PY_TEST_DIRS+=(deploy/test/test_bench_report.py)  # the README benchmark table generator
if [[ ! -d Tests/EndToEnd ]]; then
  E2E_RC=1
  echo "Tests/EndToEnd does not exist" | tee "$LOGS/e2e.log"
elif [[ $EXE_RC -ne 0 ]]; then
  E2E_RC=$EXE_RC
  echo "not running the e2e tests: the executables did not build" | tee "$LOGS/e2e.log"
else
  step "pytest ${PY_TEST_DIRS[*]} -q ${PYTEST_ARGS:-} (timeout $E2E_TIMEOUT)"
  # shellcheck disable=SC2086
  # SIGINT on timeout: pytest then runs its fixture finalizers, which stop the suite it started.
  MARKETPLACE_BIN_DIR="$BIN_DIR" MARKETPLACE_LOG_DIR="$LOGS/e2e" \
    timeout -s INT --kill-after=60s "$E2E_TIMEOUT" "$PYTHON" -m pytest "${PY_TEST_DIRS[@]}" -q \
    -p no:cacheprovider ${PYTEST_ARGS:-} 2>&1 | tee "$LOGS/e2e.log"
  E2E_RC=${PIPESTATUS[0]}
fi

# ---------------------------------------------------------------- summary
step "summary"
echo "lint-deploy: $(describe_rc "$LINT_RC" "$LINT_TIMEOUT")"
if [[ $LINT_RC -ne 0 ]]; then
  grep -E "^lint-deploy: (FAIL|cannot run)" "$LOGS/lint-deploy.log" | head -n 5 | cut -c1-300 | sed 's/^/    /'
fi
echo "build:      $(describe_rc "$BUILD_RC" "$BUILD_TIMEOUT")"
echo "swift test: $(describe_rc "$SWIFT_RC" "$SWIFT_TEST_TIMEOUT")"
{ grep -E "Executed [0-9]+ tests?" "$LOGS/swift-test.log" | tail -n 1
  grep -E "Test run with [0-9]+ tests?" "$LOGS/swift-test.log" | tail -n 1
  [[ $SWIFT_RC -ne 0 ]] && grep -E "^(error|fatal error):|: error:|✘ Test .* failed" \
    "$LOGS/swift-test.log" | grep -v "Test run with" | tail -n 5
} | sed -E 's/\x1b\[[0-9;]*m//g; s/^[[:space:]]*/    /'
echo "pytest (${PY_TEST_DIRS[*]}): $(describe_rc "$E2E_RC" "$E2E_TIMEOUT")"
grep -E "([0-9]+ (passed|failed|errors?|skipped))|no tests ran|Tests/EndToEnd does not|not running" \
  "$LOGS/e2e.log" | tail -n 1 | sed -E 's/\x1b\[[0-9;]*m//g; s/^[[:space:]]*/    /'
echo "logs: $LOGS"

if [[ $LINT_RC -ne 0 || $BUILD_RC -ne 0 || $SWIFT_RC -ne 0 || $E2E_RC -ne 0 ]]; then
  exit 1
fi
exit 0
