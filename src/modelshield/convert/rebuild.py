"""A strict reading of a checkpoint's pickle that honours only what a tensor rebuild needs.

The scanner's pickle machine is symbolic: it follows every call to report what it would do. Conversion
needs the opposite discipline: the values themselves (storages, offsets, sizes, strides, dtypes, names),
and a refusal the moment the pickle asks for anything else. So this reader knows a handful of opcodes
and globals (`torch._utils._rebuild_*`, the storage types, `collections.OrderedDict` and plain data) and
raises `Refused` on the rest. Opcodes are decoded by `pickletools.genops`, a parser of the stream that
never imports or calls anything.
"""

from __future__ import annotations

import math
import pickletools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any


class Refused(Exception):
    """The pickle asks for something a tensor rebuild does not need; nothing is converted."""

    def __init__(self, reason: str, name: str | None = None) -> None:
        super().__init__(reason)
        #: the global the pickle named, when that is what was refused
        self.name = name


@dataclass(frozen=True)
class Dtype:
    """A torch dtype by its safetensors name and element size in bytes."""

    name: str
    itemsize: int


#: torch dtype attribute -> safetensors dtype (only the dtypes safetensors can hold).
DTYPES = {
    "float64": Dtype("F64", 8),
    "float32": Dtype("F32", 4),
    "float16": Dtype("F16", 2),
    "bfloat16": Dtype("BF16", 2),
    "int64": Dtype("I64", 8),
    "int32": Dtype("I32", 4),
    "int16": Dtype("I16", 2),
    "int8": Dtype("I8", 1),
    "uint8": Dtype("U8", 1),
    "uint16": Dtype("U16", 2),
    "uint32": Dtype("U32", 4),
    "uint64": Dtype("U64", 8),
    "bool": Dtype("BOOL", 1),
    "float8_e4m3fn": Dtype("F8_E4M3", 1),
    "float8_e5m2": Dtype("F8_E5M2", 1),
    "float8_e4m3fnuz": Dtype("F8_E4M3FNUZ", 1),
    "float8_e5m2fnuz": Dtype("F8_E5M2FNUZ", 1),
    "complex64": Dtype("C64", 8),
}
#: The legacy typed storage classes `torch.save` names in persistent ids, by the dtype they hold.
STORAGES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
}


@dataclass(frozen=True)
class Storage:
    """A storage by its key in the archive (`data/<key>`); `dtype` None for an untyped (byte) storage."""

    key: str
    dtype: Dtype | None
    numel: int


@dataclass(frozen=True)
class Tensor:
    """A strided view of a storage, as `_rebuild_tensor_v2/v3` describes it."""

    storage: Storage
    dtype: Dtype
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


@dataclass(frozen=True)
class _Global:
    module: str
    name: str

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


#: NumPy type strings (without byte order) -> the torch dtype names of DTYPES.
NUMPY_KINDS = {
    "f8": "float64",
    "f4": "float32",
    "f2": "float16",
    "i8": "int64",
    "i4": "int32",
    "i2": "int16",
    "i1": "int8",
    "u1": "uint8",
    "u2": "uint16",
    "u4": "uint32",
    "u8": "uint64",
    "b1": "bool",
    "c8": "complex64",
}


@dataclass
class _NumpyDtype:
    """`numpy.dtype('f4', False, True)` as joblib pickles it; BUILD then sets its byte order."""

    kind: str
    byteorder: str = "|"


class _ArrayWrapper:
    """`joblib.numpy_pickle.NumpyArrayWrapper` before its BUILD, which is followed by the raw array."""


