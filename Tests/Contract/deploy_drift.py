"""What the code reads and serves, and what the Kubernetes manifests give it: the two sides of
Tests/Contract/test_deploy_manifests.py (and the probe paths Tests/EndToEnd/test_deploy_probes.py
requests).

The code side is read from the Swift sources, not from a list kept by hand:

- the executables are Package.swift's products (the dev broker is not deployed);
- the configuration keys an executable reads are the string literals passed to `ConfigReader`
  (`.string("K")`, `.int("K", default:, range:)`, `.duration(milliseconds: "K", ...)`,
  `.required("K")`, `EdgeConfig.bool(config, "K", ...)`, `environment["K"]`) in the code compiled
  into it and reachable from it: its own `Services/<Name>/Sources/**`, plus the types of
  `Shared/Platform`, `Shared/Kafka` and `Shared/Contracts` its code names (transitively). So the
  gateway, which links the platform but never builds `ServiceSettings`, does not "read"
  `DATABASE_URL`. Keys built by interpolation (`"UPSTREAM_\\(name.uppercased())"`) are expanded
  from the array they range over (`RouteTable.upstreamNames`); any other template fails the scan;
- the subcommands are the `subcommands:` of the `@main` command (`Services/*/Sources/*Main`);
- the port is the `HTTP_PORT` default (gateway) or the module's `defaultPort`;
- the Kafka topics are `Topics.all` (Shared/Contracts), each service's `consumedTopics`.

The manifest side is `kubectl kustomize` of each overlay, parsed with PyYAML.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

ROOT = Path(__file__).resolve().parents[2]
SHARED_DIRS = ("Shared/Platform", "Shared/Kafka", "Shared/Contracts")
ENVIRONMENTS = ("dev", "production")
PROBE_PATHS = {"readinessProbe": "/health/ready", "livenessProbe": "/health/live"}
STARTUP_PATHS = ("/health/live", "/health/ready")
METRICS_PATH = "/metrics"
MIN_UID = 10000

# Keys the code reads without a default that a cluster must still set, and why (the code cannot
# say it: without them the executable starts, and misbehaves).
MUST_PROVIDE = {
    "gateway": {"KAFKA_BOOTSTRAP_SERVERS": "without it token revocations are off (revoked tokens stay valid)"},
    "identity": {"IDENTITY_KEY_ENCRYPTION_KEY": "without it signing keys are sealed with the public development key"},
}


# =========================================================================== Swift sources


def _strip_swift(text: str) -> tuple[str, str]:
    """Two views of Swift source with the same length as `text`: without comments (strings kept),
    and without comments and string contents (code only; quotes kept). Handles nested block
    comments, multi-line and raw strings, and interpolations (with strings nested in them)."""
    n = len(text)
    no_comments = list(text)
    code = list(text)

    def blank(view: list[str], start: int, end: int) -> None:
        for k in range(start, min(end, n)):
            if view[k] != "\n":
                view[k] = " "

    def skip_string(i: int) -> int:
        """`i` at the first `#` or `"` of a literal; returns the index after its end."""
        hashes = 0
        while i < n and text[i] == "#":
            hashes += 1
            i += 1
        multiline = text.startswith('"""', i)
        quote = '"""' if multiline else '"'
        i += len(quote)
        closing = quote + "#" * hashes
        content_start = i
        while i < n:
            if text[i] == "\\" and text.startswith("#" * hashes, i + 1):
                j = i + 1 + hashes
                if j < n and text[j] == "(":
                    blank(code, content_start, j + 1)
                    i = skip_code(j + 1, until=")")  # the interpolation is code
                    blank(code, j + 1, i)
                    content_start = i
                    continue
                i = j + 1
                continue
            if text.startswith(closing, i):
                blank(code, content_start, i)
                return i + len(closing)
            if text[i] == "\n" and not multiline:
                break
            i += 1
        blank(code, content_start, i)
        return i

    def skip_code(i: int, until: str | None = None) -> int:
        depth = 0
        while i < n:
            c = text[i]
            if text.startswith("//", i):
                end = text.find("\n", i)
                end = n if end < 0 else end
                blank(no_comments, i, end)
                blank(code, i, end)
                i = end
            elif text.startswith("/*", i):
                start, level = i, 0
                while i < n:
                    if text.startswith("/*", i):
                        level += 1
                        i += 2
                    elif text.startswith("*/", i):
                        level -= 1
                        i += 2
                        if level == 0:
                            break
                    else:
                        i += 1
                blank(no_comments, start, i)
                blank(code, start, i)
            elif c == '"' or (c == "#" and re.match(r'#+"', text[i:i + 8])):
                i = skip_string(i)
            elif until and c == "(":
                depth += 1
                i += 1
            elif until and c == ")":
                if depth == 0:
                    return i + 1
                depth -= 1
                i += 1
            else:
                i += 1
        return i

    skip_code(0)
    return "".join(no_comments), "".join(code)


@dataclass
class SwiftUnit:
    """A top-level declaration (type or extension), or what a file has outside them."""

    name: str  # the type's name; "" for a file's top level
    file: Path
    text: str  # comments removed, strings kept
    code: str  # comments and string contents removed


_DECLARATION = re.compile(r"\b(?:struct|enum|class|actor|extension|protocol)\s+([A-Za-z_]\w*)")


def swift_units(path: Path) -> list[SwiftUnit]:
    source = path.read_text(encoding="utf-8")
    text, code = _strip_swift(source)
    depth = [0] * (len(code) + 1)
    level = 0
    for i, c in enumerate(code):
        depth[i] = level
        if c == "{":
            level += 1
        elif c == "}":
            level -= 1
    units: list[SwiftUnit] = []
    outside: list[tuple[int, int]] = []
    cursor = 0
    for match in _DECLARATION.finditer(code):
        start = match.start()
        if start < cursor or depth[start] != 0:
            continue
        # Attributes and modifiers before the keyword belong to it; the body is the first { } after.
        opening = code.find("{", match.end())
        if opening < 0:
            continue
        level, i = 0, opening
        while i < len(code):
            if code[i] == "{":
                level += 1
            elif code[i] == "}":
                level -= 1
                if level == 0:
                    break
            i += 1
        end = i + 1
        outside.append((cursor, start))
        units.append(SwiftUnit(match.group(1), path, text[start:end], code[start:end]))
        cursor = end
    outside.append((cursor, len(code)))
    units.append(SwiftUnit("", path, "\n".join(text[a:b] for a, b in outside), "\n".join(code[a:b] for a, b in outside)))
    return units


def _swift_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.swift") if p.is_file())


@dataclass(frozen=True)
class KeyRead:
    key: str
    method: str  # string, int, duration, required, bool, environment
    default: str | None  # the literal, as written (quotes removed for strings)
    low: int | None = None
    high: int | None = None
    where: str = ""
    conditional: bool = False  # inside an if/guard/for/switch: not read on every start


_READ = re.compile(
    r'(?:\.|\b)(?P<method>string|int|duration|required)\(\s*(?:milliseconds:\s*)?"(?P<key>[A-Z][A-Z0-9_]*)"'
    r'(?P<rest>[^\n]*)'
)
_BOOL_READ = re.compile(r'\bbool\(\s*\w+\s*,\s*"(?P<key>[A-Z][A-Z0-9_]*)"(?P<rest>[^\n]*)')
_VARIABLE_READ = re.compile(r'\b(?P<method>string|int|duration|required)\(\s*(?:milliseconds:\s*)?(?P<var>[a-z]\w*)\b(?!:)')
_ENVIRONMENT_READ = re.compile(r'environment\[\s*"(?P<key>[A-Z][A-Z0-9_]*)"\s*\]')
_TEMPLATE_KEY = re.compile(r'"(?P<prefix>[A-Z][A-Z0-9_]*_)\\\((?P<var>\w+)\.uppercased\(\)\)"')
_DEFAULT = re.compile(r'default:\s*(?:"(?P<string>(?:[^"\\]|\\.)*)"|(?P<number>-?[\d_]+)\b|(?P<bool>true|false)\b)')
_RANGE = re.compile(r"range:\s*(?P<low>-?[\d_]+)\s*\.\.\.\s*(?P<high>-?[\d_]+)")


