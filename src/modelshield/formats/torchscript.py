"""TorchScript code members: recorded, not analysed.

`torch.jit.save` writes a zip whose pickles (`data.pkl`, `constants.pkl`) the pickle analyser scans like
any other, and whose `code/__torch__/...py` members hold the model's compiled program as Python-like
source. `torch.jit.load` compiles that source; it runs when the model is called. The zip walker hands
each member to the engine, which identifies it by content: this handler claims the source that
TorchScript's printer writes and records it, naming any custom operator namespaces it calls.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.rules import Category, Rule, Severity
from modelshield.core.source import Source

TORCHSCRIPT_CODE = Rule(
    id="TSC001",
    title="TorchScript code present",
    severity=Severity.INFO,
    category=Category.INFERENCE_TIME_CODE,
    overview="The archive carries TorchScript source (`code/__torch__/...`): the program `torch.jit.load` "
    "compiles and runs whenever the model is called. Its pickles are scanned separately; the code itself "
    "is recorded here, with the custom operator namespaces (`torch.ops.<namespace>`) it calls.",
    attack="TorchScript cannot import Python modules, but it calls any operator registered in the process: "
    "`torch.ops.<namespace>.<op>` reaches native code that a library, or an earlier pickle, registered. An "
    "edited archive can also change what the model computes without touching its weights.",
    impact="Whatever the listed operators do runs at inference time; the model's behaviour is the code's.",
    remediation="Review the code members of models from untrusted sources, in particular calls to custom "
    "operators outside `aten` and `prim`; prefer weights-only formats where the architecture is your own code.",
)

MAX_CODE = 1 << 20
"""Bytes of a code member searched for operator calls."""

_PRINTED = re.compile(
    # the TorchScript importer compiles the file as source: blank lines and comments may come first
    r"(?:[ \t]*(?:#[^\n]*)?\r?\n)*(?:op_version_set = \d+\n)?(?:import __torch__[\w.]*\n)*"
    r"(?:class \w+\((?:Module|NamedTuple|Enum|Interface|ModuleInterface)\):\n  (?:__parameters__ = \[|\w+ : )"
    r"|def \w+\([^)]*\)(?: -> [^:\n]+)?:\n  \S)"
)
"""How TorchScript's printer starts a file: an nn.Module class with its parameter list, another
TorchScript class with `name : Type` fields, or a typed function with two-space indentation."""
_OPS = re.compile(r"\bops\.(\w+)\.(\w+)\(")
_BUILTIN_OPS = frozenset({"aten", "prim", "prims", "quantized", "_quantized", "profiler"})


class TorchScriptCodeHandler(Handler):
    name = "torchscript-code"
    label = "TorchScript code"
    rules = (TORCHSCRIPT_CODE,)

    def detect(self, source: Source) -> bool:
        try:
            text = source.head().decode("utf-8")
        except UnicodeDecodeError:
            return False
        return _PRINTED.match(text) is not None and ("Tensor" in text or "__torch__" in text)

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        text = source.read_at(0, MAX_CODE).decode("utf-8", "replace")
        custom = sorted({f"torch.ops.{ns}.{op}" for ns, op in _OPS.findall(text) if ns not in _BUILTIN_OPS})
        evidence = f"TorchScript code ({source.size} bytes)"
        if custom:
            evidence += "; calls custom operators " + ", ".join(custom[:20]) + (", ..." if len(custom) > 20 else "")
        yield ctx.finding(TORCHSCRIPT_CODE, evidence, custom_ops=custom)
