"""Keras configs (.keras archives, config.json, keras_metadata.pb): real models from Keras 3 and tf.keras
are clean, every rule fires on framework-made or hand-built hostile files (scripts/make_keras_fixtures.py)."""

from __future__ import annotations

import base64
import io
import json
import marshal
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from modelshield import FileResult, Policy, scan_file
from modelshield.core.rules import Severity
from modelshield.core.source import BytesSource
from modelshield.formats.keras import marshal as _marshal
from modelshield.formats.keras.config import MAX_PER_RULE, KerasMetadataHandler, standard_names
from modelshield.registry import HANDLERS
from tests.conftest import ScanData, UnsizedStream
from tests.helpers import evil_pickle, is_code_execution

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keras"
REAL = sorted((FIXTURES / "real").iterdir())


def rules(result: FileResult, at_least: Severity = Severity.INFO) -> list[str]:
    return [f.rule_id for f in result.findings if f.level >= at_least]


def keras_object(
    class_name: str,
    config: dict[str, Any] | None = None,
    module: str | None = "keras.layers",
    registered_name: str | None = None,
) -> dict[str, Any]:
    return {
        "module": module,
        "class_name": class_name,
        "config": config or {"name": class_name.lower()},
        "registered_name": registered_name,
    }


def model(*layers: dict[str, Any], **extra: Any) -> bytes:
    config = {
        "module": "keras",
        "class_name": "Sequential",
        "registered_name": None,
        "config": {"name": "sequential", "layers": list(layers)},
        **extra,
    }
    return json.dumps(config).encode()


def code_b64(function: Any) -> str:
    return base64.b64encode(marshal.dumps(function.__code__)).decode()


def payload(x: Any) -> Any:
    return os.system("touch /tmp/modelshield-marker-test") or x  # never called


# -- real models ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_real_models_have_no_findings(path: Path) -> None:
    result = scan_file(str(path))
    assert result.findings == [], [(f.rule_id, f.evidence) for f in result.findings]


def test_real_fixtures_cover_keras_3_and_tf_keras() -> None:
    names = {p.name for p in REAL}
    assert {"k3_sequential.keras", "k3_functional.keras", "k3_cnn.keras", "k3_rnn.keras"} <= names
    assert {"k2_sequential.h5", "k2_functional.h5", "k2_cnn.h5", "k2_rnn.h5", "k2_sequential.keras"} <= names
    assert all(p.stat().st_size < 256 * 1024 for p in FIXTURES.glob("*/*"))


# -- framework-made and hand-edited hostile files ---------------------------------------------------

HOSTILE = {
    "k3_lambda.keras": ("KRS001", Severity.CRITICAL),
    "k3_nested_lambda.keras": ("KRS001", Severity.CRITICAL),
    "lambda_in_initializer_and_loss.keras": ("KRS001", Severity.CRITICAL),
    "k2_lambda_keras_metadata.pb": ("KRS001", Severity.CRITICAL),
    "module_os_system.keras": ("KRS002", Severity.CRITICAL),
    "k3_custom_layer.keras": ("KRS003", Severity.LOW),
    "get_file_gadget.keras": ("KRS004", Severity.HIGH),
    "load_model_gadget.keras": ("KRS004", Severity.CRITICAL),
    "enable_unsafe_deserialization.keras": ("KRS004", Severity.CRITICAL),
    "tfsm_layer.keras": ("KRS006", Severity.HIGH),
    "tfsm_layer_remote.keras": ("KRS006", Severity.HIGH),
    "lookup_vocabulary_url.keras": ("KRS007", Severity.HIGH),
    "layer_name_traversal.keras": ("KRS008", Severity.HIGH),
    "unexpected_members.keras": ("KRS010", Severity.HIGH),
}


@pytest.mark.parametrize(("name", "expected"), HOSTILE.items())
def test_hostile_files(name: str, expected: tuple[str, Severity]) -> None:
    result = scan_file(str(FIXTURES / "malicious" / name))
    rule_id, severity = expected
    assert rule_id in rules(result)
    assert max(f.level for f in result.findings if f.rule_id == rule_id) == severity


