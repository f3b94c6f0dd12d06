"""The Teams app package: teams/manifest.json valid against the published Teams manifest schema
(v1.30, vendored in tests/data), its commands and scopes, the two icons at the sizes Teams asks,
and `python -m bot teams-package` writing the zip only when what it would write is valid."""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from jsonschema import Draft4Validator

from bot.cli import teams_package
from bot.cli.main import main
from bot.settings import TeamsPackageSettings

REPO = Path(__file__).resolve().parent.parent
TEAMS = REPO / "teams"
SCHEMA = json.loads((REPO / "teams" / "schema" / "teams-manifest-1.30.schema.json")
                    .read_text(encoding="utf-8"))
MANIFEST = json.loads((TEAMS / "manifest.json").read_text(encoding="utf-8"))
BOT = "11111111-2222-3333-4444-555555555555"


def pixels(path: Path) -> list[tuple[int, int, int, int]]:
    """The RGBA pixels of one of our icons (8-bit RGBA, no filter, as make_icons writes)."""
    data = path.read_bytes()
    width, height = struct.unpack(">II", data[16:24])
    assert data[24:26] == b"\x08\x06"
    idat = data.index(b"IDAT")
    size = struct.unpack(">I", data[idat - 4:idat])[0]
    raw = zlib.decompress(data[idat + 4:idat + 4 + size])
    stride = 1 + 4 * width
    return [tuple(raw[y * stride + 1 + 4 * x: y * stride + 5 + 4 * x])  # type: ignore[misc]
            for y in range(height) for x in range(width)]


def test_the_manifest_is_valid_against_the_published_schema() -> None:
    errors = list(Draft4Validator(SCHEMA).iter_errors(MANIFEST))
    assert not errors, [e.message for e in errors]
    assert MANIFEST["manifestVersion"] == "1.30"
    assert MANIFEST["$schema"].endswith("/teams/v1.30/MicrosoftTeams.schema.json")
    assert MANIFEST["id"] == MANIFEST["bots"][0]["botId"] == teams_package.PLACEHOLDER


def test_the_schema_refuses_what_teams_refuses() -> None:
    bad = json.loads(json.dumps(MANIFEST))
    bad["bots"][0]["botId"] = "not-a-guid"
    assert list(Draft4Validator(SCHEMA).iter_errors(bad))
    bad = json.loads(json.dumps(MANIFEST))
    bad["name"]["short"] = "x" * 31
    assert list(Draft4Validator(SCHEMA).iter_errors(bad))


def test_scopes_and_commands() -> None:
    (bot,) = MANIFEST["bots"]
    assert set(bot["scopes"]) == {"team", "personal", "groupChat"}
    (commands,) = bot["commandLists"]
    assert set(commands["scopes"]) == {"team", "personal", "groupChat"}
    titles = [c["title"] for c in commands["commands"]]
    assert titles == ["quote", "status", "pause", "resume", "report", "help"]
    assert all(c["description"] for c in commands["commands"])


def test_the_icons_are_the_sizes_teams_asks() -> None:
    assert teams_package.png_size((TEAMS / "color.png").read_bytes()) == (192, 192)
    assert teams_package.png_size((TEAMS / "outline.png").read_bytes()) == (32, 32)
    outline = pixels(TEAMS / "outline.png")
    assert {p for p in outline if p[3]} == {(255, 255, 255, 255)}   # white, else transparent
    assert any(p[3] == 0 for p in outline)
    assert all(p[3] == 255 for p in pixels(TEAMS / "color.png"))    # full colour, opaque


def test_the_package_carries_the_ids_from_the_settings(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEAMS_APP_ID", BOT.upper())
    monkeypatch.setenv("CHECKFRONT_HOST", "https://acme.checkfront.com/")
    monkeypatch.setenv("TEAMS_VALID_DOMAINS", "refunds.example.com, acme.checkfront.com")
    out = tmp_path / "dist" / "app.zip"
    assert main(["teams-package", "--out", str(out), "--version", "1.2.3"]) == 0
    with zipfile.ZipFile(out) as package:
        assert sorted(package.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(package.read("manifest.json"))
        assert package.read("outline.png") == (TEAMS / "outline.png").read_bytes()
    assert manifest["id"] == manifest["bots"][0]["botId"] == BOT
    assert manifest["version"] == "1.2.3"
    assert manifest["validDomains"] == ["acme.checkfront.com", "refunds.example.com"]
    assert not list(Draft4Validator(SCHEMA).iter_errors(manifest))


def test_a_separate_teams_app_id(tmp_path: Path) -> None:
    other = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    manifest = teams_package.build(
        TeamsPackageSettings(teams_app_id=BOT, teams_manifest_id=other), tmp_path / "a.zip")
    assert manifest["id"] == other and manifest["bots"][0]["botId"] == BOT


@pytest.mark.parametrize("env", [{}, {"TEAMS_APP_ID": "not-a-guid"},
                                 {"TEAMS_APP_ID": teams_package.PLACEHOLDER},
                                 {"TEAMS_APP_ID": BOT, "TEAMS_APP_VERSION": "1.0"}])
def test_nothing_is_written_unless_it_would_install(
        env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TEAMS_APP_ID", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "app.zip"
    assert main(["teams-package", "--out", str(out)]) == 2
    assert not out.exists() and not list(tmp_path.iterdir())
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert "TEAMS_APP_ID" in error or "version" in error


def test_a_wrong_icon_is_refused(tmp_path: Path) -> None:
    for name in ("manifest.json", "color.png"):
        (tmp_path / name).write_bytes((TEAMS / name).read_bytes())
    (tmp_path / "outline.png").write_bytes((TEAMS / "color.png").read_bytes())
    with pytest.raises(teams_package.PackageError, match="32x32"):
        teams_package.build(TeamsPackageSettings(teams_app_id=BOT), tmp_path / "a.zip",
                            source=tmp_path)
    assert not (tmp_path / "a.zip").exists()
