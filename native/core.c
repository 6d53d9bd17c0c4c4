/* zcio._native, the buffer core: the index state of every buffer as a C type, and the
 * hot get/put of ByteBuffer on it.
 *
 * BufferState is the base of zcio._buffer.Buffer when this module is importable; the
 * pure-Python zcio._state.BufferState has the same slots and is the reference.  Each
 * method here is a fast path only: it handles the common successful case (a plain
 * contiguous buffer, an exact int or float, indexes in range, memory alive, a byte order
 * it knows) and hands every other case, unchanged, to the Python method it replaced
 * (accelerate() keeps them), so that errors, numpy integers, NaNs, mapped and composite
 * memory behave bit for bit as the reference does.
 *
 * Memory safety: a fast path touches memory only through the buffer's own memoryview
 * ``_mv`` while it is not released (a released view means the memory may be gone), at
 * offsets checked against both the limit and the view's length, with the GIL held from
 * the check to the access.  Kinds whose memory must be asked (mappings, behind the SIGBUS
 * guard; composites) are subclasses of the indirect class and always take the Python path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <float.h>
#include <stdint.h>
#include <string.h>

#include "native.h"

/* What the fast paths read comes first (position, limit, view, order, read-only): with
 * the header, one 64-byte cache line, as pymalloc starts a buffer's object on one.  A
 * gather of 64 small buffers reads 64 lines fewer (measured: 8 % of its copy pass). */
typedef struct {
    PyObject_HEAD
    PyObject *pos, *lim; /* ints: Python reads them as fast as slots */
    PyObject *mv;        /* memoryview of [0, capacity) */
    PyObject *order;     /* zcio.ByteOrder */
    PyObject *ro;        /* bool */
    PyObject *cap, *mark;
    PyObject *mem;       /* zcio._memory.Memory */
    PyObject *weakreflist;
} State;

/* Set by accelerate(): the ByteOrder members and the class whose subclasses must ask
 * their memory (IndirectByteBuffer). */
static PyObject *state_type = NULL; /* BufferState */
static PyObject *big_endian = NULL, *little_endian = NULL;
static PyTypeObject *indirect_type = NULL;
static PyObject *plain_type = NULL; /* the last type found not indirect: a one-entry cache */

enum { K_BYTE, K_CHAR, K_SHORT, K_USHORT, K_INT, K_UINT, K_LONG, K_FLOAT, K_DOUBLE, K_COUNT };
static const int k_size[K_COUNT] = {1, 2, 2, 2, 4, 4, 8, 4, 8};

/* An index slot as a C integer; -1 (no exception) when it is unset or not an exact
 * int, and the caller hands the call to the reference.  No index is ever negative but
 * the mark, which the fast paths never read. */
static inline Py_ssize_t
index_value(PyObject *o)
{
    if (o == NULL || !PyLong_CheckExact(o))
        return -1;
    Py_ssize_t v = PyLong_AsSsize_t(o);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return v;
}

PyObject *zcio_index_ints[INDEX_INTS]; /* see index_int (native.h) */

/* position = v; -1 with an exception if the int cannot be made. */
static inline __attribute__((always_inline)) int
set_position(State *s, Py_ssize_t v)
{
    PyObject *o = index_int(v);
    if (o == NULL)
        return -1;
    Py_SETREF(s->pos, o);
    return 0;
}

/* The Python methods replaced, by slot: the reference implementation and every slow path. */
enum { M_GET, M_PUT, M_GET_CHAR, M_PUT_CHAR, M_GET_SHORT, M_PUT_SHORT, M_GET_USHORT,
       M_GET_INT, M_PUT_INT, M_GET_UINT, M_GET_LONG, M_PUT_LONG, M_GET_FLOAT, M_PUT_FLOAT,
       M_GET_DOUBLE, M_PUT_DOUBLE, M_COUNT };
static PyObject *fallback[M_COUNT];

static PyObject *slow_ref(PyObject *f, PyObject *self, PyObject *const *args,
                          Py_ssize_t nargs, PyObject *kw);

static PyObject *
slow(int m, PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return slow_ref(fallback[m], self, args, nargs, kwnames);
}

