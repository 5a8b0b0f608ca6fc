"""One catalogue of what a Python callable does when a loader imports it by name and calls it.

Pickle GLOBALs, Hydra `_target_`s, PyYAML `!!python/...` tags and skops schema nodes all name callables
that the loader imports and calls; each analyser asks `judge(module, qualname)` and reports the verdict
in its own rule. Verdicts come from, in order: the vetted allowlist (only rebuilds data), the catalogue
of dangerous prefixes and bare names (runs code, reaches other objects, touches the system, loads other
models), private and dunder walks, the classes of known libraries whose `__setstate__` or constructor
has side effects, then the data classes of known libraries; anything else is unknown.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from modelshield.core.findings import truncate
from modelshield.core.pysource import formula_problems
from modelshield.core.rules import Severity


class Kind(enum.Enum):
    """What calling (or importing) a callable does."""

    CODE = "runs code or commands"
    GADGET = "reaches arbitrary imports or attributes"
    WALK = "walks through private or dunder attributes"
    ACCESS = "touches files, the network or the process"
    LOADER = "loads another model or pickle"
    UNKNOWN = "is not in the catalogue"
    LIBRARY = "is a data class or helper of a known library"
    DATA = "only rebuilds data"


SEVERITY = {
    Kind.CODE: Severity.CRITICAL,
    Kind.GADGET: Severity.CRITICAL,
    Kind.WALK: Severity.CRITICAL,
    Kind.ACCESS: Severity.HIGH,
    Kind.LOADER: Severity.HIGH,
    Kind.UNKNOWN: Severity.MEDIUM,
    Kind.LIBRARY: Severity.LOW,
    Kind.DATA: Severity.INFO,
}


class Verdict(NamedTuple):
    """The catalogue's answer for one callable: what it does, the package it needs, how bad, and why."""

    kind: Kind
    package: str
    severity: Severity
    reason: str

    @property
    def trusted(self) -> bool:
        return self.kind is Kind.DATA


def _verdict(kind: Kind, package: str, reason: str, severity: Severity | None = None) -> Verdict:
    return Verdict(kind, package, SEVERITY[kind] if severity is None else severity, reason)


# --------------------------------------------------------------------------- spellings
#: Module prefixes that are the same object as another one (C accelerators, OS-specific
#: implementations, vendored or renamed homes); the longest matching prefix is replaced.
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
    "_collections_abc": "collections.abc",
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
    # joblib's old home inside scikit-learn (a vendored copy, later a shim): the same functions.
    "sklearn.externals.joblib": "joblib",
    # numpy 2 renamed numpy.core to numpy._core and keeps the old name as a forwarding shim.
    "numpy.core": "numpy._core",
}
_ALIAS_PARTS = max(key.count(".") + 1 for key in ALIASES)


def canonical(module: str) -> str:
    """The module a loader really gets for `module` (aliases and renamed homes resolved)."""
    parts = module.split(".")
    for end in range(min(len(parts), _ALIAS_PARTS), 0, -1):
        target = ALIASES.get(".".join(parts[:end]))
        if target is not None:
            return ".".join([target, *parts[end:]])
    return module


# --------------------------------------------------------------------------- vetted data
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

#: Bytes per element of each torch storage class (torch rebuilds tensors from them: data).
TORCH_STORAGE_SIZES = {f"torch.{name}": size for name, size in _TORCH_STORAGE_SIZES.items()}

_TORCH_DTYPES = """float32 float float64 double float16 half bfloat16 complex32 chalf complex64 cfloat complex128
cdouble uint8 uint16 uint32 uint64 int8 int16 short int32 int int64 long bool quint8 qint8 qint32 quint4x2
quint2x4 float8_e4m3fn float8_e5m2 float8_e4m3fnuz float8_e5m2fnuz strided sparse_coo sparse_csr
contiguous_format channels_last channels_last_3d preserve_format per_tensor_affine per_channel_affine"""

#: typing's special forms and generic aliases: pickled by name, subscripted with `operator.getitem`.
_TYPING = """Any Union Optional List Dict Tuple Set FrozenSet Type Callable Literal Final ClassVar Annotated
Sequence Mapping MutableMapping MutableSequence Iterable Iterator Generator Hashable Sized Collection
Container AbstractSet MutableSet Deque DefaultDict OrderedDict Counter ChainMap NamedTuple TypedDict
Protocol Generic TypeVar NoReturn Never Self LiteralString Required NotRequired TypeAlias Awaitable
Coroutine AsyncIterable AsyncIterator ByteString Reversible SupportsInt SupportsFloat SupportsIndex Text
AnyStr Pattern Match IO TextIO BinaryIO ForwardRef"""

_ABC = """Awaitable Coroutine AsyncIterable AsyncIterator AsyncGenerator Hashable Iterable Iterator Generator
Reversible Sized Container Callable Collection Set MutableSet Mapping MutableMapping MappingView KeysView
ItemsView ValuesView Sequence MutableSequence ByteString Buffer _CallableGenericAlias"""

_FUTURE = """_Feature all_feature_names nested_scopes generators division absolute_import with_statement
print_function unicode_literals barry_as_FLUFL generator_stop annotations"""


_PYTREE = "tree_flatten tree_unflatten tree_flatten_spec tree_leaves arg_tree_leaves TreeSpec LeafSpec"

#: Modules whose import runs nothing but their own (trusted) initialisation.
SAFE_MODULES = frozenset("torch math operator builtins numpy typing collections".split())


def _names(prefix: str, names: str) -> list[str]:
    return [f"{prefix}.{n}" for n in names.split()]


