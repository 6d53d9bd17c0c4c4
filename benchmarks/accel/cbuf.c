/* The hand-written C prototype of model.py: the same Buf and Pool API, with the index
 * state in C fields and the int decoded straight from the memory (memcpy + bswap). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <stdint.h>

static PyObject *Underflow, *Overflow;

typedef struct {
    PyObject_HEAD
    Py_ssize_t pos, lim, cap;
    char *ptr;
    int ro;
    long refcnt;
    PyObject *owner;  /* the Pool (holding the slab's Py_buffer) */
    Py_ssize_t slot;
} Buf;

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    Py_ssize_t size, nslots, nfree;
    Py_ssize_t *free;
} Pool;

static PyTypeObject BufType, PoolType;

static inline int32_t load_be32(const char *p) {
    uint32_t v; memcpy(&v, p, 4); return (int32_t)__builtin_bswap32(v);
}
static inline void store_be32(char *p, int32_t x) {
    uint32_t v = __builtin_bswap32((uint32_t)x); memcpy(p, &v, 4);
}

static PyObject *Buf_get_int(Buf *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs == 0 || args[0] == Py_None) {
        Py_ssize_t p = self->pos;
        if (p + 4 > self->lim) { PyErr_SetNone(Underflow); return NULL; }
        self->pos = p + 4;
        return PyLong_FromLong(load_be32(self->ptr + p));
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[0]);
    if (i == -1 && PyErr_Occurred()) return NULL;
    if (i < 0 || i > self->lim - 4) { PyErr_SetObject(PyExc_IndexError, args[0]); return NULL; }
    return PyLong_FromLong(load_be32(self->ptr + i));
}

static int as_i32(PyObject *o, int32_t *out) {
    int overflow;
    long v = PyLong_AsLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (overflow || v < INT32_MIN || v > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "int out of range");  /* struct.error in the model */
        return -1;
    }
    *out = (int32_t)v;
    return 0;
}

static PyObject *Buf_put_int(Buf *self, PyObject *const *args, Py_ssize_t nargs) {
    int32_t v;
    if (nargs < 1 || nargs > 2) { PyErr_SetString(PyExc_TypeError, "put_int(v) or put_int(i, v)"); return NULL; }
    if (self->ro) { PyErr_SetString(PyExc_TypeError, "read-only"); return NULL; }
    if (nargs == 1 || args[1] == Py_None) {
        Py_ssize_t p = self->pos;
        if (p + 4 > self->lim) { PyErr_SetNone(Overflow); return NULL; }
        if (as_i32(args[0], &v) < 0) return NULL;
        store_be32(self->ptr + p, v);
        self->pos = p + 4;
    } else {
        Py_ssize_t i = PyLong_AsSsize_t(args[0]);
        if (i == -1 && PyErr_Occurred()) return NULL;
        if (i < 0 || i > self->lim - 4) { PyErr_SetObject(PyExc_IndexError, args[0]); return NULL; }
        if (as_i32(args[1], &v) < 0) return NULL;
        store_be32(self->ptr + i, v);
    }
    return Py_NewRef(self);
}

static PyObject *Buf_position(Buf *self, PyObject *unused) { return PyLong_FromSsize_t(self->pos); }
static PyObject *Buf_clear(Buf *self, PyObject *unused) {
    self->pos = 0; self->lim = self->cap; return Py_NewRef(self);
}

