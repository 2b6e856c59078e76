// The CPU rasterizer's hot loops in C++ (built by backend/render/kernel.py through torch.utils.cpp_extension).
//
// Same contract and arithmetic as backend/render/raster_torch.py, which stays the reference and the fallback:
// - visibility is computed in float32 with the same operations in the same order (compiled with
//   -ffp-contract=off, so no fused multiply-adds), hence the same winning triangle at every pixel: pixel
//   centres at (x + 0.5, y + 0.5) in pixel units, a pixel is covered when both barycentric planes are >= 0
//   and their sum <= 1, depth z/w must lie in [-1, 1], ties go to the lowest depth then the lowest triangle
//   id (one int64 key packing the float bits of z + 1 and the id), triangles with a vertex at w <= 0,
//   a degenerate or non-finite area, or all corners on one side of the depth range are skipped;
// - barycentrics, interpolation and their backward passes follow _Barycentrics and _Interpolate formula for
//   formula, in the dtype of the inputs (float32 or float64);
// - antialias_pairs finds the silhouette crossings that raster_torch.antialias finds; the crossing parameter
//   t itself is recomputed with autograd in Python from the (face, edge) returned here.
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace {

constexpr int64_t kNoHit = std::numeric_limits<int64_t>::max();

inline int64_t depth_key(float z, int64_t face) {
  float shifted = z + 1.0f;
  if (shifted < 0.0f) shifted = 0.0f;
  int32_t bits;
  std::memcpy(&bits, &shifted, sizeof(bits));
  return (static_cast<int64_t>(bits) << 32) | face;
}

// Winning triangle id + 1 of every pixel of one view into ids[H * W] (0 = empty).
void visibility_view(const float* pos, int64_t num_vertices, const int64_t* tri, int64_t num_faces, int64_t height,
                     int64_t width, int64_t* keys, float* screen, int64_t* ids) {
  const float half_w = static_cast<float>(0.5 * width), half_h = static_cast<float>(0.5 * height);
  std::fill(keys, keys + height * width, kNoHit);
  // Screen x, y (pixel units), depth z / w and w of each vertex, once (raster_torch._screen).
  for (int64_t i = 0; i < num_vertices; ++i) {
    const float* p = pos + i * 4;
    float* q = screen + i * 4;
    q[0] = (p[0] / p[3] + 1.0f) * half_w;
    q[1] = (p[1] / p[3] + 1.0f) * half_h;
    q[2] = p[2] / p[3];
    q[3] = p[3];
  }
  for (int64_t f = 0; f < num_faces; ++f) {
    float fx[3], fy[3], fz[3], fw[3];
    for (int k = 0; k < 3; ++k) {
      const float* q = screen + tri[3 * f + k] * 4;
      fx[k] = q[0];
      fy[k] = q[1];
      fz[k] = q[2];
      fw[k] = q[3];
    }
    const float dx1 = fx[1] - fx[0], dx2 = fx[2] - fx[0];
    const float dy1 = fy[1] - fy[0], dy2 = fy[2] - fy[0];
    const float area = dx1 * dy2 - dx2 * dy1;
    const bool ok = fw[0] > 0 && fw[1] > 0 && fw[2] > 0 && std::fabs(area) > 1e-12f &&
                    (fz[0] > -1 || fz[1] > -1 || fz[2] > -1) && (fz[0] < 1 || fz[1] < 1 || fz[2] < 1) &&
                    std::isfinite(area);
    if (!ok) continue;
    const float x0 = std::max(std::ceil(std::min(std::min(fx[0], fx[1]), fx[2]) - 0.5f), 0.0f);
    const float x1 = std::min(std::floor(std::max(std::max(fx[0], fx[1]), fx[2]) - 0.5f), static_cast<float>(width - 1));
    const float y0 = std::max(std::ceil(std::min(std::min(fy[0], fy[1]), fy[2]) - 0.5f), 0.0f);
    const float y1 = std::min(std::floor(std::max(std::max(fy[0], fy[1]), fy[2]) - 0.5f), static_cast<float>(height - 1));
    if (!(x1 - x0 + 1 > 0) || !(y1 - y0 + 1 > 0)) continue;
    const float inv = 1.0f / area;
    // Planes a * x + b * y + c in pixel units, as raster_torch._visibility's `plane`.
    const float a0 = (dy1 - dy2) * inv, b0 = (dx2 - dx1) * inv, c0 = 1.0f - a0 * fx[0] - b0 * fy[0];
    const float a1 = dy2 * inv, b1 = -dx2 * inv, c1 = 0.0f - a1 * fx[0] - b1 * fy[0];
    const float dz1 = fz[1] - fz[0], dz2 = fz[2] - fz[0];
    const float az = (dz1 * dy2 - dz2 * dy1) * inv, bz = (dz2 * dx1 - dz1 * dx2) * inv,
                cz = fz[0] - az * fx[0] - bz * fy[0];
    const int64_t ix0 = static_cast<int64_t>(x0), ix1 = static_cast<int64_t>(x1);
    const int64_t iy0 = static_cast<int64_t>(y0), iy1 = static_cast<int64_t>(y1);
    for (int64_t py = iy0; py <= iy1; ++py) {
      const float cy = static_cast<float>(py) + 0.5f;
      const float by0 = b0 * cy, by1 = b1 * cy, bzy = bz * cy;
      int64_t* row = keys + py * width;
      for (int64_t px = ix0; px <= ix1; ++px) {
        const float cx = static_cast<float>(px) + 0.5f;
        const float w0 = a0 * cx + by0 + c0;
        const float w1 = a1 * cx + by1 + c1;
        if (!(w0 >= 0 && w1 >= 0 && w0 + w1 <= 1)) continue;
        const float z = az * cx + bzy + cz;
        if (!(z >= -1 && z <= 1)) continue;
        const int64_t key = depth_key(z, f);
        if (key < row[px]) row[px] = key;
      }
    }
  }
  for (int64_t i = 0; i < height * width; ++i) ids[i] = keys[i] == kNoHit ? 0 : (keys[i] & 0xFFFFFFFF) + 1;
}

// NDC x, y, z (divided by w) and w of every vertex of every view: [B * V, 4].
template <typename T>
std::vector<T> ndc_vertices(const T* pos, int64_t rows) {
  std::vector<T> out(rows * 4);
  for (int64_t i = 0; i < rows; ++i) {
    const T* v = pos + i * 4;
    T* o = out.data() + i * 4;
    o[0] = v[0] / v[3];
    o[1] = v[1] / v[3];
    o[2] = v[2] / v[3];
    o[3] = v[3];
  }
  return out;
}

// A pixel centre (cx, cy) in triangle `f` of view `b`: its corners' ndc rows, x, y, z and w, the triangle's doubled
// screen area and the pixel's screen-space barycentrics s (raster_torch._Barycentrics' formulas, one copy for the
// forward and the backward).
template <typename T>
struct PixelInTriangle {
  int64_t row[3];
  T nx[3], ny[3], z[3], w[3], s[3], area;
};

template <typename T>
inline PixelInTriangle<T> pixel_in_triangle(const std::vector<T>& ndc, const int64_t* t, int64_t b, int64_t num_vertices,
                                            int64_t f, T cx, T cy) {
  PixelInTriangle<T> q;
  for (int k = 0; k < 3; ++k) {
    q.row[k] = b * num_vertices + t[3 * f + k];
    const T* v = ndc.data() + q.row[k] * 4;
    q.nx[k] = v[0];
    q.ny[k] = v[1];
    q.z[k] = v[2];
    q.w[k] = v[3];
  }
  const T dx0 = q.nx[0] - cx, dx1 = q.nx[1] - cx, dx2 = q.nx[2] - cx;
  const T dy0 = q.ny[0] - cy, dy1 = q.ny[1] - cy, dy2 = q.ny[2] - cy;
  q.area = (q.nx[1] - q.nx[0]) * (q.ny[2] - q.ny[0]) - (q.nx[2] - q.nx[0]) * (q.ny[1] - q.ny[0]);
  q.s[0] = (dx1 * dy2 - dx2 * dy1) / q.area;
  q.s[1] = (dx2 * dy0 - dx0 * dy2) / q.area;
  q.s[2] = T(1) - q.s[0] - q.s[1];
  return q;
}

}  // namespace