def _is_conditional(code: str, position: int) -> bool:
    """Whether `position` is inside a block of an if/guard/for/while/switch (code view, same indices)."""
    depth = 0
    for i in range(position - 1, -1, -1):
        c = code[i]
        if c == "}":
            depth += 1
        elif c == "{":
            if depth:
                depth -= 1
                continue
            header = re.split(r"[{};]", code[max(0, i - 400):i])[-1]
            if re.search(r"\b(?:if|else|guard|for|while|switch|case|catch|repeat)\b", header):
                return True
            if re.search(r"\b(?:func|init|var|get|set|struct|enum|class|extension|actor)\b", header):
                return False
            # a closure: keep looking outwards
    return False


def _int(literal: str) -> int:
    return int(literal.replace("_", ""))


@dataclass
class Executable:
    """One deployed executable, as its code describes it."""

    name: str
    directory: Path  # Services/<Name>
    units: list[SwiftUnit]
    reads: dict[str, list[KeyRead]]
    subcommands: set[str]
    port: int
    own_verification_keys: bool  # the module verifies tokens with its own keys (no JWKS_URL)
    consumed_topics: list[str] = field(default_factory=list)

    @property
    def keys(self) -> set[str]:
        return set(self.reads)

    def default(self, key: str) -> str | None:
        defaults = {r.default for r in self.reads.get(key, []) if r.default is not None}
        return defaults.pop() if len(defaults) == 1 else None

    @property
    def required_keys(self) -> set[str]:
        """Keys read with `.required(` on every start (not inside a condition)."""
        return {k for k, reads in self.reads.items() if any(r.method == "required" and not r.conditional for r in reads)}

    @property
    def loopback_default_keys(self) -> set[str]:
        """Keys whose code default only works on one machine (127.0.0.1): a cluster must set them."""
        keys = {k for k, reads in self.reads.items()
                if any(r.default and re.search(r"127\.0\.0\.1|localhost", r.default) for r in reads)}
        if self.own_verification_keys:
            keys.discard("JWKS_URL")  # read by the shared settings, never used by this module
        return keys


class CodeModel:
    """The executables of Package.swift and what each reads, serves and consumes."""

    def __init__(self, root: Path = ROOT):
        self.root = root
        package = (root / "Package.swift").read_text()
        products = re.findall(r'\.executable\(\s*name:\s*"([^"]+)"\s*,\s*targets:\s*\[\s*"([^"]+)"', package)
        assert products, "no executable products in Package.swift"
        self.products = dict(products)
        self.shared_units = [u for d in SHARED_DIRS for f in _swift_files(root / d) for u in swift_units(f)]
        self.config_swift = (root / "Shared/Platform/Config.swift").read_text()
        self.topics = TopicsModel(self.shared_units)
        self.executables: dict[str, Executable] = {}
        for name, target in self.products.items():
            if name == "devbroker":
                continue
            main_dirs = [p for p in root.glob(f"Services/*/Sources/{target}") if p.is_dir()]
            assert len(main_dirs) == 1, f"cannot find the sources of target {target} (product {name}): {main_dirs}"
            self.executables[name] = self._executable(name, main_dirs[0].parent.parent)

    @property
    def names(self) -> list[str]:
        return list(self.executables)

    @functools.cached_property
    def secret_markers(self) -> list[str]:
        match = re.search(r"secretMarkers\s*=\s*\[([^\]]*)\]", self.config_swift)
        assert match, "ConfigReader.secretMarkers not found in Shared/Platform/Config.swift"
        return re.findall(r'"([^"]+)"', match.group(1))

    def is_secret(self, key: str) -> bool:
        return any(marker in key.upper() for marker in self.secret_markers)

    @functools.cached_property
    def duration_range(self) -> tuple[int, int]:
        match = re.search(r"func duration\(milliseconds[^{]*\{[^}]*?range:\s*([\d_]+)\s*\.\.\.\s*([\d_]+)", self.config_swift)
        assert match, "ConfigReader.duration(milliseconds:)'s range not found in Config.swift"
        return _int(match.group(1)), _int(match.group(2))

    def _executable(self, name: str, directory: Path) -> Executable:
        own = [u for f in _swift_files(directory / "Sources") for u in swift_units(f)]
        units = self._reachable(own)
        reads: dict[str, list[KeyRead]] = {}
        for unit in units:
            for read in self._reads(unit):
                reads.setdefault(read.key, []).append(read)
        main = [u for u in own if "Main" in u.file.parent.name]
        subcommands = self._subcommands(main, units)
        port_reads = [r for u in own for r in self._reads(u) if r.key == "HTTP_PORT" and r.default]
        port_decls = [int(m) for u in own for m in re.findall(r"static\s+let\s+defaultPort\s*(?::\s*Int)?\s*=\s*(\d+)", u.code)]
        ports = {int(r.default) for r in port_reads} | set(port_decls)
        assert len(ports) == 1, f"{name}: cannot tell its port from its code (HTTP_PORT defaults, defaultPort): {ports}"
        own_keys = any(re.search(r"\bvar\s+verificationKeys\b", u.code) for u in own)
        consumed: list[str] = []
        for unit in own:
            match = re.search(r"static\s+let\s+consumedTopics\s*(?::[^=]*)?=\s*([^\n]+)", unit.text)
            if match:
                consumed = self.topics.evaluate(match.group(1).strip())
        return Executable(name, directory, units, reads, subcommands, ports.pop(), own_keys, consumed)

    def _reachable(self, own: list[SwiftUnit]) -> list[SwiftUnit]:
        """`own` plus every shared declaration its code names, transitively (file top levels always)."""
        included = list(own) + [u for u in self.shared_units if u.name == ""]
        names_seen: set[str] = set()
        by_name: dict[str, list[SwiftUnit]] = {}
        for unit in self.shared_units:
            if unit.name:
                by_name.setdefault(unit.name, []).append(unit)
        pending = list(included)
        while pending:
            unit = pending.pop()
            for word in set(re.findall(r"\b[A-Z]\w*\b", unit.code)):
                if word in by_name and word not in names_seen:
                    names_seen.add(word)
                    included.extend(by_name[word])
                    pending.extend(by_name[word])
        return included

    def _reads(self, unit: SwiftUnit) -> Iterable[KeyRead]:
        where = str(unit.file.relative_to(self.root)) if unit.file.is_relative_to(self.root) else str(unit.file)
        for match in _READ.finditer(unit.text):
            rest = match.group("rest")
            default = _DEFAULT.search(rest)
            value = None
            if default:
                value = next(v for v in (default.group("string"), default.group("number"), default.group("bool")) if v is not None)
                value = value.replace("_", "") if default.group("number") else value
            low = high = None
            bounds = _RANGE.search(rest)
            if bounds:
                low, high = _int(bounds.group("low")), _int(bounds.group("high"))
            elif match.group("method") == "duration":
                low, high = self.duration_range
            yield KeyRead(match.group("key"), match.group("method"), value, low, high, where,
                          _is_conditional(unit.code, match.start()))
        for match in _BOOL_READ.finditer(unit.text):
            default = _DEFAULT.search(match.group("rest"))
            yield KeyRead(match.group("key"), "bool", default.group("bool") if default else None, where=where)
        for match in _ENVIRONMENT_READ.finditer(unit.text):
            yield KeyRead(match.group("key"), "environment", None, where=where)
        for match in _VARIABLE_READ.finditer(unit.text):
            # `for (key, property) in [("KAFKA_SSL_CA_LOCATION", "ssl.ca.location"), ...]` then `string(key)`.
            loop = re.search(rf"\bfor\s+\(?\s*{match.group('var')}\b[^\n]*?\bin\s+\[", unit.text[:match.start()])
            if not loop:
                continue  # a parameter (the reader's own helpers): its callers pass the literal
            body = unit.text[loop.end():]
            depth, end = 1, 0
            while end < len(body) and depth:
                depth += {"[": 1, "]": -1}.get(body[end], 0)
                end += 1
            items = re.findall(r'\(\s*"([A-Z][A-Z0-9_]*)"|(?:^|[\[,])\s*"([A-Z][A-Z0-9_]*)"', body[:end])
            assert items, f"{where}: `{match.group('var')}` ranges over an array the scan cannot read (extend the scan)"
            for first, only in items:
                yield KeyRead(first or only, match.group("method"), None, where=where, conditional=True)
        for match in _TEMPLATE_KEY.finditer(unit.text):
            prefix, var = match.group("prefix"), match.group("var")
            values = self._template_values(unit, var)
            # `let key = "PREFIX_\(name.uppercased())"` then `config.string(key, default: ...)`.
            assigned = re.search(r"let\s+(\w+)\s*=\s*$", unit.text[:match.start()])
            assert assigned, f"{where}: a key template the scan cannot follow: {match.group(0)}"
            read = re.search(rf"\b(string|int|duration|required)\(\s*(?:milliseconds:\s*)?{assigned.group(1)}\b([^\n]*)",
                             unit.text[match.end():])
            assert read, f"{where}: `{assigned.group(1)}` ({match.group(0)}) is never passed to the config reader"
            default = _DEFAULT.search(read.group(2))
            for value in values:
                yield KeyRead(prefix + value.upper(), read.group(1), default.group("string") if default else None, where=where)

    @staticmethod
    def _template_values(unit: SwiftUnit, var: str) -> list[str]:
        """What `var` ranges over in `for var in NAMES`, NAMES a string array of the same type."""
        loop = re.search(rf"\bfor\s+{var}\s+in\s+(\w+)", unit.code)
        assert loop, f"{unit.file}: a key is built from `{var}`, and the scan cannot tell its values (extend the scan)"
        array = re.search(rf"\b{loop.group(1)}\s*=\s*\[([^\]]*)\]", unit.text)
        assert array, f"{unit.file}: `{loop.group(1)}` is not a literal array the scan can read (extend the scan)"
        values = re.findall(r'"([^"]+)"', array.group(1))
        assert values, f"{unit.file}: `{loop.group(1)}` is empty"
        return values

    @staticmethod
    def _subcommands(main: list[SwiftUnit], units: list[SwiftUnit]) -> set[str]:
        """The top-level subcommands of the `@main` command."""
        names: set[str] = set()
        entry = {m.group(1) for unit in main
                 for m in re.finditer(r"@main\s+(?:public\s+)?(?:struct|enum|class)\s+(\w+)", unit.file.read_text())}
        assert len(entry) == 1, f"one @main command expected in {sorted({str(u.file) for u in main})}, found {entry}"
        for unit in main:
            if unit.name not in entry:
                continue
            match = re.search(r"subcommands:\s*\[([^\]]*)\]", unit.code)
            if not match:
                continue
            for item in re.findall(r"([A-Za-z_][\w.]*)\s*(?:<[^>]*>)?\s*\.self", match.group(1)):
                type_name = item.split(".")[-1]
                command_name = None
                for candidate in units:
                    declared = re.search(rf"\b(?:struct|class|enum)\s+{type_name}\b[^{{]*\{{", candidate.code)
                    if declared:
                        body = candidate.text[declared.end():]
                        explicit = re.search(r'commandName:\s*"([^"]+)"', body[:2000])
                        # Only its own configuration, not a nested type's: stop at the next declaration.
                        nested = re.search(r"\b(?:struct|class|enum)\s+\w+", body[:2000])
                        if explicit and (not nested or explicit.start() < nested.start()):
                            command_name = explicit.group(1)
                        break
                if command_name is None:  # ArgumentParser's default: the type name, kebab-case
                    command_name = re.sub(r"(?<!^)(?=[A-Z])", "-", type_name).lower()
                names.add(command_name)
        assert names, f"no subcommands found in {[str(u.file) for u in main]}"
        return names


