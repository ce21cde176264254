"""Stage 3 (notebook 03): decoding. Reward-guided decoding, ARGS-style (``rgd``: settings, the decoding loop,
the logits processor), its per-path backends (``backends``: the reward on the policy's own states, on another
backbone, on re-encoded text) and plain greedy decoding with the cached policy generator (``greedy``).
The KV cache it runs on is ``lib.core.kvcache`` (features and teacher forcing use it too)."""