// pos32: [B, V, 4] float32 contiguous; tri: [F, 3] int64 -> ids [B, H, W] int64 (triangle id + 1, 0 empty).
torch::Tensor visibility(torch::Tensor pos32, torch::Tensor tri, int64_t height, int64_t width) {
  TORCH_CHECK(pos32.scalar_type() == torch::kFloat32 && pos32.is_contiguous() && pos32.dim() == 3, "pos32: [B, V, 4] float32");
  TORCH_CHECK(tri.scalar_type() == torch::kInt64 && tri.is_contiguous() && tri.dim() == 2, "tri: [F, 3] int64");
  const int64_t batch = pos32.size(0), num_vertices = pos32.size(1), num_faces = tri.size(0);
  auto ids = torch::empty({batch, height, width}, tri.options());
  const float* pos = pos32.data_ptr<float>();
  const int64_t* t = tri.data_ptr<int64_t>();
  int64_t* out = ids.data_ptr<int64_t>();
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> keys(height * width);
    std::vector<float> screen(num_vertices * 4);
    for (int64_t b = begin; b < end; ++b)
      visibility_view(pos + b * num_vertices * 4, num_vertices, t, num_faces, height, width, keys.data(), screen.data(),
                      out + b * height * width);
  });
  return ids;
}

// Perspective-correct barycentrics of the winning triangles: rast [B, H, W, 4] (u, v, z/w, id + 1).
torch::Tensor barycentrics_forward(torch::Tensor pos, torch::Tensor tri, torch::Tensor ids) {
  TORCH_CHECK(pos.is_contiguous() && ids.is_contiguous() && tri.is_contiguous(), "contiguous inputs");
  const int64_t batch = ids.size(0), height = ids.size(1), width = ids.size(2), num_vertices = pos.size(1);
  auto rast = torch::zeros({batch, height, width, 4}, pos.options());
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "barycentrics_forward", [&] {
    using T = scalar_t;
    const T* p = pos.data_ptr<T>();
    const int64_t* t = tri.data_ptr<int64_t>();
    const int64_t* id = ids.data_ptr<int64_t>();
    T* out = rast.data_ptr<T>();
    const std::vector<T> ndc = ndc_vertices(p, batch * num_vertices);
    at::parallel_for(0, batch * height, 16, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / height, py = r % height;
        const T cy = (static_cast<T>(py) + T(0.5)) / static_cast<T>(height) * T(2) - T(1);
        for (int64_t px = 0; px < width; ++px) {
          const int64_t i = r * width + px;
          if (id[i] == 0) continue;
          const int64_t f = id[i] - 1;
          const T cx = (static_cast<T>(px) + T(0.5)) / static_cast<T>(width) * T(2) - T(1);
          const PixelInTriangle<T> q = pixel_in_triangle(ndc, t, b, num_vertices, f, cx, cy);
          const T p0 = q.s[0] / q.w[0], p1 = q.s[1] / q.w[1], p2 = q.s[2] / q.w[2];
          const T norm = p0 + p1 + p2;
          T* o = out + i * 4;
          o[0] = p0 / norm;
          o[1] = p1 / norm;
          o[2] = q.s[0] * q.z[0] + q.s[1] * q.z[1] + q.s[2] * q.z[2];
          o[3] = static_cast<T>(id[i]);
        }
      }
    });
  });
  return rast;
}

