/* The compiled runtime's two native kernels (see native_kernels.py, which compiles this file
   once per machine and loads it with ctypes).

   norm_relu:       out = max(fma(x, alpha, beta), 0) per channel: eval BatchNorm + ReLU.
   pointwise_conv:  a 1x1 convolution as a matrix product, out = relu(norm(x)) W, with the
                    BatchNorm-ReLU before it applied while its input is packed and, if asked,
                    the next BatchNorm-ReLU applied to its output before it is stored; or,
                    for a DenseNet transition, the product of the 2x2 averages of relu(norm(x))
                    (the average pool taken before the convolution instead of after it).

   Both compute what PyTorch eager computes on the CPU for the same operations, to the bit:
   BatchNorm is one fmaf per value (PyTorch's eval-mode CPU kernel), the 2x2 average is
   PyTorch's avg_pool2d, and each output of the product is a chain of fused multiply-adds from
   zero in input-channel order, which is how oneDNN's 1x1 convolution sums
   (tests/test_patch_runtime.py compares them with PyTorch). Keeping the BatchNorm-ReLU inside
   the product saves two passes over memory per dense layer. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* The product's register tile: MR rows of output by NV vectors of VL floats. */
#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 vec;
enum { VL = 16, NV = 4, MR = 6 };
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VSET1(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VZERO() _mm512_setzero_ps()
/* max(0, v) returns v where both are zero or v is NaN: as `v < 0 ? 0 : v` (keeps -0, NaN) */
#define VRELU(v) _mm512_max_ps(_mm512_setzero_ps(), v)
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
typedef __m256 vec;
enum { VL = 8, NV = 2, MR = 6 };
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VSET1(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VZERO() _mm256_setzero_ps()
#define VRELU(v) _mm256_max_ps(_mm256_setzero_ps(), v)
#else
typedef float vec;
enum { VL = 1, NV = 4, MR = 4 };
#define VLOAD(p) (*(p))
#define VSTORE(p, v) (*(p) = (v))
#define VSET1(x) (x)
#define VFMA(a, b, c) fmaf(a, b, c)
#define VZERO() 0.0f
#define VRELU(v) ((v) < 0.0f ? 0.0f : (v))
#endif
/* NR: output channels per weight panel; KC x NR weights (32 KiB) stay in the L1 cache while
   MC rows, packed, stay in L2. */
enum { NR = VL * NV, KC = 128, MC = 96, PREFETCH_ROWS = 8, MAX_THREADS = 64 };
_Static_assert(MC % MR == 0, "a tile never reads past the packed rows");

static inline float relu(float v) { return v < 0.0f ? 0.0f : v; /* as PyTorch's clamp_min */ }

int panel_width(void) { return NR; }

/* Run `task(tasks + i * size)` for i < threads. With OpenMP (the usual build) the tasks run on
   the process's OpenMP team, which in a PyTorch process is PyTorch's own (the loader shares
   one libgomp.so.1): its threads are the ones already awake after each oneDNN call, so none
   is started and none spins against ours. Without it, threads - 1 threads are started here.
   Returns 0; -1 where a thread could not start (its task then ran here); -2 where a task
   failed (returned non-null). */
#ifdef _OPENMP
#include <omp.h>
static int run_tasks(void *(*task)(void *), char *tasks, size_t size, int threads)
{
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        /* the team may be smaller than asked: each thread takes every team-size-th task */
        for (int i = omp_get_thread_num(); i < threads; i += omp_get_num_threads())
            if (task(tasks + i * size)) failed = 1;
    }
    return failed ? -2 : 0;
}
#else
static int run_tasks(void *(*task)(void *), char *tasks, size_t size, int threads)
{
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0}, status = 0;
    for (int i = 1; i < threads; ++i)
        started[i] = pthread_create(&ids[i], 0, task, tasks + i * size) == 0;
    if (task(tasks)) status = -2;
    for (int i = 1; i < threads; ++i) {
        void *failed = 0;
        if (started[i]) pthread_join(ids[i], &failed);
        else { failed = task(tasks + i * size); if (!status) status = -1; }
        if (failed) status = -2;
    }
    return status;
}
#endif

