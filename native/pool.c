/* zcio._native, the pool: the hot path of PooledAllocator.allocate and of a buffer's
 * retain/release, and the exporter each pooled slot lends its memory through.
 *
 * SlotExport(obj, offset, size) exports bytes [offset, offset + size) of a writable
 * buffer object (a slab's mmap) as flat unsigned bytes, holding an export of obj for as
 * long as it lives: CPython's mmap refuses to close while it does.  It replaces the
 * ctypes array of the pure-Python pool (same role: its reference count above the pool's
 * own tells that a memoryview can still reach the slot), with no ctypes format string to
 * build and no cast on each allocation.
 *
 * accelerate_pool() installs five fast paths, each keeping the Python method it
 * replaces as its reference and slow path (zcio._pool.POOL_REFERENCE):
 *
 *   PooledAllocator.allocate(capacity): a pooled size from this thread's cache, leak
 *     detection off or not sampling this allocation.  It takes the slot, makes the
 *     PooledMemory and ByteBuffer objects (their slots filled directly: no __init__),
 *     counts the allocation in the thread's cache counts (pool_infos) and moves the leak
 *     detector's countdown exactly as zcio._leak.track() would.  Everything else (a bad
 *     or oversize capacity, an empty cache: a new slab or the arena's lock, a sampled
 *     allocation, a subclass) runs the Python method, untouched.
 *   Buffer.release(decrement) / Buffer.retain(increment) on pooled memory with no leak
 *     record: the count changes here; at zero the buffer's views are revoked and the slot
 *     goes back to this thread's cache (if nothing can reach it and the cache has room).
 *     Any error (double release, retain at zero, overflow), other memory kinds, a sampled
 *     buffer, or the arena path run the Python methods.
 *
 *   Buffer.__exit__: the with block's release, through the release fast path.
 *   PooledMemory.__del__: returns at once for released memory; a leak runs Python's.
 *
 * Thread safety: the GIL is held from each check to the change it guards, so no other
 * thread runs in between.  Python code changes a reference count under
 * zcio._memory._RC_LOCK; the fast paths take the Python path whenever that lock is held,
 * so they never interleave with a Python read-modify-write of a count.  Thread caches
 * belong to one thread each, as in the Python code.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

#include "native.h"

/* -- the slot exporter ----------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Py_buffer src;     /* the export of the whole object, held while this lives */
    Py_ssize_t off, len;
} Export;

