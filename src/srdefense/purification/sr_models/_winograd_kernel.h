/*
 * One instruction set's Winograd F(2x2, 3x3) kernel, a template: _winograd_native.c includes it
 * once per instruction set, after defining
 *
 *   ISA     the suffix of this copy's function names (avx512, avx2)
 *   TARGET  the function attribute that compiles them for it
 *   VEC     the vector type; VW its float lanes
 *   V_LOAD, V_STORE, V_ADD, V_SUB, V_FMA, V_SET1, V_ZERO, V_LEAKY(v, slope, zero)
 *   MR, NB  the micro-kernel's tiles (rows) and vectors of output channels per row
 *   TILES   tiles per band, a multiple of MR
 *
 * and undefines them all at its end, so the next copy starts from none.
 *
 * Every copy computes each output with the same operations in the same order (the same adds
 * and subtracts in the transforms, one FMA per input channel in channel order, then the bias
 * and the LeakyReLU's multiply), so the copies give the same bits; only how many output
 * channels one instruction carries differs.
 *
 * Each band of TILES 2x2 output tiles goes through the input transform, 16 register-blocked
 * matrix products and the output transform while it is in the core's cache, so the
 * transformed tiles never travel to memory; the products are an MR x NR micro-kernel
 * (NR = NB * VW output channels, MR * NB accumulators in registers). Bands are handed out to the
 * threads (../../_kernel_threads.h) from the job's atomic counter.
 */
#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, ISA)
#define NR (NB * VW)

/* V[16][TILES][C] for tiles t0 .. t0 + rows - 1 (those past the end are zero). Tile rows and
   columns start at -pad in the input; whatever lies outside it reads as zero. */
TARGET static void FN(input_transform)(const job_t *j, long t0, long rows, float *v) {
    const long C = j->c, per_img = j->th * j->tw;
    const VEC zero = V_ZERO();
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
        for (long cb = 0; cb < C; cb += VW) {
            VEC d[4][4];
            if (inside) { /* the common case: no test per load */
                const float *base = img_x + (y0 * j->w + x0) * C + cb;
                for (int a = 0; a < 4; a++)
                    for (int b = 0; b < 4; b++) d[a][b] = V_LOAD(base + (a * j->w + b) * C);
            } else {
                for (int a = 0; a < 4; a++)
                    for (int b = 0; b < 4; b++)
                        d[a][b] = valid[a][b] ? V_LOAD(img_x + ((y0 + a) * j->w + x0 + b) * C + cb) : zero;
            }
            VEC s[4][4];
            for (int b = 0; b < 4; b++) { /* B^T d: along the rows */
                s[0][b] = V_SUB(d[0][b], d[2][b]);
                s[1][b] = V_ADD(d[1][b], d[2][b]);
                s[2][b] = V_SUB(d[2][b], d[1][b]);
                s[3][b] = V_SUB(d[1][b], d[3][b]);
            }
            for (int a = 0; a < 4; a++) { /* (B^T d) B: along the columns */
                float *o = vi + (long)(4 * a) * TILES * C + cb;
                V_STORE(o, V_SUB(s[a][0], s[a][2]));
                V_STORE(o + TILES * C, V_ADD(s[a][1], s[a][2]));
                V_STORE(o + 2 * TILES * C, V_SUB(s[a][2], s[a][1]));
                V_STORE(o + 3 * TILES * C, V_SUB(s[a][1], s[a][3]));
            }
        }
    }
}

/* m[MR][NR] = a[MR][C] (row stride lda) @ b[C][NR] (row stride ldb); m has row stride NR. */
TARGET static inline __attribute__((always_inline)) void FN(micro_kernel)(const float *a, long lda,
                                                                          const float *b, long ldb, long C,
                                                                          float *m) {
    VEC acc[MR][NB];
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < NB; q++) acc[r][q] = V_ZERO();
    for (long p = 0; p < C; p++) {
        const float *bp = b + p * ldb;
        VEC bq[NB];
        for (int q = 0; q < NB; q++) bq[q] = V_LOAD(bp + q * VW);
        for (int r = 0; r < MR; r++) {
            VEC ar = V_SET1(a[r * lda + p]);
            for (int q = 0; q < NB; q++) acc[r][q] = V_FMA(ar, bq[q], acc[r][q]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < NB; q++) V_STORE(m + r * NR + q * VW, acc[r][q]);
}

/* Output channels kb .. kb + NR - 1 of tiles t0 .. t0 + count - 1 from M[16][TILES][NR]. */
TARGET static void FN(output_transform)(const job_t *j, long t0, long count, long kb, const float *m) {
    const long K = j->k, per_img = j->th * j->tw;
    const VEC slope = V_SET1(j->slope), zero = V_ZERO();
    for (long i = 0; i < count; i++) {
        long t = t0 + i, img = t / per_img, r = t % per_img;
        long oy = 2 * (r / j->tw), ox = 2 * (r % j->tw);
        int rows = oy + 1 < j->oh ? 2 : 1, cols = ox + 1 < j->ow ? 2 : 1;
        float *out = j->y + ((img * j->oh + oy) * j->ow + ox) * K + kb;
        for (long q = 0; q < NR; q += VW) {
            const float *mi = m + i * NR + q;
            VEC e[4][4];
            for (int a = 0; a < 4; a++)
                for (int b = 0; b < 4; b++) e[a][b] = V_LOAD(mi + (long)(4 * a + b) * TILES * NR);
            VEC s[2][4];
            for (int b = 0; b < 4; b++) { /* A^T M */
                s[0][b] = V_ADD(V_ADD(e[0][b], e[1][b]), e[2][b]);
                s[1][b] = V_SUB(V_SUB(e[1][b], e[2][b]), e[3][b]);
            }
            VEC bias = j->bias ? V_LOAD(j->bias + kb + q) : zero;
            for (int p = 0; p < rows; p++) { /* (A^T M) A, bias, LeakyReLU */
                VEC o[2];
                o[0] = V_ADD(V_ADD(V_ADD(s[p][0], s[p][1]), s[p][2]), bias);
                o[1] = V_ADD(V_SUB(V_SUB(s[p][1], s[p][2]), s[p][3]), bias);
                for (int c = 0; c < cols; c++) {
                    VEC v = o[c];
                    if (j->leaky) v = V_LEAKY(v, slope, zero);
                    V_STORE(out + (p * j->ow + c) * K + q, v);
                }
            }
        }
    }
}

TARGET static void *FN(worker)(void *arg) {
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
        FN(input_transform)(j, t0, rows, v);
        for (long kb = 0; kb < K; kb += NR) {
            for (int e = 0; e < 16; e++) {
                const float *ve = v + (long)e * TILES * C, *ue = j->u + (long)e * C * K + kb;
                float *me = m + (long)e * TILES * NR;
                for (long r0 = 0; r0 < rows; r0 += MR) FN(micro_kernel)(ve + r0 * C, C, ue, K, C, me + r0 * NR);
            }
            FN(output_transform)(j, t0, count, kb, m);
        }
    }
    free(v);
    free(m);
    return NULL;
}

#undef NR
#undef FN
#undef CAT
#undef CAT_
/* the parameters */
#undef ISA
#undef TARGET
#undef VEC
#undef VW
#undef MR
#undef NB
#undef TILES
#undef V_LOAD
#undef V_STORE
#undef V_ADD
#undef V_SUB
#undef V_FMA
#undef V_SET1
#undef V_ZERO
#undef V_LEAKY
