/*
 * Native CPU kernels for difformer's tfjs-wasm backend (src/backend/native_kernels.ts).
 *
 * Every function works IN PLACE on tfjs-wasm's heap: JS passes the heap's Uint8Array view
 * (Node's N-API accepts a typed array over the wasm memory) plus byte offsets of the tensors,
 * which JS reads from the backend's data map after allocating the outputs (heap growth detaches
 * older views). Nothing is copied in or out; no memory is allocated on the wasm heap here.
 *
 * Safety: every tensor extent is checked against the heap length before any access; a bad
 * offset throws a JS RangeError instead of touching memory outside the heap.
 *
 * Calls pack their numeric arguments into one Float64Array (one N-API conversion per call
 * instead of a dozen), documented per function as `p[i]`.
 */
#define _GNU_SOURCE
#include <math.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cblas.h>

/* OpenBLAS extensions (declared here so any cblas.h alternative works). */
extern void openblas_set_num_threads(int num_threads);
extern int openblas_get_num_threads(void);
extern char *openblas_get_config(void);
extern char *openblas_get_corename(void);

/* ---- argument helpers ---------------------------------------------------------------------- */

typedef struct {
  uint8_t *base;
  size_t len;
} Heap;

typedef struct {
  const double *v;
  size_t n;
} Params;

static napi_value throw_range(napi_env env, const char *msg) {
  napi_throw_range_error(env, NULL, msg);
  return NULL;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "difformer_native: too few arguments");
    return 0;
  }
  return 1;
}

/* A Uint8Array (the wasm heap view) -> base pointer and byte length. */
static int get_heap(napi_env env, napi_value v, Heap *h) {
  napi_typedarray_type type;
  size_t length;
  void *data;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, &ab, &off) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "difformer_native: expected the heap as a Uint8Array");
    return 0;
  }
  h->base = (uint8_t *)data;
  h->len = length;
  return 1;
}

static int get_params(napi_env env, napi_value v, Params *p, size_t min) {
  napi_typedarray_type type;
  size_t length;
  void *data;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, &ab, &off) != napi_ok || type != napi_float64_array) {
    napi_throw_type_error(env, NULL, "difformer_native: expected parameters as a Float64Array");
    return 0;
  }
  if (length < min) {
    napi_throw_range_error(env, NULL, "difformer_native: too few parameters");
    return 0;
  }
  p->v = (const double *)data;
  p->n = length;
  return 1;
}

/* Pointer to `count` elements of `elem` bytes at byte offset `off`, or NULL (and a JS RangeError)
 * when the range leaves the heap or is misaligned. count == 0 is always valid. */
static void *heap_ptr(napi_env env, const Heap *h, double off, double count, size_t elem) {
  if (!(off >= 0) || off != (double)(size_t)off || !(count >= 0)) {
    napi_throw_range_error(env, NULL, "difformer_native: bad offset or size");
    return NULL;
  }
  size_t o = (size_t)off;
  size_t bytes = (size_t)count * elem;
  if (o % elem != 0 || o > h->len || bytes > h->len - o) {
    napi_throw_range_error(env, NULL, "difformer_native: tensor outside the wasm heap");
    return NULL;
  }
  return h->base + o;
}

static napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

/* Elements a row-major matrix of `rows` x `cols` with leading dimension ld spans. */
static double extent(double rows, double cols, double ld) {
  return rows == 0 || cols == 0 ? 0 : (rows - 1) * ld + cols;
}

/* ---- GEMM ------------------------------------------------------------------------------------ */

/*
 * gemm(heap, p): for each batch i, C_i = alpha * op(A_i) op(B_i) + beta * C_i, then optional
 * bias (+= bias[n] per row) and ReLU. Row-major.
 *   p[0] transA  p[1] transB  p[2] M  p[3] N  p[4] K  p[5] alpha  p[6] beta
 *   p[7] lda  p[8] ldb  p[9] ldc  p[10] bias byte offset (-1: none)  p[11] activation (0 none, 1 relu)
 *   p[12] batch count, then per batch: A, B, C byte offsets.
 * With K == 0 the product is zero, so C = beta * C (plus bias).
 */
