"""Shared test helpers: real QR images, real config files, the real CLI in a real process."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import segno
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

ROOT = Path(__file__).resolve().parent.parent
FAKES = Path(__file__).resolve().parent / "fakes"  # stand-ins for picamera2, RPi.GPIO, evdev (their documented APIs)
sys.path.insert(0, str(ROOT))  # bench/ (synthetic frames) is not an installed package

from edge.app.cli import main as cli_main  # noqa: E402

from .waiting import patience  # noqa: E402

# Property tests never assert time (deadline=None: CI machines run 10-30x slower at times) and stay
# bounded so `make test` stays fast; CHECKPOINT_FUZZ=long runs many more examples.
hypothesis_settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    database=None)
hypothesis_settings.register_profile(
    "long", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
hypothesis_settings.load_profile(os.environ.get("CHECKPOINT_FUZZ", "default"))


def qr_image(content: str | bytes | list, *, scale: int = 6, dark: bool = False, size: tuple[int, int] | None = None,
             at: tuple[int, int] = (20, 20), canvas: np.ndarray | None = None,
             encoding: str | None = None) -> np.ndarray:
    """A grayscale image holding a QR code (UTF-8 without ECI for non-ASCII text, as phone apps emit)."""
    utf8 = isinstance(content, str) and not content.isascii()
    qr = segno.make_qr(content, error="m", encoding=encoding or ("utf-8" if utf8 else None))
    buf = io.BytesIO()
    qr.save(buf, kind="png", scale=scale, border=4)
    code = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_GRAYSCALE)
    if dark:
        code = 255 - code
    if canvas is None:
        h, w = size or (code.shape[0] + 40, code.shape[1] + 40)
        canvas = np.full((h, w), 20 if dark else 200, np.uint8)
    y, x = at
    canvas[y:y + code.shape[0], x:x + code.shape[1]] = code
    return canvas


@pytest.fixture
def fake_module(monkeypatch):
    """Import a hardware library's fake (tests/fakes) in its real name, fresh and reset, for this test only."""
    def load(name: str):
        monkeypatch.syspath_prepend(str(FAKES))
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, key)
        module = __import__(name)
        module.reset()
        return module
    return load


@pytest.fixture
def fifo(tmp_path):
    """A named pipe for a `lines` source: the test writes scans into it as a serial scanner would."""
    path = tmp_path / "scanner.fifo"
    os.mkfifo(path)
    return path


def write_fifo(path, data: bytes):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@pytest.fixture
def write_qr(tmp_path):
    def write(name: str, content, **kw) -> Path:
        path = tmp_path / name
        assert cv2.imwrite(str(path), qr_image(content, **kw))
        return path
    return write


BASE_CONFIG = """
version = "test-1"
[device]
id = "test-01"
timezone = "Asia/Ho_Chi_Minh"
[store]
dir = "{dir}"
retry_s = 0.2
[decoder]
debounce_ms = {debounce_ms}
[decision]
mode = "{mode}"
repeat_window_s = {repeat}
[outputs.green]
driver = "fake"
record_to = "{dir}/outputs.jsonl"
[outputs.red]
driver = "fake"
record_to = "{dir}/outputs.jsonl"
[outputs.relay]
driver = "fake"
record_to = "{dir}/outputs.jsonl"
[signals.allow]
green = {{ on_ms = 40 }}
relay = {{ on_ms = 40 }}
[signals.deny]
red = {{ on_ms = 20, off_ms = 20, count = 2 }}
[signals.review]
red = {{ on_ms = 20 }}
green = {{ on_ms = 20 }}
[ui]
{ui}
"""


@pytest.fixture
def make_config(tmp_path):
    """Write a config: a [source] table plus the shared base, with a few knobs."""
    def make(source: str, *, mode: str = "allowlist", repeat: int = 0, debounce_ms: int = 1500,
             extra: str = "", name: str = "checkpoint.toml", ui: str = "enabled = false") -> Path:
        """ui: the [ui] table's body (off unless a test of the screens turns it on, e.g. on port 0)."""
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        text = BASE_CONFIG.format(dir=state, mode=mode, repeat=repeat, debounce_ms=debounce_ms, ui=ui)
        path = tmp_path / name
        path.write_text(text + textwrap.dedent(source) + textwrap.dedent(extra), encoding="utf-8")
        return path
    return make


@pytest.fixture
def cli(capsys):
    """Run the checkpoint CLI in this process: (exit status, stdout, stderr)."""
    def run(*args: str) -> tuple[int, str, str]:
        status = cli_main([str(a) for a in args])
        out = capsys.readouterr()
        return status, out.out, out.err
    return run


def checkpoint_process(*args, env: dict | None = None, **kw) -> subprocess.Popen:
    """The real `checkpoint` command in a child process (for the daemon and its signals)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "edge.app.cli", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def run_checkpoint(*args, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "edge.app.cli", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=patience(timeout), **kw)


# ---- PostgreSQL, for the hub -------------------------------------------------------------------------
PG_ADMIN = os.environ.get("CHECKPOINT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _own_postgres(folder: Path) -> str:
    """A throw-away PostgreSQL cluster (trust auth, a free port) when no server is reachable."""
    import glob
    import pwd
    import shutil
    import socket

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        pytest.fail("PostgreSQL is neither reachable at $CHECKPOINT_TEST_PG nor installed "
                    "(scripts/install-deps --test)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder.mkdir(parents=True, exist_ok=True)
    run_as = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        user = pwd.getpwnam("postgres")
        shutil.chown(folder, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data = folder / "data"
    subprocess.run(run_as + [f"{bins[-1]}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run(run_as + [f"{bins[-1]}/pg_ctl", "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
                             f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


@pytest.fixture(scope="session")
def pg_admin():
    import psycopg

    try:
        psycopg.connect(PG_ADMIN, connect_timeout=3).close()
        yield PG_ADMIN
        return
    except psycopg.OperationalError:
        pass
    import glob
    import shutil
    import tempfile

    # Not under pytest's tmp folder: that one is private to root, and the server runs as postgres.
    folder = Path(tempfile.mkdtemp(prefix="checkpoint-pg-"))
    url = _own_postgres(folder)
    yield url
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(run_as + [f"{bins[-1]}/pg_ctl", "-D", str(folder / "data"), "-m", "immediate", "stop"],
                   capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(pg_admin):
    """A fresh database per test, dropped afterwards."""
    import uuid

    import psycopg

    name = f"checkpoint_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield pg_admin.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def broker(tmp_path):
    """A Mosquitto of the test's own, on a free port."""
    from .broker import Broker

    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


# ---- the fast subset: tests listed in tests/slow.txt are marked slow (`make test-fast` leaves them out) ----
SLOW_LIST = Path(__file__).resolve().parent / "slow.txt"


def slow_tests() -> set[str]:
    """`file.py::test_name` per line (parameters left off), as `pytest --durations=0` names them."""
    return {line.strip() for line in SLOW_LIST.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")}


def pytest_collection_modifyitems(config, items):
    slow = slow_tests()
    for item in items:
        if f"{item.path.name}::{getattr(item, 'originalname', item.name)}" in slow:
            item.add_marker(pytest.mark.slow)
