/* Stepping over a GGUF vocabulary (`_Reader.skip_strings` in gguf.py), in C.
 *
 * Optional: gguf.py imports it when it was built and runs the same loop in Python otherwise. A vocabulary
 * is hundreds of thousands of length-prefixed strings that no rule reads; only their lengths matter, to
 * find where the next key starts. The function steps over the strings lying wholly inside one window of
 * the file and stops at the first that does not (the Python caller refills the window or reports the
 * string that runs past the file), exactly where the Python loop stops.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static PyObject *skip_strings(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer view;
    Py_ssize_t at, end, count;
    int big;
    if (!PyArg_ParseTuple(args, "y*nnnp", &view, &at, &end, &count, &big)) return NULL;
    if (at < 0 || end > view.len || count < 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "window outside the buffer");
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)view.buf;
    while (count && end - at >= 8) {
        const unsigned char *p = buf + at;
        uint64_t length = 0;
        for (int k = 0; k < 8; k++) length |= (uint64_t)p[big ? k : 7 - k] << (8 * (7 - k));
        if (length > (uint64_t)(end - at - 8)) break; /* runs past the window (or the file) */
        at += 8 + (Py_ssize_t)length;
        count--;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("nn", at, count);
}

static PyMethodDef methods[] = {
    {"skip_strings", skip_strings, METH_VARARGS,
     "skip_strings(buffer, at, end, count, big_endian) -> (at, count left): step over the length-prefixed "
     "strings lying wholly in buffer[at:end]."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gguf", NULL, 0, methods};

PyMODINIT_FUNC PyInit__gguf(void) { return PyModule_Create(&module); }