def test_lambda_evidence_names_what_the_bytecode_does() -> None:
    result = scan_file(str(FIXTURES / "malicious" / "k3_lambda.keras"))
    [finding] = [f for f in result.findings if f.rule_id == "KRS001"]
    assert "[os, system]" in finding.evidence
    assert "touch /tmp/modelshield-marker-keras" in finding.evidence  # a bytecode constant
    assert "modelshield-marker-k3" in finding.evidence  # the closure value
    assert finding.details["path"] == "config.layers[2].config.function"
    assert is_code_execution(result, "config.json")


def test_nested_lambda_is_found_inside_a_sub_model() -> None:
    result = scan_file(str(FIXTURES / "malicious" / "k3_nested_lambda.keras"))
    [finding] = [f for f in result.findings if f.rule_id == "KRS001"]
    assert finding.details["path"].startswith("config.layers[")
    assert finding.details["path"].count("layers") == 2


def test_gadget_evidence_shows_arguments() -> None:
    result = scan_file(str(FIXTURES / "malicious" / "load_model_gadget.keras"))
    [finding] = [f for f in result.findings if f.rule_id == "KRS004"]
    assert "keras.saving.load_model" in finding.evidence and "safe_mode false" in finding.evidence


def test_unexpected_members_are_named() -> None:
    result = scan_file(str(FIXTURES / "malicious" / "unexpected_members.keras"))
    found = {f.location.members[-1]: f.level for f in result.findings if f.rule_id == "KRS010"}
    assert found == {"loader.py": Severity.HIGH, "extra/state.pkl": Severity.HIGH, "bundle.zip": Severity.MEDIUM}


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_keras_layout_is_recognised_under_another_name(scan_data: ScanData) -> None:
    members = {"metadata.json": b"{}", "config.json": model(), "assets/vocab.txt": b"a\n", "run.sh": b"id\n"}
    result = scan_data(zipped(members), "model.zip")
    assert [f.location.members[-1] for f in result.findings if f.rule_id == "KRS010"] == ["run.sh"]


def test_other_archives_are_not_judged_as_keras(scan_data: ScanData) -> None:
    result = scan_data(zipped({"config.json": b"{}", "setup.py": b"print(1)\n"}), "bundle.zip")
    assert "KRS010" not in rules(result)


# -- hand-built configs -----------------------------------------------------------------------------


def test_lambda_layer_of_keras_3(scan_data: ScanData) -> None:
    function = {"class_name": "__lambda__", "config": {"code": code_b64(payload), "defaults": None, "closure": None}}
    result = scan_data(model(keras_object("Lambda", {"name": "l", "function": function})), "config.json")
    [finding] = result.findings
    assert finding.rule_id == "KRS001" and "system" in finding.evidence and "marker-test" in finding.evidence


@pytest.mark.parametrize(
    "function",
    [
        [code_b64(payload), None, None],  # Keras 2 list
        code_b64(payload),  # very old Keras: bare base64
        {"class_name": "__tuple__", "items": [code_b64(payload), None, None]},  # keras_metadata.pb
    ],
)
def test_keras_2_lambda_encodings(scan_data: ScanData, function: Any) -> None:
    layer = {
        "class_name": "Lambda",
        "config": {
            "name": "l",
            "function": function,
            "function_type": "lambda",
            "module": "__main__",
            "output_shape": [3],
            "output_shape_type": "raw",
        },
    }
    result = scan_data(
        json.dumps({"class_name": "Sequential", "config": {"layers": [layer]}, "keras_version": "2.15.0"}).encode(),
        "model.json",
    )
    assert rules(result) == ["KRS001"]
    assert "[os, system]" in result.findings[0].evidence


def test_lambda_anywhere_even_undecodable(scan_data: ScanData) -> None:
    broken = {"class_name": "__lambda__", "config": {"value": ["!!!", None, None]}}
    dense = keras_object("Dense", {"name": "d", "activation": broken})
    result = scan_data(model(dense), "config.json")
    assert rules(result) == ["KRS001"] and result.findings[0].level is Severity.CRITICAL


def test_huge_bytecode_blob_is_bounded(scan_data: ScanData) -> None:
    function = {"class_name": "__lambda__", "config": {"code": "A" * 20_000_000}}
    result = scan_data(model(keras_object("Lambda", {"name": "l", "function": function})), "config.json")
    assert rules(result) == ["KRS001"]


