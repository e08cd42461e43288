"""The tests' own OpenAI-compatible chat-completions server, on loopback.

It speaks `POST /v1/chat/completions` (HTTP/1.1, keep-alive) like vLLM or the OpenAI API, so the
real `openai` client is driven end to end. Generation prompts (a `Request: {...}` line) get
commands carrying the requested labels; labeling prompts (a `Commands: [...]` line) get the
labels the server generated for those texts, changed per labeler model by `labeler_rules`.

Faults are scripted (`script("429:1", "500", model=...)`, consumed by the next matching
requests) or drawn at random (`random_faults`): `429[:seconds]` with Retry-After, `500`,
`timeout` (answers after `timeout_sleep_s`), `bad_json`, `fenced` (valid JSON in a Markdown
fence), `missing_field`, `wrong_labels`, `wrong_language`, `short`, `duplicate`, `empty`.
"""

from __future__ import annotations

import json
from pathlib import Path
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from pipeline.core.schema import ATTRIBUTE_NAMES

ATTRIBUTE_FLIP = {"yes": "no", "no": "yes", "low": "high", "medium": "low", "high": "low"}
EN_VERBS = (
    "please sort",
    "go ahead and archive",
    "quickly rename",
    "help me check",
    "open up",
    "back up",
)
EN_THINGS = ("the reports", "my receipts", "the shared notes", "those invoices", "the old drafts")
AR_VERBS = ("من فضلك رتب", "انقل", "افتح", "راجع", "احفظ نسخة من")
AR_THINGS = ("الملفات القديمة", "الفواتير", "الملاحظات المشتركة", "التقارير", "الصور")


@dataclass
class RecordedRequest:
    """One request the server received."""

    model: str
    kind: str
    job: str | None
    fault: str | None
    status: int
    authorization: str
    started: float
    finished: float


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        status, headers, payload = self.server.owner.respond(self.path, self.headers, body)
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    owner: "LLMServer"


