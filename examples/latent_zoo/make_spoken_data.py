"""Build ``data/spoken16.npz``, a latent-zoo holdout candidate, from the Free Spoken Digit Dataset: spectrograms of
English digits spoken by six people, eight of the ten digits.

The Free Spoken Digit Dataset (Jakobovski/free-spoken-digit-dataset, commit 26eb9aa; Creative Commons
Attribution-ShareAlike 4.0 International per its README) commits 3,000 WAV recordings, 8 kHz, mono, 16-bit PCM, each
one digit spoken by one of six speakers and trimmed to near minimal silence: ``recordings/<digit>_<speaker>_<n>.wav``,
50 a digit and speaker (``n`` 0-49). The WAV files are read with the standard library's ``wave`` (nothing is
unpickled).

    git -C free-spoken-digit-dataset archive 26eb9aa recordings | tar -x
    python examples/latent_zoo/make_spoken_data.py recordings

The builder takes eight digits, ``zero one two three four five seven nine`` (six and eight, the pair a logistic
regression on the 16x16 images confuses with each other most, are left out), and reads each digit's recordings in
the order ``n`` then speaker (the six speakers round-robin, in name order), so the first 150 are 25 a speaker. Each
recording, as float in [-1, 1), is cut into frames of WINDOW = 256 samples (32 ms, a Hann window) every HOP = 64
(8 ms); the power spectrum of each frame (129 bins, 31.25 Hz apart) is averaged into BANDS = 16 frequency bands of
equal width on the mel scale, 0-4 kHz (the lowest band 0-88 Hz, the highest 3.5-4 kHz), and the frames into 16 equal
time bins spanning the whole recording (``mat_images.area_weights``: fractional weights; the recordings are already
trimmed to the spoken word, 0.14-2.3 s, so each image spans one word from onset to end, and a digit's sound sequence
lands in about the same columns however fast it was said). The image is the power in decibels, clipped to the TOP_DB = 60
dB below its own brightest cell (a per-image range: the speakers recorded at different levels) and scaled to 0..255,
rounded half to even; row 0 is the highest band, row 15 the lowest (low frequencies at the bottom), column 0 the
start. An image that occurs under two digits is skipped, and so is one that repeats a kept image of its digit
(``mat_images.first_distinct_crops``); the first PER_CLASS = 150 of each digit are kept (1,200 in all). Output: ``x``
uint8 (1200, 16, 16); ``y`` uint8 (1200,) the digit's rank among the eight; ``classes`` the digits' English names.
The output is a derivative of the recordings and carries their CC BY-SA 4.0 licence, not the repository's MIT one.
"""
from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import area_weights, first_distinct_crops, folder_builder_main  # noqa: E402

#: (digit, class word), in class order
DIGITS = ((0, "zero"), (1, "one"), (2, "two"), (3, "three"), (4, "four"), (5, "five"), (7, "seven"), (9, "nine"))
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
TAKES = 50
PER_CLASS = 150
RATE = 8000
WINDOW = 256
HOP = 64
BANDS = 16
TOP_DB = 60.0
OUT = Path(__file__).resolve().parent / "data" / "spoken16.npz"


def read_wav(path: Path) -> np.ndarray:
    """float64 samples in [-1, 1) of the 16-bit mono RATE Hz WAV file ``path``; anything else is one line."""
    if not path.is_file():
        raise SystemExit(f"error: {path.name} is missing (pass the copy's recordings/ folder)")
    with wave.open(str(path), "rb") as w:
        form = (w.getnchannels(), w.getsampwidth(), w.getframerate())
        frames = w.readframes(w.getnframes())
    if form != (1, 2, RATE):
        raise SystemExit(f"error: {path.name} is {form[0]} channel(s), {8 * form[1]}-bit, {form[2]} Hz; "
                         f"the recordings are mono, 16-bit, {RATE} Hz")
    return np.frombuffer(frames, dtype="<i2").astype(np.float64) / 32768.0


def band_weights() -> np.ndarray:
    """(BANDS, WINDOW // 2 + 1): row b averages the power bins whose frequency lies in the b-th of BANDS bands of
    equal width on the mel scale (2595 log10(1 + f / 700)) from 0 to RATE / 2 (the top bin in the top band)."""
    mel_top = 2595.0 * np.log10(1.0 + RATE / 2 / 700.0)
    edges = 700.0 * (10.0 ** (np.linspace(0.0, mel_top, BANDS + 1) / 2595.0) - 1.0)
    freqs = np.arange(WINDOW // 2 + 1) * RATE / WINDOW
    band = np.minimum(np.searchsorted(edges, freqs, side="right") - 1, BANDS - 1)
    weights = (band[None, :] == np.arange(BANDS)[:, None]).astype(np.float64)
    return weights / weights.sum(axis=1, keepdims=True)


def spectrogram_16(samples: np.ndarray) -> np.ndarray:
    """uint8 (16, 16): the log-power spectrogram of ``samples`` (float, RATE Hz) in BANDS mel bands x 16 time bins,
    the TOP_DB dB below its brightest cell scaled to 0..255; low frequencies in the bottom row."""
    samples = np.pad(samples, (0, max(WINDOW - len(samples), 0)))
    frames = np.lib.stride_tricks.sliding_window_view(samples, WINDOW)[::HOP] * np.hanning(WINDOW)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (frames, bins)
    pooled = band_weights() @ power.T @ area_weights(len(frames)).T  # (bands, 16 time bins)
    db = 10.0 * np.log10(np.maximum(pooled, 1e-20))
    level = np.clip(db - db.max() + TOP_DB, 0.0, TOP_DB) / TOP_DB * 255.0
    return np.rint(level[::-1]).astype(np.uint8)


def select(root: Path):
    """(x uint8 (8 x PER_CLASS, 16, 16), y uint8) from ``root/<digit>_<speaker>_<n>.wav`` (the copy's
    ``recordings/``), each digit read in the order ``n`` then speaker."""
    if not root.is_dir():
        raise SystemExit(f"error: {root} is not a folder (pass the copy's recordings/ folder)")
    items = [(label, spectrogram_16(read_wav(root / f"{digit}_{speaker}_{n}.wav")))
             for label, (digit, _) in enumerate(DIGITS) for n in range(TAKES) for speaker in SPEAKERS]
    return first_distinct_crops(items, list(enumerate(word for _, word in DIGITS)), PER_CLASS, "digit")


def main(argv=None):
    folder_builder_main(__doc__, OUT, "the copy's recordings/ folder (<digit>_<speaker>_<n>.wav)", select, DIGITS,
                        argv)


if __name__ == "__main__":
    main()
