"""`msid serve`: the EI search web app, over HTTP and end to end in headless Chromium.

The library is the shipped MassBank EI file (real spectra). Queries are library spectra written
back out as MSP without their annotation, so the expected top hit is known.
"""

from __future__ import annotations

import html
import shutil
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from msid.gui.app import ServeConfig, make_server

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    from msid.ei.methods import default_library

    src = default_library()
    dst = tmp_path_factory.mktemp("eilib") / src.name  # the index is cached beside it
    shutil.copyfile(src, dst)
    return dst


@pytest.fixture(scope="module")
def query(library) -> dict:
    """A library spectrum of a structure with a name, as MSP text without its annotation."""
    from msid.ei.methods import get_library

    lib = get_library(library)
    md = lib.metadata
    row = int(np.flatnonzero((md["name"].str.len() > 3) & (md["inchikey"].str.len() > 14))[7])
    mz, inten = lib.peaks[row]
    lines = ["NAME: unknown 1", f"Num Peaks: {len(mz)}"]
    lines += [f"{m} {999 * i / inten.max():.2f}" for m, i in zip(mz, inten, strict=True)]
    return {"msp": "\n".join(lines) + "\n\n", "name": str(md.at[row, "name"]),
            "inchikey": str(md.at[row, "inchikey"]), "peaks": (mz, inten)}


@pytest.fixture(scope="module")
def server(library):
    srv = make_server(ServeConfig(port=0, libraries={"MassBank EI": str(library)},
                                  max_upload_bytes=200_000))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    host, port = srv.server_address[:2]
    yield f"http://{host}:{port}"
    srv.shutdown()
    srv.server_close()


def _post(url: str, fields: dict[str, str], files: dict[str, tuple[str, bytes]] | None = None,
          timeout: float = 600) -> tuple[int, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for k, v in fields.items():
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n"
                     f"{v}\r\n".encode())
    for k, (fname, data) in (files or {}).items():
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"; "
                     f"filename=\"{fname}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                     .encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(url + "/search", data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_binds_localhost_by_default():
    assert ServeConfig().host == "127.0.0.1"


def test_pasted_peaks_find_the_compound(server, query):
    mz, inten = query["peaks"]
    text = "\n".join(f"{m}\t{i}" for m, i in zip(mz, inten, strict=True))
    status, page = _post(server, {"peaks": text, "method": "ei-weighted-cosine", "top_k": "3"})
    assert status == 200, page
    first = page.split("<tr class='hit'>")[1]
    assert query["inchikey"] in first
    assert "<svg" in first and "data:image/png;base64," in first  # structure + mirror plot


def test_uploaded_msp_finds_the_compound(server, query):
    status, page = _post(server, {"method": "ei-entropy"},
                         {"file": ("unknown.msp", query["msp"].encode())})
    assert status == 200, page
    assert query["inchikey"] in page.split("<tr class='hit'>")[1]


def test_upload_over_the_limit_is_refused_with_a_clear_message(server):
    status, page = _post(server, {"method": "ei-cosine"},
                         {"file": ("big.msp", b"NAME: x\nNum Peaks: 1\n50 1\n" * 200_000)})
    assert status == 413
    assert "Upload too large" in page and "limit is 0.2 MB" in page


def test_the_limit_is_the_files_not_the_forms(server, query):
    """A file just under the limit passes (the form around it does not count); one just over
    it is refused with sizes that tell the two apart."""
    from msid.gui.app import too_large

    pad = query["msp"].encode()
    under = pad + b"\n" * (200_000 - len(pad))  # 200,000 bytes: at the limit
    status, page = _post(server, {"method": "ei-cosine", "top_k": "2"},
                         {"file": ("q.msp", under)})
    assert status == 200, page
    status, page = _post(server, {"method": "ei-cosine"}, {"file": ("q.msp", under + b"\n")})
    assert status == 413 and "200,001 bytes; the limit is 200,000 bytes" in page
    assert too_large(6_100_000, 5_000_000).startswith("Upload too large: 6.1 MB; the limit is 5.0")


