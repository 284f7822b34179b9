"""The network: a recurrent net that predicts each stream's next sample, and the forms exported.

``Forecaster`` predicts ``next = current + head(rnn(current))`` in scaled units, the recurrent
part a stacked LSTM or GRU (the ``cell``). The head starts at zero, so an untrained model
already predicts "the next sample repeats this one", and training learns the correction; on a
short history this keeps the model from being worse than persistence.

``SequenceModule`` is the same function over explicit ``h`` and ``c``, time first: the graph
the daemon runs (a bundle's ``graph.kind`` "sequence"). Its recurrent part is torch's own
``nn.LSTM`` / ``nn.GRU``, which the exporter writes as ONNX's LSTM / GRU operator: one call
runs a stream's queued readings. ``StepModule`` is ONE step, each layer's input and recurrent
weights fused into one matrix: the graph bundles held before (kind "step"), which the daemon
still runs; kept to make such bundles in tests and to measure against.

With the spread head (``--spread``), the Forecaster also gives the log standard deviation of
its next error, and the sequence graph a fourth output ``s``: that spread relative to its
median on the training rows (``spread_reference``), which the daemon divides errors by.

Both cells keep the bundle's one graph signature, ``(x, h, c) -> (y, h_out, c_out)``, so the
daemon's state table does not depend on the cell. A GRU has no cell state: its graph passes
``c`` through untouched, and since the daemon starts every stream at zero, ``c`` stays zero.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from sensord.core.bundle import Cell

State = tuple[torch.Tensor, torch.Tensor]


class Outputs(NamedTuple):
    """What a Forecaster gives over ``x[B, T, F+E]``: predictions of the next sample, the
    spread head's log standard deviations, the horizon head's predictions K steps ahead
    (each None without its head), and the state after the last step."""

    prediction: torch.Tensor
    log_sigma: torch.Tensor | None
    ahead: torch.Tensor | None
    state: State


# The spread head's log standard deviation, in scaled units, is kept in this range: wide
# enough for any sensor once scaled (0.0025 to 55 standard deviations of the training
# rows), and it keeps exp() and the likelihood finite when a window holds a huge error.
LOG_SIGMA_MIN, LOG_SIGMA_MAX = -6.0, 4.0


class Forecaster(nn.Module):
    """Stacked LSTM or GRU with a residual linear head."""

    spread_reference: torch.Tensor  # a buffer (registered in __init__)

    def __init__(
        self,
        features: int,
        hidden: int,
        layers: int,
        dropout: float,
        extra_inputs: int = 0,
        *,
        cell: Cell = "lstm",
        spread: bool = False,
        horizon: int = 0,
    ) -> None:
        super().__init__()
        self.features, self.hidden, self.layers, self.cell = features, hidden, layers, cell
        self.extra_inputs = extra_inputs  # time features after the F features in x
        recurrent = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = recurrent(
            features + extra_inputs,
            hidden,
            layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, features)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        # The spread head (``sensord train --spread``): the log standard deviation of the
        # next sample's error, from the same state; it starts at 1 (a scaled unit).
        self.spread_head: nn.Linear | None = None
        if spread:
            self.spread_head = nn.Linear(hidden, features)
            nn.init.zeros_(self.spread_head.weight)
            nn.init.zeros_(self.spread_head.bias)
        # The head's typical spread on the training rows, per feature: the exported graph
        # gives the spread relative to it (1 = a typical step), so that dividing errors by
        # it keeps them on the scale the detector's calibration knows.
        self.register_buffer("spread_reference", torch.ones(features))
        # The horizon head (``--horizon K``): the sample K steps ahead, residual like the
        # next step's (it starts as "the sample K steps ahead repeats this one").
        self.horizon = horizon
        self.ahead_head: nn.Linear | None = None
        if horizon:
            self.ahead_head = nn.Linear(hidden, features)
            nn.init.zeros_(self.ahead_head.weight)
            nn.init.zeros_(self.ahead_head.bias)

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """``x[B, T, F+E]`` -> predictions ``[B, T, F]`` of the next sample, and ``(h, c)``."""
        out = self.forward_full(x, state)
        return out.prediction, out.state

    def forward_full(self, x: torch.Tensor, state: State | None = None) -> Outputs:
        """Every head's output over ``x``, and ``(h, c)``."""
        if self.cell == "gru":
            out, h = self.rnn(x, None if state is None else state[0])
            # c as the exported step carries it: passed through, zero from a zero start.
            c = torch.zeros_like(h) if state is None else state[1]
        else:
            out, (h, c) = self.rnn(x, state)
        out = self.dropout(out)
        now = x[..., : self.features]
        log_sigma = ahead = None
        if self.spread_head is not None:
            log_sigma = self.spread_head(out).clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)
        if self.ahead_head is not None:
            ahead = now + self.ahead_head(out)
        return Outputs(now + self.head(out), log_sigma, ahead, (h, c))

    def relative_spread(self, x: torch.Tensor) -> torch.Tensor | None:
        """The spread after every step of ``x[B, T, F+E]`` from a zero state, relative to
        ``spread_reference`` (what the exported graph's ``s`` gives); None without the head."""
        log_sigma = self.forward_full(x).log_sigma
        return None if log_sigma is None else torch.exp(log_sigma) / self.spread_reference

    def last_layer_states(self, x: torch.Tensor) -> torch.Tensor:
        """The last layer's ``h[B, T, H]`` after every step of ``x``, from a zero state."""
        out: torch.Tensor = self.rnn(x)[0]
        return out