static napi_value gemm(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  Heap h;
  Params p;
  if (!get_args(env, info, 2, argv) || !get_heap(env, argv[0], &h) || !get_params(env, argv[1], &p, 13)) return NULL;
  int ta = p.v[0] != 0, tb = p.v[1] != 0;
  double M = p.v[2], N = p.v[3], K = p.v[4];
  float alpha = (float)p.v[5], beta = (float)p.v[6];
  double lda = p.v[7], ldb = p.v[8], ldc = p.v[9];
  double biasOff = p.v[10];
  int act = (int)p.v[11];
  double batch = p.v[12];
  if (!(M >= 0 && N >= 0 && K >= 0 && batch >= 0) || M > 2147483647.0 || N > 2147483647.0 || K > 2147483647.0) return throw_range(env, "gemm: bad dimensions");
  if (p.n < 13 + 3 * (size_t)batch) return throw_range(env, "gemm: too few offsets");
  /* BLAS: ld >= max(1, columns of the stored matrix) */
  if (lda < (ta ? M : K) || ldb < (tb ? K : N) || ldc < N || lda < 1 || ldb < 1 || ldc < 1) return throw_range(env, "gemm: bad leading dimension");
  const float *bias = NULL;
  if (biasOff >= 0) {
    bias = (const float *)heap_ptr(env, &h, biasOff, N, 4);
    if (bias == NULL) return NULL;
  }
  int m = (int)M, n = (int)N, k = (int)K;
  for (size_t i = 0; i < (size_t)batch; i++) {
    const double *o = p.v + 13 + 3 * i;
    const float *a = (const float *)heap_ptr(env, &h, o[0], ta ? extent(K, M, lda) : extent(M, K, lda), 4);
    const float *b = (const float *)heap_ptr(env, &h, o[1], tb ? extent(N, K, ldb) : extent(K, N, ldb), 4);
    float *c = (float *)heap_ptr(env, &h, o[2], extent(M, N, ldc), 4);
    if (a == NULL || b == NULL || c == NULL) return NULL;
    if (m == 0 || n == 0) continue;
    if (k == 0) {
      for (int r = 0; r < m; r++) {
        float *row = c + (size_t)r * (size_t)ldc;
        if (beta == 0) memset(row, 0, sizeof(float) * (size_t)n);
        else for (int j = 0; j < n; j++) row[j] *= beta;
      }
    } else {
      cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, (int)lda, b,
                  (int)ldb, beta, c, (int)ldc);
    }
    if (bias != NULL || act == 1) {
      for (int r = 0; r < m; r++) {
        float *row = c + (size_t)r * (size_t)ldc;
        if (bias != NULL)
          for (int j = 0; j < n; j++) row[j] += bias[j];
        if (act == 1)
          for (int j = 0; j < n; j++) row[j] = row[j] > 0 ? row[j] : 0;
      }
    }
  }
  return undefined(env);
}

/* ---- vectorizable math ------------------------------------------------------------------- */

/* expf in the style of Cephes (max error 1 ulp measured), branch-free so loops vectorize.
 * Below -87.3 the result is exactly 0 (masked attention scores of -1e9 must get exactly zero
 * weight; libm would give a denormal down to -103), above ln(FLT_MAX) +inf, NaN stays NaN. */
static inline float exp_approx(float x) {
  float xc = x < -87.0f ? -87.0f : x;
  xc = xc > 88.7228f ? 88.7228f : xc;
  /* floor by truncating a positive number (fx >= -126 after the clamp) */
  float fx = xc * 1.44269504088896341f + 0.5f;
  int ni = (int)(fx + 128.0f) - 128;
  float n = (float)ni;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float r2 = r * r;
  float y = 1.9875691500E-4f;
  y = y * r + 1.3981999507E-3f;
  y = y * r + 8.3334519073E-3f;
  y = y * r + 4.1665795894E-2f;
  y = y * r + 1.6666665459E-1f;
  y = y * r + 5.0000001201E-1f;
  y = y * r2 + r + 1.0f;
  int32_t bits = (ni + 126) << 23; /* 2^(n-1), so n = 128 stays finite */
  float p2;
  memcpy(&p2, &bits, 4);
  y = y * p2 * 2.0f;
  y = x < -87.3f ? 0.0f : y;
  y = x > 88.7228f ? INFINITY : y;
  return x != x ? x : y;
}

#define HOT __attribute__((target_clones("avx2", "default")))

HOT static void exp_loop(const float *x, float *y, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] = exp_approx(x[i]);
}

/* ---- unary ----------------------------------------------------------------------------------- */

/* unary(heap, p): y = f(x) elementwise over n floats.
 *   p[0] op (0 exp)  p[1] n  p[2] x offset  p[3] y offset (may equal x) */
static napi_value unary(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  Heap h;
  Params p;
  if (!get_args(env, info, 2, argv) || !get_heap(env, argv[0], &h) || !get_params(env, argv[1], &p, 4)) return NULL;
  int op = (int)p.v[0];
  double n = p.v[1];
  const float *x = (const float *)heap_ptr(env, &h, p.v[2], n, 4);
  float *y = (float *)heap_ptr(env, &h, p.v[3], n, 4);
  if (x == NULL || y == NULL) return NULL;
  switch (op) {
    case 0: exp_loop(x, y, (size_t)n); break;
    default: return throw_range(env, "unary: unknown op");
  }
  return undefined(env);
}