static PyObject *
export_new(PyTypeObject *t, PyObject *args, PyObject *kw)
{
    PyObject *obj;
    Py_ssize_t off, len;
    static char *names[] = {"obj", "offset", "size", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Onn:SlotExport", names, &obj, &off, &len))
        return NULL;
    Export *e = (Export *)t->tp_alloc(t, 0);
    if (e == NULL)
        return NULL;
    if (PyObject_GetBuffer(obj, &e->src, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        e->src.obj = NULL;
        Py_DECREF(e);
        return NULL;
    }
    if (off < 0 || len < 0 || off > e->src.len - len) {
        PyErr_Format(PyExc_ValueError, "SlotExport: [%zd, %zd + %zd) outside %zd bytes",
                     off, off, len, e->src.len);
        Py_DECREF(e);
        return NULL;
    }
    e->off = off;
    e->len = len;
    return (PyObject *)e;
}

static int
export_getbuffer(Export *e, Py_buffer *view, int flags)
{
    return PyBuffer_FillInfo(view, (PyObject *)e, (char *)e->src.buf + e->off, e->len, 0,
                             flags);
}

static void
export_dealloc(Export *e)
{
    PyTypeObject *t = Py_TYPE(e);
    if (e->src.obj != NULL)
        PyBuffer_Release(&e->src);
    t->tp_free((PyObject *)e);
    Py_DECREF(t);
}

static PyType_Slot export_slots[] = {
    {Py_tp_doc, "SlotExport(obj, offset, size): bytes [offset, offset + size) of obj "
                "exported as flat unsigned bytes; holds an export of obj while alive."},
    {Py_tp_new, export_new},
    {Py_tp_dealloc, export_dealloc},
    {Py_bf_getbuffer, export_getbuffer},
    {0, NULL},
};

static PyType_Spec export_spec = {
    .name = "zcio._native.SlotExport",
    .basicsize = sizeof(Export),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = export_slots,
};

/* -- what accelerate_pool() was told ---------------------------------------------------- */

static PyTypeObject *alloc_type, *memory_type, *buffer_type;
static PyObject *leak_dict;                 /* zcio._leak's globals */
static PyObject *level_disabled, *level_paranoid;
static PyObject *rc_lock;                   /* _RC_LOCK */
static PyObject *fixed_names, *fixed_values; /* ByteBuffer slots every new buffer shares */
static Py_ssize_t *fixed_offsets;
static PyObject *ref_allocate, *ref_release, *ref_retain, *ref_exit;

/* Slot offsets, found from the classes' member descriptors (Python __slots__ and the
 * C fields of BufferState alike). */
static Py_ssize_t o_base, o_views, o_prune, o_released, o_size, o_refcnt, o_slot, o_alloc,
    o_record, o_address;                                       /* PooledMemory */
static Py_ssize_t o_bmem, o_bmv, o_bcap, o_blim;             /* ByteBuffer */
static Py_ssize_t o_arr, o_base_refs, o_klass, o_lists, o_counts; /* _Slot, _ThreadCache */
static PyTypeObject *slot_type, *cache_type;
static PyObject *mv_release, *ref_del;       /* memoryview.release; PooledMemory.__del__ */

static PyObject *s_chunk_size, *s_cached_classes, *s_cache_size, *s_local, *s_cache,
    *s_level, *s_countdown, *s_revoke, *s_recycle;

#define SLOT(o, off) (*(PyObject **)((char *)(o) + (off)))

/* Store v (a new reference) in a slot, dropping what was there. */
static inline void
set_slot(PyObject *o, Py_ssize_t off, PyObject *v)
{
    PyObject *old = SLOT(o, off);
    SLOT(o, off) = v;
    Py_XDECREF(old);
}

Py_ssize_t
zcio_slot_offset(PyTypeObject *t, const char *name)
{
    PyObject *key = PyUnicode_InternFromString(name);
    if (key == NULL)
        return -1;
    PyObject *d = _PyType_Lookup(t, key); /* borrowed */
    Py_DECREF(key);
    if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type)
        || ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX) {
        PyErr_Format(PyExc_TypeError, "zcio._native: %s.%s is not an object slot",
                     t->tp_name, name);
        return -1;
    }
    return ((PyMemberDescrObject *)d)->d_member->offset;
}

/* A Py_ssize_t from a small exact int (small_int); -1 for anything else. */
static inline Py_ssize_t
exact_size(PyObject *o)
{
    long long v;
    return (o != NULL && small_int(o, &v)) ? (Py_ssize_t)v : -1;
}

/* An attribute of an instance's __dict__ as a size, or -1 (no exception). */
static inline Py_ssize_t
dict_size(PyObject *dict, PyObject *name)
{
    return exact_size(PyDict_GetItemWithError(dict, name));
}

/* The size class of n: its index and size, as zcio._pool.size_class. */
static inline Py_ssize_t
class_of(Py_ssize_t n, Py_ssize_t *size)
{
    if (n <= 16) {
        *size = 16;
        return 0;
    }
    int k = 64 - __builtin_clzll((unsigned long long)(n - 1)); /* 2**(k-1) < n <= 2**k */
    Py_ssize_t base = (Py_ssize_t)1 << (k - 1), step = base >> 2;
    Py_ssize_t q = (n - base + step - 1) / step;
    *size = base + q * step;
    return (Py_ssize_t)(k - 5) * 4 + q;
}

/* This thread's _ThreadCache of alloc (a new reference), or NULL with no exception when
 * the thread has none yet. */