/* A buffer's or view's own memory (its memoryview ``_mv``), or NULL (no exception):
 * none (a view over a mapping or a composite has None), released, or not flat bytes. */
static inline char *
view_memory(State *s, Py_ssize_t *len, int writing)
{
    PyObject *mv = s->mv;
    if (mv == NULL || !PyMemoryView_Check(mv))
        return NULL;
    return own_flat_view(mv, writing, 1, len);
}

/* The memory of a plain buffer, or NULL (no exception) when the fast path must not touch
 * it: an indirect kind, a released or foreign view.  *len: the view's length. */
static inline char *
plain_memory(State *s, Py_ssize_t *len, int writing)
{
    PyTypeObject *t = Py_TYPE(s);
    if ((PyObject *)t != plain_type) {
        if (indirect_type == NULL || PyType_IsSubtype(t, indirect_type))
            return NULL;
        Py_XSETREF(plain_type, Py_NewRef((PyObject *)t)); /* held: never a stale address */
    }
    return view_memory(s, len, writing);
}

/* 1: big-endian, 0: little-endian, -1: an order this module does not know. */
static inline int
is_big(State *s)
{
    if (s->order == big_endian)
        return 1;
    if (s->order == little_endian)
        return 0;
    return -1;
}

static inline uint64_t
load_bytes(const char *p, int n, int big)
{
    uint64_t v = 0;
    switch (n) {
    case 1: return (uint8_t)p[0];
    case 2: { uint16_t x; memcpy(&x, p, 2); v = big ? __builtin_bswap16(x) : x;
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
              v = big ? x : __builtin_bswap16(x);
#endif
              return v; }
    case 4: { uint32_t x; memcpy(&x, p, 4); v = big ? __builtin_bswap32(x) : x;
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
              v = big ? x : __builtin_bswap32(x);
#endif
              return v; }
    default: { uint64_t x; memcpy(&x, p, 8); v = big ? __builtin_bswap64(x) : x;
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
              v = big ? x : __builtin_bswap64(x);
#endif
              return v; }
    }
}

static inline void
store_bytes(char *p, int n, int big, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    big = !big;
#endif
    switch (n) {
    case 1: p[0] = (char)v; break;
    case 2: { uint16_t x = (uint16_t)v; if (big) x = __builtin_bswap16(x); memcpy(p, &x, 2); break; }
    case 4: { uint32_t x = (uint32_t)v; if (big) x = __builtin_bswap32(x); memcpy(p, &x, 4); break; }
    default: { uint64_t x = v; if (big) x = __builtin_bswap64(x); memcpy(p, &x, 8); break; }
    }
}

/* The Python value of kind k from raw bits, or NULL with no exception to ask the
 * reference (a float NaN: its bits are rebuilt there, as Java's intBitsToFloat). */
static inline __attribute__((always_inline)) PyObject *
box(int k, uint64_t raw)
{
    int64_t v;
    switch (k) {
    case K_BYTE: v = (int8_t)raw; break;
    case K_CHAR: return PyUnicode_FromOrdinal((int)(uint16_t)raw);
    case K_SHORT: v = (int16_t)raw; break;
    case K_USHORT: v = (uint16_t)raw; break;
    case K_INT: v = (int32_t)raw; break;
    case K_UINT: v = (uint32_t)raw; break;
    case K_LONG: v = (int64_t)raw; break;
    case K_FLOAT: {
        uint32_t b = (uint32_t)raw; float f; memcpy(&f, &b, 4);
        if (f != f) return NULL;
        return PyFloat_FromDouble((double)f);
    }
    default: {
        double d; memcpy(&d, &raw, 8);
        return PyFloat_FromDouble(d);
    }
    }
    /* an int: from the index table when it holds it (native.h; as an index) */
    return v >= 0 && v < INDEX_INTS ? index_int((Py_ssize_t)v) : PyLong_FromLongLong(v);
}

/* The bits of value v for kind k, 1 on success; 0 (no exception) to ask the reference:
 * not an exact int or float, out of the signed range, a NaN float, a float too large. */
