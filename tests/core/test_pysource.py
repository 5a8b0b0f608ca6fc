"""The shared Python-source analyser (`core/pysource.analyse_source`): what runs at load is judged by what
it does, however the code spells the call; real modelling files from the transformers 4.57.1 wheel
(Apache-2.0, committed as `tests/fixtures/remote_code/*.py.txt`) stay clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelshield.core.pysource import analyse_source, fold
from modelshield.core.rules import Severity

REMOTE_CODE = Path(__file__).resolve().parents[1] / "fixtures" / "remote_code"


def worst(source: str) -> Severity:
    problems, _ = analyse_source(source, "mod.py")
    return max((p.severity for p in problems), default=Severity.INFO)


#: Each form runs a command (or dynamic code) at import time or in a constructor: critical.
RUNS_AT_LOAD = {
    "star import": "from os import *\nsystem('id')\n",
    "sys.modules": "import sys\nsys.modules['os'].system('id')\n",
    "sys.modules built name": "import sys\nsys.modules['o' + 's'].system('id')\n",
    "module alias then local": "import os as o\nf = o.system\nf('id')\n",
    "local alias inside constructor": "import os as o\nclass A:\n    def __init__(self):\n        f = o.system\n"
    "        f('id')\n",
    "module object in a local": "import subprocess\nclass A:\n    def __init__(self):\n        s = subprocess\n"
    "        s.run(['id'])\n",
    "methodcaller": "import operator, os\noperator.methodcaller('system', 'id')(os)\n",
    "attrgetter": "from operator import attrgetter\nimport os\nattrgetter('system')(os)('id')\n",
    "getattr of a folded import": "getattr(__import__('o' + 's'), 'sys' + 'tem')('id')\n",
    "reversed and joined names": "getattr(__import__('so'[::-1]), ''.join(['sys', 'tem']))('id')\n",
    "chr-built name": "getattr(__import__(chr(111) + chr(115)), 'system')('id')\n",
    "importlib": "import importlib\nm = importlib.import_module('os')\nm.system('id')\n",
    "builtins dict": "__builtins__['eval']('1')\n",
    "builtins dict through an attribute": "__builtins__.__dict__['ev' + 'al']('1')\n",
    "default value bound to a command": "import os\ndef f(run=os.system):\n    run('id')\nf()\n",
    "command kept on self in a constructor": "import os\nclass A:\n    def __init__(self):\n"
    "        self.run = os.system\n",
    "callback registered at import": "import atexit, os\ndef f():\n    os.system('id')\natexit.register(f)\n",
    "thread target in a constructor": "import threading, subprocess\nclass A:\n    def __init__(self):\n"
    "        threading.Thread(target=self._run).start()\n    def _run(self):\n        subprocess.run(['id'])\n",
    "subclass walk": "x = ().__class__.__base__.__subclasses__()\n",
    "vars of builtins": "import builtins\nvars(builtins)['exec']('1')\n",
    "globals": "import os\nglobals()['os'].system('id')\n",
    "helper from constructor": "import os\nclass A:\n    def __init__(self):\n        self._setup()\n"
    "    def _setup(self):\n        os.system('id')\n",
    "module helper from a constructor": "import os\nclass A:\n    def __init__(self, s):\n        helper()\n"
    "def helper():\n    os.system('id')\n",
    "helper at import time, two levels": "import os\ndef a():\n    b()\ndef b():\n    os.system('id')\na()\n",
    "decorator defined in the file": "import os\ndef deco(f):\n    os.system('id')\n    return f\n@deco\n"
    "def g():\n    pass\n",
    "helper from a class decorator": "import subprocess\ndef register(c):\n    subprocess.run(['id'])\n"
    "    return c\n@register\nclass A:\n    pass\n",
}


@pytest.mark.parametrize("source", RUNS_AT_LOAD.values(), ids=RUNS_AT_LOAD.keys())
def test_every_spelling_of_a_command_at_load_is_critical(source: str) -> None:
    assert worst(source) is Severity.CRITICAL


def test_setstate_is_a_constructor_only_when_the_caller_says_so() -> None:
    """`__setstate__` runs when a pickle rebuilds the object (torch.package); remote code is not unpickled."""
    source = (
        "import os\nclass A:\n    def __setstate__(self, s):\n        helper()\ndef helper():\n    os.system('x')\n"
    )
    assert worst(source) is Severity.HIGH  # a command in code that runs when called is still high
    problems, _ = analyse_source(source, "m.py", frozenset({"__setstate__"}))
    assert problems[0].severity is Severity.CRITICAL
    assert "helper(), which runs at load" in problems[0].text


#: Each form touches the system at load without running a command: high.
ACTS_AT_LOAD = {
    "reads a home file": "data = open('~/.ssh/id_rsa').read()\n",
    "reads an absolute path": "import pathlib\nclass A:\n    def __init__(self):\n"
    "        self.k = pathlib.Path('/etc/passwd').read_text()\n",
    "reads the home folder": "import os\nclass A:\n    def __init__(self):\n"
    "        self.k = open(os.path.expanduser('~/.netrc')).read()\n",
    "computed open mode": "class A:\n    def __init__(self, m):\n        open('x', m).write('a')\n",
    "loads a pickle": "import pickle\nclass A:\n    def __init__(self):\n"
    "        self.m = pickle.load(open('w.pkl', 'rb'))\n",
    "unpickles embedded bytes": "import pickle, base64\nx = pickle.loads(base64.b64decode('gAR9lC4='))\n",
    "torch.load in a helper": "import torch\nclass A:\n    def __init__(self):\n        self.reload()\n"
    "    def reload(self):\n        self.sd = torch.load('other.bin')\n",
    "network in a helper": "import urllib.request\ndef fetch():\n    urllib.request.urlopen('http://x')\nfetch()\n",
    "imports a built name": "class A:\n    x = __import__('o' + 's')\n",
}


@pytest.mark.parametrize("source", ACTS_AT_LOAD.values(), ids=ACTS_AT_LOAD.keys())
def test_file_network_and_pickle_access_at_load_is_high(source: str) -> None:
    assert worst(source) is Severity.HIGH


def test_a_plain_read_at_load_is_low() -> None:
    """Tokenizers read their vocabulary in `__init__` (directly or through `load_vocab`): recorded, low."""
    source = "def load_vocab(f):\n    return open(f).read()\nclass T:\n    def __init__(self, f):\n"
    source += "        self.v = load_vocab(f)\n"
    problems, _ = analyse_source(source, "tok.py")
    assert [(p.severity, p.line) for p in problems] == [(Severity.LOW, 2)]
    assert "load_vocab(), which runs at load (reads a file)" in problems[0].text


QUIET = {
    "getattr on self": "class A:\n    def __init__(self, names):\n        for n in names:\n"
    "            setattr(self, n, getattr(self, n, None))\n",
    "getattr of a torch dtype": "import torch\nclass A:\n    def __init__(self, c):\n"
    "        self.d = getattr(torch, c.dtype)\n",
    "getattr of __name__": "def f(x):\n    return getattr(x, '__name__', None)\nf(int)\n",
    "tokenizer state round-trip": "import pickle\nclass T:\n    def __init__(self, s):\n"
    "        state = pickle.dumps(s)\n        self.s = pickle.loads(state)\n",
    "a helper only called later": "import os\nclass A:\n    def forward(self):\n        self.save()\n"
    "    def save(self):\n        os.remove('x')\n",
    "a local alias of a harmless call": "import os\nj = os.path.join\nclass A:\n    def __init__(self):\n"
    "        self.p = j('a', 'b')\n",
    "attrgetter of a parameter name": "import operator\ndef f(m, n):\n    return operator.attrgetter(n)(m)\n",
}


@pytest.mark.parametrize("source", QUIET.values(), ids=QUIET.keys())
def test_ordinary_model_code_is_quiet(source: str) -> None:
    problems, _ = analyse_source(source, "mod.py")
    assert problems == []


@pytest.mark.parametrize("name", sorted(p.name for p in REMOTE_CODE.glob("*.py.txt")))
def test_real_transformers_files_have_nothing_above_low(name: str) -> None:
    problems, _ = analyse_source((REMOTE_CODE / name).read_text(), name.removesuffix(".txt"))
    assert [p for p in problems if p.severity > Severity.LOW] == []


def test_the_real_tokenizer_reading_its_vocabulary_is_low() -> None:
    problems, _ = analyse_source((REMOTE_CODE / "tokenization_gpt2.py.txt").read_text(), "tokenization_gpt2.py")
    assert {p.severity for p in problems} == {Severity.LOW}
    assert any("open(vocab_file" in p.text and "in a constructor" in p.text for p in problems)


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("'o' + 's'", "os"),
        ("f'{\"o\"}s'", "os"),
        ("'so'[::-1]", "os"),
        ("'-'.join(('a', 'b'))", "a-b"),
        ("x + 's'", None),
    ],
)
def test_fold_reads_only_constant_strings(expression: str, value: str | None) -> None:
    import ast

    node = ast.parse(expression, mode="eval").body
    assert fold(node) == value


def test_real_remote_code_in_a_model_folder_stays_medium(tmp_path: Path) -> None:
    """DEP001 is medium for needing remote code; the real files add nothing above it."""
    import json

    from modelshield import scan

    for source in REMOTE_CODE.glob("*.py.txt"):
        (tmp_path / source.name.removesuffix(".txt")).write_text(source.read_text())
    auto_map = {"AutoModel": "modeling_olmo.OlmoModel", "AutoTokenizer": ["tokenization_gpt2.GPT2Tokenizer", None]}
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "olmo", "auto_map": auto_map}))
    report = scan([str(tmp_path)])
    (finding,) = [f for f in report.findings if f.rule_id == "DEP001"]
    assert finding.level is Severity.MEDIUM
    assert "modeling_olmo.py" in finding.details["analysed"]