class SequenceModule(nn.Module):
    """A trained Forecaster over ``T`` steps, time first (as ONNX's LSTM and GRU take it):
    ``(x[T,B,F+E], h[L,B,H], c[L,B,H]) -> (y[T,B,F], h, c)``, ``y[t]`` the prediction made
    after step ``t`` and ``h``, ``c`` the state after the last."""

    spread_reference: torch.Tensor  # a buffer (registered in __init__)

    def __init__(self, model: Forecaster) -> None:
        super().__init__()
        self.features = model.features
        self.cell = model.cell
        recurrent = nn.GRU if model.cell == "gru" else nn.LSTM
        # A time-first copy: the same weights without a transpose on either side of the
        # recurrent operator. Dropout is off in inference, so the copy has none.
        self.rnn = recurrent(
            model.features + model.extra_inputs,
            model.hidden,
            model.layers,
            dtype=model.head.weight.dtype,
        )
        self.rnn.load_state_dict(model.rnn.state_dict())
        self.head = nn.Linear(model.hidden, model.features, dtype=model.head.weight.dtype)
        self.head.load_state_dict(model.head.state_dict())
        self.spread_head: nn.Linear | None = None
        if model.spread_head is not None:  # (without it, the graph is what it was)
            self.spread_head = nn.Linear(model.hidden, model.features, dtype=self.head.weight.dtype)
            self.spread_head.load_state_dict(model.spread_head.state_dict())
            self.register_buffer("spread_reference", model.spread_reference.clone())
        self.ahead_head: nn.Linear | None = None
        if model.ahead_head is not None:
            self.ahead_head = nn.Linear(model.hidden, model.features, dtype=self.head.weight.dtype)
            self.ahead_head.load_state_dict(model.ahead_head.state_dict())
        self.requires_grad_(False)

    def forward(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        if self.cell == "gru":
            out, h_out = self.rnn(x, h)
            c_out = c  # a GRU has no cell state: passed through, as the step graph does
        else:
            out, (h_out, c_out) = self.rnn(x, (h, c))
        now = x[..., : self.features]
        outputs = [now + self.head(out), h_out, c_out]
        if self.spread_head is not None:
            log_sigma = self.spread_head(out).clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)
            outputs.append(torch.exp(log_sigma) / self.spread_reference)
        if self.ahead_head is not None:
            outputs.append(now + self.ahead_head(out))
        return tuple(outputs)


