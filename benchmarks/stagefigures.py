"""benchmarks/stages.py's figures: a path's blocks of one width summed up stage by stage,
the two paths side by side (same-repeat ratios), and the printed tables."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.stageseams import COMPILED_GROUPS, Seams, replaced

TARGET_WAVE_OF_ONE_US = 40.0  # issue 27: a wave of one reading, in-process, default detector


@dataclass(frozen=True)
class Block:
    """One timed block of waves of one width."""

    waves: int
    readings: int
    wall_s: float
    cpu_s: float
    spent: dict[str, float]  # each stage's own seconds (empty unwrapped)
    calls: dict[str, int]


@dataclass
class Runs:
    """One path's blocks at one width, repeat by repeat (the i-th block of each list, and of
    the other path's at this width, were measured in the same repeat)."""

    width: int
    seams: Seams
    waves: int
    plain: list[Block] = field(default_factory=list)
    timed: list[Block] = field(default_factory=list)
    floors: list[Block] = field(default_factory=list)


def per_reading(seconds: float, block: Block) -> float:
    return seconds / block.readings * 1e6


def med(values: Iterable[float], digits: int = 4) -> float:
    return round(float(statistics.median(list(values))), digits)


def own(block: Block, keys: Sequence[str]) -> float:
    return sum(block.spent[k] for k in keys)


def stage_cpu(block: Block, keys: Sequence[str]) -> float:
    """The stages' CPU us per reading in a block: their wall time scaled by the block's CPU
    over wall (on a shared box the time others' jobs take lands in the stages in proportion
    to their time, and this drops it)."""
    return per_reading(own(block, keys) * block.cpu_s / block.wall_s, block)


def figures(run: Runs, keys: Sequence[str]) -> dict[str, float]:
    """A stage's (or a group's) time per reading and share of the wrapped total."""
    timed = run.timed
    return {
        "us_per_reading": med(per_reading(own(b, keys), b) for b in timed),
        "cpu_us_per_reading": med(stage_cpu(b, keys) for b in timed),
        "share": med((own(b, keys) / sum(b.spent.values()) for b in timed), 5),
    }


def summarise(run: Runs, wrapper_ns: float) -> dict[str, Any]:
    """One path's figures at one width: each stage and group per reading and its share, and
    the totals."""
    waves = sum(b.waves for b in run.timed)
    stages = {
        s.key: {
            "group": s.group,
            "label": s.label,
            **figures(run, [s.key]),
            "calls_per_wave": round(sum(b.calls[s.key] for b in run.timed) / waves, 3),
        }
        for s in run.seams.stages
    }
    groups = {
        group: {
            "label": label,
            **figures(run, [s.key for s in run.seams.stages if s.group == group]),
        }
        for group, label in run.seams.groups.items()
    }
    return {
        "path": run.seams.path,
        "width": run.width,
        "waves_per_block": run.waves,
        "repeats": len(run.timed),
        "stages": stages,
        "groups": groups,
        "total": totals_of(run, wrapper_ns),
    }


def totals_of(run: Runs, wrapper_ns: float) -> dict[str, Any]:
    """The whole wave unwrapped and wrapped (same repeats), what the wrappers cost, and the
    do-nothing floor."""
    timed, plain, floors = run.timed, run.plain, run.floors
    calls = sum(sum(b.calls.values()) for b in timed) / sum(b.waves for b in timed)
    pairs = list(zip(timed, plain, strict=True))
    return {
        "unwrapped_us": med(per_reading(b.wall_s, b) for b in plain),
        "unwrapped_cpu_us": med(per_reading(b.cpu_s, b) for b in plain),
        "wrapped_us": med(per_reading(b.wall_s, b) for b in timed),
        "wrapped_cpu_us": med(per_reading(b.cpu_s, b) for b in timed),
        "stage_sum_us": med(per_reading(sum(b.spent.values()), b) for b in timed),
        "unwrapped_cpu_us_repeats": [round(per_reading(b.cpu_s, b), 3) for b in plain],
        "unwrapped_us_repeats": [round(per_reading(b.wall_s, b), 3) for b in plain],
        "wrapped_us_repeats": [round(per_reading(b.wall_s, b), 3) for b in timed],
        # Same-repeat ratios: the wrapped blocks against the unwrapped ones beside them.
        "wrapped_over_unwrapped": med(
            (t.wall_s / t.readings) / (p.wall_s / p.readings) for t, p in pairs
        ),
        "wrapped_over_unwrapped_cpu": med(
            (t.cpu_s / t.readings) / (p.cpu_s / p.readings) for t, p in pairs
        ),
        "wrapped_calls_per_wave": round(calls, 2),
        # What the wrappers should add, from their own cost measured apart (wrapper_cost_ns).
        "wrappers_us_expected": round(calls * wrapper_ns / 1e3 / run.width, 4),
        "floor_us": med((per_reading(b.wall_s, b) for b in floors), 5),
        "floor_us_per_wave": med(b.wall_s / b.waves * 1e6 for b in floors),
    }