#: Exact names vetted to only rebuild data when called the way serializers call them.
ALLOWLIST = frozenset(
    [
        *_names("collections", "OrderedDict defaultdict Counter deque ChainMap"),
        *_names("collections.abc", _ABC),
        *_names("typing", _TYPING),
        *_names("__future__", _FUTURE),
        # Values and pure functions of values; `hash` and `len` are how some libraries key their tables.
        *_names(
            "builtins",
            "set frozenset bytearray bytes complex slice range list dict tuple int float str bool object len hash "
            "Ellipsis NotImplemented reversed enumerate zip min max abs round divmod sum sorted ord chr",
        ),
        *_names("types", "GenericAlias UnionType NoneType SimpleNamespace"),
        "copyreg._reconstructor",
        "codecs.encode",
        *_names("datetime", "datetime date time timedelta timezone"),
        *_names("enum", "Enum IntEnum Flag IntFlag StrEnum"),
        "decimal.Decimal",
        "fractions.Fraction",
        "uuid.UUID",
        "re._compile",
        *_names("pathlib", "Path PosixPath WindowsPath PurePath PurePosixPath PureWindowsPath"),
        *_names("numpy._core.multiarray", "_reconstruct scalar"),
        "numpy._core.numeric._frombuffer",
        *_names("numpy._core.records", "recarray record"),
        *_names("numpy", "ndarray dtype matrix recarray record"),
        *_names("numpy.rec", "recarray record"),
        "numpy.matrixlib.defmatrix.matrix",
        "numpy.ma.core._mareconstruct",
        "numpy.ma.core.MaskedArray",
        *_names("numpy", _NUMPY_SCALARS),
        *_names("numpy.random._pickle", "__randomstate_ctor __generator_ctor __bit_generator_ctor"),
        # numpy < 1.17 pickled RandomState through this module-level helper.
        "numpy.random.__RandomState_ctor",
        *_names(
            "numpy.random",
            "_mt19937.MT19937 _pcg64.PCG64 _pcg64.PCG64DXSM _philox.Philox _sfc64.SFC64 bit_generator.SeedSequence "
            "bit_generator.__pyx_unpickle_SeedSequence mtrand.RandomState",
        ),
        *_names(
            "scipy.sparse",
            "_csr.csr_matrix _csc.csc_matrix _coo.coo_matrix _csr.csr_array _csc.csc_array _coo.coo_array "
            "csr.csr_matrix csc.csc_matrix coo.coo_matrix",
        ),
        "joblib.numpy_pickle.NumpyArrayWrapper",
        # joblib < 0.10 kept compressed arrays in sibling z-files, read back as raw array bytes.
        # (NDArrayWrapper is not here: it reads its sibling .npy with allow_pickle=True.)
        "joblib.numpy_pickle.ZNDArrayWrapper",
        "joblib.numpy_pickle_compat.ZNDArrayWrapper",
        *_names(
            "torch._utils",
            "_rebuild_tensor _rebuild_tensor_v2 _rebuild_tensor_v3 _rebuild_parameter _rebuild_parameter_with_state "
            "_rebuild_qtensor _rebuild_sparse_tensor _rebuild_nested_tensor _rebuild_device_tensor_from_numpy "
            "_rebuild_meta_tensor_no_storage _rebuild_wrapper_subclass _rebuild_device_tensor_from_cpu_tensor",
        ),
        "torch._tensor._rebuild_from_type_v2",
        # TorchScript archives: identity helpers that tag lists and values with their static type.
        *_names(
            "torch.jit._pickle",
            "build_intlist build_tensorlist build_doublelist build_boollist build_tensor_from_id restore_type_tag",
        ),
        # torch.package: rebuilds a ScriptModule from the same archive's `.data/ts_code/` (judged as TorchScript).
        "torch.jit._script.unpackage_script_module",
        # How torch pickles a sparse tensor's layout: a lookup among torch.layout values.
        "torch.serialization._get_layout",
        # math's constants and functions compute on numbers (torch.fx code imports inf and nan).
        *_names(
            "math",
            "inf nan pi e tau sqrt exp log log2 log10 log1p expm1 pow floor ceil trunc fabs fmod isnan isinf "
            "isfinite sin cos tan asin acos atan atan2 sinh cosh tanh erf erfc gamma lgamma prod",
        ),
        # torch.fx's generated code flattens its inputs with torch's pytree helpers; its own Tracer
        # class (a graph-module pickle names it as the class that retraces the forward code).
        *(f"{m}.{n}" for m in ("torch.utils._pytree", "torch.fx._pytree") for n in _PYTREE.split()),
        "torch.fx._pytree",
        "torch.utils._pytree",
        "torch.fx._symbolic_trace.Tracer",
        # Lightning and pyannote checkpoints record the torch version they were written with (a str subclass).
        "torch.torch_version.TorchVersion",
        # Training scripts (fairseq and many others) store their parsed arguments in checkpoints.
        "argparse.Namespace",
        # scikit-learn's dict with attribute access, which its dataset loaders return.
        *_names("sklearn", "utils.Bunch utils._bunch.Bunch datasets.base.Bunch datasets._base.Bunch"),
        *_names("torch", "Tensor Size device dtype layout memory_format finfo iinfo"),
        "torch._tensor.Tensor",
        *_names("torch.nn.parameter", "Parameter Buffer UninitializedParameter"),
        *_names("torch.storage", "UntypedStorage TypedStorage"),
        *TORCH_STORAGE_SIZES,
        *_names("torch", _TORCH_DTYPES),
    ]
)

#: Packages whose CamelCase classes are trusted as classes (estimators, layers, optimisers), outside
#: the sub-packages in `_EXCLUDED_PARTS`. `__torch__` names TorchScript classes, which torch.jit.load
#: resolves from the archive's own code and plain unpicklers cannot import at all.
CLASS_FAMILIES = ("sklearn", "xgboost", "lightgbm", "catboost", "torch.nn.modules", "torch.optim", "__torch__")
_EXCLUDED_PARTS = frozenset(
    "tests testing _testing externals conftest _build_utils experimental datasets _show_versions io iolib".split()
)
#: Classes packages import from elsewhere that do I/O, spawn work or build code: a name re-exported by a
#: trusted module is still the foreign object.
_FOREIGN_CLASSES = frozenset(
    """FunctionType MethodType CodeType LambdaType ModuleType Namespace Thread Timer Process Popen Listener
    Client Connection HTTPServer BaseHTTPRequestHandler ThreadPoolExecutor ProcessPoolExecutor
    NamedTemporaryFile TemporaryDirectory TemporaryFile SpooledTemporaryFile Request Memory MemorizedFunc
    NumpyPickler NumpyUnpickler Pickler Unpickler Parallel Path PosixPath WindowsPath BytesIO StringIO
    FileIO TextIOWrapper BufferedReader BufferedWriter CDLL PyDLL LibraryLoader ZipFile TarFile
    InteractiveInterpreter InteractiveConsole Pdb Profile HTTPConnection HTTPSConnection FTP SMTP
    DataSource Parameter SummaryWriter FileWriter Popen4 SmartOpen""".split()
)
_CLASS_NAME = re.compile(r"_?[A-Z][A-Za-z0-9_]*\Z|__pyx_unpickle_[A-Za-z]\w*\Z")
_MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")


# --------------------------------------------------------------------------- dangerous callables
def _entries(kind: Kind, names: str) -> dict[str, Kind]:
    return dict.fromkeys(names.split(), kind)