/* ---- reductions ------------------------------------------------------------------------------ */

/* Max (or min) of a contiguous row; NaN wins, as in tfjs. GCC vector extensions: 8 lanes as
 * one AVX register, or two SSE registers without AVX. */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
HOT static float row_extreme(const float *x, size_t n, int is_max) {
  float init = is_max ? -INFINITY : INFINITY;
  v8f acc = {init, init, init, init, init, init, init, init};
  size_t r = 0;
  for (; r + 8 <= n; r += 8) {
    v8f v;
    memcpy(&v, x + r, sizeof v);
    v8i take = (is_max ? (v > acc) : (v < acc)) | (v != v);
    acc = (v8f)(((v8i)v & take) | ((v8i)acc & ~take));
  }
  float m = init;
  for (int j = 0; j < 8; j++) m = ((is_max ? acc[j] > m : acc[j] < m) || acc[j] != acc[j]) ? acc[j] : m;
  for (; r < n; r++) m = ((is_max ? x[r] > m : x[r] < m) || x[r] != x[r]) ? x[r] : m;
  return m;
}

/* x viewed as [outer, red, inner]; y[o, i] = reduce over r of x[o, r, i]. */
HOT static void reduce_loop(int op, const float *x, float *y, size_t outer, size_t red, size_t inner) {
  for (size_t o = 0; o < outer; o++) {
    const float *xo = x + o * red * inner;
    float *yo = y + o * inner;
    if (inner == 1) {
      /* contiguous rows: 8 partial accumulators vectorize and keep rounding error low */
      float acc[8];
      float init = op == 2 ? -INFINITY : (op == 3 ? INFINITY : 0.0f);
      for (int j = 0; j < 8; j++) acc[j] = init;
      size_t r = 0;
      if (op <= 1) {
        for (; r + 8 <= red; r += 8)
          for (int j = 0; j < 8; j++) acc[j] += xo[r + j];
        float s = 0;
        for (int j = 0; j < 8; j++) s += acc[j];
        for (; r < red; r++) s += xo[r];
        yo[0] = op == 1 ? s / (float)red : s;
      } else {
        yo[0] = row_extreme(xo, red, op == 2);
      }
    } else {
      if (op <= 1) {
        memset(yo, 0, sizeof(float) * inner);
        for (size_t r = 0; r < red; r++) {
          const float *row = xo + r * inner;
          for (size_t i = 0; i < inner; i++) yo[i] += row[i];
        }
        if (op == 1)
          for (size_t i = 0; i < inner; i++) yo[i] /= (float)red;
      } else {
        for (size_t i = 0; i < inner; i++) yo[i] = op == 2 ? -INFINITY : INFINITY;
        for (size_t r = 0; r < red; r++) {
          const float *row = xo + r * inner;
          for (size_t i = 0; i < inner; i++) {
            float v = row[i];
            yo[i] = (op == 2 ? v > yo[i] : v < yo[i]) || v != v ? v : yo[i];
          }
        }
      }
    }
  }
}

/* reduce(heap, p): p[0] op (0 sum, 1 mean, 2 max, 3 min)  p[1] outer  p[2] red  p[3] inner
 *   p[4] x offset  p[5] y offset. An empty reduction gives 0 (sum and mean, as tfjs's cpu
 *   backend, which divides before summing), -inf (max), +inf (min). */
static napi_value reduce(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  Heap h;
  Params p;
  if (!get_args(env, info, 2, argv) || !get_heap(env, argv[0], &h) || !get_params(env, argv[1], &p, 6)) return NULL;
  int op = (int)p.v[0];
  double outer = p.v[1], red = p.v[2], inner = p.v[3];
  if (op < 0 || op > 3 || !(outer >= 0 && red >= 0 && inner >= 0)) return throw_range(env, "reduce: bad parameters");
  const float *x = (const float *)heap_ptr(env, &h, p.v[4], outer * red * inner, 4);
  float *y = (float *)heap_ptr(env, &h, p.v[5], outer * inner, 4);
  if (x == NULL || y == NULL) return NULL;
  if (red == 0) {
    float v = op <= 1 ? 0.0f : op == 2 ? -INFINITY : INFINITY;
    for (size_t i = 0; i < (size_t)(outer * inner); i++) y[i] = v;
    return undefined(env);
  }
  reduce_loop(op, x, y, (size_t)outer, (size_t)red, (size_t)inner);
  return undefined(env);
}

/* ---- transpose ------------------------------------------------------------------------------- */

