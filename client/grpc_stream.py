"""gRPC streaming generation over tritonclient: the calls the CLI, the tests and the load test share."""

from __future__ import annotations

import json
import queue
from typing import Callable, Iterator

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from .result import Generation

MODEL = "optimus"
DEFAULT_URL = "localhost:8001"


def make_inputs(prompt: str, params: dict, stream: bool = True, module=grpcclient) -> list:
    """vLLM-schema inputs (text, stream flag, sampling_parameters JSON, return_* flags) for grpc or http."""
    def tensor(name: str, value, dtype: str):
        t = module.InferInput(name, [1], dtype)
        t.set_data_from_numpy(np.array([value], dtype=np.object_ if dtype == "BYTES" else np.bool_))
        return t

    return [tensor("text_input", prompt.encode("utf-8"), "BYTES"),
            tensor("stream", stream, "BOOL"),
            tensor("sampling_parameters", json.dumps(params).encode(), "BYTES"),
            tensor("exclude_input_in_output", True, "BOOL"),
            tensor("return_finish_reason", True, "BOOL"),
            tensor("return_num_input_tokens", True, "BOOL"),
            tensor("return_num_output_tokens", True, "BOOL")]


class GrpcStream:
    """One bidirectional gRPC stream with one request in flight at a time; close() always stops the stream.

    An open stream keeps tritonserver from exiting (DESIGN.md §7), so use it as a context manager.
    """

    def __init__(self, url: str = DEFAULT_URL, model: str = MODEL):
        self.model = model
        self.client = grpcclient.InferenceServerClient(url)
        self.queue: queue.Queue = queue.Queue()
        self.client.start_stream(callback=lambda result, error: self.queue.put((result, error)))
        self.count = 0

    def send(self, prompt: str, params: dict, stream: bool = True) -> str:
        self.count += 1
        request_id = str(self.count)
        self.client.async_stream_infer(self.model, make_inputs(prompt, params, stream), request_id=request_id,
                                       enable_empty_final_response=True)
        return request_id

    def responses(self, timeout_s: float | None = None) -> Iterator[tuple[dict, bool]]:
        """Yields (outputs, final) per response until the final one; raises InferenceServerException on error."""
        while True:
            result, error = self.queue.get(timeout=timeout_s)
            if error is not None:
                raise error
            final = result.get_response().parameters["triton_final_response"].bool_param
            outputs = {o.name: result.as_numpy(o.name) for o in result.get_response().outputs}
            yield outputs, final
            if final:
                return

    def close(self, cancel: bool = False) -> None:
        try:
            self.client.stop_stream(cancel_requests=cancel)
        finally:
            self.client.close()

    def __enter__(self) -> "GrpcStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close(cancel=exc[0] is not None)


def read_generation(stream: GrpcStream, gen: Generation, on_text: Callable[[str], None] | None = None,
                    timeout_s: float | None = None) -> Generation:
    """Collects the responses of the request in flight into gen (errors land in gen.error)."""
    try:
        for outputs, _final in stream.responses(timeout_s):
            if "text_output" in outputs:
                text = outputs["text_output"].reshape(-1)[0].decode("utf-8")
                gen.add(text)
                if on_text and text:
                    on_text(text)
            if "finish_reason" in outputs:
                gen.finish_reason = outputs["finish_reason"].reshape(-1)[0].decode() or gen.finish_reason
            if "num_input_tokens" in outputs:
                gen.num_input_tokens = int(outputs["num_input_tokens"].reshape(-1)[0])
            if "num_output_tokens" in outputs:
                gen.num_output_tokens = int(outputs["num_output_tokens"].reshape(-1)[0])
    except InferenceServerException as exc:
        gen.error = exc.message()
    return gen.finish()


def stream_generate(prompt: str, params: dict, url: str = DEFAULT_URL, on_text: Callable[[str], None] | None = None,
                    model: str = MODEL, timeout_s: float | None = None) -> Generation:
    """Streams one generation over gRPC, calling on_text for every piece as it arrives."""
    with GrpcStream(url, model) as stream:
        gen = Generation()
        stream.send(prompt, params)
        return read_generation(stream, gen, on_text, timeout_s)
