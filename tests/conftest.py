import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def _as_written(data):
    """A result dict as its JSON file holds it: non-finite floats written as null (report.jsonfile)."""
    import json

    from collapsecheck.report.jsonfile import json_ready

    return json.loads(json.dumps(json_ready(data), allow_nan=False))


@pytest.fixture(autouse=True)
def every_scan_result_validates(monkeypatch):
    """Every ScanResult.to_dict() the suite calls must validate against the shipped schema and
    round-trip through ScanResult.from_dict."""
    from collapsecheck.result import ScanResult, schema_errors

    original = ScanResult.to_dict

    def checked(self):
        data = original(self)
        errors = schema_errors(_as_written(data))
        assert not errors, f"the scan result breaks the schema: {errors[:3]}"
        assert ScanResult.from_dict(data) == self, "ScanResult.from_dict(r.to_dict()) != r"
        return data

    monkeypatch.setattr(ScanResult, "to_dict", checked)


def _example_module(folder: str, name: str):
    """examples/<folder>/ground_truth.py as a module loaded by path: three example folders have a
    ground_truth.py, so `import ground_truth` would get whichever was imported first."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "examples" / folder / "ground_truth.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def latent_truth():
    """examples/latent_zoo/ground_truth.py."""
    return _example_module("latent_zoo", "latent_ground_truth")


@pytest.fixture(scope="module")
def pixel_truth():
    """examples/zoo/ground_truth.py."""
    return _example_module("zoo", "pixel_ground_truth")


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory) -> Path:
    """The pixel zoo's training digits (examples/zoo/digits.py's train split) as PNG files, written once: the
    --data-images of examples/digits-healthy and examples/digits-decoder."""
    from helpers_witness import write_pngs

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "zoo"))
    from digits import load_split

    x = load_split("train")[0]
    folder = tmp_path_factory.mktemp("digits")
    write_pngs(x, folder, [f"d{i:04d}.png" for i in range(len(x))])
    return folder