#: Dotted prefixes (a module, or module.attribute) -> what they do; the longest matching prefix wins.
DANGEROUS: dict[str, Kind] = {
    **_entries(
        Kind.CODE,
        """os subprocess _posixsubprocess pty popen2 commands multiprocessing asyncio _winapi
        builtins.eval builtins.exec builtins.execfile builtins.compile builtins.breakpoint builtins.apply
        runpy code codeop pdb bdb cProfile profile _lsprof timeit trace pip ensurepip venv site
        marshal types.CodeType types.FunctionType types.LambdaType types.MethodType atexit
        dill cloudpickle ctypes _ctypes cffi zipimport imp patsy
        numpy.f2py numpy.testing numpy.distutils numpy.ctypeslib distutils setuptools idlelib
        torch._dynamo torch._inductor torch.jit torch.fx torch.package torch.multiprocessing torch.testing
        torch.utils.collect_env torch.utils.cpp_extension torch._export torch.export torch.compile
        uuid._get_command_stdout imaplib.IMAP4_stream _osx_support _aix_support _pyrepl platform
        IPython _pydev_bundle _pydevd_bundle pydevd _pydev_imps mlflow.projects numexpr
        pandas.eval pandas.core.computation sympy.sympify yaml.load yaml.unsafe_load yaml.full_load
        transformers.dynamic_module_utils keras.src.layers.core.lambda_layer hydra.utils.instantiate
        hydra.utils.call hydra._internal.instantiate omegaconf.OmegaConf.register_new_resolver""",
    ),
    **_entries(
        Kind.GADGET,
        """builtins.getattr builtins.setattr builtins.delattr builtins.__import__ builtins.globals
        builtins.locals builtins.vars builtins.type builtins.super builtins.classmethod builtins.staticmethod
        builtins.property importlib pkgutil pydoc operator functools copyreg gc inspect logging.config
        torch.ops torch.classes torch._ops torch.library hydra.utils.get_method hydra.utils.get_class
        hydra.utils.get_object hydra._internal.utils._locate
        transformers.models.auto.auto_factory.getattribute_from_module""",
    ),
    **_entries(
        Kind.ACCESS,
        """io builtins.open builtins.input builtins.help codecs.open shutil tempfile glob fileinput linecache
        filecmp pathlib zipfile tarfile gzip bz2 lzma sqlite3 dbm mmap fcntl termios resource pwd grp getpass
        socket ssl select selectors urllib urllib2 urllib3 http httplib ftplib smtplib smtpd poplib imaplib
        nntplib telnetlib xmlrpc xmlrpclib socketserver SocketServer requests httpx aiohttp paramiko boto3
        botocore websocket websockets logging.FileHandler logging.handlers webbrowser antigravity signal sys
        threading concurrent sched joblib sklearn.datasets torch.distributed torch.from_file torch.save
        numpy.fromfile numpy.memmap numpy.save numpy.savez numpy.savez_compressed numpy.savetxt numpy.loadtxt
        numpy.genfromtxt numpy.tofile numpy.DataSource numpy.lib.npyio numpy.lib._npyio_impl
        numpy.lib._datasource numpy._core.memmap pandas.io pandas.read_csv pandas.read_table
        pandas.read_html pandas.read_json pandas.read_excel pandas.read_parquet pandas.read_feather
        pandas.read_sql pandas.read_sql_query pandas.read_sql_table pandas.read_xml pandas.read_hdf
        pandas.read_orc pandas.read_sas pandas.read_spss pandas.read_stata pandas.read_fwf pandas.read_clipboard
        pandas.HDFStore pandas.ExcelWriter pandas.ExcelFile tensorflow.io smart_open gensim.utils.open
        gensim.utils.smart_open gensim.corpora.mmcorpus
        gensim.corpora.textcorpus gensim.corpora.wikicorpus gensim.corpora.svmlightcorpus gensim.corpora.bleicorpus
        gensim.corpora.lowcorpus gensim.corpora.ucicorpus gensim.corpora.malletcorpus gensim.corpora.sharded_corpus
        gensim.corpora.indexedcorpus gensim.corpora.csvcorpus gensim.corpora._mmreader torch.utils.tensorboard
        tensorboardX statsmodels.iolib""",
    ),
    **_entries(
        Kind.LOADER,
        """pickle shelve dill.load dill.loads dill._dill.load dill._dill.loads cloudpickle.load cloudpickle.loads
        torch.load torch.serialization torch.hub torch.utils.model_zoo torch.storage._load_from_bytes
        torch.jit.load huggingface_hub joblib.load joblib.numpy_pickle.load joblib.numpy_pickle_compat
        numpy.load numpy.lib.npyio.load numpy.lib._npyio_impl.load numpy.lib.format pandas.read_pickle
        pandas.io.pickle onnx.load onnxruntime.InferenceSession safetensors tensorflow.saved_model
        keras.models.load_model keras.saving gensim.utils.unpickle gensim.utils.SaveLoad.load
        statsmodels.iolib.smpickle""",
    ),
}

#: Final name components that identify a dangerous callable whatever module re-exports it.
BARE_NAMES: dict[str, Kind] = {
    **_entries(
        Kind.CODE,
        """eval exec execfile system popen Popen spawnl spawnle spawnlp spawnv spawnve spawnvp posix_spawn
        check_output check_call getoutput getstatusoutput run_path run_module _run_code runstring runctx
        runcall import_module load_source load_module exec_module""",
    ),
    **_entries(
        Kind.GADGET,
        "getattr setattr delattr attrgetter itemgetter methodcaller resolve_name locate getattribute_from_module",
    ),
    **_entries(Kind.ACCESS, "fromfile tofile memmap savetxt loadtxt genfromtxt urlopen urlretrieve"),
    **_entries(
        Kind.LOADER,
        """from_pretrained from_single_file load_from_checkpoint load_model hf_hub_download snapshot_download
        read_pickle load_dataset load loads load_pickle unpickle load_word2vec_format load_fasttext_format""",
    ),
}

#: Namespaces of tensor operations (`getattr(torch._C.TensorBase, 'add')` is how pickle stores `Tensor.add`):
#: public attributes only compute on tensors, except the few that call Python callables or touch files.
TENSOR_OPS = frozenset(
    """torch._C._VariableFunctionsClass torch._C._VariableFunctions torch._C.TensorBase torch._C._TensorBase
    torch._C._nn torch._C._linalg torch._C._fft torch._C._special torch.nn.functional torch.Tensor
    torch._tensor.Tensor torch""".split()
)
_NOT_TENSOR_OPS = frozenset(
    """apply_ map_ map2_ register_hook register_post_accumulate_grad_hook from_file save load tofile
    storage untyped_storage share_memory_ data_ptr import_ir_module import_ir_module_from_buffer cond
    while_loop vmap func compile export library classes ops hub jit fx package utils cuda backends
    distributed multiprocessing overrides set_default_tensor_type""".split()
)
#: `torch.fx.graph_module.reduce_graph_module(body, import_block)` execs `import_block + body['_code']`
#: (the GraphModule's generated forward) and then traces it: Python source carried in the pickle.
GRAPH_MODULE_REBUILDER = "torch.fx.graph_module.reduce_graph_module"