class TopicsModel:
    """`Topics` of Shared/Contracts: its string constants, string arrays, one-parameter functions."""

    def __init__(self, units: list[SwiftUnit]):
        topics = [u for u in units if u.name == "Topics"]
        assert topics, "enum Topics not found in Shared/"
        self.text = "\n".join(u.text for u in topics)
        self.constants = dict(re.findall(r'static\s+let\s+(\w+)\s*=\s*"([^"]+)"', self.text))
        self.arrays = {name: re.findall(r'"([^"]+)"', body)
                       for name, body in re.findall(r'static\s+let\s+(\w+)\s*=\s*\[((?:\s*"[^"]*"\s*,?)+)\]', self.text)}
        self.functions = {name: template.replace(f"\\({param})", "{}")
                          for name, param, template in re.findall(
                              r'static\s+func\s+(\w+)\(_\s+(\w+):\s*String\)\s*->\s*String\s*\{\s*"([^"]*)"\s*\}', self.text)}

    @functools.cached_property
    def all(self) -> list[str]:
        match = re.search(r"static\s+let\s+all\s*=\s*(.*?)\n\s*\}", self.text, re.S)
        assert match, "Topics.all not found"
        expression = match.group(1).split("\n\n")[0]
        return self.evaluate(expression)

    def evaluate(self, expression: str) -> list[str]:
        """A sum of: arrays of names or literals, `X.map(f)`, `[...].map { "\\($0)..." }`."""
        expression = re.sub(r"\bTopics\.", "", " ".join(expression.split()))
        result: list[str] = []
        for term in self._terms(expression):
            result.extend(self._term(term))
        return result

    @staticmethod
    def _terms(expression: str) -> list[str]:
        terms, depth, current = [], 0, ""
        for c in expression:
            if c in "([{":
                depth += 1
            elif c in ")]}":
                depth -= 1
            if c == "+" and depth == 0:
                terms.append(current.strip())
                current = ""
            else:
                current += c
        terms.append(current.strip())
        return [t for t in terms if t]

    def _term(self, term: str) -> list[str]:
        mapped = re.fullmatch(r"(.+?)\.map\s*(?:\((\w+)\)|\{\s*\"([^\"]*)\"\s*\})", term)
        if mapped:
            base = self._term(mapped.group(1))
            if mapped.group(2):
                assert mapped.group(2) in self.functions, f"Topics.{mapped.group(2)} is not a function the scan can read"
                template = self.functions[mapped.group(2)]
            else:
                template = mapped.group(3).replace("\\($0)", "{}")
            return [template.format(item) for item in base]
        if term.startswith("[") and term.endswith("]"):
            items = [i.strip() for i in term[1:-1].split(",") if i.strip()]
            return [i[1:-1] if i.startswith('"') else self._name(i) for i in items]
        if term in self.arrays:
            return list(self.arrays[term])
        return [self._name(term)]

    def _name(self, name: str) -> str:
        assert name in self.constants, f"cannot evaluate `{name}` in Topics (extend the scan)"
        return self.constants[name]


@functools.lru_cache(maxsize=None)
def code_model(root: Path = ROOT) -> CodeModel:
    return CodeModel(root)


# =========================================================================== manifests


def kubectl_available() -> bool:
    return shutil.which("kubectl") is not None


