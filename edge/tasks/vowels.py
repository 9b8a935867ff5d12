"""Sequence classification on speech: JapaneseVowels (9 speakers, 12 LPC cepstrum channels).

Utterances have 7-29 frames. The fused LSTM op has no masking, so every utterance is
zero-padded at the START to 29 frames: the LSTM reads the padding first and the real
frames last, so the final hidden state is driven by the speech, not by padding.
The padding value 0 equals the training mean after standardization.
"""
import numpy as np

from edge.tasks.base import ReferenceTask, Split


class JapaneseVowels(ReferenceTask):
    name = "japanese_vowels"
    kind = "classification"
    description = ("JapaneseVowels (sktime, official split 270 train / 370 test, 9 speakers): "
                   "12 channels standardized, zero-padded at the start to 29 steps, "
                   "LSTM(32) -> Dense(9, softmax).")
    window = 29
    epochs = 30
    batch_size = 32
    learning_rate = 3e-3
    classes = 9

    def load(self) -> Split:
        from sktime.datasets import load_japanese_vowels
        X_tr, y_tr = load_japanese_vowels(split="train")
        X_te, y_te = load_japanese_vowels(split="test")
        frames_tr = [np.stack([X_tr.iloc[i, c].to_numpy() for c in range(12)], axis=1)
                     for i in range(len(X_tr))]
        frames_te = [np.stack([X_te.iloc[i, c].to_numpy() for c in range(12)], axis=1)
                     for i in range(len(X_te))]
        allf = np.concatenate(frames_tr)
        mean, std = allf.mean(axis=0), allf.std(axis=0) + 1e-8

        def pad(frames):
            out = np.zeros((len(frames), self.window, 12), np.float32)
            for i, f in enumerate(frames):
                f = (f - mean) / std
                out[i, self.window - len(f):] = f[-self.window:]
            return out

        labels = lambda y: np.asarray(y).astype(int) - 1
        return Split(pad(frames_tr), labels(y_tr), pad(frames_te), labels(y_te),
                     {"features": [f"lpc_{i}" for i in range(12)],
                      "standardize": {"mean": mean.tolist(), "std": std.tolist()},
                      "padding": "zeros at the start to 29 steps (no masking in the fused op)",
                      "classes": [str(i + 1) for i in range(self.classes)]})

    def layers(self, tf_keras):
        L = tf_keras.layers
        return [L.LSTM(32, name="lstm"), L.Dense(self.classes, activation="softmax", name="head")]
