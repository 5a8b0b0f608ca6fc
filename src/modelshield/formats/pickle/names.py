"""How the loader names a global, and what modelshield thinks of that name.

`find_class` in CPython maps Python-2 names through `_compat_pickle` below protocol 3 and walks dotted
names with `getattr`; C-accelerated aliases (`posix`, `_io`, ...) are the same objects as their public
modules. Verdicts come from an exact allowlist first and a prefix catalogue second; anything unmatched
is an unknown global.
"""

from __future__ import annotations

import _compat_pickle
import re
from collections.abc import Iterable
from typing import NamedTuple

from modelshield.core.rules import Rule
from modelshield.formats.pickle.rules import (
    CODE_EXECUTION,
    IMPORT_GADGET,
    MODEL_DEPENDENCY,
    PRIVATE_WALK,
    SYSTEM_ACCESS,
    UNKNOWN_GLOBAL,
)

#: Modules that are the same object as a public one (C accelerators, OS-specific implementations).
ALIASES = {
    "posix": "os",
    "nt": "os",
    "posixpath": "os.path",
    "ntpath": "os.path",
    "__builtin__": "builtins",
    "exceptions": "builtins",
    "_io": "io",
    "_operator": "operator",
    "_pickle": "pickle",
    "cPickle": "pickle",
    "_codecs": "codecs",
    "_functools": "functools",
    "_collections": "collections",
    "copy_reg": "copyreg",
    "_socket": "socket",
    "_ssl": "ssl",
    "_signal": "signal",
    "_imp": "importlib",
    "_frozen_importlib": "importlib",
    "_frozen_importlib_external": "importlib",
    "_thread": "threading",
    "_datetime": "datetime",
    "_decimal": "decimal",
    "_pydecimal": "decimal",
}

_CODE, _GADGET, _ACCESS, _DEPENDENCY = "code", "gadget", "access", "dependency"
_KIND_RULES = {_CODE: CODE_EXECUTION, _GADGET: IMPORT_GADGET, _ACCESS: SYSTEM_ACCESS, _DEPENDENCY: MODEL_DEPENDENCY}


def _entries(kind: str, names: str) -> dict[str, str]:
    return dict.fromkeys(names.split(), kind)