def test_a_gzipped_upload_is_read_and_a_gzip_bomb_refused(server, query):
    """Libraries and exports often come gzipped: an .msp.gz upload is unpacked in memory; one
    that would unpack past the limit, or is cut, gets a message."""
    import gzip

    from msid.gui.uploads import MAX_UNPACKED

    status, page = _post(server, {"method": "ei-entropy"},
                         {"file": ("unknown.msp.gz", gzip.compress(query["msp"].encode()))})
    assert status == 200, page[-500:]
    assert query["inchikey"] in page.split("<tr class='hit'>")[1]
    bomb = gzip.compress(b"\n" * (MAX_UNPACKED + 10))  # ~50 kB that unpacks to 50 MB
    assert len(bomb) < 200_000
    status, page = _post(server, {"method": "ei-cosine"}, {"file": ("x.msp.gz", bomb)})
    assert status == 400 and "unpacks to more than 50 MB" in page
    cut = gzip.compress(query["msp"].encode())[:-12]
    status, page = _post(server, {"method": "ei-cosine"}, {"file": ("x.msp.gz", cut)})
    assert status == 400 and "cut short" in page
    status, page = _post(server, {"method": "ei-cosine"}, {"file": ("x.mgf.gz", b"not gzip")})
    assert status == 400 and "not a readable gzip file" in page


def test_bad_uploads_get_a_message_not_a_crash(server):
    status, page = _post(server, {"method": "ei-cosine"}, {"file": ("x.exe", b"MZ\x90\x00")})
    assert status == 400 and "unsupported file type" in page
    status, page = _post(server, {"method": "ei-cosine"}, {"file": ("x.mgf", b"garbage")})
    assert status == 400 and "no spectrum" in page
    status, page = _post(server, {"method": "ei-cosine"}, {"file": ("x.msp", b"hello\n")})
    assert status == 400 and "no &#x27;Name:&#x27; line" in page and "Error" not in page
    status, page = _post(server, {"peaks": "hello world", "method": "ei-cosine"})
    assert status == 400 and "peaks" in page
    with urllib.request.urlopen(server + "/", timeout=30) as r:  # still serving
        assert r.status == 200


def test_pasted_signs_and_nans_are_named_not_dropped(server):
    for text, why in (("73 999\n147 -450\n", "-450 is not a finite non-negative"),
                      ("73 999\n147 nan\n", "nan is not a finite"),
                      ("73 999\n147 450 abc\n", "'abc' is not a number"),
                      ("73 999\n147\n", "holds 1 value"),
                      ("73 999\n1e308 5\n", "an m/z above 100,000")):
        status, page = _post(server, {"peaks": text, "method": "ei-cosine"})
        assert status == 400 and why in html.unescape(page), page[-500:]


def test_one_bad_record_in_an_upload_costs_only_itself(server, query):
    """An MSP upload whose first record's Num Peaks is wrong: the next record is still searched
    and the page names the one skipped; an empty file is named as such."""
    bad = "NAME: broken\nNum Peaks: 5\n41 10\n43 20\n57 30\n\n"
    status, page = _post(server, {"method": "ei-cosine", "top_k": "1"},
                         {"file": ("q.msp", (bad + query["msp"]).encode())})
    assert status == 200, page[-500:]
    page = html.unescape(page)
    assert "record broken skipped" in page and "'Num Peaks: 5'" in page
    assert query["name"] in page
    status, page = _post(server, {"method": "ei-cosine"}, {"file": ("empty.msp", b"")})
    assert status == 400 and "'empty.msp' is empty" in html.unescape(page)
    for k in ("many", "-3", "21"):  # said, not clamped
        status, page = _post(server, {"method": "ei-cosine", "top_k": k},
                             {"file": ("q.msp", query["msp"].encode())})
        assert status == 400 and "whole number from 1 to 20" in page, k
    # a file and pasted peaks: the file is searched, and the page says the peaks were not
    status, page = _post(server, {"method": "ei-cosine", "top_k": "1", "peaks": "73 999\n"},
                         {"file": ("q.msp", query["msp"].encode())})
    assert status == 200 and "pasted peaks were not searched" in page


def test_a_failing_search_gets_a_page_and_the_server_stays_up(server, query, monkeypatch):
    from msid.gui.app import SearchApp

    def broken(*args, **kwargs):
        raise OSError("library file vanished")

    monkeypatch.setattr(SearchApp, "search", broken)
    status, page = _post(server, {"method": "ei-cosine"},
                         {"file": ("q.msp", query["msp"].encode())})
    assert status == 500 and "library file vanished" in page
    monkeypatch.undo()
    with urllib.request.urlopen(server + "/healthz", timeout=30) as r:
        assert r.status == 200


def test_uploads_beyond_the_spectrum_limit_are_said():
    from msid.gui.uploads import MAX_SPECTRA, parse_upload

    text = "".join(f"BEGIN IONS\nTITLE=s{i}\n41 {i + 1}\n43 5\nEND IONS\n"
                   for i in range(MAX_SPECTRA + 10))
    spectra, notes = parse_upload("many.mgf", text.encode())
    assert len(spectra) == MAX_SPECTRA and spectra[0].title == "s0"
    assert notes == [f"only the first {MAX_SPECTRA} of {MAX_SPECTRA + 10} spectra were searched"]