@functools.lru_cache(maxsize=None)
def render(directory: Path) -> tuple[dict, ...]:
    done = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"kubectl kustomize {directory} failed: {done.stderr.strip()[:2000]}"
    resources = tuple(r for r in yaml.safe_load_all(done.stdout) if r)
    assert resources, f"{directory} renders nothing"
    return resources


class Rendered:
    """One rendered overlay."""

    def __init__(self, label: str, resources: Iterable[dict]):
        self.label = label
        self.resources = list(resources)

    def of_kind(self, kind: str) -> list[dict]:
        return [r for r in self.resources if r.get("kind") == kind]

    def get(self, kind: str, name: str) -> dict | None:
        found = [r for r in self.of_kind(kind) if r.get("metadata", {}).get("name") == name]
        return found[0] if found else None

    @property
    def deployments(self) -> dict[str, dict]:
        return {r["metadata"]["name"]: r for r in self.of_kind("Deployment")}

    @property
    def namespace(self) -> str:
        for r in self.resources:
            ns = r.get("metadata", {}).get("namespace")
            if ns:
                return ns
        return "default"


def overlay_dirs(k8s: Path) -> dict[str, Path]:
    """label (`production`, `production/listings`) -> directory, for every overlay with a kustomization."""
    root = k8s / "overlays"
    found = {}
    for kustomization in sorted(root.glob("*/kustomization.yaml")) + sorted(root.glob("*/*/kustomization.yaml")):
        found[str(kustomization.parent.relative_to(root))] = kustomization.parent
    return found


def load_overlay(k8s: Path, label: str) -> Rendered:
    return Rendered(label, render((k8s / "overlays" / label).resolve()))


# --------------------------------------------------------------------------- workload helpers


def pod_spec(workload: dict) -> dict:
    return workload.get("spec", {}).get("template", {}).get("spec", {}) or {}


def pod_labels(workload: dict) -> dict:
    return workload.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {}) or {}


def containers(workload: dict, *, init: bool = True) -> list[dict]:
    """The pod's containers, its init containers first unless `init` is false."""
    spec = pod_spec(workload)
    found = list(spec.get("initContainers") or []) if init else []
    return found + list(spec.get("containers") or [])


def main_container(workload: dict, name: str) -> dict | None:
    for container in pod_spec(workload).get("containers") or []:
        if container.get("name") == name:
            return container
    return None


def http_port(container: dict) -> int | None:
    for port in container.get("ports") or []:
        if port.get("name") == "http":
            return port.get("containerPort")
    return None


def environment(rendered: Rendered, container: dict) -> tuple[dict[str, Any], list[str]]:
    """The container's effective variables: name -> value (a string, or {"secretKeyRef": ..} /
    {"other": ..}; `env` wins over `envFrom`), and the problems in how they are sourced."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, value, _ in environment_entries(rendered, container, problems):
        values[key] = value
    return values, problems


def environment_entries(rendered: Rendered, container: dict, problems: list[str] | None = None) -> list[tuple[str, Any, str]]:
    """Every variable the container is given, (name, value, where from), overridden ones included."""
    entries: list[tuple[str, Any, str]] = []
    problems = [] if problems is None else problems
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            name = source["configMapRef"].get("name")
            config_map = rendered.get("ConfigMap", name)
            if config_map is None:
                problems.append(f"envFrom ConfigMap {name} is not in the overlay")
                continue
            for key, value in (config_map.get("data") or {}).items():
                entries.append((prefix + key, str(value), f"ConfigMap {name}"))
        elif "secretRef" in source:
            problems.append(f"envFrom secretRef {source['secretRef'].get('name')}: secrets must be explicit env entries "
                            "with secretKeyRef (each key named, so each can be checked)")
        else:
            problems.append(f"unknown envFrom source {source}")
    for entry in container.get("env") or []:
        name = entry.get("name")
        if "value" in entry:
            entries.append((name, str(entry["value"]), "env"))
        elif "valueFrom" in entry and "secretKeyRef" in entry["valueFrom"]:
            entries.append((name, {"secretKeyRef": entry["valueFrom"]["secretKeyRef"]}, "env"))
        else:
            entries.append((name, {"other": entry.get("valueFrom")}, "env"))
    return entries


def preStop_sleep_seconds(container: dict) -> int:
    pre_stop = (container.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"].get("seconds", 0))
    command = (pre_stop.get("exec") or {}).get("command") or []
    joined = " ".join(str(c) for c in command)
    match = re.search(r"\bsleep\s+(\d+)", joined)
    if pre_stop and not match:
        raise AssertionError(f"cannot tell how long the preStop hook {pre_stop} takes")
    return int(match.group(1)) if match else 0


def selector_matches(selector: dict | None, labels: dict) -> bool:
    """A LabelSelector (matchLabels, matchExpressions) against labels. An empty selector matches all."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


# --------------------------------------------------------------------------- network policies


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: tuple[tuple[str, str], ...]
    ports: tuple[tuple[str, int], ...] = ()  # named container ports

    @property
    def label_dict(self) -> dict:
        return dict(self.labels)

    @staticmethod
    def of(namespace: str, labels: dict, container_list: list[dict] = ()) -> "Pod":
        ports = tuple((p["name"], p["containerPort"]) for c in container_list for p in c.get("ports") or [] if p.get("name"))
        return Pod(namespace, tuple(sorted(labels.items())), ports)


def _peer_matches(peer: dict, policy_namespace: str, pod: Pod) -> bool:
    if "ipBlock" in peer:
        return False  # addresses, not pods
    namespace_labels = {"kubernetes.io/metadata.name": pod.namespace}
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], namespace_labels):
            return False
    elif pod.namespace != policy_namespace:
        return False
    return selector_matches(peer.get("podSelector"), pod.label_dict) if "podSelector" in peer else True


def _port_matches(rule_ports: list[dict] | None, port: int, protocol: str, destination: Pod | None) -> bool:
    if not rule_ports:
        return True
    for entry in rule_ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str) and not wanted.isdigit():
            named = dict(destination.ports) if destination else {}
            if named.get(wanted) == port:
                return True
            continue
        if int(wanted) <= port <= int(entry.get("endPort", wanted)):
            return True
    return False


def _selecting(policies: list[dict], pod: Pod, policy_type: str) -> list[dict]:
    chosen = []
    for policy in policies:
        namespace = policy["metadata"].get("namespace", pod.namespace)
        spec = policy.get("spec", {})
        types = spec.get("policyTypes") or (["Ingress", "Egress"] if "egress" in spec else ["Ingress"])
        if namespace == pod.namespace and policy_type in types and selector_matches(spec.get("podSelector"), pod.label_dict):
            chosen.append(policy)
    return chosen


# Which rules and which peer list a policy of each type has.
_DIRECTIONS = {"Egress": ("egress", "to"), "Ingress": ("ingress", "from")}


def _allowed(policies: list[dict], policy_type: str, selected: Pod, peer: Pod, destination: Pod, port: int, protocol: str) -> bool:
    """Do the `policy_type` policies selecting `selected` let it talk to `peer` on `port` of `destination`?"""
    selecting = _selecting(policies, selected, policy_type)
    if not selecting:
        return True
    rules_key, peers_key = _DIRECTIONS[policy_type]
    for policy in selecting:
        home = policy["metadata"].get("namespace", selected.namespace)
        for rule in policy["spec"].get(rules_key) or []:
            peers = rule.get(peers_key)
            peer_ok = (not peers) or any(_peer_matches(p, home, peer) for p in peers)
            if peer_ok and _port_matches(rule.get("ports"), port, protocol, destination):
                return True
    return False


