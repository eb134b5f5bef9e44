// drover_onednn: oneDNN kernels for tfjs-backend-wasm, computing in place on the wasm heap.
//
// Every entry point takes Float32Array views of the wasm heap (made by the caller right after
// its last heap allocation) and an Int32Array of sizes; oneDNN memory objects are created on
// those user pointers, so nothing is copied in or out. Primitives are costly to create and
// cached by a key made of the entry point and its sizes. Layouts are tfjs's: activations NHWC,
// conv filters HWIO, depthwise filters [KH, KW, C, multiplier], matrices row-major.
#include <node_api.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <dnnl.hpp>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

using dnnl::algorithm;
using dnnl::memory;
using dnnl::primitive_attr;
using dnnl::prop_kind;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;
using dims = dnnl::memory::dims;

namespace {

// Per thread: `drover train --workers N` runs a tfjs backend in each of N threads of one process,
// all calling this one addon at once. A stream and the primitives' cached scratch buffers must
// not be shared between threads, so every piece of state below is thread_local.
dnnl::engine& Engine() {
  thread_local dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream& Stream() {
  thread_local dnnl::stream stream(Engine());
  return stream;
}

// ---- N-API helpers ----------------------------------------------------------------------

struct CallArgs {
  napi_env env;
  std::vector<napi_value> argv;
};

CallArgs GetArgs(napi_env env, napi_callback_info info, size_t expected) {
  size_t argc = expected;
  std::vector<napi_value> argv(expected);
  napi_get_cb_info(env, info, &argc, argv.data(), nullptr, nullptr);
  if (argc < expected) throw std::runtime_error("expected " + std::to_string(expected) + " arguments");
  return {env, argv};
}

bool IsNullish(napi_env env, napi_value value) {
  napi_valuetype type;
  napi_typeof(env, value, &type);
  return type == napi_null || type == napi_undefined;
}

void* TypedData(napi_env env, napi_value value, napi_typedarray_type want, size_t* length) {
  bool is_typed = false;
  napi_is_typedarray(env, value, &is_typed);
  if (!is_typed) throw std::runtime_error("expected a typed array");
  napi_typedarray_type type;
  void* data = nullptr;
  napi_value buffer;
  size_t offset;
  napi_get_typedarray_info(env, value, &type, length, &data, &buffer, &offset);
  if (type != want) throw std::runtime_error("typed array of the wrong type");
  return data;  // already adjusted by the view's byte offset
}

float* Floats(napi_env env, napi_value value) {
  if (IsNullish(env, value)) return nullptr;
  size_t length;
  return static_cast<float*>(TypedData(env, value, napi_float32_array, &length));
}

std::vector<int64_t> Ints(napi_env env, napi_value value, size_t expected) {
  size_t length;
  auto* data = static_cast<int32_t*>(TypedData(env, value, napi_int32_array, &length));
  if (length != expected) throw std::runtime_error("expected " + std::to_string(expected) + " sizes, got " + std::to_string(length));
  return std::vector<int64_t>(data, data + length);
}

float Number(napi_env env, napi_value value) {
  double result = 0;
  napi_get_value_double(env, value, &result);
  return static_cast<float>(result);
}

// Below this many elements a pass is faster on one thread than the cost of waking the others
// (measured: Sum of the reference CNN's bias gradients took 2.7x longer on 2 threads).
constexpr int64_t kParallelMin = int64_t{1} << 16;

std::string Key(const char* op, const std::vector<int64_t>& sizes) {
  std::string key(op);
  for (auto s : sizes) key += "," + std::to_string(s);
  return key;
}

// Activations of tfjs's fused kernels, as oneDNN eltwise post-ops. 0 = linear.
enum Activation { kLinear = 0, kRelu = 1, kRelu6 = 2, kLeakyRelu = 3, kSigmoid = 4, kElu = 5 };

primitive_attr ActivationAttr(int64_t activation, float alpha) {
  primitive_attr attr;
  dnnl::post_ops ops;
  switch (activation) {
    case kLinear: break;
    case kRelu: ops.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f); break;
    case kRelu6: ops.append_eltwise(1.f, algorithm::eltwise_clip, 0.f, 6.f); break;
    case kLeakyRelu: ops.append_eltwise(1.f, algorithm::eltwise_relu, alpha, 0.f); break;
    case kSigmoid: ops.append_eltwise(1.f, algorithm::eltwise_logistic, 0.f, 0.f); break;
    case kElu: ops.append_eltwise(1.f, algorithm::eltwise_elu, 1.f, 0.f); break;
    default: throw std::runtime_error("unknown activation " + std::to_string(activation));
  }
  attr.set_post_ops(ops);
  return attr;
}

// ---- convolution ------------------------------------------------------------------------
// sizes: N IH IW IC OH OW OC KH KW SH SW DH DW PT PL PB PR depthwise activation hasBias

constexpr size_t kConvSizes = 20;

struct ConvShape {
  memory::desc src, dst, user_weights, any_weights, bias;
  dims strides, dilations, pad_l, pad_r;
  bool cropped = false;  // src is a view of the input without the rows/columns no window reaches
  int64_t src_elements = 0;
};

ConvShape MakeConvShape(const std::vector<int64_t>& s) {
  const int64_t n = s[0], ih = s[1], iw = s[2], ic = s[3], oh = s[4], ow = s[5], oc = s[6], kh = s[7], kw = s[8];
  const bool depthwise = s[17] != 0;
  ConvShape shape;
  // A negative padding after the input (rows or columns no window reaches, e.g. a strided 1x1
  // convolution of an even size) gives wrong results and heap corruption in some oneDNN 2.6
  // kernels (1 input channel): describe the input without them instead, over the same memory.
  const int64_t pad_b = s[15], pad_r = s[16];
  const int64_t used_h = ih + std::min<int64_t>(pad_b, 0), used_w = iw + std::min<int64_t>(pad_r, 0);
  shape.cropped = used_h != ih || used_w != iw;
  shape.src_elements = n * ih * iw * ic;
  shape.src = shape.cropped ? memory::desc({n, ic, used_h, used_w}, dt::f32, dims{ih * iw * ic, 1, iw * ic, ic})
                            : memory::desc({n, ic, ih, iw}, dt::f32, tag::nhwc);
  shape.dst = memory::desc({n, oc, oh, ow}, dt::f32, tag::nhwc);
  if (depthwise) {
    // [KH, KW, C, M] seen as groups g = C of M outputs and 1 input each.
    const int64_t m = oc / ic;
    dims wdims = {ic, m, 1, kh, kw};
    shape.user_weights = memory::desc(wdims, dt::f32, dims{m, 1, 1, kw * oc, oc});
    shape.any_weights = memory::desc(wdims, dt::f32, tag::any);
  } else {
    dims wdims = {oc, ic, kh, kw};
    shape.user_weights = memory::desc(wdims, dt::f32, tag::hwio);
    shape.any_weights = memory::desc(wdims, dt::f32, tag::any);
  }
  shape.bias = memory::desc({oc}, dt::f32, tag::a);
  shape.strides = {s[9], s[10]};
  shape.dilations = {s[11] - 1, s[12] - 1};
  shape.pad_l = {s[13], s[14]};
  shape.pad_r = {std::max<int64_t>(pad_b, 0), std::max<int64_t>(pad_r, 0)};
  return shape;
}

dnnl::convolution_forward::primitive_desc ForwardDesc(const ConvShape& c, bool bias, const primitive_attr& attr) {
  auto desc = bias ? dnnl::convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct, c.src, c.any_weights, c.bias, c.dst,
                                                     c.strides, c.dilations, c.pad_l, c.pad_r)
                   : dnnl::convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct, c.src, c.any_weights, c.dst,
                                                     c.strides, c.dilations, c.pad_l, c.pad_r);
  return dnnl::convolution_forward::primitive_desc(desc, attr, Engine());
}

