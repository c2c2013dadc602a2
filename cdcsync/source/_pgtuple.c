/* pgoutput TupleData -> dict, the hot path of the stream decoder.
 *
 * parse(names, kinds, convs, slow, buf, pos) -> (row, end)
 *
 *   names  tuple of column names (str)
 *   kinds  bytes, one per column: how a text value becomes a Python value
 *            0 str            (UTF-8, strict)
 *            1 int            (base 10)
 *            2 convs[i](str)
 *            3 convs[i](str), the str itself when that raises ValueError (dates and times
 *              PostgreSQL writes that Python cannot hold: infinity, BC, year > 9999)
 *            4 convs[i](bytes)
 *   convs  tuple, one callable (or None) per column
 *   slow   exception class raised for anything only the generic Python loop handles: an
 *          unchanged TOAST value, a binary value, a column count other than len(names), a
 *          truncated message
 *
 * Same results as the generated Python parser in pgoutput.py (tests compare the two); every
 * read is bounds-checked, so a malformed message raises `slow`, never reads past the buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
call_one(PyObject *conv, PyObject *arg)
{
    return PyObject_CallOneArg(conv, arg);
}

static PyObject *
parse(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "parse(names, kinds, convs, slow, buf, pos)");
        return NULL;
    }
    PyObject *names = args[0], *kinds = args[1], *convs = args[2], *slow = args[3], *buf = args[4];
    if (!PyTuple_Check(names) || !PyBytes_Check(kinds) || !PyTuple_Check(convs) || !PyBytes_Check(buf)) {
        PyErr_SetString(PyExc_TypeError, "parse: names/convs must be tuples, kinds/buf bytes");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[5]);
    if (pos == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    if (PyBytes_GET_SIZE(kinds) != n || PyTuple_GET_SIZE(convs) != n) {
        PyErr_SetString(PyExc_ValueError, "parse: names, kinds and convs differ in length");
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(buf);
    const unsigned char *kind = (const unsigned char *)PyBytes_AS_STRING(kinds);
    Py_ssize_t size = PyBytes_GET_SIZE(buf);

    if (pos < 0 || pos + 2 > size || ((data[pos] << 8) | data[pos + 1]) != n) {
        PyErr_SetNone(slow);
        return NULL;
    }
    pos += 2;
    PyObject *row = PyDict_New();
    if (row == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (pos >= size)
            goto slow_path;
        PyObject *value;
        unsigned char k = data[pos];
        if (k == 'n') {
            value = Py_NewRef(Py_None);
            pos += 1;
        } else if (k == 't') {
            if (pos + 5 > size)
                goto slow_path;
            uint32_t len = ((uint32_t)data[pos + 1] << 24) | ((uint32_t)data[pos + 2] << 16) |
                           ((uint32_t)data[pos + 3] << 8) | (uint32_t)data[pos + 4];
            Py_ssize_t start = pos + 5;
            if ((Py_ssize_t)len > size - start)
                goto slow_path;
            pos = start + (Py_ssize_t)len;
            const char *s = (const char *)data + start;
            switch (kind[i]) {
            case 0:
                value = PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, NULL);
                break;
            case 1: {
                char digits[64];
                if (len == 0 || len >= sizeof(digits))
                    goto slow_path;
                memcpy(digits, s, len);
                digits[len] = '\0';
                char *end = NULL;
                value = PyLong_FromString(digits, &end, 10);
                if (value != NULL && end != digits + len) {
                    Py_DECREF(value);
                    goto slow_path;
                }
                break;
            }
            case 2:
            case 3: {
                PyObject *text = PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, NULL);
                if (text == NULL) {
                    value = NULL;
                    break;
                }
                value = call_one(PyTuple_GET_ITEM(convs, i), text);
                if (value == NULL && kind[i] == 3 && PyErr_ExceptionMatches(PyExc_ValueError)) {
                    PyErr_Clear();
                    value = Py_NewRef(text);
                }
                Py_DECREF(text);
                break;
            }
            case 4: {
                PyObject *raw = PyBytes_FromStringAndSize(s, (Py_ssize_t)len);
                if (raw == NULL) {
                    value = NULL;
                    break;
                }
                value = call_one(PyTuple_GET_ITEM(convs, i), raw);
                Py_DECREF(raw);
                break;
            }
            default:
                PyErr_Format(PyExc_ValueError, "parse: unknown kind %d", (int)kind[i]);
                value = NULL;
            }
            if (value == NULL) {
                Py_DECREF(row);
                return NULL;
            }
        } else {
            goto slow_path; /* 'u' unchanged TOAST, 'b' binary, or garbage */
        }
        int rc = PyDict_SetItem(row, PyTuple_GET_ITEM(names, i), value);
        Py_DECREF(value);
        if (rc < 0) {
            Py_DECREF(row);
            return NULL;
        }
    }
    return Py_BuildValue("(Nn)", row, pos);

slow_path:
    Py_DECREF(row);
    PyErr_SetNone(slow);
    return NULL;
}

static PyMethodDef methods[] = {
    {"parse", (PyCFunction)(void (*)(void))parse, METH_FASTCALL, "pgoutput TupleData -> (dict, end)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "cdcsync.source._pgtuple", "pgoutput TupleData parser (C)", -1, methods,
};

PyMODINIT_FUNC
PyInit__pgtuple(void)
{
    return PyModule_Create(&moduledef);
}
