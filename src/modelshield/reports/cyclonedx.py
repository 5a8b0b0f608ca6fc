"""CycloneDX 1.6 ML-BOM (`scan --format cyclonedx`): the models scanned, what they load, and the findings.

One `machine-learning-model` component per model (a scanned file or folder, and each dependency the
scan followed), with its files as nested components carrying their SHA-256, the format identified from
their bytes, the Hugging Face repository and commit when the file sits in a cache snapshot, and the
model-card facts its `config.json` declares. The dependency graph becomes the BOM's `dependencies`, and
every unsuppressed finding a vulnerability with its rule id, severity, location and fix. The document is
built with cyclonedx-python-lib (the optional `cyclonedx` extra) so that it follows the specification;
only `modelCard`, which that library cannot express yet, is added to its output.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from modelshield.core.dependencies import Graph, Node
from modelshield.core.files import hub_snapshot_file
from modelshield.core.findings import Finding
from modelshield.core.report import FileResult, Report
from modelshield.reports import FormatUnavailable, printable
from modelshield.reports.json_report import dumps

if TYPE_CHECKING:
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component

#: config.json keys that say what a model is, and where CycloneDX's model card keeps them.
_CARD_KEYS = {"model_type": "architectureFamily", "architectures": "modelArchitecture"}
_CONFIG_LIMIT = 1 << 20
_INSTALL_HINT = "the CycloneDX report needs cyclonedx-python-lib: pip install 'modelshield[cyclonedx]'"


def _hub_origin(path: str) -> tuple[str, str] | None:
    """(repo id, commit) of a file in a Hugging Face cache snapshot."""
    found = hub_snapshot_file(path)
    return None if found is None else found[:2]


def _model_card(folder: str) -> dict[str, str]:
    """Model-card parameters from the `config.json` beside a model's files (plain JSON, bounded)."""
    config = os.path.join(folder, "config.json")
    try:
        if os.path.getsize(config) > _CONFIG_LIMIT:
            return {}
        with open(config, "rb") as handle:
            data = json.loads(handle.read())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    card = {}
    for key, field in _CARD_KEYS.items():
        value = data.get(key)
        if isinstance(value, list) and value and isinstance(value[0], str):
            value = value[0]
        if isinstance(value, str) and value:
            card[field] = value[:200]
    return card


