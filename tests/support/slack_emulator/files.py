"""Slack's file methods: the external upload flow (``files.getUploadURLExternal``,
the upload URL, ``files.completeUploadExternal``), file shares and deletion."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from tests.support.slack_emulator.records import (
    JSON,
    UPLOAD_URL,
    RecordedCall,
    SlackError,
    UploadedFile,
    _Reply,
    invalid_arguments,
)
from tests.support.slack_emulator.wire import _read_upload, _split


class _Files:
    """The files methods and the upload URL handler (mixed into ``SlackEmulator``)."""

    def _api_files_upload(self, params: JSON) -> JSON:
        raise SlackError("method_deprecated")

    def _api_files_getUploadURLExternal(self, params: JSON) -> JSON:
        filename = str(params.get("filename") or "")
        length = str(params.get("length") or "")
        if not filename or not length.isdigit():
            raise invalid_arguments("missing required field: filename or length")
        file_id = self._ids.next("F")
        self._files[file_id] = UploadedFile(file_id=file_id, filename=filename, length=int(length))
        return {"upload_url": f"{self._root_url}upload/v1/{file_id}", "file_id": file_id}

    def _api_files_completeUploadExternal(self, params: JSON) -> JSON:
        entries = params.get("files")
        if not isinstance(entries, list) or not entries:
            raise invalid_arguments("missing required field: files")
        channels = self._share_targets(params)
        files = [self._uploaded(entry) for entry in entries]
        for file in files:
            self._complete(file, _entry_title(entries, file.file_id), channels, params)
        self._post_file_share(files, channels, params)
        return {"files": [self._file_object(f) for f in files]}

    def _api_files_delete(self, params: JSON) -> JSON:
        """Delete a file; as on Slack, its messages keep a tombstone in its place."""
        file = self._files.get(str(params.get("file") or ""))
        if file is None:
            raise SlackError("file_not_found")
        if file.deleted:
            raise SlackError("file_deleted")
        file.deleted = True
        file.content = None
        for messages in self._messages.values():
            for message in messages:
                if any(f.get("id") == file.file_id for f in message.get("files", [])):
                    message["files"] = [
                        {"id": f["id"], "mode": "tombstone"} if f.get("id") == file.file_id else f
                        for f in message["files"]
                    ]
        return {}

    def _share_targets(self, params: JSON) -> tuple[str, ...]:
        targets = _split(params.get("channels")) or _split(params.get("channel_id"))
        return tuple(self._channel_id(t) for t in targets)

    def _uploaded(self, entry: Any) -> UploadedFile:
        file = self._files.get(str(entry.get("id") if isinstance(entry, dict) else ""))
        if file is None or file.content is None or file.completed:
            raise SlackError("file_not_found")
        return file

    def _complete(
        self, file: UploadedFile, title: str | None, channels: tuple[str, ...], params: JSON
    ) -> None:
        file.title = title or file.filename
        file.channels = channels
        file.channel_id = channels[0] if channels else None
        file.initial_comment = params.get("initial_comment")
        file.thread_ts = params.get("thread_ts")
        file.completed = True
        self._shared_files.append(file)

    def _post_file_share(
        self, files: list[UploadedFile], channels: tuple[str, ...], params: JSON
    ) -> None:
        for channel in channels:
            message = self._bot_message(self._clock.next(), params)
            message |= {"text": params.get("initial_comment") or "", "upload": True}
            message["files"] = [self._file_object(f) for f in files]
            self._messages[channel].append(message)

    def _file_object(self, file: UploadedFile) -> JSON:
        return {
            "id": file.file_id,
            "created": int(time.time()),
            "name": file.filename,
            "title": file.title,
            "mimetype": "application/octet-stream",
            "filetype": "binary",
            "user": self.bot_user_id,
            "size": len(file.content or b""),
            "is_external": False,
            "is_public": any(c.startswith("C") for c in file.channels),
            "channels": [c for c in file.channels if c.startswith("C")],
            "ims": [c for c in file.channels if c.startswith("D")],
            "url_private": f"{self._root_url}files/{file.file_id}/{file.filename}",
        }

    async def _handle_upload(self, request: web.Request) -> web.Response:
        at = time.time()
        file_id = request.match_info["file_id"]
        content = await _read_upload(request)
        await self._wait_latency()
        reply = self._take_fault(UPLOAD_URL) or self._store_upload(file_id, content)
        params: JSON = {"file_id": file_id, "length": len(content)}
        headers = dict(request.headers)
        self._record(RecordedCall(UPLOAD_URL, params, headers, at, status=reply.status))
        return reply.to_response()

    def _store_upload(self, file_id: str, content: bytes) -> _Reply:
        file = self._files.get(file_id)
        if file is None or file.completed:
            return _Reply(404, None, text="file not found")
        file.content = content
        return _Reply(200, None, text=f"OK - {len(content)}")


def _entry_title(entries: list[Any], file_id: str) -> str | None:
    """The ``title`` given for ``file_id`` in ``files.completeUploadExternal``'s list."""
    for entry in entries:
        if isinstance(entry, dict) and entry.get("id") == file_id and entry.get("title"):
            return str(entry["title"])
    return None
