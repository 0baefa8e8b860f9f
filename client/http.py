"""HTTP generate and generate_stream (server-sent events) with the standard library only."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Callable

from .result import Generation

MODEL = "optimus"
DEFAULT_URL = "http://localhost:8000"


def _body(prompt: str, params: dict, stream: bool) -> bytes:
    return json.dumps({"text_input": prompt, "stream": stream, "sampling_parameters": json.dumps(params),
                       "exclude_input_in_output": True, "return_finish_reason": True,
                       "return_num_input_tokens": True, "return_num_output_tokens": True}).encode()


def _apply(gen: Generation, event: dict) -> None:
    if "error" in event:
        gen.error = event["error"]
        return
    gen.add(event.get("text_output", ""))
    gen.finish_reason = event.get("finish_reason") or gen.finish_reason
    gen.num_input_tokens = event.get("num_input_tokens", gen.num_input_tokens)
    gen.num_output_tokens = event.get("num_output_tokens", gen.num_output_tokens)


def _post(url: str, body: bytes, timeout_s: float | None):
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    return urllib.request.urlopen(request, timeout=timeout_s)


def generate(prompt: str, params: dict, url: str = DEFAULT_URL, model: str = MODEL,
             timeout_s: float | None = None) -> Generation:
    """POST /v2/models/<model>/generate: one response with the whole text."""
    gen = Generation()
    try:
        with _post(f"{url}/v2/models/{model}/generate", _body(prompt, params, False), timeout_s) as resp:
            _apply(gen, json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        gen.error = json.loads(exc.read() or b"{}").get("error", str(exc))
    gen.finish()
    gen.ttft_s = None  # one response: no first-token time to observe
    return gen


def generate_stream(prompt: str, params: dict, url: str = DEFAULT_URL, on_text: Callable[[str], None] | None = None,
                    model: str = MODEL, timeout_s: float | None = None) -> Generation:
    """POST /v2/models/<model>/generate_stream: one SSE `data:` event per streamed piece."""
    gen = Generation()
    try:
        with _post(f"{url}/v2/models/{model}/generate_stream", _body(prompt, params, True), timeout_s) as resp:
            for line in resp:
                if not line.startswith(b"data:"):
                    continue
                event = json.loads(line[5:])
                _apply(gen, event)
                if on_text and event.get("text_output"):
                    on_text(event["text_output"])
    except urllib.error.HTTPError as exc:
        gen.error = json.loads(exc.read() or b"{}").get("error", str(exc))
    return gen.finish()