// Backward of barycentrics_forward (raster_torch._Barycentrics.backward): grad_rast [B, H, W, 4] -> grad_pos.
torch::Tensor barycentrics_backward(torch::Tensor pos, torch::Tensor tri, torch::Tensor rast, torch::Tensor grad_rast) {
  TORCH_CHECK(pos.is_contiguous() && rast.is_contiguous() && grad_rast.is_contiguous() && tri.is_contiguous(), "contiguous inputs");
  const int64_t batch = rast.size(0), height = rast.size(1), width = rast.size(2), num_vertices = pos.size(1);
  auto grad_pos = torch::zeros_like(pos);
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "barycentrics_backward", [&] {
    using T = scalar_t;
    const T* p = pos.data_ptr<T>();
    const int64_t* t = tri.data_ptr<int64_t>();
    const T* rs = rast.data_ptr<T>();
    const T* gr = grad_rast.data_ptr<T>();
    T* gp_out = grad_pos.data_ptr<T>();
    const std::vector<T> ndc = ndc_vertices(p, batch * num_vertices);
    // Views write disjoint rows of grad_pos: one task per view.
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        for (int64_t py = 0; py < height; ++py) {
          const T cy = (static_cast<T>(py) + T(0.5)) / static_cast<T>(height) * T(2) - T(1);
          for (int64_t px = 0; px < width; ++px) {
            const int64_t i = (b * height + py) * width + px;
            const T* r = rs + i * 4;
            if (r[3] <= 0) continue;
            const T* g = gr + i * 4;
            const T gu = g[0], gv = g[1], gz = g[2];
            if (gu == 0 && gv == 0 && gz == 0) continue;
            const int64_t f = static_cast<int64_t>(r[3]) - 1;
            const T cx = (static_cast<T>(px) + T(0.5)) / static_cast<T>(width) * T(2) - T(1);
            const PixelInTriangle<T> q = pixel_in_triangle(ndc, t, b, num_vertices, f, cx, cy);
            const T *nx = q.nx, *ny = q.ny, *z = q.z, *w = q.w, *s = q.s;
            const int64_t* row = q.row;
            const T area = q.area;
            const T norm = s[0] / w[0] + s[1] / w[1] + s[2] / w[2];
            const T u = r[0], v = r[1];
            // u = p0 / N, v = p1 / N with p_k = s_k / w_k and N = sum p_k.
            const T common = -(gu * u + gv * v);
            T gp[3] = {(common + gu) / norm, (common + gv) / norm, common / norm};
            T gs[3];
            for (int k = 0; k < 3; ++k) gs[k] = gp[k] / w[k] + gz * z[k];
            const T sum_x = (gs[0] * (ny[1] - ny[2]) + gs[1] * (ny[2] - ny[0]) + gs[2] * (ny[0] - ny[1])) / area;
            const T sum_y = (gs[0] * (nx[2] - nx[1]) + gs[1] * (nx[0] - nx[2]) + gs[2] * (nx[1] - nx[0])) / area;
            for (int k = 0; k < 3; ++k) {
              const T g_nx = -s[k] * sum_x, g_ny = -s[k] * sum_y, g_z = gz * s[k];
              const T inv_w = T(1) / w[k];
              T* o = gp_out + row[k] * 4;
              o[0] += g_nx * inv_w;
              o[1] += g_ny * inv_w;
              o[2] += g_z * inv_w;
              o[3] += -(g_nx * nx[k] + g_ny * ny[k] + g_z * z[k] + gp[k] * s[k] * inv_w) * inv_w;
            }
          }
        }
      }
    });
  });
  return grad_pos;
}

// attr's values at covered pixels: attr [N, C] rows (corner rows are tri + view * num_vertices when
// `per_view`), rast [B, H, W, 4], pixels [P] -> [P, C].
torch::Tensor interpolate_forward(torch::Tensor attr, torch::Tensor rast, torch::Tensor tri, torch::Tensor pixels,
                                  int64_t num_vertices, bool per_view) {
  TORCH_CHECK(attr.is_contiguous() && rast.is_contiguous() && tri.is_contiguous() && pixels.is_contiguous(), "contiguous inputs");
  TORCH_CHECK(rast.scalar_type() == attr.scalar_type(), "rast and attr share a dtype");
  const int64_t channels = attr.size(1), count = pixels.size(0);
  const int64_t hw = rast.size(1) * rast.size(2);
  auto out = torch::empty({count, channels}, attr.options());
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_forward", [&] {
    using T = scalar_t;
    const T* a = attr.data_ptr<T>();
    const T* rs = rast.data_ptr<T>();
    const int64_t* t = tri.data_ptr<int64_t>();
    const int64_t* px = pixels.data_ptr<int64_t>();
    T* o = out.data_ptr<T>();
    at::parallel_for(0, count, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) {
        const T* r = rs + px[j] * 4;
        const int64_t f = static_cast<int64_t>(r[3]) - 1;
        const int64_t base = per_view ? (px[j] / hw) * num_vertices : 0;
        const T u = r[0], v = r[1];
        const T* c0 = a + (base + t[3 * f]) * channels;
        const T* c1 = a + (base + t[3 * f + 1]) * channels;
        const T* c2 = a + (base + t[3 * f + 2]) * channels;
        T* oj = o + j * channels;
        for (int64_t c = 0; c < channels; ++c) oj[c] = c2[c] + u * (c0[c] - c2[c]) + v * (c1[c] - c2[c]);
      }
    });
  });
  return out;
}

