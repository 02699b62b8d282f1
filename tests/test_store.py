from pathlib import Path

import h5py
import numpy as np
import pytest

from msid.store import (
    SpectrumRecord,
    SpectrumStore,
    SpectrumStoreWriter,
    StoreFormatError,
    subset_store,
)


def test_roundtrip_and_lazy_reads(pesticides_store, tmp_path):
    with SpectrumStore(pesticides_store) as st:
        assert len(st) == 64
        md = st.metadata
        assert md["smiles"].ne("").all() and md["inchikey"].str.len().eq(27).all()
        assert set(md["fold"]) <= {"train", "val", "test"}
        mz, inten = st.peaks(3)
        assert mz.dtype == np.float64 and inten.dtype == np.float32
        assert np.all(np.diff(mz) > 0) and inten.max() == pytest.approx(1.0)
        batch = st.peaks_range(2, 6)
        assert len(batch) == 4
        np.testing.assert_array_equal(batch[1][0], mz)
        many = st.peaks_many([5, 3, 0])
        np.testing.assert_array_equal(many[1][0], mz)
        assert st.n_peaks.sum() == len(st.all_peaks()[0])
        # subset keeps peaks and metadata in the requested order
        subset_store(pesticides_store, tmp_path / "sub.h5", [3, 0])
    with SpectrumStore(tmp_path / "sub.h5") as sub:
        assert list(sub.metadata["id"]) == [md["id"][3], md["id"][0]]
        np.testing.assert_array_equal(sub.peaks(0)[0], mz)


def test_store_is_read_lazily(pesticides_store):
    """Reading one spectrum touches only its slice: the flat peak datasets stay on disk."""
    with SpectrumStore(pesticides_store) as st:
        assert isinstance(st._h5["peaks/mz"], h5py.Dataset)
        assert st._metadata is None  # metadata too is read only on first use


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.h5"
    with pytest.raises(RuntimeError), SpectrumStoreWriter(target) as w:
        w.add(SpectrumRecord(np.array([100.0]), np.array([1.0]), {"id": "a"}))
        raise RuntimeError("killed")
    assert not target.exists()
    assert not list(tmp_path.iterdir())


def test_not_a_store(tmp_path, data_dir):
    with pytest.raises(StoreFormatError, match="cannot open"):
        SpectrumStore(data_dir / "massbank_ei_5.msp")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(StoreFormatError, match="not an msid spectrum store"):
        SpectrumStore(tmp_path / "other.h5")


def test_atomic_write_keeps_old_file_on_error_and_follows_umask(tmp_path):
    import os
    import stat

    from msid.atomic import atomic_path, write_text

    target = tmp_path / "out.tsv"
    write_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.tsv"]  # no temporary left behind
    old = os.umask(0o027)
    try:
        write_text(target, "new\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # not the temp file's 0600


def test_atomic_write_goes_where_the_output_points(tmp_path, capsysbinary):
    """A link is written through (the link stays), a FIFO gets the bytes streamed into it,
    ``-`` is standard output; none leaves a temporary behind."""
    import os
    import threading

    from msid.atomic import write_text

    target = tmp_path / "target.tsv"
    target.write_text("old\n")
    link = tmp_path / "link.tsv"
    link.symlink_to(target.name)
    write_text(link, "new\n")
    assert link.is_symlink() and target.read_text() == "new\n"
    dangling = tmp_path / "dangling.tsv"
    dangling.symlink_to("sub/made.tsv")  # a link to a file not there yet
    write_text(dangling, "made\n")
    assert dangling.is_symlink() and (tmp_path / "sub" / "made.tsv").read_text() == "made\n"

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    write_text(fifo, "through the pipe\n")
    reader.join(timeout=10)
    assert got == [b"through the pipe\n"] and fifo.is_fifo()

    write_text("-", "to stdout\n")
    assert capsysbinary.readouterr().out == b"to stdout\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling.tsv", "fifo", "link.tsv",
                                                           "sub", "target.tsv"]


def test_a_small_store_is_small(tmp_path):
    """Three spectra make a store of kilobytes, not megabytes of empty metadata chunks."""
    from msid.convert import convert_file

    src = Path(__file__).parent / "data" / "bad" / "pesticides_first3.mgf"
    out = tmp_path / "three.h5"
    assert convert_file(src, out).stored == 3
    assert out.stat().st_size < 400_000


def test_content_digest_names_the_data_not_the_build(pesticides_store, tmp_path):
    """The same spectra written in other chunks, at another time, digest the same (the file's
    bytes differ: the build time is in them); a store written before the digest was recorded
    gets the same value computed; one changed intensity or quarantine row changes it."""
    from msid.digest import sha256_file
    from msid.store import QuarantineRecord, content_digest

    with SpectrumStore(pesticides_store) as st:
        records = list(st.iter_records())
        recorded = st.content_sha256

    def write(path, chunk_size, quarantine=(), created="2000-01-01T00:00:00+00:00"):
        with SpectrumStoreWriter(path, chunk_size=chunk_size) as w:
            for r in records:
                w.add(r)
            for q in quarantine:
                w.quarantine(q)
        with h5py.File(path, "r+") as f:
            f.attrs["created"] = created
        return content_digest(path)

    a = write(tmp_path / "a.h5", 5)
    b = write(tmp_path / "b.h5", 1000, created="2030-06-01T00:00:00+00:00")
    assert a == b == recorded and len(a) == 64
    assert sha256_file(tmp_path / "a.h5") != sha256_file(tmp_path / "b.h5")
    with h5py.File(tmp_path / "b.h5", "r+") as f:  # as a store of an earlier msid has it
        del f.attrs["content_sha256"]
    assert content_digest(tmp_path / "b.h5") == a
    records[7].intensity = records[7].intensity.copy()
    records[7].intensity[0] *= 0.5
    changed = write(tmp_path / "c.h5", 5)
    assert changed != a
    assert write(tmp_path / "d.h5", 5, [QuarantineRecord("x.mgf", "r1", "no peaks")]) != changed
    # any other file: its bytes
    mgf = Path(__file__).parent / "data" / "bad" / "pesticides_first3.mgf"
    assert content_digest(mgf) == sha256_file(mgf)


def test_one_metadata_column_is_the_tables(tmp_path):
    """``SpectrumStore.column`` reads one column alone; it equals the metadata table's."""
    from msid.convert import convert_file

    convert_file(Path(__file__).parent / "data" / "bad" / "pesticides_first3.mgf",
                 tmp_path / "s.h5", progress=False)
    with SpectrumStore(tmp_path / "s.h5") as st:
        alone = {c: st.column(c) for c in ("smiles", "inchikey", "precursor_mz")}
        for c, values in alone.items():
            assert list(values) == list(st.metadata[c]), c
            assert list(st.column(c)) == list(values)  # from the loaded table
