#!/usr/bin/env python3
"""A deterministic stand-in for an OpenAI-compatible model server, for the docker
compose trial (deploy/compose.yaml). It is NOT a language model.

POST /v1/chat/completions answers with the last user message's first sentence, prefixed
with "Answer:" (a judge request, whose system prompt starts "You grade answers", gets
a fixed passing grade as JSON). POST /v1/embeddings returns a 16-dimension hashed bag
of words. GET /v1/models lists one model. Same input, same output, on every machine.

Usage: python3 model.py [PORT]   (listens on 0.0.0.0, default port 11434)
"""

import hashlib
import json
import math
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def words(text):
    return re.findall(r"[a-z0-9']+", text.lower())


def embed(text):
    v = [0.0] * 16
    for w in words(text):
        h = hashlib.sha256(w.encode()).digest()
        v[h[0] % 16] += 1.0 if h[1] % 2 else -1.0
    n = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / n for x in v]


def answer(messages):
    system = next((m.get("content", "") for m in messages if m.get("role") == "system"), "")
    if system.startswith("You grade answers"):
        return json.dumps({"faithfulness": 1.0, "relevance": 1.0, "hallucination": False,
                           "reason": "stand-in judge: always passes"})
    user = [m.get("content", "") for m in messages if m.get("role") == "user"]
    text = (user[-1] if user else "").strip()
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return "Answer: " + first


class Handler(BaseHTTPRequestHandler):
    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "stand-in", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            req = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self._send(400, {"error": {"message": "body is not JSON"}})
        if self.path == "/v1/chat/completions":
            text = answer(req.get("messages", []))
            prompt = sum(len(words(m.get("content", ""))) for m in req.get("messages", []))
            self._send(200, {
                "id": "chatcmpl-" + hashlib.sha256(json.dumps(req, sort_keys=True).encode()).hexdigest()[:12],
                "object": "chat.completion",
                "model": req.get("model", "stand-in"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": len(words(text)),
                          "total_tokens": prompt + len(words(text))},
            })
        elif self.path == "/v1/embeddings":
            inputs = req.get("input", [])
            inputs = [inputs] if isinstance(inputs, str) else inputs
            self._send(200, {
                "object": "list", "model": req.get("model", "stand-in"),
                "data": [{"object": "embedding", "index": i, "embedding": embed(t)}
                         for i, t in enumerate(inputs)],
                "usage": {"prompt_tokens": 0, "total_tokens": 0},
            })
        else:
            self._send(404, {"error": {"message": "not found"}})

    def log_message(self, fmt, *args):
        sys.stderr.write("model: " + fmt % args + "\n")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 11434
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    # Bound and listening: say so, for whoever waits on this process (the tests).
    print(f"model: listening on {port}", flush=True)
    server.serve_forever()
