"""The network: an LSTM that predicts each stream's next sample, and its one-step form.

``Forecaster`` predicts ``next = current + head(lstm(current))`` in scaled units. The head
starts at zero, so an untrained model already predicts "the next sample repeats this one",
and training learns the correction; on a short history this keeps the model from being
worse than persistence. ``StepModule`` is the same function written as ONE step over
explicit ``h`` and ``c``, with each layer's input and recurrent weights fused into one matrix:
the graph the daemon runs.
"""

from __future__ import annotations

import torch
from torch import nn


class Forecaster(nn.Module):
    """Stacked LSTM with a residual linear head."""

    def __init__(
        self, features: int, hidden: int, layers: int, dropout: float, extra_inputs: int = 0
    ) -> None:
        super().__init__()
        self.features, self.hidden, self.layers = features, hidden, layers
        self.extra_inputs = extra_inputs  # time features after the F features in x
        self.lstm = nn.LSTM(
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

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``x[B, T, F+E]`` -> predictions ``[B, T, F]`` of the next sample, and the state."""
        out, (h, c) = self.lstm(x, state)
        return x[..., : self.features] + self.head(self.dropout(out)), (h, c)


class StepModule(nn.Module):
    """One step of a trained Forecaster: ``(x[B,F], h[L,B,H], c[L,B,H]) -> (y, h, c)``."""

    def __init__(self, model: Forecaster) -> None:
        super().__init__()
        self.layers = model.layers
        self.features = model.features
        weights, biases = [], []
        for layer in range(model.layers):
            w_ih = getattr(model.lstm, f"weight_ih_l{layer}").detach()
            w_hh = getattr(model.lstm, f"weight_hh_l{layer}").detach()
            b_ih = getattr(model.lstm, f"bias_ih_l{layer}").detach()
            b_hh = getattr(model.lstm, f"bias_hh_l{layer}").detach()
            weights.append(
                nn.Parameter(torch.cat([w_ih, w_hh], dim=1).t().contiguous(), requires_grad=False)
            )
            biases.append(nn.Parameter(b_ih + b_hh, requires_grad=False))
        self.weights = nn.ParameterList(weights)
        self.biases = nn.ParameterList(biases)
        self.head = nn.Linear(model.hidden, model.features)
        self.head.load_state_dict(model.head.state_dict())
        self.head.requires_grad_(False)

    def forward(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        layer_input = x
        h_out, c_out = [], []
        for layer in range(self.layers):
            gates = torch.cat([layer_input, h[layer]], dim=1) @ self.weights[layer]
            gates = gates + self.biases[layer]
            i, f, g, o = gates.chunk(4, dim=1)  # PyTorch's gate order
            c_new = torch.sigmoid(f) * c[layer] + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            h_out.append(h_new)
            c_out.append(c_new)
            layer_input = h_new
        prediction = x[:, : self.features] + self.head(layer_input)
        return prediction, torch.stack(h_out), torch.stack(c_out)