static PyObject *
thread_cache(PyObject *dict)
{
    PyObject *local = PyDict_GetItemWithError(dict, s_local);
    if (local == NULL)
        return NULL;
    PyObject *cache = PyObject_GetAttr(local, s_cache);
    if (cache == NULL && PyErr_ExceptionMatches(PyExc_AttributeError))
        PyErr_Clear();
    if (cache != NULL && Py_TYPE(cache) != cache_type)
        Py_CLEAR(cache); /* not the pool's own: the Python path */
    return cache;
}

/* counts[0] += dn, counts[1] += dbytes on a cache's counts list; -1 on error. */
static int
count(PyObject *counts, Py_ssize_t dn, Py_ssize_t dbytes)
{
    if (!PyList_CheckExact(counts) || PyList_GET_SIZE(counts) != 2) {
        PyErr_SetString(PyExc_TypeError, "zcio pool: cache counts are not a 2-list");
        return -1;
    }
    Py_ssize_t n = PyLong_AsSsize_t(PyList_GET_ITEM(counts, 0)); /* may be < 0: a */
    Py_ssize_t b = PyLong_AsSsize_t(PyList_GET_ITEM(counts, 1)); /* thread releases */
    if (PyErr_Occurred())                                          /* others' buffers */
        return -1;
    PyObject *nn = PyLong_FromSsize_t(n + dn), *nb = PyLong_FromSsize_t(b + dbytes);
    if (nn == NULL || nb == NULL) {
        Py_XDECREF(nn);
        Py_XDECREF(nb);
        return -1;
    }
    PyList_SetItem(counts, 0, nn); /* steals; drops the old value */
    PyList_SetItem(counts, 1, nb);
    return 0;
}

int
zcio_counts_locked(void)
{
    /* Not yet told (accelerate_pool() has not run), or a lock whose state cannot be
     * read without a call (not zcio._native.Lock): the Python path. */
    return rc_lock == NULL || zcio_lock_held(rc_lock) != 0;
}

/* -- allocate ------------------------------------------------------------------------- */

