"""What each per-condition number of a scan result means: its direction and how it was computed (shown
beside the numbers in every report, and in the result's ``measures``)."""

#: what each per-condition number means: its direction and how it was computed
MEASURES = {
    "pixel_rms": {
        "direction": "higher = more diverse",
        "method": "mean over seed pairs of the RMS pixel distance between final samples, clipped to [-1, 1] as images",
    },
    "pixel_std": {
        "direction": "higher = more diverse",
        "method": "standard deviation across seeds (ddof = 1) at each pixel, averaged over pixels",
    },
    "near_duplicates": {
        "direction": "higher = less diverse",
        "method": "fraction of seed pairs whose RMS pixel distance is below thresholds.near_duplicate_rms",
    },
    "seed_share": {
        "direction": "higher = more diverse",
        "method": "per-pixel variance across this condition's seeds / the grid's variance (mean within-condition "
                  "variance plus the conditions' between variance less its sampling part: a one-way analysis of "
                  "variance) (1: the condition leaves the seed's spread alone; 0: the seed no longer matters; never "
                  "negative, at most 1 on average over the conditions); null with fewer than two conditions",
    },
    "lpips": {
        "direction": "higher = more diverse",
        "method": "mean over seed pairs of LPIPS (net named in lpips.net); null when LPIPS is unavailable",
    },
    "vendi": {
        "direction": "higher = more diverse content",
        "method": "Vendi score (Friedman & Dieng 2023) of the seeds' --features embeddings: exp of the entropy of the "
                  "eigenvalues of K/n, K their cosine-similarity kernel; in [1, seeds]; null without --features",
    },
    "eps_ratio": {
        "direction": "higher = the condition pulls harder",
        "method": "||eps_c - eps_null|| / ||eps_null|| along the sampling trajectories at the verdict scale, "
                  "mean over steps and seeds",
    },
    "eps_cos": {
        "direction": "informational",
        "method": "cosine between eps_c - eps_null and eps_null, mean over steps and seeds",
    },
}


#: the null ratio's bootstrap: a resample whose wrong-condition gap is not positive has no ratio (infinite); the
#: interval's quantiles are taken with such resamples clamped here, so a bound at the clamp is no bound at all
RATIO_CLAMP = 1e12


def interval_text(low: float, high: float) -> str:
    """The null ratio's 95% interval as reports write it: a bound at RATIO_CLAMP is written as infinite, with why,
    not as the clamp's number."""
    def bound(x: float) -> str:
        return ("-inf" if x < 0 else "inf") if abs(x) >= RATIO_CLAMP else f"{x:.3g}"
    unbounded = max(abs(low), abs(high)) >= RATIO_CLAMP
    return f"[{bound(low)}, {bound(high)}]" + (" (unbounded: in some resamples a wrong condition explained the "
                                               "samples as well as their own)" if unbounded else "")
