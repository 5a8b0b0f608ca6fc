"""TorchScript archives: pickles are scanned as pickles, code members are recorded (TSC001)."""

from __future__ import annotations

import zipfile
from pathlib import Path

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
    (finding,) = result.findings
    assert finding.rule_id == "TSC001"
    assert finding.details["custom_ops"] == ["torch.ops.my_ops.warp_perspective"]
    assert "torch.ops.my_ops.warp_perspective" in finding.evidence


def test_ordinary_python_is_not_claimed(scan_data: ScanData) -> None:
    source = b"import torch\n\n\ndef forward(x: torch.Tensor) -> torch.Tensor:\n  return torch.relu(x)\n"
    result = scan_data(source, "train.py")
    assert result.format == "text"
    assert not result.findings


def test_code_with_leading_comments_is_still_code(scan_data: ScanData) -> None:
    """torch.jit.load compiles the member as source, so blank lines and comments may come first."""
    result = scan_data(b"# generated\n\n" + MODULE_CODE, "net.py")
    assert [f.rule_id for f in result.findings] == ["TSC001"]