static int
unbox(int k, PyObject *v, uint64_t *raw)
{
    if (k == K_FLOAT || k == K_DOUBLE) {
        if (!PyFloat_CheckExact(v))
            return 0;
        double d = PyFloat_AS_DOUBLE(v);
        if (d != d)
            return 0;
        if (k == K_DOUBLE) { memcpy(raw, &d, 8); return 1; }
        if (isfinite(d) && fabs(d) > FLT_MAX) {
            /* struct rounds values just above FLT_MAX down or raises: let it decide. */
            return 0;
        }
        float f = (float)d; uint32_t b; memcpy(&b, &f, 4); *raw = b;
        return 1;
    }
    if (k == K_CHAR) {
        if (!PyUnicode_CheckExact(v) || PyUnicode_GET_LENGTH(v) != 1)
            return 0;
        Py_UCS4 c = PyUnicode_READ_CHAR(v, 0);
        if (c > 0xFFFF) return 0;
        *raw = c;
        return 1;
    }
    if (!PyLong_CheckExact(v))
        return 0;
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (x == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    switch (k) {
    case K_BYTE: if (x < -128 || x > 255) return 0; break;
    case K_SHORT: if (x < INT16_MIN || x > INT16_MAX) return 0; break;
    case K_INT: if (x < INT32_MIN || x > INT32_MAX) return 0; break;
    default: break;
    }
    *raw = (uint64_t)x;
    return 1;
}

/* An exact int index i with 0 <= i <= lim - size (and inside the view), or -1. */
static inline Py_ssize_t
index_of(PyObject *o, Py_ssize_t lim, Py_ssize_t len, int size)
{
    if (!PyLong_CheckExact(o))
        return -1;
    Py_ssize_t i = PyLong_AsSsize_t(o);
    if (i == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (i < 0 || i > lim - size || i > len - size)
        return -1;
    return i;
}

/* get_X(index=None) for kind k; the reference method is fallback[m]. */
static PyObject *
get_value(State *s, int k, int m, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    int size = k_size[k];
    Py_ssize_t len;
    char *base;
    int big;
    if (kwnames != NULL || nargs > 1 || (big = is_big(s)) < 0
        || (base = plain_memory(s, &len, 0)) == NULL)
        return slow(m, (PyObject *)s, args, nargs, kwnames);
    PyObject *r;
    Py_ssize_t lim = index_value(s->lim);
    if (lim < 0)
        return slow(m, (PyObject *)s, args, nargs, kwnames);
    if (nargs == 0 || args[0] == Py_None) {
        Py_ssize_t p = index_value(s->pos);
        if (p < 0 || p > lim - size || p > len - size)
            return slow(m, (PyObject *)s, args, nargs, kwnames);
        r = box(k, load_bytes(base + p, size, big));
        if (r != NULL && set_position(s, p + size) < 0)
            Py_CLEAR(r);
        if (r == NULL && PyErr_Occurred())
            return NULL;
    } else {
        Py_ssize_t i = index_of(args[0], lim, len, size);
        if (i < 0)
            return slow(m, (PyObject *)s, args, nargs, kwnames);
        r = box(k, load_bytes(base + i, size, big));
    }
    if (r == NULL && !PyErr_Occurred())
        return slow(m, (PyObject *)s, args, nargs, kwnames);
    return r;
}

/* put_X(v) / put_X(index, v) for kind k. */
static PyObject *
put_value(State *s, int k, int m, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    int size = k_size[k];
    Py_ssize_t len;
    char *base;
    int big;
    uint64_t raw;
    if (kwnames != NULL || nargs < 1 || nargs > 2 || s->ro != Py_False
        || (big = is_big(s)) < 0 || (base = plain_memory(s, &len, 1)) == NULL)
        return slow(m, (PyObject *)s, args, nargs, kwnames);
    Py_ssize_t lim = index_value(s->lim);
    if (lim < 0)
        return slow(m, (PyObject *)s, args, nargs, kwnames);
    if (nargs == 1 || args[1] == Py_None) {
        Py_ssize_t p = index_value(s->pos);
        if (p < 0 || p > lim - size || p > len - size || !unbox(k, args[0], &raw))
            return slow(m, (PyObject *)s, args, nargs, kwnames);
        if (set_position(s, p + size) < 0)
            return NULL;
        store_bytes(base + p, size, big, raw);
    } else {
        Py_ssize_t i = index_of(args[0], lim, len, size);
        if (i < 0 || !unbox(k, args[1], &raw))
            return slow(m, (PyObject *)s, args, nargs, kwnames);
        store_bytes(base + i, size, big, raw);
    }
    return Py_NewRef((PyObject *)s);
}

/* The bytes of a flat bytes-like object (exact bytes, bytearray or memoryview: one
 * dimension, C-contiguous, not released; writable if ``writing``), or NULL (no
 * exception) for anything else, which the reference takes: its own checks and errors,
 * buffers (put(src_buffer) moves their position), other exporters.  Valid while the
 * GIL is held and no Python code runs. */
static inline char *
flat_bytes(PyObject *o, int writing, Py_ssize_t *len)
{
    if (PyBytes_CheckExact(o)) {
        if (writing)
            return NULL;
        *len = PyBytes_GET_SIZE(o);
        return PyBytes_AS_STRING(o);
    }
    if (PyByteArray_CheckExact(o)) {
        *len = PyByteArray_GET_SIZE(o);
        return PyByteArray_AS_STRING(o);
    }
    if (PyMemoryView_Check(o)) /* memoryview cannot be subclassed; any item size */
        return flat_view(o, writing, 0, len);
    return NULL;
}

/* An optional offset or length argument: *v = its value (0 <= v), or dflt for None
 * or an absent one; 0 for anything else (the reference raises, or converts). */
static inline int
bulk_arg(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t at, long long dflt,
         long long *v)
{
    if (at >= nargs || args[at] == Py_None) {
        *v = dflt;
        return 1;
    }
    return small_int(args[at], v) && *v >= 0;
}

/* The bulk forms of get and put between this buffer and a flat bytes-like object
 * (flat_bytes): get(dst[, offset[, length]]), get(index, dst[, offset[, length]]) and
 * the same for put(src, ...).  Copies ``length`` bytes (default: the rest of the
 * object after ``offset``) with one memmove (overlap allowed: the reference copies
 * one view pair the same way); a relative call then moves the position past them, an
 * absolute one changes no index.  Any other case, error or not, goes to the reference
 * untouched (fallback[m]), which checks in Java's order.
 *
 * The memmove runs behind the SIGBUS guard, as the reference's copy does: either side
 * may be a file mapping (a memoryview of an mmap, or a buffer wrapping one) that
 * another process truncated.  On a fault the reference makes the call again, which
 * faults at the same byte and raises its MappedRegionError (the bytes before it
 * copied twice, the same bytes; no index moved). */
static PyObject *
bulk(State *s, int put, int m, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Py_ssize_t len, olen;
    long long index = -1, offset, length, start, lim;
    char *base, *obj;
    int absolute = PyLong_CheckExact(args[0]);
    if (kwnames != NULL || nargs > 3 + absolute || nargs < 1 + absolute
        || (put && s->ro != Py_False) || (base = plain_memory(s, &len, put)) == NULL
        || (obj = flat_bytes(args[absolute], !put, &olen)) == NULL
        || s->lim == NULL || !small_int(s->lim, &lim)
        || !bulk_arg(args, nargs, 1 + absolute, 0, &offset) || offset > olen
        || !bulk_arg(args, nargs, 2 + absolute, olen - offset, &length)
        || length > olen - offset)
        return slow(m, (PyObject *)s, args, nargs, kwnames);
    if (absolute) {
        if (!small_int(args[0], &index) || index < 0)
            return slow(m, (PyObject *)s, args, nargs, kwnames);
        start = index;
    } else if (s->pos == NULL || !small_int(s->pos, &start)) {
        return slow(m, (PyObject *)s, args, nargs, kwnames);
    }
    if (length > lim - start || length > len - start)
        return slow(m, (PyObject *)s, args, nargs, kwnames);
    void *fault;
    if (zcio_guarded_move(put ? base + start : obj + offset, put ? obj + offset : base + start,
                          (size_t)length, &fault) < 0)
        return slow(m, (PyObject *)s, args, nargs, kwnames);
    if (!absolute && set_position(s, (Py_ssize_t)(start + length)) < 0)
        return NULL;
    return Py_NewRef((PyObject *)s);
}

/* get() / get(i) of one byte; the bulk forms of a flat bytes-like destination (bulk);
 * anything else goes to the reference. */
static PyObject *
s_get(State *s, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 0 || (nargs == 1 && PyLong_CheckExact(args[0])))
        return get_value(s, K_BYTE, M_GET, args, nargs, kwnames);
    return bulk(s, 0, M_GET, args, nargs, kwnames);
}

/* put(v) / put(i, v) of one byte; the bulk forms of a flat bytes-like source (bulk);
 * anything else goes to the reference. */
static PyObject *
s_put(State *s, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 0 || nargs > 4)
        return slow(M_PUT, (PyObject *)s, args, nargs, kwnames);
    if (PyLong_CheckExact(args[0]) && (nargs == 1 || (nargs == 2 && PyLong_CheckExact(args[1]))))
        return put_value(s, K_BYTE, M_PUT, args, nargs, kwnames);
    return bulk(s, 1, M_PUT, args, nargs, kwnames);
}

