"""Reports and the command line under odd input: names that are not UTF-8 or need escaping in URIs,
internal errors, closed pipes, NO_COLOR, and the `deps` JSON schema."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import jsonschema
import pytest
from referencing import Registry, Resource

import modelshield.cli
from modelshield.cli import main
from tests.cli.terminal import on_terminal
from tests.helpers import evil_pickle

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file names, pipes and terminals")

SRC = str(Path(modelshield.cli.__file__).parents[1])
#: A name that is not UTF-8 (byte 0xff) and one that needs every URI escape.
BAD = b"bad\xffname.pkl"
ODD = "my model#1%.pt"


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(resources.files("modelshield.reports").joinpath(name).read_text())
    return loaded


def validator(name: str) -> jsonschema.Draft202012Validator:
    """A validator that resolves the shipped schemas' references to each other."""
    registry: Registry[Any] = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in (schema("report.schema.json"), schema("deps.schema.json"))
    )
    return jsonschema.Draft202012Validator(schema(name), registry=registry)


@pytest.fixture
def odd_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    with open(os.path.join(os.fsencode(folder), BAD), "wb") as f:
        f.write(evil_pickle())
    (folder / ODD).write_bytes(evil_pickle())
    monkeypatch.chdir(tmp_path)
    return Path("models")