static PyObject *
pool_allocate(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kw)
{
    PyObject *dict = NULL, *cache = NULL, *lists = NULL, *counts = NULL, *cd = NULL;
    PyObject *slot = NULL, *mem = NULL, *buf = NULL;
    Py_ssize_t cap, chunk, cached, klass, index, countdown = 0;
    if (kw != NULL || nargs != 1 || Py_TYPE(self) != alloc_type
        || (cap = exact_size(args[0])) < 0)
        goto slow;
    if ((dict = PyObject_GenericGetDict(self, NULL)) == NULL)
        return NULL;
    chunk = dict_size(dict, s_chunk_size);
    cached = dict_size(dict, s_cached_classes);
    if (PyErr_Occurred())
        goto fail;
    if (cap > chunk || (index = class_of(cap, &klass)) >= cached)
        goto slow;
    /* Leak detection: decide without side effects; a sampled allocation goes to Python,
     * whose track() moves the countdown itself. */
    PyObject *level = PyDict_GetItemWithError(leak_dict, s_level);
    if (level == NULL) {
        if (PyErr_Occurred())
            goto fail;
        goto slow;
    }
    if (level != level_disabled) {
        if (level == level_paranoid
            || (countdown = dict_size(leak_dict, s_countdown) - 1) <= 0)
            goto slow;
        if ((cd = PyLong_FromSsize_t(countdown)) == NULL)
            goto fail;
    }
    if ((cache = thread_cache(dict)) == NULL) {
        if (PyErr_Occurred())
            goto fail;
        goto slow;
    }
    lists = Py_XNewRef(SLOT(cache, o_lists));
    counts = Py_XNewRef(SLOT(cache, o_counts));
    if (lists == NULL || counts == NULL || !PyList_CheckExact(lists)
        || index >= PyList_GET_SIZE(lists))
        goto slow;
    PyObject *free = PyList_GET_ITEM(lists, index);
    Py_ssize_t n;
    if (!PyList_CheckExact(free) || (n = PyList_GET_SIZE(free)) == 0)
        goto slow; /* the arena: its lock, perhaps a new slab */
    /* Take the slot first, as the Python path does: making objects can run the garbage
     * collector, whose finalizers may give slots back to this very list. */
    PyObject *arr;
    slot = PyList_GET_ITEM(free, n - 1);
    if (Py_TYPE(slot) != slot_type || (arr = SLOT(slot, o_arr)) == NULL) {
        slot = NULL;
        goto slow;
    }
    Py_SET_SIZE((PyVarObject *)free, n - 1); /* list.pop(): its reference becomes ours */
    Py_INCREF(free); /* held while the collector may run */
    if (cd != NULL) /* an existing key: no allocation, cannot fail */
        PyDict_SetItem(leak_dict, s_countdown, cd);
    Py_INCREF(arr);
    PyObject *mv = PyMemoryView_FromObject(arr);
    Py_DECREF(arr);
    PyObject *size = PyLong_FromSsize_t(cap), *views = PyList_New(0);
    PyObject *pr = PyLong_FromLong(8), *one = PyLong_FromLong(1), *none = PyLong_FromLong(-1);
    mem = memory_type->tp_alloc(memory_type, 0);
    if (mv == NULL || size == NULL || views == NULL || pr == NULL || one == NULL
        || none == NULL || mem == NULL) {
        Py_XDECREF(mv);
        Py_XDECREF(size);
        Py_XDECREF(views);
        Py_XDECREF(pr);
        Py_XDECREF(one);
        Py_XDECREF(none);
        if (mem != NULL) { /* holds no slot: its __del__ finds nothing to give back */
            SLOT(mem, o_slot) = Py_NewRef(Py_None);
            SLOT(mem, o_released) = Py_NewRef(Py_True);
        }
        (void)PyList_Append(free, slot); /* the slot back (error kept unless this fails) */
        Py_DECREF(free);
        Py_CLEAR(slot);
        goto fail;
    }
    Py_DECREF(free);
    SLOT(mem, o_base) = mv;
    SLOT(mem, o_views) = views;
    SLOT(mem, o_prune) = pr;
    SLOT(mem, o_released) = Py_NewRef(Py_False);
    SLOT(mem, o_size) = Py_NewRef(size);
    SLOT(mem, o_refcnt) = one;
    SLOT(mem, o_slot) = slot; /* ours: handed over */
    SLOT(mem, o_alloc) = Py_NewRef(self);
    SLOT(mem, o_record) = Py_NewRef(Py_None);
    SLOT(mem, o_address) = none;
    /* From here a failure drops mem, whose __del__ gives the slot back and uncounts. */
    if (count(counts, 1, cap) < 0) {
        Py_DECREF(size);
        goto fail;
    }
    /* A request that fills its class uses the block's own view, as the Python path. */
    PyObject *view = cap == klass ? Py_NewRef(mv)
                                  : PyObject_CallMethod(mem, "view", "nn", (Py_ssize_t)0, cap);
    if (view == NULL || (buf = buffer_type->tp_alloc(buffer_type, 0)) == NULL) {
        Py_XDECREF(view);
        Py_DECREF(size);
        goto fail;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(fixed_values); i++)
        SLOT(buf, fixed_offsets[i]) = Py_NewRef(PyTuple_GET_ITEM(fixed_values, i));
    SLOT(buf, o_bmem) = mem;
    mem = NULL;
    SLOT(buf, o_bmv) = view;
    SLOT(buf, o_bcap) = Py_NewRef(size);
    SLOT(buf, o_blim) = size;
    Py_DECREF(dict);
    Py_DECREF(cache);
    Py_DECREF(lists);
    Py_DECREF(counts);
    Py_XDECREF(cd);
    return buf;
slow:
    Py_XDECREF(dict);
    Py_XDECREF(cache);
    Py_XDECREF(lists);
    Py_XDECREF(counts);
    Py_XDECREF(cd);
    return call_reference(ref_allocate, self, args, nargs, kw);
fail:
    Py_XDECREF(dict);
    Py_XDECREF(cache);
    Py_XDECREF(lists);
    Py_XDECREF(counts);
    Py_XDECREF(cd);
    Py_XDECREF(mem);
    return NULL;
}

/* -- retain and release ------------------------------------------------------------------ */

