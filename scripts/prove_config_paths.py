"""Prove that each hostile YAML config fixture runs its payload in the real loader (never run in CI).

    /work/envs/cfg/bin/python scripts/prove_config_paths.py

Each case copies the fixture into a fresh temporary directory and loads it there, in a child Python
of this environment, with the loader a victim would use; the payload only creates `fired-<name>` in
that directory, and the case passes when the file appears. NeMo is too heavy to install, so its cases
do what `SaveRestoreConnector.restore_from` does up to instantiation: extract the tar, read
`model_config.yaml` with `OmegaConf.load` and instantiate the sub-config with `hydra.utils.instantiate`
(NeMo's `from_config_dict`); the pickled weights are loaded with `pickle.load`, as `torch.load` with
`weights_only=False` (NeMo before 2.x) would.

Hydra 1.3.8 refuses `os.system`, `subprocess` and the like as targets; NeMo pinned `hydra-core<=1.3.2`
for years, which runs any target, so the Hydra and NeMo cases run with a Hydra 1.3.2 environment
(`HYDRA_PYTHON`, default /work/envs/yaml-hydra132: `pip install hydra-core==1.3.2 omegaconf==2.3.0`),
and `hydra_file_write.yaml` shows what 1.3.8's policy still lets through (a file write) with this one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HYDRA_PYTHON = os.environ.get("HYDRA_PYTHON", "/work/envs/yaml-hydra132/bin/python")
ROOT = Path(__file__).resolve().parent.parent
HOSTILE = ROOT / "tests" / "fixtures" / "configs" / "yaml" / "hostile"

PYYAML = "import yaml; yaml.load(open({file!r}), Loader=yaml.UnsafeLoader)"
HYDRA = "from omegaconf import OmegaConf; import hydra.utils; hydra.utils.instantiate(OmegaConf.load({file!r}).model)"
HYDRA_PARTIAL = (
    "from omegaconf import OmegaConf; import hydra.utils; "
    "make = hydra.utils.instantiate(OmegaConf.load({file!r}).model); make()"
)
EVAL_RESOLVER = (
    "from omegaconf import OmegaConf; OmegaConf.register_new_resolver('eval', eval); "
    "OmegaConf.to_container(OmegaConf.load({file!r}), resolve=True)"
)
HYPERPYYAML = "from hyperpyyaml import load_hyperpyyaml; load_hyperpyyaml(open({file!r}))"
NEMO_CONFIG = (
    "import tarfile; from omegaconf import OmegaConf; import hydra.utils; "
    "tarfile.open({file!r}).extractall('x', filter='data'); "
    "cfg = OmegaConf.load('x/model_config.yaml'); hydra.utils.instantiate(cfg.spec_augment)"
)
NEMO_WEIGHTS = (
    "import tarfile, pickle; tarfile.open({file!r}).extractall('x', filter='data'); "
    "pickle.load(open('x/model_weights.ckpt', 'rb'))"
)

#: fixture -> (loader code, the name its payload writes `fired-<name>` under, the Python to run it)
CASES: dict[str, tuple[str, ...]] = {
    "pyyaml_reduce.yaml": (PYYAML, "pyyaml_reduce"),
    "pyyaml_tag_handle.yaml": (PYYAML, "pyyaml_tag_handle"),
    "pyyaml_escaped_tag.yaml": (PYYAML, "pyyaml_escaped_tag"),
    "hydra_target.yaml": (HYDRA.replace(".model)", ".model.encoder)"), "hydra_target", HYDRA_PYTHON),
    "hydra_interpolated_target.yaml": (HYDRA, "hydra_interpolated_target", HYDRA_PYTHON),
    "hydra_partial.yaml": (HYDRA_PARTIAL, "hydra_partial", HYDRA_PYTHON),
    "hydra_oc_create.yaml": (HYDRA, "hydra_oc_create", HYDRA_PYTHON),
    "hydra_file_write.yaml": (HYDRA, "hydra_file_write"),
    "omegaconf_eval.yaml": (EVAL_RESOLVER, "omegaconf_eval_resolver"),
    "hyperpyyaml_apply.yaml": (HYPERPYYAML, "hyperpyyaml_apply"),
    "hyperpyyaml_new.yaml": (HYPERPYYAML + "; import time; time.sleep(1)", "hyperpyyaml_new"),
    "hyperpyyaml_tuple.yaml": (HYPERPYYAML, "hyperpyyaml_tuple"),
    "include/hyperparams.yaml": (HYPERPYYAML, "hyperpyyaml_include"),
    "evil_config.nemo": (NEMO_CONFIG, "nemo_config", HYDRA_PYTHON),
    "evil_weights.nemo": (NEMO_WEIGHTS, "nemo_weights"),
}


def prove(fixture: str, code: str, name: str, python: str = sys.executable) -> bool:
    with tempfile.TemporaryDirectory(prefix="modelshield-prove-") as work:
        source = HOSTILE / fixture
        target = Path(work) / source.name
        if source.parent != HOSTILE:  # a folder case (HyperPyYAML !include): copy its folder
            shutil.copytree(source.parent, Path(work), dirs_exist_ok=True)
        else:
            shutil.copyfile(source, target)
        run = subprocess.run(
            [python, "-c", code.format(file=str(target))],
            check=False,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
        )
        fired = (Path(work) / f"fired-{name}").exists()
        detail = "" if fired else f" (exit {run.returncode}: {run.stderr.strip().splitlines()[-1:]})"
        print(f"{'FIRED' if fired else 'did not fire'}  {fixture}{detail}")
        return fired


def main() -> int:
    results = [prove(fixture, *case) for fixture, case in CASES.items()]
    print(f"{sum(results)} of {len(results)} payloads fired in the real loaders")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