class JoblibArrays:
    """Where the raw bytes of each array a joblib pickle embeds lie: joblib writes them into the stream
    right after the BUILD of each NumpyArrayWrapper (after a padding-length byte and its padding, in
    joblib 1.2 and later), so reading them means skipping them in the stream."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.records: dict[str, tuple[int, int] | None] = {}

    def array(self, state: Any) -> Tensor:
        if not isinstance(state, dict):
            raise Refused("a NumpyArrayWrapper's state is not a dictionary")
        dtype, order = state.get("dtype"), state.get("order")
        if not isinstance(dtype, _NumpyDtype) or dtype.kind not in NUMPY_KINDS or dtype.byteorder not in "<|=":
            raise Refused(f"a joblib array of dtype {dtype!r} cannot be written to safetensors")
        if order not in ("C", "F"):
            raise Refused(f"a joblib array has order {order!r}")
        shape = _ints(state.get("shape"), "an array shape")
        if state.get("numpy_array_alignment_bytes") is not None:
            padding = self.stream.read(1)
            if len(padding) != 1:
                raise Refused("the joblib file ends before an array")
            self.stream.seek(padding[0], 1)
        element = DTYPES[NUMPY_KINDS[dtype.kind]]
        count = math.prod(shape)
        key = f"joblib{len(self.records)}"
        offset = self.stream.tell()
        self.records[key] = (offset, count * element.itemsize)
        self.stream.seek(offset + count * element.itemsize)
        return Tensor(Storage(key, element, count), element, 0, shape, strides(shape, order == "F"))


def strides(shape: tuple[int, ...], fortran: bool) -> tuple[int, ...]:
    """Element strides of a C-order (row-major) or Fortran-order (column-major) array."""
    if fortran:
        return tuple(math.prod(shape[:i]) for i in range(len(shape)))
    return tuple(math.prod(shape[i + 1 :]) for i in range(len(shape)))


class _Opaque:
    """Plain data the converter does not need (a numpy scalar, an empty set): kept out of the tensors."""


class _Mark:
    pass


_MARK = _Mark()
#: Globals whose call yields plain data the converter ignores (they never touch tensors).
_OPAQUE = frozenset(
    {
        "_codecs.encode",
        "builtins.set",
        "builtins.frozenset",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.dtype",
        "builtins.slice",
    }
)
_REBUILD_TENSOR = frozenset({"torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2"})
_REBUILD_PARAMETER = frozenset({"torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state"})


_JOBLIB = frozenset({"joblib.numpy_pickle.NumpyArrayWrapper", "numpy.ndarray", "numpy.dtype"})


def _global(module: str, name: str, joblib: bool = False) -> _Global:
    dotted = f"{module}.{name}"
    known = (
        (joblib and dotted in _JOBLIB)
        or dotted in _OPAQUE
        or dotted in _REBUILD_TENSOR
        or dotted in _REBUILD_PARAMETER
        or dotted in ("torch._utils._rebuild_tensor_v3", "collections.OrderedDict", "torch.storage.UntypedStorage")
        or (module == "torch" and (name in STORAGES or name in DTYPES))
    )
    if not known:
        raise Refused(f"the pickle imports {dotted}, which rebuilding tensors does not need", dotted)
    return _Global(module, name)


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Refused(f"{what} is {value!r}, not a non-negative integer")
    return value


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple):
        raise Refused(f"{what} is {type(value).__name__}, not a tuple")
    return tuple(_int(v, what) for v in value)


def _storage(pid: Any) -> Storage:
    """`('storage', torch.FloatStorage, '0', 'cpu', numel)`, the persistent id `torch.save` writes; the
    legacy format adds a sixth element, a view of another storage, which only torch 0.x wrote."""
    legacy = isinstance(pid, tuple) and len(pid) == 6 and pid[5] is None
    if not (isinstance(pid, tuple) and (len(pid) == 5 or legacy) and pid[0] == "storage"):
        raise Refused(f"persistent id {pid!r} is not a storage reference")
    _, kind, key, _location, numel = pid[:5]
    if not isinstance(kind, _Global) or not isinstance(key, str) or not key.isalnum():
        raise Refused(f"persistent id {pid!r} is not a storage reference")
    if kind.dotted == "torch.storage.UntypedStorage":
        return Storage(key, None, _int(numel, "a storage size"))
    if kind.module == "torch" and kind.name in STORAGES:
        return Storage(key, DTYPES[STORAGES[kind.name]], _int(numel, "a storage size"))
    raise Refused(f"storage type {kind.dotted} is not a tensor storage")


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, dtype: Dtype | None) -> Tensor:
    if not isinstance(storage, Storage):
        raise Refused("a tensor is rebuilt from something that is not a storage")
    dtype = dtype or storage.dtype
    if dtype is None:
        raise Refused("a tensor of an untyped storage names no dtype")
    sizes, strides = _ints(size, "a tensor size"), _ints(stride, "a tensor stride")
    if len(sizes) != len(strides):
        raise Refused(f"a tensor has {len(sizes)} sizes but {len(strides)} strides")
    return Tensor(storage, dtype, _int(offset, "a tensor offset"), sizes, strides)


def _call(func: Any, args: Any) -> Any:
    if not isinstance(func, _Global) or not isinstance(args, tuple):
        raise Refused("the pickle calls something that is not an imported function")
    dotted = func.dotted
    if dotted in _REBUILD_TENSOR and len(args) >= 4:
        return _tensor(args[0], args[1], args[2], args[3], None)
    if dotted == "torch._utils._rebuild_tensor_v3" and len(args) >= 7:
        dtype = args[6]
        if not (isinstance(dtype, _Global) and dtype.module == "torch" and dtype.name in DTYPES):
            raise Refused(f"tensor dtype {dtype!r} cannot be written to safetensors")
        return _tensor(args[0], args[1], args[2], args[3], DTYPES[dtype.name])
    if dotted in _REBUILD_PARAMETER and args and isinstance(args[0], Tensor):
        return args[0]
    if dotted == "collections.OrderedDict" and args == ():
        return {}
    if dotted == "collections.OrderedDict" and len(args) == 1 and isinstance(args[0], list):  # older pickles
        pairs = args[0]
        if not all(isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[0], (str, int)) for p in pairs):
            raise Refused("OrderedDict is called with something other than (key, value) pairs")
        return {p[0]: p[1] for p in pairs}
    if dotted in _OPAQUE:
        return _Opaque()
    raise Refused(f"the pickle calls {dotted}{' with unexpected arguments' if dotted else ''}")


def _pop_mark(stack: list[Any]) -> list[Any]:
    for index in range(len(stack) - 1, -1, -1):
        if stack[index] is _MARK:
            items = stack[index + 1 :]
            del stack[index:]
            return items
    raise Refused("the pickle pops a mark it never set")


def _set_items(target: Any, items: list[Any]) -> None:
    if not isinstance(target, dict) or len(items) % 2:
        raise Refused("the pickle sets items on something that is not a dictionary")
    for key, value in zip(items[::2], items[1::2], strict=True):
        if not isinstance(key, (str, int)):
            raise Refused(f"a dictionary key is {type(key).__name__}")
        target[key] = value


_PUSH_ARG = frozenset(
    {
        "BINUNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE8",
        "UNICODE",
        "BININT",
        "BININT1",
        "BININT2",
        "LONG1",
        "LONG4",
        "INT",
        "LONG",
        "BINFLOAT",
        "FLOAT",
        "SHORT_BINSTRING",
        "BINSTRING",
        "STRING",
        "BINBYTES",
        "SHORT_BINBYTES",
        "BINBYTES8",
    }
)


def read(data: bytes | IO[bytes], joblib: JoblibArrays | None = None) -> Any:
    """The value the pickle builds, with tensors as `Tensor`; raises `Refused` on anything else. From a
    stream, reading stops right after the pickle's STOP (the legacy format puts pickles one after another).
    With `joblib`, NumPy arrays that joblib embeds after their wrapper are tensors too."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    ops: Iterator[tuple[Any, Any, int | None]] = pickletools.genops(data)
    try:
        for opcode, arg, _pos in ops:
            name = opcode.name
            if name in ("PROTO", "FRAME"):
                continue
            if name in _PUSH_ARG:
                stack.append(arg)
            elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
                stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])
            elif name == "EMPTY_DICT":
                stack.append({})
            elif name == "EMPTY_LIST":
                stack.append([])
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name == "MARK":
                stack.append(_MARK)
            elif name == "TUPLE":
                stack.append(tuple(_pop_mark(stack)))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                count = int(name[-1])
                if len(stack) < count or any(v is _MARK for v in stack[-count:]):
                    raise Refused(f"{name} on a stack that does not hold {count} values")
                values = tuple(stack[-count:])
                del stack[-count:]
                stack.append(values)
            elif name == "LIST":
                stack.append(_pop_mark(stack))
            elif name == "DICT":
                target: dict[Any, Any] = {}
                _set_items(target, _pop_mark(stack))
                stack.append(target)
            elif name == "APPEND":
                value = stack.pop()
                if not isinstance(stack[-1], list):
                    raise Refused("the pickle appends to something that is not a list")
                stack[-1].append(value)
            elif name == "APPENDS":
                items = _pop_mark(stack)
                if not isinstance(stack[-1], list):
                    raise Refused("the pickle appends to something that is not a list")
                stack[-1].extend(items)
            elif name == "SETITEM":
                value, key = stack.pop(), stack.pop()
                _set_items(stack[-1], [key, value])
            elif name == "SETITEMS":
                items = _pop_mark(stack)
                _set_items(stack[-1], items)
            elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[int(arg)] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                if int(arg) not in memo:
                    raise Refused(f"the pickle reads memo entry {arg} before writing it")
                stack.append(memo[int(arg)])
            elif name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
                stack.append(_global(module, attr, joblib is not None))
            elif name == "STACK_GLOBAL":
                attr, module = stack.pop(), stack.pop()
                if not isinstance(module, str) or not isinstance(attr, str):
                    raise Refused("STACK_GLOBAL with names that are not strings")
                stack.append(_global(module, attr, joblib is not None))
            elif name == "REDUCE":
                args = stack.pop()
                func = stack.pop()
                if joblib is not None and isinstance(func, _Global) and func.dotted == "numpy.dtype":
                    stack.append(_NumpyDtype(args[0]) if args and isinstance(args[0], str) else _Opaque())
                else:
                    stack.append(_call(func, args))
            elif name == "NEWOBJ":
                args, cls = stack.pop(), stack.pop()
                if not (isinstance(cls, _Global) and cls.dotted == "joblib.numpy_pickle.NumpyArrayWrapper"):
                    raise Refused(f"the pickle creates a {getattr(cls, 'dotted', cls)!r} object")
                stack.append(_ArrayWrapper())
            elif name == "BINPERSID":
                stack.append(_storage(stack.pop()))
            elif name == "BUILD":
                state = stack.pop()
                if isinstance(stack[-1], _ArrayWrapper) and joblib is not None:
                    stack[-1] = joblib.array(state)
                    continue
                if isinstance(stack[-1], _NumpyDtype):
                    if isinstance(state, tuple) and len(state) > 1 and isinstance(state[1], str):
                        stack[-1].byteorder = state[1]
                    continue
                if not isinstance(stack[-1], dict) or not isinstance(state, dict):
                    raise Refused("the pickle sets the state of something other than a dictionary")
                # An OrderedDict's state (a state dict's `_metadata`) is plain data: not a tensor.
            elif name == "STOP":
                if len(stack) != 1:
                    raise Refused("the pickle ends with a malformed stack")
                return stack[0]
            else:
                raise Refused(f"the pickle uses {name}, which rebuilding tensors does not need")
    except (IndexError, ValueError) as exc:
        raise Refused(f"the pickle is malformed: {exc}") from None
    raise Refused("the pickle has no STOP")


