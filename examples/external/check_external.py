"""Scan the external models with collapsecheck (full and fast mode) and compare with the ground truth.

    python examples/external/check_external.py [--work /tmp/collapsecheck-external] [--modes full fast]
                                               [--only NAME ...] [--reuse] [--json OUT] [-- extra scan options]

For each model of external_models.py: extracts the authors' code and checkpoint (external_models.prepare; the
fine-tunes of FINETUNES are made by finetune_external.py where missing, and scanned with ``--reference`` to their
base unless ``--no-reference``),
runs ``python -m collapsecheck scan CHECKPOINT --model WRAPPER:build --device cpu --json ... -q
--fail-on never`` (WRAPPER: blaise_flow.py, sofia_latent.py or sofia_pixel.py, the model's own; plus ``--mode fast`` for the fast row) on one CPU
thread, reads the three verdicts from the JSON and prints them beside examples/external/ground_truth.json
(brute force with the authors' sampler, computed by ground_truth.py).  Exit status 0 whatever the
agreement (it is a measurement, not a gate); 2 when a scan itself failed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

import external_models as em  # noqa: E402

AXES = ("collapse", "null_branch", "guidance")


def child_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def scan(checkpoint: Path, mode: str, out: Path, extra: list[str], reuse: bool = False,
         wrapper: Path = em.WRAPPER) -> tuple[dict, float]:
    """The scan's JSON and the CPU seconds it took (NaN when reused)."""
    if reuse and out.is_file():
        return json.loads(out.read_text()), float("nan")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               BLAISE_REPO=str(checkpoint.parent / "checkout"), SOFIA_REPO=str(checkpoint.parent / "sofia-checkout"),
               SOFIA_VAE=str(checkpoint.parent / "sofia-vae.pth"), SOFIA_HEAD_REPO=str(checkpoint.parent / "sofia-head"))
    cmd = [sys.executable, "-m", "collapsecheck", "scan", str(checkpoint), "--model", f"{wrapper}:build",
           "--device", "cpu", "--mode", mode, "--json", str(out), "-q", "--fail-on", "never", *extra]
    t0 = child_cpu_seconds()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"scan failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}", file=sys.stderr)
        raise SystemExit(2)
    return json.loads(out.read_text()), child_cpu_seconds() - t0


def verdicts(result: dict) -> dict:
    g = result["guidance"]
    return {"collapse": result["verdict"], "null_branch": g["null_branch"]["verdict"], "guidance": g["verdict"]}


def truth(name: str) -> dict:
    path = HERE / "ground_truth.json"
    entry = json.loads(path.read_text())["models"].get(name, {}) if path.is_file() else {}
    return {"collapse": entry.get("gt_collapse"), "null_branch": entry.get("gt_null_branch"),
            "guidance": entry.get("gt_guidance")}


def cell(got: str, want) -> str:
    if want is None:
        return f"{got} (no truth)"
    return got if got == want else f"**{got}** (truth {want})"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/collapsecheck-external"))
    p.add_argument("--modes", nargs="+", default=["full", "fast"], choices=["full", "fast"])
    p.add_argument("--only", nargs="*", default=None)
    p.add_argument("--json", type=Path, default=None, help="write the table as JSON here")
    p.add_argument("--reuse", action="store_true", help="compare the scan JSONs already in --work, scan only those missing")
    p.add_argument("--no-reference", action="store_true",
                   help="scan the fine-tunes (finetune_external.py) without --reference to their base")
    p.add_argument("extra", nargs="*", help="extra scan options, after --")
    a = p.parse_args(argv)
    models = [m for m in em.ALL_MODELS if not a.only or m.name in a.only]
    if any(m in em.MODELS for m in models):
        em.prepare(a.work)
    if any(m in em.SOFIA_MODELS for m in models):
        em.prepare_sofia(a.work)
    if any(m in em.FINETUNES for m in models):
        from finetune_external import prepare_finetunes

        prepare_finetunes(a.work, [m.name for m in models])
    print("| model | mode | collapse | null branch | guidance | scan CPU |\n| --- | --- | --- | --- | --- | ---: |")
    rows, agree, total, t_all, cpu_all = [], 0, 0, time.time(), 0.0
    for m in models:
        want = truth(m.name)
        for mode in a.modes:
            extra = a.extra + (["--reference", str(a.work / f"{m.base}.pth")] if m.base and not a.no_reference else [])
            result, seconds = scan(a.work / m.filename, mode, a.work / f"{m.name}-{mode}.json", extra, a.reuse,
                                   m.wrapper)
            got = verdicts(result)
            ok = [got[k] == want[k] for k in AXES if want[k] is not None]
            agree, total = agree + sum(ok), total + len(ok)
            rows.append({"model": m.name, "mode": mode, "scan": got, "truth": want, "cpu_seconds": round(seconds, 1),
                         "reasons": result["reasons"][:2]})
            print(f"| `{m.name}` | {mode} | " + " | ".join(cell(got[k], want[k]) for k in AXES)
                  + (" | reused |" if seconds != seconds else f" | {seconds:.0f} s |"), flush=True)
            cpu_all += 0 if seconds != seconds else seconds
    print(f"\nagreement: {agree}/{total} verdicts; scans {cpu_all:.0f} CPU s (one thread each), "
          f"{time.time() - t_all:.0f} s wall in all")
    if a.json:
        a.json.write_text(json.dumps({"rows": rows, "agreement": [agree, total]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
