"""The registration point: every format and container handler, in detection order.

Adding a format means writing one module with a `Handler` subclass and adding one line here.
"""

from __future__ import annotations

from modelshield.containers.compressed import (
    Bzip2Handler,
    GzipHandler,
    JoblibZfileHandler,
    Lz4Handler,
    LzmaHandler,
    XzHandler,
    ZlibHandler,
    ZstdHandler,
)
from modelshield.containers.sevenzip import SevenZipHandler
from modelshield.containers.tararchive import TarHandler
from modelshield.containers.ziparchive import ZipHandler
from modelshield.core.handler import Handler
from modelshield.core.rules import CATALOGUE
from modelshield.core.scan_rules import ENGINE_RULES
from modelshield.formats.configs.hf_config import HfConfigHandler
from modelshield.formats.configs.mlflow import MlflowModelHandler
from modelshield.formats.configs.shadow_modules import ShadowModuleHandler
from modelshield.formats.configs.skops import SkopsHandler
from modelshield.formats.configs.torchserve import TorchServeArchiveHandler, TorchServeManifestHandler
from modelshield.formats.configs.yaml_config import YamlConfigHandler
from modelshield.formats.keras.config import KerasConfigHandler, KerasMetadataHandler
from modelshield.formats.keras.hdf5 import Hdf5Handler
from modelshield.formats.llm.gguf import GgufHandler
from modelshield.formats.llm.templates import ChatTemplateHandler, TokenizerConfigHandler
from modelshield.formats.onnx.model import OnnxHandler
from modelshield.formats.onnx.ort_format import OrtFormatHandler
from modelshield.formats.pickle import PickleHandler
from modelshield.formats.pickle.torch_package import TorchPackageHandler
from modelshield.formats.pickle.torch_views import TensorViewHandler
from modelshield.formats.pickle.torchscript import TorchScriptCodeHandler
from modelshield.formats.tensorflow.checkpoint import TensorBundleHandler
from modelshield.formats.tensorflow.savedmodel import GraphDefHandler, MetaGraphHandler, SavedModelHandler
from modelshield.formats.tensorflow.tflite import TfliteHandler
from modelshield.formats.tensors.numpy_array import NpyHandler
from modelshield.formats.tensors.safetensors import SafetensorsHandler
from modelshield.formats.tensors.safetensors_index import SafetensorsIndexHandler
from modelshield.integrity.rules import INTEGRITY_RULES

HANDLERS: tuple[Handler, ...] = (
    ZipHandler(),
    TarHandler(),
    SevenZipHandler(),
    GzipHandler(),
    Bzip2Handler(),
    XzHandler(),
    LzmaHandler(),
    ZlibHandler(),
    Lz4Handler(),
    JoblibZfileHandler(),
    ZstdHandler(),
    PickleHandler(),
    NpyHandler(),
    SafetensorsHandler(),
    GgufHandler(),
    OnnxHandler(),
    OrtFormatHandler(),
    TfliteHandler(),
    Hdf5Handler(),
    SavedModelHandler(),
    MetaGraphHandler(),
    GraphDefHandler(),
    TensorBundleHandler(),
    KerasConfigHandler(),
    KerasMetadataHandler(),
    SafetensorsIndexHandler(),
    HfConfigHandler(),
    TokenizerConfigHandler(),
    ChatTemplateHandler(),
    TorchScriptCodeHandler(),
    TorchPackageHandler(),
    TensorViewHandler(),
    ShadowModuleHandler(),
    YamlConfigHandler(),
    SkopsHandler(),
    TorchServeArchiveHandler(),
    TorchServeManifestHandler(),
    MlflowModelHandler(),
)

CATALOGUE.register(ENGINE_RULES)
CATALOGUE.register(INTEGRITY_RULES)
for _handler in HANDLERS:
    CATALOGUE.register(_handler.rules)

#: Allowlist keys the policy accepts under `[allow]`, declared by the handlers that read them.
ALLOWLISTS: frozenset[str] = frozenset(key for handler in HANDLERS for key in handler.allowlists)
