"""Side-by-side tables of LatentWatch (latentwatch-eval JSON) and the Python references (reference_eval.py JSON).

python3 Tests/Evaluation/compare.py --ours lw_image.json --ref ref_image.json [--ours lw_text.json --ref ref_text.json]
    [--streams-ref baselines_image.json --streams-ref baselines_text.json]
Prints Markdown (the tables of Docs/Evaluation.md). With --streams-ref (stream_baselines.py output on the streams
that `latentwatch-eval --streams DIR` wrote, one per --ours, same order) it adds the stream-detector table.
"""

import argparse
import json

PAIRS = [  # (ours, reference, the reference's label in the table)
    ("lw_gda", "gda_shrunk", "gda_shrunk"),  # class Gaussians, held-out shrinkage (numpy, same rule, own split)
    ("lw_gda", "gda_ddu", "gda_ddu"),  # class Gaussians as in DDU (jitter, no priors)
    ("lw_tied_md", "tied_mahalanobis", "tied_mahalanobis"),  # tied covariance, min Mahalanobis (Lee et al.)
    ("lw_rmd", "relative_mahalanobis", "relative_mahalanobis"),  # relative Mahalanobis (Ren et al.)
    ("lw_gmm", "gmm_sklearn", "gmm_sklearn"),  # GMM, 8 full components (scikit-learn GaussianMixture)
    # our GMM with scikit-learn's regularisation (absolute reg_covar 1e-6)
    ("lw_gmm_reg-ridge1e-6", "gmm_sklearn", "gmm_sklearn, same reg_covar"),
]


def fmt(x, digits=4):
    return "—" if x is None else f"{x:.{digits}f}"


def normalise(ref):
    """reference_eval.py names OOD sets ood_<name>; latentwatch-eval names them <name>."""
    def strip(d):
        return {k[4:] if k.startswith("ood_") else k: v for k, v in d.items()}
    for entries in list(ref["layers"].values()) + [ref["outputs"]]:
        for e in entries.values():
            for key in ("auroc", "fpr95", "ood_alert_rate"):
                if isinstance(e, dict) and key in e:
                    e[key] = strip(e[key])
    return ref


def mean_auroc(entry):
    return None if entry is None or "mean_auroc" not in entry else entry["mean_auroc"]