#: Dotted prefixes (a module, or module.attribute) -> kind; the longest matching prefix wins.
CATALOGUE: dict[str, str] = {
    **_entries(
        _CODE,
        """os subprocess _posixsubprocess pty popen2 commands multiprocessing asyncio _winapi
        builtins.eval builtins.exec builtins.execfile builtins.compile builtins.breakpoint builtins.apply
        runpy code codeop pdb bdb cProfile profile _lsprof timeit trace pip ensurepip venv site
        marshal types.CodeType types.FunctionType types.LambdaType types.MethodType atexit
        dill cloudpickle ctypes _ctypes cffi zipimport imp
        numpy.f2py numpy.testing numpy.distutils numpy.ctypeslib distutils setuptools idlelib
        torch._dynamo torch._inductor torch.jit torch.fx torch.package torch.multiprocessing torch.testing
        torch.utils.collect_env torch.utils.cpp_extension torch._export torch.export torch.compile
        uuid._get_command_stdout imaplib.IMAP4_stream _osx_support _aix_support _pyrepl platform
        IPython _pydev_bundle _pydevd_bundle pydevd _pydev_imps mlflow.projects numexpr
        pandas.eval pandas.core.computation sympy.sympify yaml.load yaml.unsafe_load yaml.full_load
        transformers.dynamic_module_utils keras.src.layers.core.lambda_layer""",
    ),
    **_entries(
        _GADGET,
        """builtins.getattr builtins.setattr builtins.delattr builtins.__import__ builtins.globals
        builtins.locals builtins.vars builtins.type builtins.super builtins.classmethod builtins.staticmethod
        builtins.property importlib pkgutil pydoc operator functools copyreg gc inspect logging.config
        torch.ops torch.classes torch._ops torch.library
        transformers.models.auto.auto_factory.getattribute_from_module""",
    ),
    **_entries(
        _ACCESS,
        """io builtins.open builtins.input builtins.help codecs.open shutil tempfile glob fileinput linecache
        filecmp pathlib zipfile tarfile gzip bz2 lzma sqlite3 dbm mmap fcntl termios resource pwd grp getpass
        socket ssl select selectors urllib urllib2 urllib3 http httplib ftplib smtplib smtpd poplib imaplib
        nntplib telnetlib xmlrpc xmlrpclib socketserver SocketServer requests httpx aiohttp paramiko boto3
        botocore websocket websockets logging.FileHandler logging.handlers webbrowser antigravity signal sys
        threading concurrent sched joblib sklearn.datasets torch.distributed torch.from_file torch.save
        numpy.fromfile numpy.memmap numpy.save numpy.savez numpy.savez_compressed numpy.savetxt numpy.loadtxt
        numpy.genfromtxt numpy.tofile numpy.DataSource numpy.lib.npyio numpy.lib._npyio_impl
        numpy.lib._datasource numpy.core.memmap numpy._core.memmap pandas.io pandas.read_csv pandas.read_table
        pandas.read_html pandas.read_json pandas.read_excel pandas.read_parquet pandas.read_feather
        pandas.read_sql pandas.read_sql_query pandas.read_sql_table pandas.read_xml pandas.read_hdf
        pandas.read_orc pandas.read_sas pandas.read_spss pandas.read_stata pandas.read_fwf pandas.read_clipboard
        pandas.HDFStore tensorflow.io""",
    ),
    **_entries(
        _DEPENDENCY,
        """pickle shelve dill.load dill.loads dill._dill.load dill._dill.loads cloudpickle.load cloudpickle.loads
        torch.load torch.serialization torch.hub torch.utils.model_zoo torch.storage._load_from_bytes
        torch.jit.load huggingface_hub joblib.load joblib.numpy_pickle.load joblib.numpy_pickle_compat
        numpy.load numpy.lib.npyio.load numpy.lib._npyio_impl.load numpy.lib.format pandas.read_pickle
        pandas.io.pickle onnx.load onnxruntime.InferenceSession safetensors tensorflow.saved_model
        keras.models.load_model keras.saving sklearn.externals.joblib""",
    ),
}

#: Final name components that identify a dangerous callable whatever module re-exports it.
BARE_NAMES: dict[str, str] = {
    **_entries(
        _CODE,
        """eval exec execfile system popen Popen spawnl spawnle spawnlp spawnv spawnve spawnvp posix_spawn
        check_output check_call getoutput getstatusoutput run_path run_module _run_code runstring runctx
        runcall import_module load_source load_module exec_module""",
    ),
    **_entries(
        _GADGET,
        "getattr setattr delattr attrgetter itemgetter methodcaller resolve_name locate getattribute_from_module",
    ),
    **_entries(
        _DEPENDENCY,
        """from_pretrained from_single_file load_from_checkpoint load_model hf_hub_download snapshot_download
        read_pickle load_dataset""",
    ),
}

#: Loaders whose bytes argument is itself a pickle (or a torch file): scanned as a nested payload.
NESTED_LOADERS = frozenset(
    """pickle.loads pickle._loads pickle.load dill.loads dill._dill.loads cloudpickle.loads
    torch.storage._load_from_bytes torch.load torch.serialization.load joblib.load
    numpy.load""".split()
)

_NUMPY_SCALARS = """bool_ bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 intc intp uintp uint longlong
ulonglong short ushort byte ubyte float16 float32 float64 half single double longdouble complex64 complex128
clongdouble csingle cdouble object_ str_ bytes_ void datetime64 timedelta64"""

_TORCH_STORAGE_SIZES = {
    "FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
    "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16, "QUInt8Storage": 1, "QInt8Storage": 1,
    "QInt32Storage": 4, "QUInt4x2Storage": 1, "QUInt2x4Storage": 1, "UntypedStorage": 1,
    "UInt16Storage": 2, "UInt32Storage": 4, "UInt64Storage": 8, "Float8_e4m3fnStorage": 1,
    "Float8_e5m2Storage": 1,
}  # fmt: skip

