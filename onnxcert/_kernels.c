/* onnxcert._kernels: the host path's compiled kernels: the noise (see onnxcert/noise.py), and the
 * measures of a batch of model outputs (see onnxcert/sampling.py, measures and column_sums below).
 *
 * fill(state, out, x, scale, run): out[i] = x[i % D] + scale[(i % D) / run] * z_i for the next
 * out.size standard normals z_i of an SFC64 stream. state is NumPy's SFC64 state, a uint64[4] array
 * (a, b, c, counter), updated in place, so the word stream is NumPy's SFC64 stream bit for bit.
 *
 * The normals come from a 1,024-layer ziggurat (Marsaglia and Tsang 2000, "The Ziggurat Method for
 * Generating Random Variables"), computed in double and stored as float32, with the exact wedge
 * test and Marsaglia's exact tail (1964): no truncation, the Gaussian law to double precision.
 * One 64-bit word per attempt: bits 0-9 pick the layer, bit 10 the sign, bits 11-63 the 53-bit
 * position in the layer. Words are consumed strictly in order, so the noise does not depend on
 * how a stream is cut into calls, and the first m values are those of any longer draw.
 * (256 layers until issue 17's last pass: the attempts that leave the fast path, each a
 * mispredicted branch and often an exp, fell from 1.5% to 0.43% of the values.)
 *
 * The arithmetic is plain IEEE double and float (build with -ffp-contract=off: no fused
 * multiply-add), the tables are constants (tools/make_ziggurat_tables.py), so the values do not
 * depend on the build machine's instruction set. Only exp and log come from the C library (the
 * wedge test, about 1 value in 240, and the tail, 1 in 19,000): a library whose result differs
 * in the last bit would move a decision with probability about 1e-16 per value.
 * The GIL is released while a call fills.
 * Only the buffer protocol is used: building needs a C compiler and Python's headers.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_ziggurat_tables.h"

#define LAYER_MASK (ZIG_LAYERS - 1u)
#define SIGN_BIT ((unsigned)ZIG_LAYERS)
#define TO_UNIT 0x1.0p-53 /* 53-bit integer -> [0, 1) */

#if defined(__GNUC__) || defined(__clang__)
#define LIKELY(c) __builtin_expect(!!(c), 1)
#define NOINLINE __attribute__((noinline))
#else
#define LIKELY(c) (c)
#define NOINLINE
#endif

typedef struct {
    uint64_t a, b, c, counter;
} sfc64;

static uint64_t zig_k[ZIG_LAYERS];      /* accept without a test when the 53-bit position is below k[i] */
static double zig_w[ZIG_LAYERS];        /* position -> x: x_i 2^-53 */
static double zig_ws[2 * ZIG_LAYERS];   /* position -> signed x, by the low 11 bits (layer, sign): +-x_i 2^-53 */

static inline uint64_t sfc64_next(sfc64 *g)
{
    /* Chris Doty-Humphrey's SFC64, as NumPy runs it */
    const uint64_t out = g->a + g->b + g->counter++;
    g->a = g->b ^ (g->b >> 11);
    g->b = g->c + (g->c << 3);
    g->c = ((g->c << 24) | (g->c >> 40)) + out;
    return out;
}

/* (0, 1]: never 0, so its logarithm is finite */
static inline double open_unit(sfc64 *g) { return (double)(int64_t)((sfc64_next(g) >> 11) + 1) * TO_UNIT; }

/* |z| given |z| > r: Marsaglia (1964). a = -ln(U1) / r, b = -ln(U2), accepted when 2 b > a^2:
   the density of r + a is then proportional to exp(-r a - a^2 / 2), i.e. to f(r + a). */
static double zig_tail(sfc64 *g)
{
    for (;;) {
        const double a = -log(open_unit(g)) / ZIG_R;
        const double b = -log(open_unit(g));
        if (b + b > a * a)
            return ZIG_R + a;
    }
}

/* a 53-bit position as a double: through int64, one instruction (uint64 takes a branchy sequence) */
static inline double position(uint64_t pos) { return (double)(int64_t)pos; }

/* One attempt's fast path (about 99.6% of words): the word's position lies left of x_{layer+1},
   inside the next layer's width, so under the curve. Bit 10 is the sign, read with the layer as
   one 11-bit index into the signed widths: no branch on a coin flip. */
static inline int zig_fast(uint64_t word, double *z)
{
    const uint64_t pos = word >> 11;
    if (LIKELY(pos < zig_k[word & LAYER_MASK])) {
        *z = position(pos) * zig_ws[word & (LAYER_MASK | SIGN_BIT)];
        return 1;
    }
    return 0;
}

/* A word of layer >= 1 whose position lies in the layer's wedge [x_{layer+1}, x_layer]: *x <- its
   x, kept (1) when a uniform height in the layer (the stream's next word) falls under the curve. */
