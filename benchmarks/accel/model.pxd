# Cython's augmenting declarations for model.py (pure-Python mode: the .py stays Python).
cimport cython

@cython.locals(v="unsigned int")
cdef long _load(const unsigned char[::1] b, Py_ssize_t i)

cdef int _store(unsigned char[::1] b, Py_ssize_t i, long v) except -1

cdef class Buf:
    cdef public Py_ssize_t _pos, _lim, _cap
    cdef public object _mv
    cdef unsigned char[::1] _bytes
    cdef public bint _ro
    cdef public Py_ssize_t _refcnt
    cdef public object _pool
    cdef public Py_ssize_t _slot

cdef class Pool:
    cdef public object _slab, _mv
    cdef public list _free
    cdef public Py_ssize_t _size