#: Bytes per element of each torch storage class, for walking legacy-format storage data.
TORCH_STORAGE_SIZES = {f"torch.{name}": size for name, size in _TORCH_STORAGE_SIZES.items()}

_TORCH_DTYPES = """float32 float float64 double float16 half bfloat16 complex32 chalf complex64 cfloat complex128
cdouble uint8 uint16 uint32 uint64 int8 int16 short int32 int int64 long bool quint8 qint8 qint32 quint4x2
quint2x4 float8_e4m3fn float8_e5m2 float8_e4m3fnuz float8_e5m2fnuz strided sparse_coo sparse_csr
contiguous_format channels_last channels_last_3d preserve_format per_tensor_affine per_channel_affine"""

#: Exact (module.qualname) pairs that framework checkpoints use and that were vetted for side effects.
ALLOWLIST = frozenset(
    [
        *(f"collections.{n}" for n in "OrderedDict defaultdict Counter deque".split()),
        *(
            f"builtins.{n}"
            for n in "set frozenset bytearray bytes complex slice range list dict tuple int "
            "float str bool object".split()
        ),
        "copyreg._reconstructor",
        "codecs.encode",
        *(f"datetime.{n}" for n in "datetime date time timedelta timezone".split()),
        "decimal.Decimal",
        "fractions.Fraction",
        "uuid.UUID",
        "re._compile",
        *(f"pathlib.{n}" for n in "Path PosixPath WindowsPath PurePath PurePosixPath PureWindowsPath".split()),
        *(f"{m}.{n}" for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")),
        "numpy.core.numeric._frombuffer",
        "numpy._core.numeric._frombuffer",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.matrix",
        "numpy.matrixlib.defmatrix.matrix",
        "numpy.ma.core._mareconstruct",
        "numpy.ma.core.MaskedArray",
        *(f"numpy.{n}" for n in _NUMPY_SCALARS.split()),
        *(f"numpy.random._pickle.{n}" for n in "__randomstate_ctor __generator_ctor __bit_generator_ctor".split()),
        *(
            f"numpy.random.{n}"
            for n in "_mt19937.MT19937 _pcg64.PCG64 _pcg64.PCG64DXSM _philox.Philox "
            "_sfc64.SFC64 bit_generator.SeedSequence bit_generator.__pyx_unpickle_SeedSequence "
            "mtrand.RandomState".split()
        ),
        *(
            f"scipy.sparse.{m}"
            for m in "_csr.csr_matrix _csc.csc_matrix _coo.coo_matrix _csr.csr_array "
            "_csc.csc_array _coo.coo_array csr.csr_matrix csc.csc_matrix coo.coo_matrix".split()
        ),
        "joblib.numpy_pickle.NumpyArrayWrapper",
        # joblib < 0.10 kept compressed arrays in sibling z-files, read back as raw array bytes.
        # (NDArrayWrapper is not here: it reads its sibling .npy with allow_pickle=True.)
        "joblib.numpy_pickle.ZNDArrayWrapper",
        "joblib.numpy_pickle_compat.ZNDArrayWrapper",
        *(
            f"torch._utils.{n}"
            for n in "_rebuild_tensor _rebuild_tensor_v2 _rebuild_tensor_v3 _rebuild_parameter "
            "_rebuild_parameter_with_state _rebuild_qtensor _rebuild_sparse_tensor _rebuild_nested_tensor "
            "_rebuild_device_tensor_from_numpy _rebuild_meta_tensor_no_storage _rebuild_wrapper_subclass "
            "_rebuild_device_tensor_from_cpu_tensor".split()
        ),
        "torch._tensor._rebuild_from_type_v2",
        # TorchScript archives: identity helpers that tag lists and values with their static type.
        *(
            f"torch.jit._pickle.{n}"
            for n in "build_intlist build_tensorlist build_doublelist build_boollist build_tensor_from_id "
            "restore_type_tag".split()
        ),
        # How torch pickles a sparse tensor's layout: a lookup among torch.layout values.
        "torch.serialization._get_layout",
        # Training scripts (fairseq and many others) store their parsed arguments in checkpoints.
        "argparse.Namespace",
        "torch._tensor.Tensor",
        "torch.Tensor",
        "torch.Size",
        "torch.device",
        "torch.dtype",
        "torch.nn.parameter.Parameter",
        "torch.nn.parameter.Buffer",
        "torch.nn.parameter.UninitializedParameter",
        "torch.storage.UntypedStorage",
        "torch.storage.TypedStorage",
        *TORCH_STORAGE_SIZES,
        *(f"torch.{n}" for n in _TORCH_DTYPES.split()),
    ]
)

#: Packages whose public or private CamelCase classes are trusted as classes (estimators, layers,
#: optimisers), outside the sub-packages listed in `_FAMILY_EXCLUDED_PARTS`.
#: `__torch__` names TorchScript classes, which torch.jit.load resolves from the archive's own code
#: and plain unpicklers cannot import at all.
CLASS_FAMILIES = ("sklearn", "xgboost", "lightgbm", "catboost", "torch.nn.modules", "torch.optim", "__torch__")
_FAMILY_EXCLUDED_PARTS = frozenset(
    "tests testing _testing externals conftest _build_utils experimental datasets _show_versions".split()
)
#: Classes these packages import from elsewhere that do I/O, spawn work or build code: a name
#: re-exported by a trusted module is still the foreign object.
_FOREIGN_CLASSES = frozenset(
    """FunctionType MethodType CodeType LambdaType ModuleType Namespace Thread Timer Process Popen Listener
    Client Connection HTTPServer BaseHTTPRequestHandler ThreadPoolExecutor ProcessPoolExecutor
    NamedTemporaryFile TemporaryDirectory TemporaryFile SpooledTemporaryFile Request Memory MemorizedFunc
    NumpyPickler NumpyUnpickler Pickler Unpickler Parallel Path PosixPath WindowsPath BytesIO StringIO
    FileIO TextIOWrapper BufferedReader BufferedWriter CDLL PyDLL LibraryLoader ZipFile TarFile
    InteractiveInterpreter InteractiveConsole Pdb Profile HTTPConnection HTTPSConnection FTP SMTP
    DataSource Parameter""".split()
)
_CLASS_NAME = re.compile(r"_?[A-Z][A-Za-z0-9_]*\Z|__pyx_unpickle_[A-Za-z]\w*\Z")
_MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")


class Verdict(NamedTuple):
    """What a global is: the rule it breaks (None when trusted) and why."""

    rule: Rule | None
    reason: str = ""


SAFE = Verdict(None)


class Name(NamedTuple):
    """A global as the loader resolves it (`module`, `qualname`) and as the file spells it (`raw`)."""

    module: str
    qualname: str
    raw_module: str
    raw_name: str

    @property
    def raw(self) -> str:
        return f"{self.raw_module}.{self.raw_name}"

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.qualname}"