#: Loaders whose bytes argument is itself a pickle (or a torch file): analysers scan it as a nested payload.
PICKLE_BYTES_LOADERS = frozenset(
    """pickle.loads pickle._loads pickle.load dill.loads dill._dill.loads cloudpickle.loads
    torch.storage._load_from_bytes torch.load torch.serialization.load joblib.load
    numpy.load""".split()
)
#: Callables that build a new callable from their first argument without calling it.
WRAPPERS = frozenset(["functools.partial", "functools.partialmethod"])
#: `getattr(obj, name)`: the attribute it returns is judged by its full name.
ATTRIBUTE_GETTER = "builtins.getattr"
#: `operator.getitem(origin, args)` is how typing and collections.abc generics are pickled.
SUBSCRIPT = "operator.getitem"


# --------------------------------------------------------------------------- known libraries
#: Libraries whose model classes only rebuild data (read in their source: no `__setstate__`, `__new__` or
#: `__reduce__` with side effects, except the classes in `SIDE_EFFECTS`); their CamelCase classes and the
#: helpers in `LIBRARY_HELPERS` are low (the package must be installed to load the file), never trusted.
LIBRARIES = frozenset(
    """gensim statsmodels chemprop lightning pytorch_lightning lightning_fabric torchmetrics omegaconf
    pyannote rdkit sklearn_crfsuite pycrfsuite pandas morfessor babel madmom nltk ctparse""".split()
)
#: Module-level functions of those libraries that files reference as attributes (never called at load).
LIBRARY_HELPERS = frozenset(
    """gensim.utils.call_on_class_only gensim.models.phrases.original_scorer gensim.models.phrases.npmi_scorer
    gensim.models.tfidfmodel.smartirs_wlocal gensim.models.tfidfmodel.smartirs_wglobal
    gensim.models.tfidfmodel.smartirs_normalize gensim.models.tfidfmodel.df2idf gensim.matutils.unitvec
    gensim.utils.identity gensim.utils.keep_vocab_item gensim.models.ensemblelda.mass_masking
    gensim.models.ensemblelda.rank_masking gensim.models.ldaseqmodel.sslm pandas.core.indexes.base._new_Index
    pandas.core.internals.managers.BlockManager pandas._libs.internals._unpickle_block
    pandas.core.internals.blocks.new_block pandas._libs.tslibs.timestamps._unpickle_timestamp
    pandas._libs.tslibs.timedeltas._timedelta_unpickle pandas.core.arrays.categorical._unpickle
    rdkit.Chem.rdchem.Mol rdkit.DataStructs.cDataStructs.ExplicitBitVect
    rdkit.DataStructs.cDataStructs.UIntSparseIntVect madmom.ml.nn.activations.linear madmom.ml.nn.activations.tanh
    madmom.ml.nn.activations.sigmoid madmom.ml.nn.activations.relu madmom.ml.nn.activations.elu
    madmom.ml.nn.activations.softmax""".split()
)
#: Sub-packages of known libraries whose classes read or write files, fetch data or train: never data.
_LIBRARY_EXCLUDED = frozenset(
    "io iolib datasets utils.data hub tests testing _testing callbacks loggers nltk.data nltk.downloader".split()
)


class StateEffect(NamedTuple):
    """What a class's `__setstate__` does with one key of its pickled state."""

    key: str
    kind: Kind
    reason: str


#: Classes of known libraries whose `__setstate__` does more than store attributes, by state key.
SIDE_EFFECTS: dict[str, tuple[StateEffect, ...]] = {
    **dict.fromkeys(
        ("statsmodels.base.data.ModelData", "statsmodels.base.data.PandasData", "statsmodels.base.data.PatsyData"),
        (
            StateEffect(
                "restore_design_info",
                Kind.CODE,
                "its __setstate__ rebuilds the design matrix with patsy.dmatrices(state['formula'], eval_env=...), "
                "which evaluates the pickled formula's terms as Python expressions",
            ),
        ),
    ),
    **dict.fromkeys(
        ("lightning.pytorch.loggers.neptune.NeptuneLogger", "pytorch_lightning.loggers.neptune.NeptuneLogger"),
        (
            StateEffect(
                "_neptune_init_args",
                Kind.ACCESS,
                "its __setstate__ calls neptune.init_run(**state['_neptune_init_args']): a network connection "
                "with the pickled arguments",
            ),
        ),
    ),
    "sklearn_crfsuite._fileresource.FileResource": (
        StateEffect(
            "__FILE_RESOURCE_DATA__",
            Kind.ACCESS,
            "its __setstate__ writes the pickled model bytes to a new temporary file (tempfile.mkstemp with the "
            "state's prefix and suffix), and its __del__ unlinks the state's file name",
        ),
        StateEffect("name", Kind.ACCESS, "its __del__ unlinks the file the state names (os.unlink)"),
    ),
}
#: babel's plural rule: its pickled state is the rule's syntax tree, which `__call__` (formatting any plural:
#: `format_decimal`, `ngettext`, `Locale.plural_form`) compiles into Python source and runs with `eval`.
PLURAL_RULE = "babel.plural.PluralRule"
_PLURAL_LEAVES = frozenset("n i v w f t c e".split())
_PLURAL_BINARY = frozenset("and or mod is isnot".split())
_PLURAL_TAG = re.compile(r"[a-z]{1,16}\Z")
#: Nesting of a plural rule's tree that CLDR's rules stay far below.
_PLURAL_DEPTH = 64
#: State values of a FileResource that keep it to what sklearn_crfsuite itself writes: a fresh temp file.
_PLAIN_AFFIX = re.compile(r"[\w.-]{0,64}\Z")


