"""Fit the pooling's constants on permissive data, and measure them where nothing was fitted.

    .venv/bin/python scripts/chip_features.py ../shared/data/fairface_540 out/features/fairface
    .venv/bin/python scripts/chip_features.py ../shared/data/utkface_eval out/features/utkface
    .venv/bin/python scripts/video_features.py tests/data/video_set/labels.json out/video_features
    .venv/bin/python scripts/fit_pooling.py --out out/fit

Fitted on FairFace 540's fit half (clean and degraded chips): the gender temperature and its
growth with small and blurred faces, the age correction and range. Fitted on appearances (the
synthetic FairFace tracks of the fit half and the real clips, each real clip's figures with rho
and the threshold fitted on the other clips: leave-one-video-out): rho and the least gender
score. UTKFace and FairFace's held-out half are only measured. Prints the constants for
analyzer/analysis/pooling.py and models/weights.py and writes ``report.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.analysis import calibration as cal
from analyzer.analysis.pooling import Pooling
from analyzer.evaluation import evalset, videoset
from analyzer.evaluation.degrade import VIDEO_LEVELS
from models.cydral import AGE_CLASSES

LEVELS = ("clean", *(level.name for level in VIDEO_LEVELS))
CLASSES = np.asarray(AGE_CLASSES)
TARGET = 0.95  # share right wanted among the answered appearances
# A 95 % Wilson bound cannot reach 0.95 on the ~90 appearances there are (it needs ~60 answers in a
# row without a miss), so the threshold is where the measured share reaches it, on at least this many
LEAST_ANSWERED = 20
OLD_TEMPERATURE, OLD_MIN_SCORE = 2.6, 81.0  # the constants before this fit (UTKFace, one face at a time)


def load_chips(prefix: str) -> dict[str, dict[str, np.ndarray]]:
    """level -> arrays of the detected faces (scripts/chip_features.py's files)."""
    chips = {}
    for level in LEVELS:
        if not Path(f"{prefix}-{level}.npz").is_file():
            print(f"{prefix}-{level}.npz missing: left out")
            continue
        data = dict(np.load(f"{prefix}-{level}.npz"))
        keep = data["found"]
        chips[level] = {name: values[keep] for name, values in data.items()}
    return chips


def joined(chips: dict[str, dict[str, np.ndarray]], half: bool | None) -> dict[str, np.ndarray]:
    """All levels' faces in one set of arrays; ``half`` True/False: the fit/held-out half only."""
    parts = []
    for arrays in chips.values():
        rows = np.ones(len(arrays["found"]), bool) if half is None else arrays["fit_half"] == half
        parts.append({name: values[rows] for name, values in arrays.items()})
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]} if parts else {}


def label_years(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) label years of scripts/chip_features.py's arrays (``evalset.label_years``)."""
    return evalset.label_years(arrays["age"], arrays["bin"])


def face_report(arrays: dict[str, np.ndarray], pooling: Pooling, temperature: float) -> dict[str, Any]:
    """Per-face figures: gender accuracy, ECE, accuracy at 80 % coverage, age MAE (exact ages),
    age-bin accuracy, and per FairFace bin the range's coverage."""
    z = pooling.face_log_odds(arrays["gender_logit"] / temperature, arrays["face_px"], arrays["sharpness"])
    says_male, confidence = cal.gender_confidence(cal.sigmoid(z))
    right = says_male == arrays["is_male"]
    age, low, high = pooling.age.estimate(arrays["age_probs"], CLASSES)
    predicted_bin = np.array([evalset.fairface_bin(a) for a in age])
    label_low, label_high = label_years(arrays)
    truth = cal.imputed_ages(label_low, label_high)
    inside = ((truth >= low[:, None]) & (truth < high[:, None] + 1)).mean(axis=1)
    exact = np.isfinite(arrays["age"])
    by_bin = {}
    for label in evalset.FAIRFACE_BINS:
        rows = arrays["bin"] == label
        if rows.any():
            by_bin[label] = {
                "faces": int(rows.sum()),
                "gender": round(float(right[rows].mean()), 3),
                "bin_accuracy": round(float(np.mean(predicted_bin[rows] == label)), 3),
                "age_mae": round(float(np.mean(np.abs(age - arrays["age"])[rows & exact])), 2)
                if (rows & exact).any()
                else None,
                "range_holds": round(float(inside[rows].mean()), 3),
                "range_width": round(float(np.mean(high[rows] - low[rows])), 1),
            }
    return {
        "faces": int(len(z)),
        "gender_accuracy": round(float(right.mean()), 4),
        "accuracy_at_80_coverage": round(cal.accuracy_at_coverage(confidence, right, 0.8), 4),
        "ece_points": round(cal.expected_calibration_error(confidence, right), 2),
        "age_mae": round(float(np.mean(np.abs(age - arrays["age"])[exact])), 2) if exact.any() else None,
        "age_mae_over_60": round(float(np.mean(np.abs(age - arrays["age"])[exact & (arrays["age"] >= 60)])), 2)
        if (exact & (arrays["age"] >= 60)).any()
        else None,
        "bin_accuracy": round(float(np.mean(predicted_bin == arrays["bin"])), 3),
        "range_holds": round(float(inside.mean()), 3),
        "by_bin": by_bin,
        "_confidence": confidence,
        "_right": right,
    }


