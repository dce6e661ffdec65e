"""Full scans of tiny flow-matching and EDM checkpoints (random weights) reach a verdict and say what the model is."""
import json

import pytest
from click.testing import CliRunner
from diffusers import EDMEulerScheduler, FlowMatchEulerDiscreteScheduler

from collapsecheck.cli import cli
from helpers_models import tiny_class_unet

SMALL = ["--seeds", "3", "--steps", "4", "--guidance", "0,1,3", "--no-lpips", "-q", "--fail-on", "never"]


@pytest.mark.parametrize("scheduler, expect", [
    (FlowMatchEulerDiscreteScheduler(shift=3.0), ("flow_velocity", "flow matching (FlowMatchEulerDiscreteScheduler, shift 3)")),
    (EDMEulerScheduler(prediction_type="v_prediction"), ("edm_v_prediction", "EDM (EDMEulerScheduler, v_prediction")),
])
def test_scan_of_a_flow_matching_or_edm_unet_reaches_a_verdict(tmp_path, scheduler, expect):
    tiny_class_unet(num_classes=3).save_pretrained(tmp_path / "unet")
    scheduler.save_pretrained(tmp_path / "scheduler")
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["scan", str(tmp_path), *SMALL, "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["verdict"] in ("healthy", "at_risk", "collapsed")
    assert data["guidance"]["verdict"] in ("steerable", "weak", "not_steerable")
    prediction, described = expect
    assert data["checkpoint"]["prediction_type"] == prediction
    assert described in data["checkpoint"]["scheduler_source"]
    assert "converted to VP v-prediction" in data["checkpoint"]["scheduler_source"]
    assert not any("assumed 'epsilon'" in n for n in data["checkpoint"]["notes"])
    profile = data["eps_profile"]
    assert profile[0]["timestep"] == 999 and profile[0]["alpha_bar"] < 2e-4  # sampling starts at pure noise
    assert data["posterior_profile"] and all(p["posterior_var"] == p["posterior_var"] for p in data["posterior_profile"])


def test_prediction_type_override_is_refused_for_flow_matching(tmp_path):
    tiny_class_unet(num_classes=2).save_pretrained(tmp_path / "unet")
    FlowMatchEulerDiscreteScheduler().save_pretrained(tmp_path / "scheduler")
    res = CliRunner().invoke(cli, ["scan", str(tmp_path), *SMALL, "--prediction-type", "epsilon"])
    assert res.exit_code == 2 and "does not apply" in res.output