def judge_state(module: str, qualname: str, state: Mapping[str, object] | Sequence[object]) -> Verdict | None:
    """What `__setstate__` of a known side-effect class does with this state (None: only stores it).

    A babel PluralRule's state is a list (its syntax tree), judged by what babel compiles from it.

    `state` holds the constant values of the pickled state dict (computed values are absent); a
    FileResource in sklearn_crfsuite's own shape (no file name, plain prefix and suffix) writes a temporary
    file and is low, any other shape can write or delete files elsewhere.
    """
    dotted = f"{canonical(module)}.{qualname}"
    if dotted == PLURAL_RULE:
        return _plural_rule(state)
    if not isinstance(state, Mapping):
        return None
    effects = [e for e in SIDE_EFFECTS.get(dotted, ()) if e.key in state]
    if not effects:
        return None
    worst = max(effects, key=lambda e: SEVERITY[e.kind])
    package = dotted.partition(".")[0]
    if dotted == "sklearn_crfsuite._fileresource.FileResource" and _standard_file_resource(state):
        return _verdict(Kind.ACCESS, package, worst.reason, Severity.LOW)
    formula = state.get("formula")
    if worst.key == "restore_design_info" and isinstance(formula, str):
        found = formula_problems(formula)
        if found == []:
            return _verdict(
                Kind.LIBRARY,
                package,
                f"its __setstate__ evaluates the formula {truncate(formula, 80)!r} with patsy: only column names, "
                "numbers and known transforms",
            )
        shown = "; ".join(found[:3]) if found else "it cannot be read as a formula"
        return _verdict(Kind.CODE, package, f"{worst.reason}: {shown}")
    return _verdict(worst.kind, package, worst.reason)


def _plural_rule(state: object) -> Verdict | None:
    """babel compiles each node to Python text (`value` nodes with `str(v)`, relations with the method's
    name) and evals it: only CLDR's grammar of integer values, operand letters and operators is data."""
    problems: list[str] = []
    if not isinstance(state, Sequence) or isinstance(state, (str, bytes)):
        problems.append("its state is not a list of (tag, rule) pairs")
    else:
        for pair in state:
            if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)):
                problems.append(f"{truncate(repr(pair), 60)} is not a (tag, rule) pair")
            elif not _PLURAL_TAG.match(pair[0]):
                problems.append(f"tag {truncate(repr(pair[0]), 60)} is not a plural category")
            else:
                _plural_node(pair[1], 0, problems)
    if not problems:
        return None
    shown = "; ".join(problems[:3])
    reason = f"{PLURAL_RULE} compiles its pickled rule into Python source and evals it when used: {shown}"
    return _verdict(Kind.CODE, "babel", reason)


def _plural_node(node: object, depth: int, problems: list[str]) -> None:
    """Check one node of a plural rule against the grammar babel's compiler accepts as data."""
    if depth > _PLURAL_DEPTH or not (isinstance(node, tuple) and len(node) == 2 and isinstance(node[1], tuple)):
        problems.append(f"{truncate(repr(node), 60)} is not a plural-rule node")
        return
    op, args = node
    if type(op) is not str:  # a list or dict here is unhashable: judged, not looked up
        problems.append(f"node {truncate(repr(node), 80)} has an operator that is not a name")
        return
    if op in _PLURAL_LEAVES and args == ():
        return
    if op == "value" and len(args) == 1 and type(args[0]) is int:
        return
    if (op in _PLURAL_BINARY and len(args) == 2) or (op == "not" and len(args) == 1):
        for arg in args:
            _plural_node(arg, depth + 1, problems)
        return
    if op == "relation" and len(args) == 3 and args[0] in ("in", "within"):
        _plural_node(args[1], depth + 1, problems)
        ranges = args[2]
        if not (isinstance(ranges, tuple) and len(ranges) == 2 and ranges[0] == "range_list"):
            problems.append(f"{truncate(repr(ranges), 60)} is not a range list")
            return
        for bounds in ranges[1] if isinstance(ranges[1], list) else [ranges[1]]:
            if not (isinstance(bounds, tuple) and len(bounds) == 2):
                problems.append(f"{truncate(repr(bounds), 60)} is not a (low, high) range")
                continue
            for bound in bounds:
                _plural_node(bound, depth + 1, problems)
        return
    problems.append(f"node {truncate(repr(node), 80)} is outside CLDR's plural grammar")


def _standard_file_resource(state: Mapping[str, object]) -> bool:
    """The model bytes with no file name (`__setstate__` asserts it, then replaces `fd` with a fresh
    `mkstemp` file) and a prefix and suffix that keep that file in the temporary directory."""
    affixes = [state.get("prefix", ""), state.get("suffix", "")]
    plain = all(isinstance(a, str) and _PLAIN_AFFIX.match(a) for a in affixes)
    return plain and "__FILE_RESOURCE_DATA__" in state and state.get("name", None) is None


# --------------------------------------------------------------------------- config frameworks
# Configs (Hydra/OmegaConf `_target_`, NeMo `target`, HyperPyYAML `!new:`/`!apply:`/`!name:`) name the
# framework's own classes by their public, re-exported paths (`torch.nn.Linear`, `nemo.collections.asr.
# modules.ConformerEncoder`); `judge_target` treats those as the framework's and the rest as the catalogue
# says. What the frameworks themselves do that is more than building modules is catalogued here.
DANGEROUS.update(
    {
        **_entries(
            Kind.CODE,
            # foreign_class imports the `pymodule_file` a model repository ships; run_shell runs a shell
            # command; import_from_path executes a Python file.
            """speechbrain.inference.interfaces.foreign_class speechbrain.pretrained.interfaces.foreign_class
            speechbrain.utils.superpowers omegaconf.OmegaConf.legacy_register_resolver
            omegaconf.OmegaConf.register_resolver""",
        ),
        # NeMo's import_class_by_path imports and returns any dotted path (the one `target` goes through).
        **_entries(Kind.GADGET, "nemo.utils.model_utils.import_class_by_path"),
        **_entries(
            Kind.ACCESS,
            # downloads (to the local cache) and file links made by the loaders themselves
            """speechbrain.utils.fetching speechbrain.utils.data_utils.download_file nemo.utils.cloud
            omegaconf.OmegaConf.load omegaconf.OmegaConf.save""",
        ),
    }
)
BARE_NAMES.update(_entries(Kind.LOADER, "restore_from from_hparams from_config_file"))

#: Namespaces of the frameworks that instantiate configs, with what they hold: a target below one of them
#: that the catalogue does not know to be dangerous is the framework's own (info). NeMo's list is its own
#: `ALLOWED_TARGET_PREFIXES` (nemo/core/classes/common.py, NeMo 2.5+); SpeechBrain's recipes and model
#: cards build `speechbrain.*`, `torch.nn`/`torch.optim` classes and sentencepiece's processor; Hydra's
#: own configs name its launcher and sweeper plugins.
CONFIG_FRAMEWORKS: dict[str, str] = {
    "nemo.collections": "NeMo models, modules and datasets",
    "nemo.core": "NeMo core classes",
    "nemo.utils": "NeMo utilities",
    "nemo.lightning": "NeMo Lightning integration",
    "megatron": "Megatron-Core (NeMo's allowed targets)",
    "torchmetrics": "TorchMetrics metrics",
    "torch.nn": "PyTorch layers and losses",
    "torch.optim": "PyTorch optimisers and schedulers",
    "torch.utils.data": "PyTorch datasets, samplers and loaders",
    "torch.distributed.fsdp": "PyTorch FSDP wrappers (NeMo's allowed targets)",
    "lightning.pytorch.callbacks": "Lightning callbacks",
    "lightning.pytorch.loggers": "Lightning loggers",
    "lightning.pytorch.strategies": "Lightning strategies",
    "lightning.pytorch.accelerators": "Lightning accelerators",
    "lightning.pytorch.trainer": "the Lightning trainer",
    "pytorch_lightning.callbacks": "Lightning callbacks",
    "pytorch_lightning.trainer": "the Lightning trainer",
    "omegaconf": "OmegaConf containers",
    "speechbrain": "SpeechBrain modules, lobes and utilities",
    "sentencepiece.SentencePieceProcessor": "the SentencePiece tokenizer SpeechBrain models load",
    "torchaudio.transforms": "torchaudio feature transforms",
    "hydra._internal.core_plugins": "Hydra's own launcher and sweeper plugins",
}