class StepModule(nn.Module):
    """One step of a trained Forecaster: ``(x[B,F], h[L,B,H], c[L,B,H]) -> (y, h, c)``.

    Layer ``l`` computes ``gates = [input, h[l]] @ weights[l] + biases[l]``, ``4H`` columns for
    either cell. LSTM: PyTorch's ``i, f, g, o`` blocks, input and recurrent biases summed. GRU:
    ``r, z`` (input and recurrent parts summed, as their biases), then the input part of the
    candidate ``n`` and its recurrent part kept apart (each with its own bias, zero weights
    for the other half of the input), because the reset gate multiplies only the recurrent part.
    """

    def __init__(self, model: Forecaster) -> None:
        super().__init__()
        if model.spread_head is not None or model.ahead_head is not None:
            raise ValueError("a step graph has no heads' outputs: export the sequence graph")
        self.layers = model.layers
        self.features = model.features
        self.cell = model.cell
        fuse = _fuse_gru if model.cell == "gru" else _fuse_lstm
        weights, biases = [], []
        for layer in range(model.layers):
            w_ih, w_hh, b_ih, b_hh = (
                getattr(model.rnn, f"{name}_l{layer}").detach()
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
            weight, bias = fuse(w_ih, w_hh, b_ih, b_hh)
            weights.append(nn.Parameter(weight.t().contiguous(), requires_grad=False))
            biases.append(nn.Parameter(bias, requires_grad=False))
        self.weights = nn.ParameterList(weights)
        self.biases = nn.ParameterList(biases)
        self.head = nn.Linear(model.hidden, model.features, dtype=model.head.weight.dtype)
        self.head.load_state_dict(model.head.state_dict())
        self.head.requires_grad_(False)

    def forward(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        layer_input = x
        h_out, c_out = [], []
        for layer in range(self.layers):
            previous = h[layer]
            gates = torch.cat([layer_input, previous], dim=1) @ self.weights[layer]
            gates = gates + self.biases[layer]
            if self.cell == "gru":
                h_new = _gru_update(gates, previous)
            else:
                h_new, c_new = _lstm_update(gates, c, layer)
                c_out.append(c_new)
            h_out.append(h_new)
            layer_input = h_new
        prediction = x[:, : self.features] + self.head(layer_input)
        return prediction, torch.stack(h_out), torch.stack(c_out) if c_out else c


def _fuse_lstm(
    w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[4H, in + H]`` weights and ``[4H]`` bias: every gate sees input and state alike."""
    return torch.cat([w_ih, w_hh], dim=1), b_ih + b_hh


def _fuse_gru(
    w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[4H, in + H]`` weights and ``[4H]`` bias, rows ``r, z | n from x | n from h``."""
    hidden = w_hh.shape[1]
    rz = slice(0, 2 * hidden)  # PyTorch's GRU row order: r, z, n
    n = slice(2 * hidden, 3 * hidden)
    n_input = torch.cat([w_ih[n], torch.zeros_like(w_hh[n])], dim=1)
    n_state = torch.cat([torch.zeros_like(w_ih[n]), w_hh[n]], dim=1)
    weight = torch.cat([torch.cat([w_ih[rz], w_hh[rz]], dim=1), n_input, n_state])
    return weight, torch.cat([b_ih[rz] + b_hh[rz], b_ih[n], b_hh[n]])


def _lstm_update(
    gates: torch.Tensor, c: torch.Tensor, layer: int
) -> tuple[torch.Tensor, torch.Tensor]:
    i, f, g, o = gates.chunk(4, dim=1)  # PyTorch's gate order
    # c[layer] is indexed here, after the split, where the LSTM-only step indexed it: the
    # traced graph, and so an LSTM bundle's bytes and version, stay what they were.
    c_new = torch.sigmoid(f) * c[layer] + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def _gru_update(gates: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """PyTorch's GRU: ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``,
    ``h' = (1 - z) * n + z * h``."""
    r, z, n_input, n_state = gates.chunk(4, dim=1)
    r, z = torch.sigmoid(r), torch.sigmoid(z)
    n = torch.tanh(n_input + r * n_state)
    return (1 - z) * n + z * h
