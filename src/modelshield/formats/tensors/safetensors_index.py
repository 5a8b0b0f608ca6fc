"""Sharded-checkpoint indexes (`model.safetensors.index.json`, `pytorch_model.bin.index.json`).

The index maps every tensor name to the shard file that holds it, and loaders open each shard by
joining its name to the model folder. A shard name is therefore a file path chosen by the publisher:
one that leaves the folder makes the loader open a file the user never downloaded or reviewed (for a
`.bin` index, one that `torch.load` unpickles).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from modelshield.core.findings import Finding
from modelshield.core.handler import Context, Handler
from modelshield.core.paths import escape_reason
from modelshield.core.rules import Category, Rule, Severity
from modelshield.core.source import Source
from modelshield.formats._json import json_object

#: Findings per rule: an index names at most a few hundred distinct shards.
MAX_FINDINGS_PER_RULE = 20

SHARD_ESCAPE = Rule(
    id="IDX001",
    title="Checkpoint index names a shard outside the model folder",
    severity=Severity.HIGH,
    category=Category.MODEL_DEPENDENCY,
    overview="A shard file name in the index's `weight_map` is an absolute path, a URL, contains a NUL "
    "byte, or climbs out of the model folder with `..`. Real indexes name plain files next to them "
    "(`model-00001-of-00004.safetensors`).",
    attack="transformers, diffusers and accelerate join each shard name to the model folder and open it. "
    "A traversing name makes them load a file the attacker planted elsewhere (a shared cache, a "
    "previous download, an upload folder), and for `pytorch_model.bin.index.json` that file is "
    "unpickled by `torch.load`, which runs code. The reviewed repository looks clean because the "
    "payload is not in it.",
    impact="Loading reads, or with pickle shards executes, a file that was never scanned with the model.",
    remediation="Do not load the model. Rewrite the index so every shard is a plain file name in the "
    "model folder, or obtain a corrected index from the publisher.",
    example='`"weight_map": {"lm_head.weight": "../../../tmp/uploads/evil.bin"}`',
)

SHARD_MISSING = Rule(
    id="IDX002",
    title="Shard named by a checkpoint index is not next to it",
    severity=Severity.LOW,
    category=Category.MODEL_DEPENDENCY,
    overview="The index names a shard that does not exist in the scanned folder, so that shard was not scanned.",
    attack="A loader pointed at a hub repository downloads missing shards at load time; whatever they "
    "contain was outside this scan.",
    impact="Part of the model was not reviewed.",
    remediation="Scan the complete model folder, with every shard the index names.",
    example="`model.safetensors.index.json` naming `model-00003-of-00003.safetensors`, absent from the folder.",
)

RULES = (SHARD_ESCAPE, SHARD_MISSING)


def weight_map(source: Source) -> dict[str, str] | None:
    """The index's tensor-to-shard map if the bytes are a checkpoint index, else None.

    An index is a JSON object whose `weight_map` maps strings to strings, with optional `metadata`
    (an object); the shape decides, not the file name.
    """
    index: dict[str, Any] | None = json_object(source, b'"weight_map"')
    if index is None:
        return None
    mapping = index.get("weight_map")
    if not isinstance(mapping, dict) or not isinstance(index.get("metadata", {}), dict):
        return None
    if not all(isinstance(shard, str) for shard in mapping.values()):
        return None
    return mapping


class SafetensorsIndexHandler(Handler):
    name = "checkpoint-index"
    label = "sharded checkpoint index"
    rules = RULES

    def detect(self, source: Source) -> bool:
        return weight_map(source) is not None

    def scan(self, source: Source, ctx: Context) -> Iterator[Finding]:
        mapping = weight_map(source)
        assert mapping is not None
        shards: dict[str, list[str]] = {}
        for tensor, shard in mapping.items():
            shards.setdefault(shard, []).append(tensor)
        # Shards are only looked for next to an index on disk, not inside an archive.
        folder = None if ctx.location.members else os.path.dirname(ctx.location.path) or "."
        counts = {rule.id: 0 for rule in RULES}
        for shard, tensors in shards.items():
            reason = escape_reason(shard)
            rule = SHARD_ESCAPE
            if reason is None:
                if folder is None or os.path.lexists(os.path.join(folder, shard)):
                    continue
                rule, reason = SHARD_MISSING, "is not in the scanned folder"
            counts[rule.id] += 1
            if counts[rule.id] <= MAX_FINDINGS_PER_RULE:
                evidence = f"shard {shard!r} {reason} ({len(tensors)} tensor(s), e.g. {tensors[0]!r})"
                yield ctx.finding(rule, evidence, shard=shard, tensors=len(tensors))
        for rule in RULES:
            if counts[rule.id] > MAX_FINDINGS_PER_RULE:
                yield ctx.finding(rule, f"{counts[rule.id] - MAX_FINDINGS_PER_RULE} more shards not listed")