def test_a_damaged_mzml_upload_keeps_every_intact_spectrum():
    """The real pestmix run with one spectrum's base64 broken and the file cut inside a later
    spectrum: the broken spectrum and the cut are named, every spectrum before the cut is read
    exactly as from the intact file."""
    import gzip
    import re

    from msid.gui.uploads import parse_upload

    raw = gzip.decompress((ROOT / "resources/runs/pestmix_dda.mzML.gz").read_bytes())
    spectra = list(re.finditer(rb"<spectrum .*?</spectrum>", raw, re.S))
    bad = spectra[3]
    binary = re.search(rb"<binary>(.*?)</binary>", bad.group(0), re.S)
    a, b = bad.start() + binary.start(1), bad.start() + binary.end(1)
    cut = spectra[12].start() + 200
    damaged = raw[:a] + b"AAAAA" + raw[b:cut]
    intact, _ = parse_upload("run.mzML", raw)
    got, notes = parse_upload("run.mzML", damaged)
    bad_id = re.search(rb'id="([^"]+)"', bad.group(0)).group(1).decode()
    assert [s.title for s in got] == [s.title for s in intact[:12] if s.title != bad_id]
    for s, want in zip(got, [s for s in intact if s.title != bad_id][:len(got)], strict=True):
        assert np.array_equal(s.mz, want.mz) and np.array_equal(s.intensity, want.intensity)
    assert any(bad_id in n and "cannot be decoded" in n for n in notes), notes
    assert any("damaged after 12 spectra" in n for n in notes), notes
    from msid.gui.uploads import UploadError

    with pytest.raises(UploadError, match=r"'x\.mzML': not a readable mzML file"):
        parse_upload("x.mzML", b"a text file saved as mzML")


def test_serve_checks_its_libraries_and_port_before_starting(capsys, tmp_path):
    from msid.cli import main

    assert main(["serve", "--library", str(tmp_path / "missing.msp")]) == 2
    assert "missing.msp: does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["serve", "--port", "99999"])
    assert e.value.code == 2 and "0-65535" in capsys.readouterr().err
    assert main(["serve", "--library", str(tmp_path)]) == 2  # a folder is no library
    assert "is a directory, not a file" in capsys.readouterr().err
    (tmp_path / "not_ei.msp").write_text("garbage\n")  # not a spectrum file: stops at start
    assert main(["serve", "--library", str(tmp_path / "not_ei.msp")]) == 2
    assert "not_ei.msp" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["serve", "--max-upload-mb", "0"])  # would refuse every request
    assert e.value.code == 2 and "--max-upload-mb" in capsys.readouterr().err


def _driver(tmp_path: Path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Debian packages chromium + chromium-driver not installed (`make browser`)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chrome'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(900)
    return driver


def test_browser_upload_shows_the_expected_top_hit(server, query, tmp_path):
    """Headless Chromium: open the page, upload an MSP, search with the default method
    (ei-embedding-wcos when the model is shipped), see the compound as the top hit."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    upload = tmp_path / "unknown.msp"
    upload.write_text(query["msp"])
    driver = _driver(tmp_path)
    try:
        driver.get(server + "/")
        assert "EI library search" in driver.page_source
        driver.find_element(By.ID, "file").send_keys(str(upload))
        t0 = time.time()
        driver.find_element(By.ID, "search").click()
        WebDriverWait(driver, 900).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "table#hits-0 tr.hit, #error"))
        rows = driver.find_elements(By.CSS_SELECTOR, "table#hits-0 tr.hit")
        assert rows, driver.page_source[:2000]
        top = rows[0].find_element(By.CLASS_NAME, "hit-name").text
        assert query["inchikey"] in top, (top, query)
        assert rows[0].find_elements(By.TAG_NAME, "svg")  # structure drawing
        print(f"browser search took {time.time() - t0:.1f} s")
    finally:
        driver.quit()


def test_mirror_plots_drawn_at_once_stay_apart(query):
    """msid serve draws mirror plots for several requests at once: each figure is its own
    (pyplot, whose state is global, holds none of them), and each comes out whole."""
    import matplotlib.pyplot as plt

    from msid.report.plots import mirror_plot

    mz, inten = query["peaks"]
    alone = mirror_plot((mz, inten), (mz, inten), "t")
    out: list[bytes] = []
    threads = [threading.Thread(target=lambda: out.append(
        mirror_plot((mz, inten), (mz, inten), "t"))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 6 and all(png == alone for png in out)
    assert plt.get_fignums() == []