def cli(*argv: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    """The real command in a child, its output as raw bytes."""
    child = {k: v for k, v in os.environ.items() if k not in {"NO_COLOR", "MODELSHIELD_DEBUG"}}
    child.update(env, PYTHONPATH=SRC)
    return subprocess.run([sys.executable, "-m", "modelshield", *argv], capture_output=True, env=child, check=False)


def test_json_is_utf8_and_keeps_undecodable_names_reversibly(odd_folder: Path) -> None:
    proc = cli("scan", "--format", "json", str(odd_folder))
    assert proc.returncode == 1 and proc.stderr == b""
    doc = json.loads(proc.stdout.decode("utf-8"))  # strict: raises on invalid UTF-8
    validator("report.schema.json").validate(doc)
    bad = next(f for f in doc["files"] if "name.pkl" in f["path"])
    assert bad["path"] == "models/bad\\xffname.pkl"
    assert base64.b64decode(bad["path_bytes"]) == b"models/" + BAD
    assert os.path.exists(base64.b64decode(bad["path_bytes"]))
    assert base64.b64decode(bad["findings"][0]["location"]["path_bytes"]) == b"models/" + BAD
    odd = next(f for f in doc["files"] if f["path"].endswith(".pt"))
    assert odd["path"] == f"models/{ODD}" and "path_bytes" not in odd


def test_sarif_and_text_are_utf8(odd_folder: Path) -> None:
    sarif = cli("scan", "--format", "sarif", str(odd_folder))
    text = cli("scan", str(odd_folder))
    assert sarif.returncode == text.returncode == 1
    json.loads(sarif.stdout.decode("utf-8"))
    assert "models/bad\\xffname.pkl" in text.stdout.decode("utf-8")


def test_output_file_with_undecodable_names(odd_folder: Path) -> None:
    shown = {"text": "bad\\xffname.pkl", "json": '"models/bad\\\\xffname.pkl"', "sarif": "bad%FFname.pkl"}
    for fmt, name in shown.items():
        target = Path(f"report.{fmt}")
        proc = cli("scan", "--format", fmt, "-o", str(target), str(odd_folder))
        assert (proc.returncode, proc.stdout, proc.stderr) == (1, b"", b"")
        assert name in target.read_bytes().decode("utf-8")


def test_error_lines_escape_undecodable_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = os.path.join(os.fsencode(tmp_path), b"missing\xff.pkl").decode(errors="surrogateescape")
    assert main(["scan", path]) == 2
    err = capsys.readouterr().err
    assert "missing\\xff.pkl" in err
    err.encode("utf-8")


#: RFC 3986 URI-reference characters: unreserved, reserved and percent-encodings only.
URI_CHARS = re.compile(r"^(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-F]{2})*$")


def sarif_locations(doc: dict[str, Any]) -> list[dict[str, str]]:
    return [r["locations"][0]["physicalLocation"]["artifactLocation"] for r in doc["runs"][0]["results"]]


def test_sarif_uris_are_percent_encoded_and_relative_to_srcroot(odd_folder: Path) -> None:
    doc = json.loads(cli("scan", "--format", "sarif", str(odd_folder)).stdout)
    run = doc["runs"][0]
    base = run["originalUriBaseIds"]["%SRCROOT%"]["uri"]
    # SARIF 2.1.0 3.14.14: a base URI is absolute and ends with a slash.
    assert base.startswith("file:///") and base.endswith("/")
    assert unquote_to_bytes(urlsplit(base).path) == os.fsencode(os.getcwd()) + b"/"
    uris = {}
    for artifact in sarif_locations(doc):
        assert URI_CHARS.match(artifact["uri"]), artifact
        assert artifact["uriBaseId"] == "%SRCROOT%" and not artifact["uri"].startswith("/")
        uris[unquote_to_bytes(artifact["uri"])] = artifact["uri"]
    assert set(uris) == {b"models/" + BAD, b"models/" + ODD.encode()}
    assert uris[b"models/" + ODD.encode()] == "models/my%20model%231%25.pt"


def test_sarif_uri_outside_the_working_directory_is_an_absolute_file_uri(odd_folder: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder = odd_folder.resolve()
    os.chdir(elsewhere)
    doc = json.loads(cli("scan", "--format", "sarif", str(folder)).stdout)
    decoded = set()
    for artifact in sarif_locations(doc):
        assert "uriBaseId" not in artifact and artifact["uri"].startswith("file:///")
        assert URI_CHARS.match(artifact["uri"]), artifact
        decoded.add(unquote_to_bytes(urlsplit(artifact["uri"]).path))
    assert decoded == {os.fsencode(folder / ODD), os.path.join(os.fsencode(folder), BAD)}


def test_internal_error_exits_three_with_one_line(
    evil: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated bug\nsecond line")

    monkeypatch.delenv("MODELSHIELD_DEBUG", raising=False)
    monkeypatch.setattr(modelshield.cli, "scan", broken)
    assert main(["scan", str(evil)]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "modelshield: error: internal error (RuntimeError: simulated bug second line); please report it; "
        "MODELSHIELD_DEBUG=1 shows the traceback"
    ]
    monkeypatch.setenv("MODELSHIELD_DEBUG", "1")
    assert main(["scan", str(evil)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in broken" in err
    assert err.splitlines()[-1].startswith("modelshield: error: internal error (RuntimeError")


@pytest.fixture
def evil(tmp_path: Path) -> Path:
    path = tmp_path / "model.pkl"
    path.write_bytes(evil_pickle())
    return path


def test_internal_error_in_a_child_process_is_not_findings(evil: Path) -> None:
    """The installed entry point, with a module patched to fail, in a real process."""
    code = (
        "import sys, modelshield.reports.text as t\n"
        "t.summary_line = lambda report: 1 / 0\n"
        "from modelshield.cli import entry\n"
        "sys.exit(entry())\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop("MODELSHIELD_DEBUG", None)
    proc = subprocess.run([sys.executable, "-c", code, "scan", str(evil)], capture_output=True, env=env, check=False)
    assert proc.returncode == 3 and proc.stdout == b""
    assert proc.stderr.decode().splitlines() == [
        "modelshield: error: internal error (ZeroDivisionError: division by zero); please report it; "
        "MODELSHIELD_DEBUG=1 shows the traceback"
    ]


@pytest.mark.parametrize("argv", [["rules"], ["explain", "PKL001"], ["hash", "{evil}"], ["scan", "{evil}"]])
def test_closed_stdout_ends_quietly_like_unix_tools(argv: list[str], evil: Path) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write: every write meets EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "modelshield", *(a.format(evil=evil) for a in argv)],
            stdout=write,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": SRC},
            check=False,
        )
    finally:
        os.close(write)
    assert proc.stderr == b""
    assert proc.returncode == -signal.SIGPIPE


@pytest.mark.parametrize(
    ("argv", "env", "colored"),
    [
        ([], {}, True),
        ([], {"NO_COLOR": "1"}, False),
        ([], {"NO_COLOR": "yes please"}, False),
        ([], {"NO_COLOR": ""}, True),  # no-color.org: only a non-empty value counts
        (["--no-color"], {}, False),
    ],
)
def test_no_color(evil: Path, argv: list[str], env: dict[str, str], colored: bool) -> None:
    _, _, out = on_terminal(["-m", "modelshield", "scan", *argv, str(evil)], "stdout", {"NO_COLOR"}, env)
    assert b"PKL001" in out
    assert (b"\x1b[" in out) is colored


def test_deps_json_follows_its_schema(odd_folder: Path) -> None:
    proc = cli("deps", "--format", "json", str(odd_folder))
    doc = json.loads(proc.stdout.decode("utf-8"))
    validator("deps.schema.json").validate(doc)
    from modelshield.reports.json_report import DEPS_SCHEMA_VERSION

    assert doc["schema_version"] == DEPS_SCHEMA_VERSION
    doc["dependencies"]["nodes"][0]["kind"] = "planet"
    with pytest.raises(jsonschema.ValidationError):
        validator("deps.schema.json").validate(doc)
    with pytest.raises(jsonschema.ValidationError):
        validator("deps.schema.json").validate({"schema_version": "1.0", "dependencies": None})


def test_control_characters_in_names_cannot_forge_text_lines(tmp_path: Path) -> None:
    name = "evil\nPASSED\x1b[2J\u202egp.pkl"
    (tmp_path / name).write_bytes(evil_pickle())
    proc = cli("scan", str(tmp_path / name))
    out = proc.stdout.decode("utf-8")
    assert proc.returncode == 1
    assert "\x1b" not in out and "\u202e" not in out
    assert f"{tmp_path}/evil\\x0aPASSED\\x1b[2J\\u202egp.pkl  (pickle" in out
    assert [line for line in out.splitlines() if "PASSED" in line and "FAILED" not in line and "evil" not in line] == []
    missing = cli("scan", str(tmp_path / "gone\nmodelshield: ok"))
    assert missing.returncode == 2 and len(missing.stderr.splitlines()) == 1