def stream_table(ours, base):
    """Our detectors and the baselines on the same p-value streams: false alarms on ID streams, and per OOD set
    the median delay of the first alarm after the change with (streams with a false alarm before it / missed)."""
    st = ours["streams"]
    scen = ours["scenario"]
    sets = ours["ood_sets"]
    cal = base["calibration"]
    out = [f"### {scen}: stream detectors on the same p-value streams ({st['layer']}, {st['configuration']}, "
           f"calibration m = {st['calibration_count']})\n",
           f"{st['id_streams']} in-distribution streams of {st['id_length']} inputs resampled from the test split; per OOD "
           f"set {st['change_runs']} streams of {st['change_length']} where OOD inputs replace ID ones from input "
           f"{st['change_at']} linearly over {st['ramp']}. Cells: median delay (streams with a false alarm before the "
           f"change / streams never alarmed after it). River ADWIN's calibrated δ = {cal['adwin_delta']:g} and "
           f"Page-Hinkley's threshold = {cal['ph_threshold']:g} give ≤ {cal['target_far_per_stream']} null false-alarm "
           f"probability per {cal['stream_length']} uniform inputs.\n",
           "| detector | ID streams with an alarm | alarms per 10⁴ ID inputs | " + " | ".join(sets) + " |",
           "|---|---|---|" + "---|" * len(sets)]
    rows = [(k, v) for k, v in st["results"].items()] + [(f"{k} (baseline)", v) for k, v in base["results"].items()]
    for name, res in rows:
        idr = res.get(f"{scen}/none", {}).get("id")
        if idr is None:
            continue
        cells = []
        for s in sets:
            c = res.get(f"{scen}/{s}", {}).get("change")
            if c is None:
                cells.append("—")
                continue
            med = "—" if c["median_delay"] is None else f"{c['median_delay']:.0f}"
            cells.append(f"{med} ({c['false_alarm_streams']}/{c['missed']})")
        out.append(f"| {name} | {idr['streams_with_alarm']} of {idr['streams']} | {idr['alarms_per_1e4']:.2f} | "
                   + " | ".join(cells) + " |")
    out.append("")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", action="append", required=True)
    ap.add_argument("--ref", action="append", required=True)
    ap.add_argument("--streams-ref", action="append", default=[])
    a = ap.parse_args()
    out = []
    for i, (ours_path, ref_path) in enumerate(zip(a.ours, a.ref)):
        ours, ref = json.load(open(ours_path)), normalise(json.load(open(ref_path)))
        sets = ours["ood_sets"]
        out.append(f"### {ours['scenario']}: LatentWatch against its Python reference, mean AUROC over {len(sets)} OOD sets\n")
        out.append("| layer | family | variant | LatentWatch | reference | Δ mean | max |Δ| per set |")
        out.append("|---|---|---|---|---|---|---|")
        for layer, lw in ours["layers"].items():
            rl = ref["layers"].get(layer, {})
            for mine, theirs, label in PAIRS:
                for key in sorted(k for k in lw if k.startswith(mine + ":")):
                    variant = key.split(":", 1)[1]
                    r = rl.get(f"{theirs}:{variant}")
                    if r is None or "auroc" not in r or "auroc" not in lw[key]:
                        continue
                    d = max(abs(lw[key]["auroc"][s] - r["auroc"][s]) for s in sets)
                    delta = lw[key]["mean_auroc"] - r["mean_auroc"]
                    out.append(f"| {layer} | {label} | {variant} | {fmt(lw[key]['mean_auroc'])} | {fmt(r['mean_auroc'])} | "
                               f"{delta:+.4f} | {d:.4f} |")
        out.append("")
        # Per-OOD-set table: the default and the strongest references.
        default = ours["default"]
        out.append(f"### {ours['scenario']}: AUROC per OOD set (FPR at 95 % TPR in brackets)\n")
        out.append("| method | layer | " + " | ".join(sets) + " | mean |")
        out.append("|---|---|" + "---|" * (len(sets) + 1))

        def row(name, layer, e):
            cells = [f"{e['auroc'][s]:.3f} ({e['fpr95'][s]:.2f})" for s in sets]
            out.append(f"| {name} | {layer} | " + " | ".join(cells) + f" | **{e['mean_auroc']:.4f}** |")

        for layer, lw in ours["layers"].items():
            if default in lw:
                row(f"LatentWatch default ({default})", layer, lw[default])
        for name, e in ours.get("fusion", {}).items():
            row(f"LatentWatch {name}", "fused", e)
        for layer, rl in ref["layers"].items():
            for m in ("gda_ddu:raw", "tied_mahalanobis:raw", "knn:raw", "gmm_sklearn:raw"):
                if m in rl and "auroc" in rl[m]:
                    row(m, layer, rl[m])
        for m, e in ref["outputs"].items():
            row(m, "logits", e)
        out.append("")
        # Best single reference against the default.
        best = max(((f"{m} ({l})", e["mean_auroc"]) for l, rl in ref["layers"].items() for m, e in rl.items()
                    if "mean_auroc" in e), key=lambda t: t[1])
        best_out = max(((m, e["mean_auroc"]) for m, e in ref["outputs"].items()), key=lambda t: t[1])
        mine = max(((f"{default} ({l})", lw[default]["mean_auroc"]) for l, lw in ours["layers"].items() if default in lw),
                   key=lambda t: t[1])
        out.append(f"Best reference on a layer: {best[0]} {best[1]:.4f}; best output-based: {best_out[0]} {best_out[1]:.4f}; "
                   f"LatentWatch default on its best layer: {mine[0]} {mine[1]:.4f} ({mine[1] - max(best[1], best_out[1]):+.4f}).\n")
        # Fusion: validity (realised alert rates on the ID test split, with a 95 % Clopper-Pearson interval) and
        # ranking, against the best single layer.
        if ours.get("fusion"):
            from scipy.stats import beta as beta_law

            def rate_cell(e, level):
                r = e.get("alert_rates", {}).get(str(level))
                n = e.get("test_count")
                if r is None or not n:
                    return "-"
                k = round(r * n)
                lo = beta_law.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
                hi = beta_law.ppf(0.975, k + 1, n - k) if k < n else 1.0
                return f"{r:.4f} [{lo:.4f}, {hi:.4f}]"

            out.append(f"### {ours['scenario']}: fused p-value over the layers (alert rate on ID test: rate [95 % interval])\n")
            out.append("| fusion | mean AUROC (p-value) | mean AUROC (statistic) | alert rate α = 0.01 | alert rate α = 0.001 |")
            out.append("|---|---|---|---|---|")
            for name, e in ours["fusion"].items():
                stat = e.get("mean_auroc_statistic")
                out.append(f"| {name} | {e['mean_auroc']:.4f} | {'-' if stat is None else f'{stat:.4f}'} | "
                           f"{rate_cell(e, 0.01)} | {rate_cell(e, 0.001)} |")
            best_layer = max(((l, lw[default]["mean_auroc"]) for l, lw in ours["layers"].items() if default in lw),
                             key=lambda t: t[1])
            out.append(f"\nBest single layer: {best_layer[0]} {best_layer[1]:.4f}.\n")
        # Regularisation.
        out.append(f"### {ours['scenario']}: covariance regularisation of the class Gaussians (mean AUROC)\n")
        regs = ["held-out (default)", "oas", "none", "fixed0.01", "fixed0.1", "fixed0.5"]
        out.append("| layer | variant | " + " | ".join(regs) + " |")
        out.append("|---|---|" + "---|" * len(regs))
        for layer, lw in ours["layers"].items():
            for variant in ("raw", "l2"):
                cells = [fmt(mean_auroc(lw.get(f"lw_gda:{variant}")))]
                cells += [fmt(mean_auroc(lw.get(f"lw_gda_reg-{r}:{variant}"))) for r in regs[1:]]
                out.append(f"| {layer} | {variant} | " + " | ".join(cells) + " |")
        out.append("")
        # Mixture regularisation.
        gregs = ["floor1e-2 (default)", "floor1e-6", "floor1e-3", "ridge1e-6"]
        if any(k.startswith("lw_gmm_reg-") for lw in ours["layers"].values() for k in lw):
            out.append(f"### {ours['scenario']}: regularisation of the GMM's components (8 full components, mean AUROC)\n")
            out.append("| layer | variant | " + " | ".join(gregs) + " | scikit-learn (reg_covar 1e-6) |")
            out.append("|---|---|" + "---|" * (len(gregs) + 1))
            for layer, lw in ours["layers"].items():
                rl = ref["layers"].get(layer, {})
                for variant in ("raw", "l2"):
                    cells = [fmt(mean_auroc(lw.get(f"lw_gmm:{variant}")))]
                    cells += [fmt(mean_auroc(lw.get(f"lw_gmm_reg-{r}:{variant}"))) for r in gregs[1:]]
                    cells.append(fmt(mean_auroc(rl.get(f"gmm_sklearn:{variant}"))))
                    out.append(f"| {layer} | {variant} | " + " | ".join(cells) + " |")
            out.append("")
        # Misclassification and alert rate.
        out.append(f"### {ours['scenario']}: misclassification detection (AUROC, ID test, error rate "
                   f"{ours['test_error_rate']:.4f}) and realised alert rate at α = {ours['alpha']}\n")
        out.append("| score | layer | misclassification AUROC | alert rate |")
        out.append("|---|---|---|---|")
        for layer, lw in ours["layers"].items():
            for k in ("lw_gda:raw", "lw_gda:l2", "lw_tied:raw"):
                if k in lw and "misclassification_auroc" in lw[k]:
                    which = "calibrated " if lw[k].get("posterior_temperature") else ""
                    out.append(f"| LatentWatch {k} entropy of {which}p(y given z) | {layer} | {lw[k]['misclassification_auroc']:.4f} | {lw[k]['alert_rate']:.4f} |")
        for layer, rl in ref["layers"].items():
            for k in ("gda_ddu:raw", "gda_shrunk:raw"):
                if k in rl and rl[k].get("misclassification_auroc") is not None:
                    out.append(f"| reference {k} entropy | {layer} | {rl[k]['misclassification_auroc']:.4f} | {rl[k]['alert_rate']:.4f} |")
        for m, e in ref["outputs"].items():
            if e.get("misclassification_auroc") is not None:
                out.append(f"| reference {m} | logits | {e['misclassification_auroc']:.4f} | {e['alert_rate']:.4f} |")
        out.append("")
        # The class posterior of the default configuration: calibrated (root distances, temperature by the Brier
        # score on the labelled calibration inputs) against Bayes' rule on the same fit.
        rows = [(layer, lw[ours["default"]]) for layer, lw in ours["layers"].items()
                if "posterior_ece" in lw.get(ours["default"], {})]
        if rows:
            out.append(f"### {ours['scenario']}: the class posterior p(y given z), {ours['default']}, calibrated "
                       f"against Bayes' rule\n")
            out.append("| layer | temperature | ECE | ECE, Bayes | median entropy (nats) | median, Bayes | "
                       "misclassification AUROC | AUROC, Bayes | aleatoric alert rate |")
            out.append("|---|---|---|---|---|---|---|---|---|")
            for layer, e in rows:
                b = e.get("bayes_posterior", {})
                out.append(f"| {layer} | {e['posterior_temperature']:.3g} | {e['posterior_ece']:.4f} | "
                           f"{fmt(b.get('posterior_ece'))} | {e['entropy_median']:.3g} | "
                           f"{b.get('entropy_median', float('nan')):.2g} | {e['misclassification_auroc']:.4f} | "
                           f"{fmt(b.get('misclassification_auroc'))} | {e['aleatoric_alert_rate']:.4f} |")
            if "classifier_ece" in ours:
                out.append(f"\nThe classifier's own maximum softmax probability: misclassification AUROC "
                           f"{ours['classifier_msp_misclassification_auroc']:.4f}, ECE {ours['classifier_ece']:.4f}.")
            out.append("")
        if i < len(a.streams_ref) and "streams" in ours:
            out += stream_table(ours, json.load(open(a.streams_ref[i])))
    print("\n".join(out))


if __name__ == "__main__":
    main()
