/*
 * Winograd F(2x2, 3x3) convolution (VALID, or with implicit zero padding) + bias + LeakyReLU for
 * NHWC float32: compiled kernels for AVX-512 and for AVX2.
 *
 * The compiled counterpart of winograd.py's conv3x3_leaky (see that module for the algorithm
 * and for why it is written by hand). The kernel is written once, in _winograd_kernel.h, and
 * compiled here for each instruction set:
 *
 *   avx512  AVX-512F + FMA: 6 tiles x 64 output channels per micro-kernel (24 of 32 zmm)
 *   avx2    AVX2 + FMA:     6 tiles x 16 output channels per micro-kernel (12 of 16 ymm)
 *
 * Both give the same bits (see the template). Only the kernel's functions are compiled for
 * their instruction set (a target attribute); the module's entry points are baseline x86-64,
 * so importing it is safe on any CPU, and conv3x3_leaky refuses an instruction set that
 * cpu_isas() does not list. It is built by setup.py as an optional extension: where it is
 * missing, winograd.py runs its PyTorch code instead.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../../_kernel_threads.h"

#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const float *x, *u, *bias;
    float *y;
    long n, h, w, c, k, pad, oh, ow, th, tw, ntiles, nbands; /* h, w: the input's, unpadded */
    float slope;
    int leaky;
    long next; /* the next band to hand out (atomic) */
} job_t;

#ifndef AVX512_TILES /* tiles per band, multiples of their MR (-D for tuning runs) */
#define AVX512_TILES 48
#endif
#ifndef AVX2_TILES
#define AVX2_TILES 48
#endif

/* ---- AVX-512F ---- */
#define ISA avx512
#define TARGET __attribute__((target("avx512f,fma")))
#define VEC __m512
#define VW 16
#define MR 6
#define NB 4
#define TILES AVX512_TILES
#define V_LOAD _mm512_loadu_ps
#define V_STORE _mm512_storeu_ps
#define V_ADD _mm512_add_ps
#define V_SUB _mm512_sub_ps
#define V_FMA _mm512_fmadd_ps
#define V_SET1 _mm512_set1_ps
#define V_ZERO _mm512_setzero_ps
#define V_LEAKY(v, slope, zero) _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), v, slope)
#include "_winograd_kernel.h" /* undefines the parameters above */

/* ---- AVX2 ---- */
#define ISA avx2
#define TARGET __attribute__((target("avx2,fma")))
#define VEC __m256
#define VW 8
#define MR 6
#define NB 2
#define TILES AVX2_TILES
#define V_LOAD _mm256_loadu_ps
#define V_STORE _mm256_storeu_ps
#define V_ADD _mm256_add_ps
#define V_SUB _mm256_sub_ps
#define V_FMA _mm256_fmadd_ps
#define V_SET1 _mm256_set1_ps
#define V_ZERO _mm256_setzero_ps
#define V_LEAKY(v, slope, zero) _mm256_blendv_ps(v, _mm256_mul_ps(v, slope), _mm256_cmp_ps(v, zero, _CMP_LT_OQ))
#include "_winograd_kernel.h" /* undefines the parameters above */

static int cpu_runs_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
}

static int cpu_runs_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

typedef struct {
    const char *name, *needs; /* needs: the CPU features, for the error message */
    int (*cpu_runs)(void);    /* whether this CPU has them (cpuid) */
    kernel_worker worker;
    long c_multiple, k_multiple, tiles; /* input channels in multiples of one vector, outputs of NR */
} isa_t;

/* fastest first */
static const isa_t ISAS[] = {
    {"avx512", "AVX-512F and FMA", cpu_runs_avx512, worker_avx512, 16, 64, AVX512_TILES},
    {"avx2", "AVX2 and FMA", cpu_runs_avx2, worker_avx2, 8, 16, AVX2_TILES},
};
#define N_ISAS ((long)(sizeof(ISAS) / sizeof(ISAS[0])))

/* The entry of `name`, or NULL with ValueError set. */
static const isa_t *find_isa(const char *name) {
    for (long i = 0; i < N_ISAS; i++)
        if (strcmp(ISAS[i].name, name) == 0) return &ISAS[i];
    PyErr_Format(PyExc_ValueError, "isa: expected 'avx512' or 'avx2', got '%s'", name);
    return NULL;
}