# --------------------------------------------------------------------------- judging
def valid_module(text: str) -> bool:
    """Whether `__import__` could accept this module name at all."""
    return _MODULE.match(text) is not None


def judge(module: str, qualname: str) -> Verdict:
    """What importing `module` and walking to `qualname` (dotted) gives, and what calling it does."""
    module = canonical(module)
    package = module.partition(".")[0]
    if not qualname:
        return _judge_module(module, package)
    dotted = f"{module}.{qualname}"
    if dotted in ALLOWLIST or dotted in TENSOR_OPS or _family_class(module, qualname):
        return _verdict(Kind.DATA, package, "on the allowlist")
    found = _dangerous(module, qualname)
    if found is not None:
        return found
    owner, _, attr = dotted.rpartition(".")
    if owner in TENSOR_OPS and not attr.startswith("_") and attr not in _NOT_TENSOR_OPS:
        return _verdict(Kind.DATA, package, "a tensor operation")
    if dotted == PLURAL_RULE:  # judged again with its state (the rule's syntax tree)
        return _verdict(Kind.LIBRARY, package, "babel class; a rule outside CLDR's grammar runs as Python when used")
    effects = SIDE_EFFECTS.get(dotted)
    if effects is not None:
        worst = max(effects, key=lambda e: SEVERITY[e.kind])
        # Judged again with the state it receives; built without state, it only stores attributes.
        return _verdict(Kind.LIBRARY, package, f"{package} class; with some states {worst.reason}")
    if dotted in LIBRARY_HELPERS or (package in LIBRARIES and _library_class(module, qualname)):
        return _verdict(Kind.LIBRARY, package, f"{package} data class or helper; needs {package} installed")
    return _verdict(Kind.UNKNOWN, package, "not on the allowlist")


def _judge_module(module: str, package: str) -> Verdict:
    """What importing a module (`import module`, qualname '') does: its package's initialisation."""
    found = _lookup(module.split("."))
    if found is not None and not (module in SAFE_MODULES and found[1] is Kind.GADGET):
        return _verdict(found[1], package, found[2])
    if package in SAFE_MODULES and not any(p.startswith("_") for p in module.split(".")[1:]):
        return _verdict(Kind.DATA, package, "a standard module")
    if f"{module}" in ALLOWLIST:
        return _verdict(Kind.DATA, package, "on the allowlist")
    if package in LIBRARIES:
        return _verdict(Kind.LIBRARY, package, f"a module of {package}; needs {package} installed")
    return _verdict(Kind.UNKNOWN, package, "not on the allowlist")


def _dangerous(module: str, qualname: str) -> Verdict | None:
    """Every component judged: the module prefix, each walked suffix, bare names, dunder and private walks."""
    parts = qualname.split(".")
    package = module.partition(".")[0]
    best = _lookup([*module.split("."), *parts])
    for i in range(len(parts)):
        # `torch.serialization` + `os.system` walks into the os module: judge each walked suffix.
        found = _lookup(parts, i)
        if found is not None and (best is None or found[0] > best[0]):
            best = found
    kind = BARE_NAMES.get(parts[-1])
    if kind is not None and (best is None or SEVERITY[kind] > best[0]):
        best = (SEVERITY[kind], kind, f"'{parts[-1]}' names a callable that {kind.value}")
    if best is None or best[0] < SEVERITY[Kind.WALK]:
        dunder = [p for p in parts if p.startswith("__") and p.endswith("__") and len(p) > 4]
        private = [p for p in parts[1:] if p.startswith("_")]
        if dunder or private:
            what = (dunder or private)[0]
            return _verdict(
                Kind.WALK, package, f"name walks through {'dunder' if dunder else 'private'} attribute '{what}'"
            )
    if best is None:
        return None
    return _verdict(best[1], package, best[2])


_KEY_PARTS = max(key.count(".") + 1 for key in DANGEROUS)


def _lookup(parts: list[str], start: int = 0) -> tuple[Severity, Kind, str] | None:
    """The longest catalogue prefix of `parts[start:]`; only as many parts as a key can have are
    joined, so a name of thousands of components costs linear time."""
    for end in range(min(len(parts), start + _KEY_PARTS), start, -1):
        key = ".".join(parts[start:end])
        kind = DANGEROUS.get(key)
        if kind is not None:
            if end < len(parts):  # a module or class prefix: say what the name is part of
                return SEVERITY[kind], kind, f"{'.'.join(parts[start:])} belongs to {key}, which {kind.value}"
            return SEVERITY[kind], kind, f"{key} is a callable that {kind.value}"
    return None


def _family_class(module: str, name: str) -> bool:
    """Estimator, layer and optimiser classes: CamelCase names in trusted packages, not re-exports.

    Such a class is only ever created (NEWOBJ, `copyreg._reconstructor`, REDUCE of the class) and given
    state with BUILD, which for these packages stores attributes. Dotted walks are never trusted.
    """
    if not any(module == f or module.startswith(f + ".") for f in CLASS_FAMILIES):
        return False
    if name in _FOREIGN_CLASSES or not _CLASS_NAME.match(name):
        return False
    return not any(p in _EXCLUDED_PARTS for p in module.split("."))


#: Class names that say the class reads, writes, fetches or runs something: never a data class.
_ACTIVE_CLASS = re.compile(
    r".*(Writer|Reader|Supplier|Loader|Downloader|Saver|Logger|Handler|Client|Server|Process|Pool|Thread"
    r"|File|Store|Connection|Session|Stream|Executor|Runner)\Z"
)


