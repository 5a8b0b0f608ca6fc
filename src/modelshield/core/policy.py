"""Policy: failing severity, suppressions, severity overrides, limits, allowlists and signature checks.

Read from `--policy FILE` (any TOML file, with the keys at its top level or in `[tool.modelshield]`) or
from `[tool.modelshield]` in the nearest pyproject.toml above the scanned paths. Unknown keys are errors: a
typo in a security gate must not pass silently. Suppression globs match paths relative to the policy
file's folder (and absolute paths), so a policy means the same whichever way a path was typed.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from modelshield.core.findings import MEMBER_SEPARATOR, Finding, Location
from modelshield.core.limits import Limits
from modelshield.core.rules import CATALOGUE, Severity

#: A file name, as a string or a path object (pathlib is not imported: it costs start-up time).
StrPath = str | os.PathLike[str]


class PolicyError(ValueError):
    """The policy is invalid; the CLI prints it on one line and exits 2."""


class Suppression(NamedTuple):
    """Silence a rule (glob on rule id) for locations matching a glob; the reason is reported."""

    rule: str
    path: str = "*"
    reason: str = ""

    def matches(self, rule_id: str, names: Iterable[str]) -> bool:
        """Whether it silences `rule_id` at a location known by `names` (see `location_names`)."""
        if not fnmatch.fnmatchcase(rule_id, self.rule.upper()):
            return False
        glob = self.path.replace(os.sep, "/")
        while glob.startswith("./"):
            glob = glob[2:]
        return any(fnmatch.fnmatchcase(name, glob) for name in names)


def location_names(location: Location, base_dir: str | None) -> list[str]:
    """What suppression globs are matched on: the file's path relative to `base_dir` (the policy file's
    folder; the working directory for a policy built in code; `../` when above it) and its absolute path,
    each alone and with the member chain (`file!member`); '/'-separated and normalised, so `d1`, `./d1`,
    `.` and an absolute path give the same names."""
    full = os.path.abspath(location.path)
    files = [full]
    base = base_dir or os.getcwd()
    if os.path.splitdrive(full)[0] == os.path.splitdrive(base)[0]:  # no relative path to another drive
        files.insert(0, os.path.relpath(full, base))
    files = [name.replace(os.sep, "/") for name in files]
    if location.members:
        files += [MEMBER_SEPARATOR.join((name, *location.members)) for name in files]
    return files


@dataclass(frozen=True)
class Policy:
    fail_on: Severity = Severity.MEDIUM
    suppressions: tuple[Suppression, ...] = ()
    severity_overrides: Mapping[str, Severity] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    allow: Mapping[str, frozenset[str]] = field(default_factory=dict)
    source: str | None = None
    public_key: str | None = None
    require_signature: bool = False
    #: Hub repositories (globs, `org/*`) whose dependencies are not followed
    trusted_models: tuple[str, ...] = ()
    #: a dependency that was not scanned fails the scan (DEP003 becomes high)
    fail_on_unresolved_dependencies: bool = False
    #: the policy file's folder (absolute): suppression paths are relative to it
    base_dir: str | None = None
    #: rule-id globs: when given, findings of other rules are set aside as suppressed (`--select`)
    select: tuple[str, ...] = ()
    #: path globs of files not scanned inside scanned folders (`--exclude`)
    exclude: tuple[str, ...] = ()

    def allowed(self, key: str) -> frozenset[str]:
        """User-trusted entries of one allowlist (e.g. 'pickle-globals')."""
        return self.allow.get(key, frozenset())

    def apply(self, finding: Finding) -> tuple[Finding, Suppression | None]:
        """The finding with its severity override, and the suppression that silences it, if any."""
        override = self.severity_overrides.get(finding.rule_id)
        if override is not None:
            finding = replace(finding, severity=override)
        if self.select and not any(fnmatch.fnmatchcase(finding.rule_id, g) for g in self.select):
            return finding, Suppression(finding.rule_id, "*", f"not selected (select: {', '.join(self.select)})")
        if self.suppressions:
            names = location_names(finding.location, self.base_dir)
            for suppression in self.suppressions:
                if suppression.matches(finding.rule_id, names):
                    return finding, suppression
        return finding, None

    def excludes(self, path: str, root: str) -> bool:
        """Whether a file found under the scanned folder `root` is excluded: a glob without `/` matches
        any one part of its path below `root` (a file or folder name), a glob with `/` the path itself
        or a folder above it."""
        if not self.exclude:
            return False
        relative = os.path.relpath(path, root).replace(os.sep, "/")
        parts = relative.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        for raw in self.exclude:
            glob = raw.replace(os.sep, "/").strip("/")
            candidates = prefixes if "/" in glob else parts
            if any(fnmatch.fnmatchcase(c, glob) for c in candidates):
                return True
        return False

    def with_selection(
        self, select: Iterable[str] = (), ignore: Iterable[str] = (), exclude: Iterable[str] = ()
    ) -> Policy:
        """The policy with rule and path selections from the command line added to its own."""
        select, ignore = tuple(_rule_globs(select, "--select")), tuple(_rule_globs(ignore, "--ignore"))
        if not (select or ignore or exclude):
            return self
        ignored = tuple(Suppression(glob, "*", "ignored on the command line (--ignore)") for glob in ignore)
        return replace(
            self,
            select=select or self.select,
            suppressions=self.suppressions + ignored,
            exclude=self.exclude + tuple(exclude),
        )

    def trusts(self, repository: str) -> bool:
        """Whether a Hub repository id matches `trusted-models` (case-insensitively, as the Hub does)."""
        return any(fnmatch.fnmatchcase(repository.lower(), glob.lower()) for glob in self.trusted_models)

    def with_fail_on(self, severity: Severity | None) -> Policy:
        return self if severity is None else replace(self, fail_on=severity)


def _rule_globs(globs: Iterable[str], where: str) -> Iterator[str]:
    """Upper-cased rule-id globs; one that matches no rule is an error (a typo must not widen a gate)."""
    for raw in globs:
        glob = raw.strip().upper()
        if not glob:
            continue
        if not any(fnmatch.fnmatchcase(rule.id, glob) for rule in CATALOGUE):
            raise PolicyError(f"{where}: {raw!r} matches no rule (see 'modelshield rules')")
        yield glob


_TOP_KEYS = {
    "select",
    "ignore",
    "exclude",
    "fail-on",
    "suppress",
    "severity",
    "limits",
    "allow",
    "public-key",
    "require-signature",
    "trusted-models",
    "fail-on-unresolved-dependencies",
}


def _check_keys(table: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise PolicyError(f"unknown key {unknown[0]!r} in {where} (allowed: {', '.join(sorted(allowed))})")


def _severity(value: Any, where: str) -> Severity:
    if not isinstance(value, str):
        raise PolicyError(f"{where} must be a severity name")
    try:
        return Severity.parse(value)
    except ValueError as exc:
        raise PolicyError(f"{where}: {exc}") from None


def parse_policy(
    table: Mapping[str, Any], allowlists: Iterable[str], source: str | None = None, base_dir: StrPath | None = None
) -> Policy:
    """Validate a `[tool.modelshield]`-shaped table; `allowlists` are the keys handlers accept.

    A relative `public-key` and the suppression paths are resolved against `base_dir` (the policy file's
    folder), so that a policy means the same thing from any working directory.
    """
    base_dir = None if base_dir is None else os.path.abspath(base_dir)
    where = source or "policy"
    _check_keys(table, _TOP_KEYS, where)
    fail_on = _severity(table.get("fail-on", "medium"), f"{where}: fail-on")

    suppressions = []
    raw_supp = table.get("suppress", [])
    if not isinstance(raw_supp, list):
        raise PolicyError(f"{where}: suppress must be an array of tables")
    for i, entry in enumerate(raw_supp):
        if not isinstance(entry, dict):
            raise PolicyError(f"{where}: suppress[{i}] must be a table")
        _check_keys(entry, {"rule", "path", "reason"}, f"{where}: suppress[{i}]")
        rule = entry.get("rule")
        if not isinstance(rule, str) or not rule:
            raise PolicyError(f"{where}: suppress[{i}] needs a rule id (globs allowed)")
        if not any(ch in rule for ch in "*?[") and rule not in CATALOGUE:
            raise PolicyError(f"{where}: suppress[{i}]: unknown rule {rule!r}")
        path = entry.get("path", "*")
        reason = entry.get("reason", "")
        if not isinstance(path, str) or not isinstance(reason, str):
            raise PolicyError(f"{where}: suppress[{i}]: path and reason must be strings")
        suppressions.append(Suppression(rule, path, reason))

    overrides: dict[str, Severity] = {}
    raw_sev = table.get("severity", {})
    if not isinstance(raw_sev, dict):
        raise PolicyError(f'{where}: severity must be a table of RULE = "level"')
    for rule_id, level in raw_sev.items():
        if rule_id not in CATALOGUE:
            raise PolicyError(f"{where}: severity: unknown rule {rule_id!r}")
        overrides[rule_id.upper()] = _severity(level, f"{where}: severity.{rule_id}")

    raw_limits = table.get("limits", {})
    if not isinstance(raw_limits, dict):
        raise PolicyError(f"{where}: limits must be a table")
    names = {n.replace("_", "-"): n for n in Limits.field_names()}
    _check_keys(raw_limits, names, f"{where}: limits")
    values: dict[str, int] = {}
    for key, value in raw_limits.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise PolicyError(f"{where}: limits.{key} must be a positive integer")
        values[names[key]] = value
    limits = Limits(**values)

    raw_allow = table.get("allow", {})
    if not isinstance(raw_allow, dict):
        raise PolicyError(f"{where}: allow must be a table of lists")
    _check_keys(raw_allow, allowlists, f"{where}: allow")
    allow: dict[str, frozenset[str]] = {}
    for key, entries in raw_allow.items():
        if not isinstance(entries, list) or not all(isinstance(e, str) and e for e in entries):
            raise PolicyError(f"{where}: allow.{key} must be a list of non-empty strings")
        allow[key] = frozenset(entries)

    public_key = table.get("public-key")
    if public_key is not None and (not isinstance(public_key, str) or not public_key):
        raise PolicyError(f"{where}: public-key must be the path of a PEM public key")
    if public_key is not None and base_dir is not None:
        public_key = os.path.join(base_dir, public_key)
    require_signature = table.get("require-signature", False)
    if not isinstance(require_signature, bool):
        raise PolicyError(f"{where}: require-signature must be true or false")

    trusted = table.get("trusted-models", [])
    if not isinstance(trusted, list) or not all(isinstance(t, str) and t for t in trusted):
        raise PolicyError(f'{where}: trusted-models must be a list of repository ids or globs ("org/*")')
    selections = {}
    for key in ("select", "ignore", "exclude"):
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise PolicyError(f"{where}: {key} must be a list of globs")
        selections[key] = value
    select = tuple(_rule_globs(selections["select"], f"{where}: select"))
    for glob in _rule_globs(selections["ignore"], f"{where}: ignore"):
        suppressions.append(Suppression(glob, "*", f"ignored by {where}"))
    fail_unresolved = table.get("fail-on-unresolved-dependencies", False)
    if not isinstance(fail_unresolved, bool):
        raise PolicyError(f"{where}: fail-on-unresolved-dependencies must be true or false")

    return Policy(
        fail_on,
        tuple(suppressions),
        overrides,
        limits,
        allow,
        source,
        public_key,
        require_signature,
        tuple(trusted),
        fail_unresolved,
        base_dir,
        select,
        tuple(selections["exclude"]),
    )


class _TomlError(ValueError):
    """A file that is not valid UTF-8 TOML."""


def _read_toml(path: StrPath) -> dict[str, Any]:
    """The TOML file's table; the parser is imported here because most scans read no TOML at all."""
    if sys.version_info >= (3, 11):
        import tomllib  # noqa: PLC0415
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # noqa: PLC0415
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _TomlError(str(exc)) from None
    return data