// Weights (or their gradient) in tfjs's layout on the heap, and in the layout a primitive
// picked: the same buffer when the two agree, else a scratch copy and the reorder between them.
struct WeightsLayout {
  memory::desc user;
  std::unique_ptr<dnnl::reorder> reorder;  // user -> primitive (inputs), primitive -> user (outputs)
  memory primitive;

  WeightsLayout() = default;
  WeightsLayout(const memory::desc& user_desc, const memory::desc& wanted, bool is_output) : user(user_desc) {
    if (wanted == user) return;
    primitive = memory(wanted, Engine());
    reorder = std::make_unique<dnnl::reorder>(is_output ? dnnl::reorder::primitive_desc(Engine(), wanted, Engine(), user)
                                                        : dnnl::reorder::primitive_desc(Engine(), user, Engine(), wanted));
  }

  // Weights a primitive reads: the user's data, reordered first when needed.
  memory Input(dnnl::stream& s, float* data) {
    memory user_memory(user, Engine(), data);
    if (!reorder) return user_memory;
    reorder->execute(s, user_memory, primitive);
    return primitive;
  }

  // Where a primitive writes a weight gradient; Finish copies it into the user's data.
  memory Output(float* data) { return reorder ? primitive : memory(user, Engine(), data); }
  void Finish(dnnl::stream& s, float* data) {
    if (!reorder) return;
    memory user_memory(user, Engine(), data);
    reorder->execute(s, primitive, user_memory);
  }
};

