/*
 * Winograd F(2x2, 3x3) convolution (VALID, or with implicit zero padding) + bias + LeakyReLU for
 * NHWC float32, AVX-512.
 *
 * The compiled counterpart of winograd.py's conv3x3_leaky (see that module for the algorithm
 * and for why it is written by hand). Each band of TILES 2x2 output tiles goes through the
 * input transform, 16 register-blocked matrix products and the output transform while it is
 * in the core's cache, so the transformed tiles never travel to memory; the products are an
 * MR x NR micro-kernel (6 rows x 64 output channels, 24 accumulators in zmm registers). Bands
 * are handed out to `threads` threads (../../_kernel_threads.h) from an atomic counter.
 *
 * Only the kernel's functions are compiled for AVX-512F (the AVX512 attribute); the module's
 * entry points are baseline x86-64, so importing it is safe on any CPU, and conv3x3_leaky
 * refuses to run where cpu_supported() is false. It is built by setup.py as an optional
 * extension: where it is missing, winograd.py runs its PyTorch code instead.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../../_kernel_threads.h"

#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MR 6          /* tiles per micro-kernel call */
#define NR 64         /* output channels per micro-kernel call: 4 zmm */
#ifndef TILES
#define TILES 48 /* tiles per band, a multiple of MR */
#endif
#define AVX512 __attribute__((target("avx512f,fma")))

typedef struct {
    const float *x, *u, *bias;
    float *y;
    long n, h, w, c, k, pad, oh, ow, th, tw, ntiles, nbands; /* h, w: the input's, unpadded */
    float slope;
    int leaky;
    long next; /* the next band to hand out (atomic) */
} job_t;

/* V[16][TILES][C] for tiles t0 .. t0 + rows - 1 (those past the end are zero). Tile rows and
   columns start at -pad in the input; whatever lies outside it reads as zero. */
AVX512 static void input_transform(const job_t *j, long t0, long rows, float *v) {
    const long C = j->c, per_img = j->th * j->tw;
    const __m512 zero = _mm512_setzero_ps();
    for (long i = 0; i < rows; i++) {
        long t = t0 + i;
        float *vi = v + i * C;
        if (t >= j->ntiles) {
            for (int e = 0; e < 16; e++) memset(vi + (long)e * TILES * C, 0, (size_t)C * sizeof(float));
            continue;
        }
        long img = t / per_img, r = t % per_img;
        long y0 = 2 * (r / j->tw) - j->pad, x0 = 2 * (r % j->tw) - j->pad;
        int inside = y0 >= 0 && x0 >= 0 && y0 + 4 <= j->h && x0 + 4 <= j->w;
        const float *img_x = j->x + img * j->h * j->w * C;
        int valid[4][4]; /* which of the 4 x 4 inputs lie inside the image */
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++)
                valid[a][b] = inside || (y0 + a >= 0 && y0 + a < j->h && x0 + b >= 0 && x0 + b < j->w);
        for (long cb = 0; cb < C; cb += 16) {
            __m512 d[4][4];
            if (inside) { /* the common case: no test per load */
                const float *base = img_x + (y0 * j->w + x0) * C + cb;
                for (int a = 0; a < 4; a++)
                    for (int b = 0; b < 4; b++) d[a][b] = _mm512_loadu_ps(base + (a * j->w + b) * C);
            } else {
                for (int a = 0; a < 4; a++)
                    for (int b = 0; b < 4; b++)
                        d[a][b] = valid[a][b] ? _mm512_loadu_ps(img_x + ((y0 + a) * j->w + x0 + b) * C + cb) : zero;
            }
            __m512 s[4][4];
            for (int b = 0; b < 4; b++) { /* B^T d: along the rows */
                s[0][b] = _mm512_sub_ps(d[0][b], d[2][b]);
                s[1][b] = _mm512_add_ps(d[1][b], d[2][b]);
                s[2][b] = _mm512_sub_ps(d[2][b], d[1][b]);
                s[3][b] = _mm512_sub_ps(d[1][b], d[3][b]);
            }
            for (int a = 0; a < 4; a++) { /* (B^T d) B: along the columns */
                float *o = vi + (long)(4 * a) * TILES * C + cb;
                _mm512_storeu_ps(o, _mm512_sub_ps(s[a][0], s[a][2]));
                _mm512_storeu_ps(o + TILES * C, _mm512_add_ps(s[a][1], s[a][2]));
                _mm512_storeu_ps(o + 2 * TILES * C, _mm512_sub_ps(s[a][2], s[a][1]));
                _mm512_storeu_ps(o + 3 * TILES * C, _mm512_sub_ps(s[a][1], s[a][3]));
            }
        }
    }
}

