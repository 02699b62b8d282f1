"""Leave-one-spectrum-out library search: every query answered, beside matchms."""

from __future__ import annotations

from msid.search.loo import loo_benchmark


def test_loo_answers_every_query(pesticides_store):
    res = loo_benchmark(pesticides_store, fold="train")
    n = res["queries"]
    # every query with another spectrum inside the precursor window gets an answer
    assert n > 20 and res["msid"]["answered"] == res["answerable"] > 10
    # msid's window is max(0.01 Da, 10 ppm): never narrower than the matchms baseline's 10 ppm
    assert res["msid"]["answered"] >= res["matchms_cosine_greedy"]["answered"]
    for method in ("msid", "matchms_cosine_greedy"):
        assert 0.0 <= res[method]["hit@1"] <= 1.0