#: Keys of a training checkpoint whose value is the model's state dict.
STATE_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network")


def _flatten(value: object, prefix: str, out: dict[str, Tensor], skipped: list[str]) -> None:
    """Tensors of nested dictionaries under dotted names; other values are skipped plain data."""
    if isinstance(value, Tensor):
        out[prefix] = value
    elif isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out, skipped)
    elif isinstance(value, (list, tuple)) and any(isinstance(v, Tensor) for v in value):
        raise Refused(f"{prefix or 'the checkpoint'} holds tensors in a list, which has no tensor names")
    elif prefix:
        skipped.append(prefix)


def state_dict(value: object) -> tuple[dict[str, Tensor], list[str]]:
    """The named tensors of a state dict, or of a training checkpoint's state-dict key."""
    if not isinstance(value, dict):
        raise Refused(f"the checkpoint holds a {type(value).__name__}, not a state dict")
    skipped: list[str] = []
    for key in STATE_KEYS:
        inner = value.get(key)
        if isinstance(inner, dict) and any(isinstance(v, Tensor) for v in inner.values()):
            tensors: dict[str, Tensor] = {}
            _flatten(inner, "", tensors, skipped)
            skipped += [str(k) for k in value if k != key]
            return tensors, skipped
    tensors = {}
    _flatten(value, "", tensors, skipped)
    if not tensors:
        raise Refused("the checkpoint holds no tensors")
    return tensors, skipped