// Backward of interpolate_forward (raster_torch._Interpolate.backward): grad [P, C] -> (grad_attr [N, C],
// grad_rast [B, H, W, 4]); either may be skipped.
std::vector<torch::Tensor> interpolate_backward(torch::Tensor attr, torch::Tensor rast, torch::Tensor tri,
                                                torch::Tensor pixels, torch::Tensor grad, int64_t num_vertices,
                                                bool per_view, bool need_attr, bool need_uv) {
  TORCH_CHECK(attr.is_contiguous() && rast.is_contiguous() && tri.is_contiguous() && pixels.is_contiguous() &&
              grad.is_contiguous(), "contiguous inputs");
  const int64_t channels = attr.size(1), count = pixels.size(0);
  const int64_t hw = rast.size(1) * rast.size(2);
  auto grad_attr = need_attr ? torch::zeros_like(attr) : torch::Tensor();
  // grad_uv is the dense grad of rast [B, H, W, 4] (zero but u, v at `pixels`), in attr's dtype.
  auto grad_uv = need_uv ? torch::zeros({rast.size(0), rast.size(1), rast.size(2), 4}, attr.options()) : torch::Tensor();
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_backward", [&] {
    using T = scalar_t;
    const T* a = attr.data_ptr<T>();
    const T* rs = rast.data_ptr<T>();
    const int64_t* t = tri.data_ptr<int64_t>();
    const int64_t* px = pixels.data_ptr<int64_t>();
    const T* g = grad.data_ptr<T>();
    T* ga = need_attr ? grad_attr.data_ptr<T>() : nullptr;
    T* guv = need_uv ? grad_uv.data_ptr<T>() : nullptr;
    for (int64_t j = 0; j < count; ++j) {  // scatters into shared rows: one thread
      const T* r = rs + px[j] * 4;
      const int64_t f = static_cast<int64_t>(r[3]) - 1;
      const int64_t base = per_view ? (px[j] / hw) * num_vertices : 0;
      const T u = r[0], v = r[1], rest = T(1) - u - v;
      const int64_t i0 = base + t[3 * f], i1 = base + t[3 * f + 1], i2 = base + t[3 * f + 2];
      const T* gj = g + j * channels;
      if (need_attr) {
        T* o0 = ga + i0 * channels;
        T* o1 = ga + i1 * channels;
        T* o2 = ga + i2 * channels;
        for (int64_t c = 0; c < channels; ++c) {
          o0[c] += gj[c] * u;
          o1[c] += gj[c] * v;
          o2[c] += gj[c] * rest;
        }
      }
      if (need_uv) {
        const T* c0 = a + i0 * channels;
        const T* c1 = a + i1 * channels;
        const T* c2 = a + i2 * channels;
        T su = 0, sv = 0;
        for (int64_t c = 0; c < channels; ++c) {
          su += gj[c] * (c0[c] - c2[c]);
          sv += gj[c] * (c1[c] - c2[c]);
        }
        guv[4 * px[j]] = su;
        guv[4 * px[j] + 1] = sv;
      }
    }
  });
  return {grad_attr, grad_uv};
}

