"""``msid serve``: a small local web app for EI library search (stdlib ``http.server``).

A lab member pastes peaks or uploads an MSP/MGF/mzML file, picks a library and a method, and
gets the top hits of each spectrum with scores, structure drawings (RDKit SVG) and mirror plots.

Safety: binds 127.0.0.1 unless told otherwise; an uploaded file over ``max_upload_bytes`` is
refused (HTTP 413) with a message saying the limit (a request body too large to hold such a
file is refused unparsed, read and dropped up to :data:`DRAIN_LIMIT` so that the browser sees
the answer); libraries are read when the server starts, so a broken one stops it then; uploads
are parsed in memory (:mod:`msid.gui.uploads`), never written to disk, never executed, and
forgotten when the response is sent. Every value shown is HTML-escaped.
"""

from __future__ import annotations

import html
import os
import sys
import threading
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from msid.chem.drawing import structure_svg
from msid.gui.uploads import (
    MAX_SPECTRA,
    UploadedSpectrum,
    UploadError,
    parse_pasted,
    parse_upload,
)
from msid.method_kinds import METHODS_BY_KIND

EI_METHODS = METHODS_BY_KIND["ei"]
DEFAULT_MAX_UPLOAD = 5_000_000  # bytes: 5 MB, as `msid serve --max-upload-mb 5` says
#: what a multipart form adds to its file (boundaries, headers, the other fields)
FORM_OVERHEAD = 64 * 1024


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    libraries: dict[str, str] = field(default_factory=dict)  # label -> MSP/MGF/store path
    model_path: str | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
    top_k: int = 5


class SearchApp:
    """Libraries and methods, loaded on first use and kept for later requests."""

    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self._methods: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    @property
    def default_method(self) -> str:
        from msid.ei.methods import default_model
        from msid.resources import DataDirError

        try:
            has_model = Path(self.cfg.model_path or default_model()).exists()
        except DataDirError:  # an installed wheel without a data folder: no shipped model
            has_model = False
        return "ei-embedding-wcos" if has_model else "ei-weighted-cosine"

    def load_libraries(self, log=print) -> None:
        """Read every library now (cached for the searches): a library that cannot be read
        raises here, at start, not at a user's first search; one that looks like MS/MS
        spectra is warned of."""
        from msid.ei.methods import get_library
        from msid.ei.spectrum_kind import ms2_like_warning

        for label, path in self.cfg.libraries.items():
            lib = get_library(path)
            log(f"msid serve: library {label}: {len(lib.metadata):,} spectra")
            if "precursor_mz" in lib.metadata and (warning := ms2_like_warning(lib.metadata)):
                log(f"msid serve: warning: library {label}: {warning}")

    def method(self, library: str, name: str):
        from msid.methods import MethodResources, make_method

        if library not in self.cfg.libraries:
            raise UploadError(f"unknown library '{library}'")
        if name not in EI_METHODS:
            raise UploadError(f"unknown method '{name}'")
        key = (library, name)
        if key not in self._methods:
            res = MethodResources(model_path=self.cfg.model_path,
                                  options={"ei_library": self.cfg.libraries[library]})
            self._methods[key] = make_method(name, res)
        return self._methods[key]

    def search(self, spectra: list[UploadedSpectrum], library: str, name: str, top_k: int
               ) -> list[tuple[UploadedSpectrum, list]]:
        from msid.methods import Query

        with self._lock:  # one search at a time: models and torch threads are shared
            m = self.method(library, name)
            queries = [Query(s.title, float("nan"), "", "positive", 1, s.mz, s.intensity)
                       for s in spectra]
            many = getattr(m, "rank_many", None)
            ranked = many(queries, None) if many else [m.rank(q, None) for q in queries]
        return [(s, r[:top_k]) for s, r in zip(spectra, ranked, strict=True)]

    def library_peaks(self, library: str, library_id: str) -> tuple[np.ndarray, np.ndarray]:
        from msid.ei.methods import get_library

        lib = get_library(self.cfg.libraries[library])
        rows = np.flatnonzero(lib.metadata["id"].astype(str).to_numpy() == library_id)
        if not len(rows):
            return np.zeros(0), np.zeros(0)
        return lib.peaks[int(rows[0])]