static int clamp_threads(int threads)
{
    return threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
}

/* ---------------------------------------------------------------- BatchNorm + ReLU */
struct norm_task {
    const float *x; long stride; const float *alpha; const float *beta; float *out;
    long channels; long begin; long end;
};

static void *norm_relu_task(void *argument)
{
    const struct norm_task *t = argument;
    for (long r = t->begin; r < t->end; ++r) {
        const float *src = t->x + r * t->stride;
        float *dst = t->out + r * t->channels;
        for (long c = 0; c < t->channels; ++c) dst[c] = relu(fmaf(src[c], t->alpha[c], t->beta[c]));
    }
    return 0;
}

/* out[r * channels + c] = max(fmaf(x[r * stride + c], alpha[c], beta[c]), 0) for all rows,
   split over `threads` threads; returns run_tasks's status. */
int norm_relu(const float *x, long stride, const float *alpha, const float *beta, float *out,
              long channels, long rows, int threads)
{
    struct norm_task tasks[MAX_THREADS];
    threads = clamp_threads(threads);
    for (int i = 0; i < threads; ++i) {
        struct norm_task t = {x, stride, alpha, beta, out, channels,
                              rows * i / threads, rows * (i + 1) / threads};
        tasks[i] = t;
    }
    return run_tasks(norm_relu_task, (char *)tasks, sizeof tasks[0], threads);
}

/* ---------------------------------------------------------------- 1x1 convolution */
/* c[i][:NR] for i < rows: the product of MR packed rows `a` (row stride kc) with the weight
   panel `b` (kc rows of NR), added to what c holds unless `first`; at the last block of input
   channels, `alpha`/`beta` (NR each, or null) apply the next BatchNorm-ReLU before the store. */
static void tile(const float *a, long kc, const float *b, float *c, long ldc, int rows,
                 int first, const float *alpha, const float *beta)
{
    vec acc[MR][NV];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NV; ++j)
            acc[i][j] = (first || i >= rows) ? VZERO() : VLOAD(c + i * ldc + j * VL);
    for (long k = 0; k < kc; ++k) {
        vec w[NV];
        for (int j = 0; j < NV; ++j) w[j] = VLOAD(b + k * NR + j * VL);
        for (int i = 0; i < MR; ++i) {
            vec v = VSET1(a[i * kc + k]);
            for (int j = 0; j < NV; ++j) acc[i][j] = VFMA(v, w[j], acc[i][j]);
        }
    }
    for (int i = 0; i < rows; ++i)
        for (int j = 0; j < NV; ++j) {
            vec v = acc[i][j];
            if (alpha) v = VRELU(VFMA(v, VLOAD(alpha + j * VL), VLOAD(beta + j * VL)));
            VSTORE(c + i * ldc + j * VL, v);
        }
}

struct conv_task {
    const float *x; long ldx, channels; const float *alpha_in, *beta_in;
    const float *weight; long outputs; const float *alpha_out, *beta_out;
    float *out; long ldo, begin, end, height, width;
};

/* dst[:kc] = input row r's channels k0.. with the BatchNorm-ReLU applied (if any) */
static void pack_row(const struct conv_task *t, long r, long k0, long kc, float *dst)
{
    const float *src = t->x + r * t->ldx + k0;
    /* rows lie a feature map's channels apart (up to 4 KiB, a page): the hardware
       prefetcher does not follow them, so ask for a later row's block now */
    if (r + PREFETCH_ROWS < t->end)
        for (long k = 0; k < kc; k += 16) __builtin_prefetch(src + PREFETCH_ROWS * t->ldx + k);
    if (!t->alpha_in) { memcpy(dst, src, sizeof(float) * kc); return; }
    const float *alpha = t->alpha_in + k0, *beta = t->beta_in + k0;
    for (long k = 0; k < kc; ++k) dst[k] = relu(fmaf(src[k], alpha[k], beta[k]));
}

/* dst[:kc] = the 2x2 average of the BatchNorm-ReLU'd (if any) input pixels under output
   pixel r, whose maps are height/2 x width/2: summed from the window's first pixel in row
   order, then divided by 4, as PyTorch's CPU avg_pool2d does */