def _policy_table(data: Mapping[str, Any], where: str) -> Mapping[str, Any] | None:
    """The `[tool.modelshield]` table of a TOML document; None when it has none."""
    tool = data.get("tool", {})
    table = tool.get("modelshield") if isinstance(tool, dict) else None
    if table is not None and not isinstance(table, dict):
        raise PolicyError(f"{where}: tool.modelshield must be a table")
    return table


def load_policy_file(path: StrPath, allowlists: Iterable[str]) -> Policy:
    """Load `--policy FILE`, whatever its name: a `[tool.modelshield]` table (as in a pyproject.toml) or the
    same keys at the top level. Both in one file is ambiguous, and an error."""
    name = os.fspath(path)
    try:
        data = _read_toml(path)
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {name}: {exc.strerror or exc}") from None
    except (_TomlError, UnicodeDecodeError) as exc:
        raise PolicyError(f"policy file {name} is not valid TOML: {exc}") from None
    table = _policy_table(data, name)
    bare = sorted(key for key in data if key in _TOP_KEYS)
    if table is not None and bare:
        raise PolicyError(
            f"policy file {name} has both a [tool.modelshield] table and top-level policy keys "
            f"({', '.join(bare)}): keep one of them"
        )
    if table is not None:
        return parse_policy(table, allowlists, f"{name} [tool.modelshield]", os.path.dirname(name))
    if not bare and {"project", "build-system", "tool"} & set(data):
        raise PolicyError(f"policy file {name} has no [tool.modelshield] table")
    return parse_policy(data, allowlists, name, os.path.dirname(name))