/* m[MR][NR] = a[MR][C] (row stride lda) @ b[C][NR] (row stride ldb); m has row stride NR. */
AVX512 static inline __attribute__((always_inline)) void micro_kernel(const float *a, long lda, const float *b,
                                                                      long ldb, long C, float *m) {
    __m512 acc[MR][4];
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < 4; q++) acc[r][q] = _mm512_setzero_ps();
    for (long p = 0; p < C; p++) {
        const float *bp = b + p * ldb;
        __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
        __m512 b2 = _mm512_loadu_ps(bp + 32), b3 = _mm512_loadu_ps(bp + 48);
        for (int r = 0; r < MR; r++) {
            __m512 ar = _mm512_set1_ps(a[r * lda + p]);
            acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(ar, b2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_ps(ar, b3, acc[r][3]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < 4; q++) _mm512_storeu_ps(m + r * NR + q * 16, acc[r][q]);
}

/* Output channels kb .. kb + NR - 1 of tiles t0 .. t0 + count - 1 from M[16][TILES][NR]. */
AVX512 static void output_transform(const job_t *j, long t0, long count, long kb, const float *m) {
    const long K = j->k, per_img = j->th * j->tw;
    const __m512 slope = _mm512_set1_ps(j->slope), zero = _mm512_setzero_ps();
    for (long i = 0; i < count; i++) {
        long t = t0 + i, img = t / per_img, r = t % per_img;
        long oy = 2 * (r / j->tw), ox = 2 * (r % j->tw);
        int rows = oy + 1 < j->oh ? 2 : 1, cols = ox + 1 < j->ow ? 2 : 1;
        float *out = j->y + ((img * j->oh + oy) * j->ow + ox) * K + kb;
        for (long q = 0; q < NR; q += 16) {
            const float *mi = m + i * NR + q;
            __m512 e[4][4];
            for (int a = 0; a < 4; a++)
                for (int b = 0; b < 4; b++) e[a][b] = _mm512_loadu_ps(mi + (long)(4 * a + b) * TILES * NR);
            __m512 s[2][4];
            for (int b = 0; b < 4; b++) { /* A^T M */
                s[0][b] = _mm512_add_ps(_mm512_add_ps(e[0][b], e[1][b]), e[2][b]);
                s[1][b] = _mm512_sub_ps(_mm512_sub_ps(e[1][b], e[2][b]), e[3][b]);
            }
            __m512 bias = j->bias ? _mm512_loadu_ps(j->bias + kb + q) : zero;
            for (int p = 0; p < rows; p++) { /* (A^T M) A, bias, LeakyReLU */
                __m512 o[2];
                o[0] = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s[p][0], s[p][1]), s[p][2]), bias);
                o[1] = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s[p][1], s[p][2]), s[p][3]), bias);
                for (int c = 0; c < cols; c++) {
                    __m512 v = o[c];
                    if (j->leaky) v = _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), v, slope);
                    _mm512_storeu_ps(out + (p * j->ow + c) * K + q, v);
                }
            }
        }
    }
}

AVX512 static void *worker(void *arg) {
    job_t *j = (job_t *)arg;
    const long C = j->c, K = j->k;
    float *v = aligned_alloc(64, sizeof(float) * 16 * TILES * C);
    float *m = aligned_alloc(64, sizeof(float) * 16 * TILES * NR);
    if (!v || !m) { /* the other threads take this one's bands */
        free(v);
        free(m);
        return NULL;
    }
    long band;
    while ((band = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED)) < j->nbands) {
        long t0 = band * TILES, count = j->ntiles - t0 < TILES ? j->ntiles - t0 : TILES;
        long rows = (count + MR - 1) / MR * MR;
        input_transform(j, t0, rows, v);
        for (long kb = 0; kb < K; kb += NR) {
            for (int e = 0; e < 16; e++) {
                const float *ve = v + (long)e * TILES * C, *ue = j->u + (long)e * C * K + kb;
                float *me = m + (long)e * TILES * NR;
                for (long r0 = 0; r0 < rows; r0 += MR) micro_kernel(ve + r0 * C, C, ue, K, C, me + r0 * NR);
            }
            output_transform(j, t0, count, kb, m);
        }
    }
    free(v);
    free(m);
    return NULL;
}