// The primitive descriptor of a convolution backward pass (data or weights), hinted by the
// forward pass oneDNN requires.
template <typename Op>
typename Op::primitive_desc BackwardDesc(const ConvShape& c) {
  auto hint = ForwardDesc(c, false, primitive_attr());
  typename Op::desc desc(algorithm::convolution_direct, c.src, c.any_weights, c.dst, c.strides, c.dilations, c.pad_l, c.pad_r);
  return typename Op::primitive_desc(desc, Engine(), hint);
}

struct ConvForward {
  dnnl::convolution_forward conv;
  memory::desc src, dst, bias;
  WeightsLayout weights;
};

struct ConvBackwardData {
  dnnl::convolution_backward_data conv;
  memory::desc diff_src, diff_dst;
  bool cropped = false;
  int64_t src_elements = 0;
  WeightsLayout weights;
};

struct ConvBackwardWeights {
  dnnl::convolution_backward_weights conv;
  memory::desc src, diff_dst;
  WeightsLayout diff_weights;
};

thread_local std::unordered_map<std::string, std::unique_ptr<ConvForward>> conv_forward_cache;
thread_local std::unordered_map<std::string, std::unique_ptr<ConvBackwardData>> conv_backward_data_cache;
thread_local std::unordered_map<std::string, std::unique_ptr<ConvBackwardWeights>> conv_backward_weights_cache;

// conv2dForward(x, filter, bias | null, out, sizes, alpha)
napi_value Conv2dForward(CallArgs& a) {
  const auto sizes = Ints(a.env, a.argv[4], kConvSizes);
  const float alpha = Number(a.env, a.argv[5]);
  const std::string key = Key("fwd", sizes) + "," + std::to_string(alpha);
  auto& entry = conv_forward_cache[key];
  if (!entry) {
    const ConvShape c = MakeConvShape(sizes);
    const bool has_bias = sizes[19] != 0;
    auto pd = ForwardDesc(c, has_bias, ActivationAttr(sizes[18], alpha));
    entry = std::make_unique<ConvForward>();
    entry->conv = dnnl::convolution_forward(pd);
    entry->src = c.src;
    entry->dst = c.dst;
    entry->bias = c.bias;
    entry->weights = WeightsLayout(c.user_weights, pd.weights_desc(), false);
  }
  auto& s = Stream();
  std::unordered_map<int, memory> args = {
      {DNNL_ARG_SRC, memory(entry->src, Engine(), Floats(a.env, a.argv[0]))},
      {DNNL_ARG_WEIGHTS, entry->weights.Input(s, Floats(a.env, a.argv[1]))},
      {DNNL_ARG_DST, memory(entry->dst, Engine(), Floats(a.env, a.argv[3]))},
  };
  if (sizes[19] != 0) args[DNNL_ARG_BIAS] = memory(entry->bias, Engine(), Floats(a.env, a.argv[2]));
  entry->conv.execute(s, args);
  s.wait();
  return nullptr;
}

