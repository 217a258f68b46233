"""A scripted agent behind a real OpenAI-compatible HTTP endpoint, so hostile episodes run through `oec collect`
exactly as a model's would (the `openai:` policy, the rollout loop, the sandbox, the verifier).

A test double of a *model*, not of any part of oec: each task's problem statement maps to a list of shell commands,
played one per turn (by the number of assistant turns in the request), then `submit`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from oec.formats.text import text_reply
from oec.types import Action


class ScriptedAgentServer:
    def __init__(self, scripts: dict[str, list[str]]):
        """SCRIPTS: problem statement -> commands."""
        self.scripts = scripts
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers["content-length"])))
                problem = next(m["content"] for m in req["messages"] if m["role"] == "user")
                commands = next(c for p, c in agent.scripts.items() if problem.startswith(p))
                turn = sum(m["role"] == "assistant" for m in req["messages"])
                action = Action(kind="bash", command=commands[turn]) if turn < len(commands) else Action(kind="submit")
                text = text_reply("scripted", action)
                body = json.dumps({
                    "id": "x", "object": "chat.completion", "created": 0, "model": req["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
