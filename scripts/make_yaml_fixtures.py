"""Write the YAML config fixtures (tests/fixtures/configs/yaml) with the real libraries.

Run with the config environment (hydra-core, omegaconf, hyperpyyaml, pyyaml installed):

    /work/envs/cfg/bin/python scripts/make_yaml_fixtures.py

PyYAML's own dumper writes the python-tag payload (from an object's `__reduce__`), OmegaConf writes the
Hydra configs and NeMo's `model_config.yaml` (NeMo saves its config with `OmegaConf.save`), and the
`.nemo` archives follow NeMo's layout (`SaveRestoreConnector`: a tar of `./model_config.yaml`,
`./model_weights.ckpt` and artifacts, plain or gzip). HyperPyYAML has no writer for its tags, so those
files are text, proven to load by `scripts/prove_config_paths.py`. Every payload only creates a file
named `fired-<fixture>` in the working directory.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import tarfile
from pathlib import Path

import yaml
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "configs" / "yaml"
HOSTILE = OUT / "hostile"
BENIGN = OUT / "benign"
REAL = OUT / "real"


def command(name: str) -> str:
    return f"touch fired-{name}"


class Payload:
    """Pickled or YAML-dumped as a call of os.system (what `__reduce__` says to call)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (command(self.name),)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def pyyaml() -> None:
    # PyYAML's dumper spells os.system by its home module, `posix.system`.
    write(HOSTILE / "pyyaml_reduce.yaml", yaml.dump({"model": Payload("pyyaml_reduce")}))
    write(
        HOSTILE / "pyyaml_tag_handle.yaml",
        "%TAG !p! tag:yaml.org,2002:python/\n---\n"
        f'model: !p!object/apply:os.system ["{command("pyyaml_tag_handle")}"]\n',
    )
    write(
        HOSTILE / "pyyaml_escaped_tag.yaml",
        f'model: !!python%2Fobject/apply:os.system ["{command("pyyaml_escaped_tag")}"]\n',
    )


def hydra() -> None:
    target = {"model": {"encoder": {"_target_": "os.system", "_args_": [command("hydra_target")]}}}
    OmegaConf.save(OmegaConf.create(target), HOSTILE / "hydra_target.yaml")
    interpolated = {
        "cmd": "os.system",
        "model": {"_target_": "${cmd}", "_args_": [command("hydra_interpolated_target")]},
    }
    OmegaConf.save(OmegaConf.create(interpolated), HOSTILE / "hydra_interpolated_target.yaml")
    partial = {"model": {"_target_": "subprocess.run", "_partial_": True, "args": ["touch", "fired-hydra_partial"]}}
    OmegaConf.save(OmegaConf.create(partial), HOSTILE / "hydra_partial.yaml")
    # oc.create parses its string argument into config: a target hidden in a string.
    created = "${oc.create:'{_target_: os.system, _args_: [\"" + command("hydra_oc_create") + "\"]}'}"
    OmegaConf.save(OmegaConf.create({"model": created}), HOSTILE / "hydra_oc_create.yaml")
    # Hydra 1.3.8's target policy blocks os.system and subprocess, not file writes (a `.pth` file in
    # site-packages, a shell profile): pathlib's Path.write_text on a Path it builds itself.
    write_file = {"_target_": "pathlib.Path", "_args_": ["fired-hydra_file_write"]}
    writer = {"model": {"_target_": "pathlib.Path.write_text", "_args_": [write_file, "import os"]}}
    OmegaConf.save(OmegaConf.create(writer), HOSTILE / "hydra_file_write.yaml")
    code = f"__import__('os').system('{command('omegaconf_eval_resolver')}')"
    OmegaConf.save(OmegaConf.create({"model": {"lr": '${eval:"' + code + '"}'}}), HOSTILE / "omegaconf_eval.yaml")


def hyperpyyaml() -> None:
    apply = f'n_mels: 80\npwn: !apply:os.system ["{command("hyperpyyaml_apply")}"]\n'
    write(HOSTILE / "hyperpyyaml_apply.yaml", apply)
    write(
        HOSTILE / "hyperpyyaml_new.yaml",
        f'proc: !new:subprocess.Popen\n    args: ["sh", "-c", "{command("hyperpyyaml_new")}"]\n',
    )
    write(
        HOSTILE / "hyperpyyaml_tuple.yaml",
        f'sizes: (1, !!python/object/apply:os.system ["{command("hyperpyyaml_tuple")}"])\n',
    )
    write(HOSTILE / "hyperpyyaml_ref_walk.yaml", "a: !new:collections.Counter\nb: !ref <a.__class__>\n")
    write(HOSTILE / "include" / "hyperparams.yaml", "seed: 1\nrest: !include:extra.yaml\n")
    write(HOSTILE / "include" / "extra.yaml", f'pwn: !apply:os.system ["{command("hyperpyyaml_include")}"]\n')