def egress_allowed(policies: list[dict], source: Pod, destination: Pod, port: int, protocol: str = "TCP") -> bool:
    """May `source` send to `destination` on `port`, as far as the policies selecting `source` say?"""
    return _allowed(policies, "Egress", source, destination, destination, port, protocol)


def ingress_allowed(policies: list[dict], source: Pod, destination: Pod, port: int, protocol: str = "TCP") -> bool:
    """May `destination` accept `source` on `port`, as far as the policies selecting `destination` say?"""
    return _allowed(policies, "Ingress", destination, source, destination, port, protocol)


def connection_allowed(policies: list[dict], source: Pod, destination: Pod, port: int) -> bool:
    return egress_allowed(policies, source, destination, port) and ingress_allowed(policies, source, destination, port)


def egress_port_open(policies: list[dict], source: Pod, port: int, protocol: str = "TCP") -> bool:
    """Some egress rule of the policies selecting `source` lets it out on `port` to some peer
    (which peer depends on where Postgres, Kafka and DNS live; the README says)."""
    selecting = _selecting(policies, source, "Egress")
    if not selecting:
        return True
    return any(_port_matches(rule.get("ports"), port, protocol, None)
               for policy in selecting for rule in policy["spec"].get("egress") or [])


# =========================================================================== checks
# Each returns the problems it finds (empty: none); the tests assert on them, and the negative
# tests assert that a deliberately broken copy of k8s/ produces the expected one.


def expected_overlays(code: CodeModel) -> dict[str, list[str]]:
    """overlay label -> the services it deploys."""
    labels = {env: list(code.names) for env in ENVIRONMENTS}
    labels.update({f"{env}/{svc}": [svc] for env in ENVIRONMENTS for svc in code.names})
    return labels


def _uses_database(code: CodeModel, svc: str) -> bool:
    return "DATABASE_URL" in code.executables[svc].keys


def _workloads(r: Rendered, svc: str) -> list[tuple[str, dict]]:
    """The Deployment and, if any, the migration Job of `svc` in the overlay."""
    found = []
    deployment = r.get("Deployment", svc)
    if deployment:
        found.append((f"Deployment {svc}", deployment))
    job = r.get("Job", f"{svc}-migrate")
    if job:
        found.append((f"Job {svc}-migrate", job))
    return found


def check_overlay_set(k8s: Path, code: CodeModel) -> list[str]:
    problems = []
    found = overlay_dirs(k8s)
    for label, services in expected_overlays(code).items():
        if label not in found:
            problems.append(f"k8s/overlays/{label}: missing (no kustomization.yaml)")
    for svc in code.names:
        if not (k8s / "base" / svc / "kustomization.yaml").is_file():
            problems.append(f"k8s/base/{svc}: missing (no kustomization.yaml)")
    if problems:
        return problems
    def rendered(label: str) -> Rendered | None:
        try:
            return load_overlay(k8s, label)
        except AssertionError as error:
            problems.append(f"k8s/overlays/{label}: {str(error).splitlines()[0][:600]}")
            return None

    for env in ENVIRONMENTS:
        whole = rendered(env)
        if whole and set(whole.deployments) != set(code.names):
            problems.append(f"k8s/overlays/{env} deploys {sorted(whole.deployments)}; the executables (Package.swift, "
                            f"without devbroker) are {sorted(code.names)}")
        for svc in code.names:
            alone = rendered(f"{env}/{svc}")
            if alone is None:
                continue
            if set(alone.deployments) != {svc}:
                problems.append(f"k8s/overlays/{env}/{svc} deploys {sorted(alone.deployments)}, not just {svc}")
            jobs = {j["metadata"]["name"] for j in alone.of_kind("Job")}
            if not jobs <= {f"{svc}-migrate"}:
                problems.append(f"k8s/overlays/{env}/{svc} carries other services' Jobs: {sorted(jobs)}")
            # What the service ships alone must be what the whole-suite overlay ships for it.
            mine = {(x["kind"], x["metadata"]["name"]) for x in alone.resources}
            for kind, name in sorted(mine):
                if whole and whole.get(kind, name) != alone.get(kind, name):
                    problems.append(f"k8s/overlays/{env} and {env}/{svc} render {kind} {name} differently")
    return problems


def check_serve_command(r: Rendered, svc: str, code: CodeModel) -> list[str]:
    exe = code.executables[svc]
    deployment = r.get("Deployment", svc)
    if deployment is None:
        return [f"{r.label}: no Deployment {svc}"]
    container = main_container(deployment, svc)
    if container is None:
        return [f"{r.label}: Deployment {svc} has no container named {svc}"]
    problems = []
    if container.get("args") != ["serve"]:
        problems.append(f"{r.label}: Deployment {svc} container args are {container.get('args')}, not [serve]")
    if "serve" not in exe.subcommands:
        problems.append(f"{svc} has no `serve` subcommand (it has {sorted(exe.subcommands)})")
    for where, workload in _workloads(r, svc):
        for c in containers(workload):
            if c.get("command"):
                problems.append(f"{r.label}: {where} container {c['name']} sets command {c['command']} (the image's "
                                "entrypoint is the executable; only args name the subcommand)")
            args = c.get("args") or []
            if not args or args[0] not in exe.subcommands:
                problems.append(f"{r.label}: {where} container {c['name']} runs `{svc} {' '.join(map(str, args))}`: "
                                f"{svc}'s subcommands are {sorted(exe.subcommands)}")
    return problems


def _value_problem(read: KeyRead, value: str) -> str | None:
    if read.method in ("int", "duration"):
        try:
            number = int(value)
        except ValueError:
            return f"is {value!r}, not an integer"
        if read.low is not None and not read.low <= number <= read.high:
            return f"is {number}, outside {read.low}...{read.high} ({read.where})"
    if read.method == "bool" and value.strip().lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        return f"is {value!r}, not true or false"
    return None


# Keys a service reads that no manifest may set, in any overlay: what they open is for a developer's machine.
DEV_AND_TEST_ONLY_KEYS = {
    "TEST_CLOCK": "it lets anything that reaches the pod move the business clock (POST /internal/test-clock)",
}


def check_config_keys(r: Rendered, svc: str, code: CodeModel) -> list[str]:
    """Every variable a workload of `svc` is given is one `svc` reads, valid for how it reads it;
    secrets only from `<svc>-secrets` by secretKeyRef."""
    exe = code.executables[svc]
    problems = []
    workloads = _workloads(r, svc)
    if not workloads:
        return [f"{r.label}: no Deployment {svc}"]
    for where, workload in workloads:
        for c in containers(workload):
            sourcing: list[str] = []
            entries = environment_entries(r, c, sourcing)
            problems += [f"{r.label}: {where} container {c['name']}: {p}" for p in sourcing]
            for key, value, origin in sorted(entries, key=lambda e: e[0]):
                at = f"{r.label}: {where} container {c['name']}: {key} ({origin})"
                if key in DEV_AND_TEST_ONLY_KEYS:
                    problems.append(f"{at} is for `make run` and the tests only: {DEV_AND_TEST_ONLY_KEYS[key]}")
                    continue
                if key not in exe.keys:
                    readers = [n for n, e in code.executables.items() if key in e.keys]
                    problems.append(f"{at} is not read by {svc}" + (f" (only by {', '.join(readers)})" if readers else
                                                                       " (no executable reads it)"))
                    continue
                if code.is_secret(key):
                    ref = value.get("secretKeyRef") if isinstance(value, dict) else None
                    if not ref:
                        problems.append(f"{at} is a secret (ConfigReader.secretMarkers) but is not from a secretKeyRef")
                    elif ref.get("name") != f"{svc}-secrets":
                        problems.append(f"{at} comes from Secret {ref.get('name')}, not {svc}-secrets")
                if isinstance(value, str):
                    for read in exe.reads[key]:
                        wrong = _value_problem(read, value)
                        if wrong:
                            problems.append(f"{at} {wrong}")
                            break
    return problems