// The silhouette crossings raster_torch.antialias uses. sx, sy: [B, V] pixel coordinates (detached);
// tri [F, 3] int64; topology [F, 3] int64 (edge_topology); rast [B, H, W, 4].
// Returns (own [N], other [N], face [N], edge [N]) int64 and orient [N] in sx's dtype: the pixel whose
// triangle's edge `edge` (corners edge, edge + 1 mod 3) crosses the segment to `other`, in pair order
// (horizontal pairs, then vertical; the nearer side's triangle first).
std::vector<torch::Tensor> antialias_pairs(torch::Tensor sx, torch::Tensor sy, torch::Tensor tri, torch::Tensor topology,
                                           torch::Tensor rast) {
  TORCH_CHECK(sx.is_contiguous() && sy.is_contiguous() && tri.is_contiguous() && topology.is_contiguous() &&
              rast.is_contiguous(), "contiguous inputs");
  const int64_t batch = rast.size(0), height = rast.size(1), width = rast.size(2);
  const int64_t num_vertices = sx.size(1), num_faces = tri.size(0), hw = height * width;
  std::vector<int64_t> own, other, face, edge;
  std::vector<double> orient_out;
  AT_DISPATCH_FLOATING_TYPES(sx.scalar_type(), "antialias_pairs", [&] {
    using T = scalar_t;
    const T* X = sx.data_ptr<T>();
    const T* Y = sy.data_ptr<T>();
    const int64_t* t = tri.data_ptr<int64_t>();
    const int64_t* topo = topology.data_ptr<int64_t>();
    std::vector<int64_t> ids(batch * hw);
    std::vector<T> depth(batch * hw);
    AT_DISPATCH_FLOATING_TYPES(rast.scalar_type(), "antialias_rast", [&] {
      const scalar_t* r = rast.data_ptr<scalar_t>();
      for (int64_t i = 0; i < batch * hw; ++i) {
        ids[i] = static_cast<int64_t>(r[4 * i + 3]);
        depth[i] = static_cast<T>(r[4 * i + 2]);
      }
    });
    // facing [B, F] (sign of the screen area) and whether each face has a silhouette edge.
    std::vector<T> facing(batch * num_faces);
    std::vector<char> has_silhouette(batch * (num_faces + 1), 0);
    for (int64_t b = 0; b < batch; ++b) {
      const T* x = X + b * num_vertices;
      const T* y = Y + b * num_vertices;
      for (int64_t f = 0; f < num_faces; ++f) {
        const int64_t* c = t + 3 * f;
        const T a = (x[c[1]] - x[c[0]]) * (y[c[2]] - y[c[0]]) - (x[c[2]] - x[c[0]]) * (y[c[1]] - y[c[0]]);
        facing[b * num_faces + f] = a > 0 ? T(1) : (a < 0 ? T(-1) : T(0));
      }
      for (int64_t f = 0; f < num_faces; ++f) {
        const T own_facing = facing[b * num_faces + f];
        bool sil = false;
        for (int k = 0; k < 3; ++k) {
          const int64_t o = topo[3 * f + k];
          // As raster_torch: a missing neighbour is compared through index 0 but counted as a silhouette.
          sil = sil || o < 0 || facing[b * num_faces + o] != own_facing;
        }
        has_silhouette[b * (num_faces + 1) + f + 1] = sil;
      }
    }
    // Where a silhouette edge of own's triangle crosses own -> other: (t_min, edge) or edge -1.
    auto crossing = [&](int64_t p, int64_t q, bool horizontal, T& t_best, int& k_best) {
      k_best = -1;
      const int64_t f = ids[p] - 1;
      if (f < 0) return;
      const int64_t b = p / hw;
      const T ox = static_cast<T>((p - b * hw) % width) + T(0.5), oy = static_cast<T>((p - b * hw) / width) + T(0.5);
      const T qx = static_cast<T>((q - b * hw) % width) + T(0.5), qy = static_cast<T>((q - b * hw) / width) + T(0.5);
      const T* x = X + b * num_vertices;
      const T* y = Y + b * num_vertices;
      const T orient = facing[b * num_faces + f];
      t_best = T(2);
      for (int k = 0; k < 3; ++k) {
        const T ax = x[t[3 * f + k]], ay = y[t[3 * f + k]];
        const T bx = x[t[3 * f + (k + 1) % 3]], by = y[t[3 * f + (k + 1) % 3]];
        const T e_own = ((bx - ax) * (oy - ay) - (by - ay) * (ox - ax)) * orient;
        const T e_other = ((bx - ax) * (qy - ay) - (by - ay) * (qx - ax)) * orient;
        const int64_t o = topo[3 * f + k];
        const bool sil = o < 0 || facing[b * num_faces + std::max<int64_t>(o, 0)] != orient;
        const T dx = std::abs(bx - ax), dy = std::abs(by - ay);
        const bool steep = horizontal ? dy >= dx : dx > dy;
        if (e_other < 0 && e_own >= 0 && sil && steep) {
          const T tk = e_own / (e_own - e_other);
          if (tk < t_best) {
            t_best = tk;
            k_best = k;
          }
        }
      }
      if (!(t_best <= T(1))) k_best = -1;
    };
    std::vector<int64_t> own_b, other_b, face_b, edge_b;
    std::vector<double> orient_b;
    auto emit = [&](std::vector<int64_t>& o, std::vector<int64_t>& q, std::vector<int64_t>& fc,
                    std::vector<int64_t>& e, std::vector<double>& s, int64_t p, int64_t other_pixel, int k) {
      const int64_t b = p / hw, f = ids[p] - 1;
      o.push_back(p);
      q.push_back(other_pixel);
      fc.push_back(f);
      e.push_back(k);
      s.push_back(static_cast<double>(facing[b * num_faces + f]));
    };
    for (int horizontal = 1; horizontal >= 0; --horizontal) {
      for (int64_t b = 0; b < batch; ++b) {
        const char* sil = has_silhouette.data() + b * (num_faces + 1);
        for (int64_t py = 0; py < (horizontal ? height : height - 1); ++py) {
          for (int64_t px = 0; px < (horizontal ? width - 1 : width); ++px) {
            const int64_t p = b * hw + py * width + px;
            const int64_t q = horizontal ? p + 1 : p + width;
            if (ids[p] == ids[q] || !(sil[ids[p]] || sil[ids[q]])) continue;
            const bool p_front = ids[q] == 0 || (ids[p] != 0 && depth[p] <= depth[q]);
            T t_a = 2, t_b = 2;
            int k_a, k_b;
            crossing(p, q, horizontal, t_a, k_a);
            crossing(q, p, horizontal, t_b, k_b);
            const bool use_a = k_a >= 0 && (p_front || k_b < 0);
            if (use_a) emit(own, other, face, edge, orient_out, p, q, k_a);
            else if (k_b >= 0) emit(own_b, other_b, face_b, edge_b, orient_b, q, p, k_b);
          }
        }
      }
    }
    own.insert(own.end(), own_b.begin(), own_b.end());
    other.insert(other.end(), other_b.begin(), other_b.end());
    face.insert(face.end(), face_b.begin(), face_b.end());
    edge.insert(edge.end(), edge_b.begin(), edge_b.end());
    orient_out.insert(orient_out.end(), orient_b.begin(), orient_b.end());
  });
  const int64_t n = static_cast<int64_t>(own.size());
  auto long_opts = torch::TensorOptions().dtype(torch::kInt64);
  auto to_tensor = [&](const std::vector<int64_t>& v) {
    auto out = torch::empty({n}, long_opts);
    if (n) std::memcpy(out.data_ptr<int64_t>(), v.data(), n * sizeof(int64_t));
    return out;
  };
  auto orient = torch::empty({n}, torch::TensorOptions().dtype(torch::kFloat64));
  if (n) std::memcpy(orient.data_ptr<double>(), orient_out.data(), n * sizeof(double));
  return {to_tensor(own), to_tensor(other), to_tensor(face), to_tensor(edge), orient.to(sx.scalar_type())};
}