def test_foreign_module_severity_and_allowlist(scan_data: ScanData) -> None:
    layer = keras_object("Block", module="mypkg.layers", registered_name="MyPkg>Block")
    result = scan_data(model(layer), "config.json")
    assert [(f.rule_id, f.level) for f in result.findings] == [("KRS002", Severity.HIGH)]
    allow = Policy(allow={"keras-layers": frozenset({"mypkg.layers.*"})})
    assert scan_data(model(layer), "config.json", policy=allow).findings == []
    stdlib = keras_object("check_output", module="subprocess")
    result = scan_data(model(stdlib), "config.json", policy=Policy(allow={"keras-layers": frozenset({"*"})}))
    assert [(f.rule_id, f.level) for f in result.findings] == [("KRS002", Severity.CRITICAL)]


@pytest.mark.parametrize(
    ("layer", "severity"),
    [
        (keras_object("Scale", module=None, registered_name="MyPkg>Scale"), Severity.LOW),
        (keras_object("Dense", registered_name="Evil>Dense"), Severity.LOW),
        ({"class_name": "MyLegacyLayer", "config": {}}, Severity.LOW),
        (keras_object("FutureLayer"), Severity.MEDIUM),
        (keras_object("GemmaBackbone", module="keras_hub.src.models.gemma"), Severity.LOW),
        (keras_object("Dense", {"name": "d", "kernel_initializer": keras_object("MyInit", module=None)}), Severity.LOW),
    ],
)
def test_custom_and_unknown_objects(scan_data: ScanData, layer: dict[str, Any], severity: Severity) -> None:
    result = scan_data(model(layer), "config.json")
    assert [(f.rule_id, f.level) for f in result.findings] == [("KRS003", severity)]


def test_custom_layer_allowlisted_by_registered_name(scan_data: ScanData) -> None:
    layer = keras_object("Scale", module=None, registered_name="MyPkg>Scale")
    policy = Policy(allow={"keras-layers": frozenset({"MyPkg>*"})})
    assert scan_data(model(layer), "config.json", policy=policy).findings == []


def test_function_references(scan_data: ScanData) -> None:
    def ref(module: str | None, name: str) -> dict[str, Any]:
        return {"module": module, "class_name": "function", "config": name, "registered_name": name}

    standard = keras_object("Dense", {"name": "d", "activation": ref("keras.activations", "gelu")})
    builtin = keras_object("Dense", {"name": "e", "activation": ref("builtins", "relu")})
    assert scan_data(model(standard, builtin), "config.json").findings == []
    plot = keras_object("Lambda", {"name": "p", "function": ref("keras.visualization", "plot_image_gallery")})
    foreign = keras_object("Lambda", {"name": "f", "function": ref("os", "system")})
    unknown = keras_object("Dense", {"name": "g", "activation": ref(None, "my_activation")})
    result = scan_data(model(plot, foreign, unknown), "config.json")
    assert rules(result) == ["KRS004", "KRS002", "KRS003"]


def test_torch_module_wrapper_payload_is_scanned(scan_data: ScanData) -> None:
    encoded = base64.b64encode(evil_pickle("id")).decode()
    layer = keras_object("TorchModuleWrapper", {"name": "t", "module": encoded})
    result = scan_data(model(layer), "config.json")
    assert "KRS005" in rules(result)
    assert any(o.location.endswith("!<TorchModuleWrapper config.layers[0]>") for o in result.objects)
    if any(h.name == "pickle" for h in HANDLERS):
        assert is_code_execution(result, "<TorchModuleWrapper config.layers[0]>")


@pytest.mark.parametrize(
    ("layer", "severity"),
    [
        (
            {"class_name": "TFOpLambda", "config": {"name": "tf.py_function", "function": "py_function"}},
            Severity.CRITICAL,
        ),
        ({"class_name": "TFOpLambda", "config": {"name": "w", "function": "tf.io.write_file"}}, Severity.HIGH),
        ({"class_name": "TensorFlowOpLayer", "config": {"name": "r", "node_def": {"op": "ReadFile"}}}, Severity.HIGH),
        (
            {
                "class_name": "ClassMethod",
                "config": {"name": "c", "cls_symbol": "data.Dataset", "method_name": "list_files"},
            },
            Severity.HIGH,
        ),
    ],
)
def test_tensorflow_operator_layers(scan_data: ScanData, layer: dict[str, Any], severity: Severity) -> None:
    result = scan_data(model(layer, keras_version="2.15.0"), "model.json")
    [finding] = result.findings
    assert (finding.rule_id, finding.level) == ("KRS009", severity)
    assert finding.details["tf_rule"].startswith("TFO")


