/*
 * Wavelet shrinkage of float32 planes with a 2-tap wavelet (db1/Haar and the like), soft mode.
 *
 * The compiled counterpart of engine.denoise_planes driven by haar.HaarKernel, for inference
 * (no autograd), on the CPU. Each plane goes through all its levels while it is in the core's
 * cache: analysis levels (the 4 x 4 matrix on 2 x 2 blocks, odd sizes extended by replication),
 * the band mean squares for BayesShrink, the soft thresholds, and the synthesis levels back,
 * the last one written straight into the output. The PyTorch code does the same level by level
 * over a block of planes, each step a pass of its own; see haar.py and engine.py for the
 * algorithm and shrink.py for the rules. Plain C (no intrinsics): built for any platform with a
 * C compiler, as an optional extension; where it is missing the PyTorch code runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../../_kernel_threads.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define MAX_LEVELS 32

typedef struct {
    const float *x;
    float *y;
    const float *sigma, *scale; /* (B,), scale NULL for none */
    long b, h, w, levels;
    float ana[16], syn[16];
    int visu;
    long next; /* the next plane to hand out (atomic) */
    int failed;
} job_t;

/* Soft threshold, d - clamp(d, -t, t), written as min/max patterns the vectoriser takes. */
static inline float soft(float d, float t) {
    float c = d < t ? d : t;
    c = c > -t ? c : -t;
    return d - c;
}

/* One analysis row: source rows r0, r1 (r1 == r0 past an odd last row) -> band rows o0..o3.
   Returns the row's sums of squares of the three detail bands in s[0..2]. */
static inline void analyze_row(const float *A, const float *r0, const float *r1, long curw, long nw, float *o0,
                               float *o1, float *o2, float *o3, float *s) {
    float t1 = 0, t2 = 0, t3 = 0;
    long full = curw / 2; /* whole 2-column pairs; an odd last column is replicated */
    for (long q = 0; q < full; q++) {
        float p0 = r0[2 * q], p1 = r0[2 * q + 1], p2 = r1[2 * q], p3 = r1[2 * q + 1];
        float v0 = A[0] * p0 + A[1] * p1 + A[2] * p2 + A[3] * p3;
        float v1 = A[4] * p0 + A[5] * p1 + A[6] * p2 + A[7] * p3;
        float v2 = A[8] * p0 + A[9] * p1 + A[10] * p2 + A[11] * p3;
        float v3 = A[12] * p0 + A[13] * p1 + A[14] * p2 + A[15] * p3;
        o0[q] = v0, o1[q] = v1, o2[q] = v2, o3[q] = v3;
        t1 += v1 * v1, t2 += v2 * v2, t3 += v3 * v3;
    }
    if (full < nw) {
        float p0 = r0[2 * full], p1 = p0, p2 = r1[2 * full], p3 = p2;
        float v1 = A[4] * p0 + A[5] * p1 + A[6] * p2 + A[7] * p3;
        float v2 = A[8] * p0 + A[9] * p1 + A[10] * p2 + A[11] * p3;
        float v3 = A[12] * p0 + A[13] * p1 + A[14] * p2 + A[15] * p3;
        o0[full] = A[0] * p0 + A[1] * p1 + A[2] * p2 + A[3] * p3, o1[full] = v1, o2[full] = v2, o3[full] = v3;
        t1 += v1 * v1, t2 += v2 * v2, t3 += v3 * v3;
    }
    s[0] = t1, s[1] = t2, s[2] = t3;
}

/* One synthesis row: approximation row a and detail rows d1..d3 (thresholded by t) -> output
   rows y0 and, when y1 is not NULL, y1, of width dw (2 nw, or 2 nw - 1 at an odd edge). */