#define GETTER(name, K, M) \
    static PyObject *name(State *s, PyObject *const *a, Py_ssize_t n, PyObject *kw) \
    { return get_value(s, K, M, a, n, kw); }
#define PUTTER(name, K, M) \
    static PyObject *name(State *s, PyObject *const *a, Py_ssize_t n, PyObject *kw) \
    { return put_value(s, K, M, a, n, kw); }

GETTER(s_get_char, K_CHAR, M_GET_CHAR)
PUTTER(s_put_char, K_CHAR, M_PUT_CHAR)
GETTER(s_get_short, K_SHORT, M_GET_SHORT)
PUTTER(s_put_short, K_SHORT, M_PUT_SHORT)
GETTER(s_get_ushort, K_USHORT, M_GET_USHORT)
GETTER(s_get_int, K_INT, M_GET_INT)
PUTTER(s_put_int, K_INT, M_PUT_INT)
GETTER(s_get_uint, K_UINT, M_GET_UINT)
GETTER(s_get_long, K_LONG, M_GET_LONG)
PUTTER(s_put_long, K_LONG, M_PUT_LONG)
GETTER(s_get_float, K_FLOAT, M_GET_FLOAT)
PUTTER(s_put_float, K_FLOAT, M_PUT_FLOAT)
GETTER(s_get_double, K_DOUBLE, M_GET_DOUBLE)
PUTTER(s_put_double, K_DOUBLE, M_PUT_DOUBLE)