// conv2dBackpropInput(dy, filter, dx, sizes): sizes describe the forward convolution.
napi_value Conv2dBackpropInput(CallArgs& a) {
  const auto sizes = Ints(a.env, a.argv[3], kConvSizes);
  auto& entry = conv_backward_data_cache[Key("bwd_data", sizes)];
  if (!entry) {
    const ConvShape c = MakeConvShape(sizes);
    auto pd = BackwardDesc<dnnl::convolution_backward_data>(c);
    entry = std::make_unique<ConvBackwardData>();
    entry->conv = dnnl::convolution_backward_data(pd);
    entry->diff_src = c.src;
    entry->diff_dst = c.dst;
    entry->cropped = c.cropped;
    entry->src_elements = c.src_elements;
    entry->weights = WeightsLayout(c.user_weights, pd.weights_desc(), false);
  }
  auto& s = Stream();
  memory weights = entry->weights.Input(s, Floats(a.env, a.argv[1]));
  float* dx = Floats(a.env, a.argv[2]);
  // Inputs no window reaches get no gradient; the view leaves them out, so clear them here.
  if (entry->cropped) std::memset(dx, 0, sizeof(float) * entry->src_elements);
  entry->conv.execute(s, {
                             {DNNL_ARG_DIFF_DST, memory(entry->diff_dst, Engine(), Floats(a.env, a.argv[0]))},
                             {DNNL_ARG_WEIGHTS, weights},
                             {DNNL_ARG_DIFF_SRC, memory(entry->diff_src, Engine(), dx)},
                         });
  s.wait();
  return nullptr;
}

// conv2dBackpropFilter(x, dy, dw, sizes): sizes describe the forward convolution.
napi_value Conv2dBackpropFilter(CallArgs& a) {
  const auto sizes = Ints(a.env, a.argv[3], kConvSizes);
  auto& entry = conv_backward_weights_cache[Key("bwd_weights", sizes)];
  if (!entry) {
    const ConvShape c = MakeConvShape(sizes);
    auto pd = BackwardDesc<dnnl::convolution_backward_weights>(c);
    entry = std::make_unique<ConvBackwardWeights>();
    entry->conv = dnnl::convolution_backward_weights(pd);
    entry->src = c.src;
    entry->diff_dst = c.dst;
    entry->diff_weights = WeightsLayout(c.user_weights, pd.diff_weights_desc(), true);
  }
  auto& s = Stream();
  float* dw = Floats(a.env, a.argv[2]);
  entry->conv.execute(s, {
                             {DNNL_ARG_SRC, memory(entry->src, Engine(), Floats(a.env, a.argv[0]))},
                             {DNNL_ARG_DIFF_DST, memory(entry->diff_dst, Engine(), Floats(a.env, a.argv[1]))},
                             {DNNL_ARG_DIFF_WEIGHTS, entry->diff_weights.Output(dw)},
                         });
  entry->diff_weights.Finish(s, dw);
  s.wait();
  return nullptr;
}

// ---- pooling ----------------------------------------------------------------------------
// sizes: N IH IW C OH OW KH KW SH SW PT PL PB PR isMax

constexpr size_t kPoolSizes = 15;

struct PoolGrad {
  memory::desc src, dst;
  dnnl::pooling_forward forward;  // max pooling only: recomputes the workspace (argmax)
  memory scratch_dst, workspace;
  dnnl::pooling_backward backward;
  bool is_max = false;
};

thread_local std::unordered_map<std::string, std::unique_ptr<PoolGrad>> pool_grad_cache;

// poolGrad(x, dy, dx, sizes): the gradient of MaxPool (tfjs's first-max routing) or AvgPool
// (tfjs divides by the full window, padding included).
napi_value PoolGradient(CallArgs& a) {
  const auto s = Ints(a.env, a.argv[3], kPoolSizes);
  auto& entry = pool_grad_cache[Key("pool_grad", s)];
  if (!entry) {
    entry = std::make_unique<PoolGrad>();
    entry->is_max = s[14] != 0;
    entry->src = memory::desc({s[0], s[3], s[1], s[2]}, dt::f32, tag::nhwc);
    entry->dst = memory::desc({s[0], s[3], s[4], s[5]}, dt::f32, tag::nhwc);
    const algorithm algo = entry->is_max ? algorithm::pooling_max : algorithm::pooling_avg_include_padding;
    const dims strides = {s[8], s[9]}, kernel = {s[6], s[7]}, pad_l = {s[10], s[11]}, pad_r = {s[12], s[13]};
    auto fwd_pd = dnnl::pooling_forward::primitive_desc(
        dnnl::pooling_forward::desc(prop_kind::forward_training, algo, entry->src, entry->dst, strides, kernel, pad_l, pad_r), Engine());
    auto bwd_pd = dnnl::pooling_backward::primitive_desc(dnnl::pooling_backward::desc(algo, entry->src, entry->dst, strides, kernel, pad_l, pad_r),
                                                         Engine(), fwd_pd);
    if (entry->is_max) {
      entry->forward = dnnl::pooling_forward(fwd_pd);
      entry->scratch_dst = memory(entry->dst, Engine());
      entry->workspace = memory(fwd_pd.workspace_desc(), Engine());
    }
    entry->backward = dnnl::pooling_backward(bwd_pd);
  }
  auto& st = Stream();
  if (entry->is_max) {
    entry->forward.execute(st, {{DNNL_ARG_SRC, memory(entry->src, Engine(), Floats(a.env, a.argv[0]))},
                                {DNNL_ARG_DST, entry->scratch_dst},
                                {DNNL_ARG_WORKSPACE, entry->workspace}});
  }
  std::unordered_map<int, memory> args = {
      {DNNL_ARG_DIFF_DST, memory(entry->dst, Engine(), Floats(a.env, a.argv[1]))},
      {DNNL_ARG_DIFF_SRC, memory(entry->src, Engine(), Floats(a.env, a.argv[2]))},
  };
  if (entry->is_max) args[DNNL_ARG_WORKSPACE] = entry->workspace;
  entry->backward.execute(st, args);
  st.wait();
  return nullptr;
}

