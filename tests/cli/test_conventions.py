"""Command-line conventions users know from Ruff and Bandit: rule and path selection, quiet output,
exit-zero, a display floor, `-o` on every command that prints, shell completion, examples in help."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from modelshield.cli import main
from tests.helpers import evil_pickle

Run = tuple[int, str, str]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A folder with a pickle running a command (PKL001) and one misnamed file (SCN001) in two places."""
    root = tmp_path / "repo"
    (root / "models").mkdir(parents=True)
    (root / "tests" / "data").mkdir(parents=True)
    (root / "models" / "model.pkl").write_bytes(evil_pickle())
    (root / "models" / "weights.safetensors").write_bytes(evil_pickle())
    (root / "tests" / "data" / "fixture.pkl").write_bytes(evil_pickle())
    return root


def rules_in(out: str) -> list[str]:
    document = json.loads(out)
    return sorted(f["rule_id"] for file in document["files"] for f in file["findings"])


def test_select_keeps_only_the_chosen_rules(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    code, out, _ = run(capsys, "scan", "-f", "json", "--select", "SCN*", str(tree))
    assert code == 1 and rules_in(out) == ["SCN001"]
    suppressed = [s for f in json.loads(out)["files"] for s in f["suppressed"]]
    assert {s["rule_id"] for s in suppressed} == {"PKL001"}
    assert all("not selected" in s["suppressed_by"]["reason"] for s in suppressed)


def test_ignore_with_commas_and_repetition(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    code, out, _ = run(capsys, "scan", "-f", "json", "--ignore", "PKL001", "--ignore", "SCN001,SCN004", str(tree))
    assert code == 0 and rules_in(out) == []
    assert json.loads(out)["summary"]["suppressed"] == 4


def test_a_rule_glob_matching_nothing_is_a_usage_error(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    code, out, err = run(capsys, "scan", "--select", "PKL01", str(tree))
    assert code == 2 and out == "" and "'PKL01' matches no rule" in err


@pytest.mark.parametrize(
    ("glob", "left"),
    [
        ("tests", ["models/model.pkl", "models/weights.safetensors"]),
        ("*.pkl", ["models/weights.safetensors"]),
        ("tests/data", ["models/model.pkl", "models/weights.safetensors"]),
        ("models/*.pkl", ["models/weights.safetensors", "tests/data/fixture.pkl"]),
    ],
)
def test_exclude_globs(capsys: pytest.CaptureFixture[str], tree: Path, glob: str, left: list[str]) -> None:
    code, out, _ = run(capsys, "scan", "-f", "json", "--exclude", glob, str(tree))
    document = json.loads(out)
    assert sorted(str(Path(f["path"]).relative_to(tree)) for f in document["files"]) == left
    assert document["summary"]["excluded"] == 3 - len(left)
    assert code == 1


def test_a_path_given_is_never_excluded(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    code, out, _ = run(capsys, "scan", "-f", "json", "--exclude", "*.pkl", str(tree / "models" / "model.pkl"))
    assert code == 1 and rules_in(out) == ["PKL001"]


def test_policy_file_select_ignore_exclude(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    policy = tree / "policy.toml"
    policy.write_text('select = ["PKL*", "SCN*"]\nignore = ["SCN001"]\nexclude = ["tests"]\n')
    code, out, _ = run(capsys, "scan", "-f", "json", "--policy", str(policy), str(tree))
    assert code == 1 and rules_in(out) == ["PKL001", "PKL001"]
    policy.write_text('ignore = ["NOPE*"]\n')
    code, _, err = run(capsys, "scan", "--policy", str(policy), str(tree))
    assert code == 2 and "matches no rule" in err


def test_quiet_prints_only_findings(capsys: pytest.CaptureFixture[str], tree: Path, tmp_path: Path) -> None:
    code, out, err = run(capsys, "scan", "-q", str(tree / "models"))
    assert code == 1 and err == ""
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["CRITICAL", "PKL001"]
    assert not any("file(s) scanned" in line for line in lines)
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "notes.txt").write_text("hello")
    assert run(capsys, "scan", "-q", str(clean)) == (0, "", "")


def test_exit_zero_keeps_errors(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    assert run(capsys, "scan", "--exit-zero", str(tree))[0] == 0
    assert run(capsys, "scan", "--exit-zero", str(tree / "missing"))[0] == 2


def test_display_floor_hides_only_from_people(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    code, out, _ = run(capsys, "scan", "--min-severity", "critical", str(tree / "models"))
    assert code == 1
    assert "SCN001" not in out and "PKL001" in out and "1 finding(s) below critical not shown" in out
    assert "1 medium" in out  # the summary still counts it
    code, out, _ = run(capsys, "scan", "-f", "json", "--min-severity", "critical", str(tree / "models"))
    assert "SCN001" in rules_in(out)


@pytest.mark.parametrize(
    "argv",
    [
        ["rules"],
        ["rules", "-f", "json"],
        ["explain", "PKL001"],
        ["hash", "{tree}"],
        ["hash", "-f", "json", "{tree}"],
        ["deps", "{tree}"],
        ["deps", "-f", "json", "{tree}"],
    ],
)
def test_every_printing_command_takes_o(
    capsys: pytest.CaptureFixture[str], tree: Path, tmp_path: Path, argv: list[str]
) -> None:
    args = [a.replace("{tree}", str(tree)) for a in argv]
    _, expected, _ = run(capsys, *args)
    target = tmp_path / "out.txt"
    code, out, _ = run(capsys, *args[:1], "-o", str(target), *args[1:])

    def timeless(text: str) -> str:
        return re.sub(r"in [0-9.]+ s", "in _ s", text)

    assert out == "" and expected and timeless(target.read_text()) == timeless(expected)
    assert code in (0, 1)


def complete(script: str, *words: str) -> list[str]:
    quoted = " ".join(repr(w) for w in words)
    program = (
        f"source /dev/stdin <<'EOF'\n{script}\nEOF\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _modelshield; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return result.stdout.split()


def test_bash_completion(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    code, script, _ = run(capsys, "completion", "bash")
    assert code == 0
    assert "scan" in complete(script, "modelshield", "sc") and "deps" not in complete(script, "modelshield", "sc")
    assert sorted(complete(script, "modelshield", "scan", "--ex")) == ["--exclude", "--exit-zero"]
    assert sorted(complete(script, "modelshield", "scan", "-f", "")) == ["cyclonedx", "html", "json", "sarif", "text"]
    assert sorted(complete(script, "modelshield", "deps", "-f", "")) == ["json", "text"]
    assert complete(script, "modelshield", "scan", "--fail-on", "cr") == ["critical"]
    assert sorted(complete(script, "modelshield", "completion", "")) == ["bash", "fish", "zsh"]
    assert str(tree / "models") in complete(script, "modelshield", "scan", str(tree / "mo"))


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells_parse(capsys: pytest.CaptureFixture[str], shell: str, tmp_path: Path) -> None:
    code, script, _ = run(capsys, "completion", shell)
    assert code == 0 and "scan" in script and "--exclude" in script.replace("-l exclude", "--exclude")
    binary = shutil.which(shell)
    if binary is not None:  # the syntax check of the real shell where it is installed
        path = tmp_path / f"completion.{shell}"
        path.write_text(script)
        subprocess.run([binary, "-n", str(path)], check=True)


def test_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["scan", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "modelshield scan -f sarif" in out