def _url_problem(value: Any, service: str, path: str, code: CodeModel) -> str | None:
    if not isinstance(value, str):
        return f"is not a literal URL ({value})"
    match = re.fullmatch(r"http://([a-z0-9.-]+):(\d+)(/.*)?", value)
    if not match:
        return f"is {value!r}, not http://<service>:<port>{path}"
    host, port, rest = match.group(1), int(match.group(2)), match.group(3) or ""
    if host.split(".")[0] != service:
        return f"is {value!r}: host {host} is not the Service {service}"
    if port != code.executables[service].port:
        return f"is {value!r}: {service} listens on {code.executables[service].port}"
    if rest.rstrip("/") != path.rstrip("/"):
        return f"is {value!r}: the path should be {path or '(none)'}"
    return None


def check_provided(r: Rendered, svc: str, code: CodeModel) -> list[str]:
    """What `svc` cannot run in a cluster without: keys whose code default is loopback, required
    keys, MUST_PROVIDE; DATABASE_URL from its Secret exactly where it has a database; HTTP_HOST
    0.0.0.0; upstream and JWKS addresses that point at the right Service and port."""
    exe = code.executables[svc]
    deployment = r.get("Deployment", svc)
    container = main_container(deployment, svc) if deployment else None
    if container is None:
        return [f"{r.label}: no Deployment {svc} with a container {svc}"]
    values, _ = environment(r, container)
    problems = []
    needed = exe.loopback_default_keys | exe.required_keys | set(MUST_PROVIDE.get(svc, {}))
    for key in sorted(needed - set(values)):
        why = MUST_PROVIDE.get(svc, {}).get(key) or (
            "it has no default" if key in exe.required_keys else f"its default ({exe.default(key)}) is this machine only")
        problems.append(f"{r.label}: Deployment {svc} does not set {key}: {why}")
    if values.get("HTTP_HOST", "0.0.0.0") != "0.0.0.0":
        problems.append(f"{r.label}: {svc} HTTP_HOST is {values['HTTP_HOST']!r}, not 0.0.0.0 (probes and Services could not reach it)")
    if _uses_database(code, svc):
        for where, workload in _workloads(r, svc):
            for c in containers(workload):
                v, _ = environment(r, c)
                ref = v.get("DATABASE_URL")
                if not (isinstance(ref, dict) and ref.get("secretKeyRef", {}).get("name") == f"{svc}-secrets"):
                    problems.append(f"{r.label}: {where} container {c['name']}: DATABASE_URL is not taken from "
                                    f"Secret {svc}-secrets ({ref})")
    else:
        for where, workload in _workloads(r, svc):
            for c in containers(workload):
                if "DATABASE_URL" in environment(r, c)[0]:
                    problems.append(f"{r.label}: {where}: {svc} has no database, yet is given DATABASE_URL")
    for key in sorted(values):
        if key.startswith("UPSTREAM_") and key in exe.keys:
            wrong = _url_problem(values[key], key.removeprefix("UPSTREAM_").lower(), "", code)
            if wrong:
                problems.append(f"{r.label}: {svc} {key} {wrong}")
    if "JWKS_URL" in values and "identity" in code.executables:
        wrong = _url_problem(values["JWKS_URL"], "identity", "/.well-known/jwks.json", code)
        if wrong:
            problems.append(f"{r.label}: {svc} JWKS_URL {wrong}")
    return problems


def _probe_port_ok(probe: dict, container: dict) -> bool:
    port = (probe.get("httpGet") or {}).get("port")
    return port == "http" or (port is not None and str(port) == str(http_port(container)))


def check_ports_and_probes(r: Rendered, svc: str, code: CodeModel) -> list[str]:
    exe = code.executables[svc]
    deployment = r.get("Deployment", svc)
    container = main_container(deployment, svc) if deployment else None
    if container is None:
        return [f"{r.label}: no Deployment {svc} with a container {svc}"]
    problems = []
    values, _ = environment(r, container)
    listen = int(values.get("HTTP_PORT", exe.default("HTTP_PORT") or exe.port))
    if listen != exe.port:
        problems.append(f"{r.label}: {svc} HTTP_PORT is {listen}; {svc}'s port is {exe.port}")
    declared = http_port(container)
    if declared != listen:
        problems.append(f"{r.label}: Deployment {svc} containerPort http is {declared}; the executable listens on {listen}")
    service = r.get("Service", svc)
    if service is None:
        problems.append(f"{r.label}: no Service {svc}")
    else:
        if not selector_matches({"matchLabels": service["spec"].get("selector") or {"": None}}, pod_labels(deployment)):
            problems.append(f"{r.label}: Service {svc} selector {service['spec'].get('selector')} does not select its pods")
        ports = service["spec"].get("ports") or []
        to_http = [p for p in ports if p.get("targetPort") in ("http", declared)]
        if not to_http:
            problems.append(f"{r.label}: Service {svc} has no port with targetPort http ({ports})")
        elif to_http[0].get("port") != exe.port:
            problems.append(f"{r.label}: Service {svc} port is {to_http[0].get('port')}; the others reach {svc} on {exe.port}")
    annotations = deployment["spec"]["template"].get("metadata", {}).get("annotations") or {}
    if annotations.get("prometheus.io/scrape") != "true":
        problems.append(f"{r.label}: {svc} pods lack prometheus.io/scrape: \"true\"")
    if str(annotations.get("prometheus.io/port")) != str(listen):
        problems.append(f"{r.label}: {svc} prometheus.io/port is {annotations.get('prometheus.io/port')}, the executable serves on {listen}")
    if annotations.get("prometheus.io/path", METRICS_PATH) != METRICS_PATH:
        problems.append(f"{r.label}: {svc} prometheus.io/path is {annotations.get('prometheus.io/path')}, not {METRICS_PATH}")
    for kind, path in PROBE_PATHS.items():
        probe = container.get(kind)
        if not probe:
            problems.append(f"{r.label}: {svc} has no {kind}")
            continue
        if (probe.get("httpGet") or {}).get("path") != path:
            problems.append(f"{r.label}: {svc} {kind} is {probe.get('httpGet') or probe}, not GET {path}")
        if not _probe_port_ok(probe, container):
            problems.append(f"{r.label}: {svc} {kind} port {(probe.get('httpGet') or {}).get('port')} is not http")
    startup = container.get("startupProbe")
    if not startup:
        problems.append(f"{r.label}: {svc} has no startupProbe")
    else:
        if (startup.get("httpGet") or {}).get("path") not in STARTUP_PATHS:
            problems.append(f"{r.label}: {svc} startupProbe is {startup}, not GET one of {STARTUP_PATHS}")
        if not _probe_port_ok(startup, container):
            problems.append(f"{r.label}: {svc} startupProbe port is not http")
    return problems


def probe_paths(deployment: dict, svc: str) -> dict[str, str]:
    """kind -> path, of the probes and the Prometheus scrape of a rendered Deployment."""
    container = main_container(deployment, svc) or {}
    paths = {kind: container[kind]["httpGet"]["path"] for kind in ("readinessProbe", "livenessProbe", "startupProbe")
             if (container.get(kind) or {}).get("httpGet")}
    annotations = deployment["spec"]["template"].get("metadata", {}).get("annotations") or {}
    if annotations.get("prometheus.io/scrape") == "true":
        paths["prometheus"] = annotations.get("prometheus.io/path", METRICS_PATH)
    return paths


