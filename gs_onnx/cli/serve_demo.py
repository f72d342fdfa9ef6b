"""``python -m gs_onnx serve-demo FOLDER``: serve the browser page (examples/web) and one recovery folder on
localhost, with the cross-origin isolation headers that let onnxruntime-web use WebAssembly threads.

The page is served from ``/``, the folder from ``/folder/`` (the page loads it by default). Without a folder it
serves a dcgan recovery folder of a bundled CelebA face, made for the session in a temporary folder. Only files inside the
two directories are served (no listing outside them, no symbolic links out); nothing is written. The page checks
every file against recovery.json itself (sha256) before it creates a session.
"""
from __future__ import annotations

import http.server
import os
import posixpath
import signal
import tempfile
import threading
import urllib.parse
from pathlib import Path

import click

from ..errors import GSError
from .common import OneLineCommand, examples, one_line_errors, version_option

#: What the page needs from onnxruntime-web (npm ci in the page folder installs it).
ORT_FILE = "node_modules/onnxruntime-web/dist/ort.wasm.min.mjs"
#: Where the page lives in a checkout, relative to the gs_onnx package.
PAGE = Path(__file__).resolve().parents[2] / "examples" / "web"
TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json",
         ".html": "text/html; charset=utf-8", ".css": "text/css", ".npy": "application/octet-stream",
         ".onnx": "application/octet-stream", ".png": "image/png", ".map": "application/json"}


def default_folder(tmp: Path) -> Path:
    """A dcgan gs recovery folder of a bundled test face (Gaussian m/n 0.163, the model's plan, reference.npy) in
    ``tmp``: what the page shows when no folder is given."""
    from .demo import default_image
    from .measure import measure_main
    from .recovery import main as recovery_main

    face = default_image(64)
    measure_main.main([str(face), "--model", "dcgan", "--ratio", "0.1628", "-o", str(tmp / "face.npy"), "-q"],
                      standalone_mode=False)
    # gs (not the Gaussian default gs-pnp): the page shows the generator's own recovery, chunk by chunk
    recovery_main.main(["--measurements", str(tmp / "face.npy"), "--method", "gs", "--reference", str(face), "-o",
                        str(tmp / "face-graph")], standalone_mode=False)
    return tmp / "face-graph"


def page_dir(page: str | None) -> Path:
    """The page folder (``--page`` or examples/web of this checkout), refused without onnxruntime-web."""
    d = Path(page) if page else PAGE
    if not (d / "index.html").is_file():
        raise GSError(f"{d} has no index.html: give --page, the examples/web folder of a gs-onnx checkout")
    if not (d / ORT_FILE).is_file():
        raise GSError(f"{d} lacks onnxruntime-web: run `npm ci --ignore-scripts` in {d} first")
    return d.resolve()


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files from two roots; COOP/COEP headers on every answer (crossOriginIsolated: WASM threads)."""

    roots: dict[str, Path] = {}

    def translate_path(self, path: str) -> str:
        root = self.roots[""]
        nowhere = str(root / ".no-such-file-outside-the-root")
        path = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
        if "\x00" in path:   # a NUL byte names no file (os.path would raise): 404
            return nowhere
        parts = [p for p in posixpath.normpath(path).split("/") if p and p not in (".", "..")]
        if parts and parts[0] == "folder":
            root, parts = self.roots["folder"], parts[1:]
        target = root.joinpath(*parts)
        try:
            real = Path(os.path.realpath(target))
        except (OSError, ValueError):
            return nowhere
        if real != root and root not in real.parents:
            return nowhere   # a link out of the root: answered 404
        return str(target)

    def send_head(self):
        """Only regular files are served: a FIFO or a device in the folder would block the request forever (open
        waits for a writer), so anything but a regular file (or a folder's index.html) is a 404."""
        import stat

        path = self.translate_path(self.path)
        try:
            mode = os.stat(path).st_mode
        except (OSError, ValueError):
            mode = None
        if mode is not None and stat.S_ISDIR(mode):
            index = os.path.join(path, "index.html")
            try:
                mode = os.stat(index).st_mode if stat.S_ISREG(os.stat(index).st_mode) else None
            except OSError:
                mode = None
            if mode is None:
                self.send_error(404, "no directory listings")
                return None
            return super().send_head()
        if mode is None or not stat.S_ISREG(mode):
            self.send_error(404, "File not found")
            return None
        return super().send_head()

    def list_directory(self, path):
        self.send_error(404, "no directory listings")

    def guess_type(self, path):
        return TYPES.get(Path(path).suffix.lower(), "application/octet-stream")

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, fmt, *args):
        if self.server.verbose:
            super().log_message(fmt, *args)


