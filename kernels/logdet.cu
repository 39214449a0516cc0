// Kernel family logdet, raw CUDA: batched LU with partial pivoting for small matrices
// (n ≤ 64), compiled at run time through cupy.RawModule (kernels/logdet_cuda.py).
//
// Versions of the family: numpy reference (minigen/reference/logdet.py: the math), C++
// (csrc/logdet.cpp), Triton (kernels/logdet.py), this file. The issue names the batched LU as
// the case where raw CUDA beats Triton: the pivot search is a reduction over one column, the
// row swap and the rank-1 update touch the whole trailing matrix, and with one thread block per
// matrix the matrix stays in shared memory for all n steps while warps sync with
// __syncthreads() (Triton has no such block-level barrier over a tile it can index freely).
//
// Math (LAPACK getrf, 0-based pivots), for k = 0..n−1:
//     p = argmax_{i ≥ k} |a_ik| (first maximum on ties), swap rows k and p,
//     l_ik = a_ik / a_kk (skipped when a_kk = 0: the column below is zero),
//     a_ij −= l_ik a_kj (i, j > k).
// Work per matrix: 2n³/3 FLOPs; bytes: n² read + n² written + n pivots; at n = 16 a float64
// matrix is 2 KiB, so a 48 KiB block of shared memory holds it many times over.
//
// Layout: one block per matrix, blockDim = (32, 8): the n×n tile in shared memory with a row
// padding of one element (no bank conflicts on column reads); threads stride over rows and
// columns. The pivot search is one warp's shuffle reduction (n ≤ 64: two elements per lane).
// lu_solve_small solves A X = B (or Aᵀ X = B) for one right-hand-side column per thread.

#define MAX_N 64
#define LDS (MAX_N + 1)

template <typename T>
__device__ __forceinline__ T absval(T v) { return v < T(0) ? -v : v; }

template <typename T>
__device__ void lu_small(const T* __restrict__ a, T* __restrict__ lu, int* __restrict__ piv,
                         T* __restrict__ sign, int n) {
    __shared__ T tile[MAX_N * LDS];
    __shared__ int s_p;
    __shared__ int s_swaps;
    const long long b = blockIdx.x;
    const T* src = a + b * n * n;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int tid = ty * blockDim.x + tx, nthreads = blockDim.x * blockDim.y;
    for (int e = tid; e < n * n; e += nthreads) {
        tile[(e / n) * LDS + e % n] = src[e];
    }
    if (tid == 0) s_swaps = 0;
    __syncthreads();
    for (int k = 0; k < n; ++k) {
        if (ty == 0) {  // warp 0: pivot search down column k
            T best = T(-1);
            int p = n;
            for (int i = k + tx; i < n; i += 32) {
                const T v = absval(tile[i * LDS + k]);
                if (v > best) { best = v; p = i; }
            }
            for (int off = 16; off > 0; off >>= 1) {
                const T ob = __shfl_down_sync(0xffffffffu, best, off);
                const int op = __shfl_down_sync(0xffffffffu, p, off);
                if (ob > best || (ob == best && op < p)) { best = ob; p = op; }
            }
            if (tx == 0) {
                s_p = p;
                piv[b * n + k] = p;
                if (p != k) ++s_swaps;
            }
        }
        __syncthreads();
        const int p = s_p;
        if (p != k) {  // swap whole rows k and p
            for (int c = tid; c < n; c += nthreads) {
                const T t = tile[k * LDS + c];
                tile[k * LDS + c] = tile[p * LDS + c];
                tile[p * LDS + c] = t;
            }
        }
        __syncthreads();
        const T pivot = tile[k * LDS + k];
        if (pivot != T(0)) {
            for (int i = k + 1 + tid; i < n; i += nthreads) {
                tile[i * LDS + k] /= pivot;  // l_ik
            }
            __syncthreads();
            for (int i = k + 1 + ty; i < n; i += blockDim.y) {  // rank-1 update
                const T l = tile[i * LDS + k];
                for (int c = k + 1 + tx; c < n; c += blockDim.x) {
                    tile[i * LDS + c] -= l * tile[k * LDS + c];
                }
            }
        }
        __syncthreads();
    }
    T* dst = lu + b * n * n;
    for (int e = tid; e < n * n; e += nthreads) {
        dst[e] = tile[(e / n) * LDS + e % n];
    }
    if (tid == 0) sign[b] = (s_swaps & 1) ? T(-1) : T(1);
}

template <typename T>
__device__ void solve_small(const T* __restrict__ lu, const int* __restrict__ piv,
                            T* __restrict__ x, int n, int k, int transpose) {
    __shared__ T tile[MAX_N * LDS];
    const long long b = blockIdx.x;
    const T* l = lu + b * n * n;
    for (int e = threadIdx.x; e < n * n; e += blockDim.x) {
        tile[(e / n) * LDS + e % n] = l[e];
    }
    __syncthreads();
    const int c = blockIdx.y * blockDim.x + threadIdx.x;  // this thread's column of B
    if (c >= k) return;
    T* xc = x + b * n * k + c;
    const int* pv = piv + b * n;
    if (!transpose) {
        for (int s = 0; s < n; ++s) {
            const int p = pv[s];
            if (p != s) { const T t = xc[s * k]; xc[s * k] = xc[p * k]; xc[p * k] = t; }
        }
        for (int i = 0; i < n; ++i) {  // L y = P b
            T acc = xc[i * k];
            for (int j = 0; j < i; ++j) acc -= tile[i * LDS + j] * xc[j * k];
            xc[i * k] = acc;
        }
        for (int i = n - 1; i >= 0; --i) {  // U x = y
            T acc = xc[i * k];
            for (int j = i + 1; j < n; ++j) acc -= tile[i * LDS + j] * xc[j * k];
            xc[i * k] = acc / tile[i * LDS + i];
        }
    } else {
        for (int i = 0; i < n; ++i) {  // Uᵀ z = b
            T acc = xc[i * k];
            for (int j = 0; j < i; ++j) acc -= tile[j * LDS + i] * xc[j * k];
            xc[i * k] = acc / tile[i * LDS + i];
        }
        for (int i = n - 2; i >= 0; --i) {  // Lᵀ w = z
            T acc = xc[i * k];
            for (int j = i + 1; j < n; ++j) acc -= tile[j * LDS + i] * xc[j * k];
            xc[i * k] = acc;
        }
        for (int s = n - 1; s >= 0; --s) {  // x = Pᵀ w
            const int p = pv[s];
            if (p != s) { const T t = xc[s * k]; xc[s * k] = xc[p * k]; xc[p * k] = t; }
        }
    }
}

extern "C" {
__global__ void lu_small_f32(const float* a, float* lu, int* piv, float* sign, int n) {
    lu_small<float>(a, lu, piv, sign, n);
}
__global__ void lu_small_f64(const double* a, double* lu, int* piv, double* sign, int n) {
    lu_small<double>(a, lu, piv, sign, n);
}
__global__ void solve_small_f32(const float* lu, const int* piv, float* x, int n, int k,
                                int transpose) {
    solve_small<float>(lu, piv, x, n, k, transpose);
}
__global__ void solve_small_f64(const double* lu, const int* piv, double* x, int n, int k,
                                int transpose) {
    solve_small<double>(lu, piv, x, n, k, transpose);
}
}
