// Eigenvalues and eigenvectors of a symmetric tridiagonal matrix (see tridiagonal_eigen.h):
// the top-k eigenvalues by multisection on Sturm counts and then Newton's method on
// det(T − x·I), or all of them by the root-free implicit QL iteration; their eigenvectors by
// inverse iteration on the pivoted LU factors of T − λI, re-orthogonalised within clusters of
// close eigenvalues, each accepted on its residual. AVX2 + FMA builds of the multisection and
// of the factorisations (avx2.h).
#include "cpu/tridiagonal_eigen.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>

#include "cpu/avx2.h"
#include "cpu/vector_ops.h"

namespace rrae_fast::cpu {

namespace {

constexpr double kEps = std::numeric_limits<double>::epsilon();
// Width, relative to T's Gershgorin bound, below which a bisection bracket is finished.
constexpr double kBisectionTolerance = 4 * kEps;

// ------------------------------------------------------------------------------------------
// Eigenvalues
// ------------------------------------------------------------------------------------------

// Eigenvalues of [[a, b], [b, c]] without cancellation in the smaller one.
void Eigenvalues2x2(double a, double b, double c, double* rt1, double* rt2) {
  const double sum = a + c, half_diff = 0.5 * (a - c);
  const double root = std::sqrt(half_diff * half_diff + b * b);
  const double big = std::abs(a) > std::abs(c) ? a : c, small = std::abs(a) > std::abs(c) ? c : a;
  if (sum == 0) {
    *rt1 = root;
    *rt2 = -root;
    return;
  }
  *rt1 = 0.5 * sum + std::copysign(root, sum);   // the eigenvalue of larger magnitude
  *rt2 = (big / *rt1) * small - (b / *rt1) * b;  // det / rt1
}

// Eigenvalues of the symmetric tridiagonal (d, e) into d (unordered) by the root-free implicit
// QL iteration of Pal, Walker and Kahan (the variant in LAPACK's dsterf): it works on the squared
// couplings e2 (destroyed), so a rotation costs no square root and, as written here, one
// division on its critical path. False if one eigenvalue takes more than 60 sweeps. T is scaled
// (‖T‖ <= p), so squares neither overflow nor lose what matters to underflow.
bool TridiagonalEigenvalues(int64_t p, double* d, double* e2) {
  for (int64_t i = 0; i < p; ++i) e2[i] *= e2[i];
  const double eps2 = kEps * kEps;
  int64_t l = 0;
  int sweeps = 0;
  while (l < p) {
    int64_t mm = l;  // first negligible coupling at or after l
    for (; mm + 1 < p; ++mm) {
      if (e2[mm] <= eps2 * std::max(std::abs(d[mm] * d[mm + 1]), 1e-4)) break;
    }
    if (mm + 1 < p) e2[mm] = 0;
    if (mm == l) {  // d[l] has converged
      ++l;
      sweeps = 0;
      continue;
    }
    if (mm == l + 1) {  // a 2 x 2 block: its eigenvalues in closed form
      Eigenvalues2x2(d[l], std::sqrt(e2[l]), d[l + 1], &d[l], &d[l + 1]);
      e2[l] = 0;
      l += 2;
      sweeps = 0;
      continue;
    }
    if (++sweeps > 60) return false;
    // Wilkinson shift from the leading 2 x 2.
    const double rte = std::sqrt(e2[l]);
    double sigma = (d[l + 1] - d[l]) / (2.0 * rte);
    sigma = d[l] - rte / (sigma + std::copysign(std::sqrt(sigma * sigma + 1.0), sigma));
    double c = 1, s = 0;
    double gamma = d[mm] - sigma;
    double pp = gamma * gamma;
    for (int64_t i = mm - 1; i >= l; --i) {
      const double bb = e2[i];
      const double r = pp + bb;
      if (i != mm - 1) e2[i + 1] = s * r;
      const double old_c = c;
      const double inv_r = 1.0 / r;
      // r / pp (for the next pp = γ² / c = γ² · r / pp) does not wait for this step's division.
      const double r_over_pp = pp != 0 ? r / pp : 0;
      c = pp * inv_r;
      s = bb * inv_r;
      const double old_gamma = gamma;
      const double alpha = d[i];
      gamma = c * (alpha - sigma) - s * old_gamma;
      d[i + 1] = old_gamma + (alpha - gamma);
      pp = c != 0 ? gamma * gamma * r_over_pp : old_c * bb;
    }
    e2[l] = s * pp;
    d[l] = sigma + gamma;
  }
  return true;
}

// Points per pass of the multisection: four AVX2 vectors, whose steps of the recurrence below
// overlap in its latency; more would cost more per pass than they give.
constexpr int kSturmPoints = 16;

// The minors below run on T / scale (diagonal ds, squared couplings e2s), where every
// entry is at most ~2 in magnitude and diagonal entries below kNegligible are zero; points are
// rounded the same way. The recurrence's values are brought back towards 1 by kRescale (a
// power of two, so exactly) every second step when outside [1 / kRescale, kRescale]. Between
// two checks a value moves by less than 2^240 either way: a step multiplies by at most
// |ds_i − x| + e2s ≤ ~8, or divides by at most 2^112 (d − x is zero or at least the rounding
// of the larger of two entries ≥ kNegligible) or 2^106 (a cancellation ends at its rounding, or
// at zero, after which the next value is −e2s · the one before it, or zero at a split, see
// below), so values stay in the normal range.
constexpr double kRescale = 0x1p400;
constexpr double kNegligible = 0x1p-60;

// Lanes of one Newton pass (below): two AVX2 vectors, whose recurrences overlap in its latency.
constexpr int kNewtonLanes = 8;

// For `kLanes` points x: count[t] = the number of eigenvalues of T below x[t] (or at it), and
// where kRatio also ratio[t] = f(x) / f'(x) for f(x) = det(T − x·I).
//
// The pivots of the LDLᵀ factorisation of T − x·I are q_i = p_i / p_{i−1}, the ratios of the
// leading principal minors p_0 = 1, p_{i+1} = (d_i − x) p_i − e2_{i−1} p_{i−1}, and the count is
// the number of negative pivots, i.e. of sign changes (sign bits, so ±0 too) from one minor to
// the next. The minors need no division (the pivots wait on one per step, whose throughput had
// bounded the count) and carry the same rounding: fl(a p_i − b p_{i−1}) =
// (a − b (1 + δ) / q_i)(1 + δ') p_i is the pivot recurrence on relatively perturbed data. A zero
// minor is followed by −e2 · (the one before it), which counts one change over the two steps
// whatever the zero's sign, as the division form's pivot −pivmin does; where T splits (e2 = 0)
// the zero minor is first replaced by −kNegligible · (the one before it), the division form's
// pivot, so that the later ones are not all zero. The derivatives follow from p'_0 = 0,
// p'_{i+1} = (d_i − x) p'_i − p_i − e2_{i−1} p'_{i−1}, rescaled with the minors (every value of
// the four checked, so that they stay in range too; the ratio does not see the scale). At a
// split the zero minor's replacement leaves its derivative as it was: the ratio is then only a
// guess, which the caller's bracket checks.
template <int kLanes, bool kRatio>
RRAE_FAST_AVX2 inline void MinorsAvx2(int64_t p, const double* ds, const double* e2s,
                                      const double* x, double* count, double* ratio) {
  constexpr int kVectors = kLanes / 4;
  const __m256d one = _mm256_set1_pd(1.0), up = _mm256_set1_pd(kRescale);
  const __m256d down = _mm256_set1_pd(1 / kRescale), sign = _mm256_set1_pd(-0.0);
  __m256d xv[kVectors], prev[kVectors], cur[kVectors], dprev[kVectors], dcur[kVectors];
  __m256i c[kVectors];
  const __m256d d0 = _mm256_set1_pd(ds[0]);
  for (int v = 0; v < kVectors; ++v) {
    xv[v] = _mm256_loadu_pd(x + 4 * v);
    prev[v] = one;
    cur[v] = _mm256_sub_pd(d0, xv[v]);
    dprev[v] = _mm256_setzero_pd();
    dcur[v] = _mm256_set1_pd(-1.0);
    c[v] = _mm256_srli_epi64(_mm256_castpd_si256(cur[v]), 63);
  }
  for (int64_t i = 1; i < p; ++i) {
    if (e2s[i - 1] == 0) {  // a split: no zero minor may carry over it
      for (int v = 0; v < kVectors; ++v) {
        alignas(32) double pc[4], pp[4];
        alignas(32) int64_t pk[4];
        _mm256_store_pd(pc, cur[v]);
        _mm256_store_pd(pp, prev[v]);
        _mm256_store_si256(reinterpret_cast<__m256i*>(pk), c[v]);
        for (int t = 0; t < 4; ++t) {
          if (pc[t] == 0) {
            pk[t] += std::signbit(pc[t]) == std::signbit(pp[t]);
            pc[t] = -kNegligible * pp[t];
          }
        }
        cur[v] = _mm256_load_pd(pc);
        c[v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(pk));
      }
    }
    const __m256d di = _mm256_set1_pd(ds[i]), bi = _mm256_set1_pd(e2s[i - 1]);
    for (int v = 0; v < kVectors; ++v) {
      const __m256d a = _mm256_sub_pd(di, xv[v]);
      const __m256d next = _mm256_fmsub_pd(a, cur[v], _mm256_mul_pd(bi, prev[v]));
      if constexpr (kRatio) {
        const __m256d dnext = _mm256_fmsub_pd(a, dcur[v], _mm256_fmadd_pd(bi, dprev[v], cur[v]));
        dprev[v] = dcur[v];
        dcur[v] = dnext;
      }
      const __m256i flip = _mm256_castpd_si256(_mm256_xor_pd(next, cur[v]));
      c[v] = _mm256_add_epi64(c[v], _mm256_srli_epi64(flip, 63));
      prev[v] = cur[v];
      cur[v] = next;
    }
    if (i % 2 == 0) {
      for (int v = 0; v < kVectors; ++v) {
        __m256d big =
            _mm256_max_pd(_mm256_andnot_pd(sign, cur[v]), _mm256_andnot_pd(sign, prev[v]));
        if constexpr (kRatio) {
          big = _mm256_max_pd(big, _mm256_max_pd(_mm256_andnot_pd(sign, dcur[v]),
                                                 _mm256_andnot_pd(sign, dprev[v])));
        }
        __m256d f = _mm256_blendv_pd(one, up, _mm256_cmp_pd(big, down, _CMP_LT_OQ));
        f = _mm256_blendv_pd(f, down, _mm256_cmp_pd(big, up, _CMP_GT_OQ));
        cur[v] = _mm256_mul_pd(cur[v], f);
        prev[v] = _mm256_mul_pd(prev[v], f);
        if constexpr (kRatio) {
          dcur[v] = _mm256_mul_pd(dcur[v], f);
          dprev[v] = _mm256_mul_pd(dprev[v], f);
        }
      }
    }
  }
  for (int v = 0; v < kVectors; ++v) {
    alignas(32) int64_t pk[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(pk), c[v]);
    for (int t = 0; t < 4; ++t) count[4 * v + t] = double(pk[t]);
    if constexpr (kRatio) _mm256_storeu_pd(ratio + 4 * v, _mm256_div_pd(cur[v], dcur[v]));
  }
}

// The same without AVX2.
template <int kLanes, bool kRatio>
void MinorsGeneric(int64_t p, const double* ds, const double* e2s, const double* x, double* count,
                   double* ratio) {
  for (int t = 0; t < kLanes; ++t) {
    double prev = 1, cur = ds[0] - x[t], dprev = 0, dcur = -1;
    int64_t c = std::signbit(cur);
    for (int64_t i = 1; i < p; ++i) {
      if (e2s[i - 1] == 0 && cur == 0) {
        c += std::signbit(cur) == std::signbit(prev);
        cur = -kNegligible * prev;
      }
      const double a = ds[i] - x[t];
      const double next = a * cur - e2s[i - 1] * prev;
      if constexpr (kRatio) {
        const double dnext = a * dcur - (cur + e2s[i - 1] * dprev);
        dprev = dcur;
        dcur = dnext;
      }
      c += std::signbit(next) != std::signbit(cur);
      prev = cur;
      cur = next;
      if (i % 2 == 0) {
        double big = std::max(std::abs(cur), std::abs(prev));
        if constexpr (kRatio) big = std::max({big, std::abs(dcur), std::abs(dprev)});
        const double f = big < 1 / kRescale ? kRescale : (big > kRescale ? 1 / kRescale : 1.0);
        cur *= f;
        prev *= f;
        dcur *= f;
        dprev *= f;
      }
    }
    count[t] = double(c);
    if constexpr (kRatio) ratio[t] = cur / dcur;
  }
}

// Newton passes per group of lanes before the rest is left to the multisection.
constexpr int kNewtonPasses = 24;

// The k largest eigenvalues of (d, e) into lam, descending. Brackets start from Gershgorin's
// bounds and end narrower than kBisectionTolerance of them; the eigenvalue is the bracket's
// middle. Every Sturm count, wherever taken, narrows every bracket, and the counts at a
// bracket's ends say how many eigenvalues it holds. Two ways to place the points:
// - Multisection, while some eigenvalue shares its bracket with another: a pass evaluates
//   kSturmPoints counts, spread over the first such eigenvalues (up to kSturmPoints of them):
//   those whose brackets are still the same form one group, and each group gets an equal share
//   of the points, evenly spaced in its bracket. So one group alone gets all points (its
//   bracket 17 times narrower per pass), sixteen get one each (bisection).
// - Newton's method on det(T − x·I), kNewtonLanes eigenvalues at a time, once an eigenvalue is
//   alone in its bracket (a simple root there): each pass takes the Newton step from the last
//   point and goes a quarter of the tolerance further, so that once the steps are that small
//   the next point lands past the root and closes the bracket. A step that leaves the bracket,
//   or is not half as long as the one two passes before, takes the bracket's middle instead
//   (the safeguard of Numerical Recipes' rtsafe). Bisection gains one bit per count; Newton
//   doubles the correct digits per pass near a simple root.
// Eigenvalues left after kNewtonPasses go back to the multisection. Not sorted: ties may leave
// the middles out of order. work: 2p + 5k.
template <bool kAvx2>
__attribute__((always_inline)) inline void BisectionBody(int64_t p, int64_t k, const double* d,
                                                         const double* e, double* lam,
                                                         double* work) {
  double* ds = work;
  double* e2s = ds + p;
  double* lower = e2s + p;
  double* upper = lower + k;
  double* rank = upper + k;        // p − 1 − j: λ_j's rank from below, less one
  double* below_lower = rank + k;  // the count at lower[j] (eigenvalues below it)
  double* below_upper = below_lower + k;
  double lo = d[0], hi = d[0];
  for (int64_t i = 0; i < p; ++i) {  // e[p − 1] is not part of T
    const double radius = (i + 1 < p ? std::abs(e[i]) : 0) + (i > 0 ? std::abs(e[i - 1]) : 0);
    lo = std::min(lo, d[i] - radius);
    hi = std::max(hi, d[i] + radius);
  }
  // The counts run on T / scale, entries below kNegligible set to zero (points likewise).
  const double scale = std::max({std::abs(lo), std::abs(hi), std::numeric_limits<double>::min()});
  const double inv = 1 / scale;
  for (int64_t i = 0; i < p; ++i) {
    const double di = d[i] * inv, ei = i + 1 < p ? e[i] * inv : 0;
    ds[i] = std::abs(di) < kNegligible ? 0 : di;
    e2s[i] = ei * ei;
  }
  for (int64_t j = 0; j < k; ++j) rank[j] = double(p - 1 - j);
  const double tol = kBisectionTolerance * scale;
  std::fill(lower, lower + k, lo);
  std::fill(upper, upper + k, hi);
  std::fill(below_lower, below_lower + k, 0.0);
  std::fill(below_upper, below_upper + k, double(p));
  auto unfinished = [&](int64_t j) { return upper[j] - lower[j] > tol; };
  auto alone = [&](int64_t j) { return below_upper[j] - below_lower[j] == 1; };
  // A point where its scaled copy is (zero if negligible), so that both agree.
  auto place = [&](double at, double* x, double* xs) {
    const double scaled = at * inv;
    *xs = std::abs(scaled) < kNegligible ? 0 : scaled;
    *x = *xs * scale;
  };
  // Every bracket narrowed by the counts at n points.
  auto narrow = [&](int n, const double* x, const double* count, int64_t from) {
    for (int u = 0; u < n; ++u) {
      // λ_j (descending) lies at or above x[u] iff fewer than p − j eigenvalues lie below it.
      // (Written to store every entry, so that the loop over j vectorises.)
      const double below = count[u], at = x[u];
      for (int64_t j = from; j < k; ++j) {
        const bool above = rank[j] >= below;
        const double l = lower[j], h = upper[j], bl = below_lower[j], bu = below_upper[j];
        const bool raise = above && l < at, cut = !above && at < h;
        lower[j] = raise ? at : l;
        below_lower[j] = raise ? below : bl;
        upper[j] = cut ? at : h;
        below_upper[j] = cut ? below : bu;
      }
    }
  };
  double x[kSturmPoints], xs[kSturmPoints], count[kSturmPoints], ratio[kNewtonLanes];
  int64_t first = 0;  // eigenvalues before it are finished
  // Multisection passes over the eigenvalues that share their bracket (all of them where
  // `everyone`), until there are none. Each pass at least halves one unfinished bracket, and 64
  // halvings finish any bracket of finite numbers: the cap only guards.
  auto multisection = [&](bool everyone) {
    for (int64_t pass = 0; pass < 64 * (k + 1); ++pass) {
      while (first < k && !unfinished(first)) ++first;
      int64_t start[kSturmPoints];
      int groups = 0, members = 0;
      for (int64_t j = first; j < k && members < kSturmPoints; ++j) {
        if (!unfinished(j) || (!everyone && alone(j))) continue;
        ++members;
        const bool same = groups > 0 && lower[j] == lower[start[groups - 1]] &&
                          upper[j] == upper[start[groups - 1]];
        if (!same) start[groups++] = j;
      }
      if (groups == 0) return;
      int t = 0;
      for (int gi = 0; gi < groups; ++gi) {
        const int share = kSturmPoints / groups + (gi < kSturmPoints % groups ? 1 : 0);
        const double a = lower[start[gi]], step = (upper[start[gi]] - a) / (share + 1);
        for (int s = 1; s <= share; ++s, ++t) place(a + step * s, x + t, xs + t);
      }
      if constexpr (kAvx2) {
        MinorsAvx2<kSturmPoints, false>(p, ds, e2s, xs, count, nullptr);
      } else {
        MinorsGeneric<kSturmPoints, false>(p, ds, e2s, xs, count, nullptr);
      }
      narrow(kSturmPoints, x, count, first);
    }
  };
  multisection(false);
  // Newton, kNewtonLanes eigenvalues at a time (a lane beyond the last repeats it).
  for (int64_t j0 = first; j0 < k; j0 += kNewtonLanes) {
    int64_t lane[kNewtonLanes];
    double step1[kNewtonLanes], step2[kNewtonLanes];  // the last two steps' lengths
    for (int t = 0; t < kNewtonLanes; ++t) {
      lane[t] = std::min(j0 + t, k - 1);
      place(0.5 * (lower[lane[t]] + upper[lane[t]]), x + t, xs + t);
      step1[t] = step2[t] = upper[lane[t]] - lower[lane[t]];
    }
    for (int pass = 0; pass < kNewtonPasses; ++pass) {
      bool open = false;
      for (int t = 0; t < kNewtonLanes; ++t) open = open || unfinished(lane[t]);
      if (!open) break;
      if constexpr (kAvx2) {
        MinorsAvx2<kNewtonLanes, true>(p, ds, e2s, xs, count, ratio);
      } else {
        MinorsGeneric<kNewtonLanes, true>(p, ds, e2s, xs, count, ratio);
      }
      narrow(kNewtonLanes, x, count, first);
      for (int t = 0; t < kNewtonLanes; ++t) {
        const int64_t j = lane[t];
        const double l = lower[j], h = upper[j];
        double step = -ratio[t] * scale;
        double next = x[t] + step + std::copysign(0.25 * tol, step);
        if (!(l < next && next < h) || !(std::abs(step) <= 0.5 * step2[t])) {
          next = 0.5 * (l + h);
          step = 0.5 * (h - l);
        }
        step2[t] = step1[t];
        step1[t] = std::abs(step);
        place(next, x + t, xs + t);
      }
    }
  }
  multisection(true);
  for (int64_t j = 0; j < k; ++j) lam[j] = 0.5 * (lower[j] + upper[j]);
}

RRAE_FAST_AVX2 void BisectionAvx2(int64_t p, int64_t k, const double* d, const double* e,
                                  double* lam, double* work) {
  BisectionBody<true>(p, k, d, e, lam, work);
}

void BisectionGeneric(int64_t p, int64_t k, const double* d, const double* e, double* lam,
                      double* work) {
  BisectionBody<false>(p, k, d, e, lam, work);
}

}  // namespace

bool UseBisection(int64_t p, int64_t k) { return 4 * k <= 3 * p; }

bool TridiagonalTopEigenvalues(int64_t p, int64_t k, const double* d, const double* e,
                               bool bisection, double* lam, double* work) {
  if (bisection) {
    if (Avx2Available()) {
      BisectionAvx2(p, k, d, e, lam, work);
    } else {
      BisectionGeneric(p, k, d, e, lam, work);
    }
    // Ties may leave the middles out of order. (Sorted here, not in the AVX2 function: a call
    // from there to the generic sort returned with the upper halves of the vector registers
    // set, which slowed the scalar code after it by half.)
    std::sort(lam, lam + k, std::greater<double>());
    return true;
  }
  double* all = work;
  std::copy(d, d + p, all);
  std::copy(e, e + p, work + p);
  if (!TridiagonalEigenvalues(p, all, work + p)) return false;
  std::partial_sort(all, all + k, all + p, std::greater<double>());
  std::copy(all, all + k, lam);
  return true;
}

namespace {

// ------------------------------------------------------------------------------------------
// Eigenvectors by inverse iteration
// ------------------------------------------------------------------------------------------

// Pivoted LU factors of T − σ_t I for up to kLuLanes shifts at once, lane t of step i at
// [i * kLuLanes + t]: U's diagonal (then its reciprocals), its two superdiagonals, L's
// multipliers, and whether rows i and i + 1 were exchanged (1 or 0). The shifts' recurrences
// are independent chains with a division each per step; side by side they overlap.
constexpr int kLuLanes = 8;

struct ShiftedLu {
  double *u0, *u1, *u2, *l, *swap;  // p x kLuLanes each
};

// Factors of T − σ_t I for every lane t; pivots smaller than `tiny` are replaced by ±tiny.
// Branch-free: the pivoting pattern near an eigenvalue is data-dependent, and mispredicted
// branches had cost about as much as the arithmetic.
__attribute__((always_inline)) inline void FactorShiftedBody(int64_t p, const double* d,
                                                             const double* e, const double* sigma,
                                                             double tiny, const ShiftedLu& f) {
  constexpr int L = kLuLanes;
  double alpha[L], beta[L];  // the current row: alpha at column i, beta at column i + 1
  for (int t = 0; t < L; ++t) {
    alpha[t] = d[0] - sigma[t];
    beta[t] = p > 1 ? e[0] : 0;
  }
  for (int64_t i = 0; i + 1 < p; ++i) {
    const double c = e[i];  // T[i + 1][i]
    const double dn = d[i + 1];
    const double b_next = i + 2 < p ? e[i + 1] : 0;
#pragma omp simd
    for (int t = 0; t < L; ++t) {
      const double a_next = dn - sigma[t];
      const bool swap = std::abs(alpha[t]) < std::abs(c);
      // Without a swap the multiplier is c / α (0 where α = 0 = c), with one α / c.
      const double num = swap ? alpha[t] : c, den = swap ? c : alpha[t];
      const double mult = den != 0 ? num / den : 0;
      f.u0[i * L + t] = swap ? c : alpha[t];
      f.u1[i * L + t] = swap ? a_next : beta[t];
      f.u2[i * L + t] = swap ? b_next : 0;
      f.l[i * L + t] = mult;
      f.swap[i * L + t] = swap ? 1.0 : 0.0;
      const double next_alpha = swap ? beta[t] - mult * a_next : a_next - mult * beta[t];
      beta[t] = swap ? -mult * b_next : b_next;
      alpha[t] = next_alpha;
    }
  }
  for (int t = 0; t < L; ++t) {
    const int64_t at = (p - 1) * L + t;
    f.u0[at] = alpha[t];
    f.u1[at] = f.u2[at] = f.l[at] = f.swap[at] = 0;
  }
#pragma omp simd
  for (int64_t i = 0; i < p * L; ++i) {  // from here on u0 holds the pivots' reciprocals
    const double pivot = std::abs(f.u0[i]) < tiny ? std::copysign(tiny, f.u0[i]) : f.u0[i];
    f.u0[i] = 1.0 / pivot;
  }
}

// x <- (T − σ_t I)⁻¹ x for the kCount lanes t = first, first + 1, ..., whose vectors are the
// columns of x (p rows, ld apart): all lanes at once as a p x kLuLanes block, or one as a
// plain vector.
template <int kCount>
__attribute__((always_inline)) inline void SolveShiftedBody(int64_t p, const ShiftedLu& f,
                                                            int first, double* x, int64_t ld) {
  constexpr int L = kLuLanes;
  for (int64_t i = 0; i + 1 < p; ++i) {
#pragma omp simd
    for (int t = 0; t < kCount; ++t) {
      const int64_t at = i * L + first + t;
      const double here = x[i * ld + t], there = x[(i + 1) * ld + t];
      const bool swap = f.swap[at] != 0;
      const double pivot_row = swap ? there : here;
      x[i * ld + t] = pivot_row;
      x[(i + 1) * ld + t] = (swap ? here : there) - f.l[at] * pivot_row;
    }
  }
  for (int64_t i = p - 1; i >= 0; --i) {
#pragma omp simd
    for (int t = 0; t < kCount; ++t) {
      const int64_t at = i * L + first + t;
      const double next = i + 1 < p ? x[(i + 1) * ld + t] : 0;
      const double after = i + 2 < p ? x[(i + 2) * ld + t] : 0;
      x[i * ld + t] = (x[i * ld + t] - f.u1[at] * next - f.u2[at] * after) * f.u0[at];
    }
  }
}

RRAE_FAST_AVX2 void FactorShiftedAvx2(int64_t p, const double* d, const double* e,
                                      const double* sigma, double tiny, const ShiftedLu& f) {
  FactorShiftedBody(p, d, e, sigma, tiny, f);
}

void FactorShiftedGeneric(int64_t p, const double* d, const double* e, const double* sigma,
                          double tiny, const ShiftedLu& f) {
  FactorShiftedBody(p, d, e, sigma, tiny, f);
}

RRAE_FAST_AVX2 void SolveShiftedAvx2(int64_t p, const ShiftedLu& f, double* x) {
  SolveShiftedBody<kLuLanes>(p, f, 0, x, kLuLanes);
}

void SolveShiftedGeneric(int64_t p, const ShiftedLu& f, double* x) {
  SolveShiftedBody<kLuLanes>(p, f, 0, x, kLuLanes);
}

// x <- (T − σ_t I)⁻¹ x for lane t alone, x a plain vector of p entries.
void SolveShiftedLane(int64_t p, const ShiftedLu& f, int t, double* x) {
  SolveShiftedBody<1>(p, f, t, x, 1);
}

// ‖T x − λ x‖_∞.
double Residual(int64_t p, const double* d, const double* e, double lambda, const double* x) {
  double worst = 0;
  for (int64_t i = 0; i < p; ++i) {
    double r = (d[i] - lambda) * x[i];
    if (i > 0) r += e[i - 1] * x[i - 1];
    if (i + 1 < p) r += e[i] * x[i + 1];
    worst = std::max(worst, std::abs(r));
  }
  return worst;
}

}  // namespace

int64_t TopEigenvectorsWork(int64_t p) { return 6 * p * kLuLanes; }

bool TopEigenvectors(int64_t p, int64_t k, const double* d, const double* e, const double* lam,
                     double* x, double* worst, double* work) {
  double tnorm = 0;
  for (int64_t i = 0; i < p; ++i) {
    tnorm = std::max(tnorm, std::abs(d[i]) + std::abs(e[i]) + (i > 0 ? std::abs(e[i - 1]) : 0));
  }
  if (tnorm == 0) tnorm = 1;
  const double tiny = kEps * tnorm;
  const double cluster = 1e-3 * tnorm;        // closer eigenvalues: keep their vectors orthogonal
  const double separate = 10 * kEps * tnorm;  // shifts of one cluster at least this far apart
  const double accept = 1e3 * double(p) * kEps * tnorm;  // residual tolerance
  constexpr int L = kLuLanes;
  double* lu = work;
  const ShiftedLu f{lu, lu + p * L, lu + 2 * p * L, lu + 3 * p * L, lu + 4 * p * L};
  double* lanes = lu + 5 * p * L;  // p x L: the first solve of every lane at once
  const bool avx2 = Avx2Available();
  int64_t first = 0;  // the current cluster is lam[first .. j]
  double previous = 0;
  double sigma[L];
  int64_t cluster_first[L];
  for (int64_t j0 = 0; j0 < k; j0 += L) {
    const int n = static_cast<int>(std::min<int64_t>(L, k - j0));
    for (int t = 0; t < n; ++t) {  // the shifts, as one at a time would take them
      const int64_t j = j0 + t;
      if (j > 0 && lam[j - 1] - lam[j] > cluster) first = j;
      double shift = lam[j];
      if (j > first && shift > previous - separate) shift = previous - separate;
      previous = sigma[t] = shift;
      cluster_first[t] = first;
    }
    std::fill(sigma + n, sigma + L, sigma[n - 1]);  // lanes beyond the last repeat it
    if (avx2) {
      FactorShiftedAvx2(p, d, e, sigma, tiny, f);
    } else {
      FactorShiftedGeneric(p, d, e, sigma, tiny, f);
    }
    // Start vectors: one pseudo-random sequence per lane, the lanes' chains side by side.
    uint64_t state[L];
    for (int t = 0; t < L; ++t) {
      state[t] = 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(j0 + std::min(t, n - 1) + 1);
    }
    for (int64_t i = 0; i < p; ++i) {
      for (int t = 0; t < L; ++t) {
        state[t] = state[t] * 6364136223846793005ull + 1442695040888963407ull;
        lanes[i * L + t] = double(state[t] >> 11) * 0x1p-53 - 0.5;
      }
    }
    if (avx2) {
      SolveShiftedAvx2(p, f, lanes);
    } else {
      SolveShiftedGeneric(p, f, lanes);
    }
    for (int t = 0; t < n; ++t) {
      const int64_t j = j0 + t, from = cluster_first[t];
      double* xj = x + j * p;
      for (int64_t i = 0; i < p; ++i) xj[i] = lanes[i * L + t];
      bool accepted = false;
      for (int it = 0; it < 6 && !accepted; ++it) {
        if (it > 0) SolveShiftedLane(p, f, t, xj);  // the first solve is done
        if (!vec::Normalize(xj, p)) return false;
        if (j > from) {  // one pass per solve; the accepted vector gets a second one below
          vec::Project(x + from * p, j - from, xj, p);
          if (!vec::Normalize(xj, p)) return false;
        }
        const double residual = Residual(p, d, e, lam[j], xj);
        accepted = residual <= accept;
        if (accepted) *worst = std::max(*worst, residual);
      }
      if (!accepted) return false;
      if (j > from) {
        vec::Project(x + from * p, j - from, xj, p);
        if (!vec::Normalize(xj, p)) return false;
        *worst = std::max(*worst, Residual(p, d, e, lam[j], xj));
      }
    }
  }
  return true;
}

}  // namespace rrae_fast::cpu