static inline int zig_wedge(sfc64 *g, uint64_t word, unsigned layer, double *x)
{
    *x = position(word >> 11) * zig_w[layer];
    const double u = position(sfc64_next(g) >> 11) * TO_UNIT;
    return zig_f[layer] + (zig_f[layer + 1] - zig_f[layer]) * u < exp(-0.5 * *x * *x);
}

/* The attempt that zig_fast did not finish, and any that follow it: the base layer's word lies
   beyond r, so the value comes from the tail; another layer's word lies in its wedge (zig_wedge).
   A rejected attempt starts over. */
static NOINLINE double zig_slow(sfc64 *g, uint64_t word)
{
    for (;;) {
        double z;
        if (zig_fast(word, &z))
            return z;
        const unsigned layer = (unsigned)(word & LAYER_MASK);
        const double sign = (word & SIGN_BIT) ? -1.0 : 1.0;
        if (layer == 0)
            return sign * zig_tail(g);
        if (zig_wedge(g, word, layer, &z))
            return sign * z;
        word = sfc64_next(g);
    }
}

static inline double zig_normal(sfc64 *g)
{
    const uint64_t word = sfc64_next(g);
    double z;
    return zig_fast(word, &z) ? z : zig_slow(g, word);
}

/* z <- the next normal of the stream whose state is in the locals a, b, c, counter (so that it
   stays in registers; the slow path, one value in 230, gets it through memory). A macro, not a
   function taking their addresses: compilers kept the state in memory then, 10% slower. */
#define NEXT_NORMAL(z)                                                        \
    do {                                                                      \
        const uint64_t word_ = a + b + counter++; /* sfc64_next, by hand */  \
        a = b ^ (b >> 11);                                                    \
        b = c + (c << 3);                                                     \
        c = ((c << 24) | (c >> 40)) + word_;                                  \
        if (!zig_fast(word_, &(z))) {                                         \
            sfc64 g_ = {a, b, c, counter};                                    \
            (z) = zig_slow(&g_, word_);                                       \
            a = g_.a, b = g_.b, c = g_.c, counter = g_.counter;               \
        }                                                                     \
    } while (0)

/* out[r d + j] = x[j] + s_j z for the next n normals z (n a multiple of d), in float arithmetic
   on z rounded once to float32 (NumPy's float32 z * scale + x, bit for bit). s_j = s[j] when run
   is 1, else s[j / run]: one scale per run of values (one for all, or one per channel of a
   [C, H, W] sample), so that a large sample streams one array through the cache, not two. */
static void fill_values(sfc64 *state, float *out, Py_ssize_t n, const float *x, const float *s, Py_ssize_t d,
                        Py_ssize_t run)
{
    uint64_t a = state->a, b = state->b, c = state->c, counter = state->counter;
    for (Py_ssize_t i = 0; i < n; i += d) {
        float *row = out + i;
        double z;
        if (run == 1) {
            for (Py_ssize_t j = 0; j < d; j++) {
                NEXT_NORMAL(z);
                row[j] = x[j] + s[j] * (float)z;
            }
            continue;
        }
        for (Py_ssize_t start = 0; start < d; start += run) {
            const float scale = s[start / run];
            for (Py_ssize_t j = start; j < start + run; j++) {
                NEXT_NORMAL(z);
                row[j] = x[j] + scale * (float)z;
            }
        }
    }
    state->a = a, state->b = b, state->c = c, state->counter = counter;
}

static void init_tables(void)
{
    for (int i = 0; i < ZIG_LAYERS; i++) {
        zig_w[i] = zig_x[i] * TO_UNIT;
        zig_ws[i] = zig_w[i];
        zig_ws[i + ZIG_LAYERS] = -zig_w[i];
        /* floor(2^53 x_{i+1} / x_i): every position below it lands left of x_{i+1} */
        zig_k[i] = (uint64_t)floor(zig_x[i + 1] / zig_x[i] * 0x1.0p53);
    }
}

/* ---- buffers ---- */