/* -- typed views: get/put of one element, counted in elements ------------------------ */

#define MAX_VIEWS 8
static PyObject *view_types[MAX_VIEWS]; /* the view classes, exact types */
static int view_kinds[MAX_VIEWS];
static int n_views = 0;
static PyObject *view_get_ref = NULL, *view_put_ref = NULL; /* TypedBuffer.get / put */

static PyObject *
slow_ref(PyObject *f, PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kw)
{
    if (f == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "zcio._native: accelerate() was not called");
        return NULL;
    }
    return call_reference(f, self, args, nargs, kw);
}

/* The element kind of a view instance, or -1 (a class this module was not told of). */
static PyObject *last_view_type = NULL; /* a one-entry cache (held by view_types) */
static int last_view_kind = -1;

static inline int
view_kind(State *s)
{
    PyObject *t = (PyObject *)Py_TYPE(s);
    if (t == last_view_type)
        return last_view_kind;
    for (int i = 0; i < n_views; i++)
        if (view_types[i] == t) {
            last_view_type = t;
            return last_view_kind = view_kinds[i];
        }
    return -1;
}

/* get() / get(i) of one element; every other form goes to TypedBuffer.get.  Indexes
 * are read as small ints (native.h), as v_put reads them. */
static PyObject *
v_get(State *s, PyObject *const *args, Py_ssize_t nargs, PyObject *kw)
{
    int k, big, size;
    Py_ssize_t len;
    long long i, lim;
    char *base;
    int relative = nargs == 0 || args[0] == Py_None;
    if (kw != NULL || nargs > 1 || (k = view_kind(s)) < 0 || (big = is_big(s)) < 0
        || (base = view_memory(s, &len, 0)) == NULL || s->lim == NULL
        || !small_int(s->lim, &lim)
        || !(relative ? s->pos != NULL && small_int(s->pos, &i) : small_int(args[0], &i)))
        return slow_ref(view_get_ref, (PyObject *)s, args, nargs, kw);
    size = k_size[k];
    if (i < 0 || i >= lim || i * size > len - size) /* i: one 30-bit digit, no overflow */
        return slow_ref(view_get_ref, (PyObject *)s, args, nargs, kw);
    PyObject *r = box(k, load_bytes(base + i * size, size, big));
    if (r == NULL) {
        if (PyErr_Occurred())
            return NULL;
        return slow_ref(view_get_ref, (PyObject *)s, args, nargs, kw); /* a float NaN */
    }
    if (relative && set_position(s, (Py_ssize_t)i + 1) < 0) {
        Py_DECREF(r);
        return NULL;
    }
    return r;
}

