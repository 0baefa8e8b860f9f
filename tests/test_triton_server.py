"""A real tritonserver (from the nvidia-pytriton wheel) serving the optimus model on free loopback ports.

One module-scoped server in BD mode (its commits do not depend on the batch, so concurrent results must equal
the embedded engine's); `optimus serve` itself is started once more to check shutdown with an open stream.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from client import grpc_stream, http
from client.grpc_stream import GrpcStream, read_generation
from client.result import Generation
from optimus_backend.config import ConfigError, EngineConfig, SamplingParams
from optimus_backend.engine import Engine
from optimus_backend.triton_server import (KILL_GRACE_S, MODEL_REPOSITORY, TritonServer, _child_pids, config_from_parameters,
                                           config_to_parameters, free_ports, render_config)

pytestmark = pytest.mark.timeout(240)

MAX_TOKENS_LIMIT = 256
PARAMS = {"max_tokens": 24, "ignore_eos": True}
# The random tiny model turns these into visible text from the first step (others may decode to partial
# UTF-8 that the detokenizer holds back, so a stream may have a single response).
PROMPTS = ["the quick brown fox", "what is 12 + 7 - 3?", "to be or not to be", "stop here"]


def server_parameters(checkpoint: Path) -> dict[str, str]:
    return {"checkpoint": str(checkpoint), "mode": "bd", "device": "cpu", "kv_budget_bytes": str(8 * 2**20),
            "max_tokens_limit": str(MAX_TOKENS_LIMIT), "max_running": "32"}


@pytest.fixture(scope="module")
def server(tiny_checkpoint, tmp_path_factory):
    log = tmp_path_factory.mktemp("triton") / "triton.log"
    with TritonServer(server_parameters(tiny_checkpoint), instance_kind="KIND_CPU", log_path=log) as s:
        yield s


@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    """The embedded engine with the server's settings: the expected outputs."""
    e = Engine(config_from_parameters(server_parameters(tiny_checkpoint)))
    yield e
    e.shutdown()


def expected(engine, prompts: list[str], params: dict = PARAMS) -> list[str]:
    return engine.generate(prompts, SamplingParams.from_dict(dict(params)))


def scrape(server: TritonServer) -> dict[str, float]:
    """Our custom metrics as {series: value} (series includes the labels)."""
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith("optimus_")}


def settled(server: TritonServer) -> dict[str, float]:
    """A scrape once counters stop moving (the adapter records metrics from its monitor thread)."""
    def counters(values: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in values.items() if "_total" in k or "_count" in k}

    previous = scrape(server)
    for _ in range(50):
        time.sleep(0.15)
        current = scrape(server)
        if counters(current) == counters(previous):
            return current
        previous = current
    raise AssertionError("metrics never settled")


def metric(values: dict[str, float], name: str) -> float:
    return sum(v for k, v in values.items() if k.split("{")[0] == name)


