"""`optimus serve`: run a real tritonserver with our model repository and supervise it.

The tritonserver binary and the Python-backend stubs come from the nvidia-pytriton wheel (see DESIGN.md §7),
or from an existing Triton install (`--tritonserver /opt/tritonserver/bin/tritonserver` in NGC images).
Server-side settings reach the model as config.pbtxt parameters: every run writes a generated copy of the
repository's config into a runtime directory whose version folder links back to the real model.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from .config import PROJECT_ROOT, ConfigError, EngineConfig

MODEL_NAME = "optimus"
MODEL_REPOSITORY = PROJECT_ROOT / "model_repository"
CACHE_DIR = PROJECT_ROOT / ".cache" / "triton"
KILL_GRACE_S = 5.0  # waited past --exit-timeout-secs before SIGKILL


# ---- config parameters <-> EngineConfig ------------------------------------------------------------------

def config_to_parameters(config: EngineConfig) -> dict[str, str]:
    """EngineConfig as config.pbtxt string parameters (None becomes "")."""
    out = {}
    for f in dataclasses.fields(EngineConfig):
        value = getattr(config, f.name)
        out[f.name] = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return out


def config_from_parameters(params: dict[str, str]) -> EngineConfig:
    """Builds and validates an EngineConfig from string parameters; unknown names and "" (default) are skipped."""
    values = {}
    for f in dataclasses.fields(EngineConfig):
        text = params.get(f.name, "").strip()
        if not text:
            continue
        kind = str(f.type)
        try:
            if text.lower() == "none" and "None" in kind:
                values[f.name] = None
            elif kind.startswith("bool"):
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(text)
                values[f.name] = text.lower() in ("true", "1")
            elif kind.startswith("int"):
                values[f.name] = int(text)
            elif kind.startswith("float"):
                values[f.name] = float(text)
            elif kind.startswith("Path"):
                values[f.name] = Path(text).expanduser()
            else:
                values[f.name] = text
        except ValueError:
            raise ConfigError(f"{f.name}: cannot parse {text!r} as {kind}") from None
    return EngineConfig(**values).validate()


# ---- locating and preparing tritonserver -----------------------------------------------------------------

@dataclasses.dataclass
class TritonInstall:
    """Where the server binary and its backends live, and the environment it needs."""

    server: Path
    backend_dir: Path
    env: dict[str, str]


def _python_library_dir() -> Path | None:
    """The directory holding this interpreter's libpython3.X.so.1.0, if it was built shared."""
    libdir, name = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if libdir and name and (Path(libdir) / name).exists():
        return Path(libdir)
    return None


def _ensure_system_libpython(stub: Path) -> None:
    """The stub links libpython3.X.so.1.0; install the distro package when root, else say how."""
    lines = subprocess.run(["ldd", str(stub)], capture_output=True, text=True).stdout.splitlines()
    if not any("libpython" in line and "not found" in line for line in lines):
        return
    package = f"libpython{sys.version_info.major}.{sys.version_info.minor}"
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"optimus serve: installing {package} for the Python-backend stub", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True)
        return
    raise RuntimeError(f"the Python-backend stub needs {package}: run `sudo apt-get install {package}`")


def pytriton_install(cache_dir: Path = CACHE_DIR) -> TritonInstall:
    """tritonserver from the nvidia-pytriton wheel, with this Python's stub copied into cache_dir/backends."""
    import pytriton

    root = Path(pytriton.__file__).resolve().parent / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise RuntimeError(f"nvidia-pytriton ships no Python-backend stub for Python {version}")
    backend = cache_dir / "backends" / "python"
    backend.mkdir(parents=True, exist_ok=True)
    for src in [stub, *(root / "backends" / "python").glob("*.*")]:
        dst = backend / src.name
        if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:
            shutil.copy2(src, dst)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the stub's python is the venv's
    libs = [str(root.parent.parent / "nvidia_pytriton.libs")]
    pylib = _python_library_dir()
    if pylib is None:
        _ensure_system_libpython(backend / stub.name)
    else:
        libs.insert(0, str(pylib))
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libs + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
    return TritonInstall(root / "bin" / "tritonserver", cache_dir / "backends", env)


def system_install(server: Path) -> TritonInstall:
    """An existing Triton install (NGC image): backends beside its bin directory."""
    return TritonInstall(server, server.resolve().parent.parent / "backends", dict(os.environ))


# ---- generated model repository --------------------------------------------------------------------------

def render_config(text: str, params: dict[str, str], instance_kind: str | None = None) -> str:
    """config.pbtxt text with the given parameters set (replaced or appended) and optionally the instance kind."""
    for key, value in params.items():
        block = f'parameters {{ key: "{key}" value: {{ string_value: {json.dumps(value)} }} }}'
        pattern = re.compile(r'parameters\s*\{\s*key:\s*"' + re.escape(key) + r'"\s*value:\s*\{[^}]*\}\s*\}')
        text, found = pattern.subn(lambda _: block, text)
        if not found:
            text = text.rstrip("\n") + "\n" + block + "\n"
    if instance_kind:
        text = re.sub(r"kind:\s*KIND_\w+", f"kind: {instance_kind}", text)
    return text


