"""The seed papers' claims, checked on our results whichever way they come out.

"A beats B" means a lower mean SAD and a lower mean MSE over the same composites (the two pixel
accuracy measures every seed reports). A claim whose models were not all evaluated is "not
evaluated", never a pass.

Lightweight vs MSIA (seed 003: "comparable performance with 1 % of the parameters"): we call the
lightweight network close when its mean SAD is at most SAD_RATIO x MSIA's and it has at most
PARAMS_RATIO x MSIA's parameters. 1.25 because seed 003 calls its own 1.31x IndexNet's SAD (19.59 vs
14.97, its Table 1) only "slightly inferior", so within 25 % is a little stricter than the paper's own
sense of close; 0.5 because our MSIA is the narrow CPU configuration (1.26 M parameters, not the paper's
ResNeXt backbone), so the paper's 1 % cannot apply, and "a fraction of its size" should at least mean
less than half.

The thresholds issue 17 sets: the excited network at s = 2 must be at least EXCITE_GAIN below BGM's
SAD (seed 000 Table 1: 1.7123 against 2.0657, 17 % lower; 10 % asks for about two thirds of that), and
the lightweight network within NEAR_CLOSED_FORM x closed-form's SAD although it has no trimap (seed 003
reports it 6x better than closed form on Composition-1k; a CPU-trained copy is far from that, so 2x
is the bar for being useful beside a trimap).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

PASS, FAIL, NOT_EVALUATED = "pass", "fail", "not evaluated"
SAD_RATIO = 1.25
PARAMS_RATIO = 0.5
EXCITE_GAIN = 0.10
NEAR_CLOSED_FORM = 2.0
_BEATS = ("sad", "mse")


@dataclass(frozen=True)
class Claim:
    """key: short id. text: the claim as the seeds make it. models: the entries it needs.
    check(summary) -> (holds, the numbers behind it as text)."""

    key: str
    text: str
    models: tuple[str, ...]
    check: Callable[[dict[str, dict]], tuple[bool, str]]


def _beats(s: dict[str, dict], a: str, b: str) -> tuple[bool, str]:
    ok = all(s[a][k] < s[b][k] for k in _BEATS)
    return ok, f"{a} SAD {s[a]['sad']:.3f} MSE {s[a]['mse']:.5f} vs {b} SAD {s[b]['sad']:.3f} MSE {s[b]['mse']:.5f}"


def _beats_all(s: dict[str, dict], winners: tuple[str, ...], losers: tuple[str, ...]) -> tuple[bool, str]:
    results = [_beats(s, a, b) for a in winners for b in losers]
    return all(ok for ok, _ in results), "; ".join(text for _, text in results)


def _gains(s: dict[str, dict]) -> tuple[bool, str]:
    a, b = s["bgm_excite@s2"], s["bgm"]
    gain = 1 - a["sad"] / b["sad"] if b["sad"] else 0.0
    return gain >= EXCITE_GAIN and a["mse"] < b["mse"], (
        f"bgm_excite@s2 SAD {a['sad']:.3f} MSE {a['mse']:.5f} vs bgm SAD {b['sad']:.3f} MSE {b['mse']:.5f}: "
        f"SAD {100 * abs(gain):.1f} % {'lower' if gain >= 0 else 'higher'} (threshold {100 * EXCITE_GAIN:.0f} % lower)")


def _near_closed_form(s: dict[str, dict]) -> tuple[bool, str]:
    ratio = s["lightweight"]["sad"] / s["closed_form"]["sad"] if s["closed_form"]["sad"] else float("inf")
    return ratio <= NEAR_CLOSED_FORM, (f"SAD lightweight / closed_form = {s['lightweight']['sad']:.3f} / "
                                       f"{s['closed_form']['sad']:.3f} = {ratio:.2f} (threshold {NEAR_CLOSED_FORM})")


def _steadier(s: dict[str, dict]) -> tuple[bool, str]:
    a, b = s["bgm_excite@s2"]["sad_var"], s["bgm"]["sad_var"]
    return a < b, f"mean per-foreground SAD variance bgm_excite@s2 {a:.4g} vs bgm {b:.4g}"


def _close(s: dict[str, dict]) -> tuple[bool, str]:
    sad = s["lightweight"]["sad"] / s["msia"]["sad"] if s["msia"]["sad"] else float("inf")
    params = s["lightweight"]["params"] / s["msia"]["params"]
    return sad <= SAD_RATIO and params <= PARAMS_RATIO, (
        f"SAD lightweight / msia = {s['lightweight']['sad']:.3f} / {s['msia']['sad']:.3f} = {sad:.2f} "
        f"(threshold {SAD_RATIO}); params {s['lightweight']['params']:,} / {s['msia']['params']:,} = "
        f"{params:.2f} (threshold {PARAMS_RATIO})")


CLAIMS: tuple[Claim, ...] = (
    Claim("dcnn_beats_inputs", "DCNN beats both of its inputs, closed-form and KNN matting (seed 004)",
          ("dcnn", "closed_form", "knn"), lambda s: _beats_all(s, ("dcnn",), ("closed_form", "knn"))),
    Claim("plate_beats_key", "the plate networks (bgm, bgm_excite@s2) beat the plate-difference key they "
          "take as their soft segmentation", ("bgm", "bgm_excite@s2", "difference"),
          lambda s: _beats_all(s, ("bgm", "bgm_excite@s2"), ("difference",))),
    Claim("excite_beats_bgm", f"bgm_excite at s = 2 beats BGM, its SAD at least {100 * EXCITE_GAIN:.0f} % lower "
          f"(seed 000 Table 1)", ("bgm_excite@s2", "bgm"), _gains),
    Claim("excite_steadier", "bgm_excite at s = 2 varies less across backgrounds than BGM (seed 000 Table 2)",
          ("bgm_excite@s2", "bgm"), _steadier),
    Claim("s2_best", "s = 2 beats s = 1 and s = 3 (seed 000 Table 1)",
          ("bgm_excite@s1", "bgm_excite@s2", "bgm_excite@s3"),
          lambda s: _beats_all(s, ("bgm_excite@s2",), ("bgm_excite@s1", "bgm_excite@s3"))),
    Claim("plate_beats_trimap_free", "the plate models (bgm, bgm_excite@s2) beat the trimap-free ones "
          "(msia, lightweight)", ("bgm", "bgm_excite@s2", "msia", "lightweight"),
          lambda s: _beats_all(s, ("bgm", "bgm_excite@s2"), ("msia", "lightweight"))),
    Claim("lightweight_close_to_msia", f"the lightweight network stays close to MSIA (SAD within "
          f"{SAD_RATIO}x) at a fraction of its size (at most {PARAMS_RATIO}x the parameters) (seed 003)",
          ("lightweight", "msia"), _close),
    Claim("lightweight_near_closed_form", f"the trimap-free lightweight network within {NEAR_CLOSED_FORM:g}x "
          f"closed-form matting's SAD, closed-form given the trimap (seed 003)", ("lightweight", "closed_form"),
          _near_closed_form),
)


def check(summary: dict[str, dict], claims: tuple[Claim, ...] = CLAIMS) -> list[dict]:
    """Each claim as {"key", "claim", "models", "status": pass / fail / not evaluated, "detail"}.

    summary: model entry -> {"sad", "mse", "sad_var", "params", ...} (results.summarise plus params)."""
    out = []
    for c in claims:
        missing = [m for m in c.models if m not in summary]
        if missing:
            status, detail = NOT_EVALUATED, f"no results for {', '.join(missing)}"
        else:
            holds, detail = c.check(summary)
            status = PASS if holds else FAIL
        out.append({"key": c.key, "claim": c.text, "models": list(c.models), "status": status, "detail": detail})
    return out