def bombs() -> None:
    lines = ["l0: &l0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)]
    write(HOSTILE / "billion_laughs.yaml", "\n".join(lines) + "\n")
    # A payload past the nesting: an analyser that gives up at the depth must not call the file clean.
    payload = f'b: !!python/object/apply:os.system ["{command("deep_nesting")}"]\n'
    write(HOSTILE / "deep_nesting.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n" + payload)
    # Each value repeats the previous one four times: 15 levels are 4**15 copies once OmegaConf resolves.
    refs = ["a: lol"] + [f"{chr(98 + i)}: " + f"${{{chr(97 + i)}}}" * 4 for i in range(15)]
    write(HOSTILE / "interpolation_bomb.yaml", "\n".join(refs) + "\n")


def nemo_archive(path: Path, config: dict[str, object], weights: bytes, *, gz: bool = False) -> None:
    """A `.nemo` as NeMo's SaveRestoreConnector writes it: `tar.add(folder, arcname=".")`."""
    stage = path.with_suffix(".stage")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(config), stage / "model_config.yaml")
    (stage / "model_weights.ckpt").write_bytes(weights)
    (stage / "tokenizer.vocab").write_text("<unk>\n<s>\n</s>\n")

    def fixed(info: tarfile.TarInfo) -> tarfile.TarInfo:  # the same bytes on every run
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        return info

    with tarfile.open(path, "w:gz" if gz else "w:") as tar:
        tar.add(stage, arcname=".", filter=fixed)
    shutil.rmtree(stage)


def nemo() -> None:
    real = yaml.safe_load((REAL / "conformer_ctc_bpe.yaml").read_text())
    model = dict(real["model"])
    model["target"] = "nemo.collections.asr.models.ctc_bpe_models.EncDecCTCModelBPE"
    model["nemo_version"] = "2.0.0"
    weights = pickle.dumps({"encoder.pre_encode.out.weight": [0.0, 0.0]}, protocol=2)
    nemo_archive(BENIGN / "conformer_ctc_bpe.nemo", model, weights)
    evil = dict(model)
    evil["spec_augment"] = {"_target_": "os.system", "_args_": [command("nemo_config")]}
    nemo_archive(HOSTILE / "evil_config.nemo", evil, weights)
    nemo_archive(HOSTILE / "evil_weights.nemo", model, pickle.dumps(Payload("nemo_weights"), protocol=2), gz=True)


def speechbrain() -> None:
    folder = BENIGN / "speechbrain_model"
    text = (REAL / "verification_ecapa.yaml").read_text()
    # A model folder as `from_hparams` reads it: the Pretrainer fetches its checkpoints from this folder.
    text = text.replace("pretrain_path: speechbrain/spkrec-ecapa-voxceleb", "pretrain_path: .")
    text = text.replace("data_folder: !PLACEHOLDER", "data_folder: data")
    write(folder / "hyperparams.yaml", text)
    buffer = io.BytesIO()
    pickle.dump({"blocks.0.conv.weight": [0.0]}, buffer, protocol=2)
    (folder / "embedding_model.ckpt").write_bytes(buffer.getvalue())


def copy_package_configs() -> None:
    """Hydra's own configs and SpeechBrain's logging config, copied from the installed packages."""
    import hydra as hydra_package

    conf = Path(hydra_package.__file__).parent / "conf" / "hydra"
    for path in sorted(conf.rglob("*.yaml")):
        name = "hydra_" + "_".join(path.relative_to(conf).with_suffix("").parts) + ".yaml"
        shutil.copyfile(path, REAL / name)
    wheel_log_config = Path("/work/envs/yaml-wheels/sb/speechbrain/log-config.yaml")
    if wheel_log_config.is_file():
        shutil.copyfile(wheel_log_config, REAL / "speechbrain_log-config.yaml")


def main() -> None:
    for folder in (HOSTILE, BENIGN):
        folder.mkdir(parents=True, exist_ok=True)
    pyyaml()
    hydra()
    hyperpyyaml()
    bombs()
    nemo()
    speechbrain()
    copy_package_configs()
    print(f"wrote fixtures under {OUT}")


if __name__ == "__main__":
    main()
