// CUDA kernel of trtq's LogQuant (see logquant.h). One thread handles 4 (FP32) or 8 (FP16)
// consecutive elements with one 16-byte load and one 16-byte store where the pointers allow it;
// a grid-stride loop covers any size, and a scalar path takes the unaligned tail.
#include "logquant.h"

#include <cuda_fp16.h>
#include <float.h>
#include <math.h>

namespace {

constexpr int kThreads = 256;

// The per-launch constants, in registers. TAU (1, 2 or 4) is a template parameter, so q / tau
// and q % tau are a shift and a mask and the 4-entry tables shrink to TAU live values.
struct Prepared {
    float level[4], half_step[4], log2_scale;
    int usable;
};

__device__ __forceinline__ Prepared prepare(const TrtqLogQuantParams& p) {
    Prepared c;
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        c.level[r] = p.level[r];
        c.half_step[r] = p.half_step[r];
    }
    c.log2_scale = log2f(p.scale);
    c.usable = p.usable;
    return c;
}

template <int TAU>
__device__ __forceinline__ float pick(const float (&a)[4], int q) {
    const int r = q & (TAU - 1);  // selects keep the table in registers
    if (TAU == 1) return a[0];
    if (TAU == 2) return r == 0 ? a[0] : a[1];
    return r == 0 ? a[0] : r == 1 ? a[1] : r == 2 ? a[2] : a[3];
}

// base * 2^-m by lowering the exponent field: exact while the result is a normal float, which
// holds for every level and threshold below `usable` (see logquant.h).
__device__ __forceinline__ float scaled(float base, int m) {
    return __int_as_float(__float_as_int(base) - (m << 23));
}

template <int TAU>
__device__ __forceinline__ float threshold(const Prepared& c, int k) {
    constexpr int kShift = TAU >> 1;  // 1, 2, 4 -> 0, 1, 2
    return scaled(pick<TAU>(c.half_step, k), k >> kShift);
}

// Code of x: the number of thresholds greater than max(x, 0). A log2 estimate lands within
// a code or two; exact comparisons with the thresholds then settle it, so the result does not
// depend on how log2 rounds.
template <int TAU>
__device__ __forceinline__ int encode(float x, const Prepared& c) {
    const float xm = fmaxf(x, 0.0f);  // NaN and negatives go to the zero code
    int q = c.usable;
    if (xm > 0.0f) {
        const float guess = rintf(static_cast<float>(TAU) * (c.log2_scale - __log2f(xm)));
        q = static_cast<int>(fminf(fmaxf(guess, 0.0f), static_cast<float>(c.usable)));
    }
    while (q < c.usable && threshold<TAU>(c, q) > xm) ++q;
    while (q > 0 && threshold<TAU>(c, q - 1) <= xm) --q;
    return q;
}

template <int TAU>
__device__ __forceinline__ float logquant(float x, const Prepared& c) {
    constexpr int kShift = TAU >> 1;
    const int q = encode<TAU>(x, c);
    return q >= c.usable ? 0.0f : scaled(pick<TAU>(c.level, q), q >> kShift);
}

template <int TAU>
__global__ void logquant_f32_vec(const float4* x, float4* y, int64_t n4,
                                 TrtqLogQuantParams params) {
    const Prepared p = prepare(params);
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4;
         i += int64_t(gridDim.x) * blockDim.x) {
        float4 v = x[i];
        v.x = logquant<TAU>(v.x, p);
        v.y = logquant<TAU>(v.y, p);
        v.z = logquant<TAU>(v.z, p);
        v.w = logquant<TAU>(v.w, p);
        y[i] = v;
    }
}

template <int TAU>
__global__ void logquant_f32_scalar(const float* x, float* y, int64_t n,
                                    TrtqLogQuantParams params) {
    const Prepared p = prepare(params);
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x) {
        y[i] = logquant<TAU>(x[i], p);
    }
}

template <int TAU>
__global__ void logquant_f16_vec(const uint4* x, uint4* y, int64_t n8,
                                 TrtqLogQuantParams params) {
    const Prepared p = prepare(params);
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n8;
         i += int64_t(gridDim.x) * blockDim.x) {
        uint4 raw = x[i];
        __half2* h = reinterpret_cast<__half2*>(&raw);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const float2 f = __half22float2(h[j]);
            h[j] = __floats2half2_rn(logquant<TAU>(f.x, p), logquant<TAU>(f.y, p));
        }
        y[i] = raw;
    }
}