def _library_class(module: str, name: str) -> bool:
    """A CamelCase class of a known library, outside its I/O, data-fetching and test sub-packages, whose
    name does not say that it reads, writes or runs something (`SDMolSupplier`, `ExcelWriter`)."""
    if name in _FOREIGN_CLASSES or not _CLASS_NAME.match(name) or _ACTIVE_CLASS.match(name):
        return False
    dotted = "." + module + "."
    return not any(f".{p}." in dotted for p in _LIBRARY_EXCLUDED)


# --------------------------------------------------------------------------- user trust
class Trust:
    """Names a policy trusts: exact (`pkg.mod:Class`, `pkg.mod.Class`) or module prefixes (`gensim.*`).

    A prefix trusts classes and helpers below it that the catalogue does not know to be dangerous; an
    exact name trusts that name whatever the catalogue says (the user vouched for it).
    """

    def __init__(self, entries: Iterable[str] = ()) -> None:
        exact: set[str] = set()
        prefixes: set[str] = set()
        for entry in entries:
            text = entry.strip()
            module, colon, qual = text.partition(":")
            if text.endswith((".*", ":*")):
                prefixes.add(canonical(text[:-2]) + ".")
            elif colon:
                exact.add(f"{canonical(module)}.{qual}")
            else:
                exact.add(canonical(text))
        self.exact = frozenset(exact)
        self.prefixes = tuple(sorted(prefixes))

    def trusts(self, module: str, qualname: str, verdict: Verdict | None = None) -> bool:
        """Whether the policy vouches for this name. A prefix covers the classes and functions of the
        modules below it that the catalogue does not know to be dangerous, never an attribute walk
        (`Word2Vec.load` is a loader whatever package it sits in)."""
        dotted = f"{canonical(module)}.{qualname}"
        if dotted in self.exact:
            return True
        if "." in qualname or not dotted.startswith(self.prefixes):
            return False
        return (verdict or judge(module, qualname)).kind in (Kind.UNKNOWN, Kind.LIBRARY)

    def judge(self, module: str, qualname: str) -> Verdict:
        """The catalogue's verdict, lowered to trusted where the policy vouches for the name."""
        verdict = judge(module, qualname)
        if verdict.trusted or not self.trusts(module, qualname, verdict):
            return verdict
        return _verdict(Kind.DATA, verdict.package, "trusted by the policy")


# =========================================================================== names met outside pickles
# (chat templates and Keras configs; kept as one block so that other additions merge beside it)
#: What a verdict must be for a template name or a Keras reference to be reported as dangerous.
DANGEROUS_KINDS = frozenset({Kind.CODE, Kind.GADGET, Kind.WALK, Kind.ACCESS, Kind.LOADER})


def _worst(verdicts: Iterable[Verdict]) -> Verdict | None:
    found = [v for v in verdicts if v.kind in DANGEROUS_KINDS]
    return max(found, key=lambda v: v.severity) if found else None


def judge_attribute(name: str) -> Verdict | None:
    """What calling a method called `name` does on an object of unknown type (a template's value): the
    catalogue's bare names (`popen`, `system`, `check_output`, `import_module`, `load`...), or None."""
    kind = BARE_NAMES.get(name)
    if kind is None:
        return None
    return _verdict(kind, "", f"names a callable that {kind.value}")


def judge_reachable(name: str) -> Verdict | None:
    """What a template (or any expression language) reaches when a free name resolves to the module or
    builtin of that name, and so to its attributes: the worst of the builtin, the module, and the
    module's catalogued members (`builtins` reaches `eval`); None if nothing dangerous."""
    if not _MODULE.match(name):
        return None
    verdicts = [judge("builtins", name)]
    module = canonical(name)
    verdicts.append(judge(module, ""))
    prefix = module + "."
    verdicts += [
        _verdict(kind, module.partition(".")[0], f"reaches {key}, which {kind.value}")
        for key, kind in DANGEROUS.items()
        if key.startswith(prefix)
    ]
    return _worst(verdicts)


#: Keras's non-modelling functions (`NON_MODELING_APIS` of keras/src/saving/serialization_lib.py and the
#: gadgets found since): Keras resolves a function reference by name inside its own packages, whatever
#: sub-module the file names, so these are judged by name under any Keras module.
KERAS_FUNCTIONS: dict[str, tuple[Kind, str]] = {
    **dict.fromkeys(
        ("enable_unsafe_deserialization",),
        (Kind.CODE, "switches Keras's safe mode off, so later Lambda bytecode runs"),
    ),
    **dict.fromkeys(
        ("deserialize_keras_object", "register_keras_serializable"),
        (Kind.GADGET, "deserialises or registers arbitrary objects from the config"),
    ),
    **dict.fromkeys(
        ("load_model", "model_from_json", "model_from_config", "model_from_yaml", "load_weights"),
        (Kind.LOADER, "loads another model"),
    ),
    **dict.fromkeys(
        (
            "get_file", "load_img", "save_img", "array_to_img", "image_dataset_from_directory",
            "text_dataset_from_directory", "audio_dataset_from_directory", "timeseries_dataset_from_array",
            "save_model", "save_weights", "serialize_keras_object", "plot_model", "model_to_dot", "clear_session",
            "export_saved_model",
        ),
        (Kind.ACCESS, "downloads, reads or writes files or changes global state"),
    ),
}  # fmt: skip
#: Keras namespaces with no modelling functions at all (config, saving, downloads, plotting).
KERAS_NAMESPACES = frozenset({"config", "saving", "datasets", "visualization", "callbacks", "export"})
KERAS_PACKAGES = frozenset({"keras", "tf_keras", "keras_hub", "keras_cv", "keras_nlp"})


def judge_keras(module: str, name: str) -> Verdict | None:
    """What a Keras function reference (`module` inside Keras, function `name`) does when Keras calls it
    while rebuilding a model: the catalogue's verdict, raised by Keras's own non-modelling functions;
    None if it only computes (activations, losses, initialisers)."""
    verdicts = [judge(module, name)]
    package = module.partition(".")[0]
    if package in KERAS_PACKAGES:
        # Keras looks `module + "." + name` up by public API name: `("keras", "utils.get_file")` is get_file.
        *namespaces, last = f"{module}.{name}".split(".")
        known = KERAS_FUNCTIONS.get(last)
        if known is not None:
            verdicts.append(_verdict(known[0], package, known[1]))
        elif KERAS_NAMESPACES & set(namespaces):
            verdicts.append(_verdict(Kind.ACCESS, package, "belongs to a non-modelling Keras namespace"))
    return _worst(verdicts)


