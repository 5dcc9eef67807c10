"""A rebuild: stored embeddings normalised in blocks and galleries filled at once, exactly as one entry at a time."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from streams.agents import gallery_keeper
from streams.codecs import AvroCodec
from streams.gallery import DimensionMismatch, Galleries, Gallery
from streams.vectors import unit_vector


def test_blocks_give_what_one_at_a_time_gives_and_its_refusal_where_it_refuses():
    rng = np.random.default_rng(2)
    good = [list(map(float, rng.standard_normal(8))) for _ in range(9)]
    embeddings = [*good[:5], [0.0] * 8, good[5], [float("nan")] * 8, [1.0, 2.0], *good[6:]]
    units = [u for first in range(0, len(embeddings), 4)
             for u in gallery_keeper.unit_embeddings(embeddings[first : first + 4], "a stored embedding")]
    assert len(units) == len(embeddings)
    assert not any(isinstance(u, ValueError) for u in gallery_keeper.unit_embeddings(good, "x"))
    assert {i: str(u) for i, u in enumerate(units) if isinstance(u, ValueError)} == {
        5: "a stored embedding is all zeros", 7: "a stored embedding holds NaN/inf"}
    for embedding, unit in zip(embeddings, units, strict=True):
        if not isinstance(unit, ValueError):
            np.testing.assert_array_equal(unit, unit_vector(embedding))


# --- the whole rebuild: stored GalleryEntry bytes to galleries ------------------
MODEL = {"detector": "d", "embedder": "e", "version": "1", "dim": 4}
OTHER = {**MODEL, "embedder": "other"}


def _entry(codec: AvroCodec, gallery: str, subject: str, embedding, at: int, **fields) -> tuple[bytes, bytes]:
    record = {"gallery_id": gallery, "subject_id": subject, "op": "UPSERT", "embedding": embedding,
              "produced_at": at, **fields}
    value = codec.encode("GalleryEntry", record)
    return gallery_keeper.table_key(gallery, subject, fields.get("template_id") or ""), value


def _keeper(folder: Path, dtype: str = "float32") -> gallery_keeper.GalleryKeeper:
    """A keeper without its faust table: what a rebuild and a save use of it."""
    keeper = gallery_keeper.GalleryKeeper.__new__(gallery_keeper.GalleryKeeper)
    keeper.ctx = SimpleNamespace(codec=AvroCodec(), settings=SimpleNamespace(rerank_threads=1))
    keeper.galleries, keeper.saved_path = Galleries(dtype), folder / gallery_keeper.SAVED_GALLERIES
    return keeper


def _rebuilt(items: list[tuple[bytes, bytes]], dtype: str = "float32") -> Galleries:
    """The galleries a rebuild of ``items`` holds with nothing saved: every value decoded."""
    keeper = _keeper(Path("/nonexistent"), dtype)
    keeper._load(items)
    return keeper.galleries


def test_a_rebuild_holds_what_live_entries_one_at_a_time_would_have_left():
    codec, rng = AvroCodec(), np.random.default_rng(5)
    rows = rng.standard_normal((6, 4)).astype(np.float32)  # what Avro floats carry
    items = [
        _entry(codec, "g", "late", list(rows[0]), at=50, model=MODEL, match_threshold=0.4),
        _entry(codec, "g", "anon", list(rows[1]), at=5),  # no model named: taken as it comes
        _entry(codec, "g", "first", list(rows[2]), at=10, model=MODEL, match_threshold=0.3, template_id="t1"),
        _entry(codec, "g", "other-model", list(rows[3]), at=20, model=OTHER),
        _entry(codec, "g", "zero", [0.0] * 4, at=30, model=MODEL),
        _entry(codec, "g", "short", [1.0, 2.0], at=40),
        _entry(codec, "h", "alone", list(rows[4]), at=1, model=OTHER),
        (b'["g", "junk"]', b"\xc3\x01not avro at all"),
    ]
    galleries = _rebuilt(items)
    g = galleries.get("g")
    assert sorted(g.ids) == ["anon", "first", "late"] and g.templates("first") == {"t1"}
    assert g.model == MODEL and g.threshold == pytest.approx(0.4)  # the newest entry that set one
    live = Galleries()
    for subject, row, fields in [("anon", 1, {}), ("first", 2, {"template": "t1", "model": MODEL, "threshold": 0.3,
                                 "produced_at": 10}), ("late", 0, {"model": MODEL, "threshold": 0.4, "produced_at": 50})]:
        live.upsert("g", subject, unit_vector(list(rows[row])), **fields)
    assert list(g.ids) == list(live.get("g").ids)
    np.testing.assert_array_equal(g.matrix, live.get("g").matrix)
    assert galleries.get("h").model == OTHER and list(galleries.get("h").ids) == ["alone"]


def test_extend_stores_exactly_what_upserts_store_in_every_dtype():
    rng = np.random.default_rng(9)
    block = rng.standard_normal((300, 16)).astype(np.float32)
    block /= np.linalg.norm(block, axis=1, keepdims=True)
    keys = [(f"s{i % 200}", f"t{i // 200}") for i in range(300)]
    for dtype in ("float32", "float16", "int8"):
        one, bulk = Gallery(16, dtype=dtype), Gallery(16, capacity=4, dtype=dtype)
        for (subject, template), row in zip(keys, block, strict=True):
            one.upsert(subject, row, template, model=MODEL, threshold=0.5 if subject == "s7" else None, produced_at=3)
        bulk.extend(keys, block, model=MODEL, thresholds={("s7", "t0"): (3, 0.5), ("s7", "t1"): (3, 0.5)})
        np.testing.assert_array_equal(bulk.rows.stored, one.rows.stored)
        np.testing.assert_array_equal(bulk.matrix, one.matrix)
        np.testing.assert_array_equal(bulk.codes, one.codes)
        assert list(bulk.ids) == list(one.ids) and bulk.templates("s3") == {"t0", "t1"} == one.templates("s3")
        assert (bulk.model, bulk.threshold, bulk.most_templates, bulk.subjects) == (MODEL, 0.5, 2, 200)
        bulk.delete("s3")
        bulk.upsert("s3", block[0], "t9")
        assert len(bulk) == 299 and bulk.templates("s3") == {"t9"}
        with pytest.raises(ValueError, match="new templates only"):
            bulk.extend([("s3", "t9")], block[:1])
        with pytest.raises(DimensionMismatch):
            bulk.extend([("n", "")], block[:1, :8])


def test_a_rebuild_builds_anew_the_neighbour_graphs_that_were_in_use(tmp_path: Path):
    codec, rng = AvroCodec(), np.random.default_rng(6)
    rows = rng.standard_normal((5, 4)).astype(np.float32)
    items = [_entry(codec, gallery, f"s{i}", list(rows[i]), at=i) for i, gallery in enumerate("ggghh")]
    keeper = _keeper(tmp_path)
    keeper._load(items)
    keeper.galleries.get("g").neighbour_graph.build(keeper.galleries.get("g").matrix, 3)
    keeper._load(items[:4])  # s4 gone from the table
    g, h = keeper.galleries.get("g"), keeper.galleries.get("h")
    assert g.neighbour_graph.wanted == 3 and not h.neighbour_graph.kept  # only where a query had wanted one
    g.neighbour_graph.start_build(g.matrix, 3).result(timeout=10)  # the same build, not a second one
    assert g.neighbour_graph.k1_max == 3 and len(h) == 1


# --- rows saved at stop, or held before a rebalance, taken up by the rebuild ----------
def _gallery_state(gallery: Gallery) -> dict:
    """What a query can tell of a gallery: its rows by template, as stored, and what its entries set."""
    order = sorted(range(len(gallery)), key=lambda row: gallery.keys[row])
    return {"keys": [gallery.keys[row] for row in order], "rows": gallery.rows.stored[order].tobytes(),
            "scales": gallery.rows.scales[order].tobytes(), "model": gallery.model, "threshold": gallery.threshold,
            "thresholds": gallery.thresholds}


class _CountingCodec(AvroCodec):
    decoded = 0

    def decode_arrays(self, data: bytes, expect: str, *, walked: bool = False):
        self.decoded += 1
        return super().decode_arrays(data, expect, walked=walked)


def _table(codec: AvroCodec, rng: np.random.Generator) -> list[tuple[bytes, bytes]]:
    rows = rng.standard_normal((40, 4)).astype(np.float32)
    items = [_entry(codec, "g" if i % 3 else "h", f"s{i % 17}", list(rows[i]), at=i, model=MODEL,
                    template_id=f"t{i // 17}", match_threshold=0.3 + i / 100 if i % 5 == 0 else None)
             for i in range(34)]
    return items + [_entry(codec, "k", "only", list(rows[39]), at=3)]


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
@pytest.mark.parametrize("source", ["saved", "held"])
def test_a_rebuild_decodes_only_the_values_no_saved_row_stands_for_and_ends_as_decoding_all(
    tmp_path: Path, dtype: str, source: str
):
    codec, rng = AvroCodec(), np.random.default_rng(3)
    items = _table(codec, rng)
    first = _keeper(tmp_path, dtype)
    first._load(items)
    first.save()
    # While the worker was away: one template deleted, one overwritten, the only row of "k" deleted, one new, junk.
    changed = dict(items)
    del changed[items[4][0]], changed[items[-1][0]]
    key, value = _entry(codec, "g", "s1", list(rng.standard_normal(4)), at=99, model=MODEL, template_id="t0",
                        match_threshold=0.9)
    changed[key] = value
    changed.update([_entry(codec, "h", "new", list(rng.standard_normal(4)), at=50, model=MODEL)])
    changed[b'["g", "junk"]'] = b"\xc3\x01not avro at all"
    restarted = first if source == "held" else _keeper(tmp_path, dtype)
    restarted.ctx.codec = _CountingCodec()
    restarted._load(list(changed.items()))
    assert restarted.ctx.codec.decoded == 3  # the overwritten template, the new one, the junk
    everything = _rebuilt(list(changed.items()), dtype)
    assert sorted(restarted.galleries) == sorted(everything) == ["g", "h"]
    for gallery_id in everything:
        assert _gallery_state(restarted.galleries.get(gallery_id)) == _gallery_state(everything.get(gallery_id))
    assert restarted.galleries.get("g").threshold == pytest.approx(0.9)


def test_a_save_that_cannot_be_taken_up_costs_decoding_never_a_wrong_row(tmp_path: Path):
    codec = AvroCodec()
    items = _table(codec, np.random.default_rng(4))
    everything = _rebuilt(items)
    saver = _keeper(tmp_path, "float16")
    saver._load(items)
    saver.save()
    path = tmp_path / gallery_keeper.SAVED_GALLERIES
    whole = path.read_bytes()
    for damage in (lambda: None, lambda: path.write_bytes(whole[: len(whole) // 2]),
                   lambda: path.write_bytes(whole[:-40] + bytes(40)), lambda: path.write_bytes(b"junk")):
        path.write_bytes(whole)
        damage()  # first: saved as float16, taken up by a float32 worker
        keeper = _keeper(tmp_path)
        keeper.ctx.codec = _CountingCodec()
        keeper._load(items)
        assert keeper.ctx.codec.decoded == len(items)
        for gallery_id in everything:
            assert _gallery_state(keeper.galleries.get(gallery_id)) == _gallery_state(everything.get(gallery_id))


def test_a_worker_that_holds_no_gallery_keeps_the_last_save(tmp_path: Path):
    keeper = _keeper(tmp_path)
    keeper._load(_table(AvroCodec(), np.random.default_rng(5)))
    keeper.save()
    saved = (tmp_path / gallery_keeper.SAVED_GALLERIES).read_bytes()
    _keeper(tmp_path).save()
    assert (tmp_path / gallery_keeper.SAVED_GALLERIES).read_bytes() == saved
