"""Remote code (the `.py` files a config's `auto_map` names): which files a loader would import, read
from the model folder and analysed with the shared Python-source analyser (`modelshield.core.pysource`)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator

from modelshield.core.dependency_rules import REMOTE_CODE
from modelshield.core.findings import Finding, Location
from modelshield.core.pysource import CodeProblem, analyse_source
from modelshield.core.rules import Severity

__all__ = ["CodeProblem", "analyse_modules", "code_finding", "module_names"]

#: A module name as `auto_map` gives it (`modeling_x`, or dotted for a file in a subfolder).
MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
#: Bounds: real modelling files are tens of kilobytes, with a handful of relative imports.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_FILES = 32
MAX_PROBLEMS = 20


def _module_file(folder: str, module: str) -> str | None:
    """The file of a module relative to `folder`, if the name is a plain module name and it exists."""
    if not MODULE_NAME.match(module):
        return None
    path = os.path.join(folder, *module.split(".")) + ".py"
    return path if os.path.isfile(path) else None


def analyse_modules(folder: str, modules: Iterable[str]) -> tuple[list[CodeProblem], list[str]]:
    """Problems in the named modules of `folder` and the modules they import relatively (as
    transformers fetches them too), and the files analysed (relative to `folder`); bounded."""
    queue = list(dict.fromkeys(modules))
    seen: set[str] = set()
    problems: list[CodeProblem] = []
    analysed: list[str] = []
    while queue and len(analysed) < MAX_FILES:
        module = queue.pop(0)
        path = _module_file(folder, module)
        if module in seen or path is None:
            continue
        seen.add(module)
        name = os.path.relpath(path, folder)
        analysed.append(name)
        if os.path.getsize(path) > MAX_FILE_BYTES:
            problems.append(CodeProblem(Severity.MEDIUM, name, 0, f"larger than {MAX_FILE_BYTES} bytes; not analysed"))
            continue
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8", "replace")
        found, relative = analyse_source(text, name)
        problems += found
        package = module.rpartition(".")[0]
        queue += [f"{package}.{r}" if package else r for r in relative]
    problems.sort(key=lambda p: (-p.severity, p.file, p.line))
    return problems[:MAX_PROBLEMS], analysed


def code_finding(location: Location, what: str, problems: list[CodeProblem], **details: object) -> Finding:
    """The DEP001 finding: medium for needing remote code, raised to the worst problem in the code."""
    severity = max([Severity.MEDIUM, *(p.severity for p in problems)])
    shown = "; ".join(str(p) for p in problems[:3])
    evidence = what + (f"; {shown}" if shown else "")
    return Finding(REMOTE_CODE, location, evidence, severity, {**details, "problems": [str(p) for p in problems]})


def module_names(references: Iterable[str]) -> Iterator[str]:
    """Module names of `module.Class` references (the class is the last component)."""
    for reference in references:
        module = reference.rpartition(".")[0]
        if module:
            yield module