namespace {

template <typename T>
inline T dot3(const T* a, const T* b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

// y = x / max(|x|, eps) (torch.nn.functional.normalize); returns the denominator.
template <typename T>
inline T normalize3(const T* x, T* y, T eps) {
  T norm = std::sqrt(x[0] * x[0] + x[1] * x[1] + x[2] * x[2]);
  const T inv = T(1) / (norm > eps ? norm : eps);
  for (int c = 0; c < 3; ++c) y[c] = x[c] * inv;
  return norm;
}

// Gradient through normalize: g_x from g_y, y and |x|.
template <typename T>
inline void normalize3_backward(const T* g, const T* y, T norm, T eps, T* g_x) {
  if (norm > eps) {
    const T yg = dot3(y, g), inv = T(1) / norm;
    for (int c = 0; c < 3; ++c) g_x[c] = (g[c] - y[c] * yg) * inv;
  } else {
    for (int c = 0; c < 3; ++c) g_x[c] = g[c] / eps;
  }
}

// x^k for x >= 0: by squaring when k is a small non-negative integer (the usual shininess), else std::pow.
template <typename T>
inline T power(T x, T k) {
  const int n = static_cast<int>(k);
  if (static_cast<T>(n) != k || n < 0 || n > 64) return std::pow(x, k);
  T result = 1, base = x;
  for (int e = n; e > 0; e >>= 1) {
    if (e & 1) result *= base;
    base *= base;
  }
  return result;
}

struct PhongParams {
  double ambient, diffuse, specular, shininess, eps;
  bool two_sided, clamp;  // clamp: the result clamped to [0, 1] (torch.clamp's gradient: passed where inside)
};

// One pixel of shading.phong: forward (out != nullptr) or backward (g != nullptr, writes g_albedo,
// g_position, g_normal).
template <typename T>
inline void phong_pixel(const T* albedo, const T* position, const T* normal, const T* eye, const T* light,
                        const PhongParams& prm, T* out, const T* g_out, T* g_albedo, T* g_position, T* g_normal) {
  const T eps = static_cast<T>(prm.eps);
  T n[3], te_raw[3], te[3], tl_raw[3], tl[3];
  const T n_norm = normalize3(normal, n, eps);
  for (int c = 0; c < 3; ++c) te_raw[c] = eye[c] - position[c];
  const T te_norm = normalize3(te_raw, te, eps);
  const bool flip = prm.two_sided && dot3(n, te) < 0;
  T nf[3];
  for (int c = 0; c < 3; ++c) nf[c] = flip ? -n[c] : n[c];
  for (int c = 0; c < 3; ++c) tl_raw[c] = light[c] - position[c];
  const T tl_norm = normalize3(tl_raw, tl, eps);
  const T d = dot3(nf, tl);
  const T lambert = d > 0 ? d : T(0);
  const T A = static_cast<T>(prm.ambient), D = static_cast<T>(prm.diffuse), S = static_cast<T>(prm.specular);
  const T k = static_cast<T>(prm.shininess);
  const T light_term = A + D * lambert;
  T r[3] = {0, 0, 0};
  T s = 0, spec = 0;
  const bool lit = lambert > 0;
  if (prm.specular > 0) {
    for (int c = 0; c < 3; ++c) r[c] = T(2) * d * nf[c] - tl[c];
    s = dot3(r, te);
    spec = power(s > 0 ? s : T(0), k);
  }
  T value[3];
  for (int c = 0; c < 3; ++c) {
    value[c] = albedo[c] * light_term;
    if (prm.specular > 0) value[c] = value[c] + S * spec * (lit ? T(1) : T(0));
  }
  if (out) {
    for (int c = 0; c < 3; ++c) out[c] = prm.clamp ? std::min(std::max(value[c], T(0)), T(1)) : value[c];
    return;
  }
  T g_in[3];
  for (int c = 0; c < 3; ++c) g_in[c] = !prm.clamp || (value[c] >= 0 && value[c] <= 1) ? g_out[c] : T(0);
  const T* g = g_in;
  T g_nf[3] = {0, 0, 0}, g_tl[3] = {0, 0, 0}, g_te[3] = {0, 0, 0};
  for (int c = 0; c < 3; ++c) g_albedo[c] = g[c] * light_term;
  const T g_lambert = D * dot3(g, albedo);
  T g_d = d >= 0 ? g_lambert : T(0);  // clamp(min=0) passes its gradient where d >= 0
  if (prm.specular > 0 && lit) {
    const T g_spec = S * (g[0] + g[1] + g[2]);
    const T g_s = s >= 0 ? g_spec * k * power(s > 0 ? s : T(0), k - T(1)) : T(0);
    T g_r[3];
    for (int c = 0; c < 3; ++c) {
      g_r[c] = g_s * te[c];
      g_te[c] += g_s * r[c];
    }
    g_d += T(2) * dot3(g_r, nf);
    for (int c = 0; c < 3; ++c) {
      g_nf[c] += T(2) * d * g_r[c];
      g_tl[c] -= g_r[c];
    }
  }
  for (int c = 0; c < 3; ++c) {
    g_nf[c] += g_d * tl[c];
    g_tl[c] += g_d * nf[c];
  }
  T g_n[3], g_te_raw[3], g_tl_raw[3];
  for (int c = 0; c < 3; ++c) g_n[c] = flip ? -g_nf[c] : g_nf[c];
  normalize3_backward(g_n, n, n_norm, eps, g_normal);
  normalize3_backward(g_te, te, te_norm, eps, g_te_raw);
  normalize3_backward(g_tl, tl, tl_norm, eps, g_tl_raw);
  for (int c = 0; c < 3; ++c) g_position[c] = -g_te_raw[c] - g_tl_raw[c];
}

}  // namespace

// shading.phong at P pixels: albedo, position, normal [P, 3] (rows may be strided, columns contiguous);
// eye, light [B, 3]; view_of [P] int64. Forward (grad empty): writes out [P, 3]. Backward (grad [P, 3]):
// writes the three gradients into g_albedo, g_position, g_normal ([P, 3] views, rows may be strided).
void phong(torch::Tensor albedo, torch::Tensor position, torch::Tensor normal, torch::Tensor eye, torch::Tensor light,
           torch::Tensor view_of, double ambient, double diffuse, double specular, double shininess, bool two_sided,
           bool clamp, torch::Tensor out, torch::Tensor grad, torch::Tensor g_albedo, torch::Tensor g_position, torch::Tensor g_normal) {
  const bool backward = grad.defined() && grad.numel() > 0;
  std::vector<torch::Tensor> views = {albedo, position, normal};
  if (backward) views.insert(views.end(), {grad, g_albedo, g_position, g_normal});
  else views.push_back(out);
  for (const auto& t : views)
    TORCH_CHECK(t.dim() == 2 && t.size(1) == 3 && t.size(0) == albedo.size(0) && t.stride(1) == 1 &&
                t.scalar_type() == albedo.scalar_type(), "phong: [P, 3] tensors of one dtype, contiguous columns");
  TORCH_CHECK(eye.is_contiguous() && light.is_contiguous() && eye.scalar_type() == albedo.scalar_type() &&
              light.scalar_type() == albedo.scalar_type(), "phong: eye, light [B, 3] contiguous, albedo's dtype");
  const int64_t count = albedo.size(0);
  const PhongParams prm{ambient, diffuse, specular, shininess, 1e-12, two_sided, clamp};
  AT_DISPATCH_FLOATING_TYPES(albedo.scalar_type(), "phong", [&] {
    using T = scalar_t;
    const T *a = albedo.data_ptr<T>(), *p = position.data_ptr<T>(), *n = normal.data_ptr<T>();
    const int64_t sa = albedo.stride(0), sp = position.stride(0), sn = normal.stride(0);
    const T *e = eye.data_ptr<T>(), *l = light.data_ptr<T>();
    const int64_t* v = view_of.data_ptr<int64_t>();
    T* o = backward ? nullptr : out.data_ptr<T>();
    const T* g = backward ? grad.data_ptr<T>() : nullptr;
    T* ga = backward ? g_albedo.data_ptr<T>() : nullptr;
    T* gp = backward ? g_position.data_ptr<T>() : nullptr;
    T* gn = backward ? g_normal.data_ptr<T>() : nullptr;
    const int64_t so = backward ? 0 : out.stride(0), sg = backward ? grad.stride(0) : 0;
    const int64_t sga = backward ? g_albedo.stride(0) : 0, sgp = backward ? g_position.stride(0) : 0;
    const int64_t sgn = backward ? g_normal.stride(0) : 0;
    at::parallel_for(0, count, 2048, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) {
        if (backward) {
          phong_pixel<T>(a + j * sa, p + j * sp, n + j * sn, e + 3 * v[j], l + 3 * v[j], prm, nullptr, g + j * sg,
                         ga + j * sga, gp + j * sgp, gn + j * sgn);
        } else {
          phong_pixel<T>(a + j * sa, p + j * sp, n + j * sn, e + 3 * v[j], l + 3 * v[j], prm, o + j * so, nullptr,
                         nullptr, nullptr, nullptr);
        }
      }
    });
  });
}