def _start_folder(path: StrPath) -> str:
    folder = os.path.abspath(path)
    return folder if os.path.isdir(folder) else os.path.dirname(folder)


def find_policy_file(start: StrPath) -> str | None:
    """The nearest pyproject.toml with a `[tool.modelshield]` table at or above `start` (a folder, or a
    file's folder); pyproject.toml files without the table are passed over, as in a monorepo's packages."""
    folder = _start_folder(start)
    while True:
        candidate = os.path.join(folder, "pyproject.toml")
        if os.path.isfile(candidate) and _policy_table(_read_pyproject(candidate), candidate) is not None:
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _read_pyproject(path: str) -> dict[str, Any]:
    try:
        return _read_toml(path)
    except (OSError, _TomlError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read {path}: {exc}") from None


def discover_scan_policy(paths: Iterable[StrPath], allowlists: Iterable[str]) -> Policy | None:
    """The policy of the scanned paths: each path's nearest `[tool.modelshield]`. Paths that fall under
    different policies (or some under none) are an error: one scan has one policy, and applying one
    project's fail-on and suppressions to another's models would quietly change its verdict."""
    cache: dict[str, str | None] = {}  # by folder: a shell glob may give thousands of files in one folder

    def nearest(path: str) -> str | None:
        folder = _start_folder(path)
        if folder not in cache:
            cache[folder] = find_policy_file(folder)
        return cache[folder]

    found = [(os.fspath(path), nearest(os.fspath(path))) for path in paths]
    if not found:
        return None
    first, policy_file = found[0]
    for other, other_file in found[1:]:
        if other_file != policy_file:
            raise PolicyError(
                f"{first} and {other} fall under different policies ({policy_file or 'none'}; "
                f"{other_file or 'none'}): scan them separately or choose one with --policy"
            )
    return None if policy_file is None else load_policy_file(policy_file, allowlists)