// maxPoolGrad(x, dy, dx, sizes): each output's gradient goes to the first largest input of its
// window (row-major, padding excluded), as tfjs's reference kernel routes it. A direct loop: oneDNN
// would need the forward pass's workspace, which tfjs does not keep, and recomputing it costs
// more than this whole pass.
napi_value MaxPoolGradient(CallArgs& a) {
  const auto s = Ints(a.env, a.argv[3], kPoolSizes);
  const float* x = Floats(a.env, a.argv[0]);
  const float* dy = Floats(a.env, a.argv[1]);
  float* dx = Floats(a.env, a.argv[2]);
  const int64_t n = s[0], ih = s[1], iw = s[2], c = s[3], oh = s[4], ow = s[5], kh = s[6], kw = s[7], sh = s[8], sw = s[9], pt = s[10], pl = s[11];
  std::memset(dx, 0, sizeof(float) * n * ih * iw * c);
#pragma omp parallel for if (n * ih * iw * c >= kParallelMin)
  for (int64_t b = 0; b < n; b++) {
    const int64_t base = b * ih * iw * c;
    const float* xb = x + base;
    float* dxb = dx + base;
    for (int64_t r = 0; r < oh; r++) {
      const int64_t r0 = std::max<int64_t>(r * sh - pt, 0), r1 = std::min<int64_t>(r * sh - pt + kh, ih);
      for (int64_t q = 0; q < ow; q++) {
        const int64_t q0 = std::max<int64_t>(q * sw - pl, 0), q1 = std::min<int64_t>(q * sw - pl + kw, iw);
        if (r0 >= r1 || q0 >= q1) continue;
        const float* g = dy + ((b * oh + r) * ow + q) * c;
        // One channel at a time keeps the running max in registers (measured 3x faster than
        // a vector of per-channel maxima updated window position by window position).
        for (int64_t ch = 0; ch < c; ch++) {
          int64_t at = (r0 * iw + q0) * c + ch;
          float best = xb[at];
          for (int64_t i = r0; i < r1; i++) {
            for (int64_t j = q0; j < q1; j++) {
              const int64_t o = (i * iw + j) * c + ch;
              if (xb[o] > best) {
                best = xb[o];
                at = o;
              }
            }
          }
          dxb[at] += g[ch];
        }
      }
    }
  }
  return nullptr;
}

