"""The committed latent zoo (examples/latent_zoo/models): every folder loads as a pipeline, one calibration model
scans end to end, and the brute-force ground truth covers every model. Nothing is trained here."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("transformers")

from collapsecheck.cli import cli  # noqa: E402
from collapsecheck.load.dispatch import load_checkpoint  # noqa: E402

ZOO = Path(__file__).resolve().parent.parent / "examples" / "latent_zoo"
MODELS = sorted(p.parent for p in (ZOO / "models").glob("*/*/recipe.json"))
RECIPES = {"drop10", "nodrop", "tied_all", "tied_half", "dreambooth_long", "dreambooth_short", "hint_nodrop",
           "hint_drop"}
CALIBRATION = "digits"  # calibration: digits and the spent holdouts mnist ... mednist
DATASETS = ("digits", "mnist", "fashion", "cifar", "kmnist", "notmnist", "quickdraw", "kannada", "digmnist",
            "gtsrb", "oracle", "coil", "yaleb", "usps", "omniglot", "simpsons", "bloodcell", "eurosat", "mstar",
            "rsscn7", "plankton", "tifinagh", "fer", "hanzi", "signs", "steel", "scenes", "mednist",
            "arabic", "mdas", "tibetan", "shapes", "bangla", "hands", "persian", "pcb", "waste", "kazakh", "greek",
            "thai", "emoji", "spoken")
CLASSES = {"quickdraw": 6, "steel": 6, "scenes": 6, "mednist": 6, "mdas": 6, "hands": 6, "rsscn7": 7, "fer": 7, "omniglot": 8, "bloodcell": 8,
           "shapes": 8, "persian": 8, "pcb": 6, "waste": 6, "kazakh": 8, "greek": 8,
           "thai": 8, "emoji": 8, "spoken": 8}  # every other: ten
#: every other dataset's truth classifier must beat 0.5; grey 16x16 CIFAR, Omniglot's scripts (chance 0.125) and
#: cartoon frames on busy backgrounds, grey aerial textures (EuroSAT, RSSCN7) and 16x16 faces by expression
#: (FER2013, chance 1/7), 16x16 textures of steel defects, grey 16x16 scenes and photographed waste by material
#: (TrashNet, 0.242; chance 1/6) are hard for a linear model
MIN_CLASSIFIER_ACCURACY = {"cifar": 0.2, "omniglot": 0.3, "simpsons": 0.2, "eurosat": 0.2, "rsscn7": 0.25,
                           "fer": 0.2, "steel": 0.3, "scenes": 0.3, "waste": 0.2}

#: committed (README.md "Status"): all eight recipes for the forty-two datasets
REQUIRED = {f"{d}/{r}" for d in DATASETS for r in RECIPES}


def test_committed_folders_are_zoo_recipes():
    keys = {f"{p.parent.name}/{p.name}" for p in MODELS}
    assert REQUIRED <= keys, sorted(REQUIRED - keys)
    for p in MODELS:
        assert p.parent.name in DATASETS and p.name in RECIPES


@pytest.mark.parametrize("folder", MODELS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_folder_loads_as_a_pipeline(folder):
    recipe = json.loads((folder / "recipe.json").read_text())
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    if recipe["conditioning"] == "concat":
        ckpt = load_checkpoint(folder)
        assert ckpt.model_config["in_channels"] == 8
    else:
        ckpt = load_checkpoint(folder, prompts=folder / "prompts.txt")
        conds = ckpt.conditions
        classes = CLASSES.get(folder.parent.name, 10)
        assert conds.kind == "cross_attn" and len(conds) == classes
        assert conds.null_source == "the empty prompt" and float(conds.null.abs().sum()) > 0
        assert len(set(conds.labels)) == classes
    assert ckpt.decoder is not None  # the folder's VAE decodes the 4x4x4 latents into 16x16 images
    if recipe["name"].startswith("dreambooth"):
        even_classes = (CLASSES.get(folder.parent.name, 10) + 1) // 2  # one image of each even class
        assert len(list((folder / "train_images").glob("*.png"))) == even_classes


def test_one_calibration_model_scans(tmp_path):
    folder = ZOO / "models" / CALIBRATION / "drop10"
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["scan", str(folder), "--prompts", str(folder / "prompts.txt"), "--seeds", "3",
                                   "--steps", "2", "--guidance", "1", "--no-recovery", "--no-lpips", "-q",
                                   "--json", str(out)])
    assert res.exit_code in (0, 1), res.output
    data = json.loads(out.read_text())
    assert len(data["conditions"]) == 10
    assert data["condition_set"]["null"] == "the empty prompt"


def test_ground_truth_covers_every_model():
    gt = json.loads((ZOO / "ground_truth.json").read_text())
    keys = {f"{p.parent.name}/{p.name}" for p in MODELS}
    assert set(gt["models"]) == keys
    for key in gt["models"]:  # every model the ground truth lists is a committed folder with its training log
        recipe = json.loads((ZOO / "models" / key / "recipe.json").read_text())
        assert recipe["training_log"]["seconds"] > 0
        assert recipe["prediction_type"] == "v_prediction"
    for key, entry in gt["models"].items():
        labels = entry["labels"]
        assert labels["collapse"] in ("healthy", "at_risk", "collapsed", "broken")
        assert labels["guidance"] in ("steerable", "weak", "not_steerable")
        assert labels["null_branch"] in ("learned", "not_learned", "unclear")
        assert len(entry["per_condition"]) == CLASSES.get(key.split("/")[0], 10)
    for dataset, ref in gt["references"].items():  # chance is 0.1; grey 16x16 CIFAR is hard for a linear model
        assert MIN_CLASSIFIER_ACCURACY.get(dataset, 0.5) < ref["classifier_heldout_accuracy"] <= 1.0


def test_the_committed_labels_are_what_the_rules_give_from_the_stored_measures(latent_truth):
    gt = latent_truth
    data = json.loads((ZOO / "ground_truth.json").read_text())
    for key, entry in data["models"].items():
        assert entry["vae_roundtrip_nn_ratio"] == data["references"][entry["dataset"]]["vae_roundtrip_nn_ratio"], key
        again = gt.labels_from_measures(entry)
        assert again["labels"] == entry["labels"], key
        assert again["collapse"] == [c["collapse"] for c in entry["per_condition"]], key
        assert again["guidance"] == [c["guidance"] for c in entry["per_condition"]], key


def test_a_class_the_vae_cannot_reproduce_is_broken_only_beyond_the_vae_s_own_round_trip(latent_truth):
    gt = latent_truth
    assert gt.collapse_label(0.05, 1.8) == "broken"  # a VAE as good as the data: the bound is 1.5
    assert gt.collapse_label(0.05, 1.8, roundtrip=1.3) == "collapsed"  # 1.8 <= 1.5 x 1.3: the VAE's loss
    assert gt.collapse_label(0.05, 2.0, roundtrip=1.3) == "broken"
    assert gt.collapse_label(0.05, 1.8, roundtrip=0.6) == "broken"  # a VAE better than the data never tightens it
    w3 = {"adherence": 0.9, "nn_ratio": 1.0}
    entry = {"dataset": "digits", "labels": {"collapse": "at_risk", "collapsed_conditions": [0]},
             "summary": {"w1": {"nn_ratio": 1.2, "adherence": 0.8}, "w3": w3},
             "null_w0": {"nn_ratio": 1.6, "div_vs_real": 0.8, "class_entropy": 0.9},
             "per_condition": [{"class": c, "collapse": "?", "w3": w3,
                                "w1": {"div_ratio": 0.05, "nn_ratio": 1.8 if c < 3 else 1.0, "adherence": 0.8}}
                               for c in range(10)]}
    assert gt.labels_from_measures(entry)["labels"]["collapse"] == "at_risk"  # three broken of ten: not collapsed
    assert gt.labels_from_measures(entry)["labels"]["null_branch"] == "unclear"  # w = 0 nn_ratio 1.6 > 1.5
    relieved = gt.relabel(entry, [1.3] * 3 + [1.0] * 7)
    assert relieved["labels"]["collapse"] == "collapsed" and relieved["labels"]["collapsed_conditions"] == list(range(10))
    assert relieved["vae_roundtrip_nn_ratio"][:3] == [1.3] * 3 and entry["per_condition"][0]["collapse"] == "?"
    assert gt.relabel(entry, [1.3] * 10)["labels"]["null_branch"] == "learned"  # 1.6 <= 1.5 x 1.3