template <int TAU>
__global__ void logquant_f16_scalar(const __half* x, __half* y, int64_t n,
                                    TrtqLogQuantParams params) {
    const Prepared p = prepare(params);
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x) {
        y[i] = __float2half_rn(logquant<TAU>(__half2float(x[i]), p));
    }
}

int grid_for(int64_t items) {
    int device = 0, sms = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    const int64_t limit = int64_t(sms > 0 ? sms : 16) * 8;  // resident blocks; the loop does
    const int64_t blocks = (items + kThreads - 1) / kThreads;  // the rest
    return static_cast<int>(blocks < limit ? blocks : limit);
}

bool aligned16(const void* a, const void* b) {
    return (reinterpret_cast<uintptr_t>(a) | reinterpret_cast<uintptr_t>(b)) % 16 == 0;
}

}  // namespace

extern "C" int trtq_logquant_params(int32_t bits, int32_t tau, float scale,
                                    TrtqLogQuantParams* out) {
    if (out == nullptr || bits < 2 || bits > 8 || !(tau == 1 || tau == 2 || tau == 4) ||
        !(scale > 0.0f) || !isfinite(scale)) {
        return -1;
    }
    TrtqLogQuantParams p = {};
    p.scale = scale;
    p.tau = tau;
    p.bits = bits;
    for (int r = 0; r < 4; ++r) {  // the same float64 arithmetic as the Python tables
        p.level[r] = r < tau ? static_cast<float>(double(scale) * exp2(-double(r) / tau)) : 0.0f;
        p.half_step[r] =
            r < tau ? static_cast<float>(double(scale) * exp2(-(double(r) + 0.5) / tau)) : 0.0f;
    }
    const int codes = 1 << bits;
    int usable = 0;
    while (usable < codes - 1 &&
           static_cast<float>(double(scale) * exp2(-(double(usable) + 0.5) / tau)) >= FLT_MIN) {
        ++usable;
    }
    p.usable = usable;
    *out = p;
    return 0;
}

namespace {

template <int TAU>
void launch_f32(const float* x, float* y, int64_t n, const TrtqLogQuantParams& p,
                cudaStream_t stream) {
    int64_t done = 0;
    if (aligned16(x, y) && n >= 4) {
        const int64_t n4 = n / 4;
        logquant_f32_vec<TAU><<<grid_for(n4), kThreads, 0, stream>>>(
            reinterpret_cast<const float4*>(x), reinterpret_cast<float4*>(y), n4, p);
        done = n4 * 4;
    }
    if (done < n) {
        logquant_f32_scalar<TAU><<<grid_for(n - done), kThreads, 0, stream>>>(
            x + done, y + done, n - done, p);
    }
}

template <int TAU>
void launch_f16(const uint16_t* x, uint16_t* y, int64_t n, const TrtqLogQuantParams& p,
                cudaStream_t stream) {
    int64_t done = 0;
    if (aligned16(x, y) && n >= 8) {
        const int64_t n8 = n / 8;
        logquant_f16_vec<TAU><<<grid_for(n8), kThreads, 0, stream>>>(
            reinterpret_cast<const uint4*>(x), reinterpret_cast<uint4*>(y), n8, p);
        done = n8 * 8;
    }
    if (done < n) {
        logquant_f16_scalar<TAU><<<grid_for(n - done), kThreads, 0, stream>>>(
            reinterpret_cast<const __half*>(x) + done, reinterpret_cast<__half*>(y) + done,
            n - done, p);
    }
}

}  // namespace

extern "C" cudaError_t trtq_logquant_f32(const float* x, float* y, int64_t n,
                                         const TrtqLogQuantParams* params, cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    switch (params->tau) {
        case 1: launch_f32<1>(x, y, n, *params, stream); break;
        case 2: launch_f32<2>(x, y, n, *params, stream); break;
        case 4: launch_f32<4>(x, y, n, *params, stream); break;
        default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t trtq_logquant_f16(const uint16_t* x, uint16_t* y, int64_t n,
                                         const TrtqLogQuantParams* params, cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    switch (params->tau) {
        case 1: launch_f16<1>(x, y, n, *params, stream); break;
        case 2: launch_f16<2>(x, y, n, *params, stream); break;
        case 4: launch_f16<4>(x, y, n, *params, stream); break;
        default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}
