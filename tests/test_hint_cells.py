"""A pixel-aligned condition (a concatenated image, a ControlNet hint) judged against its own cell of the training
data (--data-images; verdict.data.hint_against_cell, escalate.data.hints_judged_by_cells): the rule's cases both
ways, and the 8x8 digits decoder (a concat model trained without dropout) scanned against its training digits, with
the guidance verdict judged again when the cells move the collapse verdict."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from collapsecheck import make_config, scan
from collapsecheck.escalate.data import CELL_BAND
from collapsecheck.report.jsonfile import to_json
from collapsecheck.result import schema_errors
from collapsecheck.thresholds import Thresholds
from collapsecheck.verdict.data import hint_against_cell, hints_against_cells

ROOT = Path(__file__).resolve().parent.parent
DECODER = ROOT / "examples" / "digits-decoder"
FAST = dict(mode="fast", device="cpu", lpips=False, recovery=False, cond=str(DECODER / "cond.safetensors"))


def test_a_hint_reads_collapsed_under_the_bound_and_a_collapsed_one_at_risk_at_or_over_it():
    th = Thresholds()
    x = th.hint_cell_collapsed_share
    for verdict in ("healthy", "at_risk"):
        found = hint_against_cell(verdict, x * 0.99, th)
        assert found.verdict == "collapsed"
        assert (found.evidence[0].measure, found.evidence[0].op) == ("cell_share", "<")
    relieved = hint_against_cell("collapsed", x, th)
    assert relieved.verdict == "at_risk" and relieved.evidence[0].op == ">="
    assert hint_against_cell("collapsed", x * 0.99, th) is None  # the seed share's verdict stands
    assert hint_against_cell("healthy", x, th) is None and hint_against_cell("at_risk", 10.0, th) is None
    assert hint_against_cell("healthy", None, th) is None


def test_the_overall_verdict_is_recounted_only_where_a_hint_moved():
    th = Thresholds()
    x = th.hint_cell_collapsed_share
    found, overall = hints_against_cells(["healthy"] * 4, [x / 2] * 4, th)
    assert [f.verdict for f in found] == ["collapsed"] * 4 and overall.verdict == "collapsed"
    found, overall = hints_against_cells(["collapsed"] * 4, [x * 2] * 4, th)
    assert overall.verdict == "at_risk"
    found, overall = hints_against_cells(["healthy", "collapsed"], [x * 2, x / 2], th)
    assert found == [None, None] and overall is None


@pytest.fixture(scope="module")
def decoder(digits_folder):
    """The decoder scanned against its training digits with the defaults."""
    return scan(make_config(checkpoint=str(DECODER), data_images=str(digits_folder), **FAST))


def rejudged(result, th):
    import sys

    sys.path.insert(0, str(ROOT / "examples"))
    import calibrate

    data = json.loads(to_json(result))
    assert schema_errors(data) == []
    return calibrate.rejudge(data, th)


def test_the_decoder_s_hints_keep_almost_none_of_their_cells_and_read_collapsed(decoder):
    assert decoder.checkpoint["condition_kind"] == "concat"
    shares = [c.cell_share for c in decoder.conditions]
    assert all(s is not None and 0 <= s < Thresholds().hint_cell_collapsed_share for s in shares)
    assert decoder.verdict == "collapsed" and all(c.verdict == "collapsed" for c in decoder.conditions)
    assert decoder.guidance.verdict == rejudged(decoder, Thresholds())["guidance"]
    # the report lists each hint's share and cell (a hint has no rho), from the result and from its JSON alike
    from collapsecheck.report.witnesses import markdown_lines

    for shown in (decoder, json.loads(to_json(decoder))):
        text = "\n".join(markdown_lines(shown))
        assert "each hint against its own cell" in text and "| condition | cell share | cell images |" in text
        assert f"| {min(shares):.3g} |" in text


def test_hints_the_cells_relieve_are_judged_again_for_guidance(digits_folder, decoder):
    shares = [c.cell_share for c in decoder.conditions]
    th = dataclasses.replace(Thresholds(), hint_cell_collapsed_share=min(shares) / (2 * CELL_BAND))  # past the band
    relieved = scan(make_config(checkpoint=str(DECODER), data_images=str(digits_folder), thresholds=th, **FAST))
    assert [c.cell_share for c in relieved.conditions] == shares
    assert all(c.verdict == "at_risk" and c.decided_by[0].measure == "cell_share" for c in relieved.conditions)
    assert relieved.verdict == "at_risk"
    assert relieved.reasons[0].startswith("each condition judged against its own cell of the training data")
    again = rejudged(relieved, th)
    assert (again["collapse"], again["guidance"]) == (relieved.verdict, relieved.guidance.verdict)
    assert all("decoder" not in r for r in relieved.guidance.reasons)


def test_hints_the_seed_share_reads_healthy_read_collapsed_by_their_cells(digits_folder, decoder):
    shares = [c.cell_share for c in decoder.conditions]
    th = dataclasses.replace(Thresholds(), collapsed_seed_share=0.0, at_risk_seed_share=0.0,  # the seed share: healthy
                             collapsed_rms=0.0, at_risk_rms=0.0, collapsed_near_duplicates=2.0,
                             at_risk_near_duplicates=2.0, hint_cell_collapsed_share=max(shares) * 2 * CELL_BAND)
    by_cells = scan(make_config(checkpoint=str(DECODER), data_images=str(digits_folder), thresholds=th, **FAST))
    assert all(c.verdict == "collapsed" and c.decided_by[0].measure == "cell_share" for c in by_cells.conditions)
    assert all(any(r.startswith("by its seed share alone: ") for r in c.reasons) for c in by_cells.conditions)
    assert by_cells.verdict == "collapsed"
    again = rejudged(by_cells, th)
    assert (again["collapse"], again["guidance"]) == (by_cells.verdict, by_cells.guidance.verdict)
    assert again["per_condition"] == ["collapsed"] * len(shares)


def test_fast_mode_reads_hint_shares_near_the_bound_from_a_full_scan_s_samples(digits_folder, decoder):
    shares = [c.cell_share for c in decoder.conditions]
    th = dataclasses.replace(Thresholds(), hint_cell_collapsed_share=max(shares) * 1.01)  # every hint within the band
    config = dict(checkpoint=str(DECODER), data_images=str(digits_folder), thresholds=th)
    near = scan(make_config(**config, **FAST))
    full = scan(make_config(**config, **dict(FAST, mode="full")))
    assert all(c.cell_resampled for c in near.conditions) and not any(c.cell_resampled for c in decoder.conditions)
    assert [c.cell_share for c in near.conditions] == pytest.approx([c.cell_share for c in full.conditions], rel=1e-5)
    assert [c.verdict for c in near.conditions] == [c.verdict for c in full.conditions]
    assert (near.verdict, near.guidance.verdict) == (full.verdict, full.guidance.verdict)