def write_repository(runtime_dir: Path, params: dict[str, str], instance_kind: str | None = None,
                     source: Path = MODEL_REPOSITORY) -> Path:
    """runtime_dir/optimus/{config.pbtxt (generated), 1 -> source/optimus/1}; returns the repository path."""
    model_dir = runtime_dir / MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)
    config = (source / MODEL_NAME / "config.pbtxt").read_text()
    (model_dir / "config.pbtxt").write_text(render_config(config, params, instance_kind))
    (model_dir / "1").symlink_to((source / MODEL_NAME / "1").resolve(), target_is_directory=True)
    return runtime_dir


# ---- the supervised server -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_pids(pid: int) -> list[int]:
    """Direct children of pid (the Python-backend stubs), read from /proc."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _kill_stubs(pids: list[int]) -> None:
    """SIGKILL the stubs the server started, by PID; a PID now held by another program is left alone."""
    for pid in set(pids):
        try:
            if b"triton_python_backend_stub" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


class TritonServer:
    """A tritonserver on loopback ports serving the optimus model; a context manager that stops it by PID.

    stop(): SIGTERM, wait exit_timeout_s + KILL_GRACE_S, then SIGKILL the server and its stubs (by PID).
    """

    def __init__(self, params: dict[str, str] | None = None, http_port: int = 0, grpc_port: int = 0,
                 metrics_port: int = 0, host: str = "127.0.0.1", exit_timeout_s: int = 5,
                 install: TritonInstall | None = None, instance_kind: str | None = None,
                 log_path: Path | None = None, log_verbose: int = 0):
        self.params = dict(params or {})
        self.host = host
        self.http_port, self.grpc_port, self.metrics_port = (p or free_port() for p in (http_port, grpc_port,
                                                                                          metrics_port))
        self.exit_timeout_s = exit_timeout_s
        self.install = install
        self.instance_kind = instance_kind
        self.log_path = log_path
        self.log_verbose = log_verbose
        self.process: subprocess.Popen | None = None
        self.runtime_dir: Path | None = None
        self.stub_pids: list[int] = []  # recorded at readiness: a crashed server orphans its stubs

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def command(self, repository: Path) -> list[str]:
        return [str(self.install.server), f"--model-repository={repository}",
                f"--backend-directory={self.install.backend_dir}",
                f"--http-address={self.host}", f"--http-port={self.http_port}",
                f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
                f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
                f"--exit-timeout-secs={self.exit_timeout_s}", f"--log-verbose={self.log_verbose}",
                "--disable-auto-complete-config", "--metrics-interval-ms=500",
                *([] if Path("/dev/nvidiactl").exists() else ["--allow-gpu-metrics=false"])]  # no NVML noise on CPU

    def start(self, ready_timeout_s: float = 300.0) -> "TritonServer":
        self.install = self.install or pytriton_install()
        (CACHE_DIR / "runs").mkdir(parents=True, exist_ok=True)
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="run-", dir=CACHE_DIR / "runs"))
        repository = write_repository(self.runtime_dir / "model_repository", self.params, self.instance_kind)
        log = open(self.log_path, "wb") if self.log_path else None
        self.process = subprocess.Popen(self.command(repository), env=self.install.env, stdout=log,
                                        stderr=subprocess.STDOUT if log else None, start_new_session=True)
        if log:
            log.close()
        try:
            self.wait_ready(ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.stub_pids = _child_pids(self.process.pid)
        return self

    def is_ready(self) -> bool:
        try:
            url = f"{self.http_url}/v2/models/{MODEL_NAME}/ready"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.is_ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with code {self.process.returncode}" + self._log_tail())
            if time.monotonic() > deadline:
                raise TimeoutError(f"tritonserver not ready after {timeout_s:.0f} s" + self._log_tail())
            time.sleep(0.1)

    def _log_tail(self) -> str:
        if self.log_path and Path(self.log_path).exists():
            return ":\n" + "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-30:])
        return ""

    def stop(self) -> int | None:
        """Stops the server (SIGTERM, bounded wait, SIGKILL) and removes the runtime directory; returns its code."""
        proc, code = self.process, None
        if proc is not None:
            stubs = self.stub_pids + _child_pids(proc.pid)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=self.exit_timeout_s + KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                stubs += _child_pids(proc.pid)
                proc.kill()
                code = proc.wait()
            _kill_stubs(stubs)  # gone already after a clean exit
            self.process = None
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None
        return code

    def __enter__(self) -> "TritonServer":
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


# ---- the `optimus serve` command -------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--host", default=os.environ.get("OPTIMUS_HOST", "127.0.0.1"),
                        help="address to bind (default $OPTIMUS_HOST or 127.0.0.1; 0.0.0.0 inside a container)")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint directory (default: the shipped model)")
    parser.add_argument("--shape", help="a named random-weight shape instead of a checkpoint (e.g. qwen3-8b)")
    parser.add_argument("--mode", help="ar | bd | chunk:N | elastic (default: elastic)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--dtype", help="auto | float32 | bfloat16 | float16")
    parser.add_argument("--max-running", type=int, help="max requests in the running batch")
    parser.add_argument("--kv-budget-mb", type=int, help="KV-cache budget in MiB")
    parser.add_argument("--max-tokens-limit", type=int, help="largest max_tokens a request may ask for")
    parser.add_argument("--tpot-slo-ms", type=float, help="per-token latency SLO for the elastic controller")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="any other EngineConfig field, e.g. --set page_size=32 (repeatable)")
    parser.add_argument("--exit-timeout-secs", type=int, default=5)
    parser.add_argument("--tritonserver", type=Path, default=os.environ.get("OPTIMUS_TRITONSERVER") or None,
                        help="use this tritonserver binary (default $OPTIMUS_TRITONSERVER, e.g. "
                             "/opt/tritonserver/bin/tritonserver) instead of the nvidia-pytriton wheel's")
    parser.add_argument("--log-verbose", type=int, default=0)


def parameters_from_args(args: argparse.Namespace) -> dict[str, str]:
    """The CLI's server-side settings as config parameters (only those given)."""
    given = {"checkpoint": args.checkpoint, "shape": args.shape, "mode": args.mode, "device": args.device,
             "dtype": args.dtype, "max_running": args.max_running, "max_tokens_limit": args.max_tokens_limit,
             "tpot_slo_ms": args.tpot_slo_ms,
             "kv_budget_bytes": args.kv_budget_mb * 2**20 if args.kv_budget_mb else None}
    params = {k: str(Path(v).resolve()) if isinstance(v, Path) else str(v) for k, v in given.items() if v is not None}
    if args.shape and not args.checkpoint:
        params["checkpoint"] = "none"
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects FIELD=VALUE, got {item!r}")
        params[key.strip()] = value.strip()
    return params