static PyObject *Buf_release(Buf *self, PyObject *unused) {
    if (self->refcnt <= 0) { PyErr_SetString(PyExc_ValueError, "already released"); return NULL; }
    if (--self->refcnt == 0) {
        Pool *pool = (Pool *)self->owner;
        if (pool) pool->free[pool->nfree++] = self->slot;
        self->ptr = NULL; self->lim = self->cap = self->pos = 0;
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

static void Buf_dealloc(Buf *self) {
    Py_XDECREF(self->owner);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Buf_methods[] = {
    {"get_int", (PyCFunction)(void (*)(void))Buf_get_int, METH_FASTCALL, NULL},
    {"put_int", (PyCFunction)(void (*)(void))Buf_put_int, METH_FASTCALL, NULL},
    {"position", (PyCFunction)Buf_position, METH_NOARGS, NULL},
    {"clear", (PyCFunction)Buf_clear, METH_NOARGS, NULL},
    {"release", (PyCFunction)Buf_release, METH_NOARGS, NULL},
    {NULL}
};

static PyTypeObject BufType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cbuf.Buf", .tp_basicsize = sizeof(Buf),
    .tp_flags = Py_TPFLAGS_DEFAULT, .tp_methods = Buf_methods,
    .tp_dealloc = (destructor)Buf_dealloc,
};

static int Pool_init(Pool *self, PyObject *args, PyObject *kw) {
    Py_ssize_t size = 65536, nslots = 64;
    if (!PyArg_ParseTuple(args, "|nn", &size, &nslots)) return -1;
    PyObject *slab = PyByteArray_FromStringAndSize(NULL, size * nslots);
    if (!slab) return -1;
    memset(PyByteArray_AS_STRING(slab), 0, size * nslots);
    int r = PyObject_GetBuffer(slab, &self->view, PyBUF_WRITABLE);
    Py_DECREF(slab);  /* the view holds it */
    if (r < 0) return -1;
    self->size = size; self->nslots = nslots;
    self->free = PyMem_Malloc(sizeof(Py_ssize_t) * nslots);
    if (!self->free) { PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < nslots; i++) self->free[i] = nslots - 1 - i;
    self->nfree = nslots;
    return 0;
}

static PyObject *Pool_allocate(Pool *self, PyObject *unused) {
    if (self->nfree == 0) { PyErr_SetString(PyExc_MemoryError, "pool exhausted"); return NULL; }
    Buf *b = PyObject_New(Buf, &BufType);
    if (!b) return NULL;
    Py_ssize_t slot = self->free[--self->nfree];
    b->ptr = (char *)self->view.buf + slot * self->size;
    b->pos = 0; b->lim = b->cap = self->size; b->ro = 0; b->refcnt = 1;
    b->owner = Py_NewRef(self); b->slot = slot;
    return (PyObject *)b;
}

static void Pool_dealloc(Pool *self) {
    if (self->view.obj) PyBuffer_Release(&self->view);
    PyMem_Free(self->free);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Pool_methods[] = {
    {"allocate", (PyCFunction)Pool_allocate, METH_NOARGS, NULL},
    {NULL}
};

static PyTypeObject PoolType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cbuf.Pool", .tp_basicsize = sizeof(Pool),
    .tp_flags = Py_TPFLAGS_DEFAULT, .tp_methods = Pool_methods,
    .tp_init = (initproc)Pool_init, .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)Pool_dealloc,
};

static PyObject *Buf_wrap(PyObject *mod, PyObject *arg) {
    /* Buf over a writable bytearray (the pool-less case of the benchmarks). */
    Pool *p = (Pool *)PyObject_CallFunction((PyObject *)&PoolType, "nn",
                                            (Py_ssize_t)PyByteArray_Size(arg), (Py_ssize_t)1);
    if (!p) return NULL;
    PyObject *b = Pool_allocate(p, NULL);
    Py_DECREF(p);
    return b;
}

static PyMethodDef mod_methods[] = {
    {"wrap_new", Buf_wrap, METH_O, "A Buf over fresh memory of len(arg) bytes."},
    {NULL}
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "cbuf", NULL, -1, mod_methods};

PyMODINIT_FUNC PyInit_cbuf(void) {
    if (PyType_Ready(&BufType) < 0 || PyType_Ready(&PoolType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    Underflow = PyErr_NewException("cbuf.BufferUnderflow", NULL, NULL);
    Overflow = PyErr_NewException("cbuf.BufferOverflow", NULL, NULL);
    PyModule_AddObject(m, "BufferUnderflow", Underflow);
    PyModule_AddObject(m, "BufferOverflow", Overflow);
    Py_INCREF(&BufType); PyModule_AddObject(m, "Buf", (PyObject *)&BufType);
    Py_INCREF(&PoolType); PyModule_AddObject(m, "Pool", (PyObject *)&PoolType);
    return m;
}
