"""Hugging Face configuration files: the other models and the code they make a library load.

Recognised by content, never by name: Transformers configs (`model_type`, `architectures`, `auto_map`,
`custom_pipelines`, nested sub-configs, timm's `pretrained_cfg`), processor and tokenizer configs with
an `auto_map`, PEFT adapter configs, sentence-transformers `modules.json` and diffusers configs and
`model_index.json`. Each dependency becomes a DEP002 finding carrying `details["dependency"]`, which the
scan then resolves and follows (`modelshield.deps.walk`); code the library would import is DEP001, raised
by a static analysis of the files when they are next to the config. Tokenizer configs that hold a chat
template belong to `templates.TokenizerConfigHandler`, which reports their dependencies through
`config_findings` so that one file is never claimed by two of these analysers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from modelshield.core.dependencies import Dependency, named
from modelshield.core.dependency_rules import DEPENDENCY, DEPENDENCY_RULES, NOT_SCANNED
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.remote_code import CodeProblem, analyse_modules, code_finding, module_names
from modelshield.core.rules import Severity
from modelshield.core.source import Source
from modelshield.formats._json import json_document

#: Dependencies reported (and so followed) per file; a longer list is cut with a DEP003 finding.
MAX_DEPENDENCIES = 64
#: Code references kept per file, and nesting and objects visited in a config's sub-configs.
MAX_CODE_REFERENCES = 64
MAX_NESTING = 8
MAX_VISITED = 5_000
#: What PEFT imports an `auto_mapping.parent_library` from without asking (peft's `import_allowlist`).
PEFT_IMPORT_ALLOWLIST = frozenset({"transformers", "diffusers", "lerobot", "megatron", "megatron_core"})
#: Libraries diffusers loads components from itself (its LOADABLE_CLASSES); others may be custom code.
DIFFUSERS_LIBRARIES = frozenset({"diffusers", "transformers", "onnxruntime"})

_MARKERS = (
    b'"model_type"',
    b'"architectures"',
    b'"auto_map"',
    b'"custom_pipelines"',
    b'"pretrained_cfg"',
    b'"peft_type"',
    b'"_diffusers_version"',
    b'"_name_or_path"',
)
_TRANSFORMERS_KEYS = frozenset({"model_type", "architectures", "auto_map", "custom_pipelines", "pretrained_cfg"})


class CodeReference(NamedTuple):
    """Code a config makes the library import: `what` names the setting, `reference` is `module.Class`."""

    what: str
    reference: str
    repository: str | None = None
    folder: str = ""  # subfolder of the config's folder that holds the module (diffusers components)

    def __str__(self) -> str:
        where = f" from {self.repository}" if self.repository else ""
        return f"{self.what} -> {self.reference}{where}"


@dataclass
class Needs:
    """What one config needs: code, and other models or files."""

    code: list[CodeReference] = field(default_factory=list)
    dependencies: list[Dependency] = field(default_factory=list)

    def add(self, dependency: Dependency | None) -> None:
        if dependency is not None and dependency not in self.dependencies:
            self.dependencies.append(dependency)

    def add_code(self, what: str, value: Any, folder: str = "") -> None:
        """A `module.Class` or `repo--module.Class` reference; the other repository is a dependency too."""
        if not isinstance(value, str) or not value or len(self.code) >= MAX_CODE_REFERENCES:
            return
        repository, _, reference = value.rpartition("--")
        self.code.append(CodeReference(what, reference, repository or None, folder))
        if repository:
            files = [m.replace(".", "/") + ".py" for m in module_names([reference])]
            self.add(named(repository, "remote code", files=files))


def document_kind(doc: Any) -> str | None:
    """Which Hugging Face config the parsed JSON is, from its shape; None if it is none of them."""
    if isinstance(doc, list):
        entries = doc[:1000]
        modules = all(isinstance(e, dict) and isinstance(e.get("type"), str) and "path" in e for e in entries)
        return "modules" if entries and modules else None
    if not isinstance(doc, dict) or "chat_template" in doc or ("class_name" in doc and "config" in doc):
        return None  # chat templates are templates.py's, Keras configs keras.py's
    if isinstance(doc.get("peft_type"), str):
        return "adapter"
    if "_diffusers_version" in doc and "_class_name" in doc:
        return "diffusers"
    if _TRANSFORMERS_KEYS & set(doc) or isinstance(doc.get("_name_or_path"), str):
        return "transformers"
    return None


def read_config(source: Source) -> tuple[str, Any] | None:
    doc = json_document(source, *_MARKERS) or json_document(source, b'"type"', opening=b"[")
    kind = document_kind(doc)
    return None if kind is None else (kind, doc)


def _auto_map(needs: Needs, value: Any, where: str) -> None:
    if not isinstance(value, dict):
        return
    for auto_class, target in list(value.items())[:MAX_CODE_REFERENCES]:
        for reference in target if isinstance(target, list) else [target]:  # tokenizers: [slow, fast]
            needs.add_code(f"{where}auto_map {auto_class}", reference)


def _transformers(needs: Needs, doc: dict[str, Any]) -> None:
    """`auto_map`, `custom_pipelines`, `_name_or_path` and timm's `pretrained_cfg`, at every level of
    nested sub-configs (`text_config`, `vision_config`, `encoder`, `decoder`...)."""
    stack: list[tuple[str, dict[str, Any], int]] = [("", doc, 0)]
    visited = 0
    while stack and visited < MAX_VISITED:
        where, obj, depth = stack.pop()
        visited += 1
        prefix = f"{where} " if where else ""
        _auto_map(needs, obj.get("auto_map"), prefix)
        pipelines = obj.get("custom_pipelines")
        if isinstance(pipelines, dict):
            for task, spec in list(pipelines.items())[:MAX_CODE_REFERENCES]:
                if isinstance(spec, dict):
                    needs.add_code(f"{prefix}custom_pipelines {task}", spec.get("impl"))
        needs.add(named(obj.get("_name_or_path"), f"{prefix}origin", required=False))
        pretrained = obj.get("pretrained_cfg")
        if isinstance(pretrained, dict):
            needs.add(named(pretrained.get("hf_hub_id"), "pretrained weights", required=False))
            needs.add(named(pretrained.get("url"), "pretrained weights", required=False))
            needs.add(named(pretrained.get("file"), "pretrained weights", hub=False, required=False))
        if depth < MAX_NESTING:
            stack += [(key, value, depth + 1) for key, value in obj.items() if isinstance(value, dict)]


def _adapter(needs: Needs, doc: dict[str, Any]) -> None:
    needs.add(named(doc.get("base_model_name_or_path"), "base model", doc.get("revision")))
    mapping = doc.get("auto_mapping")
    if isinstance(mapping, dict):
        library = mapping.get("parent_library")
        if isinstance(library, str) and library.split(".")[0] not in PEFT_IMPORT_ALLOWLIST:
            reference = f"{library}.{mapping.get('base_model_class')}"
            needs.code.append(CodeReference("auto_mapping parent_library", reference))


def _modules(needs: Needs, doc: list[dict[str, Any]]) -> None:
    for entry in doc[:MAX_CODE_REFERENCES]:
        kind, path = entry["type"], entry.get("path")
        if not kind.startswith("sentence_transformers."):
            needs.add_code(f"module {entry.get('name', path)!s} type", kind)
        if isinstance(path, str) and path.strip("./"):  # "" is the model folder itself
            needs.add(named(path, "module", hub=False))


def _diffusers(needs: Needs, doc: dict[str, Any], folder: str | None) -> None:
    pipeline = doc.get("_class_name")
    if isinstance(pipeline, list) and len(pipeline) == 2 and all(isinstance(p, str) for p in pipeline):
        needs.add_code("custom pipeline _class_name", ".".join(pipeline))
    needs.add(named(doc.get("_name_or_path"), "origin", required=False))
    for name, spec in list(doc.items())[: MAX_DEPENDENCIES * 4]:
        if name.startswith("_") or not isinstance(spec, list) or len(spec) != 2 or not isinstance(spec[0], str):
            continue
        needs.add(named(name, "component", hub=False))
        library = spec[0]
        # A library diffusers does not know is a module file in the component's folder (custom component).
        custom = folder is not None and os.path.isfile(os.path.join(folder, name, f"{library}.py"))
        if library.split(".")[0] not in DIFFUSERS_LIBRARIES and custom:
            needs.add_code(f"component {name}", f"{library}.{spec[1]}", folder=name)


def config_needs(kind: str, doc: Any, folder: str | None) -> Needs:
    needs = Needs()
    if kind == "modules":
        _modules(needs, doc)
    elif kind == "adapter":
        _adapter(needs, doc)
    elif kind == "diffusers":
        _diffusers(needs, doc, folder)
    else:
        _transformers(needs, doc)
    return needs


def config_findings(ctx: Context, kind: str, doc: Any) -> Iterator[Finding]:
    """DEP001 for the code a config needs (analysed when next to it), DEP002 for each dependency."""
    folder = None if ctx.location.members else os.path.dirname(ctx.location.path) or "."
    needs = config_needs(kind, doc, folder)
    if needs.code:
        local = [c for c in needs.code if c.repository is None]
        problems: list[CodeProblem] = []
        analysed: list[str] = []
        if folder is not None:  # modules of a component folder are named as in a package: `unet.my_unet`
            modules = [f"{c.folder}.{m}" if c.folder else m for c in local for m in module_names([c.reference])]
            problems, analysed = analyse_modules(folder, modules)
        shown = ", ".join(str(c) for c in needs.code[:4]) + (", ..." if len(needs.code) > 4 else "")
        code = [{"what": c.what, "reference": c.reference, "repository": c.repository} for c in needs.code]
        yield code_finding(ctx.location, f"needs remote code: {shown}", problems, code=code, analysed=analysed)
    for dependency in needs.dependencies[:MAX_DEPENDENCIES]:
        need = "" if dependency.required else " (not needed to load this model; followed when available)"
        yield ctx.finding(DEPENDENCY, f"{dependency.label} ({dependency.kind}){need}", **dependency.details())
    if len(needs.dependencies) > MAX_DEPENDENCIES:
        rest = len(needs.dependencies) - MAX_DEPENDENCIES
        evidence = f"{rest} more dependencies not followed (more than {MAX_DEPENDENCIES})"
        yield ctx.finding(NOT_SCANNED, evidence, severity=Severity.MEDIUM)


class HfConfigHandler(Handler):
    name = "hf-config"
    label = "Hugging Face configuration"
    rules = DEPENDENCY_RULES

    def detect(self, source: Source) -> bool:
        return read_config(source) is not None

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        config = read_config(source)
        assert config is not None
        yield from config_findings(ctx, *config)
