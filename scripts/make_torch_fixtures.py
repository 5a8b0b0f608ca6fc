"""Write the torch loader-path fixtures (tests/fixtures/torch_paths/) with the real torch 2.13.

Every file is written by torch itself (`torch.save`, `torch.jit.save`, `torch.package.PackageExporter`),
except `geometry_*.pt`, whose tensor view is edited after `torch.save` wrote it. Hostile payloads only
create a harmless sentinel file named `sentinel_<fixture>` in the current directory, and only if a loader
runs them: scripts/prove_torch_paths.py loads each one in a throwaway directory to prove that the path
fires. Tests only scan these files. Run with the torch environment:

    /work/envs/torch/bin/python scripts/make_torch_fixtures.py
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
import torch.package
import torch.package.package_exporter

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "torch_paths"

#: Modules the packaged fixtures import while exporting (the exporter pickles instances of their classes).
PACKAGED = {
    "mymodels/__init__.py": "",
    "mymodels/net.py": """import torch
from torch import nn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x))
""",
    "mymodels/state.py": '''class Vocab:
    """Rebuilt with __setstate__ by the pickle."""

    def __init__(self, words):
        self.words = list(words)

    def __getstate__(self):
        return {"words": self.words}

    def __setstate__(self, state):
        self.words = state["words"]
''',
    "scripted.py": '''import torch
from torch import nn


class Scripted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.ones(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.w


class SavesAtLoad(nn.Module):
    """Its compiled __setstate__ (run by torch.jit.load) writes a file with aten::save."""

    def __init__(self, sentinel: str) -> None:
        super().__init__()
        self.w = torch.ones(2)
        self.sentinel = sentinel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.w

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, str, bool]:
        return (self.w, self.sentinel, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, str, bool]) -> None:
        self.w = state[0]
        self.sentinel = state[1]
        self.training = state[2]
        torch.save(self.w, self.sentinel)
''',
}

#: Hostile replacements of shipped sources (the exporter pickled the benign classes above).
INIT_RUNS_COMMAND = "import os\n\nos.system('touch sentinel_pkg_init_runs_command')\n"
HELPER_IN_SETSTATE = """import subprocess


def _restore(obj, state):
    obj.words = state["words"]
    subprocess.run(["touch", "sentinel_pkg_helper_in_setstate"])


class Vocab:
    def __init__(self, words):
        self.words = list(words)

    def __getstate__(self):
        return {"words": self.words}

    def __setstate__(self, state):
        _restore(self, state)
"""
STAR_IMPORT = """from os import *


class Vocab:
    def __init__(self, words):
        self.words = list(words)

    def __setstate__(self, state):
        self.words = state["words"]
        run = system
        run("touch sentinel_pkg_star_import")
"""
#: The module name is built at run time, and `os` added to the externs by hand (`add_dependency`).
HIDDEN_IMPORT = """class Vocab:
    def __init__(self, words):
        self.words = list(words)

    def __setstate__(self, state):
        self.words = state["words"]
        m = __import__("".join(["o", "s"]))
        getattr(m, "sys" + "tem")("touch sentinel_pkg_hidden_import")
"""


class Reduces:
    """A torch.save payload: unpickling calls os.system (weights_only=False only)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch sentinel_torch_save_reduce",))


def export(name: str, obj: object, sources: dict[str, str], *, extra_extern: list[str] | None = None) -> None:
    with torch.package.PackageExporter(str(OUT / name)) as exporter:
        exporter.extern(["torch", "torch.**"])
        exporter.intern(["mymodels", "mymodels.**"])
        for module in extra_extern or []:
            exporter.add_dependency(module)
        exporter.save_pickle("model", "model.pkl", obj)
        for module, text in sources.items():
            exporter.save_source_string(module, text, is_package=module == "mymodels")


def write_packages() -> None:
    from mymodels.net import Net  # type: ignore[import-not-found]
    from mymodels.state import Vocab  # type: ignore[import-not-found]

    torch.manual_seed(0)
    export("pkg_benign.pt", {"net": Net(), "vocab": Vocab(["a", "b"])}, {})
    export("pkg_init_runs_command.pt", Net(), {"mymodels": INIT_RUNS_COMMAND})
    export("pkg_helper_in_setstate.pt", Vocab(["a"]), {"mymodels.state": HELPER_IN_SETSTATE})
    export("pkg_star_import.pt", Vocab(["a"]), {"mymodels.state": STAR_IMPORT})
    export("pkg_hidden_import.pt", Vocab(["a"]), {"mymodels.state": HIDDEN_IMPORT}, extra_extern=["os"])


def write_torchscript() -> None:
    from scripted import SavesAtLoad, Scripted  # type: ignore[import-not-found]

    torch.manual_seed(0)
    torch.package.package_exporter._gate_torchscript_serialization = False  # beta feature, off by default
    for name, module in (
        ("pkg_torchscript.pt", Scripted()),
        ("pkg_torchscript_saves_at_load.pt", SavesAtLoad("sentinel_pkg_torchscript_saves_at_load")),
    ):
        with torch.package.PackageExporter(str(OUT / name)) as exporter:
            exporter.save_pickle("model", "model.pkl", torch.jit.script(module))
    torch.jit.save(torch.jit.script(SavesAtLoad("sentinel_jit_saves_at_load")), OUT / "jit_saves_at_load.pt")
    torch.save({"payload": Reduces(), "w": torch.ones(2)}, OUT / "torch_save_reduce.pt")


def _edit_view(src: Path, out: Path, old: bytes, new: bytes) -> None:
    """Copy a torch.save archive, replacing bytes of its data.pkl (the tensor's size or offset)."""
    with zipfile.ZipFile(src) as archive, zipfile.ZipFile(out, "w") as edited:
        for info in archive.infolist():
            data = archive.read(info)
            if info.filename.endswith("/data.pkl"):
                if old not in data:
                    raise SystemExit(f"{src}: pickle layout changed")
                data = data.replace(old, new, 1)
            edited.writestr(info, data)


def write_geometry() -> None:
    """A 4-element storage viewed as 4096 elements, and at offset 4096: torch 2.13 refuses both (the
    storage it reads from the record is not resizable); readers that trust the view read past it."""
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain.pt"
        torch.save({"w": torch.arange(4, dtype=torch.float32)}, plain)
        # protocol 2: `BINPERSID BININT1 offset BININT1 size TUPLE1`
        _edit_view(plain, OUT / "geometry_size_past_storage.pt", b"QK\x00K\x04\x85", b"QK\x00M\x00\x10\x85")
        _edit_view(plain, OUT / "geometry_offset_past_storage.pt", b"QK\x00K\x04\x85", b"QM\x00\x10K\x04\x85")


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as src:
        for name, text in PACKAGED.items():
            path = Path(src) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        sys.path.insert(0, src)
        importlib.invalidate_caches()
        try:
            write_packages()
            write_torchscript()
        finally:
            sys.path.remove(src)
    write_geometry()
    for path in sorted(OUT.iterdir()):
        print(f"{path.stat().st_size:8d}  {path.name}")


if __name__ == "__main__":
    main()