def ratio(before: Iterable[float], after: Iterable[float]) -> float | None:
    """The median of same-repeat ratios (None where the compiled side spent nothing)."""
    pairs = list(zip(before, after, strict=True))
    if any(a <= 0 for _, a in pairs):
        return None
    return med((b / a for b, a in pairs), 3)


def compare(reference: Runs, compiled: Runs) -> dict[str, Any]:
    """One width's two paths side by side: the whole wave unwrapped, and each compiled group
    against the reference's stages it does the work of (both wrapped, same repeats)."""
    ref_stages = reference.seams.stages
    groups: dict[str, Any] = {}
    for group, label in COMPILED_GROUPS.items():
        before = [stage_cpu(b, replaced(group, ref_stages)) for b in reference.timed]
        keys = [s.key for s in compiled.seams.stages if s.group == group]
        after = [stage_cpu(b, keys) for b in compiled.timed]
        groups[group] = {
            "label": label,
            "replaces": replaced(group, ref_stages),
            "reference_cpu_us": med(before),
            "compiled_cpu_us": med(after),
            "ratio": ratio(before, after),
        }
    ref_cpu = [per_reading(b.cpu_s, b) for b in reference.plain]
    comp_cpu = [per_reading(b.cpu_s, b) for b in compiled.plain]
    ref_wall = [per_reading(b.wall_s, b) for b in reference.plain]
    comp_wall = [per_reading(b.wall_s, b) for b in compiled.plain]
    return {
        "width": reference.width,
        "reference_cpu_us": med(ref_cpu),
        "compiled_cpu_us": med(comp_cpu),
        "cpu_ratio": ratio(ref_cpu, comp_cpu),
        "reference_wall_us": med(ref_wall),
        "compiled_wall_us": med(comp_wall),
        "wall_ratio": ratio(ref_wall, comp_wall),
        "groups": groups,
    }


