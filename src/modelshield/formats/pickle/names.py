"""How the loader names a global, and which pickle rule the catalogue's verdict on it breaks.

`find_class` in CPython maps Python-2 names through `_compat_pickle` below protocol 3 and walks dotted
names with `getattr`; C-accelerated aliases (`posix`, `_io`, ...) are the same objects as their public
modules. What a callable does is the core catalogue's knowledge (`modelshield.core.callables`); this
module only spells names as the unpickler does and maps kinds to PKL rules.
"""

from __future__ import annotations

import _compat_pickle
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from modelshield.core import callables
from modelshield.core.callables import Kind, Trust, canonical
from modelshield.core.rules import Rule, Severity
from modelshield.formats.pickle.rules import (
    CODE_EXECUTION,
    IMPORT_GADGET,
    MODEL_DEPENDENCY,
    PRIVATE_WALK,
    SYSTEM_ACCESS,
    UNKNOWN_GLOBAL,
)

_KIND_RULES: dict[Kind, Rule] = {
    Kind.CODE: CODE_EXECUTION,
    Kind.GADGET: IMPORT_GADGET,
    Kind.WALK: PRIVATE_WALK,
    Kind.ACCESS: SYSTEM_ACCESS,
    Kind.LOADER: MODEL_DEPENDENCY,
    Kind.UNKNOWN: UNKNOWN_GLOBAL,
    Kind.LIBRARY: UNKNOWN_GLOBAL,
}


class Verdict(NamedTuple):
    """What a global is: the rule it breaks (None when trusted), why, and the severity when it is not
    the rule's own (a known library's data class is a low PKL006)."""

    rule: Rule | None
    reason: str = ""
    severity: Severity | None = None


SAFE = Verdict(None)


def pickle_verdict(verdict: callables.Verdict) -> Verdict:
    """The catalogue's verdict as a PKL rule, with the package the file needs when it names one."""
    rule = _KIND_RULES.get(verdict.kind)
    if rule is None:
        return SAFE
    severity = verdict.severity if verdict.severity != rule.severity else None
    return Verdict(rule, verdict.reason, severity)


class Name(NamedTuple):
    """A global as the loader resolves it (`module`, `qualname`) and as the file spells it (`raw`)."""

    module: str
    qualname: str
    raw_module: str
    raw_name: str

    @property
    def raw(self) -> str:
        return f"{self.raw_module}.{self.raw_name}"

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.qualname}"


valid_module = callables.valid_module


def resolve(module: str, name: str, proto: int) -> Name:
    """The loader's view of `GLOBAL module name` at protocol `proto`, with aliases normalised."""
    raw_module, raw_name = module, name
    if proto < 3:
        module, name = _compat(module, name)
    return Name(canonical(module), name, raw_module, raw_name)


def _compat(module: str, name: str) -> tuple[str, str]:
    mapped = _compat_pickle.NAME_MAPPING.get((module, name))
    if mapped is not None:
        return mapped
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _weight(verdict: Verdict) -> int:
    if verdict.rule is None:
        return -1
    return int(verdict.rule.severity if verdict.severity is None else verdict.severity)


class Judge:
    """Verdicts for globals under one policy, cached because pickles repeat the same few names."""

    def __init__(self, trust: Trust) -> None:
        self._trust = trust
        self._cache: dict[tuple[str, str], Verdict] = {}

    def __call__(self, name: Name, proto: int) -> Verdict:
        key = (name.raw, name.dotted)
        verdict = self._cache.get(key)
        if verdict is None:
            verdict = self._judge(name, proto)
            self._cache[key] = verdict
        return verdict

    def name(self, module: str, qualname: str) -> Verdict:
        """The verdict on a name the loader reaches another way (an attribute fetched with getattr)."""
        return pickle_verdict(self._trust.judge(module, qualname))

    def catalogue(self, module: str, qualname: str) -> callables.Verdict:
        """The catalogue's own verdict under the policy (for code the pickle carries)."""
        return self._trust.judge(module, qualname)

    def state(self, name: Name, state: Mapping[str, object] | Sequence[object]) -> Verdict | None:
        """What the class's `__setstate__` does with this constant state, when the catalogue knows."""
        found = callables.judge_state(name.module, name.qualname, state)
        if found is None or self._trust.trusts(name.module, name.qualname):
            return None
        return pickle_verdict(found)

    def _judge(self, name: Name, proto: int) -> Verdict:
        if name.raw in self._trust.exact:
            return SAFE
        verdicts = [self.name(name.module, name.qualname)]
        if proto >= 3 and verdicts[0].rule is not None:
            # A Python-2 spelling does not import under protocol 3+, but another loader may map it.
            module, qual = _compat(name.raw_module, name.raw_name)
            if (canonical(module), qual) != (name.module, name.qualname):
                other = self.name(module, qual)
                if other.rule is not None:
                    verdicts.append(other)
        return max(verdicts, key=_weight)