static void pack_pooled_row(const struct conv_task *t, long r, long k0, long kc, float *dst)
{
    long half = t->width / 2, per_map = (t->height / 2) * half;
    long map = r / per_map, y = r % per_map / half, x = r % half;
    const float *a = t->x + ((map * t->height + 2 * y) * t->width + 2 * x) * t->ldx + k0;
    const float *b = a + t->ldx, *c = a + t->width * t->ldx, *d = c + t->ldx;
    if (!t->alpha_in) {
        for (long k = 0; k < kc; ++k) dst[k] = (((a[k] + b[k]) + c[k]) + d[k]) / 4.0f;
        return;
    }
    const float *alpha = t->alpha_in + k0, *beta = t->beta_in + k0;
    for (long k = 0; k < kc; ++k)
        dst[k] = (((relu(fmaf(a[k], alpha[k], beta[k])) + relu(fmaf(b[k], alpha[k], beta[k])))
                   + relu(fmaf(c[k], alpha[k], beta[k]))) + relu(fmaf(d[k], alpha[k], beta[k])))
                 / 4.0f;
}

static void *pointwise_conv_task(void *argument)
{
    const struct conv_task *t = argument;
    /* zeroed: a last tile of fewer than MR rows reads (and discards) the rows after them */
    float *packed = calloc((size_t)MC * KC, sizeof(float));
    if (!packed) return (void *)1;
    for (long m0 = t->begin; m0 < t->end; m0 += MC) {
        long mc = t->end - m0 < MC ? t->end - m0 : MC;
        for (long k0 = 0; k0 < t->channels; k0 += KC) {
            long kc = t->channels - k0 < KC ? t->channels - k0 : KC;
            int first = k0 == 0, last = k0 + kc == t->channels;
            for (long i = 0; i < mc; ++i)  /* rows mc x kc */
                (t->width ? pack_pooled_row : pack_row)(t, m0 + i, k0, kc, packed + i * kc);
            for (long n0 = 0; n0 < t->outputs; n0 += NR) {
                const float *panel = t->weight + n0 * t->channels + k0 * NR;
                const float *alpha = last && t->alpha_out ? t->alpha_out + n0 : 0;
                const float *beta = alpha ? t->beta_out + n0 : 0;
                for (long i0 = 0; i0 < mc; i0 += MR)
                    tile(packed + i0 * kc, kc, panel, t->out + (m0 + i0) * t->ldo + n0, t->ldo,
                         mc - i0 < MR ? (int)(mc - i0) : MR, first, alpha, beta);
            }
        }
    }
    free(packed);
    return 0;
}

/* out[r * ldo + n] for r < rows, n < outputs: sum over k < channels, in order, of
   relu(fmaf(x[r * ldx + k], alpha_in[k], beta_in[k])) * W[k][n] (no BatchNorm-ReLU where
   alpha_in is null), then relu(fmaf(., alpha_out[n], beta_out[n])) unless alpha_out is null.
   With width > 0, x's rows are the pixels of maps height x width (both even) and the product
   is taken of their 2x2 averages instead: `rows` output rows of maps height/2 x width/2.
   `weight` holds W in panels (pack_weight's layout: outputs / NR panels of channels x NR).
   Returns -3 if outputs is not a multiple of NR, channels < 1 or a map side is odd, else
   run_tasks's status. */
int pointwise_conv(const float *x, long ldx, long channels, const float *alpha_in,
                   const float *beta_in, const float *weight, long outputs,
                   const float *alpha_out, const float *beta_out, float *out, long ldo,
                   long rows, long height, long width, int threads)
{
    struct conv_task tasks[MAX_THREADS];
    if (outputs % NR || channels < 1 || height % 2 || width % 2 || (width > 0) != (height > 0))
        return -3;
    threads = clamp_threads(threads);
    for (int i = 0; i < threads; ++i) {
        struct conv_task t = {x, ldx, channels, alpha_in, beta_in, weight, outputs, alpha_out,
                              beta_out, out, ldo, rows * i / threads, rows * (i + 1) / threads,
                              height, width};
        tasks[i] = t;
    }
    return run_tasks(pointwise_conv_task, (char *)tasks, sizeof tasks[0], threads);
}