def check_shutdown(r: Rendered, svc: str, code: CodeModel) -> list[str]:
    exe = code.executables[svc]
    deployment = r.get("Deployment", svc)
    container = main_container(deployment, svc) if deployment else None
    if container is None:
        return [f"{r.label}: no Deployment {svc} with a container {svc}"]
    values, _ = environment(r, container)
    grace_ms = values.get("SHUTDOWN_GRACE_MS", exe.default("SHUTDOWN_GRACE_MS"))
    if grace_ms is None:
        return [f"{r.label}: {svc}: cannot tell SHUTDOWN_GRACE_MS (neither set nor a code default)"]
    sleep = preStop_sleep_seconds(container)
    needed = int(grace_ms) / 1000 + sleep
    period = pod_spec(deployment).get("terminationGracePeriodSeconds", 30)
    if period < needed:
        return [f"{r.label}: {svc} terminationGracePeriodSeconds is {period}: the preStop sleep ({sleep} s) and "
                f"SHUTDOWN_GRACE_MS ({grace_ms}) need {needed:g} s, so Kubernetes would kill a draining pod"]
    return []


def check_migration(r: Rendered, svc: str, code: CodeModel) -> list[str]:
    exe = code.executables[svc]
    deployment = r.get("Deployment", svc)
    job = r.get("Job", f"{svc}-migrate")
    problems = []
    if not _uses_database(code, svc):
        if job is not None:
            problems.append(f"{r.label}: {svc} has no database, yet has a Job {svc}-migrate")
        return problems
    if "migrate" not in exe.subcommands:
        problems.append(f"{svc} reads DATABASE_URL but has no `migrate` subcommand ({sorted(exe.subcommands)})")
    if job is None:
        return problems + [f"{r.label}: no Job {svc}-migrate"]
    image = (main_container(deployment, svc) or {}).get("image") if deployment else None
    runs = [c for c in containers(job) if (c.get("args") or [])[:1] == ["migrate"]]
    if len(containers(job, init=False)) != 1 or len(runs) != 1 or runs[0].get("args") != ["migrate"]:
        problems.append(f"{r.label}: Job {svc}-migrate should run one container with args [migrate]: "
                        f"{[(c['name'], c.get('args')) for c in containers(job)]}")
    for c in containers(job):
        if c.get("image") != image:
            problems.append(f"{r.label}: Job {svc}-migrate container {c['name']} image {c.get('image')} is not the "
                            f"Deployment's {image}")
    if pod_spec(job).get("restartPolicy") not in ("Never", "OnFailure"):
        problems.append(f"{r.label}: Job {svc}-migrate restartPolicy {pod_spec(job).get('restartPolicy')}")
    for c in pod_spec(deployment).get("initContainers") or [] if deployment else []:
        if c.get("image") != image:
            problems.append(f"{r.label}: Deployment {svc} init container {c['name']} image {c.get('image')} is not {image}")
    return problems


def check_security(r: Rendered, svc: str, code: CodeModel) -> list[str]:
    """runAsNonRoot, a high UID, seccomp RuntimeDefault, no API token; per container a read-only
    root filesystem, no privilege escalation, every capability dropped, requests and limits."""
    problems = []
    workloads = _workloads(r, svc)
    if not workloads:
        return [f"{r.label}: no Deployment {svc}"]
    for where, workload in workloads:
        spec = pod_spec(workload)
        pod_context = spec.get("securityContext") or {}
        account = r.get("ServiceAccount", spec.get("serviceAccountName", "default"))
        token = spec.get("automountServiceAccountToken", (account or {}).get("automountServiceAccountToken", True))
        if token is not False:
            problems.append(f"{r.label}: {where} mounts a Kubernetes API token (automountServiceAccountToken not false)")
        for c in containers(workload):
            at = f"{r.label}: {where} container {c['name']}"
            context = c.get("securityContext") or {}

            def effective(key, context=context):
                return context.get(key, pod_context.get(key))

            if effective("runAsNonRoot") is not True:
                problems.append(f"{at}: runAsNonRoot is not true")
            uid = effective("runAsUser")
            if not isinstance(uid, int) or uid < MIN_UID:
                problems.append(f"{at}: runAsUser {uid} is not a high UID (>= {MIN_UID})")
            if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
                problems.append(f"{at}: seccompProfile is not RuntimeDefault")
            if context.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: readOnlyRootFilesystem is not true")
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{at}: allowPrivilegeEscalation is not false")
            if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{at}: capabilities do not drop ALL")
            if (context.get("capabilities") or {}).get("add"):
                problems.append(f"{at}: adds capabilities {context['capabilities']['add']}")
            if context.get("privileged"):
                problems.append(f"{at}: privileged")
            resources = c.get("resources") or {}
            for section, names in (("requests", ("cpu", "memory")), ("limits", ("memory",))):
                missing = [n for n in names if n not in (resources.get(section) or {})]
                if missing:
                    problems.append(f"{at}: no {section} for {', '.join(missing)}")
    return problems


def _min_replicas(r: Rendered, svc: str) -> int:
    hpa = r.get("HorizontalPodAutoscaler", svc)
    if hpa:
        return int(hpa["spec"].get("minReplicas", 1))
    return int((r.get("Deployment", svc) or {}).get("spec", {}).get("replicas", 1))


def check_companions(r: Rendered, svc: str, code: CodeModel) -> list[str]:
    """ServiceAccount, PodDisruptionBudget, HorizontalPodAutoscaler and NetworkPolicy of the Deployment."""
    deployment = r.get("Deployment", svc)
    if deployment is None:
        return [f"{r.label}: no Deployment {svc}"]
    problems = []
    labels = pod_labels(deployment)
    for where, workload in _workloads(r, svc):
        name = pod_spec(workload).get("serviceAccountName")
        account = r.get("ServiceAccount", name) if name else None
        if account is None:
            problems.append(f"{r.label}: {where} runs as ServiceAccount {name or 'default'}, which the overlay does not carry")
        elif account.get("automountServiceAccountToken") is not False:
            problems.append(f"{r.label}: ServiceAccount {name} does not set automountServiceAccountToken: false")
        policies = [p for p in r.of_kind("NetworkPolicy")
                    if selector_matches(p["spec"].get("podSelector"), pod_labels(workload))
                    and p["spec"].get("podSelector")]  # the service's own, not the namespace baseline
        types = {t for p in policies for t in p["spec"].get("policyTypes") or []}
        if not {"Ingress", "Egress"} <= types:
            problems.append(f"{r.label}: {where}: no NetworkPolicy of its own for both Ingress and Egress "
                            f"(found {[p['metadata']['name'] for p in policies]})")
    pdbs = [p for p in r.of_kind("PodDisruptionBudget") if selector_matches(p["spec"].get("selector"), labels)]
    if len(pdbs) != 1:
        problems.append(f"{r.label}: {len(pdbs)} PodDisruptionBudgets select {svc}'s pods (one expected)")
    hpas = [h for h in r.of_kind("HorizontalPodAutoscaler")
            if h["spec"].get("scaleTargetRef", {}).get("kind") == "Deployment" and h["spec"]["scaleTargetRef"].get("name") == svc]
    if len(hpas) != 1:
        problems.append(f"{r.label}: {len(hpas)} HorizontalPodAutoscalers target Deployment {svc} (one expected)")
    else:
        spec = hpas[0]["spec"]
        if int(spec.get("minReplicas", 1)) > int(spec["maxReplicas"]):
            problems.append(f"{r.label}: HPA {svc} minReplicas {spec.get('minReplicas')} > maxReplicas {spec['maxReplicas']}")
    if len(pdbs) == 1:
        spec, replicas = pdbs[0]["spec"], _min_replicas(r, svc)
        if "minAvailable" in spec and isinstance(spec["minAvailable"], int) and spec["minAvailable"] >= replicas:
            problems.append(f"{r.label}: PDB {svc} minAvailable {spec['minAvailable']} with {replicas} replica(s): "
                            "no pod can ever be evicted, node drains hang")
        if str(spec.get("maxUnavailable", "1")).rstrip("%") == "0":
            problems.append(f"{r.label}: PDB {svc} maxUnavailable 0: node drains hang")
    return problems