/* 2-D transpose of a rows x cols block (row-major) in 32 x 32 tiles. */
static void transpose2d(const uint32_t *x, uint32_t *y, size_t rows, size_t cols) {
  const size_t T = 32;
  for (size_t r0 = 0; r0 < rows; r0 += T)
    for (size_t c0 = 0; c0 < cols; c0 += T) {
      size_t r1 = r0 + T < rows ? r0 + T : rows, c1 = c0 + T < cols ? c0 + T : cols;
      for (size_t r = r0; r < r1; r++)
        for (size_t c = c0; c < c1; c++) y[c * rows + r] = x[r * cols + c];
    }
}

/*
 * transpose(heap, p): y = x permuted (4-byte elements: float32 or int32).
 *   p[0] rank (1..8)  p[1] x offset  p[2] y offset  p[3..3+rank) x shape  then perm (rank values)
 * Fast paths: a batch of 2-D transposes (perm = [..., last, second-last]) and permutations that
 * keep the last axis (row copies). Otherwise a strided walk.
 */
static napi_value transpose(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  Heap h;
  Params p;
  if (!get_args(env, info, 2, argv) || !get_heap(env, argv[0], &h) || !get_params(env, argv[1], &p, 3)) return NULL;
  int rank = (int)p.v[0];
  if (rank < 1 || rank > 8 || p.n < 3 + 2 * (size_t)rank) return throw_range(env, "transpose: bad rank");
  size_t shape[8], perm[8], xstride[8], total = 1;
  for (int i = 0; i < rank; i++) {
    double d = p.v[3 + i], q = p.v[3 + rank + i];
    if (!(d >= 0) || !(q >= 0 && q < rank)) return throw_range(env, "transpose: bad shape or permutation");
    shape[i] = (size_t)d;
    perm[i] = (size_t)q;
    total *= shape[i];
  }
  const uint32_t *x = (const uint32_t *)heap_ptr(env, &h, p.v[1], (double)total, 4);
  uint32_t *y = (uint32_t *)heap_ptr(env, &h, p.v[2], (double)total, 4);
  if (x == NULL || y == NULL) return NULL;
  if (total == 0) return undefined(env);
  size_t s = 1;
  for (int i = rank - 1; i >= 0; i--) {
    xstride[i] = s;
    s *= shape[i];
  }
  /* batch of 2-D transposes: leading axes in order, last two swapped */
  int lead_ok = rank >= 2 && perm[rank - 1] == (size_t)rank - 2 && perm[rank - 2] == (size_t)rank - 1;
  for (int i = 0; i < rank - 2 && lead_ok; i++) lead_ok = perm[i] == (size_t)i;
  if (lead_ok) {
    size_t rows = shape[rank - 2], cols = shape[rank - 1], mat = rows * cols;
    for (size_t b = 0; b < total / mat; b++) transpose2d(x + b * mat, y + b * mat, rows, cols);
    return undefined(env);
  }
  /* walk the output in order; innermost output axis copies contiguous runs when it is x's last */
  size_t oshape[8], ostride_in[8], idx[8] = {0};
  for (int i = 0; i < rank; i++) {
    oshape[i] = shape[perm[i]];
    ostride_in[i] = xstride[perm[i]];
  }
  size_t inner = oshape[rank - 1], instep = ostride_in[rank - 1];
  size_t rows = total / inner, src = 0;
  for (size_t r = 0; r < rows; r++) {
    uint32_t *dst = y + r * inner;
    if (instep == 1) memcpy(dst, x + src, inner * 4);
    else for (size_t j = 0; j < inner; j++) dst[j] = x[src + j * instep];
    for (int i = rank - 2; i >= 0; i--) {
      idx[i]++;
      src += ostride_in[i];
      if (idx[i] < oshape[i]) break;
      src -= ostride_in[i] * oshape[i];
      idx[i] = 0;
    }
  }
  return undefined(env);
}

/* ---- gather ----------------------------------------------------------------------------------- */

/* gather(heap, p) -> bool: x (4-byte elements) viewed as [outer, dim, inner]; out[o, i, :] =
 * x[o, idx[i], :] for the nIdx int32 indices. Returns false, writing nothing, if an index is
 * outside [0, dim) (the caller falls back to tfjs, which reports the error).
 *   p[0] outer  p[1] dim  p[2] inner  p[3] nIdx  p[4] x  p[5] indices  p[6] out */