def wave_of_one(comparisons: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Issue 27's headline: the CPU a wave of one reading costs, unwrapped, on each path."""
    one = next((c for c in comparisons if c["width"] == 1), None)
    if one is None:
        return None
    return {
        "reference_cpu_us": one["reference_cpu_us"],
        "compiled_cpu_us": one["compiled_cpu_us"],
        "ratio": one["cpu_ratio"],
        "target_us": TARGET_WAVE_OF_ONE_US,
        "met": one["compiled_cpu_us"] <= TARGET_WAVE_OF_ONE_US,
    }


LABEL = 40  # the label column's width


def print_width(result: dict[str, Any]) -> None:
    width, total = result["width"], result["total"]
    print(
        f"\n{result['path']}, {width} stream{'s' if width > 1 else ''} a wave: "
        f"{result['waves_per_block']} waves a block, {result['repeats']} repeats; us per "
        "reading, medians (CPU: wall x the block's CPU/wall)"
    )
    print(f"{'stage':<{LABEL}}{'wall us':>10}{'CPU us':>10}{'share':>9}{'calls/wave':>12}")
    for group, figures_ in result["groups"].items():
        print(_row(figures_["label"], figures_))
        for stage in result["stages"].values():
            if stage["group"] == group:
                print(_row("  " + stage["label"], stage) + f"{stage['calls_per_wave']:>12.2f}")
    print(f"{'sum of stages (= wrapped total)':<{LABEL}}{total['stage_sum_us']:>10.2f}")
    for what, wall, cpu in (
        ("total unwrapped, wall and CPU", "unwrapped_us", "unwrapped_cpu_us"),
        ("total wrapped, wall and CPU", "wrapped_us", "wrapped_cpu_us"),
    ):
        print(f"{what:<{LABEL}}{total[wall]:>10.2f}{total[cpu]:>10.2f}")
    print(
        f"wrapping: x{total['wrapped_over_unwrapped']:.3f} wall, "
        f"x{total['wrapped_over_unwrapped_cpu']:.3f} CPU; {total['wrapped_calls_per_wave']:.0f} "
        f"wrapped calls a wave, expected {total['wrappers_us_expected']:.2f} us a reading"
    )
    print(
        f"do-nothing floor: {total['floor_us']:.4f} us a reading "
        f"({total['floor_us_per_wave']:.3f} us a wave)"
    )


def _row(label: str, figures_: dict[str, Any]) -> str:
    return (
        f"{label:<{LABEL}}{figures_['us_per_reading']:>10.2f}"
        f"{figures_['cpu_us_per_reading']:>10.2f}{100 * figures_['share']:>8.1f}%"
    )


def print_overview(results: Sequence[dict[str, Any]]) -> None:
    """One path's groups side by side, one column per width (CPU us per reading, share)."""
    print(f"\n{results[0]['path']}: CPU us per reading (share of the wave) by streams a wave")
    print(f"{'':<24}" + "".join(f"{r['width']:>16}" for r in results))
    for group, figures_ in results[0]["groups"].items():
        cells = [r["groups"][group] for r in results]
        print(
            f"{figures_['label']:<24}"
            + "".join(f"{c['cpu_us_per_reading']:>9.2f} ({100 * c['share']:>3.0f}%)" for c in cells)
        )
    for what, key in (
        ("total unwrapped, CPU", "unwrapped_cpu_us"),
        ("total unwrapped, wall", "unwrapped_us"),
    ):
        print(f"{what:<24}" + "".join(f"{r['total'][key]:>16.2f}" for r in results))


def _cell(before: float, after: float, times: float | None) -> str:
    shown = "-" if times is None else f"{times:.1f}x"
    return f"{before:>9.2f}{after:>8.2f}{shown:>7}"


def print_comparison(comparisons: Sequence[dict[str, Any]]) -> None:
    """Before and after, per width: the reference's CPU us per reading, the compiled path's,
    and their same-repeat ratio."""
    print(
        "\nbefore/after: CPU us per reading, reference | compiled | reference/compiled "
        "(same repeats; a group against the reference stages it replaces, wrapped)"
    )
    print(f"{'':<24}" + "".join(f"{c['width']:>24}" for c in comparisons))
    for group, label in COMPILED_GROUPS.items():
        cells = [c["groups"][group] for c in comparisons]
        print(
            f"{label:<24}"
            + "".join(_cell(g["reference_cpu_us"], g["compiled_cpu_us"], g["ratio"]) for g in cells)
        )
    print(
        f"{'whole wave, unwrapped':<24}"
        + "".join(
            _cell(c["reference_cpu_us"], c["compiled_cpu_us"], c["cpu_ratio"]) for c in comparisons
        )
    )


def print_wave_of_one(summary: dict[str, Any] | None) -> None:
    if summary is None:
        return
    times = "-" if summary["ratio"] is None else f"{summary['ratio']:.1f}x"
    print(
        f"\nwave of one reading, CPU us (unwrapped, medians): reference "
        f"{summary['reference_cpu_us']:.1f}, compiled {summary['compiled_cpu_us']:.1f}, "
        f"reference/compiled {times}; issue 27's target <= {summary['target_us']:.0f} us: "
        f"{'met' if summary['met'] else 'not met'}"
    )
