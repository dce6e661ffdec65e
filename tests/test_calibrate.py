"""examples/calibrate.py's leave-one-dataset-out check, on synthetic scan results whose seed shares are chosen
so that the datasets agree or disagree about where ``collapsed_seed_share`` belongs."""
import importlib.util
from pathlib import Path

import pytest

from collapsecheck.thresholds import Thresholds

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "calibrate.py"


@pytest.fixture(scope="module")
def calibrate():
    spec = importlib.util.spec_from_file_location("calibrate_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scan_result(seed_shares: list[float]) -> dict:
    """The fields of a scan's JSON that the re-judging reads: healthy pixel numbers, these seed shares, a learned
    null and guidance that raises the implicit adherence."""
    sweep = [{"w": w, "shift_from_w1": 0.1 * w, "implicit_adherence": a, "implicit_adherence_stderr": 0.01,
              "break_ratio": 1.0} for w, a in ((0.0, 0.3), (1.0, 0.7), (3.0, 0.9))]
    return {"conditions": [{"pixel_rms": 0.3, "near_duplicates": 0.0, "seed_share": s, "lpips": 0.2}
                           for s in seed_shares],
            "guidance": {"null_branch": {"verdict": "learned", "null_ratio": 0.2, "null_ratio_low": 0.1,
                                         "null_ratio_high": 0.3, "null_samples": 160}, "sweep": sweep},
            "condition_set": {"kind": "class"}}


#: a seed share a little above the default collapsed_seed_share (not collapsed under the defaults)
SHARE = 1.3 * Thresholds().collapsed_seed_share


def model(dataset: str, index: int, share: float, collapsed: bool) -> tuple[dict, dict]:
    """A model of 10 conditions at seed share ``share``, all collapsed or all not in its ground truth."""
    truth = {"collapsed_conditions": list(range(10)) if collapsed else []}
    return {"name": f"latent/{dataset}/m{index}", "truth": truth}, scan_result([share] * 10)


def test_datasets_that_agree_on_a_move_generalise_to_each_other(calibrate):
    # the seed share SHARE is above the default collapsed_seed_share, and every dataset calls it collapsed
    pairs = [model(d, i, SHARE, collapsed=True) for d in ("a", "b", "c") for i in range(2)]
    fitted, kept, total = calibrate.cross_validate(pairs, Thresholds(), say=lambda _: None)
    assert total == 60
    assert kept == 0 and fitted == 60


def test_a_move_asked_for_by_one_dataset_alone_does_not_generalise(calibrate):
    # dataset a calls SHARE collapsed; b and c call it not collapsed, as the default threshold does
    pairs = [model("a", i, SHARE, collapsed=True) for i in range(4)]
    pairs += [model(d, i, SHARE, collapsed=False) for d in ("b", "c") for i in range(2)]
    fitted, kept, total = calibrate.cross_validate(pairs, Thresholds(), say=lambda _: None)
    assert total == 80
    assert kept == 40  # b and c agree under the defaults, a does not
    assert fitted < kept  # held out, b is scored under a fit that a dominates, and loses


def test_a_fine_tune_scanned_against_its_base_is_rejudged_against_it(calibrate):
    th = Thresholds()
    data = scan_result([SHARE] * 10)  # healthy against its own spread
    assert calibrate.rejudge(data, th)["collapse"] == "healthy"
    low = 0.5 * th.collapsed_relative_diversity
    data["reference"] = {"conditions": [{"ratio": low}] * 9 + [{"ratio": 1.0}], "w0_ratio": low}
    got = calibrate.rejudge(data, th)
    assert got["per_condition"] == ["collapsed"] * 9 + ["healthy"]
    assert got["collapse"] == "collapsed" and got["null_branch"] == "not_learned"
    data["reference"]["w0_ratio"] = 1.0  # the null kept its base's diversity: the null-ratio test's finding stands
    assert calibrate.rejudge(data, th)["null_branch"] == "learned"
    moved = calibrate.rejudge(data, Thresholds(collapsed_relative_diversity=0.4 * low))  # a candidate threshold
    assert moved["per_condition"] == ["at_risk"] * 9 + ["healthy"]


def test_a_guidance_verdict_fast_mode_measured_again_is_rejudged_from_the_full_numbers(calibrate):
    th = Thresholds()
    data = scan_result([SHARE] * 10)  # fast sweep: implicit adherence 0.7 -> 0.9, steerable
    assert calibrate.rejudge(data, th)["guidance"] == "steerable"
    data["escalation"] = {"steering": {"w_max": 3.0, "adherence_w1": 0.7, "adherence_max": 0.7 + 0.5 * (
        th.steer_adherence_gain + th.steer_weak_gain), "stderr": 0.01, "break_ratio": 1.0}}
    assert calibrate.rejudge(data, th)["guidance"] == "weak"


def test_a_zoo_fine_tune_names_its_base_as_reference(calibrate):
    items = {i["name"]: i for i in calibrate.latent_targets("digits")}
    ft = items["latent/digits/dreambooth_long"]["options"]
    assert Path(ft["reference"]) == SCRIPT.parent / "latent_zoo" / "models" / "digits" / "drop10"
    assert "reference" not in items["latent/digits/drop10"]["options"]


def test_groups_are_the_latent_datasets_and_the_pixel_zoo(calibrate):
    assert calibrate.dataset_of({"name": "latent/kmnist/tied_all"}) == "kmnist"
    assert calibrate.dataset_of({"name": "pixel/series/checkpoint-40"}) == "pixel"


def truth_entry(moves: list[float], label: str, adherence_w1: float = 0.5) -> dict:
    rows = [{"w1": {"adherence": adherence_w1}, "w3": {"adherence": adherence_w1 + m}} for m in moves]
    return {"per_condition": rows, "labels": {"guidance": label},
            "summary": {"w1": {"adherence": adherence_w1}, "w3": {"nn_ratio": 1.0}}}


def test_a_move_every_prompt_shares_decides_the_truth_label(latent_truth):
    entry = truth_entry([0.1] * 10, "steerable")
    move, low, high = latent_truth.guidance_interval(entry["per_condition"])
    assert move == pytest.approx(0.1) and low == pytest.approx(0.1) and high == pytest.approx(0.1)
    assert latent_truth.guidance_decided(entry, low, high)


def test_a_move_that_rests_on_one_prompt_leaves_the_truth_label_undecided(latent_truth):
    entry = truth_entry([1.0] + [0.0] * 9, "steerable")  # the same mean move, from one prompt
    move, low, high = latent_truth.guidance_interval(entry["per_condition"])
    assert move == pytest.approx(0.1)
    assert low < latent_truth.ADH_MOVE < high
    assert not latent_truth.guidance_decided(entry, low, high)


def collapse_entry(divs: list[float], label: str) -> dict:
    rows = [{"w1": {"div_ratio": d, "nn_ratio": 1.0}} for d in divs]
    return {"per_condition": rows, "labels": {"collapse": label}, "summary": {"w1": {"nn_ratio": 1.0}}}


def test_a_collapse_label_far_from_its_boundaries_is_decided(latent_truth):
    assert latent_truth.collapse_decided(collapse_entry([0.02] * 10, "collapsed"))
    assert latent_truth.collapse_decided(collapse_entry([0.9] * 10, "healthy"))
    assert latent_truth.condition_decided(0.05) and latent_truth.condition_decided(0.5)


def test_a_collapse_label_that_rests_on_conditions_near_0_15_is_undecided(latent_truth):
    # 8 of 10 collapsed makes the model collapsed; two of the eight sit just under 0.15
    divs = [0.02] * 6 + [0.14, 0.14] + [0.9, 0.9]
    assert not latent_truth.collapse_decided(collapse_entry(divs, "collapsed"))
    assert not latent_truth.condition_decided(0.14) and not latent_truth.condition_decided(0.17)
    # the same model with those two far under the boundary is decided
    assert latent_truth.collapse_decided(collapse_entry([0.02] * 8 + [0.9, 0.9], "collapsed"))


def test_a_label_the_rules_would_not_give_is_never_decided(latent_truth):
    assert not latent_truth.collapse_decided(collapse_entry([0.02] * 10, "healthy"))



def test_the_data_images_folder_is_written_whole_and_a_second_writer_leaves_nothing_behind(calibrate, tmp_path,
                                                                                           monkeypatch):
    monkeypatch.setattr(calibrate, "DATA_IMAGES", tmp_path)
    folder = calibrate.data_images_dir("pixel")  # the pixel zoo's 8x8 training digits
    names = sorted(p.name for p in folder.iterdir())
    assert folder == tmp_path / "pixel" and len(names) == 1597 and names[0] == "00000.png"
    assert [p.name for p in tmp_path.iterdir()] == ["pixel"]  # no partial folder left
    # a process that finished writing after another published the folder removes its own copy
    late = tmp_path / "pixel.late.part"
    late.mkdir()
    (late / "00000.png").write_bytes(b"late")
    calibrate.publish(late, folder)
    assert [p.name for p in tmp_path.iterdir()] == ["pixel"] and sorted(p.name for p in folder.iterdir()) == names


def test_the_null_rule_off_takes_only_the_null_data_share_out(calibrate):
    data = scan_result([0.5, 0.5])
    data["guidance"]["null_branch"]["null_data_share"] = 0.01
    assert calibrate.rejudge(data, Thresholds())["null_branch"] == "not_learned"
    (_, off), = calibrate.without_null_data([({"name": "m"}, data)])
    assert "null_data_share" not in off["guidance"]["null_branch"] and data["guidance"]["null_branch"]["null_data_share"]
    assert calibrate.rejudge(off, Thresholds())["null_branch"] == "learned"


def test_the_re_judging_keeps_a_varied_null_not_learned_beyond_any_blend_as_the_scan_does(calibrate):
    data = scan_result([0.5] * 10)  # ten conditions: the bound is 9
    nb = data["guidance"]["null_branch"]
    nb.update(null_ratio=16.6, null_ratio_low=15.0, null_ratio_high=18.4, null_data_share=0.57)
    assert calibrate.rejudge(data, Thresholds())["null_branch"] == "not_learned"
    nb.update(null_ratio=2.8, null_ratio_low=2.6, null_ratio_high=3.1)  # worse than a wrong class, within a blend's reach
    assert calibrate.rejudge(data, Thresholds())["null_branch"] == "unclear"
