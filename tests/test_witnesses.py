"""--reference BASE, --train-images DIR and --features PATH (the Vendi score): closed forms, a memorising model
that names the training images it copies, a healthy one that copies none, and a fine-tune that fell toward one
image reading as collapsed relative to its base while its absolute diversity looks ordinary."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch

from collapsecheck import make_config, scan
from collapsecheck.errors import UsageError
from collapsecheck.measure.copies import count_copies, median_nn, nearest_hits, pixel_rms_cross
from collapsecheck.measure.vendi import load_features, vendi_per_condition, vendi_score
from collapsecheck.result import ConditionResult
from collapsecheck.thresholds import Thresholds
from collapsecheck.verdict.relative import compare_with_reference

from helpers_witness import write_pngs

ROOT = Path(__file__).resolve().parent.parent
HEALTHY = ROOT / "examples" / "digits-healthy"
MEMORIZER = str(Path(__file__).parent / "helpers_witness.py") + ":memorizer"
LPIPS = os.environ.get("COLLAPSECHECK_LPIPS_WEIGHTS")
FAST = dict(mode="fast", device="cpu", lpips=bool(LPIPS))


def _digits(split: str):
    import sys

    sys.path.insert(0, str(ROOT / "examples" / "zoo"))
    from digits import load_split

    return load_split(split)


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    """The 200 held-out digits (never trained on by examples/digits-healthy) as PNGs."""
    x, _ = _digits("heldout")
    folder = tmp_path_factory.mktemp("heldout")
    write_pngs(x, folder, [f"held_{i:03d}.png" for i in range(len(x))])
    return folder


# ---------------------------------------------------------------------------------------------- Vendi


def test_vendi_score_is_one_for_identical_features_and_n_for_orthogonal_ones():
    assert vendi_score(torch.ones(7, 5)) == pytest.approx(1.0, abs=1e-9)
    assert vendi_score(torch.eye(6)) == pytest.approx(6.0, abs=1e-9)
    assert vendi_score(torch.eye(6)[:6] * torch.arange(1, 7)[:, None]) == pytest.approx(6.0, abs=1e-9)  # scale-free
    two_groups = torch.cat([torch.eye(4)[:1].expand(3, 4), torch.eye(4)[1:2].expand(3, 4)])
    assert vendi_score(two_groups) == pytest.approx(2.0, abs=1e-9)  # two distinct samples, three copies each
    rand = vendi_score(torch.randn(16, 64, generator=torch.Generator().manual_seed(0)))
    assert 1.0 < rand < 16.0


def _tiny_dinov2(folder: Path) -> Path:
    from transformers import Dinov2Config, Dinov2Model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=64, patch_size=4, image_size=16))
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(json.dumps({"crop_size": {"height": 16, "width": 16},
                                                                 "image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    return folder


@pytest.fixture(scope="module")
def dino(tmp_path_factory) -> Path:
    return _tiny_dinov2(tmp_path_factory.mktemp("dino"))


def test_a_tiny_dinov2_folder_gives_vendi_scores_in_range(dino):
    extractor = load_features(dino)
    images = torch.rand(2, 5, 1, 8, 8) * 2 - 1
    images[1] = images[1, :1]  # the second condition: five copies of one image
    scores = vendi_per_condition(images, extractor)
    assert 1.0 < scores[0] <= 5.0
    assert scores[1] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("kind", ["clip_vision_model", "clip"])
def test_tiny_clip_folders_give_vendi_scores_too(tmp_path, kind):
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel

    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=16,
                  patch_size=4, projection_dim=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if kind == "clip":
            text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=99,
                        projection_dim=16)
            model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
        else:
            model = CLIPVisionModel(CLIPVisionConfig(**vision))
    model.save_pretrained(tmp_path, safe_serialization=True)
    extractor = load_features(tmp_path)
    assert extractor.kind == kind and extractor.size == (16, 16)  # CLIP's own input size
    images = torch.rand(1, 4, 3, 8, 8) * 2 - 1
    assert 1.0 < vendi_per_condition(images, extractor)[0] <= 4.0


def test_a_missing_features_folder_is_one_line(tmp_path):
    with pytest.raises(UsageError, match="no such folder"):
        make_config(checkpoint=str(HEALTHY), features=str(tmp_path / "nope"))
    (tmp_path / "notamodel").mkdir()
    with pytest.raises(UsageError, match="config.json") as exc:
        load_features(tmp_path / "notamodel")
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------------------------------------- copies


def test_copies_closed_form():
    train = torch.tensor([[0.0], [1.0], [3.0]]).view(3, 1, 1, 1)  # nearest-neighbour distances 1, 1, 2: median 1
    assert median_nn(pixel_rms_cross(train, train)) == pytest.approx(1.0)
    samples = torch.tensor([0.1, 2.9, 2.0, 1.6]).view(4, 1, 1, 1)
    hit, which, nearest = nearest_hits(pixel_rms_cross(samples, train), 0.5)
    count = count_copies(hit, which, ["a.png", "b.png", "c.png"], nearest)
    assert (count.copies, count.share) == (2, 0.5)
    assert [(i.name, i.count) for i in count.images] == [("a.png", 1), ("c.png", 1)]
    assert count.nearest == pytest.approx(0.1)


def test_a_memorising_model_names_the_training_images_it_copies(tmp_path, dino):
    x, _ = _digits("train")
    names = [f"dog_{i:02d}.png" for i in range(5)]
    write_pngs(x[:5], tmp_path, names)
    result = scan(make_config(checkpoint=str(tmp_path), model=MEMORIZER, train_images=str(tmp_path),
                              features=str(dino), **FAST))
    data = result.to_dict()
    assert data["features"]["path"] == str(dino) and data["features"]["model_type"] == "dinov2"
    for cond in data["conditions"]:  # at most 3 (or 2) distinct images among the seeds: Vendi <= 3 (<= 2)
        assert 1.0 <= cond["vendi"] <= (3.0 if cond["index"] == 0 else 2.0) + 1e-6
    copies = data["copies"]
    assert copies["images"] == 5 and copies["resized_to"] == [8, 8]
    for cond in copies["conditions"]:  # condition k draws on images k, k+2, ...: every seed is one of them
        assert cond["copies"]["copies"] == cond["seeds"]
        own = {names[i] for i in range(5) if i % 2 == cond["index"]}
        assert {im["name"] for im in cond["copies"]["images"]} <= own
    assert all(" seeds reproduce training image" in line for line in copies["findings"]), copies["findings"]
    assert len(copies["findings"]) == 2


@pytest.mark.slow  # 150 training steps: about 5 s on an idle 2-core machine
def test_a_tiny_unet_trained_on_five_digits_reproduces_each_class_s_own_image(tmp_path):
    """A real (tiny) model trained on 5 digits, one per class, for 150 steps: the scan names, for every class,
    the training image it was trained on, and no other."""
    import collapsecheck
    from helpers_witness import train_tiny_unet

    x, _ = _digits("train")
    names = [f"dog_{i:02d}.png" for i in range(5)]
    write_pngs(x[:5], tmp_path, names)
    unet, scheduler = train_tiny_unet(x[:5])
    result = collapsecheck.scan_model(unet, scheduler, classes=[0, 1, 2, 3, 4], mode="fast", device="cpu",
                                      lpips=False, train_images=str(tmp_path))
    for cond in result.copies["conditions"]:
        assert cond["copies"]["copies"] >= 1, cond
        assert [im["name"] for im in cond["copies"]["images"]] == [names[cond["index"]]]


def test_a_healthy_model_copies_none_of_its_held_out_digits_and_equals_itself_as_reference(heldout):
    cfg = make_config(checkpoint=str(HEALTHY), classes="0-2", train_images=str(heldout), reference=str(HEALTHY),
                      **FAST)
    result = scan(cfg)
    data = result.to_dict()
    assert all(c["copies"]["copies"] == 0 for c in data["copies"]["conditions"])
    assert data["copies"]["findings"] == []
    ref = data["reference"]
    assert ref["verdict"] == "healthy" and ref["notes"] == []
    for c in ref["conditions"]:
        assert c["pixel_ratio"] == pytest.approx(1.0, abs=1e-9) and c["verdict"] == "healthy"
        if LPIPS:
            assert c["lpips_ratio"] == pytest.approx(1.0, abs=1e-9)
    assert result.reference_samples.shape == result.samples[0].shape


# ---------------------------------------------------------------------------------------------- reference


def test_a_fine_tune_squashed_toward_one_image_is_collapsed_relative_to_its_base(heldout, tmp_path):
    """The base memorises 200 digits; the fine-tune's outputs are the base's squashed toward one digit: absolute
    diversity still healthy, 0.8 x collapsed_relative_diversity of the base's pixel diversity left (near the
    threshold, so fast mode compares those conditions at full settings)."""
    ft = tmp_path / "ft"
    ft.mkdir()
    for png in heldout.iterdir():
        (ft / png.name).write_bytes(png.read_bytes())
    left = 0.8 * Thresholds().collapsed_relative_diversity
    (ft / "pull.txt").write_text(str(1 - left))
    result = scan(make_config(checkpoint=str(ft), model=MEMORIZER, reference=str(heldout), **FAST))
    ref = result.to_dict()["reference"]
    assert ref["own_verdict"] == "healthy"  # against its own spread the fine-tune looks healthy
    assert ref["verdict"] == "collapsed" and ref["base_verdict"] == "healthy"
    for c in ref["conditions"]:
        assert c["pixel_ratio"] == pytest.approx(left, abs=0.01)  # (1 - pull) of every seed-to-seed difference
        assert c["verdict"] == "collapsed" and "fell toward a single image" in c["reason"]
    # judged against the base as well, the scan's own verdicts say collapsed, and why
    assert result.verdict == "collapsed" and result.reasons[0].startswith("judged against the base model too")
    for c, rel in zip(result.conditions, ref["conditions"]):
        said = f"against the base model: seed diversity is {rel['ratio']:.0%} of the base model's"
        assert c.verdict == "collapsed" and c.reasons[0].startswith(said)
        assert c.decided_by[0].threshold == "collapsed_relative_diversity"
    assert result.reasons[-1].startswith("against its own spread: ")  # the model's own verdict, said as such
    assert result.recommendations[0].startswith("Against its base model")  # the advice that fits a fine-tune first
    # the pull squashes the null branch too: w = 0 keeps as little of the base's w = 0 diversity
    assert ref["w0_ratio"] < Thresholds().collapsed_relative_diversity
    null = result.guidance.null_branch
    assert null.verdict == "not_learned" and null.decided_by[0].measure == "w0_relative_diversity"
    assert result.guidance.reasons[-1].startswith("the null branch was not learned")  # what that implies for w < 1
    # fast mode: ratios near collapsed_relative_diversity were compared at full settings in both scans
    assert result.escalation["indices"] == [c.index for c in result.conditions]
    assert all(c.resampled for c in result.conditions)
    full = scan(make_config(checkpoint=str(ft), model=MEMORIZER, reference=str(heldout), **dict(FAST, mode="full")))
    for fast_c, full_c in zip(ref["conditions"], full.to_dict()["reference"]["conditions"]):
        assert fast_c["pixel_ratio"] == pytest.approx(full_c["pixel_ratio"], rel=1e-4)
        assert fast_c["verdict"] == full_c["verdict"]
    # and so was the w = 0 comparison (near collapsed_relative_diversity too): the full scan's ratio, not the sweep's
    assert result.escalation["w0"]["nfe"] == 2 * len(result.conditions) * 16 * 25
    w0 = {p.w: p for p in full.guidance.sweep}[0.0]
    assert result.escalation["w0"]["pixel_rms"] == pytest.approx(w0.pixel_rms, rel=1e-5)
    assert ref["w0_ratio"] == pytest.approx(full.to_dict()["reference"]["w0_ratio"], rel=1e-5)
    fast_w0 = {p.w: p for p in result.guidance.sweep}[0.0]
    assert fast_w0.pixel_rms != pytest.approx(w0.pixel_rms, rel=1e-3)  # the sweep keeps its fast numbers
    _the_report_shows_the_base_beside_the_fine_tune(result, tmp_path / "report")


def _narrow_folder(folder: Path, both: bool) -> Path:
    """Forty training images a condition for the memoriser: condition 0 (even indices) one digit with faint noise, a
    class narrow by nature; condition 1 (odd) forty different digits, or, with ``both``, another digit's faint
    variations."""
    x, _ = _digits("heldout")
    g = torch.Generator().manual_seed(0)
    images = [x[i % 2] + 0.02 * torch.randn(x[0].shape, generator=g) if both or i % 2 == 0 else x[i]
              for i in range(80)]
    write_pngs(torch.stack(images), folder, [f"img_{i:03d}.png" for i in range(80)])
    return folder


def test_a_condition_as_narrow_as_in_its_base_reads_at_risk_not_collapsed(tmp_path):
    """The fine-tune is its base (every ratio 1). Condition 0 is narrow by nature: collapsed by its own seed share,
    and by the base's too, so against the base it reads at_risk, saying why; condition 1 stays healthy. With both
    conditions narrow the base is collapsed as a whole, and nothing is relieved. Without the base, the advice says
    what a seed share cannot tell."""
    from collapsecheck.verdict.advice import NARROW_BY_NATURE, collapsed_without_base

    assert collapsed_without_base(["collapsed", "healthy"], reference=False)
    assert not collapsed_without_base(["collapsed", "healthy"], reference=True)
    assert not collapsed_without_base(["collapsed", "collapsed"], reference=False)
    assert not collapsed_without_base(["at_risk", "healthy"], reference=False)
    base = _narrow_folder(tmp_path / "base", both=False)
    result = scan(make_config(checkpoint=str(base), model=MEMORIZER, reference=str(base), **FAST))
    ref = result.to_dict()["reference"]
    assert ref["own_verdict"] == "at_risk" and ref["base_verdict"] == "at_risk"
    assert [c["base_verdict"] for c in ref["conditions"]] == ["collapsed", "healthy"]
    assert [c["verdict"] for c in ref["conditions"]] == ["healthy", "healthy"]  # as diverse as the base: ratio 1
    narrow, wide = result.conditions
    assert narrow.verdict == "at_risk" and "narrow in the base as well" in narrow.reasons[0]
    assert (narrow.decided_by[0].threshold, narrow.decided_by[0].op) == ("at_risk_relative_diversity", ">=")
    assert narrow.decided_by[1].threshold == "collapsed_seed_share"  # its own crossing, still shown
    assert wide.verdict == "healthy"
    assert result.verdict == "at_risk"  # one of two conditions at risk: still at least overall_at_risk_fraction
    # the verdict stands, but the reasons count the conditions as the table shows them, then the earlier count
    assert result.reasons[0].startswith("judged against the base model too: 0/2 conditions collapsed, 1/2 at risk")
    assert result.reasons[1].startswith("against its own spread: 1/2 conditions collapsed, 0/2 at risk")
    assert NARROW_BY_NATURE not in result.recommendations  # the base was there to compare with
    alone = scan(make_config(checkpoint=str(base), model=MEMORIZER, **FAST))
    assert [c.verdict for c in alone.conditions] == ["collapsed", "healthy"] and alone.verdict == "at_risk"
    assert NARROW_BY_NATURE in alone.recommendations  # without a base, the scan says what it cannot tell
    both = _narrow_folder(tmp_path / "both", both=True)
    result = scan(make_config(checkpoint=str(both), model=MEMORIZER, reference=str(both), **FAST))
    ref = result.to_dict()["reference"]
    assert ref["base_verdict"] == "collapsed"
    assert [c.verdict for c in result.conditions] == ["collapsed", "collapsed"] and result.verdict == "collapsed"
    assert not any("narrow in the base" in r for c in result.conditions for r in c.reasons)


def _the_report_shows_the_base_beside_the_fine_tune(result, folder: Path) -> None:
    from PIL import Image

    from collapsecheck.report.folder import write_report_dir

    write_report_dir(result, str(folder))
    summary = (folder / "summary.md").read_text()
    assert "## Relative to the base model: collapsed" in summary and "(reference_side_by_side.png)" in summary
    assert "Relative to the base model" in (folder / "index.html").read_text()
    with Image.open(folder / "reference_side_by_side.png") as sheet:
        assert sheet.width > 2 * result.samples.shape[2] * 8  # two blocks of seeds


def test_a_reference_that_does_not_exist_is_one_line_before_any_scan(tmp_path):
    from click.testing import CliRunner

    from collapsecheck.cli import cli

    run = CliRunner().invoke(cli, ["scan", str(HEALTHY), "--reference", str(tmp_path / "nope"), "-q"])
    assert run.exit_code == 2
    assert run.output.strip().splitlines() == [f"error: --reference {tmp_path / 'nope'}: no such file or folder "
                                               "(nor a hub id org/name)"]


def _cond(index: int, rms: float, lpips=None) -> ConditionResult:
    return ConditionResult(index=index, label=f"c{index}", verdict="healthy", reasons=[], pixel_rms=rms, pixel_std=0.1,
                           near_duplicates=0.0, seed_share=1.0, lpips=lpips, eps_ratio=0.1, eps_cos=0.0)


def test_relative_verdicts_follow_the_smaller_ratio_and_the_named_thresholds():
    th = Thresholds()
    base = [_cond(0, 0.5, 0.2), _cond(1, 0.5, 0.2), _cond(2, 0.0, None)]
    ft = [_cond(0, 0.5, 0.2 * (th.collapsed_relative_diversity - 0.01)), _cond(1, 0.5 * th.at_risk_relative_diversity * 0.99),
          _cond(2, 0.3)]
    ref = compare_with_reference(ft, base, th, path="base")
    assert [c.verdict for c in ref.conditions] == ["collapsed", "at_risk", "healthy"]
    assert ref.conditions[0].ratio == ref.conditions[0].lpips_ratio  # the smaller ratio decides
    assert ref.conditions[2].ratio is None  # a base without diversity: nothing to compare with
    with pytest.raises(UsageError, match="same conditions"):
        compare_with_reference(ft[:2], base, th, path="base")



def test_a_fine_tune_that_narrowed_its_base_s_null_branch_reads_unclear(heldout, tmp_path):
    """The same squash, between the two relative thresholds: the w = 0 samples keep part of the base's diversity,
    so the null branch reads unclear against the base, and the guidance notes say what that leaves unknown."""
    from collapsecheck.verdict.rules import NULL_UNCLEAR_NOTE

    th = Thresholds()
    ft = tmp_path / "ft"
    ft.mkdir()
    for png in heldout.iterdir():
        (ft / png.name).write_bytes(png.read_bytes())
    left = 0.5 * (th.collapsed_relative_diversity + th.at_risk_relative_diversity)
    (ft / "pull.txt").write_text(str(1 - left))
    result = scan(make_config(checkpoint=str(ft), model=MEMORIZER, reference=str(heldout), **FAST))
    ref = result.to_dict()["reference"]
    assert th.collapsed_relative_diversity < ref["w0_ratio"] < th.at_risk_relative_diversity
    assert ref["w0_ratio"] == pytest.approx(left, abs=0.01)
    null = result.guidance.null_branch
    assert null.verdict == "unclear" and null.decided_by[0].threshold == "at_risk_relative_diversity"
    assert null.reasons[0].startswith(f"the w = 0 samples keep {ref['w0_ratio']:.0%} of the base model's")
    assert result.guidance.reasons[-1] == NULL_UNCLEAR_NOTE
    assert result.escalation["w0"] is not None  # near at_risk_relative_diversity: drawn again at full settings

def test_a_base_without_seed_diversity_at_a_condition_relieves_nothing_there():
    from types import SimpleNamespace

    from collapsecheck.verdict.relative import RelativeCondition
    from collapsecheck.witnesses import judge_condition_against_base

    th = Thresholds()
    cond = SimpleNamespace(verdict="collapsed", reasons=["own"], decided_by=[])
    rel = RelativeCondition(index=0, label="a", verdict="healthy", reason="no ratio", pixel_rms=0.0, base_pixel_rms=0.0,
                            pixel_ratio=None, ratio=None, base_verdict="collapsed")
    assert not judge_condition_against_base(cond, rel, "at_risk", th) and cond.verdict == "collapsed"
    rel = dataclasses.replace(rel, pixel_ratio=1.0, ratio=1.0)
    assert judge_condition_against_base(cond, rel, "at_risk", th) and cond.verdict == "at_risk"
    assert cond.decided_by[0].op == ">=" and cond.reasons[-1] == "own"


def test_judged_against_the_base_a_condition_takes_the_worse_verdict_and_w0_decides_below_at_risk():
    from collapsecheck.verdict.relative import (against_base, base_overrides_null, null_against_base, ratio,
                                                relative_verdict, smaller_ratio)

    th = Thresholds()
    assert [against_base(own, rel) for own, rel in [("healthy", "at_risk"), ("collapsed", "healthy"),
                                                     ("at_risk", "at_risk")]] == ["at_risk", "collapsed", "at_risk"]
    # collapsed by its own spread only, as diverse as the base, which reads collapsed there too: the base's narrowness
    assert against_base("collapsed", "healthy", "collapsed", "at_risk") == "at_risk"
    assert against_base("collapsed", "healthy", "collapsed", "healthy") == "at_risk"
    assert against_base("collapsed", "healthy", "collapsed", "collapsed") == "collapsed"  # a collapsed base: no relief
    assert against_base("collapsed", "healthy", "healthy", "healthy") == "collapsed"  # the base was wide there
    assert against_base("collapsed", "at_risk", "collapsed", "healthy") == "collapsed"  # narrower than the base
    assert against_base("collapsed", "healthy", None, None) == "collapsed"
    c, a = th.collapsed_relative_diversity, th.at_risk_relative_diversity
    assert [relative_verdict(r, th) for r in (c * 0.99, c, a * 0.99, a, None)] == [
        "collapsed", "at_risk", "at_risk", "healthy", "healthy"]
    assert smaller_ratio(ratio(0.2, 0.4), ratio(0.1, 0.4)) == pytest.approx(0.25)
    assert smaller_ratio(ratio(0.2, 0.4), ratio(None, 0.4)) == pytest.approx(0.5)
    assert smaller_ratio(ratio(0.2, 0.0), ratio(None, None)) is None
    assert null_against_base(None, th) is None and null_against_base(a, th) is None
    found = null_against_base(c * 0.5, th)
    assert found.verdict == "not_learned" and found.evidence[0].limit == c
    for narrowed in (c, a * 0.99):  # the at-risk band of the relative scale: the branch was narrowed
        found = null_against_base(narrowed, th)
        assert found.verdict == "unclear" and found.evidence[0].threshold == "at_risk_relative_diversity"
        assert "narrowed the unconditional branch" in found.reasons[0]
    unclear, not_learned = null_against_base(c, th), null_against_base(c * 0.5, th)
    assert [base_overrides_null(own, unclear) for own in ("learned", "unclear", "not_learned")] == [True, False, False]
    assert [base_overrides_null(own, not_learned) for own in ("learned", "unclear", "not_learned")] == [
        True, True, False]
    assert not base_overrides_null("learned", None)


def test_fast_mode_escalates_the_conditions_near_a_relative_threshold_in_both_scans():
    from types import SimpleNamespace

    from collapsecheck.config import RELATIVE_ESCALATION_BAND
    from collapsecheck.witnesses import first_pass, relative_escalation, two_passes

    th = Thresholds()
    base = [_cond(i, 5.0) for i in range(4)]  # wide enough that no grid is near collapsed_rms
    far_above = 5.0 * th.at_risk_relative_diversity * RELATIVE_ESCALATION_BAND * 1.01
    near_collapsed = 5.0 * th.collapsed_relative_diversity
    far_below = 5.0 * th.collapsed_relative_diversity / RELATIVE_ESCALATION_BAND * 0.99
    ft = [_cond(0, far_above), _cond(1, near_collapsed), _cond(2, far_below), _cond(3, far_above)]

    def result(conds):
        return SimpleNamespace(conditions=conds)

    fast = make_config(checkpoint=str(HEALTHY), reference=str(HEALTHY), mode="fast")
    assert relative_escalation(result(ft), result(base), fast) == (1,)
    # a condition either scan would escalate on its own joins, so that every compared pair is at the same settings
    own = dataclasses.replace(ft[3], seed_share=th.at_risk_seed_share)
    assert relative_escalation(result(ft[:3] + [own]), result(base), fast) == (1, 3)
    assert relative_escalation(result([ft[0], ft[2], ft[0], own]), result(base), fast) == ()  # none near: no union
    assert two_passes(fast) and not first_pass(fast).escalation
    full = dataclasses.replace(fast, mode="full")
    assert not two_passes(full) and first_pass(full) == full


def test_the_gate_reads_the_relative_verdict_on_its_own_axes():
    from collapsecheck.verdict.gate import failure_lines, gate_result, verdict_fails

    data = {"verdict": "healthy", "guidance": {"verdict": "steerable", "null_branch": {"verdict": "learned"}},
            "reference": {"verdict": "at_risk"}}
    assert gate_result(data, "collapsed").passed
    assert gate_result(data, "relative_collapsed").passed
    gate = gate_result(data, "collapsed,relative_at_risk")
    assert not gate.passed and gate.failed == ["relative_at_risk"]
    assert failure_lines(gate) == ["relative_at_risk: the verdict relative to the --reference base model is at_risk"]
    del data["reference"]
    gate = gate_result(data, "relative_collapsed")  # no --reference: nothing to read, the axis passes
    assert gate.passed and gate.checks[0].verdict is None
    assert not verdict_fails("collapsed", "relative_collapsed")  # per-condition testcases read other verdicts


def test_the_reference_is_loaded_like_the_checkpoint_without_the_fine_tunes_own_lora(tmp_path):
    from collapsecheck.witnesses import reference_config

    base, ref = tmp_path / "sd15", tmp_path / "earlier.safetensors"
    base.mkdir()
    ref.write_bytes(b"")
    lora = make_config(checkpoint=str(tmp_path / "lora.safetensors"), base=str(base), lora_scale=0.5,
                       reference=str(base), seeds=4)
    cfg = reference_config(lora)  # a LoRA against its own base: the base alone
    assert (cfg.checkpoint, cfg.base, cfg.lora_scale, cfg.reference) == (str(base), None, 1.0, None)
    assert (cfg.seeds, cfg.guidance, cfg.recovery, cfg.posterior) == (4, lora.guidance, False, False)
    cfg = reference_config(make_config(checkpoint=str(tmp_path / "x"), base=str(base), lora=str(tmp_path / "l"),
                                       reference=str(ref)))  # an earlier weight file on the same base
    assert (cfg.checkpoint, cfg.base, cfg.lora) == (str(ref), str(base), None)


def test_pixel_distances_in_chunks_equal_the_direct_ones(monkeypatch):
    import collapsecheck.measure.copies as copies

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(5, 3, 4, 4, generator=g), torch.rand(7, 3, 4, 4, generator=g)
    direct = torch.cdist(a.flatten(1).double(), b.flatten(1).double()) / 48 ** 0.5
    monkeypatch.setattr(copies, "CROSS_CHUNK", 3)
    torch.testing.assert_close(pixel_rms_cross(a, b), direct)


@pytest.mark.skipif(not LPIPS, reason="LPIPS backbone weights not available offline")
def test_lpips_cross_distances_equal_the_pairwise_matrix():
    from collapsecheck.measure.lpips import load_lpips

    metric = load_lpips("alex", LPIPS)
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 1, 8, 8, generator=g) * 2 - 1, torch.rand(4, 1, 8, 8, generator=g) * 2 - 1
    full = metric.pairwise(torch.cat([a, b]))
    torch.testing.assert_close(metric.cross(a, b), full[:3, 3:], atol=1e-6, rtol=1e-5)


def test_dry_run_counts_the_reference_scan(tmp_path):
    from click.testing import CliRunner

    from collapsecheck.cli import cli

    run = CliRunner().invoke(cli, ["scan", str(HEALTHY), "--mode", "fast", "--classes", "0,1", "--device", "cpu",
                                   "--reference", str(HEALTHY), "--dry-run"])
    assert run.exit_code == 0, run.output
    nfe = {line.split(": ")[0][4:]: int(line.split(": ")[1].replace(",", "")) for line in run.output.splitlines()
           if line.startswith("NFE ") and "in all" not in line}
    assert nfe["--reference base model (same grid)"] == nfe["sampling"] + nfe["null branch"]


def test_unusable_train_images_and_features_fail_before_sampling(tmp_path, monkeypatch):
    import collapsecheck.run as run

    monkeypatch.setattr(run, "evaluate", lambda *a, **k: pytest.fail("sampled before the check"))
    (tmp_path / "one").mkdir()
    write_pngs(torch.zeros(1, 1, 8, 8), tmp_path / "one", ["a.png"])
    with pytest.raises(UsageError, match="at least 2 images"):
        scan(make_config(checkpoint=str(HEALTHY), train_images=str(tmp_path / "one"), **FAST))
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "config.json").write_text('{"model_type": "dinov2"}')
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(UsageError, match="no .safetensors weights"):
        scan(make_config(checkpoint=str(HEALTHY), features=str(tmp_path / "pickled"), **FAST))


def test_fast_mode_draws_w0_again_only_when_its_ratio_to_the_base_is_near_a_relative_threshold():
    from types import SimpleNamespace

    from collapsecheck.config import RELATIVE_ESCALATION_BAND, W0_AT_RISK_BAND
    from collapsecheck.witnesses import w0_escalation, w0_ratio

    c, a = Thresholds().collapsed_relative_diversity, Thresholds().at_risk_relative_diversity

    def result(rms, again=None):
        sweep = [SimpleNamespace(w=0.0, pixel_rms=rms, lpips=None), SimpleNamespace(w=1.0, pixel_rms=9.0, lpips=None)]
        return SimpleNamespace(guidance=SimpleNamespace(sweep=sweep), escalation=again)

    fast = make_config(checkpoint=str(HEALTHY), reference=str(HEALTHY), mode="fast")
    base = result(2.0)
    assert w0_escalation(result(2.0 * c * 1.2), base, fast) and w0_escalation(result(2.0 * c / 1.5), base, fast)
    above = a * W0_AT_RISK_BAND * 0.99  # near at_risk_relative_diversity, beyond collapsed's band
    assert c * RELATIVE_ESCALATION_BAND < above and w0_escalation(result(2.0 * above), base, fast)
    assert not w0_escalation(result(2.0 * a * W0_AT_RISK_BAND * 1.01), base, fast)
    assert not w0_escalation(result(2.0 * c / RELATIVE_ESCALATION_BAND / 1.01), base, fast)
    assert not w0_escalation(SimpleNamespace(guidance=SimpleNamespace(sweep=[]), escalation=None), base, fast)
    # the full-setting numbers, where both scans have them, replace the sweeps'
    assert w0_ratio(result(1.0, {"w0": {"pixel_rms": 0.5, "lpips": None}}),
                    result(2.0, {"w0": {"pixel_rms": 2.5, "lpips": None}})) == pytest.approx(0.2)
    assert w0_ratio(result(1.0), base) == pytest.approx(0.5)


def test_fast_mode_s_second_pass_reads_the_first_pass_s_sweep_and_gives_the_same_result(monkeypatch):
    import json

    import collapsecheck.sweep as sweep_module
    from collapsecheck.report.jsonfile import to_json

    calls = []
    sample = sweep_module.sample_sweep
    monkeypatch.setattr(sweep_module, "sample_sweep", lambda s: calls.append(s.config.checkpoint) or sample(s))
    config = make_config(checkpoint=str(HEALTHY), reference=str(HEALTHY), classes="0-3", recovery=False, mode="fast",
                         device="cpu", lpips=False)
    kept = scan(config)
    assert len(calls) == 2  # the model's first pass and its base's; both second passes read them
    calls.clear()
    monkeypatch.setattr(sweep_module.SweepMemo, "holds", lambda self, config: False)  # as before: sampled again
    again = scan(config)
    assert len(calls) == 4
    first_sweep = again.nfe - kept.nfe
    assert first_sweep > 0 and kept.nfe == again.nfe - first_sweep

    def comparable(result) -> dict:
        d = json.loads(to_json(result))
        for key in ("seconds", "nfe", "profile", "created", "timestamp", "environment"):
            d.pop(key, None)
        return d

    assert comparable(kept) == comparable(again)
    assert kept.reference is not None and kept.escalation == again.escalation


def test_the_sweep_memo_is_read_only_by_a_config_that_differs_in_the_pass_fields_alone():
    import dataclasses

    from collapsecheck.sweep import PASS_FIELDS, SweepMemo

    first = dataclasses.replace(make_config(checkpoint=str(HEALTHY), mode="fast"), escalation=False)
    memo = SweepMemo()
    assert not memo.holds(first)
    memo.keep(first, None)  # a rank other than 0: its share was sampled
    second = dataclasses.replace(first, escalation=True, escalate_also=(0, 2), escalate_w0=True, data_images="x")
    assert set(PASS_FIELDS) >= {"escalation", "escalate_also", "escalate_w0", "data_images"}
    assert memo.holds(second) and memo.read() is None
    assert not memo.holds(dataclasses.replace(first, seeds=first.seeds + 1))
    assert not memo.holds(dataclasses.replace(first, mode="full"))
