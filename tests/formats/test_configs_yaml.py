"""YAML configs that make loaders run code (PyYAML, Hydra/OmegaConf/NeMo, HyperPyYAML/SpeechBrain):
each rule fires on the payloads `scripts/prove_config_paths.py` proves in the real loaders, and real
configs of NeMo, SpeechBrain and Hydra stay at info."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelshield import FileResult, scan, scan_file
from modelshield.core.rules import Severity
from modelshield.core.source import BytesSource
from modelshield.formats.configs.yaml_config import LIMITS, YamlConfigHandler

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "configs" / "yaml"
HOSTILE = FIXTURES / "hostile"
REAL = FIXTURES / "real"
BENIGN = FIXTURES / "benign"


def worst(result: FileResult, rule: str) -> Severity | None:
    levels = [f.level for f in result.findings if f.rule_id == rule]
    return max(levels) if levels else None


def above_info(result: FileResult) -> list[str]:
    return [f"{f.rule_id} {f.level.label} {f.evidence}" for f in result.findings if f.level > Severity.INFO]


def scan_text(tmp_path: Path, text: str, name: str = "config.yaml") -> FileResult:
    path = tmp_path / name
    path.write_text(text)
    return scan_file(str(path))


@pytest.mark.parametrize(
    ("fixture", "rule", "level"),
    [
        ("pyyaml_reduce.yaml", "YML001", Severity.CRITICAL),
        ("pyyaml_tag_handle.yaml", "YML001", Severity.CRITICAL),
        ("pyyaml_escaped_tag.yaml", "YML001", Severity.CRITICAL),
        ("hydra_target.yaml", "YML002", Severity.CRITICAL),
        ("hydra_interpolated_target.yaml", "YML002", Severity.CRITICAL),
        ("hydra_partial.yaml", "YML002", Severity.CRITICAL),
        ("hydra_file_write.yaml", "YML002", Severity.HIGH),
        ("hydra_oc_create.yaml", "YML002", Severity.CRITICAL),
        ("omegaconf_eval.yaml", "YML003", Severity.CRITICAL),
        ("hyperpyyaml_apply.yaml", "YML004", Severity.CRITICAL),
        ("hyperpyyaml_new.yaml", "YML004", Severity.CRITICAL),
        ("hyperpyyaml_ref_walk.yaml", "YML004", Severity.CRITICAL),
        ("hyperpyyaml_tuple.yaml", "YML001", Severity.CRITICAL),
        ("include/extra.yaml", "YML004", Severity.CRITICAL),
        ("billion_laughs.yaml", "YML005", Severity.HIGH),
        ("deep_nesting.yaml", "YML005", Severity.CRITICAL),
        ("interpolation_bomb.yaml", "YML005", Severity.HIGH),
    ],
)
def test_each_proven_payload_fires(fixture: str, rule: str, level: Severity) -> None:
    result = scan_file(str(HOSTILE / fixture))
    assert result.format == "yaml-config"
    assert worst(result, rule) == level


def test_pyyaml_dump_spelling_of_os_system_is_judged_as_os(tmp_path: Path) -> None:
    result = scan_file(str(HOSTILE / "pyyaml_reduce.yaml"))
    [finding] = [f for f in result.findings if f.rule_id == "YML001"]
    assert "posix.system" in finding.evidence and "runs code" in finding.evidence
    assert finding.details["line"] == 1


def test_nemo_config_payload_is_located_at_the_archive_member() -> None:
    result = scan_file(str(HOSTILE / "evil_config.nemo"))
    [finding] = [f for f in result.findings if f.rule_id == "YML002" and f.level is Severity.CRITICAL]
    assert finding.location.members == ("./model_config.yaml",)
    assert "spec_augment._target_: os.system" in finding.evidence


def test_nemo_checkpoint_inside_a_gzip_archive_goes_through_the_pickle_analyser() -> None:
    result = scan_file(str(HOSTILE / "evil_weights.nemo"))
    [finding] = [f for f in result.findings if f.rule_id == "PKL001"]
    assert finding.location.members[-1] == "./model_weights.ckpt" and finding.level is Severity.CRITICAL
    assert above_info(result) == [f"PKL001 critical {finding.evidence}"]


def test_hyperpyyaml_include_is_followed_as_a_dependency() -> None:
    report = scan([str(HOSTILE / "include" / "hyperparams.yaml")])
    [dependency] = [f for f in report.findings if f.rule_id == "DEP002"]
    assert dependency.details["dependency"]["kind"] == "path"
    assert dependency.details["dependency"]["ref"] == "extra.yaml"
    chains = [f.evidence for f in report.findings if f.rule_id == "DEP004"]
    assert chains and "extra.yaml" in chains[0]
    assert report.exit_code == 1


# --------------------------------------------------------------------------- real configs stay quiet
@pytest.mark.parametrize("name", sorted(p.name for p in REAL.glob("*.yaml")))
def test_real_configs_have_nothing_above_info(name: str) -> None:
    result = scan_file(str(REAL / name))
    assert above_info(result) == [] or all(f.startswith("DEP00") for f in above_info(result))
    assert [f.rule_id for f in result.findings if f.rule_id.startswith("YML") and f.level > Severity.INFO] == []


def test_real_nemo_config_reports_its_framework_targets_as_info() -> None:
    result = scan_file(str(REAL / "conformer_ctc_bpe.yaml"))
    [info] = [f for f in result.findings if f.rule_id == "YML002"]
    assert info.level is Severity.INFO
    assert "nemo.collections.asr.modules.ConformerEncoder" in info.details["targets"]


def test_real_speechbrain_recipe_names_its_pretrained_model() -> None:
    result = scan_file(str(REAL / "verification_ecapa.yaml"))
    dependencies = [f.details["dependency"] for f in result.findings if f.rule_id == "DEP002"]
    assert {"kind": "hub", "ref": "speechbrain/spkrec-ecapa-voxceleb"}.items() <= dependencies[0].items()
    assert dependencies[0]["files"] == ["embedding_model.ckpt"]


def test_clean_nemo_archive_is_clean() -> None:
    result = scan_file(str(BENIGN / "conformer_ctc_bpe.nemo"))
    assert above_info(result) == []
    assert any(f.location.members == ("./model_config.yaml",) for f in result.findings)


def test_speechbrain_model_folder_follows_the_pretrainer_checkpoint() -> None:
    report = scan([str(BENIGN / "speechbrain_model")])
    assert [f for f in report.findings if f.level > Severity.INFO] == []
    [dependency] = [f.details["dependency"] for f in report.findings if f.rule_id == "DEP002"]
    assert dependency["kind"] == "path" and dependency["ref"].endswith("embedding_model.ckpt")
    assert report.exit_code == 0


# --------------------------------------------------------------------------- recognition
@pytest.mark.parametrize(
    "text",
    [
        "name: ci\non: [push]\njobs:\n  a:\n    steps:\n      - run: echo ${{ github.sha }}\n",
        "#!/bin/sh\necho ${HOME} and ${PATH}\n",
        "---\nlicense: mit\ntags: [audio]\n---\n# A model card\n\n**bold** and *italic*\n",
        "base: &base {lr: 0.1}\nrun: {<<: *base, epochs: 3}\n",
        '{"model": {"vocab": {"${": 1, "!!": 2}}}',
    ],
)
def test_plain_yaml_and_text_are_not_claimed(tmp_path: Path, text: str) -> None:
    assert not YamlConfigHandler().detect(BytesSource(text.encode()))


def test_utf16_yaml_is_read_as_pyyaml_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    path.write_bytes("model: !!python/object/apply:os.system [id]\n".encode("utf-16"))
    assert worst(scan_file(str(path)), "YML001") == Severity.CRITICAL


def test_a_large_text_file_with_no_config_marker_is_not_read_as_yaml(tmp_path: Path) -> None:
    assert not YamlConfigHandler().detect(BytesSource(b"word\n" * (LIMITS.max_bytes // 4)))


def test_an_oversized_yaml_that_names_a_payload_is_a_bound_finding(tmp_path: Path) -> None:
    head = b"pwn: !!python/object/apply:os.system [id]\n"
    result = scan_text(tmp_path, (head + b"# " + b"x" * LIMITS.max_bytes).decode())
    assert worst(result, "YML005") == Severity.CRITICAL


# --------------------------------------------------------------------------- red team
@pytest.mark.parametrize(
    ("text", "rule", "level"),
    [
        # PyYAML: verbatim tags, module imports, names returned for later calls, bare builtins.
        ("a: !<tag:yaml.org,2002:python/object/apply:os.system> [id]\n", "YML001", Severity.CRITICAL),
        ("a: !!python/module:os ''\n", "YML001", Severity.CRITICAL),
        ("a: !!python/name:eval ''\n", "YML001", Severity.CRITICAL),
        ("a: !!python/object:evil_pkg.Thing {x: 1}\n", "YML001", Severity.MEDIUM),
        ("- !!python/object/new:subprocess.Popen [[id]]\n", "YML001", Severity.CRITICAL),
        # Hydra: a flow mapping, a target in a list item, NeMo's Hydra 0.x and top-level class path.
        ("model: {_target_: builtins.exec, _args_: ['import os']}\n", "YML002", Severity.CRITICAL),
        ("callbacks:\n  - _target_: my_project.callbacks.Upload\n", "YML002", Severity.MEDIUM),
        ("encoder:\n  cls: subprocess.Popen\n  params: {args: [id]}\n", "YML002", Severity.CRITICAL),
        ("target: evil_pkg.models.Model\nsample_rate: 16000\n", "YML002", Severity.MEDIUM),
        ("x:\n  _target_: ${oc.env:TARGET}\n", "YML002", Severity.MEDIUM),
        ("x:\n  _target_: torch.load\n  f: model.bin\n", "YML002", Severity.HIGH),
        # OmegaConf resolvers.
        ("lr: ${eval:'2 * 0.1'}\n", "YML003", Severity.HIGH),
        ("lr: ${my_resolver:1}\n", "YML003", Severity.MEDIUM),
        ("url: https://x/${oc.env:AWS_SECRET_ACCESS_KEY}\n", "YML003", Severity.MEDIUM),
        ("a: ${oc.decode:${eval:'__import__(\"os\")'}}\n", "YML003", Severity.CRITICAL),
        ("x: \"${oc.create:'{_target_: os.system, _args_: [id]}'}\"\n", "YML002", Severity.CRITICAL),
        # HyperPyYAML: every calling tag, escaped spellings, explicit tuples.
        ("m: !module:os\n", "YML004", Severity.CRITICAL),
        ("f: !name:os.system\n", "YML004", Severity.CRITICAL),
        ("f: !applyref:os.system [id]\n", "YML004", Severity.CRITICAL),
        ("f: !new%3Asubprocess.Popen [[id]]\n", "YML004", Severity.CRITICAL),
        ("f: !new:my_pkg.Model {}\n", "YML004", Severity.MEDIUM),
        ("t: !tuple '(1, !!python/name:os.system )'\n", "YML001", Severity.CRITICAL),
        ("a: !new:torch.nn.Linear [1, 2]\nb: !ref <a._parameters>\n", "YML004", Severity.CRITICAL),
        # JSON is YAML to OmegaConf.load; escapes in double quotes spell keys, tags and resolvers.
        ('{"model": {"_target_": "os.system", "_args_": ["id"]}}', "YML002", Severity.CRITICAL),
        ('x: {"\\x5ftarget_": "os.system"}\n', "YML002", Severity.CRITICAL),
        ('lr: "\\x24{eval:\'__import__(\\"os\\")\'}"\n', "YML003", Severity.CRITICAL),
        # A tag on a mapping key is constructed like one on a value.
        ("? !!python/name:os.system\n: 1\n", "YML001", Severity.CRITICAL),
        ("!new:subprocess.Popen : 1\n", "YML004", Severity.CRITICAL),
        # Merge keys multiply like aliases in every loader that flattens them.
        (
            "a: &a {k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, k5: 5, k6: 6, k7: 7, k8: 8, k9: 9}\n"
            + "".join(
                f"l{i}: &l{i} {{<<: [{', '.join([f'*{p}' for p in ['a' if i == 0 else f'l{i - 1}'] * 10])}]}}\n"
                for i in range(8)
            )
            + "t: {_target_: torch.nn.Linear}\n",
            "YML005",
            Severity.HIGH,
        ),
    ],
)
def test_attacks_that_know_the_rules_still_fire(tmp_path: Path, text: str, rule: str, level: Severity) -> None:
    assert worst(scan_text(tmp_path, text), rule) == level


@pytest.mark.parametrize(
    "text",
    [
        "seed: 1\n__set_seed: !apply:torch.manual_seed [!ref <seed>]\nopt: !name:torch.optim.Adam\n",
        "a: !new:speechbrain.nnet.linear.Linear {input_size: 2, n_neurons: 3}\nb: !ref <a>\nc: !copy <a>\n",
        "tok: !new:sentencepiece.SentencePieceProcessor\n",
        "x:\n  _target_: torch.optim.AdamW\n  lr: ${model.lr}\n  _partial_: true\nmodel: {lr: 0.1}\n",
        "path: ${oc.env:HOME}/data\nname: ${now:%Y-%m-%d}\nout: ${hydra:runtime.output_dir}\n",
        "hydra:\n  launcher:\n    _target_: hydra._internal.core_plugins.basic_launcher.BasicLauncher\n",
        "model:\n  target: nemo.collections.asr.models.EncDecCTCModel\n",
        "sizes: (1, 2)\ndims: !tuple (3, 4)\n",
    ],
)
def test_ordinary_framework_usage_stays_at_info(tmp_path: Path, text: str) -> None:
    assert above_info(scan_text(tmp_path, text)) == []
