{
  # The optional native CPU kernels of src/backend/native_kernels.ts: one C file, N-API only, linked
  # against the system OpenBLAS (Debian: libopenblas-dev). Built by scripts/build-native.mjs with
  # node-gyp --nodedir=/usr (offline, from the installed Node headers).
  "targets": [
    {
      "target_name": "difformer_native",
      "sources": ["src/difformer_native.c"],
      "cflags": ["-O3", "-std=c11", "-fno-math-errno", "-fno-trapping-math", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lopenblas", "-lm", "-lpthread"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
