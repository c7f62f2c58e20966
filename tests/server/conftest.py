"""Fixtures for the g4 serve tests: start `g4 serve` on the tiny model on a free port."""
import os
import socket
import subprocess
import time
import urllib.request

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
G4 = os.path.abspath(os.environ.get("G4_BIN", os.path.join(ROOT, "build", "g4")))
MODEL = os.path.join(ROOT, "tests", "fixtures", "models", "tiny-a")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *extra, env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(os.environ.get("G4_TEST_TMP", "/tmp"), f"g4-serve-{self.port}.log"), "w+")
        self.proc = subprocess.Popen(
            [G4, "serve", MODEL, "--port", str(self.port), "--threads", "1", *extra],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"g4 serve exited with {self.proc.returncode}: {self.logtext()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            time.sleep(0.05)
        raise RuntimeError("g4 serve did not become healthy: " + self.logtext())

    def logtext(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def server():
    s = Server("--served-model-name", "tiny", "--max-model-len", "512", "--max-num-seqs", "8")
    yield s
    s.stop()
