"""A local HTTP mirror on 127.0.0.1 for download tests (no internet is ever touched).

``local_mirror(folder)`` serves ``folder`` with Python's http.server, which ignores Range
headers (a server that cannot resume); ``ranges=True`` honours ``Range: bytes=N-`` with a
206 reply, like the real dataset mirrors. ``requests`` records every request's path and
Range header so tests can assert what the client asked for.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import threading
from pathlib import Path


class _Handler(http.server.SimpleHTTPRequestHandler):
    ranges = False
    requests: list[tuple[str, str | None]]

    def log_message(self, *args, **kwargs) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self.requests.append((self.path, self.headers.get("Range")))
        spec = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not (self.ranges and spec and spec.startswith("bytes=") and path.is_file()):
            return super().do_GET()
        data = path.read_bytes()
        start = int(spec.removeprefix("bytes=").split("-")[0])
        if start >= len(data):
            self.send_error(416)
            return
        self.send_response(206)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        self.wfile.write(data[start:])


@contextlib.contextmanager
def local_mirror(folder: Path, ranges: bool = False, requests: list | None = None):
    log: list = [] if requests is None else requests
    handler = type("Handler", (_Handler,), {"ranges": ranges, "requests": log})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def md5(data: Path | bytes) -> str:
    """The MD5 of a file or of bytes, as the published checksums are written."""
    return hashlib.md5(data if isinstance(data, bytes) else data.read_bytes()).hexdigest()
