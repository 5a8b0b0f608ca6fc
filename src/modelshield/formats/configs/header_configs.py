"""Configs stored as strings in a model file's header (safetensors `__metadata__`), which some projects
instantiate on load: `hydra.utils.instantiate(json.loads(metadata["config"]))`, or
`OmegaConf.create(metadata["config"])` followed by `instantiate`, with no file of their own to scan.

No mainstream loader does this by itself (safetensors only returns the strings), so a value is judged
only when it parses as a JSON or YAML document that a config loader would act on: `_target_`, NeMo
`target`/`cls`, OmegaConf interpolations or PyYAML python tags. It is read with the shared bounded reader
(`yaml_tree`; JSON is YAML) and judged with the same Hydra and PyYAML analysis as YAML files
(`hydra.analyse`, `yaml_config.pyyaml_problems`), so `os.system` is critical here as everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from modelshield.core.dependency_rules import DEPENDENCY
from modelshield.core.findings import Finding
from modelshield.core.handler import Context
from modelshield.formats.configs import hydra, yaml_tree
from modelshield.formats.configs.yaml_config import pyyaml_problems
from modelshield.formats.configs.yaml_rules import YAML_BOUNDS

#: Values longer than this, or past the header's total, are reported unparsed (configs are kilobytes; the
#: Hydra analysis costs about two seconds per megabyte).
MAX_VALUE = 256 * 1024
MAX_TOTAL = 1024 * 1024
#: Values looked at per header.
MAX_VALUES = 256
#: What a config loader acts on; values without any of these are data.
_MARKERS = ("_target_", "${", "!!python/", "target", "cls")


def metadata_findings(ctx: Context, metadata: Mapping[str, Any], where: str = "__metadata__") -> Iterator[Finding]:
    """Findings for the string values of a header mapping that hold a config a loader would instantiate."""
    budget = MAX_TOTAL
    for key, value in list(metadata.items())[:MAX_VALUES]:
        if not isinstance(value, str) or not any(m in value for m in _MARKERS):
            continue
        member = f"{where}[{key}]"
        if len(value) > min(MAX_VALUE, budget):
            evidence = f"{member}: {len(value)} characters naming config keys, over the analysis bound; not analysed"
            yield ctx.finding(YAML_BOUNDS, evidence, member=member, limit="max_value")
            continue
        budget -= len(value)
        try:
            stream = yaml_tree.parse(value.encode("utf-8"))
        except yaml_tree.YamlSyntax:
            continue  # not a document any config loader reads
        except yaml_tree.YamlLimit as exc:
            yield ctx.finding(YAML_BOUNDS, f"{member}: {exc.detail}", member=member, limit=exc.limit)
            continue
        for doc in stream.documents:
            if isinstance(doc, yaml_tree.Scalar) and doc.tag is None:
                continue  # a plain string that merely contains a marker word
            yield from _document(ctx, doc, member)


def _document(ctx: Context, doc: yaml_tree.Node, member: str) -> Iterator[Finding]:
    analysis = hydra.analyse(doc)
    for problem in [*pyyaml_problems(doc), *analysis.problems]:
        evidence = f"{member}: {problem.evidence} (a config stored in the file's header)"
        yield ctx.finding(problem.rule, evidence, severity=problem.severity, member=member, **problem.details)
    for dependency, _ in analysis.dependencies[: hydra.MAX_PROBLEMS]:
        evidence = f"{member}: {dependency.label} ({dependency.kind})"
        yield ctx.finding(DEPENDENCY, evidence, member=member, **dependency.details())