static int get_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t itemsize, const char *kinds, const char *what)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    const char *fmt = view->format ? view->format : "B";
    if (*fmt == '<' || *fmt == '=' || *fmt == '@')
        fmt++;
    if (view->itemsize != itemsize || fmt[0] == '\0' || fmt[1] != '\0' || !strchr(kinds, fmt[0])) {
        PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous buffer of %zd-byte items '%s', got format '%s'",
                     what, itemsize, kinds, view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int get_state(PyObject *obj, Py_buffer *view, sfc64 *g)
{
    if (get_buffer(obj, view, 1, 8, "QLK", "state") < 0)
        return -1;
    if (view->len != 32) {
        PyErr_SetString(PyExc_ValueError, "state: expected 4 uint64 words (NumPy's SFC64 state)");
        PyBuffer_Release(view);
        return -1;
    }
    const uint64_t *s = (const uint64_t *)view->buf;
    g->a = s[0], g->b = s[1], g->c = s[2], g->counter = s[3];
    return 0;
}

static void put_state(Py_buffer *view, const sfc64 *g)
{
    uint64_t *s = (uint64_t *)view->buf;
    s[0] = g->a, s[1] = g->b, s[2] = g->c, s[3] = g->counter;
    PyBuffer_Release(view);
}

/* ---- functions ---- */

PyDoc_STRVAR(fill_doc,
"fill(state, out, x, scale, run)\n\n"
"out[i] = x[i % D] + scale[(i % D) // run] * z_i (float32) for the stream's next out.size\n"
"normals z_i; x holds D float32 values, scale D / run, and D divides out.size. state\n"
"(uint64[4]) is advanced in place.");

static PyObject *fill(PyObject *self, PyObject *args)
{
    PyObject *st, *o, *xo, *so;
    Py_ssize_t run;
    if (!PyArg_ParseTuple(args, "OOOOn:fill", &st, &o, &xo, &so, &run))
        return NULL;
    Py_buffer sv, ov, xv, scv;
    sfc64 g;
    if (get_state(st, &sv, &g) < 0)
        return NULL;
    if (get_buffer(o, &ov, 1, 4, "f", "out") < 0)
        goto fail_state;
    if (get_buffer(xo, &xv, 0, 4, "f", "x") < 0)
        goto fail_out;
    if (get_buffer(so, &scv, 0, 4, "f", "scale") < 0)
        goto fail_x;
    const Py_ssize_t d = xv.len / 4, n = ov.len / 4;
    if (d == 0 || run < 1 || scv.len / 4 * run != d || n % d != 0) {
        PyErr_Format(PyExc_ValueError, "fill: x must hold D > 0 values, scale D / run, and D must divide out's %zd "
                     "(got D = %zd, %zd scales, run %zd)", n, d, scv.len / 4, run);
        goto fail_scale;
    }
    Py_BEGIN_ALLOW_THREADS
    fill_values(&g, (float *)ov.buf, n, (const float *)xv.buf, (const float *)scv.buf, d, run);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&scv);
    PyBuffer_Release(&xv);
    PyBuffer_Release(&ov);
    put_state(&sv, &g);
    Py_RETURN_NONE;
fail_scale:
    PyBuffer_Release(&scv);
fail_x:
    PyBuffer_Release(&xv);
fail_out:
    PyBuffer_Release(&ov);
fail_state:
    PyBuffer_Release(&sv);
    return NULL;
}

/* the test hooks: raw words, normals in double, the tail alone */
enum draw_kind { RAW, NORMAL, TAIL };

static PyObject *draw(PyObject *args, const char *name, enum draw_kind kind)
{
    PyObject *st, *o;
    if (!PyArg_ParseTuple(args, "OO", &st, &o))
        return NULL;
    Py_buffer sv, ov;
    sfc64 g;
    if (get_state(st, &sv, &g) < 0)
        return NULL;
    if (get_buffer(o, &ov, 1, 8, kind == RAW ? "QLK" : "d", name) < 0) {
        PyBuffer_Release(&sv);
        return NULL;
    }
    const Py_ssize_t n = ov.len / 8;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        if (kind == RAW)
            ((uint64_t *)ov.buf)[i] = sfc64_next(&g);
        else
            ((double *)ov.buf)[i] = kind == NORMAL ? zig_normal(&g) : zig_tail(&g);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&ov);
    put_state(&sv, &g);
    Py_RETURN_NONE;
}

/* the test hook for one layer's wedge: out.size values x kept by zig_wedge, from the stream's
   words whose position lies in that layer's wedge (the others are skipped, as zig_fast takes them) */
static PyObject *wedge(PyObject *self, PyObject *args)
{
    PyObject *st, *o;
    unsigned layer;
    if (!PyArg_ParseTuple(args, "OOI:_wedge", &st, &o, &layer))
        return NULL;
    if (layer < 1 || layer >= ZIG_LAYERS) {
        PyErr_Format(PyExc_ValueError, "_wedge: layer must be 1 .. %d", ZIG_LAYERS - 1);
        return NULL;
    }
    Py_buffer sv, ov;
    sfc64 g;
    if (get_state(st, &sv, &g) < 0)
        return NULL;
    if (get_buffer(o, &ov, 1, 8, "d", "out") < 0) {
        PyBuffer_Release(&sv);
        return NULL;
    }
    const Py_ssize_t n = ov.len / 8;
    Py_ssize_t i = 0, tries = 16 * n + 1024; /* a wedge keeps more than 1 in 4: a broken one cannot hang */
    Py_BEGIN_ALLOW_THREADS
    while (i < n && tries > 0) {
        const uint64_t word = (sfc64_next(&g) & ~(uint64_t)LAYER_MASK) | layer;
        double x;
        if (word >> 11 < zig_k[layer])
            continue;
        tries--;
        if (zig_wedge(&g, word, layer, &x))
            ((double *)ov.buf)[i++] = x;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&ov);
    if (i < n) {
        PyBuffer_Release(&sv);
        return PyErr_Format(PyExc_RuntimeError, "_wedge: layer %u kept %zd of %zd values", layer, i, n);
    }
    put_state(&sv, &g);
    Py_RETURN_NONE;
}

