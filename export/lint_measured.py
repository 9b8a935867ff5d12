"""What the TFLite converter, LiteRT, TFLite Micro and tf2onnx did with each Keras RNN
setting, measured by export/lint_probe.py: the record the rules in export/lint_rules.py are
written from. Re-run the probe and update this table when tool versions move."""

# Measured facts, 2026-11-25 (python -m export.lint_probe): tensorflow-cpu 2.21.0,
# tf-keras 2.21.0, tf2onnx 1.17.0 (opset 17), onnxruntime 1.31.1, ai-edge-litert 2.3.0,
# tflite-micro 0.dev20261023182759. tf-keras models, batch 1, input [1, 16, 3],
# LSTM/GRU/SimpleRNN(8) -> Dense(1), random weights. Each conversion ran in a child process,
# then ran in LiteRT / onnxruntime and was compared with Keras on an input whose last 5 steps
# are zeros. int8 = full int8 (representative dataset, TFLITE_BUILTINS_INT8, int8 in/out).
# "fused" = UNIDIRECTIONAL_SEQUENCE_LSTM; "WHILE" = loop subgraph; "flat" = unrolled
# straight-line graph; ops = operator count over all subgraphs; d = max |TFLite - Keras|.
#
# case               float32         int8 (full)        unroll=True float / int8     tf2onnx
# LSTM               fused 3 ops     fused, d 9e-4      flat 221 / 225 ops, ok       LSTM
# stacked (2x LSTM)  fused x2        fused x2           flat 441 / 445 ops, ok       LSTM x2
# Bidirectional      fused x2+REV    fused (d 0.078 *)  flat 440 / 444 ops, ok       one bidi LSTM
# go_backwards       fused+REVERSE   fused              flat 221, ok                 LSTM
# GRU                WHILE           SIGSEGV            flat 234 / 234 ops, ok       GRU
# SimpleRNN          WHILE           SIGSEGV            flat 65 / 65 ops, ok         Loop
# RNN(LSTMCell)      WHILE           SIGSEGV            flat 221 / 225 ops, ok       LSTM
# Masking + LSTM     WHILE (mask ok) SIGSEGV            flat 258 / 264 ops, mask ok  Loop
#                    (unrolled int8 uses REDUCE_ANY: TFLite Micro "Didn't find op for
#                    builtin opcode 'REDUCE_ANY'", fails to allocate; LiteRT runs it)
# return_state=True  WHILE           SIGSEGV            flat 221 / 221 ops, ok       LSTM (Y_h, Y_c)
# stateful=True      WHILE +VAR ops  SIGSEGV            flat 238 / 242 ops           LSTM
#                    (state in VAR_HANDLE/ASSIGN_VARIABLE, but the initial state is the
#                    Keras variables' value at conversion time: d 1.8e-4 after one call)
# activation=relu    WHILE           SIGSEGV            flat 220 / 220 ops, ok       LSTM
# hard_sigmoid       WHILE           SIGSEGV            flat 362 / 362 ops, ok       LSTM
# use_bias=False     WHILE           SIGSEGV            flat 206 / 206 ops, ok       LSTM
# recurrent_dropout  WHILE           SIGSEGV            flat 327 / 327 ops, ok       Loop
# dropout=0.2        fused           fused              flat 221, ok                 LSTM
# time_major=True    fused           fused              flat 220, ok                 LSTM
# custom Layer, builtin ops (x*sigmoid(x))  fused + MUL/LOGISTIC, int8 ok            LSTM
# custom Layer, tf.math.igamma   float and int8: "error: 'tf.Igamma' op is neither a custom
#                    op nor a flex op"; tf2onnx: onnxruntime INVALID_GRAPH (Igamma)
# Conv1D -> LSTM     fused (CONV_2D)  fused             -                            LSTM
# Reshape/Dense/LSTM(seq)/Dropout/Flatten/Dense   fused, int8 fused                  LSTM
# Follow-ups measured the same day (same versions):
# - stateful=True rebuilt with stateful=False (same weights): fused; two invoke() calls without
#   reset_all_variables() equal Keras stateful call 1 and call 2 exactly (float; int8 d 0.004).
# - Bidirectional int8 (*): over 50 inputs RMSE 0.041 vs 0.014 for one LSTM (output std
#   0.13-0.16, random weights): converts, but drifts about 3x more.
# - No probe case was silently wrong: the masked WHILE / unrolled graphs honour the mask
#   (d 3e-8 vs Keras, 0.055 vs the same model without the mask).
# What `edge export` makes of them (2026-12-01, tests/test_lint_export.py): every case goes the
# lint's way, except two the converter handles but export cannot feed, which the lint refuses:
# time_major (export's windows are batch-major: its batch-1 pin would land on the time axis,
# rebuild diff 0.19) and return_state with h and c as model outputs (export takes one output).
MEASURED: dict[str, dict[str, str]] = {
    # case: float32 / int8 / unroll_float / unroll_int8 / onnx, as the probe summarised them
    "lstm": {"float32": "fused", "int8": "fused", "unroll_float32": "flat 221 ops",
             "unroll_int8": "flat 225 ops", "onnx": "LSTM"},
    "stacked": {"float32": "fused", "int8": "fused", "unroll_float32": "flat 441 ops",
                "unroll_int8": "flat 445 ops", "onnx": "LSTM"},
    "bidirectional": {"float32": "fused", "int8": "fused (drift 3x LSTM)",
                      "unroll_float32": "flat 440 ops", "unroll_int8": "flat 444 ops", "onnx": "LSTM"},
    "go_backwards": {"float32": "fused", "int8": "fused", "unroll_float32": "flat 221 ops",
                     "unroll_int8": "flat 221 ops", "onnx": "LSTM"},
    "gru": {"float32": "WHILE", "int8": "SIGSEGV", "unroll_float32": "flat 234 ops",
            "unroll_int8": "flat 234 ops", "onnx": "GRU"},
    "simple_rnn": {"float32": "WHILE", "int8": "SIGSEGV", "unroll_float32": "flat 65 ops",
                   "unroll_int8": "flat 65 ops", "onnx": "Loop"},
    "rnn_lstmcell": {"float32": "WHILE", "int8": "SIGSEGV", "unroll_float32": "flat 221 ops",
                     "unroll_int8": "flat 225 ops", "onnx": "LSTM"},
    "masking": {"float32": "WHILE (mask honoured)", "int8": "SIGSEGV",
                "unroll_float32": "flat 258 ops (mask honoured)",
                "unroll_int8": "flat 264 ops (mask honoured; REDUCE_ANY not in TFLite Micro)",
                "onnx": "Loop"},
    "return_state": {"float32": "WHILE", "int8": "SIGSEGV", "unroll_float32": "flat 221 ops",
                     "unroll_int8": "flat 221 ops", "onnx": "LSTM"},
    "stateful": {"float32": "WHILE + VAR_HANDLE (initial state baked at conversion)",
                 "int8": "SIGSEGV", "unroll_float32": "flat 238 ops", "unroll_int8": "flat 242 ops",
                 "onnx": "LSTM", "rebuilt_stateless": "fused, state carried across invoke()"},
    "relu": {"float32": "WHILE", "int8": "SIGSEGV", "unroll_float32": "flat 220 ops",
             "unroll_int8": "flat 220 ops", "onnx": "LSTM"},
    "hard_sigmoid": {"float32": "WHILE", "int8": "SIGSEGV", "unroll_float32": "flat 362 ops",
                     "unroll_int8": "flat 362 ops", "onnx": "LSTM"},
    "no_bias": {"float32": "WHILE", "int8": "SIGSEGV", "unroll_float32": "flat 206 ops",
                "unroll_int8": "flat 206 ops", "onnx": "LSTM"},
    "recurrent_dropout": {"float32": "WHILE", "int8": "SIGSEGV", "unroll_float32": "flat 327 ops",
                          "unroll_int8": "flat 327 ops", "onnx": "Loop"},
    "dropout": {"float32": "fused", "int8": "fused", "unroll_float32": "flat 221 ops",
                "unroll_int8": "flat 225 ops", "onnx": "LSTM"},
    "time_major": {"float32": "fused", "int8": "fused", "unroll_float32": "flat 220 ops",
                   "unroll_int8": "flat 220 ops", "onnx": "LSTM"},
    "custom_swish": {"float32": "fused", "int8": "fused", "onnx": "LSTM"},
    "custom_igamma": {"float32": "error: 'tf.Igamma' op is neither a custom op nor a flex op",
                      "int8": "same error", "onnx": "onnxruntime INVALID_GRAPH"},
    "conv1d": {"float32": "fused", "int8": "fused", "onnx": "LSTM"},
    "around": {"float32": "fused", "int8": "fused", "onnx": "LSTM"},
}