def wait_for(condition, timeout_s: float = 10.0, period_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(period_s)
    return False


def test_config_parameters_round_trip_and_render():
    config = EngineConfig(checkpoint=Path("/ckpt"), mode="chunk:4", max_running=7, tpot_slo_ms=50.0,
                          prefix_kv_reuse=False)
    assert config_from_parameters(config_to_parameters(config)) == config
    assert config_from_parameters({"mode": "", "checkpoint": ""}) == EngineConfig()
    with pytest.raises(ConfigError, match="max_running"):
        config_from_parameters({"max_running": "many"})
    text = render_config((MODEL_REPOSITORY / "optimus" / "config.pbtxt").read_text(),
                         {"mode": "bd", "seed": "3"}, "KIND_CPU")
    assert 'key: "mode" value: { string_value: "bd" }' in text and 'key: "seed"' in text
    assert text.count('key: "mode"') == 1 and "kind: KIND_CPU" in text


def test_grpc_stream_matches_embedded_engine(server, engine):
    pieces = []
    gen = grpc_stream.stream_generate(PROMPTS[0], PARAMS, server.grpc_url, on_text=pieces.append, timeout_s=60)
    assert gen.error is None
    assert len(pieces) >= 2, "streaming should return several responses"
    assert gen.text == "".join(pieces) == expected(engine, PROMPTS[:1])[0]
    assert gen.num_output_tokens == PARAMS["max_tokens"] and gen.finish_reason == "length"
    assert gen.num_input_tokens == len(engine.tokenizer.encode(PROMPTS[0]))


def test_http_generate_and_generate_stream(server, engine):
    want = expected(engine, PROMPTS[1:2])[0]
    one = http.generate(PROMPTS[1], PARAMS, server.http_url, timeout_s=60)
    assert one.error is None and one.text == want and one.num_output_tokens == PARAMS["max_tokens"]
    streamed = http.generate_stream(PROMPTS[1], PARAMS, server.http_url, timeout_s=60)
    assert streamed.error is None and len(streamed.chunks) >= 2 and streamed.text == want
    # vLLM-style request: settings in "parameters", the prompt echoed unless exclude_input_in_output
    body = json.dumps({"text_input": PROMPTS[1], "parameters": {**PARAMS, "stream": False}}).encode()
    with urllib.request.urlopen(f"{server.http_url}/v2/models/optimus/generate", body, timeout=60) as resp:
        assert json.loads(resp.read())["text_output"] == PROMPTS[1] + want


def test_metrics_move(server):
    before = settled(server)
    gen = grpc_stream.stream_generate(PROMPTS[2], PARAMS, server.grpc_url, timeout_s=60)
    assert gen.error is None
    counts = ("optimus_time_to_first_token_seconds_count", "optimus_time_per_output_token_seconds_count",
              "optimus_e2e_request_latency_seconds_count")
    assert wait_for(lambda: all(metric(scrape(server), n) == metric(before, n) + 1 for n in counts), 5)
    after = scrape(server)
    assert metric(after, "optimus_generation_tokens_total") - metric(before, "optimus_generation_tokens_total") \
        == PARAMS["max_tokens"]
    assert metric(after, "optimus_prompt_tokens_total") - metric(before, "optimus_prompt_tokens_total") \
        == gen.num_input_tokens
    for gauge in ("optimus_num_requests_running", "optimus_num_requests_waiting", "optimus_chunk_size",
                  "optimus_committed_fed_ratio", "optimus_kv_pages_used"):
        assert any(k.startswith(gauge + "{") for k in after), gauge


def test_sixteen_concurrent_streams(server, engine):
    prompts = [f"{PROMPTS[i % 4]} {i}" for i in range(16)]
    want = expected(engine, prompts)
    results: list[Generation | None] = [None] * 16

    def client(i: int) -> None:
        results[i] = grpc_stream.stream_generate(prompts[i], PARAMS, server.grpc_url, timeout_s=120)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=150)
    for i, gen in enumerate(results):
        assert gen is not None and gen.error is None, (i, gen)
        assert gen.text == want[i] and gen.num_output_tokens == PARAMS["max_tokens"], i


def test_cancel_mid_stream_frees_the_slot(server, engine):
    before = settled(server)
    long = {"max_tokens": MAX_TOKENS_LIMIT, "ignore_eos": True}
    stream = GrpcStream(server.grpc_url)
    try:
        stream.send(PROMPTS[0], long)
        outputs, final = next(stream.responses(timeout_s=60))
        assert not final
    finally:
        stream.close(cancel=True)
    assert wait_for(lambda: metric(scrape(server), "optimus_kv_pages_used") == 0
                    and metric(scrape(server), "optimus_num_requests_running") == 0), "KV pages not freed"
    generated = metric(settled(server), "optimus_generation_tokens_total") - metric(before,
                                                                                     "optimus_generation_tokens_total")
    assert generated < MAX_TOKENS_LIMIT, "the request ran to completion instead of being aborted"
    gen = grpc_stream.stream_generate(PROMPTS[0], PARAMS, server.grpc_url, timeout_s=60)
    assert gen.error is None and gen.text == expected(engine, PROMPTS[:1])[0]


def raw_request(server: TritonServer, text: bytes, sampling: str) -> Generation:
    """One gRPC streaming request with hand-made inputs (bytes that need not be UTF-8, any JSON text)."""
    inputs = []
    for name, value in (("text_input", text), ("sampling_parameters", sampling.encode())):
        tensor = grpcclient.InferInput(name, [1], "BYTES")
        tensor.set_data_from_numpy(np.array([value], dtype=np.object_))
        inputs.append(tensor)
    with GrpcStream(server.grpc_url) as stream:
        stream.client.async_stream_infer("optimus", inputs, request_id="raw", enable_empty_final_response=True)
        return read_generation(stream, Generation(), timeout_s=60)