def check_no_secret_values(k8s: Path, code: CodeModel) -> list[str]:
    """No Secret with data, and no secretGenerator with literals, in the files under k8s/."""
    problems = []
    for path in sorted(k8s.rglob("*")):
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        try:
            documents = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
        except yaml.YAMLError as error:
            problems.append(f"{path.relative_to(k8s.parent)}: does not parse: {error}")
            continue
        for document in documents:
            if document.get("kind") == "Secret" and (document.get("data") or document.get("stringData")):
                problems.append(f"{path.relative_to(k8s.parent)}: Secret {document.get('metadata', {}).get('name')} "
                                "holds values; Secrets are created out of band")
            for generator in document.get("secretGenerator") or []:
                if generator.get("literals") or generator.get("files") or generator.get("envs"):
                    problems.append(f"{path.relative_to(k8s.parent)}: secretGenerator {generator.get('name')} "
                                    "builds a Secret from files or literals in the repository")
    for env in ENVIRONMENTS:
        for secret in load_overlay(k8s, env).of_kind("Secret"):
            if secret.get("data") or secret.get("stringData"):
                problems.append(f"k8s/overlays/{env} renders Secret {secret['metadata']['name']} with values")
    return problems


def _kafka_port(values: dict) -> int | None:
    servers = values.get("KAFKA_BOOTSTRAP_SERVERS")
    if not isinstance(servers, str):
        return None
    match = re.search(r":(\d+)\s*$", servers.split(",")[0])
    return int(match.group(1)) if match else None


def check_network(r: Rendered, code: CodeModel) -> list[str]:
    """The NetworkPolicies of a whole-suite overlay let through what the code does and nothing
    the issue forbids: the gateway reaches each upstream; every service that verifies tokens with
    identity's JWKS reaches identity; services accept no other service; every pod resolves names;
    database services reach Postgres and everything Kafka (on the port KAFKA_BOOTSTRAP_SERVERS
    names); Prometheus scrapes every service; an ingress controller reaches the gateway."""
    policies = r.of_kind("NetworkPolicy")
    namespace = r.namespace
    pods: dict[str, Pod] = {}
    problems = []
    for svc in code.names:
        deployment = r.get("Deployment", svc)
        if deployment is None:
            return [f"{r.label}: no Deployment {svc}"]
        pods[svc] = Pod.of(namespace, pod_labels(deployment), containers(deployment))
    prometheus = Pod("monitoring", (("app.kubernetes.io/name", "prometheus"),))
    ingress_controller = Pod("ingress-nginx", (("app.kubernetes.io/name", "ingress-nginx"),))
    gateway = "gateway" if "gateway" in pods else None
    for svc, pod in pods.items():
        exe = code.executables[svc]
        port = exe.port
        if gateway and svc != gateway and f"UPSTREAM_{svc.upper()}" in code.executables[gateway].keys:
            if not connection_allowed(policies, pods[gateway], pod, port):
                problems.append(f"{r.label}: the gateway cannot reach {svc}:{port}")
        if not ingress_allowed(policies, prometheus, pod, port):
            problems.append(f"{r.label}: Prometheus (monitoring/app.kubernetes.io/name=prometheus) cannot scrape {svc}:{port}")
        verifies = "JWKS_URL" in exe.keys and not exe.own_verification_keys
        if verifies and "identity" in pods and svc != "identity":
            if not connection_allowed(policies, pod, pods["identity"], code.executables["identity"].port):
                problems.append(f"{r.label}: {svc} cannot reach identity's JWKS (identity:{code.executables['identity'].port})")
        for other, other_pod in pods.items():
            if other in (svc, "gateway") or (other == "identity" and verifies):
                continue
            if svc != "gateway" and ingress_allowed(policies, pod, other_pod, code.executables[other].port):
                problems.append(f"{r.label}: {other} accepts connections from {svc} on {code.executables[other].port}; "
                                "services accept only the gateway (and Prometheus)")
        workloads = _workloads(r, svc)
        for where, workload in workloads:
            wpod = Pod.of(namespace, pod_labels(workload), containers(workload))
            if not (egress_port_open(policies, wpod, 53, "UDP")):
                problems.append(f"{r.label}: {where} cannot resolve names (no egress to port 53/UDP)")
            if _uses_database(code, svc) and not egress_port_open(policies, wpod, 5432):
                problems.append(f"{r.label}: {where} cannot reach Postgres (no egress to port 5432)")
        values, _ = environment(r, main_container(r.get("Deployment", svc), svc) or {})
        kafka = _kafka_port(values)
        if "KAFKA_BOOTSTRAP_SERVERS" in exe.keys:
            if kafka is None:
                problems.append(f"{r.label}: {svc}: cannot tell the Kafka port from KAFKA_BOOTSTRAP_SERVERS")
            elif not egress_port_open(policies, pod, kafka):
                problems.append(f"{r.label}: {svc} cannot reach Kafka (no egress to port {kafka}, "
                                "the port of KAFKA_BOOTSTRAP_SERVERS)")
    if gateway and not ingress_allowed(policies, ingress_controller, pods[gateway], code.executables[gateway].port):
        problems.append(f"{r.label}: nothing outside the namespace (an ingress controller) can reach the gateway")
    return problems


def check_topics(k8s: Path, code: CodeModel) -> list[str]:
    """The Strimzi example's KafkaTopics are the code's Topics.all; each consuming service's
    KafkaUser may read its topics and its group, and write its dead-letter topic."""
    problems = []
    documents = []
    for path in sorted((k8s / "examples").rglob("*.y*ml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    topics = [d for d in documents if d.get("kind") == "KafkaTopic"]
    if not topics:
        return []  # no Strimzi example
    declared = [(t.get("spec") or {}).get("topicName") or t["metadata"]["name"] for t in topics]
    if sorted(declared) != sorted(code.topics.all):
        problems.append(f"k8s/examples KafkaTopics {sorted(declared)} are not the code's Topics.all {sorted(code.topics.all)} "
                        f"(missing: {sorted(set(code.topics.all) - set(declared))}, extra: {sorted(set(declared) - set(code.topics.all))})")
    users = {d["metadata"]["name"]: d for d in documents if d.get("kind") == "KafkaUser"}
    if not users:
        return problems

    def allowed(user: dict, kind: str, name: str, operation: str) -> bool:
        for acl in ((user.get("spec") or {}).get("authorization") or {}).get("acls") or []:
            resource = acl.get("resource") or {}
            pattern = resource.get("patternType", "literal")
            matches = resource.get("name") == name if pattern == "literal" else name.startswith(resource.get("name", "\0"))
            if resource.get("type") == kind and (matches or resource.get("name") == "*") and (
                    operation in (acl.get("operations") or [acl.get("operation")]) or "All" in (acl.get("operations") or [])):
                return True
        return False

    for svc, exe in code.executables.items():
        if not exe.consumed_topics:
            continue
        user = users.get(svc)
        if user is None:
            problems.append(f"k8s/examples: no KafkaUser {svc}")
            continue
        for topic in exe.consumed_topics:
            if not allowed(user, "topic", topic, "Read"):
                problems.append(f"k8s/examples KafkaUser {svc} may not Read {topic}, which {svc} consumes")
        if not allowed(user, "group", svc, "Read"):
            problems.append(f"k8s/examples KafkaUser {svc} may not use its consumer group {svc}")
        if not allowed(user, "topic", f"{svc}.dlq.v1", "Write"):
            problems.append(f"k8s/examples KafkaUser {svc} may not Write {svc}.dlq.v1, where its poison messages go")
    return problems