static napi_value gather(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  Heap h;
  Params p;
  if (!get_args(env, info, 2, argv) || !get_heap(env, argv[0], &h) || !get_params(env, argv[1], &p, 7)) return NULL;
  double outer = p.v[0], dim = p.v[1], inner = p.v[2], nidx = p.v[3];
  if (!(outer >= 0 && dim >= 0 && inner >= 0 && nidx >= 0)) return throw_range(env, "gather: bad shape");
  const uint32_t *x = (const uint32_t *)heap_ptr(env, &h, p.v[4], outer * dim * inner, 4);
  const int32_t *idx = (const int32_t *)heap_ptr(env, &h, p.v[5], nidx, 4);
  uint32_t *out = (uint32_t *)heap_ptr(env, &h, p.v[6], outer * nidx * inner, 4);
  if (x == NULL || idx == NULL || out == NULL) return NULL;
  size_t n = (size_t)nidx, d = (size_t)dim, in = (size_t)inner;
  napi_value result;
  for (size_t i = 0; i < n; i++)
    if (idx[i] < 0 || (size_t)idx[i] >= d) {
      napi_get_boolean(env, false, &result);
      return result;
    }
  for (size_t o = 0; o < (size_t)outer; o++)
    for (size_t i = 0; i < n; i++) memcpy(out + (o * n + i) * in, x + (o * d + (size_t)idx[i]) * in, in * 4);
  napi_get_boolean(env, true, &result);
  return result;
}

/* ---- layer norm -------------------------------------------------------------------------------- */

/* layerNorm(heap, p): per row of x [rows, cols]: xhat = (x - mean) / sqrt(var + eps) (biased var),
 * y = xhat * w + b. Writes y, xhat and rstd [rows] (what the backward pass needs).
 *   p[0] rows  p[1] cols  p[2] eps  p[3] x  p[4] w (-1: none)  p[5] b (-1: none)  p[6] y
 *   p[7] xhat (-1: don't store)  p[8] rstd (-1: don't store)   (byte offsets) */
HOT static void layernorm_rows(const float *x, const float *w, const float *b, float *y, float *xhat, float *rstd, size_t rows,
                               size_t cols, float eps) {
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * cols;
    float sum = 0;
    for (size_t c = 0; c < cols; c++) sum += xr[c];
    float mean = sum / (float)cols;
    float sq = 0;
    for (size_t c = 0; c < cols; c++) {
      float d = xr[c] - mean;
      sq += d * d;
    }
    float rs = 1.0f / sqrtf(sq / (float)cols + eps);
    float *yr = y + r * cols;
    float *hr = xhat != NULL ? xhat + r * cols : NULL;
    for (size_t c = 0; c < cols; c++) {
      float h = (xr[c] - mean) * rs;
      if (hr != NULL) hr[c] = h;
      float v = w != NULL ? h * w[c] : h;
      yr[c] = b != NULL ? v + b[c] : v;
    }
    if (rstd != NULL) rstd[r] = rs;
  }
}

static napi_value layernorm(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  Heap h;
  Params p;
  if (!get_args(env, info, 2, argv) || !get_heap(env, argv[0], &h) || !get_params(env, argv[1], &p, 9)) return NULL;
  double rows = p.v[0], cols = p.v[1];
  if (!(rows >= 0 && cols >= 1)) return throw_range(env, "layerNorm: bad shape");
  const float *x = (const float *)heap_ptr(env, &h, p.v[3], rows * cols, 4);
  const float *w = p.v[4] >= 0 ? (const float *)heap_ptr(env, &h, p.v[4], cols, 4) : NULL;
  const float *b = p.v[5] >= 0 ? (const float *)heap_ptr(env, &h, p.v[5], cols, 4) : NULL;
  float *y = (float *)heap_ptr(env, &h, p.v[6], rows * cols, 4);
  float *xhat = p.v[7] >= 0 ? (float *)heap_ptr(env, &h, p.v[7], rows * cols, 4) : NULL;
  float *rstd = p.v[8] >= 0 ? (float *)heap_ptr(env, &h, p.v[8], rows, 4) : NULL;
  if (x == NULL || y == NULL || (p.v[4] >= 0 && w == NULL) || (p.v[5] >= 0 && b == NULL) || (p.v[7] >= 0 && xhat == NULL) ||
      (p.v[8] >= 0 && rstd == NULL))
    return NULL;
  layernorm_rows(x, w, b, y, xhat, rstd, (size_t)rows, (size_t)cols, (float)p.v[2]);
  return undefined(env);
}

/* layerNormGrad(heap, p): g = dy * w; dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) per row;
 * dw = sum over rows of dy * xhat; db = sum over rows of dy.
 *   p[0] rows  p[1] cols  p[2] dy  p[3] xhat  p[4] rstd  p[5] w (-1)  p[6] dx  p[7] dw (-1)  p[8] db (-1) */