static PyObject *raw(PyObject *self, PyObject *args) { return draw(args, "out", RAW); }
static PyObject *normals(PyObject *self, PyObject *args) { return draw(args, "out", NORMAL); }
static PyObject *tail(PyObject *self, PyObject *args) { return draw(args, "out", TAIL); }

static PyObject *tables(PyObject *self, PyObject *noargs)
{
    PyObject *x = PyTuple_New(ZIG_LAYERS + 1), *f = PyTuple_New(ZIG_LAYERS + 1);
    if (x == NULL || f == NULL)
        goto fail;
    for (int i = 0; i <= ZIG_LAYERS; i++) {
        PyObject *a = PyFloat_FromDouble(zig_x[i]), *b = PyFloat_FromDouble(zig_f[i]);
        if (a == NULL || b == NULL) {
            Py_XDECREF(a);
            Py_XDECREF(b);
            goto fail;
        }
        PyTuple_SET_ITEM(x, i, a);
        PyTuple_SET_ITEM(f, i, b);
    }
    return Py_BuildValue("(NNdd)", x, f, (double)ZIG_R, (double)ZIG_V);
fail:
    Py_XDECREF(x);
    Py_XDECREF(f);
    return NULL;
}

/* ---- the host path's measures (see sampling.py): softmax rows, score, margin, votes ---- */

/* p[0 .. k) <- the row as probabilities: 'logits' (kind 0) by a softmax in double with the
   row's maximum subtracted, as stats.measures.softmax; 'probabilities' (kind 1) clipped to [0, 1] */
static void row_probabilities(const char *row, int is_double, Py_ssize_t k, int kind, double *p)
{
    for (Py_ssize_t j = 0; j < k; j++)
        p[j] = is_double ? ((const double *)row)[j] : (double)((const float *)row)[j];
    if (kind == 1) {
        for (Py_ssize_t j = 0; j < k; j++)
            p[j] = p[j] < 0.0 ? 0.0 : (p[j] > 1.0 ? 1.0 : p[j]);
        return;
    }
    double top = p[0], sum = 0.0;
    for (Py_ssize_t j = 1; j < k; j++)
        top = p[j] > top ? p[j] : top;
    for (Py_ssize_t j = 0; j < k; j++) {
        p[j] = exp(p[j] - top);
        sum += p[j];
    }
    for (Py_ssize_t j = 0; j < k; j++)
        p[j] /= sum;
}

static int get_rows(PyObject *obj, Py_buffer *view, int *is_double)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    const char *fmt = view->format ? view->format : "B";
    if (*fmt == '<' || *fmt == '=' || *fmt == '@')
        fmt++;
    if (view->ndim != 2 || view->shape[1] < 1 || fmt[1] != '\0' || !((fmt[0] == 'f' && view->itemsize == 4) || (fmt[0] == 'd' && view->itemsize == 8))) {
        PyErr_SetString(PyExc_TypeError, "rows: expected a C-contiguous [B, k >= 1] float32 or float64 array");
        PyBuffer_Release(view);
        return -1;
    }
    *is_double = fmt[0] == 'd';
    return 0;
}

PyDoc_STRVAR(measures_doc,
"measures(rows, kind, c, score, margin) -> votes\n\n"
"For rows [B, k] (float32 or float64, finite) read as kind 0 'logits' or 1 'probabilities':\n"
"score[i] = p_ic, margin[i] = p_ic - max_{j != c} p_ij (float64 [B]), and the number of rows\n"
"whose argmax (the first largest) is c.");

static PyObject *measures(PyObject *self, PyObject *args)
{
    PyObject *ro, *so, *mo;
    int kind;
    Py_ssize_t c;
    if (!PyArg_ParseTuple(args, "OinOO:measures", &ro, &kind, &c, &so, &mo))
        return NULL;
    Py_buffer rv, sv, mv;
    int is_double;
    if (get_rows(ro, &rv, &is_double) < 0)
        return NULL;
    const Py_ssize_t b = rv.shape[0], k = rv.shape[1];
    if (c < 0 || c >= k || (kind != 0 && kind != 1)) {
        PyErr_SetString(PyExc_ValueError, "measures: c must be a class index and kind 0 or 1");
        PyBuffer_Release(&rv);
        return NULL;
    }
    if (get_buffer(so, &sv, 1, 8, "d", "score") < 0) {
        PyBuffer_Release(&rv);
        return NULL;
    }
    if (get_buffer(mo, &mv, 1, 8, "d", "margin") < 0) {
        PyBuffer_Release(&sv);
        PyBuffer_Release(&rv);
        return NULL;
    }
    double *p = PyMem_Malloc((size_t)k * sizeof(double));
    if (sv.len != b * 8 || mv.len != b * 8 || p == NULL) {
        if (p == NULL)
            PyErr_NoMemory();
        else
            PyErr_SetString(PyExc_ValueError, "measures: score and margin must hold one float64 per row");
        PyMem_Free(p);
        PyBuffer_Release(&mv);
        PyBuffer_Release(&sv);
        PyBuffer_Release(&rv);
        return NULL;
    }
    Py_ssize_t votes = 0;
    double *score = (double *)sv.buf, *margin = (double *)mv.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < b; i++) {
        row_probabilities((const char *)rv.buf + i * k * rv.itemsize, is_double, k, kind, p);
        double other = -INFINITY;
        Py_ssize_t best = 0;
        for (Py_ssize_t j = 0; j < k; j++) {
            if (p[j] > p[best])
                best = j;
            if (j != c && p[j] > other)
                other = p[j];
        }
        votes += best == c;
        score[i] = p[c];
        margin[i] = p[c] - other;
    }
    Py_END_ALLOW_THREADS
    PyMem_Free(p);
    PyBuffer_Release(&mv);
    PyBuffer_Release(&sv);
    PyBuffer_Release(&rv);
    return PyLong_FromSsize_t(votes);
}

