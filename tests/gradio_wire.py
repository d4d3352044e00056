"""Talks to a mounted Gradio UI the way its browser client does, over plain HTTP: read `/config`, join the queue
for one event with chosen input values, read the event's messages. An attacker needs nothing more, so the
security tests use this rather than gradio_client, which would refuse or rewrite the payloads under test."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx


def file_data(path: str) -> dict[str, Any]:
    """A FileData payload naming a server path: what Gradio copies into its cache if nothing checks it."""
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": path.rsplit("/", 1)[-1]}


@dataclass
class EventResult:
    success: bool
    output: dict[str, Any]
    raw: str  # every message of the event, as received

    @property
    def data(self) -> list[Any]:
        return self.output.get("data") or []


@dataclass
class GradioWire:
    url: str  # the UI's root, no trailing slash
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    session_hash: str = field(default_factory=lambda: uuid.uuid4().hex[:11])

    def client(self, timeout: float = 120) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, cookies=self.cookies, timeout=timeout)

    def config(self) -> dict[str, Any]:
        with self.client() as client:
            response = client.get("/config")
            response.raise_for_status()
            return response.json()

    def component_id(self, elem_id: str) -> int:
        for component in self.config()["components"]:
            if component.get("props", {}).get("elem_id") == elem_id:
                return component["id"]
        raise KeyError(elem_id)

    def dependency(self, elem_id: str, event: str) -> dict[str, Any]:
        """The event handler bound to `event` of the component with `elem_id`."""
        config = self.config()
        target = self.component_id(elem_id)
        for index, dependency in enumerate(config["dependencies"]):
            if [target, event] in [list(t) for t in dependency.get("targets", [])]:
                return dependency | {"fn_index": dependency.get("id", index)}
        raise KeyError(f"{elem_id}.{event}")

    def call(self, fn_index: int, data: list[Any], timeout: float = 120) -> EventResult:
        """Run one event in this session and wait for its last message."""
        with self.client(timeout) as client:
            joined = client.post(
                "/gradio_api/queue/join",
                json={
                    "data": data,
                    "fn_index": fn_index,
                    "session_hash": self.session_hash,
                    "event_data": None,
                    "trigger_id": None,
                },
            )
            joined.raise_for_status()
            lines: list[str] = []
            with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": self.session_hash}) as stream:
                for line in stream.iter_lines():
                    lines.append(line)
                    if not line.startswith("data:"):
                        continue
                    message = json.loads(line[5:])
                    if message.get("msg") == "process_completed":
                        return EventResult(bool(message.get("success")), message.get("output") or {}, "\n".join(lines))
        return EventResult(False, {}, "\n".join(lines))
