// trtq LogQuant: AGQ's log2 quantize-dequantize (PTQ4SAM), shared by the CUDA kernel, the C++
// TensorRT plugin and the Python registration. See trtq/calib/logquant.py for the format:
//   code q = #{k : theta_k > max(x, 0)},  theta_k = fp32(s * 2^(-(k + 1/2) / tau)), k < usable
//   value  = fp32(s * 2^(-q / tau)) for q < usable, else 0 (code L-1 is the explicit zero).
// Every table entry is a power-of-two multiple of one of tau "base" values, and scaling a
// normal float by a power of two is exact, so the kernel keeps only 2 x tau floats:
//   level[r] = fp32(s * 2^(-r/tau)),  half_step[r] = fp32(s * 2^(-(r + 1/2)/tau)),  r < tau
//   level_q = ldexp(level[q % tau], -(q / tau)),  theta_k = ldexp(half_step[k % tau], -(k / tau))
// which reproduces the float64-computed tables bit for bit while they stay normal (entries
// below FLT_MIN are dropped: `usable` counts the thresholds >= FLT_MIN).
#pragma once

#include <stdint.h>

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct TrtqLogQuantParams {
    float level[4];
    float half_step[4];
    float scale;
    int32_t tau;
    int32_t bits;
    int32_t usable;  // codes 0 .. usable-1 are non-zero levels; usable <= 2^bits - 1
} TrtqLogQuantParams;

// Fills `out` for bits in 2..8, tau in {1, 2, 4}, finite scale > 0; returns 0, or -1 when the
// parameters are invalid (then `out` is untouched). Host code, no CUDA call.
int trtq_logquant_params(int32_t bits, int32_t tau, float scale, TrtqLogQuantParams* out);

// y[i] = LogQuant(x[i]) for i < n on `stream` (asynchronous). x and y may alias. Returns the
// launch error (cudaSuccess when n == 0).
cudaError_t trtq_logquant_f32(const float* x, float* y, int64_t n,
                              const TrtqLogQuantParams* params, cudaStream_t stream);
// The same on IEEE half values (passed as raw 16-bit words); computed in float, the result
// rounded to nearest even.
cudaError_t trtq_logquant_f16(const uint16_t* x, uint16_t* y, int64_t n,
                              const TrtqLogQuantParams* params, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