def fit_appearances(rows: list[videoset.Judged], written: list[videoset.Judged]) -> tuple[float, float]:
    """(rho, least gender score): rho fitted on the appearances that have faces (``rows``: each
    judged from its own faces), the score on ``written``'s (the same labels judged as the worker
    writes them, from all faces of each one's person), pooled with that rho."""
    with_faces = [r for r in rows if r.z is not None]
    rho = cal.fit_rho([(r.z, r.w) for r in with_faces], np.array([r.label.is_male for r in with_faces]))
    scores, right = videoset.pooled_scores([r for r in written if r.z is not None], rho)
    return rho, cal.choose_min_score(scores, right, TARGET, z=0.0, least=LEAST_ANSWERED)


def leave_one_video_out(
    rows: list[videoset.Judged],
    written: list[videoset.Judged],
    extra: tuple[list[videoset.Judged], list[videoset.Judged]],
    age: Any,
) -> dict[str, Any]:
    """Each real video scored with rho and threshold fitted on the other real videos plus ``extra``
    (appearance rows, written rows; ``fit_appearances``), per appearance (``rows``) and as written
    (``written``)."""
    per_video: dict[str, Any] = {}
    pooled: dict[str, dict[str, list]] = {k: {"scores": [], "right": [], "said": []} for k in ("appearance", "written")}
    for name in sorted({r.video for r in rows}):
        rho, min_score = fit_appearances(
            [r for r in rows if r.video != name] + extra[0], [r for r in written if r.video != name] + extra[1]
        )
        per_video[name] = {"rho": rho, "min_score": min_score}
        for kind, mine in (("appearance", rows), ("written", written)):
            figures = videoset.report([r for r in mine if r.video == name], rho, min_score, age)
            pooled[kind]["scores"] += figures["scores"]
            pooled[kind]["right"] += figures["right"]
            pooled[kind]["said"] += [s >= min_score for s in figures["scores"]]
            per_video[name][kind] = {k: v for k, v in figures.items() if k not in ("reliability", "scores", "right")}
    summary: dict[str, dict[str, Any]] = {}
    for kind, lists in pooled.items():
        right, said = np.array(lists["right"], bool), np.array(lists["said"], bool)
        summary[kind] = {
            "answered_share": round(int(said.sum()) / max(len(rows), 1), 3),
            "right_of_answered": round(float(right[said].mean()), 3) if said.any() else None,
            "reliability": cal.reliability_bins(np.array(lists["scores"]) / 100.0, right),
            "scores": lists["scores"],
            "right": lists["right"],
        }
    return {"appearances": len(rows), "per_video": per_video, **summary["appearance"], "as_written": summary["written"]}


