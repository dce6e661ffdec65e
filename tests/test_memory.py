"""Bounded memory: the built-in adherence in chunks (same numbers as the (V, C, S, C, D) formula), default
class subsets for large label sets."""
from __future__ import annotations

import pytest
import torch

from collapsecheck.measure import adherence as A


def _direct_adherence(samples: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The formula centroid_adherence had before chunking: a (V, C, S, C, D) difference tensor."""
    V, C, S = samples.shape[:3]
    centroids = reference.reshape(C, S, -1).double().mean(1)
    flat = samples.reshape(V, C, S, -1).double()
    d2 = (flat.unsqueeze(-2) - centroids.view(1, 1, 1, C, -1)).pow(2).sum(-1)
    return (d2.argmin(-1) == torch.arange(C).view(1, C, 1)).double().mean(-1)


@pytest.mark.parametrize("shape", [(3, 4, 5, (3, 8, 8)), (2, 7, 3, (1, 5, 5)), (1, 3, 4, (2, 3, 3))])
@pytest.mark.parametrize("chunk", [1, 7, 2 ** 22])
def test_chunked_adherence_equals_the_direct_formula(monkeypatch, shape, chunk):
    V, C, S, dims = shape
    g = torch.Generator().manual_seed(V * 100 + C)
    ref = torch.randn((C, S) + dims, generator=g)
    # samples near their own centroid, some near another one, so that the scores are not all 0 or 1
    samples = ref.unsqueeze(0) + 3.0 * torch.randn((V, C, S) + dims, generator=g)
    monkeypatch.setattr(A, "ADHERENCE_CHUNK_ELEMENTS", chunk)
    got = A.centroid_adherence(samples, ref)
    assert torch.equal(got, _direct_adherence(samples, ref))
    assert 0.0 < float(got.mean()) < 1.0


def test_collapsed_identical_centroids_tie_to_the_first_like_the_direct_formula(monkeypatch):
    ref = torch.ones(3, 4, 1, 2, 2)  # every condition the same image: equal centroids
    samples = torch.ones(2, 3, 4, 1, 2, 2)
    monkeypatch.setattr(A, "ADHERENCE_CHUNK_ELEMENTS", 4)
    assert torch.equal(A.centroid_adherence(samples, ref), _direct_adherence(samples, ref))


def test_adherence_block_stays_within_the_chunk_budget(monkeypatch):
    """No block of the computation is larger than the budget, however many conditions: record the blocks."""
    seen = []
    real = A.nearest_centroid

    def spy(rows, centroids):
        seen.append(rows.shape[0] * rows.shape[1])
        return real(rows, centroids)

    monkeypatch.setattr(A, "nearest_centroid", spy)
    monkeypatch.setattr(A, "ADHERENCE_CHUNK_ELEMENTS", 4096)
    C, S, D = 64, 4, 16
    A.centroid_adherence(torch.randn(2, C, S, 1, 4, 4), torch.randn(C, S, 1, 4, 4))
    assert sum(seen) == 2 * C * S * D
    assert max(seen) * C <= 4096 or max(seen) == D  # rows x centroids x pixels within budget (or one row)


# ------------------------------------------------------------------------------------ devices


@pytest.mark.parametrize("name", ["cpu", "auto", "cuda", "cuda:0", "cuda:12", "mps"])
def test_device_names_parse(name):
    from collapsecheck import make_config

    assert make_config(checkpoint="x", device=name).device == name


@pytest.mark.parametrize("name", ["cuda:", "cuda:x", "gpu", "cuda1", "cuda:-1"])
def test_bad_device_names_are_usage_errors(name):
    from collapsecheck import make_config
    from collapsecheck.errors import UsageError

    with pytest.raises(UsageError, match="device"):
        make_config(checkpoint="x", device=name)


def _cli(*args, env_extra=None):
    import os
    import subprocess
    import sys

    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "collapsecheck", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
@pytest.mark.parametrize("device, says", [("cuda:1", "no CUDA device"), ("cuda", "no CUDA device"),
                                          ("mps", "no MPS device")])
def test_a_missing_device_is_a_one_line_usage_error(device, says):
    proc = _cli("scan", "examples/digits-healthy", "--device", device, "--no-lpips")
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0] and f"--device {device}" in lines[0], proc.stderr


def test_cuda_index_beyond_the_devices_is_a_usage_error(monkeypatch):
    from collapsecheck.errors import UsageError
    from collapsecheck.run import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(UsageError, match=r"--device cuda:2: this machine has 2 CUDA devices \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2")


# ------------------------------------------------------------------------------------ class subsets


def test_large_label_sets_get_an_evenly_spaced_default_subset():
    from collapsecheck.load.classes import CLASS_SUBSET_LIMIT, class_conditions
    from collapsecheck.load.conditions import describe

    conds = class_conditions(1001)  # DiT: 1000 classes, the null is index 1000
    ids = conds.values.tolist()
    assert len(ids) == CLASS_SUBSET_LIMIT == 32
    assert ids[0] == 0 and ids[1] - ids[0] == 31 and ids[-1] == 968 and 1000 not in ids
    assert conds.complete is False and conds.complete_set() is conds  # the null probe stays on the subset
    d = describe(conds)
    assert d["subset_of"] == 1000 and "32 of the 1000 classes" in d["source"] and "--classes all" in d["source"]
    assert any("--classes all" in n for n in conds.notes)


def test_classes_all_and_small_label_sets_scan_every_class():
    from collapsecheck.load.classes import class_conditions
    from collapsecheck.load.conditions import describe

    every = class_conditions(1001, "all")
    assert every.values.tolist() == list(range(1000)) and every.complete and every.source == "--classes all"
    small = class_conditions(33)  # 32 classes and the null: every class, as before
    assert small.values.tolist() == list(range(32)) and small.source == "all classes"
    assert "subset_of" not in describe(small)
    named = class_conditions(1001, "3,500")
    assert named.values.tolist() == [3, 500] and named.complete_set().values.shape[0] == 1000


def _dit_pipeline(root, classes: int):
    import json

    from diffusers import DDIMScheduler, DiTTransformer2DModel
    from helpers_models import _seeded
    from helpers_pipeline import tiny_vae

    _seeded(0, lambda: DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2, sample_size=8,
        patch_size=2, num_embeds_ada_norm=classes)).save_pretrained(root / "transformer")
    DDIMScheduler().save_pretrained(root / "scheduler")
    tiny_vae().save_pretrained(root / "vae")
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "DiTPipeline", "transformer": ["diffusers", "DiTTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "DDIMScheduler"]}))
    return root


def _limit_address_space():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (8 * 2 ** 30, 8 * 2 ** 30))


def test_a_1000_class_dit_scans_with_the_defaults_in_8_gb_and_reports_its_subset(tmp_path):
    import json
    import os
    import subprocess
    import sys

    # the defaults but 5 steps (steps change the time, not what grows: the conditions are the default
    # subset, the seeds, scales, LPIPS, posterior and recovery probes the defaults); with all 25 steps it
    # passes too, in about 5 minutes on 2 cores
    root = _dit_pipeline(tmp_path / "dit", 1000)
    out = tmp_path / "r.json"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-m", "collapsecheck", "scan", str(root), "--steps", "5", "--json", str(out)],
                          capture_output=True, text=True, env=env, preexec_fn=_limit_address_space, timeout=1200)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["condition_set"]["count"] == 32 and data["condition_set"]["subset_of"] == 1000
    assert len(data["conditions"]) == 32 and data["conditions"][1]["label"] == "class 31"
    assert any("--classes all" in n for n in data["checkpoint"]["notes"])
    assert "32 of the 1000 classes" in proc.stdout


# ------------------------------------------------------------------------------------ out-of-memory recovery


def _simulate_out_of_memory(monkeypatch, forward_above=None, decode_above=None):
    """The network (and the VAE) raise CUDA's out-of-memory error on a batch larger than the limit."""
    from collapsecheck.load.vae import LatentDecoder
    from collapsecheck.model.denoiser import Denoiser

    tries = []

    def limited(original, above, what):
        def call(self, x, *args, **kwargs):
            tries.append((what, x.shape[0]))
            if x.shape[0] > above:
                raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {x.shape[0]} GiB")
            return original(self, x, *args, **kwargs)
        return call

    if forward_above:
        monkeypatch.setattr(Denoiser, "__call__", limited(Denoiser.__call__, forward_above, "forward"))
    if decode_above:
        monkeypatch.setattr(LatentDecoder, "__call__", limited(LatentDecoder.__call__, decode_above, "decode"))
    return tries


def _scan_json(root, tmp_path, name, *args):
    import json

    from click.testing import CliRunner

    from collapsecheck.cli import cli

    out = tmp_path / f"{name}.json"
    res = CliRunner().invoke(cli, ["scan", str(root), "--seeds", "3", "--steps", "3", "--guidance", "0,1,3",
                                   "--no-lpips", "-q", "--json", str(out), *args])
    assert res.exit_code in (0, 1), res.output
    return json.loads(out.read_text())


def _numbers(data: dict) -> dict:
    """The result without what may differ between two runs of one scan: times, the batch and its note."""
    skip = {"created", "seconds", "batch_size_used", "config"}
    kept = {k: v for k, v in data.items() if k not in skip}
    kept["checkpoint"] = {k: v for k, v in data["checkpoint"].items() if k != "notes"}
    return kept


def test_out_of_memory_halves_the_batch_and_gives_the_numbers_of_that_batch(tmp_path, monkeypatch):
    root = _dit_pipeline(tmp_path / "dit", 3)
    reference = _scan_json(root, tmp_path, "small", "--batch-size", "4", "--recovery")
    tries = _simulate_out_of_memory(monkeypatch, forward_above=4)
    halved = _scan_json(root, tmp_path, "halved", "--batch-size", "16", "--recovery")
    # batches above 4 ran out and 4 fit (the main grid runs in units of conditions, so its first forward may be
    # smaller than --batch-size: collapsecheck.units)
    assert any(kind == "forward" and n > 4 for kind, n in tries) and ("forward", 4) in tries
    assert halved["batch_size_used"] == 4 and reference["batch_size_used"] == 4
    assert halved["config"]["batch_size"] == 16
    # the first stage that ran out says so (the null-branch probe runs before the units are sampled)
    assert any(" at batch size 16: halved to 4" in n for n in halved["checkpoint"]["notes"]), halved["checkpoint"]["notes"]
    assert not any("out of memory" in n for n in reference["checkpoint"]["notes"])
    assert _numbers(halved) == _numbers(reference)


def test_a_decoder_out_of_memory_halves_the_decoding_batch(tmp_path, monkeypatch):
    root = _dit_pipeline(tmp_path / "dit", 3)
    reference = _scan_json(root, tmp_path, "small", "--batch-size", "2")
    tries = _simulate_out_of_memory(monkeypatch, forward_above=2, decode_above=1)
    halved = _scan_json(root, tmp_path, "halved", "--batch-size", "2")
    assert ("decode", 2) in tries and ("decode", 1) in tries
    assert halved["batch_size_used"] == 1
    assert any("while decoding the samples at batch size 2: halved to 1" in n for n in halved["checkpoint"]["notes"])
    # the VAE's convolutions round differently at another batch size (CPU: about 1e-8 relative): the
    # verdicts and reasons are the same, the numbers equal to float32 rounding
    got, want = _flat(_numbers(halved)), _flat(_numbers(reference))
    assert [k for k, _ in got] == [k for k, _ in want]
    for (key, a), (_, b) in zip(got, want):
        if isinstance(a, float) and isinstance(b, float):
            # the implicit classifier's contrast is a difference of near-equal errors: float32 rounding of ~1e-7
            # in the network's outputs is amplified by 1 / contrast (about 100 here)
            rel = 1e-4 if key.rsplit(".", 1)[-1].startswith("null_") else 1e-6
            assert a == pytest.approx(b, rel=rel, abs=1e-9), key
        elif not key.endswith(("reasons", "value", "recommendations")) and "reasons." not in key:
            assert a == b, key


def _flat(value, key=""):
    """(dotted key, leaf) pairs of a JSON value."""
    if isinstance(value, dict):
        return [pair for k in sorted(value) for pair in _flat(value[k], f"{key}.{k}")]
    if isinstance(value, list):
        return [pair for i, v in enumerate(value) for pair in _flat(v, f"{key}.{i}")]
    return [(key, value)]


# ------------------------------------------------------------------------------------ --dry-run


def test_dry_run_counts_the_nfe_the_scan_spends_and_samples_nothing(tmp_path, monkeypatch):
    import json
    import re

    from click.testing import CliRunner

    from collapsecheck import stages
    from collapsecheck.cli import cli

    root = _dit_pipeline(tmp_path / "dit", 3)
    args = ["scan", str(root), "--seeds", "3", "--steps", "4", "--guidance", "0,1,3", "--no-lpips", "--no-posterior",
            "--batch-size", "8"]
    out = tmp_path / "r.json"
    scanned = CliRunner().invoke(cli, [*args, "--no-recovery", "-q", "--json", str(out)])
    assert scanned.exit_code in (0, 1), scanned.output
    nfe = json.loads(out.read_text())["nfe"]

    def no_sampling(*a, **k):
        raise AssertionError("--dry-run sampled")

    monkeypatch.setattr(stages, "sample_grid", no_sampling)
    res = CliRunner().invoke(cli, [*args, "--no-recovery", "--dry-run"])
    assert res.exit_code == 0, res.output
    total = int(re.search(r"NFE in all \(recovery probes included\): ([\d,]+)", res.output).group(1).replace(",", ""))
    assert total == nfe
    assert re.search(r"memory for a batch of 8: [\d.,]+ MiB \(estimated", res.output)
    assert re.search(r"time: [\d.]+ s per batch of 8 -> about [\d,]+ s", res.output)
    assert "no verdict" in res.output and "verdict:" not in res.output.lower().replace("no verdict", "")
    with_recovery = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert "NFE recovery probes (if not healthy): " in with_recovery.output


def test_dry_run_out_of_memory_exits_4_naming_the_batch(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from collapsecheck.cli import cli

    root = _dit_pipeline(tmp_path / "dit", 3)
    _simulate_out_of_memory(monkeypatch, forward_above=4)
    res = CliRunner().invoke(cli, ["scan", str(root), "--batch-size", "8", "--dry-run", "--no-lpips"])
    assert res.exit_code == 4
    assert "out of memory while running one batch for --dry-run with --batch-size 8" in res.output
