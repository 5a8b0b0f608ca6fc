"""TEN001: tensor views that reach past their storage. The edited files are torch.save output whose view
was changed (scripts/make_torch_fixtures.py; torch 2.13 refuses both, scripts/prove_torch_paths.py);
real checkpoints, TorchScript archives and torch.package archives have every view checked and stay quiet."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from modelshield import scan_file
from modelshield.core.rules import Severity
from modelshield.formats.pickle.torch_views import _pickles, problem, views

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("geometry_size_past_storage.pt", "size=[4096] stride=[1]"),
        ("geometry_offset_past_storage.pt", "offset=4096 size=[4]"),
    ],
)
def test_a_view_past_its_storage_is_reported(name: str, said: str) -> None:
    result = scan_file(str(FIXTURES / "torch_paths" / name))
    (finding,) = [f for f in result.findings if f.rule_id == "TEN001"]
    assert finding.level is Severity.MEDIUM and said in finding.evidence
    assert finding.location.members[-1].endswith("/data.pkl")


#: Real files with the number of tensor views each holds: every one is read and checked.
REAL = {
    "real/torch_state_dict.pt": 18,
    "real/torch_quantised.pt": 1,
    "real/torch_sparse.pt": 2,
    "real/torch_mixed_dtypes.pt": 7,
    "real/torch_whole_module.pt": 13,
    "real/torchscript_scripted.pt": 18,
    "real/torch_package.pt": 18,
    "torch_paths/pkg_torchscript.pt": 1,
}


@pytest.mark.parametrize(("name", "count"), REAL.items())
def test_real_views_are_all_read_and_quiet(name: str, count: int) -> None:
    with zipfile.ZipFile(FIXTURES / name) as archive:
        sizes = {i.filename: i.file_size for i in archive.infolist()}
        checked = 0
        for member, record_of in _pickles(list(sizes)).items():
            for _, storage, offset, size, stride in views(archive.read(member)):
                available = min(storage.numel, sizes[record_of(storage.key)] // storage.element)
                assert problem(available, offset, size, stride) == ""
                checked += 1
    assert checked == count
    assert "TEN001" not in {f.rule_id for f in scan_file(str(FIXTURES / name)).findings}


@pytest.mark.parametrize(
    ("available", "offset", "size", "stride", "bad"),
    [
        (4, 0, (2, 2), (2, 1), False),
        (4, 0, (2, 2), (1, 2), False),  # transposed
        (4, 3, (1,), (1,), False),
        (4, 0, (0, 100), (100, 1), False),  # empty tensor
        (1, 0, (1 << 40,), (0,), False),  # an expanded view reads one element
        (4, 0, (2, 3), (2, 1), True),
        (4, 4, (1,), (1,), True),
        (4, 0, (2,), (-1,), True),
        (4, 0, (2, 2), (1,), True),
    ],
)
def test_view_arithmetic(
    available: int, offset: int, size: tuple[int, ...], stride: tuple[int, ...], bad: bool
) -> None:
    assert bool(problem(available, offset, size, stride)) is bad
