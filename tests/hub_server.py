"""A stand-in for the Hugging Face hub on loopback: the real download path, with no network.

It serves a checkpoint folder that a test saved, as one model repo, with just the part of the hub's
API that transformers' `from_pretrained` uses through huggingface_hub:
- HEAD and GET /{repo}/resolve/{revision}/{filename}: a file, with the headers `hf_hub_download`
  checks (the commit in X-Repo-Commit, an ETag, Content-Length). A file the repo lacks is a 404
  with the hub's `X-Error-Code: EntryNotFound`, which transformers takes as "not there" rather
  than as a failure.
- GET /api/models/{repo}[/revision/{revision}]: the repo's commit, which transformers pins every
  later file of the load to.
As on the hub, `gpt2` is the old name of `openai-community/gpt2`: its URLs redirect there.

Point a process at it with HF_ENDPOINT=<its URL>. It also answers requests sent to it as to an HTTP
proxy (with the whole URL in the request line), whatever host they name: HTTP_PROXY=<its URL> makes
it a school's caching proxy, for an HF_ENDPOINT that cannot be reached directly. It listens on
127.0.0.1 only, on a free port unless told one.

    python -m tests.hub_server --port 8765 [--folder ./gpt2-local]   # by hand: gpt2-shaped random weights if no folder
"""
import argparse
import hashlib
import json
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

REPO = "openai-community/gpt2"
RENAMED = {"gpt2": REPO}  # old name -> the repo it now lives in
_REPO, _REVISION = r"(?P<repo>[\w.-]+(?:/[\w.-]+)?)", r"(?P<revision>[\w.-]+)"
RESOLVE = re.compile(rf"^/{_REPO}/resolve/{_REVISION}/(?P<filename>[\w./-]+)$")
MODEL_INFO = re.compile(rf"^/api/models/{_REPO}(?:/revision/{_REVISION})?$")
CHUNK = 1 << 16


@dataclass
class Faults:
    """Ways the stand-in can misbehave with one file, to test what a slow or broken link does."""
    file: str = "model.safetensors"
    cut_at: float | None = None  # send this share of the file, then close the connection
    seconds_per_chunk: float = 0.0  # a slow link: sleep between chunks of the file


@dataclass
class StandInHub:
    folder: Path  # the repo's files: a save_pretrained folder
    faults: Faults = field(default_factory=Faults)
    requests: list[str] = field(default_factory=list)  # "HEAD /path" for every request, in order
    connections: set = field(default_factory=set)  # the open ones: a stopped hub closes them

    def __post_init__(self):
        self.files = {path.relative_to(self.folder).as_posix(): path
                      for path in sorted(self.folder.rglob("*")) if path.is_file()}
        self.etags = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in self.files.items()}
        self.sizes = {name: path.stat().st_size for name, path in self.files.items()}
        # The repo's one commit: the hub names revisions by 40 hex digits, and a new content is a new commit.
        self.commit = hashlib.sha1("".join(sorted(self.etags.values())).encode()).hexdigest()


def _handler(hub: StandInHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the hub: a client reuses one connection

        def setup(self):
            super().setup()
            hub.connections.add(self.connection)

        def finish(self):
            hub.connections.discard(self.connection)
            super().finish()

        def do_HEAD(self):
            self._answer(body=False)

        def do_GET(self):
            self._answer(body=True)

        def _answer(self, body: bool):
            hub.requests.append(f"{self.command} {self.path}")
            path = urlsplit(self.path).path  # the same for /x and, as a proxy gets it, http://host:port/x
            match = RESOLVE.match(path) or MODEL_INFO.match(path)
            if match is None:
                return self._error(404, "RepoNotFound")  # any other route of the hub: nothing here
            repo, revision = match["repo"], match["revision"] or "main"
            if repo in RENAMED:
                self.send_response(307)
                self.send_header("Location", path.replace(f"/{repo}", f"/{RENAMED[repo]}", 1))
                self.send_header("Content-Length", "0")
                return self.end_headers()
            if repo != REPO:
                return self._error(404, "RepoNotFound")
            if revision not in ("main", hub.commit):
                return self._error(404, "RevisionNotFound")
            if match.re is MODEL_INFO:
                return self._model_info(body)
            filename = match["filename"]
            if filename not in hub.files:
                return self._error(404, "EntryNotFound", commit=hub.commit)
            data = hub.files[filename].read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", f'"{hub.etags[filename]}"')
            self.send_header("X-Repo-Commit", hub.commit)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if body:
                self._send(filename, data)

        def _model_info(self, body: bool):
            info = json.dumps({"id": REPO, "sha": hub.commit, "private": False,
                               "siblings": [{"rfilename": name} for name in hub.files]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(info)))
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            if body:
                self.wfile.write(info)

        def _send(self, filename: str, data: bytes):
            faults = hub.faults if filename == hub.faults.file else Faults()
            end = len(data) if faults.cut_at is None else int(len(data) * faults.cut_at)
            try:
                for start in range(0, end, CHUNK):
                    self.wfile.write(data[start:min(start + CHUNK, end)])
                    time.sleep(faults.seconds_per_chunk)
            except ConnectionError:  # the client went away mid-file (Ctrl-C): nobody left to answer
                self.close_connection = True
                return
            if end < len(data):
                self.close_connection = True  # the link drops: fewer bytes than Content-Length promised

        def _error(self, status: int, code: str, commit: str | None = None):
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            if commit is not None:  # the hub says which commit lacks the file; huggingface_hub caches that
                self.send_header("X-Repo-Commit", commit)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format, *args):  # the requests list is the log
            pass

    return Handler


@contextmanager
def serving_hub(folder: Path, faults: Faults | None = None, port: int = 0) -> Iterator[tuple[str, StandInHub]]:
    """The stand-in hub's URL (for HF_ENDPOINT) and the hub itself while the block runs; stopped after it.

    port 0 takes a free one.
    """
    hub = StandInHub(Path(folder), faults or Faults())
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(hub))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        for connection in list(hub.connections):  # else a client's kept-alive connection still gets answers
            with suppress(OSError):  # closed meanwhile
                connection.shutdown(socket.SHUT_RDWR)


# Left out of a command's environment: the test session's offline mode, and any proxy this machine has
# (loopback must not go through it).
NOT_INHERITED = {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}


def hub_env(endpoint: str, hf_home: Path, **extra: str) -> dict:
    """The environment for a real command that downloads from `endpoint` into the cache in `hf_home`:
    online, progress bars and analytics off, nothing inherited that binds the app to an address."""
    inherited = {key: value for key, value in os.environ.items()
                 if key.upper() not in NOT_INHERITED and not key.startswith("GRADIO_SERVER")}
    return {**inherited, "HF_ENDPOINT": endpoint, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "GRADIO_ANALYTICS_ENABLED": "False", **extra}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.hub_server", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--folder", type=Path, help="a save_pretrained folder (default: gpt2-shaped random weights)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.folder
        if folder is None:
            from tests.checkpoints import GPT2_SMALL, build_checkpoint
            folder = build_checkpoint(Path(scratch), **GPT2_SMALL)
        with serving_hub(folder, port=args.port) as (url, _):
            print(f"serving {folder} as {REPO} (and gpt2) at {url}: HF_ENDPOINT={url}; Ctrl-C stops it", flush=True)
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    main()
