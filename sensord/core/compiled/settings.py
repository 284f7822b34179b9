"""A pipeline's settings as the kernel takes them: one float array (these indices) and a
table of its channels. Built from the same objects the numpy reference reads (the detector,
the alert policy), so both paths run on one configuration."""

from __future__ import annotations

import math

import numpy as np

from sensord.arrays import F64
from sensord.core.alert import AlertPolicy
from sensord.core.compiled.columns import I64, TailSpec
from sensord.core.detect.base import CHANNEL_CODES as CODE_OF
from sensord.core.detect.channel import SustainedChannel
from sensord.core.detect.composite import ChannelDetector
from sensord.core.detect.contextual import ContextualChannel, ShiftChannel
from sensord.core.detect.histogram import EDGE_VALUES
from sensord.core.detect.range import ExtremesChannel

KINDS_ORDER = ("point", "sustained", "contextual", "shift", "extremes")
(
    THRESHOLD,
    CALM_BELOW,
    LOG_ALERT,
    BONFERRONI,
    SURPRISE_BONFERRONI,
    SLOTS,
    SLOT_WIDTH_S,
    SCALE_FLOOR,
    SCALE_POOL,
    SCALE_HORIZON,
    SCALE_SLOT_CAP,
    SUSTAINED_ALPHA,
    SUSTAINED_NORM,
    SUSTAINED_CLIP,
    SUSTAINED_HORIZON,
    CONTEXT_ALPHA,
    CONTEXT_MIN_VISITS,
    CONTEXT_PER_DAY,
    CONTEXT_CAP,
    CONTEXT_SLOTS,
    SHIFT_ALPHA,
    RANGE_MARGIN,
    RANGE_MIN_SAMPLES,
    TAIL_MIN_SAMPLES,
    RAISE_AFTER,
    CLEAR_AFTER,
    HYSTERESIS,
    COOLDOWN_S,
    WARMUP,
    REPEAT_WINDOW,
    ADOPT_AFTER_S,
    LEARNING_NORMAL,
    ASINH,
) = range(33)
LOG_WIDTHS = 33  # each enabled channel's log width, from here (numpy's logarithm)
SIZE = LOG_WIDTHS + len(KINDS_ORDER)

# The channels' kinds, and each enabled channel's row in the channel table: its code
# (detect.CHANNELS), kind, first column in the tail (-1: not calibrated) and width.
POINT, SUSTAINED, CONTEXTUAL, SHIFT, EXTREMES = range(5)
KINDS = {name: kind for kind, name in enumerate(KINDS_ORDER)}
CODE, KIND, TAIL_START, WIDTH = range(4)


def settings_of(detector: ChannelDetector, policy: AlertPolicy, transform: str) -> F64:
    """The float settings of a pipeline with this detector and alert policy."""
    p = np.zeros(SIZE)
    p[THRESHOLD] = detector.threshold
    p[CALM_BELOW] = detector.threshold - policy.hysteresis
    p[LOG_ALERT] = detector._log_alert
    p[BONFERRONI] = detector._bonferroni
    p[SURPRISE_BONFERRONI] = detector._surprise_bonferroni
    scale = detector.scale
    p[SLOTS] = scale.slots.count
    p[SLOT_WIDTH_S] = scale.slots.width_s
    p[SCALE_FLOOR] = scale.floor
    p[SCALE_POOL] = scale.pool
    p[SCALE_HORIZON] = scale.horizon
    p[SCALE_SLOT_CAP] = scale.slot_cap
    for channel in detector.channels:
        if isinstance(channel, SustainedChannel):
            p[SUSTAINED_ALPHA], p[SUSTAINED_NORM] = channel.alpha, channel.norm
            p[SUSTAINED_CLIP], p[SUSTAINED_HORIZON] = channel.clip, channel.horizon
        elif isinstance(channel, ContextualChannel):
            p[CONTEXT_ALPHA], p[CONTEXT_MIN_VISITS] = channel.alpha, channel.min_visits
            p[CONTEXT_PER_DAY], p[CONTEXT_CAP] = channel.per_day, channel.cap
            p[CONTEXT_SLOTS] = channel.slots
        elif isinstance(channel, ShiftChannel):
            p[SHIFT_ALPHA] = channel.alpha
        elif isinstance(channel, ExtremesChannel):
            p[RANGE_MARGIN], p[RANGE_MIN_SAMPLES] = channel.margin, channel.min_samples
    p[TAIL_MIN_SAMPLES] = detector.tail.min_samples
    p[RAISE_AFTER], p[CLEAR_AFTER] = policy.raise_after, policy.clear_after
    p[HYSTERESIS], p[COOLDOWN_S] = policy.hysteresis, policy.cooldown_s
    p[WARMUP], p[REPEAT_WINDOW] = policy.warmup, policy.repeat_window
    p[ADOPT_AFTER_S] = math.nan if policy.adopt_after_s is None else policy.adopt_after_s
    p[LEARNING_NORMAL] = float(detector.learning_normal)
    p[ASINH] = float(transform == "asinh")
    widths = [channel.width for channel in detector.channels]
    p[LOG_WIDTHS : LOG_WIDTHS + len(widths)] = np.log(widths)  # as the reference's _widths
    return p


def channel_table(detector: ChannelDetector) -> I64:
    """One row per enabled channel, in the detector's order."""
    rows = []
    for channel in detector.channels:
        block = detector._blocks.get(channel.name)
        start = -1 if block is None else block.start
        rows.append((CODE_OF[channel.name], KINDS[channel.name], start, channel.width))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4)


def tail_spec(detector: ChannelDetector) -> TailSpec:
    """The detector's tail constants."""
    tail = detector.tail
    learnt = tail.learnt
    width = tail.width
    return TailSpec(
        lowest=tail._lowest,
        floor=tail._floor,
        shape=tail.shape,
        learnt=learnt is not None,
        learnt_counts=np.zeros((width, 0)) if learnt is None else learnt.counts,
        learnt_values=np.zeros(width) if learnt is None else learnt.values,
        learnt_heavy=tail._learnt_heavy,
        edge_values=EDGE_VALUES,
    )
