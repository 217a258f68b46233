"""A scripted agent behind a real OpenAI-compatible HTTP endpoint, so hostile episodes run through `oec collect`
exactly as a model's would (the `openai:` policy, the rollout loop, the sandbox, the verifier).

A test double of a *model*, not of any part of oec: each task's problem statement maps to a list of shell commands,
played one per turn (by the number of assistant turns in the request), then `submit`.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

from local_http import LocalServer, chat_completion, send

from oec.formats.text import text_reply
from oec.core.types import Action


class ScriptedAgentServer(LocalServer):
    def __init__(self, scripts: dict[str, list[str]]):
        """SCRIPTS: problem statement -> commands."""

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers["content-length"])))
                problem = next(m["content"] for m in req["messages"] if m["role"] == "user")
                commands = next(c for p, c in scripts.items() if problem.startswith(p))
                turn = sum(m["role"] == "assistant" for m in req["messages"])
                action = Action(kind="bash", command=commands[turn]) if turn < len(commands) else Action(kind="submit")
                send(self, chat_completion(text_reply("scripted", action), req["model"]))

        super().__init__(Handler)