# --------------------------------------------------------------------------- numpy and scipy ufuncs
# Element-wise maths that skops trusts by default as function references (its FunctionNode): a ufunc only
# computes on the arrays it is given. Kept apart from ALLOWLIST, whose entries pickles may call at load.
NUMPY_UFUNCS = frozenset(
    """absolute add arccos arccosh arcsin arcsinh arctan arctan2 arctanh bitwise_and bitwise_count bitwise_or
    bitwise_xor cbrt ceil conjugate copysign cos cosh deg2rad degrees divide divmod equal exp exp2 expm1 fabs
    float_power floor floor_divide fmax fmin fmod frexp gcd greater greater_equal heaviside hypot invert isfinite
    isinf isnan isnat lcm ldexp left_shift less less_equal log log10 log1p log2 logaddexp logaddexp2 logical_and
    logical_not logical_or logical_xor matmul matvec maximum minimum modf multiply negative nextafter not_equal
    positive power rad2deg radians reciprocal remainder right_shift rint sign signbit sin sinh spacing sqrt square
    subtract tan tanh trunc vecdot vecmat abs bitwise_not bitwise_invert conj mod true_divide acos acosh asin
    asinh atan atan2 atanh bitwise_left_shift bitwise_right_shift pow""".split()
)
#: scipy.special's compiled ufunc modules: every public name is a ufunc, except the modules they import.
SCIPY_UFUNC_MODULES = frozenset({"scipy.special._ufuncs", "scipy.special._special_ufuncs"})
_SCIPY_UFUNC_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_SCIPY_NOT_UFUNCS = frozenset({"np", "scipy", "errstate", "geterr", "seterr"})


def is_ufunc(module: str, name: str) -> bool:
    """Whether `module.name` is a numpy or scipy.special ufunc: pure element-wise maths when called."""
    module = canonical(module)
    if module in ("numpy", "numpy._core.umath", "numpy.core.umath"):
        return name in NUMPY_UFUNCS
    return module in SCIPY_UFUNC_MODULES and bool(_SCIPY_UFUNC_NAME.match(name)) and name not in _SCIPY_NOT_UFUNCS


#: numpy's random Generator class: called with a bit generator (skops' RandomGeneratorNode, and the class
#: that `numpy.random._pickle.__generator_ctor` builds), it only holds that generator's state.
ALLOWLIST = ALLOWLIST | {"numpy.random._generator.Generator", "numpy.random.Generator"}


# --------------------------------------------------------------------------- config targets
def split_target(dotted: str, *, bare_is_builtin: bool = True) -> tuple[str, str]:
    """`(module, qualname)` for a dotted path as config loaders resolve it: the last component is the
    attribute, a bare name is a builtin for PyYAML's `find_python_name` and `pydoc.locate` (HyperPyYAML),
    and a module for Hydra's `_locate` (`bare_is_builtin=False`)."""
    module, _, name = dotted.rpartition(".")
    if module:
        return module, name
    return ("builtins", name) if bare_is_builtin else (name, "")


def framework_of(dotted: str) -> str | None:
    """The framework namespace (a `CONFIG_FRAMEWORKS` key) that `dotted` lies in, if any."""
    for prefix in CONFIG_FRAMEWORKS:
        if dotted == prefix or dotted.startswith(prefix + "."):
            return prefix
    return None


def judge_target(dotted: str, *, bare_is_builtin: bool = True, trust: Trust | None = None) -> Verdict:
    """What a config loader does when it imports `dotted` and calls it: the catalogue's verdict, except
    that a name of a config framework the catalogue does not know to be dangerous is info."""
    module, qualname = split_target(dotted, bare_is_builtin=bare_is_builtin)
    verdict = (trust or Trust()).judge(module, qualname) if valid_module(module) else None
    if verdict is None:
        return _verdict(Kind.UNKNOWN, module.partition(".")[0], "not a Python dotted name")
    if verdict.kind in (Kind.UNKNOWN, Kind.LIBRARY, Kind.WALK):
        prefix = framework_of(dotted)
        # A private module inside a framework (hydra._internal.core_plugins) is the framework's; a dunder
        # or private attribute walked from it is not.
        walks = verdict.kind is Kind.WALK and any(p.startswith("_") for p in dotted[len(prefix or "") :].split("."))
        if prefix is not None and not walks:
            return _verdict(Kind.LIBRARY, verdict.package, f"{CONFIG_FRAMEWORKS[prefix]} ({prefix})", Severity.INFO)
    return verdict


#: scikit-learn's metric functions (sklearn.metrics.__all__, 1.9): a fitted search or scorer stores them
#: by name (skops FunctionNode, pickle GLOBAL) and calls them on labels and predictions only. Low: they
#: need scikit-learn, and skops asks the user to trust them.
LIBRARY_HELPERS = LIBRARY_HELPERS | frozenset(
    [
        *_names(
            "sklearn.metrics._classification",
            "accuracy_score balanced_accuracy_score brier_score_loss class_likelihood_ratios "
            "classification_report cohen_kappa_score confusion_matrix d2_brier_score d2_log_loss_score "
            "f1_score fbeta_score hamming_loss hinge_loss jaccard_score log_loss matthews_corrcoef "
            "multilabel_confusion_matrix precision_recall_fscore_support precision_score recall_score "
            "zero_one_loss",
        ),
        *_names(
            "sklearn.metrics._ranking",
            "auc average_precision_score confusion_matrix_at_thresholds coverage_error dcg_score det_curve "
            "label_ranking_average_precision_score label_ranking_loss metric_at_thresholds ndcg_score "
            "precision_recall_curve roc_auc_score roc_curve top_k_accuracy_score",
        ),
        *_names(
            "sklearn.metrics._regression",
            "d2_absolute_error_score d2_pinball_score d2_tweedie_score explained_variance_score max_error "
            "mean_absolute_error mean_absolute_percentage_error mean_gamma_deviance mean_pinball_loss "
            "mean_poisson_deviance mean_squared_error mean_squared_log_error mean_tweedie_deviance "
            "median_absolute_error r2_score root_mean_squared_error root_mean_squared_log_error",
        ),
        *_names(
            "sklearn.metrics.cluster._bicluster",
            "consensus_score",
        ),
        *_names(
            "sklearn.metrics.cluster._supervised",
            "adjusted_mutual_info_score adjusted_rand_score completeness_score fowlkes_mallows_score "
            "homogeneity_completeness_v_measure homogeneity_score mutual_info_score "
            "normalized_mutual_info_score pair_confusion_matrix rand_score v_measure_score",
        ),
        *_names(
            "sklearn.metrics.cluster._unsupervised",
            "calinski_harabasz_score davies_bouldin_score silhouette_samples silhouette_score",
        ),
        *_names(
            "sklearn.metrics.pairwise",
            "euclidean_distances nan_euclidean_distances pairwise_distances pairwise_distances_argmin "
            "pairwise_distances_argmin_min pairwise_distances_chunked pairwise_kernels",
        ),
    ]
)
