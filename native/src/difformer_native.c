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
      {"setThreads", NULL, set_threads, NULL, NULL, NULL, napi_default, NULL},
      {"info", NULL, info_fn, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
