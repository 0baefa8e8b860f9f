"""A real tritonserver with our model repository: find the binary, write the runtime repository, start, stop.

The tritonserver binary and the Python-backend stubs come from the nvidia-pytriton wheel (see DESIGN.md §7),
or from an existing Triton install (NGC images). Server-side settings reach the model as config.pbtxt
parameters: every run writes a generated copy of the repository's config into a runtime directory whose
version folder links back to the real model.py. `TritonServer` is reused by the tests and the load tests.
"""

from __future__ import annotations

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

def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (held open together while picked, so no two are the same)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


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
        picked = iter(free_ports(3))
        self.http_port, self.grpc_port, self.metrics_port = (p or next(picked) for p in (http_port, grpc_port,
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