static PyObject *py_cpu_isas(PyObject *self, PyObject *args) {
    (void)self, (void)args;
    PyObject *names = PyList_New(0);
    if (!names) return NULL;
    for (long i = 0; i < N_ISAS; i++) {
        if (!ISAS[i].cpu_runs()) continue;
        PyObject *s = PyUnicode_FromString(ISAS[i].name);
        if (!s || PyList_Append(names, s) < 0) {
            Py_XDECREF(s);
            Py_DECREF(names);
            return NULL;
        }
        Py_DECREF(s);
    }
    PyObject *out = PyList_AsTuple(names);
    Py_DECREF(names);
    return out;
}

static PyObject *py_channel_multiples(PyObject *self, PyObject *args) {
    (void)self;
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    const isa_t *isa = find_isa(name);
    if (!isa) return NULL;
    return Py_BuildValue("(ll)", isa->c_multiple, isa->k_multiple);
}

static PyObject *py_tiles_per_band(PyObject *self, PyObject *args) {
    (void)self;
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    const isa_t *isa = find_isa(name);
    if (!isa) return NULL;
    return PyLong_FromLong(isa->tiles);
}

/* conv3x3_leaky(x, u, bias, y, n, h, w, c, k, pad, slope, leaky, threads, isa): addresses as integers. */
static PyObject *py_conv3x3_leaky(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long x, u, bias, y;
    long n, h, w, c, k, pad, threads;
    double slope;
    int leaky;
    const char *name;
    if (!PyArg_ParseTuple(args, "KKKKlllllldpls", &x, &u, &bias, &y, &n, &h, &w, &c, &k, &pad, &slope, &leaky,
                          &threads, &name))
        return NULL;
    const isa_t *isa = find_isa(name);
    if (!isa) return NULL;
    if (!isa->cpu_runs()) {
        PyErr_Format(PyExc_RuntimeError, "conv3x3_leaky: isa '%s' needs %s, which this CPU lacks", isa->name,
                     isa->needs);
        return NULL;
    }
    if (n < 1 || pad < 0 || pad > 2 || h < 1 || w < 1 || h + 2 * pad < 3 || w + 2 * pad < 3 ||
        c < isa->c_multiple || c % isa->c_multiple || k < isa->k_multiple || k % isa->k_multiple || threads < 1) {
        PyErr_Format(PyExc_ValueError,
                     "conv3x3_leaky (%s): expected n >= 1, 0 <= pad <= 2, h, w >= 1 and h + 2 pad, w + 2 pad >= 3, "
                     "C_in a multiple of %ld, C_out a multiple of %ld and threads >= 1; "
                     "got n=%ld h=%ld w=%ld pad=%ld C_in=%ld C_out=%ld threads=%ld",
                     isa->name, isa->c_multiple, isa->k_multiple, n, h, w, pad, c, k, threads);
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
    j.nbands = (j.ntiles + isa->tiles - 1) / isa->tiles;
    j.slope = (float)slope;
    j.leaky = leaky;
    Py_BEGIN_ALLOW_THREADS;
    run_workers(isa->worker, &j, threads, j.nbands);
    Py_END_ALLOW_THREADS;
    if (j.next < j.nbands) return PyErr_NoMemory(); /* no thread got its buffers */
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"conv3x3_leaky", py_conv3x3_leaky, METH_VARARGS,
     "conv3x3_leaky(x, u, bias, y, n, h, w, c, k, pad, slope, leaky, threads, isa): NHWC float32 Winograd "
     "F(2x2, 3x3) convolution (zero padding pad on every side), bias and LeakyReLU on raw data addresses, "
     "by the kernel compiled for isa (see winograd.py)."},
    {"cpu_isas", py_cpu_isas, METH_NOARGS, "cpu_isas(): the instruction sets whose kernel this CPU runs, fastest first."},
    {"channel_multiples", py_channel_multiples, METH_VARARGS,
     "channel_multiples(isa): (input, output) channel counts must be multiples of these."},
    {"tiles_per_band", py_tiles_per_band, METH_VARARGS, "tiles_per_band(isa): the 2x2 output tiles per band."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_winograd_native",
    .m_doc = "AVX-512 and AVX2 Winograd F(2x2, 3x3) convolution kernels (see winograd.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__winograd_native(void) { return PyModule_Create(&module); }
