"""The report folder (``scan --report-dir DIR``): every renderer's output, written all at once.

Files are written into a temporary folder beside DIR and moved into place only when all of them
are written, so a failing scan or renderer leaves nothing half-written. DIR may already exist:
files of the same names are replaced, others are left alone.
"""
from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping, Union

from ..errors import UsageError
from ..result import ScanResult

#: kind -> file name inside the report folder
FILES = {
    "html": "index.html",
    "markdown": "summary.md",
    "json": "scan.json",
    "contact_sheet": "contact_sheet.png",
    "guidance": "guidance_sweep.png",
    "eps_profile": "eps_profile.png",
    "posterior": "posterior_variance.png",
    "reference_sheet": "reference_side_by_side.png",
}


def png_bytes(image) -> bytes:
    """A PIL image or a matplotlib Figure as PNG bytes."""
    if hasattr(image, "savefig"):
        from .figure import figure_png

        return figure_png(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def render_images(result: ScanResult) -> dict[str, bytes]:
    """kind -> PNG bytes: the contact sheet (when the result carries samples) and the charts."""
    from .images import contact_sheet
    from .plots import eps_profile_chart, guidance_chart, posterior_chart

    images = {}
    if result.samples is not None:
        images["contact_sheet"] = png_bytes(contact_sheet(result)[0])
    images["guidance"] = png_bytes(guidance_chart(result))
    images["eps_profile"] = png_bytes(eps_profile_chart(result))
    from .witnesses import side_by_side

    sheet = side_by_side(result)  # --reference: the base model's samples beside this model's
    if sheet is not None:
        images["reference_sheet"] = png_bytes(sheet)
    posterior = getattr(result, "posterior_profile", None)
    if posterior:
        chart = posterior_chart(posterior, (result.config or {}).get("thresholds"))
        if chart is not None:
            images["posterior"] = png_bytes(chart)
    return images


def report_files(result: ScanResult) -> dict[str, Union[str, bytes]]:
    """File name -> content of the whole report folder."""
    from .html import to_html
    from .jsonfile import to_json
    from .markdown import summary_markdown

    images = render_images(result)
    files: dict[str, Union[str, bytes]] = {FILES[k]: v for k, v in images.items()}
    files[FILES["json"]] = to_json(result)
    files[FILES["markdown"]] = summary_markdown(result, {k: FILES[k] for k in images})
    files[FILES["html"]] = to_html(result, images)
    return files


def write_bytes_atomic(path: Union[str, Path], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`report_json.write_atomic`)."""
    from .jsonfile import write_atomic

    write_atomic(path, data)


def check_report_dir(path: Union[str, Path], flag: str = "--report-dir") -> None:
    """Fail before any heavy work when the folder cannot be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: it is a file; give a folder (it may exist)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.is_dir() and not os.access(path, os.W_OK)):
        raise UsageError(f"{flag} {path}: not writable")


def write_files_atomically(folder: Union[str, Path], files: Mapping[str, Union[str, bytes]]) -> list[Path]:
    """Write ``files`` (name -> text or bytes) into ``folder`` via a temporary folder beside it."""
    folder = Path(folder)
    check_report_dir(folder, "report folder")
    parent = folder.parent if str(folder.parent) else Path(".")
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        for name, content in files.items():
            target = tmp / name
            if isinstance(content, str):
                target.write_text(content, encoding="utf-8")
            else:
                target.write_bytes(content)
        if not folder.exists():
            try:
                os.rename(tmp, folder)
                return [folder / name for name in files]
            except OSError:  # created meanwhile: move file by file below
                pass
        for name in files:
            os.replace(tmp / name, folder / name)
        tmp.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [folder / name for name in files]


def write_report_dir(result: ScanResult, folder: Union[str, Path]) -> list[Path]:
    """Render every report for ``result`` and write them into ``folder``; the paths written."""
    return write_files_atomically(folder, report_files(result))
