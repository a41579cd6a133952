"""Calibration: fake quantizers, observers, quantized modules, PTQ4SAM (BIG, AGQ) and PTQ4ViT
(twin uniform, Hessian-guided search). Arrives with the calibration-core issue."""