/* The pooled memory of a buffer whose count the fast paths may change, and the change
 * n; NULL (no exception) to take the Python path. */
static PyObject *
fast_memory(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kw,
            Py_ssize_t *n)
{
    if (kw != NULL || nargs > 1)
        return NULL;
    *n = nargs ? exact_size(args[0]) : 1;
    if (*n < 1)
        return NULL;
    PyObject *mem = SLOT(self, o_bmem);
    if (mem == NULL || Py_TYPE(mem) != memory_type || SLOT(mem, o_record) != Py_None)
        return NULL;
    return mem;
}

static PyObject *
buffer_retain(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kw)
{
    Py_ssize_t n, rc;
    PyObject *mem = fast_memory(self, args, nargs, kw, &n);
    if (mem == NULL || (rc = exact_size(SLOT(mem, o_refcnt))) <= 0
        || n > (Py_ssize_t)0x7FFFFFFF - rc)
        return call_reference(ref_retain, self, args, nargs, kw);
    if (zcio_counts_locked())
        return call_reference(ref_retain, self, args, nargs, kw);
    PyObject *v = PyLong_FromSsize_t(rc + n);
    if (v == NULL)
        return NULL;
    set_slot(mem, o_refcnt, v);
    return Py_NewRef(self);
}

/* Give a released slot back: this thread's cache if nothing can reach it and there is
 * room, else the allocator's _recycle (the arena, or quarantine).  -1 on error. */
static int
recycle(PyObject *alloc, PyObject *slot, PyObject *size)
{
    PyObject *dict = NULL, *cache = NULL, *lists = NULL, *counts = NULL, *arr = NULL;
    int done = 0, err = 0;
    Py_ssize_t cap = exact_size(size), klass, room, cached, base_refs;
    if (Py_TYPE(alloc) != alloc_type || cap < 0
        || (dict = PyObject_GenericGetDict(alloc, NULL)) == NULL)
        goto slow;
    cached = dict_size(dict, s_cached_classes);
    room = dict_size(dict, s_cache_size);
    if (PyErr_Occurred() || (cache = thread_cache(dict)) == NULL)
        goto slow;
    if (Py_TYPE(slot) != slot_type || (arr = Py_XNewRef(SLOT(slot, o_arr))) == NULL)
        goto slow;
    /* _Slot.reachable(): sys.getrefcount(slot.arr) counts the caller's reference too,
     * as Py_REFCNT does here with ours held. */
    base_refs = exact_size(SLOT(slot, o_base_refs));
    klass = exact_size(SLOT(slot, o_klass));
    int reachable = Py_REFCNT(arr) > base_refs;
    Py_CLEAR(arr); /* before the Python path, which counts the references again */
    if (PyErr_Occurred() || base_refs < 0 || klass < 0 || klass >= cached || reachable)
        goto slow;
    lists = Py_XNewRef(SLOT(cache, o_lists));
    counts = Py_XNewRef(SLOT(cache, o_counts));
    if (lists == NULL || counts == NULL)
        goto slow;
    PyObject *free;
    if (!PyList_CheckExact(lists) || klass >= PyList_GET_SIZE(lists)
        || !PyList_CheckExact(free = PyList_GET_ITEM(lists, klass))
        || PyList_GET_SIZE(free) >= room)
        goto slow;
    if (PyList_Append(free, slot) < 0) {
        err = -1;
        goto out;
    }
    if (count(counts, -1, -cap) < 0) {
        PyList_SetSlice(free, PyList_GET_SIZE(free) - 1, PyList_GET_SIZE(free), NULL);
        err = -1;
        goto out;
    }
    done = 1;
slow:
    if (!done) {
        PyErr_Clear(); /* whatever the checks met, the Python path meets again */
        PyObject *r = PyObject_CallMethodObjArgs(alloc, s_recycle, slot, size, NULL);
        if (r == NULL)
            err = -1;
        Py_XDECREF(r);
    }
out:
    Py_XDECREF(dict);
    Py_XDECREF(cache);
    Py_XDECREF(lists);
    Py_XDECREF(counts);
    Py_XDECREF(arr);
    return err;
}

