"""Latency-aware mixed precision (`trtq autoquant`): INT8 per layer group where it is measured
to save time, under an agreement floor (`trtq.autoquant.run`)."""