BAD_INPUTS = {
    "empty text": (b"", "{}", "text_input"),
    "non-UTF-8 text": (b"caf\xe9 \xff", "{}", "text_input"),
    "malformed JSON": (b"hello", '{"max_tokens": 8', "sampling_parameters"),
    "JSON not an object": (b"hello", "[8]", "sampling_parameters"),
    "unknown parameter": (b"hello", '{"max_tokenz": 8}', "max_tokenz"),
    "wrongly typed parameter": (b"hello", '{"temperature": "hot"}', "temperature"),
    "max_tokens zero": (b"hello", '{"max_tokens": 0}', "max_tokens"),
    "max_tokens over the limit": (b"hello", json.dumps({"max_tokens": MAX_TOKENS_LIMIT + 1}), "max_tokens"),
    "prompt longer than the context": (b"zq " * 6000, '{"max_tokens": 8}', "text_input"),
    "mode not served": (b"hello", '{"mode": "ar"}', "mode"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_an_error_and_the_model_keeps_serving(server, case):
    text, sampling, field = BAD_INPUTS[case]
    bad = raw_request(server, text, sampling)
    assert bad.error is not None and field in bad.error, bad.error
    good = grpc_stream.stream_generate("hello", PARAMS, server.grpc_url, timeout_s=60)
    assert good.error is None and good.num_output_tokens == PARAMS["max_tokens"]


def test_http_bad_input_is_a_400_naming_the_field(server):
    body = json.dumps({"text_input": "hello", "parameters": {"max_tokens": -3}}).encode()
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{server.http_url}/v2/models/optimus/generate", body, timeout=60)
    assert info.value.code == 400 and "max_tokens" in json.loads(info.value.read())["error"]


def test_optimus_serve_stops_within_bound_with_a_stream_open(tiny_checkpoint, tmp_path):
    """`optimus serve` on SIGTERM: tritonserver gets SIGTERM, then SIGKILL past the exit timeout."""
    exit_timeout = 1
    ports = [str(port) for port in free_ports(3)]
    log = open(tmp_path / "serve.log", "wb")
    cli = subprocess.Popen([sys.executable, "-m", "optimus_backend.cli", "serve", "--checkpoint", str(tiny_checkpoint),
                            "--mode", "bd", "--device", "cpu", "--kv-budget-mb", "8",
                            "--http-port", ports[0], "--grpc-port", ports[1],
                            "--metrics-port", ports[2], "--exit-timeout-secs", str(exit_timeout)],
                           stdout=log, stderr=subprocess.STDOUT)
    stream, triton_pids = None, []
    try:
        serve_log = tmp_path / "serve.log"
        assert wait_for(lambda: b"Ctrl-C stops the server" in serve_log.read_bytes(), 120, 0.2), \
            serve_log.read_text(errors="replace")[-3000:]
        triton_pids = _child_pids(cli.pid)
        assert triton_pids
        triton_pids += [stub for pid in triton_pids for stub in _child_pids(pid)]
        stream = GrpcStream(f"127.0.0.1:{ports[1]}")
        stream.send(PROMPTS[0], {"max_tokens": MAX_TOKENS_LIMIT, "ignore_eos": True})
        next(stream.responses(timeout_s=60))
        started = time.monotonic()
        cli.send_signal(signal.SIGTERM)
        code = cli.wait(timeout=exit_timeout + KILL_GRACE_S + 15)
        elapsed = time.monotonic() - started
        assert code == 0
        assert elapsed < exit_timeout + KILL_GRACE_S + 5, elapsed
        assert not [pid for pid in triton_pids if _alive(pid)]
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        for pid in triton_pids:  # only after a failure: the server and stubs this test started
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if stream is not None:
            stream.close(cancel=True)
        log.close()


def _alive(pid: int) -> bool:
    """Running (not a zombie: PID 1 of a container may never reap the stubs a killed server orphans)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