# -- HTML -----------------------------------------------------------------------------------
_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}
textarea{width:100%;font-family:monospace}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}.err{color:#b00;font-weight:bold}
.hit img{max-width:480px}.small{color:#555;font-size:90%}"""


DRAIN_LIMIT = 256 * 1024 * 1024  # an oversized upload is read (and dropped) up to this


def too_large(size: int, limit: int) -> str:
    """The refusal of an upload of ``size`` bytes: exact when MB would round the two alike."""
    def mb(n: int) -> str:
        return f"{n / 1e6:.1f} MB" if round(size / 1e5) != round(limit / 1e5) else f"{n:,} bytes"

    return (f"Upload too large: {mb(size)}; the limit is {mb(limit)}. Upload a smaller file "
            "(a few spectra).")


def _page(body: str, title: str = "msid EI search") -> bytes:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body><h1>msid: EI library search</h1>"
            f"{body}</body></html>").encode()


def form_html(app: SearchApp) -> str:
    libs = "".join(f"<option value='{html.escape(k)}'>{html.escape(k)}</option>"
                   for k in app.cfg.libraries)
    default = app.default_method
    methods = "".join(f"<option value='{m}'{' selected' if m == default else ''}>{m}</option>"
                      for m in EI_METHODS)
    limit = app.cfg.max_upload_bytes / 1e6
    return f"""<form method='post' action='/search' enctype='multipart/form-data'>
<p><label>Peaks (one 'm/z intensity' pair per line):<br>
<textarea name='peaks' id='peaks' rows='8' placeholder='73 999&#10;147 450'></textarea></label></p>
<p><label>or upload a spectrum file (.msp, .mgf, .mzML, or gzipped; at most {limit:.1f} MB, first
{MAX_SPECTRA} spectra): <input type='file' name='file' id='file'
accept='.msp,.mgf,.mzML,.mzml,.txt,.gz'></label></p>
<p><label>Library: <select name='library' id='library'>{libs}</select></label>
<label>Method: <select name='method' id='method'>{methods}</select></label>
<label>Hits: <input type='number' name='top_k' id='top_k' value='{app.cfg.top_k}' min='1'
max='20'></label>
<button type='submit' id='search'>Search</button></p></form>
<script>document.querySelector('form').addEventListener('submit', function (e) {{
  var f = document.getElementById('file').files[0];
  if (f && f.size > {app.cfg.max_upload_bytes}) {{
    e.preventDefault();
    alert('Upload too large: ' + (f.size / 1e6).toFixed(1) + ' MB; the limit is {limit:.1f} MB.');
  }}
}});</script>
<p class='small'>Uploads are read in memory and discarded; nothing is stored.</p>"""


def results_html(app: SearchApp, library: str, method: str,
                 results: list[tuple[UploadedSpectrum, list]], notes: list[str] = ()) -> str:
    from msid.report.plots import data_uri, mirror_plot

    parts = [f"<p><a href='/'>New search</a> &middot; library <b>{html.escape(library)}</b>"
             f" &middot; method <b>{html.escape(method)}</b></p>"]
    if notes:
        parts.append("<ul id='notes' class='small'>" + "".join(
            f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    for qi, (spec, hits) in enumerate(results):
        parts.append(f"<h2>{html.escape(spec.title)}</h2>")
        if not hits:
            parts.append("<p>No library spectrum matched.</p>")
            continue
        rows = [f"<table id='hits-{qi}'><tr><th>#</th><th>score</th><th>name</th>"
                "<th>structure</th><th>mirror plot (query up, library down)</th></tr>"]
        for rank, h in enumerate(hits, start=1):
            lib_peaks = app.library_peaks(library, h.library_id)
            png = mirror_plot((spec.mz, spec.intensity), lib_peaks,
                              f"{h.name or h.library_id} (score {h.score:.3f})")
            rows.append(
                f"<tr class='hit'><td>{rank}</td><td>{h.score:.4f}</td>"
                f"<td class='hit-name'>{html.escape(h.name or '')}<br><span class='small'>"
                f"{html.escape(h.library_id)}<br>{html.escape(h.inchikey)}<br>"
                f"{html.escape(h.smiles)}</span></td><td>{structure_svg(h.smiles)}</td>"
                f"<td><img alt='mirror plot' src='{data_uri(png)}'></td></tr>")
        rows.append("</table>")
        parts.append("".join(rows))
    return "".join(parts)


def make_handler(app: SearchApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 30  # seconds a client may stall mid-request before its thread is freed
        server_version = "msid-serve"

        def log_message(self, fmt: str, *args) -> None:  # quiet: no request bodies in logs
            pass

        def _send(self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8"
                  ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._send(status, _page(f"<p class='err' id='error'>{html.escape(message)}</p>"
                                     f"<p><a href='/'>Back</a></p>"))

        def do_GET(self) -> None:
            if self.path in ("/", "/index.html"):
                self._send(200, _page(form_html(app)))
            elif self.path == "/healthz":
                self._send(200, b"ok", "text/plain")
            else:
                self._error(404, "not found")

        def do_POST(self) -> None:
            if self.path != "/search":
                self._error(404, "not found")
                return
            try:
                length = int(self.headers.get("Content-Length", "-1"))
            except ValueError:
                length = -1
            if length < 0:
                self._error(411, "the request has no Content-Length")
                return
            limit = app.cfg.max_upload_bytes
            if length > limit + FORM_OVERHEAD:  # no file within the limit is this large
                self.close_connection = True
                # read what was sent before answering: a browser still sending its upload
                # when the server closes shows a reset connection, not this page (past
                # DRAIN_LIMIT it is read no further: the refusal then may not arrive)
                left = min(length, max(DRAIN_LIMIT, 4 * limit))
                while left > 0 and (chunk := self.rfile.read(min(left, 1 << 20))):
                    left -= len(chunk)
                self._error(413, too_large(length, limit))
                return
            body = self.rfile.read(length)
            try:
                fields, files = _parse_form(self.headers.get("Content-Type", ""), body)
                del body
                size = len(files["file"][1]) if "file" in files else 0
                if size > limit:
                    self._error(413, too_large(size, limit))
                    return
                spectra, notes = (parse_upload(*files["file"]) if "file" in files else
                                  parse_pasted(fields.get("peaks", "")))
                if "file" in files and fields.get("peaks", "").strip():
                    notes = ["the pasted peaks were not searched: a file was uploaded, and "
                             "the file's spectra were searched instead", *notes]
                library = fields.get("library") or next(iter(app.cfg.libraries))
                method = fields.get("method") or app.default_method
                try:
                    top_k = int(fields.get("top_k") or app.cfg.top_k)
                except ValueError:
                    top_k = 0
                if not 1 <= top_k <= 20:
                    raise UploadError("Hits (top_k) must be a whole number from 1 to 20")
                results = app.search(spectra, library, method, top_k)
                self._send(200, _page(results_html(app, library, method, results, notes)))
            except UploadError as e:
                self._error(400, str(e))
            except ValueError as e:
                self._error(400, f"bad request: {e}")
            except Exception as e:  # the server stays up; the user gets a page, not a reset
                print(f"msid serve: search failed: {type(e).__name__}: {e}", file=sys.stderr)
                self._error(500, f"the search failed: {e}")

    return Handler


def _parse_form(content_type: str, body: bytes) -> tuple[dict[str, str], dict]:
    """Fields and files of a multipart/form-data body, parsed in memory."""
    if not content_type.startswith("multipart/form-data"):
        raise UploadError("the form must be sent as multipart/form-data")
    msg = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if filename is not None:
            if filename:  # a browser sends filename="" when no file was chosen
                files[name] = (os.path.basename(filename), payload)
        else:
            fields[name] = payload.decode("utf-8", errors="replace")
    return fields, files


def with_default_library(cfg: ServeConfig) -> ServeConfig:
    """``cfg``, offering the shipped MassBank EI library when it names none."""
    if not cfg.libraries:
        from msid.ei.methods import default_library

        cfg.libraries = {"MassBank EI (shipped)": str(default_library())}
    return cfg


def make_server(cfg: ServeConfig) -> ThreadingHTTPServer:
    app = SearchApp(with_default_library(cfg))
    server = ThreadingHTTPServer((cfg.host, cfg.port), make_handler(app))
    server.daemon_threads = True
    return server


def serve(cfg: ServeConfig) -> None:
    server = make_server(cfg)
    host, port = server.server_address[:2]
    print(f"msid serve: http://{host}:{port}/  (libraries: {', '.join(cfg.libraries)}; "
          f"Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