/* put(v) / put(i, v) of one element; every other form goes to TypedBuffer.put.  Small
 * ints in a kind's signed range are stored at once; any other value goes through unbox
 * (which takes the same ints, and sends the rest to the reference). */
static PyObject *
v_put(State *s, PyObject *const *args, Py_ssize_t nargs, PyObject *kw)
{
    int k, big, size;
    Py_ssize_t len;
    long long i, lim, x;
    char *base;
    uint64_t raw;
    if (kw != NULL || nargs < 1 || nargs > 2 || s->ro != Py_False || (k = view_kind(s)) < 0
        || (big = is_big(s)) < 0 || (base = view_memory(s, &len, 1)) == NULL
        || s->lim == NULL || !small_int(s->lim, &lim))
        return slow_ref(view_put_ref, (PyObject *)s, args, nargs, kw);
    size = k_size[k];
    PyObject *value = args[nargs - 1];
    if (nargs == 1) {
        if (s->pos == NULL || !small_int(s->pos, &i))
            return slow_ref(view_put_ref, (PyObject *)s, args, nargs, kw);
    } else if (!small_int(args[0], &i)) {
        return slow_ref(view_put_ref, (PyObject *)s, args, nargs, kw);
    }
    if (i < 0 || i >= lim || i * size > len - size) /* i: one 30-bit digit, no overflow */
        return slow_ref(view_put_ref, (PyObject *)s, args, nargs, kw);
    if ((k == K_SHORT || k == K_INT || k == K_LONG) && small_int(value, &x)
        && (k == K_LONG || (k == K_INT ? x >= INT32_MIN && x <= INT32_MAX
                                       : x >= INT16_MIN && x <= INT16_MAX)))
        raw = (uint64_t)x;
    else if (!unbox(k, value, &raw))
        return slow_ref(view_put_ref, (PyObject *)s, args, nargs, kw);
    if (nargs == 1 && set_position(s, (Py_ssize_t)i + 1) < 0)
        return NULL;
    store_bytes(base + i * size, size, big, raw);
    return Py_NewRef((PyObject *)s);
}

static PyMethodDef view_methods[] = {
    {"get", (PyCFunction)(void (*)(void))v_get, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"put", (PyCFunction)(void (*)(void))v_put, METH_FASTCALL | METH_KEYWORDS, NULL},
    {NULL},
};

static int
kind_of_code(const char *code)
{
    static const char *codes[K_COUNT] = {"b", "H", "h", "", "i", "", "q", "f", "d"};
    for (int k = 0; k < K_COUNT; k++)
        if (codes[k][0] && strcmp(codes[k], code) == 0)
            return k;
    return -1;
}