// ---- reduction --------------------------------------------------------------------------
// sum(x, out, sizes, scale): sizes = outer inner leading; x viewed as [outer, inner] is summed over its
// rows (leading = 1: `inner` sums, e.g. a bias gradient) or its columns (leading = 0: `outer`
// sums). A direct loop with double accumulators: oneDNN 2.6's reduction runs its reference
// implementation for these shapes (measured 8x slower than tfjs's wasm Sum).
napi_value SumReduce(CallArgs& a) {
  const auto s = Ints(a.env, a.argv[2], 3);
  const double scale = Number(a.env, a.argv[3]);  // 1 for Sum, 1 / count for Mean
  const float* x = Floats(a.env, a.argv[0]);
  float* out = Floats(a.env, a.argv[1]);
  const int64_t outer = s[0], inner = s[1];
  if (s[2] != 0) {
    std::vector<double> total(inner, 0.0);
#pragma omp parallel if (outer * inner >= kParallelMin)
    {
      std::vector<double> partial(inner, 0.0);
#pragma omp for nowait
      for (int64_t i = 0; i < outer; i++) {
        const float* row = x + i * inner;
        for (int64_t j = 0; j < inner; j++) partial[j] += row[j];
      }
#pragma omp critical
      for (int64_t j = 0; j < inner; j++) total[j] += partial[j];
    }
    for (int64_t j = 0; j < inner; j++) out[j] = static_cast<float>(total[j] * scale);
  } else {
#pragma omp parallel for if (outer * inner >= kParallelMin)
    for (int64_t i = 0; i < outer; i++) {
      const float* row = x + i * inner;
      double acc = 0.0;
      for (int64_t j = 0; j < inner; j++) acc += row[j];
      out[i] = static_cast<float>(acc * scale);
    }
  }
  return nullptr;
}

// biasAdd(x, bias, out, sizes): sizes = outer inner; out[i, j] = x[i, j] + bias[j]. tfjs's wasm
// Add takes a slow generic path for this broadcast (a layer's bias on every pixel).
napi_value BiasAdd(CallArgs& a) {
  const auto s = Ints(a.env, a.argv[3], 2);
  const float* x = Floats(a.env, a.argv[0]);
  const float* bias = Floats(a.env, a.argv[1]);
  float* out = Floats(a.env, a.argv[2]);
  const int64_t outer = s[0], inner = s[1];
#pragma omp parallel for if (outer * inner >= kParallelMin)
  for (int64_t i = 0; i < outer; i++) {
    const float* row = x + i * inner;
    float* dst = out + i * inner;
    for (int64_t j = 0; j < inner; j++) dst[j] = row[j] + bias[j];
  }
  return nullptr;
}

// batchNorm(x, mean, variance, offset | null, scale | null, out, sizes, epsilon): sizes = outer
// channels; out = (x - mean) * scale / sqrt(variance + epsilon) + offset, per channel (last axis).
napi_value BatchNorm(CallArgs& a) {
  const auto s = Ints(a.env, a.argv[6], 2);
  const float epsilon = Number(a.env, a.argv[7]);
  const float* x = Floats(a.env, a.argv[0]);
  const float* mean = Floats(a.env, a.argv[1]);
  const float* variance = Floats(a.env, a.argv[2]);
  const float* offset = Floats(a.env, a.argv[3]);
  const float* scale = Floats(a.env, a.argv[4]);
  float* out = Floats(a.env, a.argv[5]);
  const int64_t outer = s[0], c = s[1];
  // out = x * gain + bias, with gain and bias per channel.
  std::vector<float> gain(c), bias(c);
  for (int64_t j = 0; j < c; j++) {
    gain[j] = (scale ? scale[j] : 1.f) / std::sqrt(variance[j] + epsilon);
    bias[j] = (offset ? offset[j] : 0.f) - mean[j] * gain[j];
  }
  const float* g = gain.data();
  const float* b = bias.data();
#pragma omp parallel for if (outer * c >= kParallelMin)
  for (int64_t i = 0; i < outer; i++) {
    const float* row = x + i * c;
    float* dst = out + i * c;
    for (int64_t j = 0; j < c; j++) dst[j] = row[j] * g[j] + b[j];
  }
  return nullptr;
}

// ---- matmul -----------------------------------------------------------------------------
// sizes: batch M K N transposeA transposeB activation hasBias ; out = act(op(a) op(b) + bias)

constexpr size_t kMatMulSizes = 8;

struct MatMul {
  dnnl::matmul matmul;
  memory::desc a, b, dst, bias;
};

thread_local std::unordered_map<std::string, std::unique_ptr<MatMul>> matmul_cache;