class LLMServer:
    """A chat-completions server with scripted faults; use as a context manager."""

    def __init__(
        self,
        latency_s: float = 0.0,
        api_key: str | None = None,
        timeout_sleep_s: float = 3.0,
        seed: int = 0,
    ):
        self.latency_s = latency_s
        self.api_key = api_key
        self.timeout_sleep_s = timeout_sleep_s
        self.random_faults: tuple[float, tuple[str, ...]] | None = None
        self.labeler_rules: dict[str, Callable[[str, dict[str, str]], dict[str, str]]] = {}
        self.requests: list[RecordedRequest] = []
        self.generated: dict[str, dict[str, str]] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self._scripted: deque[tuple[str | None, str]] = deque()
        self._rng = random.Random(seed)
        self._counter = 0
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> "LLMServer":
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "LLMServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def run_batch(self, requests: Path, output: Path) -> Path:
        """Answer a Batch API request file the way the Batch API does: POST every line's body to
        this server and write one output line per request (`response` or `error`)."""
        import httpx

        lines = []
        with httpx.Client(base_url=self.base_url.removesuffix("/v1"), timeout=30) as client:
            for raw in Path(requests).read_text(encoding="utf-8").splitlines():
                request = json.loads(raw)
                headers = {"X-LM-Action-Job": request["custom_id"].rpartition(":")[2]}
                if self.api_key:
                    headers["Authorization"] = f"Bearer {self.api_key}"
                reply = client.post(request["url"], json=request["body"], headers=headers)
                lines.append(
                    {
                        "id": f"batch_req_{len(lines)}",
                        "custom_id": request["custom_id"],
                        "response": {"status_code": reply.status_code, "request_id": f"req_{len(lines)}", "body": reply.json()},
                        "error": None,
                    }
                )
        Path(output).write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
        return Path(output)

    # -- faults and inspection

    def script(self, *faults: str, model: str | None = None) -> None:
        """Faults for the next requests (of `model`, or of any model), in order."""
        with self._lock:
            self._scripted.extend((model, f) for f in faults)

    def requests_per_job(self, ok_only: bool = False) -> Counter[str]:
        with self._lock:
            return Counter(
                r.job
                for r in self.requests
                if r.job is not None and (not ok_only or r.status == 200)
            )

    def _next_fault(self, model: str) -> str | None:
        with self._lock:
            for i, (wanted, fault) in enumerate(self._scripted):
                if wanted is None or wanted == model:
                    del self._scripted[i]
                    return fault
            if self.random_faults is not None:
                rate, kinds = self.random_faults
                if self._rng.random() < rate:
                    return self._rng.choice(kinds)
        return None

    # -- protocol

    def respond(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], Any]:
        started = time.time()
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            status, out_headers, payload, model, kind, fault = self._respond(path, headers, body)
        finally:
            with self._lock:
                self.in_flight -= 1
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    model=model,
                    kind=kind,
                    job=headers.get("X-LM-Action-Job"),
                    fault=fault,
                    status=status,
                    authorization=headers.get("Authorization", ""),
                    started=started,
                    finished=time.time(),
                )
            )
        return status, out_headers, payload

    def _respond(self, path: str, headers: Any, body: bytes):
        if not path.rstrip("/").endswith("/chat/completions"):
            return 404, {}, _error("not found", "invalid_request_error"), "", "?", None
        if self.api_key is not None and headers.get("Authorization") != f"Bearer {self.api_key}":
            # Like OpenAI, echo the key that was sent (there masked; here whole, the worst case).
            sent = headers.get("Authorization", "").removeprefix("Bearer ")
            return (
                401,
                {},
                _error(f"Incorrect API key provided: {sent}", "invalid_request_error"),
                "",
                "?",
                None,
            )
        try:
            request = json.loads(body)
            messages = request["messages"]
            model = request["model"]
        except (ValueError, KeyError, TypeError):
            return 400, {}, _error("bad request body", "invalid_request_error"), "", "?", None
        prompt = "\n".join(str(m.get("content", "")) for m in messages)
        kind = "label" if "Commands: " in prompt else "generate"
        fault = self._next_fault(model)
        if self.latency_s:
            time.sleep(self.latency_s)
        if fault and fault.startswith("429"):
            wait = fault.partition(":")[2] or "1"
            return (
                429,
                {"Retry-After": wait},
                _error("rate limited", "rate_limit_error"),
                model,
                kind,
                fault,
            )
        if fault == "500":
            return 500, {}, _error("server error", "server_error"), model, kind, fault
        if fault == "timeout":
            time.sleep(self.timeout_sleep_s)
        if kind == "label":
            content = self._label_reply(prompt, model, fault)
        else:
            content = self._generate_reply(prompt, fault)
        usage = {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(content) // 4}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        payload = {
            "id": f"chatcmpl-{self._rng.getrandbits(48):x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
        return 200, {}, payload, model, kind, fault

    def _command_text(self, lang: str, domain: str) -> str:
        with self._lock:
            self._counter += 1
            k = self._counter
        if lang == "ar":
            return f"{AR_VERBS[k % len(AR_VERBS)]} {AR_THINGS[k % len(AR_THINGS)]} رقم {k} لو سمحت"
        return f"{EN_VERBS[k % len(EN_VERBS)]} {EN_THINGS[k % len(EN_THINGS)]} item {k} in {domain.replace('_', ' ')}"

    def _generate_reply(self, prompt: str, fault: str | None) -> str:
        if fault == "bad_json":
            return 'Sure! Here are the commands: {"commands": [{"text": "oops'
        if fault == "empty":
            return ""
        spec = _json_after(prompt, "Request: ")
        items = []
        for i in range(int(spec["n"])):
            text = self._command_text(spec["lang"], spec["domain"])
            labels = dict(spec["labels"])
            if fault == "wrong_labels":
                labels["legal"] = ATTRIBUTE_FLIP[labels["legal"]]
            if fault == "wrong_language":
                text = self._command_text("ar" if spec["lang"] == "en" else "en", spec["domain"])
            if fault == "short":
                text = "do it"
            if fault == "duplicate" and items:
                text = items[0]["text"]
            item: dict[str, Any] = {"text": text, "labels": labels}
            if fault == "missing_field" and i % 2 == 0:
                del item["labels"]
            items.append(item)
            with self._lock:
                self.generated[text] = dict(spec["labels"])
        content = json.dumps({"commands": items}, ensure_ascii=False)
        return f"```json\n{content}\n```" if fault == "fenced" else content

    def _label_reply(self, prompt: str, model: str, fault: str | None) -> str:
        if fault == "bad_json":
            return '{"labels": [ {"id": '
        commands = _json_after(prompt, "Commands: ")
        rule = self.labeler_rules.get(model)
        answers = []
        for i, command in enumerate(commands):
            with self._lock:
                truth = dict(self.generated.get(command["text"], {}))
            if not truth:
                truth = {name: "yes" for name in ATTRIBUTE_NAMES} | {"risk": "low"}
            labels = rule(command["text"], truth) if rule else truth
            answer = {"id": command["id"], **labels}
            if fault == "missing_field" and i == 0:
                continue
            if fault == "wrong_labels" and i == 0:
                answer["risk"] = "extreme"
            answers.append(answer)
        return json.dumps({"labels": answers}, ensure_ascii=False)


def _json_after(prompt: str, marker: str) -> Any:
    start = prompt.index(marker) + len(marker)
    value, _ = json.JSONDecoder().raw_decode(prompt[start:])
    return value


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def main() -> None:
    """Serve on loopback until Ctrl-C (for trying the pipeline by hand)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    with LLMServer(latency_s=args.latency_ms / 1000) as server:
        print(f"serving on {server.base_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