static inline void synthesize_row(const float *S, const float *t, const float *a, const float *d1,
                                  const float *d2, const float *d3, long nw, long dw, float *y0, float *y1) {
    long full = dw / 2;
    for (long q = 0; q < full; q++) {
        float e0 = a[q], e1 = soft(d1[q], t[0]), e2 = soft(d2[q], t[1]), e3 = soft(d3[q], t[2]);
        y0[2 * q] = S[0] * e0 + S[1] * e1 + S[2] * e2 + S[3] * e3;
        y0[2 * q + 1] = S[4] * e0 + S[5] * e1 + S[6] * e2 + S[7] * e3;
        if (y1) { /* the same branch for the whole row */
            y1[2 * q] = S[8] * e0 + S[9] * e1 + S[10] * e2 + S[11] * e3;
            y1[2 * q + 1] = S[12] * e0 + S[13] * e1 + S[14] * e2 + S[15] * e3;
        }
    }
    if (full < nw) { /* the last, odd column */
        float e0 = a[full], e1 = soft(d1[full], t[0]), e2 = soft(d2[full], t[1]), e3 = soft(d3[full], t[2]);
        y0[2 * full] = S[0] * e0 + S[1] * e1 + S[2] * e2 + S[3] * e3;
        if (y1) y1[2 * full] = S[8] * e0 + S[9] * e1 + S[10] * e2 + S[11] * e3;
    }
}

/* One plane: x (h, w) -> y (h, w). coef holds every level's four bands, rec0/rec1 the
   reconstructions of the levels between (alternately). */
static void plane(const job_t *j, long p, float *coef, float *rec0, float *rec1) {
    const float *src = j->x + p * j->h * j->w;
    float *out = j->y + p * j->h * j->w;
    long ch[MAX_LEVELS], cw[MAX_LEVELS];
    float *band[MAX_LEVELS];
    double sq[MAX_LEVELS][3];
    long stride = j->w, curh = j->h, curw = j->w;
    float *c = coef;
    for (long l = 0; l < j->levels; l++) { /* analysis */
        long nh = (curh + 1) / 2, nw = (curw + 1) / 2, n = nh * nw;
        ch[l] = nh, cw[l] = nw, band[l] = c;
        double s1 = 0, s2 = 0, s3 = 0;
        for (long i = 0; i < nh; i++) {
            const float *r0 = src + 2 * i * stride;
            const float *r1 = 2 * i + 1 < curh ? r0 + stride : r0;
            float rs[3];
            analyze_row(j->ana, r0, r1, curw, nw, c + i * nw, c + n + i * nw, c + 2 * n + i * nw,
                        c + 3 * n + i * nw, rs);
            s1 += rs[0], s2 += rs[1], s3 += rs[2];
        }
        sq[l][0] = s1, sq[l][1] = s2, sq[l][2] = s3;
        src = c, stride = nw, curh = nh, curw = nw;
        c += 4 * n;
    }
    const double sig = j->sigma[p], var = sig * sig;
    const double unit = j->scale ? j->scale[p] : 1.0;
    const double inv2 = j->scale ? (unit == 0 ? 0.0 : 1.0 / (unit * unit)) : 1.0;
    const double visu = sig * sqrt(2.0 * log((double)(j->h * j->w))) * unit;
    const float *approx = NULL;
    long astride = 0;
    float *recs[2] = {rec0, rec1};
    for (long l = j->levels - 1; l >= 0; l--) { /* thresholds and synthesis */
        long nh = ch[l], nw = cw[l], n = nh * nw;
        float t[3];
        for (int k = 0; k < 3; k++) {
            if (j->visu) {
                t[k] = (float)visu;
            } else { /* BayesShrink, in units of the [0, 1]-rescaled plane, scaled back */
                double dvar = sq[l][k] / (double)n * inv2, d = dvar - var;
                t[k] = (float)(var / sqrt(d > FLT_EPSILON ? d : FLT_EPSILON) * unit);
            }
        }
        const float *a = approx ? approx : band[l];
        long as = approx ? astride : nw;
        int last = l == 0;
        float *dst = last ? out : recs[l % 2];
        long dh = last ? j->h : 2 * nh, dw = last ? j->w : 2 * nw;
        for (long i = 0; i < nh; i++) {
            float *y0 = dst + 2 * i * dw;
            float *y1 = 2 * i + 1 < dh ? y0 + dw : NULL;
            const float *d1 = band[l] + n + i * nw;
            synthesize_row(j->syn, t, a + i * as, d1, d1 + n, d1 + 2 * n, nw, dw, y0, y1);
        }
        approx = dst, astride = dw;
    }
}