/* accelerate_views(base, {cls: struct code}, {"get": doc, "put": doc}) */
static PyObject *
core_accelerate_views(PyObject *mod, PyObject *args)
{
    PyObject *base, *classes, *docs, *key, *value;
    Py_ssize_t pos = 0;
    if (!PyArg_ParseTuple(args, "O!O!O!", &PyType_Type, &base, &PyDict_Type, &classes,
                          &PyDict_Type, &docs))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)base, (PyTypeObject *)state_type)
        || PyDict_GET_SIZE(classes) > MAX_VIEWS) {
        PyErr_SetString(PyExc_TypeError, "accelerate_views(): not BufferState views");
        return NULL;
    }
    n_views = 0;
    last_view_type = NULL;
    while (PyDict_Next(classes, &pos, &key, &value)) {
        const char *code = PyUnicode_AsUTF8(value);
        int k = code ? kind_of_code(code) : -1;
        if (k < 0 || !PyType_Check(key)) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "no fast path for element code %R", value);
            return NULL;
        }
        Py_XSETREF(view_types[n_views], Py_NewRef(key));
        view_kinds[n_views++] = k;
    }
    PyObject **refs[2] = {&view_get_ref, &view_put_ref};
    for (int m = 0; m < 2; m++) {
        PyMethodDef *d = &view_methods[m];
        PyObject *ref = PyObject_GetAttrString(base, d->ml_name);
        if (ref == NULL)
            return NULL;
        PyObject *doc = PyDict_GetItemString(docs, d->ml_name);
        if (doc != NULL && d->ml_doc == NULL) {
            const char *text = PyUnicode_AsUTF8(doc);
            char *copy = text ? strdup(text) : NULL;
            if (copy == NULL) { Py_DECREF(ref); if (!PyErr_Occurred()) PyErr_NoMemory(); return NULL; }
            d->ml_doc = copy;
        }
        PyObject *fast = PyDescr_NewMethod((PyTypeObject *)state_type, d);
        if (fast == NULL) { Py_DECREF(ref); return NULL; }
        Py_XSETREF(*refs[m], ref);
        int err = PyObject_SetAttrString(base, d->ml_name, fast);
        Py_DECREF(fast);
        if (err < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

#define FAST (METH_FASTCALL | METH_KEYWORDS)
#define M(name, fn) {name, (PyCFunction)(void (*)(void))fn, FAST, NULL}
/* Index order matches the M_ enum: accelerate() pairs them with the Python methods. */
static PyMethodDef state_methods[] = {
    M("get", s_get), M("put", s_put),
    M("get_char", s_get_char), M("put_char", s_put_char),
    M("get_short", s_get_short), M("put_short", s_put_short),
    M("get_unsigned_short", s_get_ushort),
    M("get_int", s_get_int), M("put_int", s_put_int),
    M("get_unsigned_int", s_get_uint),
    M("get_long", s_get_long), M("put_long", s_put_long),
    M("get_float", s_get_float), M("put_float", s_put_float),
    M("get_double", s_get_double), M("put_double", s_put_double),
    {NULL},
};

static PyMemberDef state_members[] = {
    {"_mark", T_OBJECT_EX, offsetof(State, mark), 0, NULL},
    {"_pos", T_OBJECT_EX, offsetof(State, pos), 0, NULL},
    {"_lim", T_OBJECT_EX, offsetof(State, lim), 0, NULL},
    {"_cap", T_OBJECT_EX, offsetof(State, cap), 0, NULL},
    {"_ro", T_OBJECT_EX, offsetof(State, ro), 0, NULL},
    {"_mem", T_OBJECT_EX, offsetof(State, mem), 0, NULL},
    {"_mv", T_OBJECT_EX, offsetof(State, mv), 0, NULL},
    {"_order", T_OBJECT_EX, offsetof(State, order), 0, NULL},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(State, weakreflist), READONLY, NULL},
    {NULL},
};

static int
state_traverse(State *s, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(s));
    Py_VISIT(s->ro);
    Py_VISIT(s->mem);
    Py_VISIT(s->mv);
    Py_VISIT(s->order);
    return 0;
}

static int
state_clear(State *s)
{
    Py_CLEAR(s->mark);
    Py_CLEAR(s->pos);
    Py_CLEAR(s->lim);
    Py_CLEAR(s->cap);
    Py_CLEAR(s->ro);
    Py_CLEAR(s->mem);
    Py_CLEAR(s->mv);
    Py_CLEAR(s->order);
    return 0;
}

static void
state_dealloc(State *s)
{
    PyTypeObject *t = Py_TYPE(s);
    PyObject_GC_UnTrack(s);
    if (s->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)s);
    state_clear(s);
    t->tp_free((PyObject *)s);
    Py_DECREF(t);
}