def write_charts(report: dict[str, Any], folder: Path) -> None:
    """Appearance reliability diagram and coverage curve (real clips leave-one-video-out and the
    synthetic held-out tracks, before and after), and age MAE per UTKFace age bin before and after."""
    from analyzer.evaluation import charts

    named = {
        "real, now": "real videos, leave-one-video-out",
        "real, before": "real videos, before",
        "synthetic, now": "synthetic held-out tracks",
        "synthetic, before": "synthetic held-out tracks, before",
    }
    shown = {label: report[key] for label, key in named.items() if key in report}
    lines = [charts.Series([0.5, 1.0], [0.5, 1.0], "perfectly calibrated", dashed=True)]
    curves = []
    for label, figures in shown.items():
        dashed = label.endswith("before")
        lines.append(charts.reliability_series(figures["reliability"], label, dashed))
        coverage, accuracy = cal.coverage_curve(np.array(figures["scores"]), np.array(figures["right"], bool))
        curves.append(
            charts.Series(coverage * len(figures["scores"]) / figures["appearances"], accuracy, label, dashed=dashed)
        )
    charts.save(
        charts.reliability_chart(lines, "Appearances: share right per gender-score bin (dot size: appearances)"),
        folder / "appearance-reliability.png",
    )
    charts.save(
        charts.line_chart(
            curves,
            "Appearances: accuracy when only the most confident are answered",
            "share of labelled appearances answered",
            "accuracy",
            (0.0, 1.0),
            (0.5, 1.0),
            [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            [0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
        ),
        folder / "appearance-coverage.png",
    )
    if "utkface held-out" in report:
        bins = list(report["utkface held-out"]["by_bin"])
        charts.save(
            charts.bar_chart(
                bins,
                {
                    "before": [report["utkface held-out, before"]["by_bin"][b]["age_mae"] for b in bins],
                    "now": [report["utkface held-out"]["by_bin"][b]["age_mae"] for b in bins],
                },
                "UTKFace held-out: age MAE per age bin",
                "years",
                20.0,
                5.0,
            ),
            folder / "age-mae-by-bin.png",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fairface", default="out/features/fairface")
    parser.add_argument("--utkface", default="out/features/utkface")
    parser.add_argument("--videos", nargs="*", default=[], help="scripts/video_features.py JSON files")
    parser.add_argument("--labels", nargs="*", default=[], help="the labels.json files of those videos")
    parser.add_argument("--out", default="out/fit")
    args = parser.parse_args()

    fairface = load_chips(args.fairface)
    fit = joined(fairface, True)
    temperature, size_slope, blur_slope = cal.fit_quality_temperature(
        fit["gender_logit"], fit["is_male"], fit["face_px"], fit["sharpness"]
    )
    low, high = label_years(fit)
    age = cal.fit_age_correction(fit["age_probs"], low, high, CLASSES)
    pooling = Pooling(size_slope, blur_slope, 1.0, age, "FairFace 540 fit half, clean + degraded chips")
    print(f"gender_temperature={temperature} size_slope={size_slope} blur_slope={blur_slope}")
    print(f"age={age!r}")
    report: dict[str, Any] = {
        "constants": {"temperature": temperature, "size_slope": size_slope, "blur_slope": blur_slope, "age": repr(age)}
    }
    sets = {"fairface held-out": joined(fairface, False)}
    if Path(f"{args.utkface}-clean.npz").is_file():
        utk = load_chips(args.utkface)
        sets["utkface held-out"] = joined({"clean": utk["clean"]}, False)
        sets["utkface held-out, degraded"] = joined({k: v for k, v in utk.items() if k != "clean"}, False)
    sets["fairface held-out, clean"] = joined({"clean": fairface["clean"]}, False)
    sets["fairface held-out, degraded"] = joined({k: v for k, v in fairface.items() if k != "clean"}, False)
    before = Pooling(0.0, 0.0, 1.0, cal.AGE_CALIBRATIONS["cydral"], "before")
    for name, arrays in list(sets.items()):
        sets[f"{name}, before"] = arrays
    for name, arrays in sets.items():
        if not arrays:
            continue
        old = name.endswith(", before")
        figures = face_report(arrays, before if old else pooling, OLD_TEMPERATURE if old else temperature)
        figures.pop("_confidence"), figures.pop("_right")
        report[name] = figures
        print(name, json.dumps({k: v for k, v in figures.items() if k != "by_bin"}))
        for label, row in figures["by_bin"].items():
            print("   ", label, row)
    if args.videos:
        videos = [video for labels in args.labels for video in videoset.load(labels)]
        records = videoset.load_records(args.videos, videos)
        rows = videoset.judged(records, temperature, pooling)
        written = videoset.judged(records, temperature, pooling, per_person=True)
        synthetic_fit = [r for r in rows if r.kind == "synthetic" and r.half == "fit"]
        synthetic_held = [r for r in written if r.kind == "synthetic" and r.half == "held_out"]
        real = [r for r in rows if r.kind == "real"]
        real_written = [r for r in written if r.kind == "real"]
        written_fit = [r for r in written if r.kind == "synthetic" and r.half == "fit"]
        rho, min_score = fit_appearances(synthetic_fit + real, written_fit + real_written)
        print(f"rho={rho} min_gender_score={min_score} (synthetic fit half + all real clips)")
        report["constants"] |= {"rho": rho, "min_gender_score": min_score}
        if real:
            report["real videos, leave-one-video-out"] = leave_one_video_out(
                real, real_written, (synthetic_fit, written_fit), age
            )
        if synthetic_held:
            report["synthetic held-out tracks"] = videoset.report(synthetic_held, rho, min_score, age)
        before = Pooling(0.0, 0.0, 1.0, cal.AGE_CALIBRATIONS["cydral"], "before")
        old_rows = videoset.judged(records, OLD_TEMPERATURE, before)
        for name, kind in (("real videos, before", "real"), ("synthetic held-out tracks, before", "synthetic")):
            mine = [r for r in old_rows if r.kind == kind and r.half in ("", "held_out")]
            if mine:
                report[name] = videoset.report(mine, 1.0, OLD_MIN_SCORE, before.age)
        for name in (
            "real videos, leave-one-video-out",
            "real videos, before",
            "synthetic held-out tracks",
            "synthetic held-out tracks, before",
        ):
            if name in report:
                hidden = ("reliability", "scores", "right", "as_written", "per_video")
                print(name, json.dumps({k: v for k, v in report[name].items() if k not in hidden}))
                if "as_written" in report[name]:
                    figures = report[name]["as_written"]
                    print(
                        "   as written (per person):", {k: figures[k] for k in ("answered_share", "right_of_answered")}
                    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    write_charts(report, out)


if __name__ == "__main__":
    main()
