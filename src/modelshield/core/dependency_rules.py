"""The DEP rules: remote code, dependencies on other models, and what following them found."""

from __future__ import annotations

from modelshield.core.rules import Category, Rule, Severity

REMOTE_CODE = Rule(
    id="DEP001",
    title="Model needs remote code (trust_remote_code)",
    severity=Severity.MEDIUM,
    category=Category.MODEL_DEPENDENCY,
    overview="A configuration names Python code that the library imports from the model repository when "
    "the model is loaded with `trust_remote_code=True`: transformers `auto_map` and `custom_pipelines`, "
    "sentence-transformers module types outside `sentence_transformers`, diffusers custom pipelines and "
    "components, PEFT `auto_mapping` outside PEFT's import allowlist. The form `other/repo--module.Class` "
    "fetches the code from another repository. Code present in the scanned folder (or the resolved "
    "repository) is analysed statically: process execution, dynamic code, network access, file writes "
    "and dynamic imports at import time or in constructors raise the severity, with the lines as evidence.",
    attack="Remote code is ordinary Python that runs with the user's privileges as soon as the model "
    "loads. Users pass `trust_remote_code=True` out of habit, because popular models require it; an "
    "attacker publishes a model whose modelling file starts a shell, or points `auto_map` at a second "
    "repository that they change after the first one was reviewed.",
    impact="Arbitrary code execution when the model is loaded (import time and constructors) or used.",
    remediation="Load the model without `trust_remote_code` (use a model class built into the library), "
    "or review every file the finding names and pin the revision (`code_revision`) you reviewed.",
    example='`"auto_map": {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}` with '
    "`modeling_evil.py` calling `os.system(...)` at module level.",
)

DEPENDENCY = Rule(
    id="DEP002",
    title="Model depends on another model",
    severity=Severity.INFO,
    category=Category.MODEL_DEPENDENCY,
    overview="The file names another model, repository or file that the library loads with it: a PEFT "
    "base model, a configuration's `_name_or_path` (its origin, loaded by pipelines and some remote "
    "code), sentence-transformers modules, diffusers components, timm pretrained weights, a TFSMLayer "
    "SavedModel, a model loaded by a pickle. The dependency (`kind`, `ref`, `revision`) is in the "
    "finding's details and is resolved and scanned unless `--no-deps` is given.",
    attack="A clean-looking adapter or configuration can carry no payload at all and still compromise "
    "the user through the model it pulls in: the base model, a component, another repository.",
    impact="None by itself; what the dependency contains is reported through DEP003 and DEP004.",
    remediation="Make sure the dependency is scanned (it is followed by default; `modelshield deps PATH` "
    "shows the graph) and pin its revision.",
    example='`adapter_config.json` with `"base_model_name_or_path": "evil-org/llama-7b-base"`.',
)

NOT_SCANNED = Rule(
    id="DEP003",
    title="Dependency not scanned",
    severity=Severity.LOW,
    category=Category.MODEL_DEPENDENCY,
    overview="A dependency could not be resolved offline (not in the Hugging Face cache, a missing path, "
    "a URL), resolves through a link out of the cache, or lies beyond the dependency bounds "
    "(`max-dependency-depth`, `max-dependencies`), or `--download` could not fetch it (no network, a "
    "missing repository or revision, authentication), so it was not scanned. Bounds, cache escapes and "
    "failed downloads are medium; the policy's `fail-on-unresolved-dependencies = true` makes every such "
    "finding high.",
    attack="The loader fetches the dependency at load time, from a repository whose owner can change it "
    "at any moment; whatever it holds was outside this scan.",
    impact="Part of what loading the model runs was not reviewed.",
    remediation="Download the dependency into the cache (`modelshield scan --download`, or "
    "`huggingface-cli download ORG/NAME`) and scan again, or trust the publisher explicitly with the "
    "policy's `trusted-models`.",
    example="`base model meta-llama/Llama-2-7b-hf (revision main): not in the Hugging Face cache`",
)

DEPENDENCY_FINDINGS = Rule(
    id="DEP004",
    title="Dependency has findings",
    severity=Severity.HIGH,
    category=Category.MODEL_DEPENDENCY,
    overview="A dependency of this file (transitively) has findings. The severity is that of the worst "
    "one; the evidence is the chain from this file to it.",
    attack="The file itself can be clean: an adapter whose base model carries a pickle payload, a "
    "pickle whose only call loads another file, a configuration that pulls code from another repository.",
    impact="Loading this model loads the dependency, with everything its own findings describe.",
    remediation="Do not load the model until the dependency named in the chain is replaced by a clean "
    "one; see that dependency's own findings in the report.",
    example="`adapter_config.json -> base model evil-org/llama-7b-base -> pytorch_model.bin: posix.system(...)`",
)

DEPENDENCY_RULES = (REMOTE_CODE, DEPENDENCY, NOT_SCANNED, DEPENDENCY_FINDINGS)
