"""Plots and the one-paragraph summary of a shift analysis."""

from __future__ import annotations

from pathlib import Path

from scipy.stats import spearmanr

from oec.core.atomic import atomic_output, write_text


def _series(rows: list[dict], pair: str, key: str) -> tuple[list[int], list[float], list[float], list[float]]:
    valid = sorted((r for r in rows if r["pair"] == pair and r["valid"]), key=lambda r: r["turn"])
    return ([r["turn"] for r in valid], [r[key] for r in valid], [r[f"{key}_lo"] for r in valid],
            [r[f"{key}_hi"] for r in valid])


def write_plots(rows: list[dict], out: Path, reference: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = sorted({r["pair"] for r in rows})
    for key, label in (("fd", "Fréchet distance"), ("kl", "KL(a || b), nats")):
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for pair in pairs:
            turns, mid, lo, hi = _series(rows, pair, key)
            if not turns:
                continue
            a, _, b = pair.partition("-")
            style = "--" if a == b else "-"
            ax.plot(turns, mid, style, marker="o", ms=3,
                    label=pair + (" (baseline: disjoint task halves)" if a == b else ""))
            ax.fill_between(turns, lo, hi, alpha=0.2)
        ax.set_xlabel("turn")
        ax.set_ylabel(label)
        ax.set_title(f"{label} per turn, 95% half-sample bands (reference: {reference})")
        if ax.lines:
            ax.legend(fontsize=8)
        else:  # no turn had min_samples trajectories on both sides: say so on the plot, not as a warning
            ax.text(0.5, 0.5, "no turn with enough trajectories on both sides", ha="center", transform=ax.transAxes)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        with atomic_output(out / f"{key}.png") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)


def describe_pair(rows: list[dict], pair: str, baseline: str) -> str:
    turns, fd, _, _ = _series(rows, pair, "fd")
    skipped = {}
    for r in rows:
        if r["pair"] == pair and not r["valid"]:
            skipped.setdefault(r.get("skipped") or "too few samples", []).append(r["turn"])  # older runs lack it
    why = "".join(f" Turns {sorted(ts)} are not plotted: {reason}." for reason, ts in sorted(skipped.items()))
    if len(turns) < 2:
        return f"`{pair}`: fewer than two turns to compare; nothing to say.{why}"
    rho, p = spearmanr(turns, fd)
    grows = "grows" if rho > 0.5 and p < 0.05 else ("shrinks" if rho < -0.5 and p < 0.05 else "does not clearly change")
    base = {t: hi for t, hi in zip(*[_series(rows, baseline, "fd")[i] for i in (0, 3)])}
    above = [t for t, v in zip(turns, fd) if t in base and v > base[t]]
    compared = [t for t in turns if t in base]
    margin = [v - base[t] for t, v in zip(turns, fd) if t in base]
    text = (f"`{pair}`: the Fréchet distance {grows} with turn (Spearman ρ = {rho:.2f}, p = {p:.3g}, over turns "
            f"{turns[0]}–{turns[-1]}), from {fd[0]:.3g} at turn {turns[0]} to {fd[-1]:.3g} at turn {turns[-1]}. ")
    if compared:
        text += (f"It is above the upper 95% bound of the `{baseline}` baseline at {len(above)} of {len(compared)} "
                 f"turns (turns {above}); on average {sum(margin) / len(margin):+.3g} over that bound.")
    return text + why


def write_summary(rows: list[dict], out: Path, cfg, window: int) -> str:
    pairs = sorted({r["pair"] for r in rows if r["pair"].split("-")[0] != r["pair"].split("-")[-1]})
    baseline = f"{cfg.reference}-{cfg.reference}"
    parts = [describe_pair(rows, pair, baseline) for pair in pairs]
    note = (f"Histories were embedded with `{cfg.embedder}` (window {window}; longer histories keep their end), "
            f"projected to at most {cfg.pca} principal dimensions per turn, Ledoit-Wolf covariances, plug-in "
            f"estimates with 95% half-sample intervals from {cfg.bootstrap} replicates, seed {cfg.seed}. Each side "
            f"of every pair holds a disjoint half of the tasks; turns need {cfg.min_samples} trajectories per side.")
    text = "# Covariate shift\n\n" + " ".join(parts) + "\n\n" + note + \
        "\n\nPlots: `fd.png`, `kl.png`; numbers: `per_turn.csv`.\n"
    write_text(out / "summary.md", text)
    return text