// matMul(a, b, bias | null, out, sizes, alpha)
napi_value MatMulForward(CallArgs& a) {
  const auto s = Ints(a.env, a.argv[4], kMatMulSizes);
  const float alpha = Number(a.env, a.argv[5]);
  auto& entry = matmul_cache[Key("matmul", s) + "," + std::to_string(alpha)];
  if (!entry) {
    const int64_t batch = s[0], m = s[1], k = s[2], n = s[3];
    entry = std::make_unique<MatMul>();
    entry->a = memory::desc({batch, m, k}, dt::f32, s[4] ? dims{m * k, 1, m} : dims{m * k, k, 1});
    entry->b = memory::desc({batch, k, n}, dt::f32, s[5] ? dims{k * n, 1, k} : dims{k * n, n, 1});
    entry->dst = memory::desc({batch, m, n}, dt::f32, tag::abc);
    entry->bias = memory::desc({1, 1, n}, dt::f32, tag::abc);
    auto desc = s[7] ? dnnl::matmul::desc(entry->a, entry->b, entry->bias, entry->dst) : dnnl::matmul::desc(entry->a, entry->b, entry->dst);
    entry->matmul = dnnl::matmul(dnnl::matmul::primitive_desc(desc, ActivationAttr(s[6], alpha), Engine()));
  }
  std::unordered_map<int, memory> args = {
      {DNNL_ARG_SRC, memory(entry->a, Engine(), Floats(a.env, a.argv[0]))},
      {DNNL_ARG_WEIGHTS, memory(entry->b, Engine(), Floats(a.env, a.argv[1]))},
      {DNNL_ARG_DST, memory(entry->dst, Engine(), Floats(a.env, a.argv[3]))},
  };
  if (s[7]) args[DNNL_ARG_BIAS] = memory(entry->bias, Engine(), Floats(a.env, a.argv[2]));
  auto& st = Stream();
  entry->matmul.execute(st, args);
  st.wait();
  return nullptr;
}

// ---- misc -------------------------------------------------------------------------------

napi_value SetThreads(CallArgs& a) {
  int32_t threads = 1;
  napi_get_value_int32(a.env, a.argv[0], &threads);
  if (threads < 1) threads = 1;
  omp_set_num_threads(threads);
  return nullptr;
}