def test_benign_tensorflow_operator_layers(scan_data: ScanData) -> None:
    layers = [
        {"class_name": "TFOpLambda", "config": {"name": "a", "function": "math.add"}},
        {"class_name": "SlicingOpLambda", "config": {"name": "s", "function": "__operators__.getitem"}},
    ]
    assert scan_data(model(*layers, keras_version="2.15.0"), "model.json").findings == []


@pytest.mark.parametrize("name", ["a/b", "..\\..\\x", "a\\b"])
def test_layer_names_with_separators(scan_data: ScanData, name: str) -> None:
    result = scan_data(model(keras_object("Dense", {"name": name})), "config.json")
    assert rules(result) == ["KRS008"]


def test_vocabulary_path_in_text_vectorization(scan_data: ScanData) -> None:
    layer = keras_object("TextVectorization", {"name": "t", "vocabulary": "/etc/passwd", "idf_weights": None})
    result = scan_data(model(layer), "config.json")
    [finding] = result.findings
    assert finding.rule_id == "KRS007" and finding.details["file"] == "/etc/passwd"


def test_findings_per_rule_are_capped(scan_data: ScanData) -> None:
    layers = [keras_object("Scale", {"name": f"s{i}"}, module=None, registered_name="P>Scale") for i in range(200)]
    result = scan_data(model(*layers), "config.json")
    assert len(result.findings) == MAX_PER_RULE + 1
    assert "150 more KRS003 findings" in result.findings[-1].evidence


def test_hostile_nesting_fails_closed(scan_data: ScanData) -> None:
    deep = b'{"module": "keras", "class_name": "Sequential", "config": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    result = scan_data(deep, "config.json")  # beyond what json (and so Keras) parses: not a model at all
    assert result.error is None and set(rules(result)) <= {"SCN003"}
    nested: Any = keras_object("Dense")
    for _ in range(150):  # deep but parseable: walked without recursion
        nested = keras_object("Dense", {"name": "d", "kernel_initializer": nested})
    assert scan_data(model(nested), "config.json").findings == []


# -- keras_metadata.pb ------------------------------------------------------------------------------


def test_keras_metadata_detection(scan_data: ScanData) -> None:
    handler = KerasMetadataHandler()
    real = (FIXTURES / "real" / "k2_functional_keras_metadata.pb").read_bytes()
    assert handler.detect(BytesSource(real))
    assert not handler.detect(BytesSource(b"\x08\x01\x12\x00"))
    assert not handler.detect(BytesSource(b"\x0a\x05\x22\x03abc"))  # identifier is not _tf_keras...
    truncated = scan_data(real[:-7], "keras_metadata.pb")  # recognised by its first node, fails closed
    assert rules(truncated) == ["SCN003"]


# -- the marshal reader -----------------------------------------------------------------------------


def test_marshal_reader_reads_names_strings_and_nested_functions() -> None:
    def outer(x: Any) -> Any:
        import subprocess

        inner = lambda: subprocess.check_output(["id"], text=True)  # noqa: E731
        return inner, x.real, 10**40, 1.5, b"raw", frozenset({"f"}), {"k": (1, 2)}

    summary = _marshal.summarise(marshal.dumps(outer.__code__))
    assert summary.parsed
    assert {"subprocess", "check_output", "real"} <= set(summary.names)
    assert {"id", "f", "k"} <= set(summary.strings)
    assert summary.functions[-1] == "outer" and "<lambda>" in summary.functions