def _client_hint(server: TritonServer) -> str:
    return (f"  optimus-client --url {server.grpc_url} 'What is 12 + 30?'\n"
            f"  curl -s -X POST {server.http_url}/v2/models/{MODEL_NAME}/generate "
            f"-d '{{\"text_input\": \"What is 12 + 30?\", \"parameters\": {{\"max_tokens\": 32}}}}'")


def run(args: argparse.Namespace) -> int:
    params = parameters_from_args(args)
    unknown = set(params) - {f.name for f in dataclasses.fields(EngineConfig)}
    if unknown:
        print(f"optimus serve: unknown setting(s) {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    try:
        config = config_from_parameters(params)  # fail here, naming the field, rather than inside Triton
    except ConfigError as exc:
        print(f"optimus serve: {exc}", file=sys.stderr)
        return 2
    if config.checkpoint is not None and not (config.checkpoint / "config.json").exists():
        print(f"optimus serve: checkpoint: no checkpoint at {config.checkpoint} (give --checkpoint DIR)",
              file=sys.stderr)
        return 2
    install = system_install(args.tritonserver) if args.tritonserver else pytriton_install()
    # device "auto": KIND_AUTO, one engine per GPU; an explicit device: one engine that places itself
    kind = None if config.device == "auto" else "KIND_CPU" if config.device == "cpu" else "KIND_MODEL"
    server = TritonServer(params, args.http_port, args.grpc_port, args.metrics_port, args.host,
                          args.exit_timeout_secs, install, kind, log_verbose=args.log_verbose)
    def interrupt(*_) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):  # while loading: start() stops the server and re-raises
        signal.signal(sig, interrupt)
    started = time.monotonic()
    try:
        server.start()
    except (RuntimeError, TimeoutError) as exc:
        print(f"optimus serve: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("optimus serve: interrupted while loading", file=sys.stderr)
        return 130
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"\nOptimus is serving (mode {config.mode}, checkpoint {config.checkpoint or config.shape}), "
          f"ready in {time.monotonic() - started:.1f} s:\n"
          f"  HTTP     {server.http_url}/v2/models/{MODEL_NAME}/generate[_stream]\n"
          f"  gRPC     {server.grpc_url}\n"
          f"  metrics  {server.metrics_url}\n"
          f"Try:\n{_client_hint(server)}\nCtrl-C stops the server.\n", flush=True)
    while not stop.is_set() and server.process.poll() is None:
        stop.wait(0.5)
    died = server.process.poll()
    code = server.stop()
    if died is not None:
        print(f"optimus serve: tritonserver exited with code {died}", file=sys.stderr)
        return died or 1
    print(f"optimus serve: stopped (tritonserver exit code {code})", file=sys.stderr)
    return 0