napi_value Info(CallArgs& a) {
  const dnnl_version_t* v = dnnl_version();
  std::string text = "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch) + " (" +
                     std::string(v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "threadpool") + ", " + std::to_string(omp_get_max_threads()) +
                     " threads)";
  napi_value result;
  napi_create_string_utf8(a.env, text.c_str(), text.size(), &result);
  return result;
}

// Clears the calling thread's caches.
napi_value ClearCache(CallArgs&) {
  conv_forward_cache.clear();
  conv_backward_data_cache.clear();
  conv_backward_weights_cache.clear();
  pool_grad_cache.clear();
  matmul_cache.clear();
  return nullptr;
}

// ---- optimizer update ---------------------------------------------------------------------
// fusedUpdate(w, g, s1 | null, s2 | null, w2, t1 | null, t2 | null, params): one pass of an
// optimizer rule over every element; params = rule lr a b epsilon (Float64Array), with the rule
// codes and meanings of src/model/update-kernels.ts. float32 arithmetic, so it vectorises.
enum UpdateRule { kSgd = 0, kMomentum = 1, kNesterov = 2, kAdam = 3, kRmsprop = 4, kRmspropMomentum = 5 };

float* FloatsOfLength(napi_env env, napi_value value, size_t want, const char* name) {
  if (IsNullish(env, value)) return nullptr;
  size_t length;
  auto* data = static_cast<float*>(TypedData(env, value, napi_float32_array, &length));
  if (length != want) throw std::runtime_error(std::string("fusedUpdate: ") + name + " has " + std::to_string(length) + " values, expected " + std::to_string(want));
  return data;
}

napi_value FusedUpdate(CallArgs& a) {
  size_t n, count;
  const float* __restrict w = static_cast<float*>(TypedData(a.env, a.argv[0], napi_float32_array, &n));
  const auto* p = static_cast<double*>(TypedData(a.env, a.argv[7], napi_float64_array, &count));
  if (count != 5) throw std::runtime_error("fusedUpdate: params must be [rule, lr, a, b, epsilon]");
  const float* __restrict g = FloatsOfLength(a.env, a.argv[1], n, "g");
  const float* __restrict s1 = FloatsOfLength(a.env, a.argv[2], n, "s1");
  const float* __restrict s2 = FloatsOfLength(a.env, a.argv[3], n, "s2");
  float* __restrict w2 = FloatsOfLength(a.env, a.argv[4], n, "w2");
  float* __restrict t1 = FloatsOfLength(a.env, a.argv[5], n, "t1");
  float* __restrict t2 = FloatsOfLength(a.env, a.argv[6], n, "t2");
  const int rule = static_cast<int>(p[0]);
  const float lr = static_cast<float>(p[1]), ka = static_cast<float>(p[2]), kb = static_cast<float>(p[3]), eps = static_cast<float>(p[4]);
  const bool slot1 = rule != kSgd, slot2 = rule == kAdam || rule == kRmspropMomentum;
  if (!g || !w2 || (slot1 && (!s1 || !t1)) || (slot2 && (!s2 || !t2))) throw std::runtime_error("fusedUpdate: missing arrays for rule " + std::to_string(rule));
  const int64_t size = static_cast<int64_t>(n);
  // Threads only pay off on large tensors (a coordinator's 25 M-parameter layers).
  const bool parallel = size >= 4 * kParallelMin;
  switch (rule) {
    case kSgd:
#pragma omp parallel for simd if (parallel)
      for (int64_t i = 0; i < size; i++) w2[i] = w[i] - lr * g[i];
      break;
    case kMomentum:
    case kNesterov: {
      const float nesterov = rule == kNesterov ? 1.f : 0.f;
#pragma omp parallel for simd if (parallel)
      for (int64_t i = 0; i < size; i++) {
        const float v = ka * s1[i] - lr * g[i];
        t1[i] = v;
        w2[i] = w[i] + (nesterov * (ka * v - lr * g[i]) + (1.f - nesterov) * v);
      }
      break;
    }
    case kAdam:
#pragma omp parallel for simd if (parallel)
      for (int64_t i = 0; i < size; i++) {
        const float gi = g[i];
        const float m = ka * s1[i] + (1.f - ka) * gi;
        const float v = kb * s2[i] + (1.f - kb) * gi * gi;
        t1[i] = m;
        t2[i] = v;
        w2[i] = w[i] - lr * m / (std::sqrt(v) + eps);
      }
      break;
    case kRmsprop:
    case kRmspropMomentum: {
      const bool momentum = rule == kRmspropMomentum;
#pragma omp parallel for simd if (parallel)
      for (int64_t i = 0; i < size; i++) {
        const float gi = g[i];
        const float ms = ka * s1[i] + (1.f - ka) * gi * gi;
        t1[i] = ms;
        const float scaled = lr * gi / (std::sqrt(ms) + eps);
        if (momentum) {
          const float mom = kb * s2[i] + scaled;
          t2[i] = mom;
          w2[i] = w[i] - mom;
        } else {
          w2[i] = w[i] - scaled;
        }
      }
      break;
    }
    default:
      throw std::runtime_error("fusedUpdate: unknown rule " + std::to_string(rule));
  }
  return nullptr;
}

template <napi_value (*Fn)(CallArgs&), size_t Argc>
napi_value Wrap(napi_env env, napi_callback_info info) {
  try {
    CallArgs args = GetArgs(env, info, Argc);
    return Fn(args);
  } catch (const dnnl::error& e) {
    napi_throw_error(env, "DROVER_ERR_NATIVE", (std::string("oneDNN: ") + e.what() + " (status " + std::to_string(e.status) + ")").c_str());
  } catch (const std::exception& e) {
    napi_throw_error(env, "DROVER_ERR_NATIVE", e.what());
  }
  return nullptr;
}

}  // namespace

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"conv2dForward", nullptr, Wrap<Conv2dForward, 6>, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"conv2dBackpropInput", nullptr, Wrap<Conv2dBackpropInput, 4>, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"conv2dBackpropFilter", nullptr, Wrap<Conv2dBackpropFilter, 4>, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"poolGrad", nullptr, Wrap<PoolGradient, 4>, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"maxPoolGrad", nullptr, Wrap<MaxPoolGradient, 4>, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"batchNorm", nullptr, Wrap<BatchNorm, 8>, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"biasAdd", nullptr, Wrap<BiasAdd, 4>, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"sum", nullptr, Wrap<SumReduce, 4>, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"fusedUpdate", nullptr, Wrap<FusedUpdate, 8>, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"matMul", nullptr, Wrap<MatMulForward, 6>, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setThreads", nullptr, Wrap<SetThreads, 1>, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"info", nullptr, Wrap<Info, 0>, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"clearCache", nullptr, Wrap<ClearCache, 0>, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}