#: `marshal.dumps(f.__code__)` by Python 3.8 and 3.13 of
#: `def f(x): import subprocess; g = lambda y: subprocess.check_output(['id']); return os.system(...), g, ...`
OTHER_PYTHONS = {
    "3.8": (
        "4wEAAAAAAAAAAAAAAAIAAAAEAAAAAwAAAHMoAAAAZAFkAGwAiQCHAGYBZAJkA4QIfQF0AaACZAShAXwBZAVkBmkBZgNTACkHTukA"
        "AAAAYwEAAAAAAAAAAAAAAAEAAAADAAAAEwAAAHMMAAAAiACgAGQBZwGhAVMAKQJO2gJpZCkB2gxjaGVja19vdXRwdXQpAdoBeakB"
        "2gpzdWJwcm9jZXNzqQDaCDxzdHJpbmc+2gg8bGFtYmRhPgUAAADzAAAAAHoTZi48bG9jYWxzPi48bGFtYmRhPvoRdG91Y2ggL3Rt"
        "cC9tYXJrZXLaAWGpAukBAAAA6QIAAAApA3IGAAAA2gJvc9oGc3lzdGVtKQLaAXjaAWdyBwAAAHIFAAAAcggAAADaAWYDAAAAcwYA"
        "AAAAAQgBDAE="
    ),
    "3.13": (
        "4wEAAAAAAAAAAAAAAAQAAAADAAAA804AAABeApUAUwFTAEsAbQJVAjQBUwIaAGoIbgFbAgAAAAAAAAAAUgQAAAAAAAAAAAAAAAAA"
        "AAAAAAAiAFMDNQEAAAAAAABVAVMEUwUwATQDJAApBk7pAAAAAGMBAAAAAAAAAAAAAAADAAAAEwAAAPMoAAAAPgGVAFQBUgEAAAAA"
        "AAAAAAAAAAAAAAAAAABTAS8BNQEAAAAAAAAkACkCTtoCaWQpAdoMY2hlY2tfb3V0cHV0KQLaAXnaCnN1YnByb2Nlc3NzAgAAACCA"
        "2gg8c3RyaW5nPtoIPGxhbWJkYT7aE2YuPGxvY2Fscz4uPGxhbWJkYT4FAAAAcxIAAAD4gACQKtcSKdESKag0qCbUEjHzAAAAAPoR"
        "dG91Y2ggL3RtcC9tYXJrZXLaAWGpAukBAAAA6QIAAAApA3IHAAAA2gJvc9oGc3lzdGVtKQPaAXjaAWdyBwAAAHMDAAAAICBAcggA"
        "AADaAWZyFQAAAAMAAABzJgAAAPiAANsEFdwIMYBB3AsNjzmKOdAVKNMLKagxqHOwRqht0As70AQ7cgsAAAA="
    ),
}


@pytest.mark.parametrize("version", OTHER_PYTHONS)
def test_marshal_reader_reads_other_python_versions(version: str) -> None:
    summary = _marshal.summarise(base64.b64decode(OTHER_PYTHONS[version]))
    assert summary.parsed
    assert summary.names == ["check_output", "subprocess", "os", "system"]
    assert {"id", "touch /tmp/marker"} <= set(summary.strings)
    assert summary.functions == ["<lambda>", "f"]


@pytest.mark.parametrize(
    "data",
    [b"", b"\xe3", b"\xe3\x00\x00", b")\x01" * 5000 + b"N", b"(\xff\xff\xff\x7f", b"r\x05\x00\x00\x00", b"?os.system"],
)
def test_marshal_reader_is_bounded_on_garbage(data: bytes) -> None:
    summary = _marshal.summarise(data)
    assert not summary.parsed


def test_marshal_reader_survives_truncation() -> None:
    data = marshal.dumps(payload.__code__)
    for cut in range(0, len(data), 7):
        _marshal.summarise(data[:cut])


def test_standard_names_cover_both_keras_generations() -> None:
    names = standard_names()
    assert {"Dense", "Conv2D", "Bidirectional", "TFOpLambda", "CuDNNLSTM", "RMSNormalization"} <= names.layers
    assert {"GlorotUniform", "AdamW", "ExponentialDecay", "MeanSquaredError", "DTypePolicy"} <= names.classes
    assert {"relu", "gelu", "mse"} <= names.functions
    assert "load_model" not in names.functions


def test_detection_does_not_decode_a_stream_whose_head_rules_out_keras_metadata(unsized_stream: UnsizedStream) -> None:
    """Asking a decoded stream for its size decodes all of it: the head must rule such data out first."""
    assert not KerasMetadataHandler().detect(unsized_stream(b"\x0a\x05\x00" + bytes(range(256)) * 64))


def test_keras_metadata_recognised_as_the_loader_parses_it(scan_data: ScanData) -> None:
    """Unknown fields first and a first node that is not a tf.keras object: SavedMetadata still parses
    and the loader still builds the Lambda node, so it is judged."""
    real = (FIXTURES / "malicious" / "k2_lambda_keras_metadata.pb").read_bytes()
    other_node = b"\x0a\x07\x10\x00\x22\x03abc"  # SavedObject{node_id 0, identifier 'abc'}
    result = scan_data(b"\x1a\x02hi" + b"\x2b\x08\x01\x2c" + other_node + real, "keras_metadata.pb")
    assert result.format == "keras-metadata"
    assert "KRS001" in rules(result)