PyDoc_STRVAR(column_sums_doc,
"column_sums(rows, kind, total)\n\n"
"total[j] += sum_i p_ij (float64 [k]) for rows [B, k] read as in measures: the batch's sums\n"
"first, row by row in order, then added to total.");

static PyObject *column_sums(PyObject *self, PyObject *args)
{
    PyObject *ro, *to;
    int kind;
    if (!PyArg_ParseTuple(args, "OiO:column_sums", &ro, &kind, &to))
        return NULL;
    Py_buffer rv, tv;
    int is_double;
    if (get_rows(ro, &rv, &is_double) < 0)
        return NULL;
    const Py_ssize_t b = rv.shape[0], k = rv.shape[1];
    if (get_buffer(to, &tv, 1, 8, "d", "total") < 0) {
        PyBuffer_Release(&rv);
        return NULL;
    }
    double *p = PyMem_Malloc((size_t)(2 * k) * sizeof(double));
    if (tv.len != k * 8 || (kind != 0 && kind != 1) || p == NULL) {
        if (p == NULL)
            PyErr_NoMemory();
        else
            PyErr_SetString(PyExc_ValueError, "column_sums: total must hold one float64 per class, kind 0 or 1");
        PyMem_Free(p);
        PyBuffer_Release(&tv);
        PyBuffer_Release(&rv);
        return NULL;
    }
    double *sums = p + k, *total = (double *)tv.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < b; i++) {
        row_probabilities((const char *)rv.buf + i * k * rv.itemsize, is_double, k, kind, p);
        for (Py_ssize_t j = 0; j < k; j++)
            sums[j] = i == 0 ? p[j] : sums[j] + p[j];
    }
    if (b > 0)
        for (Py_ssize_t j = 0; j < k; j++)
            total[j] += sums[j];
    Py_END_ALLOW_THREADS
    PyMem_Free(p);
    PyBuffer_Release(&tv);
    PyBuffer_Release(&rv);
    Py_RETURN_NONE;
}

/* ---- pooled bounds (onnxcert/stats/confidence.py, _Pools) ---- */

#define POOL_FIELDS 13 /* per pool: zbar, w, value_poly[4], slope_poly[5], m5, reach */
#define SQRT1_2 7.07106781186547524401E-1 /* 1 / sqrt(2), Cephes' constant */

static inline double normal_cdf(double a)
{
    /* Phi(a), as Cephes' ndtr (SciPy's special.ndtr) computes it, with the C library's erf and erfc */
    double x = a * SQRT1_2, z = fabs(x);
    if (z < SQRT1_2)
        return 0.5 + 0.5 * erf(x);
    double y = 0.5 * erfc(z);
    return x > 0 ? 1.0 - y : y;
}

PyDoc_STRVAR(pools_doc,
"pools(coef, count, bounds, which, radii, flags, value, slope, slack, inv_sqrt_2pi, phi5_sup, phi5_peak)\n\n"
"The pooled surrogate of onnxcert.stats.confidence._Pools for each pair (bound which[k], radius\n"
"radii[k]). coef: float64 [B, P, 13], per pool (zbar, w, value_poly[4], slope_poly[5], m5, reach),\n"
"bound b's count[b] (int64 [B]) pools first; bounds: float64 [B, 5] (base, total, scale, sign,\n"
"rounding). value[k] <- base + sum over the bound's pools, in order, of spread + w Phi(x), x = zbar\n"
"+ radii[k] scale; flags: 1 adds sign * slack (the fifth-order remainder bound plus rounding),\n"
"2 clamps to [base, base + total], 4 writes the slope in R into slope, 8 writes the slack into\n"
"slack (float64 [K] each, or None). The constants come from Python, so that both paths use the same.");

