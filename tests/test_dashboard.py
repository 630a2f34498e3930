"""The Dask dashboard that ``score`` prints answers, and renders in a browser, while a run is on.

A real ``score`` run on a one-worker LocalCluster reads its sequences through ``GatedSource``,
whose reads wait for a gate file: the run stays in progress (its chunk tasks processing) for as
long as the test needs, with no timing involved, and finishes once the gate is opened. Meanwhile
the dashboard address that ``score`` printed must answer ``/status`` with HTTP 200, and a headless
Chromium screenshot of it must not be blank: once with ``--screenshot`` (the page as loaded), once
through the DevTools protocol after the dashboard's Bokeh plots have drawn themselves over their
websocket. Without Chromium (Debian package ``chromium``) the screenshot tests are skipped.
"""

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request

import numpy as np
import pytest
from conftest import LENGTH, WrappedSource, random_letters, write_fasta

from fastism_dist import score
from fastism_dist.io import open_sequences

pytestmark = pytest.mark.cluster

CHROMIUM = os.environ.get("FASTISM_CHROMIUM") or shutil.which("chromium") or shutil.which(
    "chromium-browser")
NO_CHROMIUM = "chromium is not installed (Debian: apt-get install -y chromium); CI installs it"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-proxy-server", "--window-size=1280,800"]
N_SEQS = 4
GATE_TIMEOUT = 180  # a gated read goes ahead anyway after this long, so nothing hangs for ever
NAVBAR_PX = 60  # the dashboard's navigation bar (plain HTML); the Bokeh plots are below it


class GatedSource(WrappedSource):
    """A sequence source whose reads wait until ``gate`` (a file path) exists."""

    def __init__(self, source, gate):
        super().__init__(source)
        self.gate = str(gate)

    def before_read(self, indices):
        t0 = time.monotonic()
        while not os.path.exists(self.gate) and time.monotonic() - t0 < GATE_TIMEOUT:
            time.sleep(0.05)


class Capture:
    """Collects what ``score`` prints on stdout while it runs in another thread."""

    def __init__(self, capsys):
        self.capsys = capsys
        self.text = ""

    def wait_for(self, pattern, thread, timeout=180):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            self.text += self.capsys.readouterr().out
            match = re.search(pattern, self.text)
            if match:
                return match
            assert thread.is_alive(), f"score ended before printing {pattern!r}:\n{self.text}"
            time.sleep(0.05)
        raise AssertionError(f"score printed no {pattern!r} in {timeout} s:\n{self.text}")


