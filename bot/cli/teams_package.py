"""`python -m bot teams-package [--out refund-bot-teams.zip]`: the Teams app package to upload
in the Teams admin centre or the Teams Developer Portal.

It reads `teams/manifest.json` (a valid manifest whose ids are the all-zero GUID), writes in the
ids from the settings (`TEAMS_APP_ID`: the bot's Microsoft Entra app id; `TEAMS_MANIFEST_ID`:
the Teams app's id, the same unless set), the version and the valid domains (the Checkfront
host and `TEAMS_VALID_DOMAINS`), checks the result against the Teams manifest schema (v1.30)
and the icons' sizes, and only then writes the zip: `manifest.json`, `color.png`,
`outline.png` at its root, as Teams expects.
"""

from __future__ import annotations

import argparse
import json
import struct
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.settings import SettingsError, TeamsPackageSettings, load_teams_package_settings

REPO = Path(__file__).resolve().parents[2]
TEAMS = REPO / "teams"
SCHEMA = TEAMS / "schema" / "teams-manifest-1.30.schema.json"
PLACEHOLDER = "00000000-0000-0000-0000-000000000000"
ICONS = {"color": (192, 192), "outline": (32, 32)}


class PackageError(Exception):
    """The package would not install: what is wrong, on one line."""


def png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _host(value: str) -> str:
    value = value.strip()
    return (urlsplit(value).hostname or "") if "://" in value else value.split("/")[0]


def manifest_for(settings: TeamsPackageSettings, source: Path = TEAMS) -> dict[str, Any]:
    manifest = json.loads((source / "manifest.json").read_text(encoding="utf-8"))
    bot_id = settings.teams_app_id.strip().lower()
    if bot_id == PLACEHOLDER:
        raise SettingsError("invalid setting TEAMS_APP_ID: the placeholder id")
    manifest["id"] = (settings.teams_manifest_id or bot_id).strip().lower()
    for bot in manifest["bots"]:
        bot["botId"] = bot_id
    manifest["version"] = settings.teams_app_version
    domains = [_host(settings.checkfront_host)] if settings.checkfront_host else []
    domains += [_host(d) for d in settings.teams_valid_domains]
    manifest["validDomains"] = [d for d in dict.fromkeys(domains) if d]
    return manifest


def check(manifest: dict[str, Any], source: Path = TEAMS, schema: Path = SCHEMA) -> None:
    """Raise PackageError unless the manifest is valid and its icons are the sizes Teams asks."""
    from jsonschema import Draft4Validator

    if not schema.exists():
        raise PackageError(f"the Teams manifest schema is missing ({schema.name})")
    validator = Draft4Validator(json.loads(schema.read_text(encoding="utf-8")))
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.path))
    if errors:
        where = "/".join(str(p) for p in errors[0].path) or "manifest"
        raise PackageError(f"manifest.json is not valid at {where}: {errors[0].message[:200]}")
    for name, size in ICONS.items():
        path = source / manifest["icons"][name]
        if not path.exists():
            raise PackageError(f"the {name} icon {path.name} is missing")
        if png_size(path.read_bytes()) != size:
            raise PackageError(f"the {name} icon {path.name} must be a {size[0]}x{size[1]} PNG")


def build(settings: TeamsPackageSettings, out: Path, source: Path = TEAMS) -> dict[str, Any]:
    manifest = manifest_for(settings, source)
    check(manifest, source)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("manifest.json", json.dumps(manifest, indent=2) + "\n")
        for name in ICONS:
            icon = manifest["icons"][name]
            package.write(source / icon, icon)
    partial.replace(out)
    return manifest


def cmd_teams_package(args: argparse.Namespace) -> int:
    overrides = {"teams_app_version": args.version} if args.version else {}
    settings = load_teams_package_settings(**overrides)
    try:
        manifest = build(settings, Path(args.out))
    except PackageError as exc:
        raise SettingsError(str(exc)) from None
    print(f"wrote {args.out}: Teams app {manifest['id']} version {manifest['version']}, "
          f"bot {manifest['bots'][0]['botId']}")
    return 0


def register(commands: Any) -> None:
    package = commands.add_parser(
        "teams-package", help="build the Teams app package (zip) from teams/manifest.json")
    package.add_argument("--out", default="refund-bot-teams.zip", help="the zip to write")
    package.add_argument("--version", help="the app version (default TEAMS_APP_VERSION)")
    package.set_defaults(handler=cmd_teams_package)