// raster_torch.antialias's blend: out = color, then for each pair out[other] += spill * diff, then
// out[own] -= recede * diff (diff = color[own] - color[other], spill = max(t - 0.5, 0), recede = max(0.5 - t, 0)),
// in that order. color: [N, C] contiguous; own, other [M] int64; t [M].
torch::Tensor antialias_blend_forward(torch::Tensor color, torch::Tensor own, torch::Tensor other, torch::Tensor t) {
  TORCH_CHECK(color.is_contiguous() && own.is_contiguous() && other.is_contiguous() && t.is_contiguous() &&
              t.scalar_type() == color.scalar_type(), "antialias_blend: contiguous inputs, t in color's dtype");
  auto out = color.clone();
  const int64_t channels = color.size(1), count = own.size(0);
  AT_DISPATCH_FLOATING_TYPES(color.scalar_type(), "antialias_blend_forward", [&] {
    using T = scalar_t;
    const T* c = color.data_ptr<T>();
    T* o = out.data_ptr<T>();
    const int64_t *ow = own.data_ptr<int64_t>(), *ot = other.data_ptr<int64_t>();
    const T* tt = t.data_ptr<T>();
    for (int64_t j = 0; j < count; ++j) {
      const T spill = std::max(tt[j] - T(0.5), T(0));
      for (int64_t k = 0; k < channels; ++k)
        o[ot[j] * channels + k] += spill * (c[ow[j] * channels + k] - c[ot[j] * channels + k]);
    }
    for (int64_t j = 0; j < count; ++j) {
      const T recede = std::max(T(0.5) - tt[j], T(0));
      for (int64_t k = 0; k < channels; ++k)
        o[ow[j] * channels + k] += -recede * (c[ow[j] * channels + k] - c[ot[j] * channels + k]);
    }
  });
  return out;
}

// Backward of antialias_blend_forward: (grad_color [N, C], grad_t [M]); clamp passes its gradient at equality.
std::vector<torch::Tensor> antialias_blend_backward(torch::Tensor grad, torch::Tensor color, torch::Tensor own,
                                                    torch::Tensor other, torch::Tensor t) {
  grad = grad.contiguous();
  auto grad_color = grad.clone();
  auto grad_t = torch::empty_like(t);
  const int64_t channels = color.size(1), count = own.size(0);
  AT_DISPATCH_FLOATING_TYPES(color.scalar_type(), "antialias_blend_backward", [&] {
    using T = scalar_t;
    const T* c = color.data_ptr<T>();
    const T* g = grad.data_ptr<T>();
    T* gc = grad_color.data_ptr<T>();
    const int64_t *ow = own.data_ptr<int64_t>(), *ot = other.data_ptr<int64_t>();
    const T* tt = t.data_ptr<T>();
    T* gt = grad_t.data_ptr<T>();
    for (int64_t j = 0; j < count; ++j) {
      const T spill = std::max(tt[j] - T(0.5), T(0)), recede = std::max(T(0.5) - tt[j], T(0));
      T g_spill = 0, g_recede = 0;
      for (int64_t k = 0; k < channels; ++k) {
        const T go = g[ot[j] * channels + k], gw = g[ow[j] * channels + k];
        const T diff = c[ow[j] * channels + k] - c[ot[j] * channels + k];
        const T g_diff = spill * go - recede * gw;
        gc[ow[j] * channels + k] += g_diff;
        gc[ot[j] * channels + k] -= g_diff;
        g_spill += go * diff;
        g_recede -= gw * diff;
      }
      gt[j] = (tt[j] - T(0.5) >= 0 ? g_spill : T(0)) - (T(0.5) - tt[j] >= 0 ? g_recede : T(0));
    }
  });
  return {grad_color, grad_t};
}

