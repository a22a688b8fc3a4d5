"""Installs the DRF comparison's Python packages into a directory of their own (pip --target,
not the system Python) and gives the environment to run it with. Stdlib only."""
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
REQUIREMENTS = HERE / "requirements.txt"


def tools_dir() -> Path:
    return ROOT / ".data" / "tools" / f"drf-bench-py{sys.version_info.major}{sys.version_info.minor}"


def ensure_tools() -> Path:
    """The install directory; installs (once per requirements.txt content) when needed."""
    target = tools_dir()
    marker = target / ".installed"
    wanted = REQUIREMENTS.read_text()
    if marker.exists() and marker.read_text() == wanted:
        return target
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--no-warn-conflicts", "--no-warn-script-location", "--upgrade", "--target", str(target),
                    "-r", str(REQUIREMENTS)], check=True, timeout=900)
    marker.write_text(wanted)
    return target


def drf_env(database_url: str, *, bind: str | None = None, schema: str = "listings") -> dict[str, str]:
    """Environment for gunicorn, explain.py and Django: the app and its packages on PYTHONPATH."""
    env = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{ensure_tools()}",
               DJANGO_SETTINGS_MODULE="benchsite.settings", DRF_DATABASE_URL=database_url, DRF_SCHEMA=schema)
    if bind:
        env["DRF_BIND"] = bind
    return env


if __name__ == "__main__":
    print(ensure_tools())