static int cpu_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
}

static PyObject *py_cpu_supported(PyObject *self, PyObject *args) {
    (void)self, (void)args;
    return PyBool_FromLong(cpu_supported());
}

/* conv3x3_leaky(x, u, bias, y, n, h, w, c, k, pad, slope, leaky, threads): addresses as integers. */
static PyObject *py_conv3x3_leaky(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long x, u, bias, y;
    long n, h, w, c, k, pad, threads;
    double slope;
    int leaky;
    if (!PyArg_ParseTuple(args, "KKKKlllllldpl", &x, &u, &bias, &y, &n, &h, &w, &c, &k, &pad, &slope, &leaky,
                          &threads))
        return NULL;
    if (!cpu_supported()) {
        PyErr_SetString(PyExc_RuntimeError, "conv3x3_leaky: this CPU has no AVX-512F");
        return NULL;
    }
    if (n < 1 || pad < 0 || pad > 2 || h < 1 || w < 1 || h + 2 * pad < 3 || w + 2 * pad < 3 || c < 16 || c % 16 ||
        k < NR || k % NR || threads < 1) {
        PyErr_Format(PyExc_ValueError,
                     "conv3x3_leaky: expected n >= 1, 0 <= pad <= 2, h, w >= 1 and h + 2 pad, w + 2 pad >= 3, "
                     "C_in a multiple of 16, C_out a multiple of %d and threads >= 1; "
                     "got n=%ld h=%ld w=%ld pad=%ld C_in=%ld C_out=%ld threads=%ld",
                     NR, n, h, w, pad, c, k, threads);
        return NULL;
    }
    if (!x || !u || !y) {
        PyErr_SetString(PyExc_ValueError, "conv3x3_leaky: null data address");
        return NULL;
    }
    job_t j = {0};
    j.x = (const float *)(uintptr_t)x;
    j.u = (const float *)(uintptr_t)u;
    j.bias = bias ? (const float *)(uintptr_t)bias : NULL;
    j.y = (float *)(uintptr_t)y;
    j.n = n, j.h = h, j.w = w, j.c = c, j.k = k, j.pad = pad;
    j.oh = h + 2 * pad - 2, j.ow = w + 2 * pad - 2, j.th = (j.oh + 1) / 2, j.tw = (j.ow + 1) / 2;
    j.ntiles = n * j.th * j.tw;
    j.nbands = (j.ntiles + TILES - 1) / TILES;
    j.slope = (float)slope;
    j.leaky = leaky;
    Py_BEGIN_ALLOW_THREADS;
    run_workers(worker, &j, threads, j.nbands);
    Py_END_ALLOW_THREADS;
    if (j.next < j.nbands) return PyErr_NoMemory(); /* no thread got its buffers */
    Py_RETURN_NONE;
}

static PyObject *py_tiles_per_band(PyObject *self, PyObject *args) {
    (void)self, (void)args;
    return PyLong_FromLong(TILES);
}

static PyMethodDef methods[] = {
    {"conv3x3_leaky", py_conv3x3_leaky, METH_VARARGS,
     "conv3x3_leaky(x, u, bias, y, n, h, w, c, k, pad, slope, leaky, threads): NHWC float32 Winograd F(2x2, 3x3) "
     "convolution (zero padding pad on every side), bias and LeakyReLU on raw data addresses (see winograd.py)."},
    {"cpu_supported", py_cpu_supported, METH_NOARGS, "cpu_supported(): whether this CPU has AVX-512F and FMA."},
    {"tiles_per_band", py_tiles_per_band, METH_NOARGS, "tiles_per_band(): the 2x2 output tiles per band."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_winograd_avx512",
    .m_doc = "AVX-512 Winograd F(2x2, 3x3) convolution kernel (see winograd.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__winograd_avx512(void) { return PyModule_Create(&module); }