def _wait_for_chunk_tasks(cli, thread, timeout=180):
    """Block until a chunk task of the run is processing on a worker (the run is under way)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        keys = [k for ks in cli.processing().values() for k in ks]
        if any(str(k).startswith("fastism-chunk-") for k in keys):
            return
        assert thread.is_alive(), "score ended before any chunk task started"
        time.sleep(0.05)
    raise AssertionError(f"no chunk task processing after {timeout} s")


def _get(url, timeout=30):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    with opener.open(url, timeout=timeout) as response:
        return response.status, response.read().decode("utf-8", "replace")


def _read_png(path):
    import matplotlib.image

    return np.asarray(matplotlib.image.imread(str(path)), dtype=np.float64)


def _cli_screenshot(url, path, profile):
    """``chromium --headless --screenshot``: the page as loaded."""
    cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={path}", url]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert run.returncode == 0 and os.path.exists(path), (
        f"chromium failed ({run.returncode}):\n{run.stderr[-3000:]}")


async def _devtools_capture(port, url, settle_s):
    """Navigate the first page target to ``url``, wait ``settle_s``; return a PNG (bytes)."""
    from tornado.websocket import websocket_connect

    targets = json.loads(_get(f"http://127.0.0.1:{port}/json/list")[1])
    page = next(t for t in targets if t.get("type") == "page")
    ws = await websocket_connect(page["webSocketDebuggerUrl"], max_message_size=2**27)
    counter = iter(range(1, 10**6))

    async def call(method, **params):
        n = next(counter)
        await ws.write_message(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            message = await asyncio.wait_for(ws.read_message(), timeout=60)
            if message is None:
                raise AssertionError(f"DevTools closed the connection during {method}")
            reply = json.loads(message)
            if reply.get("id") == n:
                if "error" in reply:
                    raise AssertionError(f"DevTools {method}: {reply['error']}")
                return reply.get("result", {})

    try:
        await call("Emulation.setDeviceMetricsOverride", width=1280, height=800,
                   deviceScaleFactor=1, mobile=False)
        await call("Page.enable")
        await call("Page.navigate", url=url)
        await asyncio.sleep(settle_s)  # the Bokeh documents arrive over a websocket after load
        shot = await call("Page.captureScreenshot", format="png")
    finally:
        ws.close()
    return base64.b64decode(shot["data"])


def _devtools_screenshot(url, path, profile, settle_s=6.0):
    """Chromium with a DevTools port: a screenshot taken ``settle_s`` s after navigating."""
    cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
           "--remote-debugging-address=127.0.0.1", "about:blank"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        t0 = time.monotonic()
        port = None
        while port is None:
            assert proc.poll() is None, f"chromium exited with {proc.returncode}"
            assert time.monotonic() - t0 < 60, "chromium wrote no DevToolsActivePort in 60 s"
            try:
                with open(port_file) as fh:
                    port = int(fh.readline())
            except (OSError, ValueError):
                time.sleep(0.1)
        png = asyncio.run(_devtools_capture(port, url, settle_s))
        with open(path, "wb") as fh:
            fh.write(png)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def score_in_progress(tmp_path, model, capsys):
    """A ``score`` run held in progress: yields (printed dashboard link, client), then lets the
    run finish and checks it. Used inside a test (not as a fixture) so that everything ``score``
    prints lands in that test's ``capsys``."""
    from distributed import Client, LocalCluster

    fasta = write_fasta(tmp_path / "in.fa", random_letters(N_SEQS, LENGTH, seed=21))
    gate = tmp_path / "gate"
    source = GatedSource(open_sequences(fasta, length=LENGTH), gate)
    out = str(tmp_path / "out.zarr")
    result = {}
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0", host="127.0.0.1") as cluster, \
            Client(cluster, set_as_default=False) as cli:

        def run():
            try:
                result["summary"] = score(model, source, out, client=cli, chunk_size=1,
                                          method="naive", progress=True)
            except BaseException as err:  # noqa: BLE001 - reported by the test's thread
                result["error"] = err

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            link = Capture(capsys).wait_for(r"dashboard: (http://\S+)", thread).group(1)
            _wait_for_chunk_tasks(cli, thread)
            yield link, cli
            assert thread.is_alive(), "the run finished while the gate was closed"
        finally:
            gate.write_text("go")
            thread.join(timeout=300)
    assert not thread.is_alive(), "score did not finish after the gate opened"
    assert "error" not in result, result.get("error")
    assert result["summary"].chunks_run == N_SEQS


def test_printed_dashboard_answers_during_run(tmp_path, tiny_model_path, capsys):
    with score_in_progress(tmp_path, tiny_model_path, capsys) as (link, cli):
        assert link.startswith("http://127.0.0.1:") and link.endswith("/status")
        assert link == cli.dashboard_link
        status, body = _get(link)
        assert status == 200
        assert "bokeh" in body.lower() and "dask" in body.lower()


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_dashboard_screenshots_are_not_blank(tmp_path, tiny_model_path, capsys):
    loaded, drawn = tmp_path / "loaded.png", tmp_path / "drawn.png"
    with score_in_progress(tmp_path, tiny_model_path, capsys) as (link, _):
        _cli_screenshot(link, loaded, tmp_path / "profile-cli")
        _devtools_screenshot(link, drawn, str(tmp_path / "profile-devtools"))
    pixels = _read_png(loaded)
    assert pixels.shape[:2] == (800, 1280)
    assert pixels.var() > 0, "the dashboard page screenshot is blank"
    plots = _read_png(drawn)[NAVBAR_PX:]
    assert plots.var() > 0, "the dashboard's plots did not render (blank below the navigation bar)"