HOT static void layernorm_grad_rows(const float *dy, const float *xhat, const float *rstd, const float *w, float *dx, float *dw, float *db,
                                    size_t rows, size_t cols) {
  if (dw != NULL) memset(dw, 0, cols * sizeof(float));
  if (db != NULL) memset(db, 0, cols * sizeof(float));
  for (size_t r = 0; r < rows; r++) {
    const float *gr = dy + r * cols, *hr = xhat + r * cols;
    float sg = 0, sgh = 0;
    for (size_t c = 0; c < cols; c++) {
      float g = w != NULL ? gr[c] * w[c] : gr[c];
      sg += g;
      sgh += g * hr[c];
    }
    float mg = sg / (float)cols, mgh = sgh / (float)cols, rs = rstd[r];
    float *dr = dx + r * cols;
    for (size_t c = 0; c < cols; c++) {
      float g = w != NULL ? gr[c] * w[c] : gr[c];
      dr[c] = rs * (g - mg - hr[c] * mgh);
    }
    if (dw != NULL)
      for (size_t c = 0; c < cols; c++) dw[c] += gr[c] * hr[c];
    if (db != NULL)
      for (size_t c = 0; c < cols; c++) db[c] += gr[c];
  }
}

static napi_value layernorm_grad(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  Heap h;
  Params p;
  if (!get_args(env, info, 2, argv) || !get_heap(env, argv[0], &h) || !get_params(env, argv[1], &p, 9)) return NULL;
  double rows = p.v[0], cols = p.v[1];
  if (!(rows >= 0 && cols >= 1)) return throw_range(env, "layerNormGrad: bad shape");
  const float *dy = (const float *)heap_ptr(env, &h, p.v[2], rows * cols, 4);
  const float *xhat = (const float *)heap_ptr(env, &h, p.v[3], rows * cols, 4);
  const float *rstd = (const float *)heap_ptr(env, &h, p.v[4], rows, 4);
  const float *w = p.v[5] >= 0 ? (const float *)heap_ptr(env, &h, p.v[5], cols, 4) : NULL;
  float *dx = (float *)heap_ptr(env, &h, p.v[6], rows * cols, 4);
  float *dw = p.v[7] >= 0 ? (float *)heap_ptr(env, &h, p.v[7], cols, 4) : NULL;
  float *db = p.v[8] >= 0 ? (float *)heap_ptr(env, &h, p.v[8], cols, 4) : NULL;
  if (dy == NULL || xhat == NULL || rstd == NULL || dx == NULL || (p.v[5] >= 0 && w == NULL) || (p.v[7] >= 0 && dw == NULL) ||
      (p.v[8] >= 0 && db == NULL))
    return NULL;
  layernorm_grad_rows(dy, xhat, rstd, w, dx, dw, db, (size_t)rows, (size_t)cols);
  return undefined(env);
}

/* ---- dropout masks ------------------------------------------------------------------------------ */

static inline uint32_t rotl32(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

/* dropoutMask(heap, p, state): the model's xoshiro128** RNG (src/nn/params.ts Rng), bit for bit:
 * mask[i] = scale if (next() >> 8) >= threshold else 0. `state` (Uint32Array(4)) is advanced in
 * place, so JS continues the same stream.  p[0] n  p[1] mask offset  p[2] threshold  p[3] scale */
static napi_value dropout_mask(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  Heap h;
  Params p;
  if (!get_args(env, info, 3, argv) || !get_heap(env, argv[0], &h) || !get_params(env, argv[1], &p, 4)) return NULL;
  napi_typedarray_type type;
  size_t length;
  void *data;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, argv[2], &type, &length, &data, &ab, &off) != napi_ok || type != napi_uint32_array || length != 4)
    return throw_range(env, "dropoutMask: state must be a Uint32Array(4)");
  uint32_t *st = (uint32_t *)data;
  double n = p.v[0];
  float *mask = (float *)heap_ptr(env, &h, p.v[1], n, 4);
  if (mask == NULL) return NULL;
  uint32_t threshold = (uint32_t)p.v[2];
  float scale = (float)p.v[3];
  uint32_t s0 = st[0], s1 = st[1], s2 = st[2], s3 = st[3];
  for (size_t i = 0; i < (size_t)n; i++) {
    uint32_t result = rotl32(s1 * 5u, 7) * 9u;
    uint32_t t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = rotl32(s3, 11);
    mask[i] = (result >> 8) >= threshold ? scale : 0.0f;
  }
  st[0] = s0;
  st[1] = s1;
  st[2] = s2;
  st[3] = s3;
  return undefined(env);
}

/* ---- Adam ------------------------------------------------------------------------------------ */

/* adam(heap, p): fairseq's Adam with decoupled weight decay, out of place, with the same float32
 * operation order as the tf ops of src/train/optimizer.ts (bit-identical results):
 *   g' = g * gscale; m' = m*b1 + g'*(1-b1); v' = v*b2 + (g'*g')*(1-b2)
 *   p' = (decay != 1 ? p*decay : p) - (m' / (sqrt(v') + eps)) * stepSize
 *   p[0] n  p[1] p  p[2] m  p[3] v  p[4] g  p[5] p'  p[6] m'  p[7] v'  (offsets)
 *   p[8] b1  p[9] 1-b1  p[10] b2  p[11] 1-b2  p[12] eps  p[13] stepSize  p[14] decay (1: none)  p[15] gscale (1: none) */
