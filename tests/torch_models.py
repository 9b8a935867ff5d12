"""Small nn.LSTM / nn.GRU models of each setting the importers support, and torch's exporters
(both torch.onnx.export exporters, torch.export, TorchScript) for tests/test_import_torch.py,
which imports this module only when torch is installed."""
import contextlib
import io
import warnings

import numpy as np
import torch

T, F, H = 10, 3, 8


class Net(torch.nn.Module):
    """nn.LSTM / nn.GRU and a Linear head. Options are TorchScript constants, so torch.jit.script
    compiles only the branches a setting uses (an LSTM's hidden is a tuple, a GRU's a tensor)."""
    __constants__ = ["is_lstm", "zero_state", "batch_first", "readout", "head_kind", "state_shape"]

    def __init__(self, cell, layers, bidirectional, batch_first, dropout, readout, head, zero_state, proj_size):
        super().__init__()
        nn = torch.nn
        d = 2 if bidirectional else 1
        extra = {"proj_size": proj_size} if proj_size else {}
        self.rnn = getattr(nn, cell)(F, H, num_layers=layers, bidirectional=bidirectional,
                                     batch_first=batch_first, dropout=dropout, **extra)
        width = (proj_size or H) * (d if readout != "h_n" else 1)
        self.head = nn.Linear(width, 4 if head in ("softmax", "log_softmax") else 1)
        self.is_lstm, self.zero_state, self.batch_first = cell == "LSTM", zero_state, batch_first
        self.readout, self.head_kind = readout, head
        self.state_shape = [layers * d, proj_size or H, H]

    def forward(self, x):
        batch = x.shape[0] if self.batch_first else x.shape[1]
        if self.is_lstm:
            if self.zero_state:    # h0 / c0 given explicitly, as zeros
                h0 = torch.zeros(self.state_shape[0], batch, self.state_shape[1])
                out, hidden = self.rnn(x, (h0, torch.zeros(self.state_shape[0], batch, self.state_shape[2])))
            else:
                out, hidden = self.rnn(x)
            h_n = hidden[0]
        else:
            if self.zero_state:
                out, h_n = self.rnn(x, torch.zeros(self.state_shape[0], batch, self.state_shape[1]))
            else:
                out, h_n = self.rnn(x)
        if self.readout == "h_n":
            y = self.head(h_n[-1])
        elif self.readout == "sequence":
            y = self.head(out)
        elif self.batch_first:
            y = self.head(out[:, -1])
        else:
            y = self.head(out[-1])
        if self.head_kind == "softmax":
            y = torch.softmax(y, -1)
        elif self.head_kind == "log_softmax":
            y = torch.log_softmax(y, -1)
        elif self.head_kind == "tanh":
            y = torch.tanh(torch.relu(y))
        return y


class _WithState(torch.nn.Module):
    """nn.LSTM / nn.GRU called as model(x, state): the initial state is a second input."""

    def __init__(self, cell, layers, bidirectional):
        super().__init__()
        d = 2 if bidirectional else 1
        self.rnn = getattr(torch.nn, cell)(F, H, num_layers=layers, bidirectional=bidirectional, batch_first=True)
        self.head = torch.nn.Linear(H * d, 1)
        self.state_shape = (layers * d, 1, H)


class LSTMWithState(_WithState):
    def forward(self, x, hidden: tuple[torch.Tensor, torch.Tensor]):
        out, _ = self.rnn(x, hidden)
        return self.head(out[:, -1])


class GRUWithState(_WithState):
    def forward(self, x, h0):
        out, _ = self.rnn(x, h0)
        return self.head(out[:, -1])


def make_state_net(cell="LSTM", layers=1, bidirectional=False, seed=0):
    torch.manual_seed(seed)
    return {"LSTM": LSTMWithState, "GRU": GRUWithState}[cell](cell, layers, bidirectional).eval()


def zero_state(net):
    """The state argument of a make_state_net model: (h0, c0) or h0, zeros."""
    zeros = torch.zeros(net.state_shape)
    return (zeros, zeros.clone()) if isinstance(net, LSTMWithState) else zeros


def make_net(torch_module=None, cell="LSTM", layers=1, bidirectional=False, batch_first=True, dropout=0.0,
             readout="last", head="linear", zero_state=False, proj_size=0, seed=0):
    """readout: "last" (out[:, -1]), "h_n" (h_n[-1]) or "sequence" (the whole out)."""
    torch.manual_seed(seed)
    return Net(cell, layers, bidirectional, batch_first, dropout, readout, head, zero_state, proj_size).eval()


def example(torch, batch_first=True):
    return torch.zeros(1, T, F) if batch_first else torch.zeros(T, 1, F)


def export_onnx(torch, net, path, batch_first=True, dynamo=False, extra_args=()):
    """extra_args: what forward() takes after the window (an initial state)."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example(torch, batch_first), *extra_args), str(path), dynamo=dynamo)
    return path


def torch_outputs(torch, net, x, batch_first=True):
    """The torch model on [N, T, F] windows, one at a time, batch axis first in the result."""
    outs = []
    with torch.no_grad():
        for w in x:
            feed = torch.from_numpy(w[None] if batch_first else np.ascontiguousarray(w[:, None]))
            y = net(feed).numpy()
            if y.ndim == 3 and not batch_first:   # a sequence output, [T, 1, C]
                y = y.transpose(1, 0, 2)
            outs.append(y.reshape(1, *y.shape[1:]) if y.ndim > 1 else y[None])
    return np.concatenate(outs)


def windows(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, T, F)).astype(np.float32)
