"""Post-training quantization of a float ONNX graph (`trtq quantize-onnx`).

For users whose model is an ONNX file rather than a PyTorch module:

1. `sites`: where Q/DQ goes, by TensorRT's placement rules: the inputs of Conv, ConvTranspose,
   MatMul and Gemm (per-channel symmetric weights on the output-channel axis, per-tensor
   activations; both operands of an activation×activation MatMul); LayerNorm, Softmax, GELU and
   everything else stay float. Each site gets a quantizer name derived from the node's name
   (`/encoder/layer.0/mlp/fc1/MatMul` → `encoder.layer.0.mlp.fc1.input_quantizer`),
   so trtq's recipes (ordered wildcard rules over quantizer names) select and configure them.
2. `feeds`: calibration inputs from an image folder (resized, normalised) or from .npz files
   keyed by input name.
3. `collect`: runs the graph in onnxruntime with every quantized activation as an extra output
   and streams it into trtq's observers (the same ones PyTorch calibration uses).
4. `insert`: writes the Q/DQ nodes for the target (TensorRT: symmetric INT8, one Q/DQ pair per
   consumer; onnxruntime: uint8 activations, INT8 weight initializers, convolutions float).
5. `quantize`: the whole step, checked (lint, coverage, parity with the float graph), with a
   sidecar.
"""
