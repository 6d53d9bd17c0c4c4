/* zcio._native: the module.  See native.h for its parts. */
#include "native.h"

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "zcio._native",
    .m_doc = "zcio's compiled accelerator: the SIGBUS guard for mapped memory and the "
             "buffer core's fast paths (the pure-Python modules are the reference).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (zcio_guard_init(m) < 0 || zcio_core_init(m) < 0 || zcio_io_init(m) < 0
        || zcio_pool_init(m) < 0 || zcio_chan_init(m) < 0
        || zcio_serve_init(m) < 0 || zcio_share_init(m) < 0 || zcio_lock_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