def make_server(folder: Path, page: Path, host: str = "127.0.0.1", port: int = 8000, verbose: bool = False):
    """A ThreadingHTTPServer serving ``page`` at / and ``folder`` at /folder/ (not started)."""
    handler = type("Handler", (_Handler,), {"roots": {"": Path(page).resolve(), "folder": Path(folder).resolve()}})
    try:
        server = http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        raise GSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    server.verbose = verbose
    server.daemon_threads = True
    return server


@click.command(cls=OneLineCommand, epilog=examples(
    "gs-export recovery --measurements meas.npy --reference face.jpg -o meas-graph/",
    "python -m gs_onnx serve-demo                      # a dcgan folder of a bundled face; open http://127.0.0.1:8000/",
    "python -m gs_onnx serve-demo meas-graph/          # your folder",
    "python -m gs_onnx serve-demo meas-graph/ --port 0 # any free port (printed)"))
@click.argument("folder", type=click.Path(file_okay=False), required=False)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: any free port.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (the page's sha256 checks need localhost or https).")
@click.option("--page", type=click.Path(file_okay=False), default=None,
              help="The page folder  [default: examples/web of this checkout]")
@click.option("-v", "--verbose", is_flag=True, help="Log every request.")
@version_option
@one_line_errors
def main(folder, port, host, page, verbose):
    """Serve the browser demo (examples/web: onnxruntime-web runs the recovery graph on this machine's browser)
    with the recovery FOLDER (gs-export recovery; default: a dcgan folder of a bundled face, made now) at
    /folder/, on localhost, with the headers for WASM threads. Ctrl-C stops it."""
    if folder is not None and not (Path(folder) / "recovery.json").is_file():
        raise GSError(f"{folder} is not a recovery folder (no recovery.json): gs-export recovery writes one")
    pages = page_dir(page)
    signal.signal(signal.SIGTERM, _stop)   # from the start: a SIGTERM while the default folder is made removes it too
    with tempfile.TemporaryDirectory(prefix="gs-serve-demo-") as tmp:
        folder = default_folder(Path(tmp)) if folder is None else Path(folder)
        if _TERMINATED.is_set():   # the SIGTERM's KeyboardInterrupt was swallowed while the folder was made
            raise KeyboardInterrupt
        _serve(make_server(folder, pages, host, port, verbose), folder)


#: Set by SIGTERM: the KeyboardInterrupt its handler raises can land where Python swallows exceptions (an
#: import lock's or a weak reference's callback: "Exception ignored in ..."), so the main flow also checks this.
_TERMINATED = threading.Event()


def _stop(*_):
    """SIGTERM ends serve-demo as Ctrl-C does: the temporary default folder is removed."""
    _TERMINATED.set()
    raise KeyboardInterrupt


def _serve(server, folder: Path) -> None:
    h, p = server.server_address[:2]
    click.echo(f"serving {folder}/ at http://{h}:{p}/ (page: {server.RequestHandlerClass.roots['']}); Ctrl-C stops",
               err=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    try:
        while thread.is_alive() and not _TERMINATED.is_set():
            thread.join(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