def valid_module(text: str) -> bool:
    """Whether `__import__` could accept this module name at all."""
    return _MODULE.match(text) is not None


def resolve(module: str, name: str, proto: int) -> Name:
    """The loader's view of `GLOBAL module name` at protocol `proto`, with aliases normalised."""
    raw_module, raw_name = module, name
    if proto < 3:
        module, name = _compat(module, name)
    return Name(_alias(module), name, raw_module, raw_name)


def _compat(module: str, name: str) -> tuple[str, str]:
    mapped = _compat_pickle.NAME_MAPPING.get((module, name))
    if mapped is not None:
        return mapped
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _alias(module: str) -> str:
    head, dot, rest = module.partition(".")
    target = ALIASES.get(head)
    return module if target is None else target + dot + rest


def normalise_allow(entries: Iterable[str]) -> frozenset[str]:
    """User allowlist entries as dotted names ('mod:Qual' and 'mod.Qual' are the same)."""
    out: set[str] = set()
    for entry in entries:
        module, colon, qual = entry.strip().partition(":")
        out.add(f"{_alias(module)}.{qual}" if colon else _alias(entry.strip()))
    return frozenset(out)


class Judge:
    """Verdicts for globals under one policy, cached because pickles repeat the same few names."""

    def __init__(self, user_allowed: frozenset[str]) -> None:
        self._user = user_allowed
        self._cache: dict[tuple[str, str], Verdict] = {}

    def __call__(self, name: Name, proto: int) -> Verdict:
        key = (name.raw, name.dotted)
        verdict = self._cache.get(key)
        if verdict is None:
            verdict = self._judge(name, proto)
            self._cache[key] = verdict
        return verdict

    def trusted(self, module: str, qualname: str) -> bool:
        dotted = f"{module}.{qualname}"
        return dotted in ALLOWLIST or dotted in self._user or _family_class(module, qualname)

    def _judge(self, name: Name, proto: int) -> Verdict:
        if self.trusted(name.module, name.qualname) or name.raw in self._user:
            return SAFE
        verdicts = [_catalogue(name.module, name.qualname)]
        if proto >= 3:
            # A Python-2 spelling does not import under protocol 3+, but another loader may map it.
            module, qual = _compat(name.raw_module, name.raw_name)
            module = _alias(module)
            if (module, qual) != (name.module, name.qualname) and not self.trusted(module, qual):
                verdicts.append(_catalogue(module, qual))
        return max(verdicts, key=_weight)