static PyObject *pools(PyObject *self, PyObject *args)
{
    PyObject *co, *no, *bo, *wo, *ro, *vo, *so, *ko;
    int flags;
    double INV_SQRT_2PI, PHI5_SUP, PHI5_PEAK;
    if (!PyArg_ParseTuple(args, "OOOOOiOOOddd:pools", &co, &no, &bo, &wo, &ro, &flags, &vo, &so, &ko,
                          &INV_SQRT_2PI, &PHI5_SUP, &PHI5_PEAK))
        return NULL;
    Py_buffer cv, nv, bv, wv, rv, vv, sv, kv;
    int got = 0, ok = 0;
    if (get_buffer(co, &cv, 0, 8, "d", "coef") < 0) goto done;
    got = 1;
    if (get_buffer(no, &nv, 0, 8, "qlL", "count") < 0) goto done;
    got = 2;
    if (get_buffer(bo, &bv, 0, 8, "d", "bounds") < 0) goto done;
    got = 3;
    if (get_buffer(wo, &wv, 0, 8, "qlL", "which") < 0) goto done;
    got = 4;
    if (get_buffer(ro, &rv, 0, 8, "d", "radii") < 0) goto done;
    got = 5;
    if (get_buffer(vo, &vv, 1, 8, "d", "value") < 0) goto done;
    got = 6;
    if ((flags & 4) && get_buffer(so, &sv, 1, 8, "d", "slope") < 0) goto done;
    got = 7;
    if ((flags & 8) && get_buffer(ko, &kv, 1, 8, "d", "slack") < 0) goto done;
    got = 8;
    const Py_ssize_t nb = nv.len / 8, nk = wv.len / 8;
    const Py_ssize_t rows = nb ? cv.len / 8 / POOL_FIELDS / nb : 0;
    if (cv.ndim != 3 || cv.shape[0] != nb || cv.shape[2] != POOL_FIELDS || bv.len != nb * 5 * 8 || rv.len != nk * 8
        || vv.len != nk * 8 || ((flags & 4) && sv.len != nk * 8) || ((flags & 8) && kv.len != nk * 8)) {
        PyErr_SetString(PyExc_ValueError, "pools: array shapes do not match");
        goto done;
    }
    const int64_t *count = (const int64_t *)nv.buf, *which = (const int64_t *)wv.buf;
    for (Py_ssize_t b = 0; b < nb; b++)
        if (count[b] < 1 || count[b] > rows) {
            PyErr_SetString(PyExc_ValueError, "pools: a count is outside 1..P");
            goto done;
        }
    for (Py_ssize_t k = 0; k < nk; k++)
        if (which[k] < 0 || which[k] >= nb) {
            PyErr_SetString(PyExc_ValueError, "pools: a bound index is out of range");
            goto done;
        }
    const double *coef = (const double *)cv.buf, *bounds = (const double *)bv.buf, *radii = (const double *)rv.buf;
    double *value = (double *)vv.buf, *slope = (flags & 4) ? (double *)sv.buf : NULL;
    double *slacks = (flags & 8) ? (double *)kv.buf : NULL;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < nk; k++) {
        const int64_t b = which[k];
        const double *bd = bounds + 5 * b, *c = coef + b * rows * POOL_FIELDS;
        const double base = bd[0], total = bd[1], scale = bd[2], sign = bd[3], rounding = bd[4];
        const double shift = radii[k] * scale;
        double sum = 0.0, dsum = 0.0, rsum = 0.0;
        for (int64_t j = 0; j < count[b]; j++, c += POOL_FIELDS) {
            const double x = c[0] + shift;
            double dens = x * x;
            dens *= -0.5;
            dens = exp(dens) * INV_SQRT_2PI;
            double v = c[2] * x;
            v += c[3];
            v *= x;
            v += c[4];
            v *= x;
            v += c[5];
            v *= dens;
            const double term = v + normal_cdf(x) * c[1];
            sum = j == 0 ? term : sum + term;
            if (slope) {
                double d = c[6] * x;
                d += c[7];
                d *= x;
                d += c[8];
                d *= x;
                d += c[9];
                d *= x;
                d += c[10];
                d *= dens;
                dsum = j == 0 ? d : dsum + d;
            }
            if (flags & 9) {
                const double u = fabs(x) - c[12] > 0.0 ? fabs(x) - c[12] : 0.0;
                double bound = PHI5_SUP;
                if (u >= PHI5_PEAK) {
                    bound = (u * u - 6.0) * u * u + 3.0;
                    bound *= exp(-0.5 * u * u);
                    bound *= INV_SQRT_2PI;
                }
                const double r = bound * c[11];
                rsum = j == 0 ? r : rsum + r;
            }
        }
        double out = base + sum;
        const double slack = rsum / 120.0 + rounding;
        if (flags & 1)
            out += sign * slack;
        if (flags & 2)
            out = fmin(fmax(out, base), base + total);
        value[k] = out;
        if (slope)
            slope[k] = dsum * scale;
        if (slacks)
            slacks[k] = slack;
    }
    Py_END_ALLOW_THREADS
    ok = 1;