HOT static void adam_loop(size_t n, const float *P, const float *M, const float *V, const float *G, float *P1, float *M1, float *V1, float b1,
                          float c1, float b2, float c2, float eps, float step, float decay, int use_decay, float gscale, int use_gscale) {
  for (size_t i = 0; i < n; i++) {
    float g = use_gscale ? G[i] * gscale : G[i];
    float m = M[i] * b1 + g * c1;
    float v = V[i] * b2 + (g * g) * c2;
    float base = use_decay ? P[i] * decay : P[i];
    P1[i] = base - (m / (sqrtf(v) + eps)) * step;
    M1[i] = m;
    V1[i] = v;
  }
}

static napi_value adam(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  Heap h;
  Params p;
  if (!get_args(env, info, 2, argv) || !get_heap(env, argv[0], &h) || !get_params(env, argv[1], &p, 16)) return NULL;
  double n = p.v[0];
  float *ptrs[7];
  for (int i = 0; i < 7; i++) {
    ptrs[i] = (float *)heap_ptr(env, &h, p.v[1 + i], n, 4);
    if (ptrs[i] == NULL) return NULL;
  }
  adam_loop((size_t)n, ptrs[0], ptrs[1], ptrs[2], ptrs[3], ptrs[4], ptrs[5], ptrs[6], (float)p.v[8], (float)p.v[9], (float)p.v[10],
            (float)p.v[11], (float)p.v[12], (float)p.v[13], (float)p.v[14], p.v[14] != 1, (float)p.v[15], p.v[15] != 1);
  return undefined(env);
}

/* sumSquares(heap, p) -> number: sum of x^2 over several float arrays, accumulated in double.
 *   p[0] count, then (offset, n) pairs */
static napi_value sum_squares(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  Heap h;
  Params p;
  if (!get_args(env, info, 2, argv) || !get_heap(env, argv[0], &h) || !get_params(env, argv[1], &p, 1)) return NULL;
  size_t count = (size_t)p.v[0];
  if (p.n < 1 + 2 * count) return throw_range(env, "sumSquares: too few offsets");
  double total = 0;
  for (size_t k = 0; k < count; k++) {
    double n = p.v[2 + 2 * k];
    const float *x = (const float *)heap_ptr(env, &h, p.v[1 + 2 * k], n, 4);
    if (x == NULL) return NULL;
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= (size_t)n; i += 16)
      for (int j = 0; j < 16; j++) acc[j] += x[i + j] * x[i + j];
    double part = 0;
    for (int j = 0; j < 16; j++) part += acc[j];
    for (; i < (size_t)n; i++) part += (double)x[i] * x[i];
    total += part;
  }
  napi_value out;
  napi_create_double(env, total, &out);
  return out;
}

/* ---- softmax cross-entropy ------------------------------------------------------------------- */

/* xentLse(heap, p): per row of logits [rows, V]: lse = log(sum exp(x)), target logit, row sum.
 *   p[0] rows  p[1] V  p[2] logits  p[3] targets (int32)  p[4] lse out  p[5] target logit out
 *   p[6] row sum out (-1: skip). Targets outside [0, V) give a target logit of 0. */
HOT static void xent_rows(const float *x, const int32_t *t, float *lse, float *tl, float *rs, size_t rows, size_t V) {
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * V;
    float m = row_extreme(xr, V, 1);
    float s = 0, sx = 0;
    for (size_t j = 0; j < V; j++) {
      s += exp_approx(xr[j] - m);
      sx += xr[j];
    }
    lse[r] = m + logf(s);
    int32_t tr = t[r];
    tl[r] = tr >= 0 && (size_t)tr < V ? xr[tr] : 0.0f;
    if (rs != NULL) rs[r] = sx;
  }
}

static napi_value xent_lse(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  Heap h;
  Params p;
  if (!get_args(env, info, 2, argv) || !get_heap(env, argv[0], &h) || !get_params(env, argv[1], &p, 7)) return NULL;
  double rows = p.v[0], V = p.v[1];
  if (!(rows >= 0 && V >= 1)) return throw_range(env, "xentLse: bad shape");
  const float *x = (const float *)heap_ptr(env, &h, p.v[2], rows * V, 4);
  const int32_t *t = (const int32_t *)heap_ptr(env, &h, p.v[3], rows, 4);
  float *lse = (float *)heap_ptr(env, &h, p.v[4], rows, 4);
  float *tl = (float *)heap_ptr(env, &h, p.v[5], rows, 4);
  float *rs = p.v[6] >= 0 ? (float *)heap_ptr(env, &h, p.v[6], rows, 4) : NULL;
  if (x == NULL || t == NULL || lse == NULL || tl == NULL || (p.v[6] >= 0 && rs == NULL)) return NULL;
  xent_rows(x, t, lse, tl, rs, (size_t)rows, (size_t)V);
  return undefined(env);
}