static PyType_Slot state_slots[] = {
    {Py_tp_doc, "The indexes and memory of a buffer (zcio._state.BufferState in C)."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, state_dealloc},
    {Py_tp_traverse, state_traverse},
    {Py_tp_clear, state_clear},
    {Py_tp_members, state_members},
    {0, NULL},
};

static PyType_Spec state_spec = {
    .name = "zcio._native.BufferState",
    .basicsize = sizeof(State),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = state_slots,
};

/* accelerate(cls, big, little, indirect, docs): replace cls's hot methods by the fast
 * paths, keeping cls's own as their reference; returns the names replaced.  docs maps
 * each name to the docstring its fast path shows (with a text signature). */
static PyObject *
core_accelerate(PyObject *mod, PyObject *args)
{
    PyObject *cls, *big, *little, *indirect, *docs;
    if (!PyArg_ParseTuple(args, "O!OOO!O!", &PyType_Type, &cls, &big, &little,
                          &PyType_Type, &indirect, &PyDict_Type, &docs))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)cls, (PyTypeObject *)state_type)) {
        PyErr_SetString(PyExc_TypeError, "accelerate(): not a BufferState subclass");
        return NULL;
    }
    PyObject *names = PyList_New(0);
    if (names == NULL)
        return NULL;
    for (int m = 0; m < M_COUNT; m++) {
        PyMethodDef *d = &state_methods[m];
        PyObject *ref = PyObject_GetAttrString(cls, d->ml_name);
        if (ref == NULL)
            goto fail;
        PyObject *doc = PyDict_GetItemString(docs, d->ml_name); /* borrowed */
        if (doc != NULL && d->ml_doc == NULL) {
            const char *text = PyUnicode_AsUTF8(doc);
            char *copy = text ? strdup(text) : NULL; /* lives as long as the process */
            if (copy == NULL) { Py_DECREF(ref); if (!PyErr_Occurred()) PyErr_NoMemory(); goto fail; }
            d->ml_doc = copy;
        }
        PyObject *fast = PyDescr_NewMethod((PyTypeObject *)state_type, d);
        if (fast == NULL) { Py_DECREF(ref); goto fail; }
        /* keep the Python function itself: cls.get_int is a plain function on a class */
        Py_XSETREF(fallback[m], ref);
        int err = PyObject_SetAttrString(cls, d->ml_name, fast);
        Py_DECREF(fast);
        if (err < 0)
            goto fail;
        PyObject *name = PyUnicode_FromString(d->ml_name);
        if (name == NULL || PyList_Append(names, name) < 0) { Py_XDECREF(name); goto fail; }
        Py_DECREF(name);
    }
    Py_XSETREF(big_endian, Py_NewRef(big));
    Py_XSETREF(little_endian, Py_NewRef(little));
    Py_XSETREF(indirect_type, (PyTypeObject *)Py_NewRef(indirect));
    Py_CLEAR(plain_type);
    return names;
fail:
    Py_DECREF(names);
    return NULL;
}

static PyMethodDef core_functions[] = {
    {"accelerate_views", core_accelerate_views, METH_VARARGS,
     "accelerate_views(TypedBuffer, {view class: struct code}, docs): the C fast paths "
     "of one element's get/put, with TypedBuffer's own kept as their reference."},
    {"accelerate", core_accelerate, METH_VARARGS,
     "accelerate(cls, BIG_ENDIAN, LITTLE_ENDIAN, indirect_cls): the C fast paths for "
     "cls's hot get/put methods, with cls's own kept as their reference."},
    {NULL},
};

int
zcio_core_init(PyObject *m)
{
    state_type = PyType_FromSpec(&state_spec);
    if (state_type == NULL)
        return -1;
    if (PyModule_AddObjectRef(m, "BufferState", state_type) < 0)
        return -1;
    PyObject *names = PyTuple_New(M_COUNT);
    if (names == NULL)
        return -1;
    for (int i = 0; i < M_COUNT; i++)
        PyTuple_SET_ITEM(names, i, PyUnicode_FromString(state_methods[i].ml_name));
    int err = PyModule_AddObjectRef(m, "ACCELERATED", names);
    Py_DECREF(names);
    if (err < 0)
        return -1;
    return PyModule_AddFunctions(m, core_functions);
}