done:
    if (got >= 8 && (flags & 8)) PyBuffer_Release(&kv);
    if (got >= 7 && (flags & 4)) PyBuffer_Release(&sv);
    if (got >= 6) PyBuffer_Release(&vv);
    if (got >= 5) PyBuffer_Release(&rv);
    if (got >= 4) PyBuffer_Release(&wv);
    if (got >= 3) PyBuffer_Release(&bv);
    if (got >= 2) PyBuffer_Release(&nv);
    if (got >= 1) PyBuffer_Release(&cv);
    if (!ok)
        return NULL;
    Py_RETURN_NONE;
}

/* ---- count-space sums (onnxcert/stats/confidence.py, _CountSide) ---- */

static inline double sample_at(const double *x, Py_ssize_t n, double a, double b, Py_ssize_t j)
{
    /* x_j of the sorted samples, with x_0 = a and x_{n+1} = b */
    return j == 0 ? a : j > n ? b : x[j - 1];
}

PyDoc_STRVAR(group_sums_doc,
"group_sums(x, a, b, k0, p, q, at, high, low, w, wp, wq)\n\n"
"Theorem 2's merge groups in count space over the sorted samples x (float64 [n]), for the terms\n"
"k = k0 .. k0 + p.size - 1, with E_k = x_{k+1} - x_k (x_0 = a, x_{n+1} = b) and (p, q) per term.\n"
"Group g holds the terms from k0 + at[g] up to the next group's start (int64 [G], at[0] = 0):\n"
"w[g] <- x at its end minus x at its start (the sum of its E_k, telescoped); wp[g] <- sum E_k p_k\n"
"for g >= high, else w[g] - wq[g]; wq[g] <- sum E_k q_k for g < low, else w[g] - wp[g]. Sums in\n"
"term order, one addition at a time.");

static PyObject *group_sums(PyObject *self, PyObject *args)
{
    PyObject *xo, *po, *qo, *ao, *wo, *wpo, *wqo;
    double a, b;
    Py_ssize_t k0, high, low;
    if (!PyArg_ParseTuple(args, "OddnOOOnnOOO:group_sums", &xo, &a, &b, &k0, &po, &qo, &ao, &high, &low, &wo, &wpo, &wqo))
        return NULL;
    Py_buffer xv, pv, qv, av, wv, wpv, wqv;
    Py_buffer *views[7] = {&xv, &pv, &qv, &av, &wv, &wpv, &wqv};
    PyObject *objs[7] = {xo, po, qo, ao, wo, wpo, wqo};
    const char *names[7] = {"x", "p", "q", "at", "w", "wp", "wq"};
    int got = 0, ok = 0;
    for (; got < 7; got++)
        if (get_buffer(objs[got], views[got], got >= 4, 8, got == 3 ? "qlL" : "d", names[got]) < 0)
            goto done;
    const Py_ssize_t n = xv.len / 8, terms = pv.len / 8, groups = av.len / 8;
    const int64_t *at = (const int64_t *)av.buf;
    if (qv.len != pv.len || wv.len != groups * 8 || wpv.len != groups * 8 || wqv.len != groups * 8 || groups < 1
        || k0 < 0 || k0 + terms > n + 1 || at[0] != 0) {
        PyErr_SetString(PyExc_ValueError, "group_sums: array sizes do not match");
        goto done;
    }
    for (Py_ssize_t g = 1; g < groups; g++)
        if (at[g] <= at[g - 1] || at[g] >= terms) {
            PyErr_SetString(PyExc_ValueError, "group_sums: group starts must increase inside the terms");
            goto done;
        }
    const double *x = (const double *)xv.buf, *p = (const double *)pv.buf, *q = (const double *)qv.buf;
    double *w = (double *)wv.buf, *wp = (double *)wpv.buf, *wq = (double *)wqv.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t g = 0; g < groups; g++) {
        const Py_ssize_t start = at[g], stop = g + 1 < groups ? (Py_ssize_t)at[g + 1] : terms;
        const int need_p = g >= high, need_q = g < low;
        double sp = 0.0, sq = 0.0, prev = sample_at(x, n, a, b, k0 + start);
        const double first = prev;
        for (Py_ssize_t i = start; i < stop; i++) {
            const double next = sample_at(x, n, a, b, k0 + i + 1);
            const double e = next - prev;
            if (need_p)
                sp += e * p[i];
            if (need_q)
                sq += e * q[i];
            prev = next;
        }
        w[g] = prev - first;
        wp[g] = need_p ? sp : w[g] - sq;
        wq[g] = need_q ? sq : w[g] - sp;
    }
    Py_END_ALLOW_THREADS
    ok = 1;
done:
    while (got-- > 0)
        PyBuffer_Release(views[got]);
    if (!ok)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(pool_moments_doc,
"pool_moments(z, w, bins, wb, zb, m2, m3, m4, m5, reach) -> count\n\n"
"The pools of onnxcert.stats.confidence._Pools.of for one bound's terms (z, w float64 [m]):\n"
"its finite terms in runs of equal floor(z / bins), each run a pool with wb = sum w, zb = sum w z\n"
"/ wb, and with d = z - zb: m2 = sum w d^2, m3 = sum w d^3, m4 = sum w d^4, m5 = sum w d^4 |d|,\n"
"reach = max |d|, each summed in term order (outputs float64 [m]; the first count are written).\n"
"Returns the number of pools, or -1 when the keys of the finite terms are not monotone (a key's\n"
"terms would not be one run: the caller sorts them).");