static PyObject *
buffer_release(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kw)
{
    Py_ssize_t n = 0, rc;
    PyObject *mem = fast_memory(self, args, nargs, kw, &n);
    if (mem == NULL && n >= 1 && (mem = SLOT(self, o_bmem)) != NULL) {
        PyObject *r = zcio_share_release(mem, n); /* a shared buffer's memory */
        if (r != NULL || PyErr_Occurred())
            return r;
        mem = NULL;
    }
    if (mem == NULL || (rc = exact_size(SLOT(mem, o_refcnt))) < n)
        return call_reference(ref_release, self, args, nargs, kw); /* raises past zero */
    if (zcio_counts_locked())
        return call_reference(ref_release, self, args, nargs, kw);
    PyObject *v = PyLong_FromSsize_t(rc - n);
    if (v == NULL)
        return NULL;
    set_slot(mem, o_refcnt, v);
    if (rc > n)
        Py_RETURN_FALSE;
    set_slot(mem, o_released, Py_NewRef(Py_True));
    /* Revoke: the block's own view here; any other view through Memory._revoke. */
    Py_INCREF(mem); /* held across the Python calls below, whatever they drop */
    PyObject *r;
    PyObject *views = SLOT(mem, o_views), *base = SLOT(mem, o_base);
    if (views != NULL && PyList_CheckExact(views) && PyList_GET_SIZE(views) == 0
        && base != NULL && PyMemoryView_Check(base))
        r = PyObject_Vectorcall(mv_release, &base, 1, NULL);
    else
        r = PyObject_CallMethodNoArgs(mem, s_revoke);
    if (r == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_BufferError))
            goto fail;
        PyErr_Clear(); /* exported further: stays valid and alive (quarantine) */
    }
    Py_XDECREF(r);
    /* Free: the slot goes back (PooledMemory._free). */
    PyObject *slot = SLOT(mem, o_slot);
    if (slot != NULL && slot != Py_None) {
        SLOT(mem, o_slot) = Py_NewRef(Py_None);
        PyObject *alloc = SLOT(mem, o_alloc), *size = SLOT(mem, o_size);
        int err = (alloc == NULL || size == NULL) ? -1 : recycle(alloc, slot, size);
        if (err < 0 && !PyErr_Occurred())
            PyErr_SetString(PyExc_AttributeError, "pooled memory without _alloc or size");
        Py_DECREF(slot);
        if (err < 0)
            goto fail;
    }
    Py_DECREF(mem);
    Py_RETURN_TRUE;
fail:
    Py_DECREF(mem);
    return NULL;
}

