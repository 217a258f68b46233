"""Real HTTP servers on 127.0.0.1 for the tests that need an OpenAI-compatible endpoint behaving in a scripted way
(a scripted agent, a slow stub): the serving thread, the reply and the chat-completion body, written once."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def chat_completion(content: str, model: str = "m") -> bytes:
    """The body of a chat-completion reply whose one choice says CONTENT."""
    return json.dumps({
        "id": "x", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }).encode()


def send(handler: BaseHTTPRequestHandler, body: bytes, code: int = 200, ctype: str = "application/json") -> None:
    handler.send_response(code)
    handler.send_header("content-type", ctype)
    handler.send_header("content-length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class LocalServer:
    """Serves HANDLER (a BaseHTTPRequestHandler class) on a free port of 127.0.0.1; `url` ends in /v1."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