def _weight(verdict: Verdict) -> int:
    return -1 if verdict.rule is None else int(verdict.rule.severity)


def _catalogue(module: str, qualname: str) -> Verdict:
    """Judge every component: the module prefix, each attribute walk, dunders and private walks."""
    parts = qualname.split(".")
    best = _lookup([*module.split("."), *parts])
    for i in range(len(parts)):
        # `torch.serialization` + `os.system` walks into the os module: judge each walked suffix.
        found = _lookup(parts, i)
        if found.rule is not None and _weight(found) > _weight(best):
            best = found
    kind = BARE_NAMES.get(parts[-1])
    if kind is not None:
        bare = Verdict(_KIND_RULES[kind], f"'{parts[-1]}' names a {_DESCRIPTIONS[kind]}")
        if _weight(bare) > _weight(best):
            best = bare
    if best.rule is None or best.rule.severity < PRIVATE_WALK.severity:
        dunder = [p for p in parts if p.startswith("__") and p.endswith("__") and len(p) > 4]
        private = [p for p in parts[1:] if p.startswith("_")] if len(parts) > 1 else []
        if dunder or private:
            what = (dunder or private)[0]
            return Verdict(PRIVATE_WALK, f"name walks through {'dunder' if dunder else 'private'} attribute '{what}'")
    if best.rule is None:
        return Verdict(UNKNOWN_GLOBAL, "not on the allowlist")
    return best


_KEY_PARTS = max(key.count(".") + 1 for key in CATALOGUE)

_DESCRIPTIONS = {
    _CODE: "callable that runs code or commands",
    _GADGET: "gadget that reaches arbitrary imports or attributes",
    _ACCESS: "callable with file, network or process access",
    _DEPENDENCY: "loader of other models or pickles",
}


def _lookup(parts: list[str], start: int = 0) -> Verdict:
    """The longest catalogue prefix of `parts[start:]`; only as many parts as a key can have are
    joined, so a name of thousands of components costs linear time."""
    for end in range(min(len(parts), start + _KEY_PARTS), start, -1):
        key = ".".join(parts[start:end])
        kind = CATALOGUE.get(key)
        if kind is not None:
            return Verdict(_KIND_RULES[kind], f"{key} is a {_DESCRIPTIONS[kind]}")
    return Verdict(None)


def _family_class(module: str, name: str) -> bool:
    """Estimator, layer and optimiser classes: CamelCase names in trusted packages, not re-exports.

    Such a class is only ever created (NEWOBJ, `copyreg._reconstructor`, REDUCE of the class) and given
    state with BUILD, which for these packages stores attributes. Dotted walks are never trusted.
    """
    if not any(module == f or module.startswith(f + ".") for f in CLASS_FAMILIES):
        return False
    if name in _FOREIGN_CLASSES or not _CLASS_NAME.match(name):
        return False
    return not any(p in _FAMILY_EXCLUDED_PARTS for p in module.split("."))