static PyObject *pool_moments(PyObject *self, PyObject *args)
{
    PyObject *objs[9];
    double bins;
    if (!PyArg_ParseTuple(args, "OOdOOOOOOO:pool_moments", &objs[0], &objs[1], &bins, &objs[2], &objs[3], &objs[4],
                          &objs[5], &objs[6], &objs[7], &objs[8]))
        return NULL;
    Py_buffer v[9];
    const char *names[9] = {"z", "w", "wb", "zb", "m2", "m3", "m4", "m5", "reach"};
    int got = 0;
    Py_ssize_t count = 0;
    for (; got < 9; got++)
        if (get_buffer(objs[got], &v[got], got >= 2, 8, "d", names[got]) < 0)
            goto done;
    const Py_ssize_t m = v[0].len / 8;
    for (int i = 1; i < 9; i++)
        if (v[i].len != m * 8) {
            PyErr_SetString(PyExc_ValueError, "pool_moments: every array must have the terms' size");
            count = -2;
            goto done;
        }
    if (!(bins > 0.0)) {
        PyErr_SetString(PyExc_ValueError, "pool_moments: bins must be positive");
        count = -2;
        goto done;
    }
    const double *z = v[0].buf, *w = v[1].buf;
    double *wb = v[2].buf, *zb = v[3].buf, *m2 = v[4].buf, *m3 = v[5].buf, *m4 = v[6].buf, *m5 = v[7].buf,
           *reach = v[8].buf;
    Py_BEGIN_ALLOW_THREADS
    /* pass 1: the runs, their widths and means */
    double key = 0.0, sw = 0.0, swz = 0.0;
    int dir = 0; /* +1 keys rising, -1 falling, 0 not yet known */
    for (Py_ssize_t j = 0; j < m && count >= 0; j++) {
        if (!isfinite(z[j]))
            continue;
        const double k = floor(z[j] / bins);
        if (count == 0 || k != key) {
            if (count > 0) {
                const int d = k > key ? 1 : -1;
                if (dir != 0 && d != dir) {
                    count = -1;
                    break;
                }
                dir = d;
                wb[count - 1] = sw;
                zb[count - 1] = swz / sw;
            }
            key = k;
            count++;
            sw = w[j];
            swz = w[j] * z[j];
        } else {
            sw += w[j];
            swz += w[j] * z[j];
        }
    }
    if (count > 0) {
        wb[count - 1] = sw;
        zb[count - 1] = swz / sw;
        /* pass 2: the moments about each pool's mean */
        Py_ssize_t i = -1;
        for (Py_ssize_t j = 0; j < m; j++) {
            if (!isfinite(z[j]))
                continue;
            const double k = floor(z[j] / bins);
            if (i < 0 || k != key) {
                i++;
                key = k;
                m2[i] = m3[i] = m4[i] = m5[i] = reach[i] = 0.0;
            }
            const double d = z[j] - zb[i], ad = fabs(d);
            const double wd2 = w[j] * d * d, wd3 = wd2 * d, wd4 = wd2 * d * d;
            m2[i] += wd2;
            m3[i] += wd3;
            m4[i] += wd4;
            m5[i] += wd4 * ad;
            if (ad > reach[i])
                reach[i] = ad;
        }
    }
    Py_END_ALLOW_THREADS
done:
    while (got-- > 0)
        PyBuffer_Release(&v[got]);
    if (count < -1)
        return NULL;
    return PyLong_FromSsize_t(count);
}

static PyMethodDef methods[] = {
    {"fill", fill, METH_VARARGS, fill_doc},
    {"measures", measures, METH_VARARGS, measures_doc},
    {"column_sums", column_sums, METH_VARARGS, column_sums_doc},
    {"pools", pools, METH_VARARGS, pools_doc},
    {"group_sums", group_sums, METH_VARARGS, group_sums_doc},
    {"pool_moments", pool_moments, METH_VARARGS, pool_moments_doc},
    {"_raw", raw, METH_VARARGS, "_raw(state, out): the next out.size SFC64 words (uint64)."},
    {"_normals", normals, METH_VARARGS, "_normals(state, out): the next out.size normals, in double."},
    {"_tail", tail, METH_VARARGS, "_tail(state, out): out.size draws of |z| given |z| > r, in double."},
    {"_wedge", wedge, METH_VARARGS, "_wedge(state, out, layer): out.size values kept by one layer's wedge test."},
    {"_tables", tables, METH_NOARGS, "_tables(): (x[0..1024], f[0..1024], r, v) of the ziggurat."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "onnxcert._kernels",
    "onnxcert's compiled host kernels: the SFC64 + ziggurat Gaussian noise (see onnxcert/noise.py).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__kernels(void)
{
    init_tables();
    return PyModule_Create(&module);
}