static void *worker(void *arg) {
    job_t *j = (job_t *)arg;
    long h1 = j->h + 1, w1 = j->w + 1;
    /* every level's bands: 4 ceil(h/2) ceil(w/2) + 4 ceil(h/4) ceil(w/4) + ... < (4/3) (h+1) (w+1) + 4 levels */
    size_t ncoef = (size_t)(h1 * w1) * 4 / 3 + 64 * (size_t)(h1 + w1) + 64;
    float *coef = malloc(sizeof(float) * ncoef);
    float *rec0 = malloc(sizeof(float) * (size_t)(h1 * w1));
    float *rec1 = malloc(sizeof(float) * (size_t)(h1 * w1));
    if (!coef || !rec0 || !rec1) {
        free(coef), free(rec0), free(rec1);
        __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    long p;
    while ((p = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED)) < j->b) plane(j, p, coef, rec0, rec1);
    free(coef), free(rec0), free(rec1);
    return NULL;
}

/* denoise(x, y, sigma, scale, b, h, w, levels, ana, syn, visu, threads): addresses as integers,
   ana and syn as sequences of 16 floats (row-major 4 x 4). */
static PyObject *py_denoise(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long x, y, sigma, scale;
    long b, h, w, levels, threads;
    PyObject *ana, *syn;
    int visu;
    if (!PyArg_ParseTuple(args, "KKKKllllOOpl", &x, &y, &sigma, &scale, &b, &h, &w, &levels, &ana, &syn, &visu,
                          &threads))
        return NULL;
    if (b < 0 || h < 1 || w < 1 || levels < 1 || levels > MAX_LEVELS || threads < 1) {
        PyErr_Format(PyExc_ValueError,
                     "denoise: expected b >= 0, h, w >= 1, 1 <= levels <= %d and threads >= 1; "
                     "got b=%ld h=%ld w=%ld levels=%ld threads=%ld",
                     MAX_LEVELS, b, h, w, levels, threads);
        return NULL;
    }
    if ((b && (!x || !y || !sigma))) {
        PyErr_SetString(PyExc_ValueError, "denoise: null data address");
        return NULL;
    }
    job_t j = {0};
    PyObject *mats[2] = {ana, syn};
    float *dst[2] = {j.ana, j.syn};
    for (int m = 0; m < 2; m++) {
        PyObject *seq = PySequence_Fast(mats[m], "denoise: ana and syn must be sequences of 16 floats");
        if (!seq) return NULL;
        if (PySequence_Fast_GET_SIZE(seq) != 16) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "denoise: ana and syn must be sequences of 16 floats");
            return NULL;
        }
        for (int i = 0; i < 16; i++) {
            double v = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
            if (v == -1.0 && PyErr_Occurred()) {
                Py_DECREF(seq);
                return NULL;
            }
            dst[m][i] = (float)v;
        }
        Py_DECREF(seq);
    }
    j.x = (const float *)(uintptr_t)x;
    j.y = (float *)(uintptr_t)y;
    j.sigma = (const float *)(uintptr_t)sigma;
    j.scale = scale ? (const float *)(uintptr_t)scale : NULL;
    j.b = b, j.h = h, j.w = w, j.levels = levels, j.visu = visu;
    Py_BEGIN_ALLOW_THREADS;
    run_workers(worker, &j, threads, j.b);
    Py_END_ALLOW_THREADS;
    if (j.next < j.b) return PyErr_NoMemory(); /* no thread got its buffers */
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"denoise", py_denoise, METH_VARARGS,
     "denoise(x, y, sigma, scale, b, h, w, levels, ana, syn, visu, threads): soft wavelet shrinkage of b float32 "
     "planes (h, w) with a 2-tap wavelet's 4 x 4 analysis and synthesis matrices (see haar.py)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_haar_native",
    .m_doc = "Wavelet shrinkage of float32 planes with a 2-tap wavelet (see engine.py and haar.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__haar_native(void) { return PyModule_Create(&module); }