// shading.vertex_normals: area-weighted unit vertex normals of vertices [B, V, 3] (contiguous), faces [F, 3]
// int64. Forward: (unit normals [B, V, 3], unnormalised sums [B, V, 3]). Backward (grad given): grad vertices.
std::vector<torch::Tensor> vertex_normals(torch::Tensor vertices, torch::Tensor faces, torch::Tensor sums,
                                          torch::Tensor unit, torch::Tensor grad) {
  TORCH_CHECK(vertices.is_contiguous() && faces.is_contiguous() && vertices.dim() == 3 && vertices.size(2) == 3,
              "vertex_normals: vertices [B, V, 3] contiguous, faces [F, 3] int64");
  const int64_t batch = vertices.size(0), num_vertices = vertices.size(1), num_faces = faces.size(0);
  const bool backward = grad.defined() && grad.numel() > 0;
  std::vector<torch::Tensor> result;
  AT_DISPATCH_FLOATING_TYPES(vertices.scalar_type(), "vertex_normals", [&] {
    using T = scalar_t;
    const T eps = static_cast<T>(1e-12);
    const int64_t* f = faces.data_ptr<int64_t>();
    if (!backward) {
      auto sum_t = torch::zeros_like(vertices);
      auto unit_t = torch::empty_like(vertices);
      for (int64_t b = 0; b < batch; ++b) {
        const T* v = vertices.data_ptr<T>() + b * num_vertices * 3;
        T* n = sum_t.data_ptr<T>() + b * num_vertices * 3;
        // Corner k's sums in face order, k = 0, 1, 2 (as the three index_adds of shading.vertex_normals).
        std::vector<T> fn(num_faces * 3);
        for (int64_t i = 0; i < num_faces; ++i) {
          const T *v0 = v + 3 * f[3 * i], *v1 = v + 3 * f[3 * i + 1], *v2 = v + 3 * f[3 * i + 2];
          const T e1[3] = {v1[0] - v0[0], v1[1] - v0[1], v1[2] - v0[2]};
          const T e2[3] = {v2[0] - v0[0], v2[1] - v0[1], v2[2] - v0[2]};
          fn[3 * i] = e1[1] * e2[2] - e1[2] * e2[1];
          fn[3 * i + 1] = e1[2] * e2[0] - e1[0] * e2[2];
          fn[3 * i + 2] = e1[0] * e2[1] - e1[1] * e2[0];
        }
        for (int k = 0; k < 3; ++k)
          for (int64_t i = 0; i < num_faces; ++i)
            for (int c = 0; c < 3; ++c) n[3 * f[3 * i + k] + c] += fn[3 * i + c];
        T* u = unit_t.data_ptr<T>() + b * num_vertices * 3;
        for (int64_t i = 0; i < num_vertices; ++i) normalize3(n + 3 * i, u + 3 * i, eps);
      }
      result = {unit_t, sum_t};
      return;
    }
    TORCH_CHECK(sums.is_contiguous() && unit.is_contiguous(), "vertex_normals backward: saved sums and unit normals");
    grad = grad.contiguous();
    auto grad_v = torch::zeros_like(vertices);
    for (int64_t b = 0; b < batch; ++b) {
      const T* v = vertices.data_ptr<T>() + b * num_vertices * 3;
      const T* n = sums.data_ptr<T>() + b * num_vertices * 3;
      const T* u = unit.data_ptr<T>() + b * num_vertices * 3;
      const T* g = grad.data_ptr<T>() + b * num_vertices * 3;
      T* gv = grad_v.data_ptr<T>() + b * num_vertices * 3;
      std::vector<T> g_sum(num_vertices * 3);
      for (int64_t i = 0; i < num_vertices; ++i) {
        const T* ni = n + 3 * i;
        const T norm = std::sqrt(ni[0] * ni[0] + ni[1] * ni[1] + ni[2] * ni[2]);
        normalize3_backward(g + 3 * i, u + 3 * i, norm, eps, g_sum.data() + 3 * i);
      }
      for (int64_t i = 0; i < num_faces; ++i) {
        const int64_t i0 = f[3 * i], i1 = f[3 * i + 1], i2 = f[3 * i + 2];
        const T *v0 = v + 3 * i0, *v1 = v + 3 * i1, *v2 = v + 3 * i2;
        const T e1[3] = {v1[0] - v0[0], v1[1] - v0[1], v1[2] - v0[2]};
        const T e2[3] = {v2[0] - v0[0], v2[1] - v0[1], v2[2] - v0[2]};
        T gf[3];
        for (int c = 0; c < 3; ++c) gf[c] = g_sum[3 * i0 + c] + g_sum[3 * i1 + c] + g_sum[3 * i2 + c];
        // fn = e1 x e2: d/de1 = e2 x gf, d/de2 = gf x e1.
        const T g1[3] = {e2[1] * gf[2] - e2[2] * gf[1], e2[2] * gf[0] - e2[0] * gf[2], e2[0] * gf[1] - e2[1] * gf[0]};
        const T g2[3] = {gf[1] * e1[2] - gf[2] * e1[1], gf[2] * e1[0] - gf[0] * e1[2], gf[0] * e1[1] - gf[1] * e1[0]};
        for (int c = 0; c < 3; ++c) {
          gv[3 * i1 + c] += g1[c];
          gv[3 * i2 + c] += g2[c];
          gv[3 * i0 + c] -= g1[c] + g2[c];
        }
      }
    }
    result = {grad_v};
  });
  return result;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("visibility", &visibility, "winning triangle id + 1 per pixel");
  m.def("barycentrics_forward", &barycentrics_forward, "rast from the winning triangles");
  m.def("barycentrics_backward", &barycentrics_backward, "grad pos from grad rast");
  m.def("interpolate_forward", &interpolate_forward, "attributes at covered pixels");
  m.def("interpolate_backward", &interpolate_backward, "grad attr and grad uv");
  m.def("vertex_normals", &vertex_normals, "area-weighted unit vertex normals (or their backward)");
  m.def("phong", &phong, "Phong shading of pixels (or its backward when grad is given)");
  m.def("antialias_blend_forward", &antialias_blend_forward, "colour moved across silhouette pairs");
  m.def("antialias_blend_backward", &antialias_blend_backward, "its backward");
  m.def("antialias_pairs", &antialias_pairs, "silhouette crossings between neighbouring pixels");
}