def test_a_custom_class_not_in_the_file_says_what_the_user_must_check(scan_data: ScanData) -> None:
    """Keras refuses to load a class nobody registered, so the file cannot run it: low, with the reason."""
    layer = keras_object("Scale", module=None, registered_name="MyPkg>Scale")
    [finding] = scan_data(model(layer), "config.json").findings
    assert finding.level is Severity.LOW
    assert "not in the file" in finding.evidence and "whatever you register is what runs" in finding.evidence


def test_keras_config_recognised_by_what_the_loaders_need(scan_data: ScanData) -> None:
    """tf.keras's `model_from_json` needs no `keras_version`, and the key can come anywhere or escaped."""
    settings = {"name": "l", "function": code_b64(lambda x: x), "function_type": "lambda"}
    layers = [{"class_name": "Lambda", "config": settings}]
    config = {"config": {"name": "s", "layers": layers}, "padding": "x" * 5000, "class_name": "Sequential"}
    text = json.dumps(config).replace('"class_name": "Sequential"', '"class\\u005fname": "Sequential"')
    result = scan_data(text.encode(), "model.json")
    assert result.format == "keras-config"
    assert "KRS001" in rules(result)


def ref(module: str, name: str) -> dict[str, Any]:
    return {"module": module, "class_name": "function", "config": name}


@pytest.mark.parametrize(
    ("reference", "rule", "severity"),
    [
        # Keras before 3.9 imports any module; what it gets is what core/callables says.
        (ref("shutil", "rmtree"), "KRS002", Severity.HIGH),
        (ref("subprocess", "getoutput"), "KRS002", Severity.CRITICAL),
        # `builtins` falls back from Keras's own built-ins to `import_module("builtins")`.
        (ref("builtins", "exec"), "KRS002", Severity.CRITICAL),
        (ref("builtins", "open"), "KRS002", Severity.HIGH),
        # Keras's non-modelling functions under any of its sub-modules.
        (ref("keras.src.utils.file_utils", "get_file"), "KRS004", Severity.HIGH),
        (ref("keras.src.saving.saving_lib", "load_model"), "KRS004", Severity.HIGH),
        (ref("tf_keras.src.saving", "save_model"), "KRS004", Severity.HIGH),
        # red team: Keras resolves a dotted name under the module by public API name.
        (ref("keras", "utils.get_file"), "KRS004", Severity.HIGH),
        (ref("keras", "config.enable_unsafe_deserialization"), "KRS004", Severity.CRITICAL),
        (ref("keras.src.layers.core.lambda_layer", "x"), "KRS004", Severity.CRITICAL),
    ],
)  # fmt: skip
def test_function_references_are_judged_by_the_callable_catalogue(
    scan_data: ScanData, reference: dict[str, Any], rule: str, severity: Severity
) -> None:
    layer = keras_object("Lambda", {"name": "l", "function": reference})
    result = scan_data(model(layer), "config.json")
    assert [(f.rule_id, f.level) for f in result.findings] == [(rule, severity)]


def test_ordinary_builtin_functions_stay_quiet(scan_data: ScanData) -> None:
    relu = {"module": "builtins", "class_name": "function", "config": "relu", "registered_name": "relu"}
    layer = keras_object("Dense", {"name": "d", "activation": relu})
    assert scan_data(model(layer), "config.json").findings == []


def test_a_dotted_class_name_is_the_class_keras_resolves(scan_data: ScanData) -> None:
    """`{"module": "keras", "class_name": "layers.TFSMLayer"}` is looked up as `keras.layers.TFSMLayer`."""
    layer = keras_object("layers.TFSMLayer", {"name": "t", "filepath": "/srv/other_model"}, module="keras")
    result = scan_data(model(layer), "config.json")
    assert [(f.rule_id, f.level) for f in result.findings] == [("KRS006", Severity.HIGH)]
    dense = keras_object("layers.Dense", {"name": "d", "units": 1}, module="keras")
    assert scan_data(model(dense), "config.json").findings == []
