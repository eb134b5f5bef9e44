{
  "targets": [
    {
      "target_name": "drover_onednn",
      "sources": ["src/addon.cc"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-fopenmp", "-fno-math-errno"],
      "libraries": ["-ldnnl", "-lgomp"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
