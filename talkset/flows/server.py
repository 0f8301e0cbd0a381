"""A local Prefect server, the process work pool and talkset's deployments.

``talkset server start|stop|status`` runs ``prefect server start`` bound to 127.0.0.1 with a
SQLite database under a state directory (default ``~/.talkset/prefect``, or
``$TALKSET_PREFECT_HOME``), analytics off, a pid file, and waits until ``/api/health`` answers.
``talkset deploy`` creates the ``talkset-process`` work pool when it is missing and the
deployments declared in the repository's ``prefect.yaml`` (``prefect deploy --all``); with
``--worker`` it also starts a process worker in the background.

State directory layout::

    <state>/prefect.db      the server's SQLite database (PREFECT_HOME is <state>)
    <state>/server.json     {"pid", "host", "port", "api_url"} of the running server
    <state>/server.log      the server's output
    <state>/worker.json     {"pid", "pool", "api_url"} of a worker started by ``talkset deploy --worker``
    <state>/worker.log      the worker's output

Every process started here gets its own session (process group), so ``stop`` ends the whole group.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the checkout holding prefect.yaml
DEFAULT_POOL = "talkset-process"
QUIET_ENV = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PREFECT_CLI_PROMPT": "false"}


class ServerError(RuntimeError):
    """The Prefect server or worker could not be started, reached or stopped."""


@dataclass
class ProcInfo:
    """A background process started by talkset (server or worker)."""

    pid: int
    api_url: str
    host: str = "127.0.0.1"
    port: int = 0
    pool: str | None = None


def state_dir(path: str | os.PathLike | None = None) -> Path:
    """The state directory: ``path``, else ``$TALKSET_PREFECT_HOME``, else ``~/.talkset/prefect``."""
    p = Path(path or os.environ.get("TALKSET_PREFECT_HOME") or Path.home() / ".talkset" / "prefect")
    p = p.expanduser().resolve()
    p.mkdir(parents=True, exist_ok=True)
    return p


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def prefect_env(state: Path, api_url: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for Prefect processes of this state directory: PREFECT_HOME and the SQLite
    database under ``state``, analytics off, no prompts, and ``PREFECT_API_URL`` when given."""
    env = dict(os.environ)
    env.update(QUIET_ENV)
    env["PREFECT_HOME"] = str(state)
    env["PREFECT_API_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{state / 'prefect.db'}"
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    else:
        env.pop("PREFECT_API_URL", None)
    env.update(extra)
    return env


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """True when ``<api_url>/health`` answers 200."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _read(path: Path) -> ProcInfo | None:
    try:
        return ProcInfo(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _stop_group(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL after ``timeout`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        end = time.monotonic() + (timeout if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < end:
            try:  # reap it if it is our child
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not _alive(pid):
                return
            time.sleep(0.2)


def start_server(
    state: str | os.PathLike | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    ui: bool = False,
    timeout: float = 120.0,
) -> ProcInfo:
    """Start ``prefect server start`` in the background and wait until it is healthy.

    ``port`` None picks a free port. A server already running for this state directory is
    reused. Returns its :class:`ProcInfo` (``api_url`` is ``http://host:port/api``).
    Raises :class:`ServerError` with the log tail if it does not become healthy in ``timeout`` s.
    """
    sd = state_dir(state)
    info_path = sd / "server.json"
    old = _read(info_path)
    if old and _alive(old.pid) and healthy(old.api_url):
        return old
    port = port or free_port(host)
    api_url = f"http://{host}:{port}/api"
    log_path = sd / "server.log"
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port), "--analytics-off"]
    cmd.append("--ui" if ui else "--no-ui")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            env=prefect_env(sd),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=sd,
        )
    info = ProcInfo(pid=proc.pid, api_url=api_url, host=host, port=port)
    info_path.write_text(json.dumps(asdict(info)))
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            info_path.unlink(missing_ok=True)
            raise ServerError(f"prefect server exited with {proc.returncode}; log {log_path}:\n{_tail(log_path)}")
        if healthy(api_url):
            return info
        time.sleep(0.5)
    _stop_group(proc.pid)
    info_path.unlink(missing_ok=True)
    raise ServerError(f"prefect server not healthy after {timeout:.0f} s; log {log_path}:\n{_tail(log_path)}")


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def server_status(state: str | os.PathLike | None = None) -> dict:
    """``{"running": bool, "healthy": bool, "pid", "api_url", "worker": {...} | None}``."""
    sd = state_dir(state)
    info = _read(sd / "server.json")
    worker = _read(sd / "worker.json")
    out = {"state_dir": str(sd), "running": False, "healthy": False, "pid": None, "api_url": None, "worker": None}
    if info:
        out.update(pid=info.pid, api_url=info.api_url, running=_alive(info.pid))
        out["healthy"] = out["running"] and healthy(info.api_url)
    if worker:
        out["worker"] = {"pid": worker.pid, "pool": worker.pool, "running": _alive(worker.pid)}
    return out


def stop_worker(state: str | os.PathLike | None = None) -> bool:
    """Stop a worker started by :func:`start_worker` for this state directory."""
    sd = state_dir(state)
    info = _read(sd / "worker.json")
    if not info:
        return False
    _stop_group(info.pid)
    (sd / "worker.json").unlink(missing_ok=True)
    return True


def stop_server(state: str | os.PathLike | None = None) -> bool:
    """Stop the worker (if any) and the server of this state directory. True if a server was stopped."""
    sd = state_dir(state)
    stop_worker(sd)
    info = _read(sd / "server.json")
    if not info:
        return False
    _stop_group(info.pid)
    (sd / "server.json").unlink(missing_ok=True)
    return True


def api_url_for(state: str | os.PathLike | None = None, api_url: str | None = None) -> str:
    """``api_url``, else the running server of the state directory, else ``$PREFECT_API_URL``."""
    if api_url:
        return api_url
    info = _read(state_dir(state) / "server.json")
    if info and _alive(info.pid):
        return info.api_url
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    raise ServerError("no Prefect server: run `talkset server start` or set PREFECT_API_URL / --api-url")


def _prefect(args: list[str], env: dict, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "prefect", "--no-prompt", *args]
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise ServerError(f"`prefect {' '.join(args)}` failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc


def deploy(
    state: str | os.PathLike | None = None,
    api_url: str | None = None,
    pool: str = DEFAULT_POOL,
    names: list[str] | None = None,
    prefect_file: str | os.PathLike | None = None,
) -> list[str]:
    """Create the process work pool ``pool`` if missing, then the deployments of ``prefect.yaml``
    (all, or ``names`` such as ``["collect"]``). Returns ``"<flow>/<deployment>"`` names found on
    the server afterwards. ``TALKSET_REPO`` is set to the repository so the pull step's
    ``set_working_directory`` points at this checkout."""
    sd = state_dir(state)
    url = api_url_for(sd, api_url)
    pf = Path(prefect_file or REPO / "prefect.yaml").resolve()
    env = prefect_env(sd, url, TALKSET_REPO=str(pf.parent), TALKSET_WORK_POOL=pool)
    if _prefect(["work-pool", "inspect", pool], env, pf.parent, check=False).returncode != 0:
        _prefect(["work-pool", "create", pool, "--type", "process"], env, pf.parent)
    args = ["deploy", "--prefect-file", str(pf)]
    if names:
        for n in names:
            args += ["--name", n]
    else:
        args.append("--all")
    _prefect(args, env, pf.parent)
    return list_deployments(url)


def list_deployments(api_url: str) -> list[str]:
    """``"<flow name>/<deployment name>"`` of every deployment on the server (REST API)."""
    deps = _post(api_url, "/deployments/filter", {})
    flows = {f["id"]: f["name"] for f in _post(api_url, "/flows/filter", {})}
    return sorted(f"{flows.get(d['flow_id'], '?')}/{d['name']}" for d in deps)


def _post(api_url: str, path: str, body: dict):
    req = urllib.request.Request(
        api_url.rstrip("/") + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def flow_run(api_url: str, flow_run_id: str) -> dict:
    """A flow run as the REST API returns it (``state_type`` e.g. ``"COMPLETED"``, ``state_name``)."""
    with urllib.request.urlopen(f"{api_url.rstrip('/')}/flow_runs/{flow_run_id}", timeout=30) as r:
        return json.loads(r.read())


def start_worker(
    state: str | os.PathLike | None = None,
    api_url: str | None = None,
    pool: str = DEFAULT_POOL,
    query_seconds: float | None = None,
) -> ProcInfo:
    """Start ``prefect worker start --pool <pool> --type process`` in the background (its own
    process group, log in ``<state>/worker.log``). ``query_seconds`` sets how often it polls the
    server (Prefect's default 10 s). The worker runs each flow run in a subprocess of this
    Python (``sys.executable``), so the talkset package must be importable there."""
    sd = state_dir(state)
    url = api_url_for(sd, api_url)
    old = _read(sd / "worker.json")
    if old and _alive(old.pid):
        return old
    extra = {"TALKSET_REPO": str(REPO)}
    if query_seconds:
        extra["PREFECT_WORKER_QUERY_SECONDS"] = str(query_seconds)
    log_path = sd / "worker.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"],
            env=prefect_env(sd, url, **extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=REPO,
        )
    info = ProcInfo(pid=proc.pid, api_url=url, pool=pool)
    (sd / "worker.json").write_text(json.dumps(asdict(info)))
    time.sleep(0.5)
    if proc.poll() is not None:
        raise ServerError(f"prefect worker exited with {proc.returncode}; log {log_path}:\n{_tail(log_path)}")
    return info