/* xentGrad(heap, p): d[r, j] = exp(x[r, j] - lse[r]) * a[r] - (j == t[r]) * b[r] - c[r]
 * (the gradient of label-smoothed CE from logits; a, b, c per row fold in the upstream grads).
 *   p[0] rows  p[1] V  p[2] logits  p[3] lse  p[4] targets  p[5] a  p[6] b  p[7] c  p[8] d out */
HOT static void xent_grad_rows(const float *x, const float *lse, const int32_t *t, const float *a, const float *b, const float *c, float *d,
                               size_t rows, size_t V) {
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * V;
    float *dr = d + r * V;
    float l = lse[r], ar = a[r], cr = c[r];
    for (size_t j = 0; j < V; j++) dr[j] = exp_approx(xr[j] - l) * ar - cr;
    int32_t tr = t[r];
    if (tr >= 0 && (size_t)tr < V) dr[tr] -= b[r];
  }
}

static napi_value xent_grad(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  Heap h;
  Params p;
  if (!get_args(env, info, 2, argv) || !get_heap(env, argv[0], &h) || !get_params(env, argv[1], &p, 9)) return NULL;
  double rows = p.v[0], V = p.v[1];
  if (!(rows >= 0 && V >= 1)) return throw_range(env, "xentGrad: bad shape");
  const float *x = (const float *)heap_ptr(env, &h, p.v[2], rows * V, 4);
  const float *lse = (const float *)heap_ptr(env, &h, p.v[3], rows, 4);
  const int32_t *t = (const int32_t *)heap_ptr(env, &h, p.v[4], rows, 4);
  const float *a = (const float *)heap_ptr(env, &h, p.v[5], rows, 4);
  const float *b = (const float *)heap_ptr(env, &h, p.v[6], rows, 4);
  const float *c = (const float *)heap_ptr(env, &h, p.v[7], rows, 4);
  float *d = (float *)heap_ptr(env, &h, p.v[8], rows * V, 4);
  if (x == NULL || lse == NULL || t == NULL || a == NULL || b == NULL || c == NULL || d == NULL) return NULL;
  xent_grad_rows(x, lse, t, a, b, c, d, (size_t)rows, (size_t)V);
  return undefined(env);
}

/* ---- threads and info -------------------------------------------------------------------------- */

static napi_value set_threads(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  int32_t n;
  if (napi_get_value_int32(env, argv[0], &n) != napi_ok || n < 1) return throw_range(env, "setThreads: expected a positive integer");
  openblas_set_num_threads(n);
  return undefined(env);
}

static napi_value info_fn(napi_env env, napi_callback_info info) {
  napi_value obj, v;
  napi_create_object(env, &obj);
  napi_create_string_utf8(env, openblas_get_config(), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, obj, "config", v);
  napi_create_string_utf8(env, openblas_get_corename(), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, obj, "corename", v);
  napi_create_int32(env, openblas_get_num_threads(), &v);
  napi_set_named_property(env, obj, "threads", v);
  napi_create_int32(env, 1, &v);
  napi_set_named_property(env, obj, "abi", v);
  return obj;
}

/* ---- module ------------------------------------------------------------------------------------- */

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"gemm", NULL, gemm, NULL, NULL, NULL, napi_default, NULL},
      {"unary", NULL, unary, NULL, NULL, NULL, napi_default, NULL},
      {"reduce", NULL, reduce, NULL, NULL, NULL, napi_default, NULL},
      {"transpose", NULL, transpose, NULL, NULL, NULL, napi_default, NULL},
      {"gather", NULL, gather, NULL, NULL, NULL, napi_default, NULL},
      {"layerNorm", NULL, layernorm, NULL, NULL, NULL, napi_default, NULL},
      {"layerNormGrad", NULL, layernorm_grad, NULL, NULL, NULL, napi_default, NULL},
      {"dropoutMask", NULL, dropout_mask, NULL, NULL, NULL, napi_default, NULL},
      {"adam", NULL, adam, NULL, NULL, NULL, napi_default, NULL},
      {"sumSquares", NULL, sum_squares, NULL, NULL, NULL, napi_default, NULL},
      {"xentLse", NULL, xent_lse, NULL, NULL, NULL, napi_default, NULL},
      {"xentGrad", NULL, xent_grad, NULL, NULL, NULL, napi_default, NULL},
      {"setThreads", NULL, set_threads, NULL, NULL, NULL, napi_default, NULL},
      {"info", NULL, info_fn, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