/* Buffer.__exit__: release the with block's reference (none left: nothing to do). */
static PyObject *
buffer_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kw)
{
    Py_ssize_t n;
    PyObject *mem = fast_memory(self, NULL, 0, kw, &n);
    if (mem == NULL || exact_size(SLOT(mem, o_refcnt)) < 0)
        return call_reference(ref_exit, self, args, nargs, kw);
    if (exact_size(SLOT(mem, o_refcnt)) > 0) {
        PyObject *r = buffer_release(self, NULL, 0, NULL);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
}

/* PooledMemory.__del__: nothing to do once released (the slot went back); a buffer
 * collected unreleased (a leak) runs the Python method. */
static PyObject *
memory_del(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kw)
{
    PyObject *slot = SLOT(self, o_slot), *released = SLOT(self, o_released);
    if (kw == NULL && nargs == 0 && (slot == Py_None || released == Py_True))
        Py_RETURN_NONE;
    return call_reference(ref_del, self, args, nargs, kw);
}

/* -- installing ------------------------------------------------------------------------- */

static PyMethodDef pool_methods[] = {
    {"allocate", (PyCFunction)(void (*)(void))pool_allocate, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {"release", (PyCFunction)(void (*)(void))buffer_release, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {"retain", (PyCFunction)(void (*)(void))buffer_retain, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {"__del__", (PyCFunction)(void (*)(void))memory_del, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {"__exit__", (PyCFunction)(void (*)(void))buffer_exit, METH_FASTCALL | METH_KEYWORDS,
     NULL},
};

/* Replace cls.<d->ml_name> by the fast path d; *ref keeps what it replaced. */
static int
install(PyObject *cls, PyMethodDef *d, PyObject **ref, PyObject *docs)
{
    PyObject *old = PyObject_GetAttrString(cls, d->ml_name);
    if (old == NULL)
        return -1;
    PyObject *doc = PyDict_GetItemString(docs, d->ml_name); /* borrowed */
    if (doc != NULL && d->ml_doc == NULL) {
        const char *text = PyUnicode_AsUTF8(doc);
        char *copy = text ? strdup(text) : NULL; /* lives as long as the process */
        if (copy == NULL) {
            Py_DECREF(old);
            if (!PyErr_Occurred())
                PyErr_NoMemory();
            return -1;
        }
        d->ml_doc = copy;
    }
    PyObject *fast = PyDescr_NewMethod((PyTypeObject *)cls, d);
    if (fast == NULL) {
        Py_DECREF(old);
        return -1;
    }
    Py_XSETREF(*ref, old);
    int err = PyObject_SetAttrString(cls, d->ml_name, fast);
    Py_DECREF(fast);
    return err;
}

/* accelerate_pool(PooledAllocator, PooledMemory, Buffer, ByteBuffer, _Slot, _ThreadCache,
 *                 fixed, _leak, DISABLED, PARANOID, _RC_LOCK, docs) */
static PyObject *
pool_accelerate(PyObject *mod, PyObject *args)
{
    PyObject *ac, *mc, *base, *bc, *sc, *cc, *fixed, *leak, *dis, *par, *lock, *docs;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!O!O!OOOOO!", &PyType_Type, &ac, &PyType_Type,
                          &mc, &PyType_Type, &base, &PyType_Type, &bc, &PyType_Type, &sc,
                          &PyType_Type, &cc, &PyDict_Type, &fixed, &leak, &dis, &par, &lock,
                          &PyDict_Type, &docs))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)bc, (PyTypeObject *)base)
        || ((PyTypeObject *)mc)->tp_dictoffset != 0 || ((PyTypeObject *)bc)->tp_dictoffset != 0) {
        PyErr_SetString(PyExc_TypeError, "accelerate_pool(): classes of the wrong shape");
        return NULL;
    }
    PyTypeObject *m = (PyTypeObject *)mc, *b = (PyTypeObject *)bc;
    if ((o_base = zcio_slot_offset(m, "_base")) < 0
        || (o_views = zcio_slot_offset(m, "_views")) < 0
        || (o_prune = zcio_slot_offset(m, "_prune_at")) < 0
        || (o_released = zcio_slot_offset(m, "released")) < 0
        || (o_size = zcio_slot_offset(m, "size")) < 0
        || (o_refcnt = zcio_slot_offset(m, "refcnt")) < 0
        || (o_slot = zcio_slot_offset(m, "_slot")) < 0
        || (o_alloc = zcio_slot_offset(m, "_alloc")) < 0
        || (o_record = zcio_slot_offset(m, "_record")) < 0
        || (o_address = zcio_slot_offset(m, "_address")) < 0
        || (o_bmem = zcio_slot_offset((PyTypeObject *)base, "_mem")) < 0
        || (o_bmv = zcio_slot_offset(b, "_mv")) < 0
        || (o_bcap = zcio_slot_offset(b, "_cap")) < 0
        || (o_blim = zcio_slot_offset(b, "_lim")) < 0
        || (o_arr = zcio_slot_offset((PyTypeObject *)sc, "arr")) < 0
        || (o_base_refs = zcio_slot_offset((PyTypeObject *)sc, "base_refs")) < 0
        || (o_klass = zcio_slot_offset((PyTypeObject *)sc, "klass")) < 0
        || (o_lists = zcio_slot_offset((PyTypeObject *)cc, "lists")) < 0
        || (o_counts = zcio_slot_offset((PyTypeObject *)cc, "counts")) < 0)
        return NULL;
    if (mv_release == NULL
        && (mv_release = PyObject_GetAttrString((PyObject *)&PyMemoryView_Type, "release"))
               == NULL)
        return NULL;
    PyObject *names = PyDict_Keys(fixed), *values = PyDict_Values(fixed);
    PyObject *tn = names ? PyList_AsTuple(names) : NULL;
    PyObject *tv = values ? PyList_AsTuple(values) : NULL;
    Py_XDECREF(names);
    Py_XDECREF(values);
    if (tn == NULL || tv == NULL) {
        Py_XDECREF(tn);
        Py_XDECREF(tv);
        return NULL;
    }
    Py_ssize_t nf = PyTuple_GET_SIZE(tn);
    Py_ssize_t *offs = PyMem_Malloc((nf + 1) * sizeof(Py_ssize_t));
    if (offs == NULL) {
        Py_DECREF(tn);
        Py_DECREF(tv);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < nf; i++) {
        const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(tn, i));
        if (name == NULL || (offs[i] = zcio_slot_offset(b, name)) < 0) {
            PyMem_Free(offs);
            Py_DECREF(tn);
            Py_DECREF(tv);
            return NULL;
        }
    }
    PyObject *ld = PyModule_GetDict(leak); /* borrowed */
    if (ld == NULL) {
        PyMem_Free(offs);
        Py_DECREF(tn);
        Py_DECREF(tv);
        return NULL;
    }
    PyMem_Free(fixed_offsets);
    fixed_offsets = offs;
    Py_XSETREF(fixed_names, tn);
    Py_XSETREF(fixed_values, tv);
    Py_XSETREF(rc_lock, Py_NewRef(lock));
    Py_XSETREF(leak_dict, Py_NewRef(ld));
    Py_XSETREF(level_disabled, Py_NewRef(dis));
    Py_XSETREF(level_paranoid, Py_NewRef(par));
    Py_XSETREF(alloc_type, (PyTypeObject *)Py_NewRef(ac));
    Py_XSETREF(memory_type, (PyTypeObject *)Py_NewRef(mc));
    Py_XSETREF(buffer_type, (PyTypeObject *)Py_NewRef(bc));
    Py_XSETREF(slot_type, (PyTypeObject *)Py_NewRef(sc));
    Py_XSETREF(cache_type, (PyTypeObject *)Py_NewRef(cc));
    if (install(ac, &pool_methods[0], &ref_allocate, docs) < 0
        || install(base, &pool_methods[1], &ref_release, docs) < 0
        || install(base, &pool_methods[2], &ref_retain, docs) < 0
        || install(mc, &pool_methods[3], &ref_del, docs) < 0
        || install(base, &pool_methods[4], &ref_exit, docs) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef pool_functions[] = {
    {"accelerate_pool", pool_accelerate, METH_VARARGS,
     "accelerate_pool(PooledAllocator, PooledMemory, Buffer, ByteBuffer, _Slot, _ThreadCache, "
     "fixed slots, "
     "zcio._leak, DISABLED, PARANOID, _RC_LOCK, docs): the C hot path of pooled "
     "allocate and of retain/release, the Python methods kept as their reference."},
    {NULL},
};

int
zcio_pool_init(PyObject *m)
{
    const zcio_name names[] = {
        {&s_chunk_size, "chunk_size"}, {&s_cached_classes, "_cached_classes"},
        {&s_cache_size, "cache_size"}, {&s_local, "_local"}, {&s_cache, "cache"},
        {&s_level, "_level"}, {&s_countdown, "_countdown"}, {&s_revoke, "_revoke"},
        {&s_recycle, "_recycle"},
    };
    if (intern_names(names, sizeof(names) / sizeof(names[0])) < 0)
        return -1;
    PyObject *t = PyType_FromSpec(&export_spec);
    if (t == NULL)
        return -1;
    int err = PyModule_AddObjectRef(m, "SlotExport", t);
    Py_DECREF(t);
    if (err < 0)
        return -1;
    return PyModule_AddFunctions(m, pool_functions);
}
