"""The Web API methods of the Slack stand-in, and the workspace they act on.

`SlackMethods` is the part of `SlackSandbox` that answers `/api/{method}`: each method takes the
merged params and returns the body of an `ok: true` answer, or raises `SlackError` with Slack's
error code. It refuses what Slack refuses:

- blocks over Block Kit's limits (sandbox.slack_blocks): `invalid_blocks` for a message,
  `invalid_arguments` for a view, both with Slack's `response_metadata.messages`;
- a post to an unknown channel (`channel_not_found`; a private channel the bot is not in looks
  unknown too), to a public channel the bot was not invited to (`not_in_channel`), to an
  archived one (`is_archived`); the same for chat.postEphemeral and for sharing an upload
  (files.completeUploadExternal);
- a direct message (chat.postMessage to a `U…`/`D…` id, conversations.open) while the app's
  Messages tab is off (`messages_tab_disabled`, read from the app manifest's
  `features.app_home.messages_tab_enabled`), to a bot (`cannot_dm_bot`) or to a user the
  workspace does not have (`channel_not_found` / `user_not_found`).

A message's `text` past 40,000 characters is truncated, as Slack does, not refused. The
workspace starts with the channels the local world configures (`WORKSPACE_CHANNELS`), the bot a
member of each; `add_channel`, `add_member` and `remove_member` change that.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from sandbox.slack_blocks import message_errors, truncate_text, view_errors

MANIFEST = Path(__file__).resolve().parent.parent / "manifest.yml"
# The channels the demo, the end-to-end tests and the benchmarks point the bot at.
WORKSPACE_CHANNELS = {"C0APPROVE": "refund-approvals", "C0DIGEST": "refund-digest"}


class SlackError(Exception):
    """An `ok: false` answer with this error code (and Slack's messages, for invalid input)."""

    def __init__(self, code: str, details: list[str] | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.details = details or []


@dataclass
class SlackFile:
    id: str
    filename: str
    length: int  # as declared to files.getUploadURLExternal
    content: bytes | None = None
    title: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None
    completed: bool = False


def manifest_messages_tab(path: Path = MANIFEST) -> bool:
    """Whether the app manifest at `path` turns the App Home's Messages tab on."""
    data = yaml.safe_load(path.read_text()) or {}
    app_home = (data.get("features") or {}).get("app_home") or {}
    return bool(app_home.get("messages_tab_enabled", False))


class SlackMethods:
    """Workspace state and the Web API methods; mixed into `SlackSandbox`."""

    team_id: str
    team: str
    bot_user_id: str
    bot_id: str
    app_id: str
    url: str
    usergroups: dict[str, list[str]]
    users: dict[str, dict[str, Any]]
    channels: dict[str, dict[str, Any]]
    members: dict[str, set[str]]
    messages: dict[tuple[str, str], dict[str, Any]]
    views: dict[str, dict[str, Any]]
    home_views: dict[str, dict[str, Any]]
    files: dict[str, SlackFile]
    messages_tab_enabled: bool | None
    manifest: Path

    def _start_workspace(self, workspace_channels: dict[str, str]) -> None:
        self._last_ts = 0   # microseconds: a message's ts is the time it was posted, as Slack's
        self._ids = itertools.count(1)
        if self.messages_tab_enabled is None:
            self.messages_tab_enabled = manifest_messages_tab(self.manifest)
        for user_id, user in list(self.users.items()):
            self.add_user(user_id, **user)
        for channel_id, name in workspace_channels.items():
            if channel_id not in self.channels:
                self.add_channel(channel_id, name)

    # ---- configuration ---------------------------------------------------------------

    def add_user(self, user_id: str, name: str | None = None, real_name: str | None = None,
                 tz: str = "UTC", **extra: Any) -> dict[str, Any]:
        name = name or user_id.lower()
        real_name = real_name if real_name is not None else name
        user = {
            "id": user_id, "team_id": self.team_id, "name": name, "deleted": False,
            "real_name": real_name, "tz": tz, "tz_offset": _tz_offset(tz),
            "is_admin": False, "is_bot": False,
            "profile": {"real_name": real_name, "display_name": name, "team": self.team_id},
            **extra,
        }
        self.users[user_id] = user
        return user

    def add_channel(self, channel_id: str, name: str, *, is_private: bool = False,
                    is_member: bool = True, is_archived: bool = False) -> dict[str, Any]:
        """A channel of the workspace (replacing one of that id); the bot in it by default."""
        channel = {"id": channel_id, "name": name, "name_normalized": name,
                   "is_channel": True, "is_group": False, "is_im": False,
                   "is_private": is_private, "is_archived": is_archived,
                   "is_member": is_member, "created": 1_600_000_000,
                   "creator": self.bot_user_id}
        self.channels[channel_id] = channel
        self.members[channel_id] = {self.bot_user_id} if is_member else set()
        return channel

    def add_member(self, channel_id: str, user_id: str | None = None) -> None:
        """Invite someone (the bot when no user is named) into a channel."""
        user_id = user_id or self.bot_user_id
        self.members.setdefault(channel_id, set()).add(user_id)
        if user_id == self.bot_user_id:
            self.channels[channel_id]["is_member"] = True

    def remove_member(self, channel_id: str, user_id: str | None = None) -> None:
        """Remove someone (the bot when no user is named) from a channel."""
        user_id = user_id or self.bot_user_id
        self.members.get(channel_id, set()).discard(user_id)
        if user_id == self.bot_user_id:
            self.channels[channel_id]["is_member"] = False

    def dm_channel(self, user_id: str) -> str:
        """The id of the bot's direct-message channel with a user."""
        return "D" + user_id[1:]

    # ---- where a message may go --------------------------------------------------------

    def _postable(self, channel_id: str) -> str:
        """The conversation a post to `channel_id` lands in, or Slack's refusal."""
        if channel_id[:1] in ("U", "W"):
            return self._open_dm(channel_id, unknown="channel_not_found")
        if channel_id[:1] == "D":
            user = next((u for u in self.users if self.dm_channel(u) == channel_id), None)
            if user is None:
                raise SlackError("channel_not_found")
            return self._open_dm(user, unknown="channel_not_found")
        channel = self.channels.get(channel_id)
        if channel is None:
            raise SlackError("channel_not_found")
        if self.bot_user_id not in self.members.get(channel_id, set()):
            raise SlackError("channel_not_found" if channel["is_private"] else "not_in_channel")
        if channel["is_archived"]:
            raise SlackError("is_archived")
        return channel_id

    def _open_dm(self, user_id: str, *, unknown: str) -> str:
        user = self.users.get(user_id)
        if user_id == self.bot_user_id or (user is not None and user.get("is_bot")):
            raise SlackError("cannot_dm_bot")
        if user is None:
            raise SlackError(unknown)
        if not self.messages_tab_enabled:
            raise SlackError("messages_tab_disabled")
        return self.dm_channel(user_id)

    # ---- methods ---------------------------------------------------------------------

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.getPermalink": self._permalink,
            "views.open": self._views_open,
            "views.push": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "usergroups.users.list": self._usergroup_users,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "conversations.open": self._conversations_open,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "files.info": self._files_info,
        }

    def _auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"url": "https://sandbox.slack.test/", "team": self.team, "user": "refund-bot",
                "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id,
                "is_enterprise_install": False}

    def _post_message(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._postable(_required(p, "channel", "channel_not_found"))
        if not (p.get("text") or p.get("blocks") or p.get("attachments")):
            raise SlackError("no_text")
        _check_blocks(p)
        thread_ts = p.get("thread_ts")
        if thread_ts and (channel, thread_ts) not in self.messages:
            raise SlackError("thread_not_found")
        ts = self._next_ts()
        message: dict[str, Any] = {"type": "message", "user": self.bot_user_id,
                                   "bot_id": self.bot_id, "app_id": self.app_id,
                                   "team": self.team_id, "ts": ts,
                                   "text": truncate_text(p.get("text", ""))}
        for key in ("blocks", "attachments", "metadata", "thread_ts"):
            if p.get(key) is not None:
                message[key] = p[key]
        self.messages[(channel, ts)] = message
        return {"channel": channel, "ts": ts, "message": dict(message)}

    def _update(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = _required(p, "channel", "channel_not_found")
        ts = _required(p, "ts", "message_not_found")
        message = self.messages.get((channel, ts))
        if message is None:
            raise SlackError("message_not_found")
        _check_blocks(p)
        for key in ("text", "blocks", "attachments", "metadata"):
            if key in p:  # omitted fields keep their previous value
                message[key] = truncate_text(p[key]) if key == "text" else p[key]
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {"channel": channel, "ts": ts, "text": message.get("text", ""),
                "message": dict(message)}

    def _delete(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = _required(p, "channel", "channel_not_found")
        ts = _required(p, "ts", "message_not_found")
        if self.messages.pop((channel, ts), None) is None:
            raise SlackError("message_not_found")
        return {"channel": channel, "ts": ts}

    def _post_ephemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        self._postable(_required(p, "channel", "channel_not_found"))
        _required(p, "user", "user_not_in_channel")
        if not (p.get("text") or p.get("blocks") or p.get("attachments")):
            raise SlackError("no_text")
        _check_blocks(p)
        return {"message_ts": self._next_ts()}

    def _permalink(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = _required(p, "channel", "channel_not_found")
        ts = _required(p, "message_ts", "message_not_found")
        if (channel, ts) not in self.messages:
            raise SlackError("message_not_found")
        link = f"https://sandbox.slack.test/archives/{channel}/p{ts.replace('.', '')}"
        return {"channel": channel, "permalink": link}

    def _views_open(self, p: dict[str, Any]) -> dict[str, Any]:
        _required(p, "trigger_id", "invalid_arguments")
        view = _checked_view(p)
        view_id = self._next_id("V")
        stored = {**view, "id": view_id, "team_id": self.team_id, "app_id": self.app_id,
                  "bot_id": self.bot_id, "state": {"values": {}}, "hash": self._next_hash(),
                  "root_view_id": view_id, "previous_view_id": None}
        self.views[view_id] = stored
        return {"view": dict(stored)}

    def _views_publish(self, p: dict[str, Any]) -> dict[str, Any]:
        """A user's Home tab: kept in `home_views` by user id (the last one published)."""
        user = _required(p, "user_id", "invalid_arguments")
        view = p.get("view")
        if not isinstance(view, dict) or view.get("type") != "home":
            raise SlackError("invalid_arguments")
        _checked_view(p)
        if user not in self.users:
            raise SlackError("user_not_found")
        stored = {**view, "id": self._next_id("V"), "team_id": self.team_id,
                  "app_id": self.app_id, "bot_id": self.bot_id, "hash": self._next_hash()}
        self.home_views[user] = stored
        return {"view": dict(stored)}

    def _views_update(self, p: dict[str, Any]) -> dict[str, Any]:
        view = _checked_view(p)
        view_id = p.get("view_id")
        if not view_id and p.get("external_id"):
            view_id = next((v["id"] for v in self.views.values()
                            if v.get("external_id") == p["external_id"]), None)
        current = self.views.get(view_id or "")
        if current is None:
            raise SlackError("not_found")
        if p.get("hash") and p["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        keep = {k: current[k] for k in ("id", "team_id", "app_id", "bot_id", "state",
                                        "root_view_id", "previous_view_id")}
        stored = {**view, **keep, "hash": self._next_hash()}
        self.views[current["id"]] = stored
        return {"view": dict(stored)}

    def _usergroup_users(self, p: dict[str, Any]) -> dict[str, Any]:
        group = _required(p, "usergroup", "no_such_subteam")
        if group not in self.usergroups:
            raise SlackError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    def _users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(_required(p, "user", "user_not_found"))
        if user is None:
            raise SlackError("user_not_found")
        return {"user": user}

    def _conversations_info(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self.channels.get(_required(p, "channel", "channel_not_found"))
        if channel is None:
            raise SlackError("channel_not_found")
        return {"channel": channel}

    def _conversations_history(self, p: dict[str, Any]) -> dict[str, Any]:
        """A channel's top-level messages after `oldest` (before `latest`), newest first, at
        most `limit` (default 100); `metadata` only with `include_all_metadata`, as Slack."""
        channel = _required(p, "channel", "channel_not_found")
        if channel not in self.channels and channel[:1] != "D":
            raise SlackError("channel_not_found")
        return self._history(p, [m for (c, _), m in self.messages.items()
                                 if c == channel and m.get("thread_ts") in (None, m["ts"])])

    def _conversations_replies(self, p: dict[str, Any]) -> dict[str, Any]:
        """A thread: its parent, then its replies, oldest first (as Slack)."""
        channel = _required(p, "channel", "channel_not_found")
        ts = _required(p, "ts", "thread_not_found")
        if (channel, ts) not in self.messages:
            raise SlackError("thread_not_found")
        thread = [m for (c, _), m in self.messages.items()
                  if c == channel and (m["ts"] == ts or m.get("thread_ts") == ts)]
        answer = self._history(p, thread)
        answer["messages"].reverse()
        return answer

    def _history(self, p: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
        oldest, latest = float(p.get("oldest") or 0), float(p.get("latest") or 9e12)
        inclusive = str(p.get("inclusive", "")).lower() in ("1", "true")
        limit = int(p.get("limit") or 100)
        metadata = str(p.get("include_all_metadata", "")).lower() in ("1", "true")
        shown = []
        for message in sorted(messages, key=lambda m: float(m["ts"]), reverse=True):
            at = float(message["ts"])
            if (oldest < at < latest) or (inclusive and at in (oldest, latest)):
                item = {k: v for k, v in message.items() if metadata or k != "metadata"}
                if isinstance(item.get("metadata"), str):   # sent form-encoded
                    item["metadata"] = json.loads(item["metadata"])
                shown.append(item)
        return {"messages": shown[:limit], "has_more": len(shown) > limit,
                "response_metadata": {"next_cursor": ""}}

    def _conversations_open(self, p: dict[str, Any]) -> dict[str, Any]:
        """A DM with one user (a group DM of several is not served)."""
        users = [u for u in str(p.get("users") or "").split(",") if u]
        if not users:
            raise SlackError("users_list_not_supplied")
        if len(users) > 1:
            raise SlackError("not_implemented")
        channel = self._open_dm(users[0], unknown="user_not_found")
        return {"channel": {"id": channel, "is_im": True, "user": users[0]}}

    def _get_upload_url(self, p: dict[str, Any]) -> dict[str, Any]:
        filename = _required(p, "filename", "invalid_arguments")
        try:
            length = int(p.get("length", ""))
        except ValueError:
            raise SlackError("invalid_arguments") from None
        file_id = self._next_id("F")
        self.files[file_id] = SlackFile(file_id, filename, length)
        return {"upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}

    def _complete_upload(self, p: dict[str, Any]) -> dict[str, Any]:
        entries = p.get("files")
        if not isinstance(entries, list) or not entries:
            raise SlackError("invalid_arguments")
        done: list[SlackFile] = []
        for entry in entries:
            upload = self.files.get(str(entry.get("id", ""))) if isinstance(entry, dict) else None
            if upload is None or upload.content is None or upload.completed:
                raise SlackError("file_not_found")
            upload.title = entry.get("title") or upload.filename
            done.append(upload)
        channel = p.get("channel_id") or (p.get("channels") or "").split(",")[0] or None
        if channel is not None:
            channel = self._postable(channel)
        for upload in done:
            upload.completed = True
            upload.channel = channel
            upload.thread_ts = p.get("thread_ts")
            upload.initial_comment = p.get("initial_comment")
        return {"files": [{"id": f.id, "name": f.filename, "title": f.title, "size": len(
            f.content or b""), "channels": [f.channel] if f.channel else []} for f in done]}

    def add_user_file(self, filename: str, content: bytes) -> SlackFile:
        """A file a person uploaded (through a modal's file_input), for files.info to show."""
        file_id = self._next_id("F")
        self.files[file_id] = SlackFile(file_id, filename, len(content), content,
                                        completed=True)
        return self.files[file_id]

    def _files_info(self, p: dict[str, Any]) -> dict[str, Any]:
        found = self.files.get(_required(p, "file", "invalid_arguments"))
        if found is None or not found.completed:
            raise SlackError("file_not_found")
        return {"file": {"id": found.id, "name": found.filename, "size": len(found.content or b""),
                         "url_private_download": f"{self.url}/files/{found.id}/download"}}

    # ---- ids -------------------------------------------------------------------------

    def _next_ts(self) -> str:
        """The time now as Slack writes it (seconds.micros), later than every ts before it."""
        micros = self._last_ts = max(time.time_ns() // 1_000, self._last_ts + 100)
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}0SBX{next(self._ids):06d}"

    def _next_hash(self) -> str:
        return f"{int(time.time())}.{next(self._ids):08x}"


def _check_blocks(p: dict[str, Any]) -> None:
    errors = message_errors(p.get("blocks"))
    if errors:
        raise SlackError("invalid_blocks", errors)


def _checked_view(p: dict[str, Any]) -> dict[str, Any]:
    view = p.get("view")
    if not isinstance(view, dict) or "type" not in view:
        raise SlackError("invalid_arguments")
    errors = view_errors(view)
    if errors:
        raise SlackError("invalid_arguments", errors)
    return view


def _required(p: dict[str, Any], key: str, error: str) -> str:
    value = p.get(key)
    if not isinstance(value, str) or not value:
        raise SlackError(error)
    return value


def _tz_offset(tz: str) -> int:
    with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
        offset = datetime.now(UTC).astimezone(ZoneInfo(tz)).utcoffset()
        return int(offset.total_seconds()) if offset else 0
    return 0