class _Builder:
    """Assembles the BOM; imports the library lazily so plain scans never pay for it."""

    def __init__(self, report: Report) -> None:
        from cyclonedx.model.bom import Bom  # noqa: PLC0415 - optional extra, imported on use

        self.report = report
        self.bom = Bom()
        self.results = {r.path: r for r in report.files}
        self.file_refs: dict[str, str] = {}
        self.cards: dict[str, dict[str, str]] = {}

    def build(self) -> Bom:
        from cyclonedx.model.component import Component, ComponentType  # noqa: PLC0415
        from cyclonedx.model.tool import ToolRepository  # noqa: PLC0415

        tool = Component(type=ComponentType.APPLICATION, name="modelshield", version=self.report.version)
        self.bom.metadata.tools = ToolRepository(components=[tool])
        graph = self.report.dependencies or self._graph_of_files()
        models = {node.id: self._model(node) for node in graph.nodes}
        for component in models.values():
            self.bom.components.add(component)
        for edge in graph.edges:
            if edge.source != edge.target and edge.source in models and edge.target in models:
                self.bom.register_dependency(models[edge.source], [models[edge.target]])
        for component in models.values():
            self.bom.register_dependency(component, [])
        self._vulnerabilities(r for r in self.report.files if r.findings)
        return self.bom

    def _graph_of_files(self) -> Graph:
        """Without a dependency walk, each model file is a model of its own."""
        graph = Graph()
        for result in self.report.files:
            if result.is_model or result.findings:
                node = Node(result.path, result.path, "root", "root", path=result.path, files=[result.path])
                graph.nodes.append(node)
        return graph

    def _model(self, node: Node) -> Component:
        from cyclonedx.model import Property  # noqa: PLC0415
        from cyclonedx.model.component import Component, ComponentType  # noqa: PLC0415
        from packageurl import PackageURL  # noqa: PLC0415 - installed with cyclonedx-python-lib

        base = node.path if node.path and os.path.isdir(node.path) else None
        files = [self._file(path, base) for path in node.files if self._listed(path)]
        origin = next((o for o in (_hub_origin(p) for p in node.files) if o is not None), None)
        repo, revision = (node.ref, node.revision) if node.kind == "hub" else origin or (None, None)
        purl = None
        if repo is not None:
            namespace, _, name = repo.rpartition("/")
            purl = PackageURL(type="huggingface", namespace=namespace or None, name=name, version=revision)
        properties = [Property(name="modelshield:resolution", value=node.resolution)]
        if node.verdict is not None:
            properties.append(Property(name="modelshield:verdict", value=node.verdict.label))
        if node.detail:
            properties.append(Property(name="modelshield:detail", value=printable(node.detail)))
        component = Component(
            type=ComponentType.MACHINE_LEARNING_MODEL,
            name=printable(repo or node.ref),
            version=revision,
            bom_ref=f"model:{printable(node.id)}",
            purl=purl,
            properties=properties,
            components=files,
        )
        folder = base
        if folder is None and node.files:
            folder = os.path.dirname(node.files[0])
        card = _model_card(folder) if folder is not None else {}
        if card:
            self.cards[str(component.bom_ref)] = card
        return component

    def _listed(self, path: str) -> bool:
        """Model files and files with findings are parts of the model; a README is not."""
        result = self.results.get(path)
        return result is not None and (result.is_model or bool(result.findings))

    def _file(self, path: str, base: str | None = None) -> Component:
        from cyclonedx.model import HashAlgorithm, HashType, Property  # noqa: PLC0415
        from cyclonedx.model.component import Component, ComponentType  # noqa: PLC0415

        from modelshield.integrity.hashing import sha256_file  # noqa: PLC0415

        result: FileResult = self.results[path]
        ref = f"file:{printable(path)}"
        self.file_refs[path] = ref
        hashes = []
        if os.path.isfile(path):
            with contextlib.suppress(OSError):  # the scan already reported the file as unreadable
                hashes.append(HashType(alg=HashAlgorithm.SHA_256, content=sha256_file(path)))
        properties = [
            Property(name="modelshield:format", value=result.format),
            Property(name="modelshield:size", value=str(result.size)),
        ]
        worst = result.max_severity
        if worst is not None:
            properties.append(Property(name="modelshield:max_severity", value=worst.label))
        return Component(
            type=ComponentType.FILE,
            name=printable(os.path.relpath(path, base) if base else os.path.basename(path) or path),
            bom_ref=ref,
            hashes=hashes,
            properties=properties,
        )

    def _vulnerabilities(self, results: Iterable[FileResult]) -> None:
        from cyclonedx.model import Property  # noqa: PLC0415
        from cyclonedx.model.vulnerability import (  # noqa: PLC0415
            BomTarget,
            Vulnerability,
            VulnerabilityRating,
            VulnerabilityScoreSource,
            VulnerabilitySeverity,
            VulnerabilitySource,
        )

        source = VulnerabilitySource(name="modelshield")
        count = 0
        for result in results:
            for finding in result.findings:
                count += 1
                target = self.file_refs.get(result.path) or self._orphan(result)
                self.bom.vulnerabilities.add(
                    Vulnerability(
                        bom_ref=f"finding-{count}",
                        id=finding.rule_id,
                        source=source,
                        ratings=[
                            VulnerabilityRating(
                                source=source,
                                severity=VulnerabilitySeverity(finding.level.label),
                                method=VulnerabilityScoreSource.OTHER,
                            )
                        ],
                        description=finding.title,
                        detail=_detail(finding),
                        recommendation=finding.remediation,
                        affects=[BomTarget(ref=target)],
                        properties=[
                            Property(name="modelshield:location", value=printable(str(finding.location))),
                            Property(name="modelshield:category", value=finding.category.value),
                            Property(name="modelshield:threat-page", value=f"modelshield explain {finding.rule_id}"),
                        ],
                    )
                )

    def _orphan(self, result: FileResult) -> str:
        """A file with findings that no model node lists (a stray file in a scanned folder)."""
        component = self._file(result.path)
        self.bom.components.add(component)
        return str(component.bom_ref)


def _detail(finding: Finding) -> str:
    return printable(f"{finding.location}: {finding.evidence}")


def _with_model_cards(document: dict[str, Any], cards: dict[str, dict[str, str]]) -> dict[str, Any]:
    for component in document.get("components", []):
        card = cards.get(component.get("bom-ref", ""))
        if card:
            component["modelCard"] = {"modelParameters": card}
    return document


def require() -> None:
    """Refuse the format before a scan starts when its optional dependency is missing."""
    try:
        import cyclonedx  # noqa: F401, PLC0415
    except ImportError:
        raise FormatUnavailable(_INSTALL_HINT) from None


def render(report: Report, verbose: bool = False, color: bool = False) -> str:
    """The BOM as CycloneDX 1.6 JSON."""
    builder = _Builder(report)
    bom = builder.build()
    from cyclonedx.output.json import JsonV1Dot6  # noqa: PLC0415

    document = json.loads(JsonV1Dot6(bom).output_as_string())
    return dumps(_with_model_cards(document, builder.cards))
