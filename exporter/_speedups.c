/* Optional C versions of hot loops; the pure-Python versions stay the reference.
 *
 *   copy_block(rows, cols, mode, slow, decimal_type) -> bytes
 *       The bulk-load text of ``rows`` (dicts) for the columns ``cols``, UTF-8 encoded: exactly
 *       ``connectors.sql.loaders._copy_block(rows, cols, fmt).encode("utf-8")`` for the text format
 *       ``fmt`` whose ``code`` is ``mode`` (0 = PostgreSQL COPY text, 1 = MySQL LOAD DATA text) and
 *       whose ``slow`` is ``slow``. Values of the types the format writes itself are written here;
 *       any other value is handed to ``slow(value)``, which returns its (escaped) text or raises.
 *
 *   digit_run(data, n) -> bool
 *       Whether the bytes ``data`` hold a run of ``n`` or more ASCII digits (exporter.fastjson).
 *
 *   parse_fields(top, cells, flat, bools, form_id, sid) -> (values, text, subforms, media) | None
 *       The field loop of ``exporter.records.parse_submission`` (see ``_ParsePlan.c_top``): the
 *       same dicts, SubformRow and MediaRef objects (media not yet made unique). Dates, times and
 *       date-times of the exact ISO shapes, texts and one-name media values are typed here; every
 *       other value goes through the field's Python converter. ``None`` when the submission has a
 *       shape the Python loop handles itself (errors included): the caller then runs it.
 *       ``setup_parse(SubformRow, MediaRef, text_of)`` first.
 *
 * Tests compare both with the Python versions (tests/test_speedups.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
} Buf;

static int buf_grow(Buf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) {
        if (cap > PY_SSIZE_T_MAX / 2) { PyErr_NoMemory(); return -1; }
        cap *= 2;
    }
    char *d = PyMem_Realloc(b->data, (size_t)cap);
    if (d == NULL) { PyErr_NoMemory(); return -1; }
    b->data = d;
    b->cap = cap;
    return 0;
}

static inline int buf_put(Buf *b, const char *s, Py_ssize_t n) {
    if (buf_grow(b, n) < 0) return -1;
    memcpy(b->data + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

static inline int buf_byte(Buf *b, char c) {
    if (b->len >= b->cap && buf_grow(b, 1) < 0) return -1;
    b->data[b->len++] = c;
    return 0;
}

/* The UTF-8 of ``s`` with the format's escapes: backslash, newline, carriage return and tab
 * (and NUL for MySQL) become a backslash and a letter, as TextFormat.escape writes them. */
static int put_escaped(Buf *b, PyObject *s, int mode) {
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (u == NULL) return -1;
    Py_ssize_t i, start = 0;
    if (buf_grow(b, n) < 0) return -1;
    for (i = 0; i < n; i++) {
        char c = u[i], e;
        switch (c) {
        case '\\': e = '\\'; break;
        case '\n': e = 'n'; break;
        case '\r': e = 'r'; break;
        case '\t': e = 't'; break;
        case '\0':
            if (mode == 1) { e = '0'; break; }
            continue;
        default:
            continue;
        }
        if (buf_put(b, u + start, i - start) < 0) return -1;
        if (buf_byte(b, '\\') < 0 || buf_byte(b, e) < 0) return -1;
        start = i + 1;
    }
    return buf_put(b, u + start, n - start);
}

/* A str returned by ``slow`` or ``str()``: already the field's text. */
static int put_text(Buf *b, PyObject *s) {
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "a bulk-load text converter returned %.100s, not str", Py_TYPE(s)->tp_name);
        return -1;
    }
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (u == NULL) return -1;
    return buf_put(b, u, n);
}

static int put_call(Buf *b, PyObject *fn, PyObject *v) {
    PyObject *s = PyObject_CallOneArg(fn, v);
    if (s == NULL) return -1;
    int r = put_text(b, s);
    Py_DECREF(s);
    return r;
}

static int put_str_of(Buf *b, PyObject *v) {
    PyObject *s = PyObject_Str(v);
    if (s == NULL) return -1;
    int r = put_text(b, s);
    Py_DECREF(s);
    return r;
}

static int put_isoformat(Buf *b, PyObject *v, const char *sep) {
    PyObject *s = sep ? PyObject_CallMethod(v, "isoformat", "s", sep) : PyObject_CallMethod(v, "isoformat", NULL);
    if (s == NULL) return -1;
    int r = put_text(b, s);
    Py_DECREF(s);
    return r;
}

static int put_fmt_time(Buf *b, int h, int m, int s, int us) {
    char tmp[32];
    int n = us ? snprintf(tmp, sizeof tmp, "%02d:%02d:%02d.%06d", h, m, s, us)
               : snprintf(tmp, sizeof tmp, "%02d:%02d:%02d", h, m, s);
    return buf_put(b, tmp, n);
}

static int put_fmt_date(Buf *b, int y, int mo, int d) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%04d-%02d-%02d", y, mo, d);
    return buf_put(b, tmp, n);
}

static int put_value(Buf *b, PyObject *v, int mode, PyObject *slow, PyObject *decimal_type) {
    PyTypeObject *t = Py_TYPE(v);
    if (v == Py_None) return buf_put(b, "\\N", 2);
    if (t == &PyUnicode_Type) return put_escaped(b, v, mode);
    if (v == Py_True) return buf_byte(b, mode == 0 ? 't' : '1');
    if (v == Py_False) return buf_byte(b, mode == 0 ? 'f' : '0');
    if (t == &PyLong_Type) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (x == -1 && PyErr_Occurred()) return -1;
        if (overflow) return put_str_of(b, v);
        char tmp[32];
        int n = snprintf(tmp, sizeof tmp, "%lld", x);
        return buf_put(b, tmp, n);
    }
    if (t == PyDateTimeAPI->DateTimeType) {
        if (PyDateTime_DATE_GET_TZINFO(v) != Py_None) return put_isoformat(b, v, mode == 0 ? "T" : " ");
        if (put_fmt_date(b, PyDateTime_GET_YEAR(v), PyDateTime_GET_MONTH(v), PyDateTime_GET_DAY(v)) < 0) return -1;
        if (buf_byte(b, mode == 0 ? 'T' : ' ') < 0) return -1;
        return put_fmt_time(b, PyDateTime_DATE_GET_HOUR(v), PyDateTime_DATE_GET_MINUTE(v),
                            PyDateTime_DATE_GET_SECOND(v), PyDateTime_DATE_GET_MICROSECOND(v));
    }
    if (t == PyDateTimeAPI->DateType)
        return put_fmt_date(b, PyDateTime_GET_YEAR(v), PyDateTime_GET_MONTH(v), PyDateTime_GET_DAY(v));
    if (t == PyDateTimeAPI->TimeType) {
        if (PyDateTime_TIME_GET_TZINFO(v) != Py_None) return put_isoformat(b, v, NULL);
        return put_fmt_time(b, PyDateTime_TIME_GET_HOUR(v), PyDateTime_TIME_GET_MINUTE(v),
                            PyDateTime_TIME_GET_SECOND(v), PyDateTime_TIME_GET_MICROSECOND(v));
    }
    if (mode == 0) {
        if (t == &PyFloat_Type) {
            char *s = PyOS_double_to_string(PyFloat_AS_DOUBLE(v), 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
            if (s == NULL) return -1;
            int r = buf_put(b, s, (Py_ssize_t)strlen(s));
            PyMem_Free(s);
            return r;
        }
        if ((PyObject *)t == decimal_type) return put_str_of(b, v);
    }
    return put_call(b, slow, v);
}

static PyObject *copy_block(PyObject *self, PyObject *args) {
    PyObject *rows, *cols, *slow, *decimal_type;
    int mode;
    if (!PyArg_ParseTuple(args, "O!O!iOO:copy_block", &PyList_Type, &rows, &PyList_Type, &cols, &mode, &slow,
                          &decimal_type))
        return NULL;
    if (mode != 0 && mode != 1) {
        PyErr_SetString(PyExc_ValueError, "mode is 0 (PostgreSQL COPY) or 1 (MySQL LOAD DATA)");
        return NULL;
    }
    Buf b = {NULL, 0, 0};
    /* hold the lists' items: a slow() call could change the lists under us */
    Py_INCREF(rows);
    Py_INCREF(cols);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(rows); i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        Py_INCREF(row);
        if (!PyDict_Check(row)) {
            PyErr_Format(PyExc_TypeError, "row %zd is a %.100s, not a dict", i, Py_TYPE(row)->tp_name);
            Py_DECREF(row);
            goto fail;
        }
        for (Py_ssize_t j = 0; j < PyList_GET_SIZE(cols); j++) {
            if (j && buf_byte(&b, '\t') < 0) { Py_DECREF(row); goto fail; }
            PyObject *v = PyDict_GetItemWithError(row, PyList_GET_ITEM(cols, j));
            if (v == NULL) {
                if (PyErr_Occurred()) { Py_DECREF(row); goto fail; }
                v = Py_None;
            }
            Py_INCREF(v);
            int r = put_value(&b, v, mode, slow, decimal_type);
            Py_DECREF(v);
            if (r < 0) { Py_DECREF(row); goto fail; }
        }
        Py_DECREF(row);
        if (buf_byte(&b, '\n') < 0) goto fail;
    }
    Py_DECREF(rows);
    Py_DECREF(cols);
    PyObject *out = PyBytes_FromStringAndSize(b.data ? b.data : "", b.len);
    PyMem_Free(b.data);
    return out;
fail:
    Py_DECREF(rows);
    Py_DECREF(cols);
    PyMem_Free(b.data);
    return NULL;
}

static PyObject *digit_run(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "y*n:digit_run", &view, &n)) return NULL;
    const unsigned char *p = view.buf;
    Py_ssize_t len = view.len, i = 0, found = n <= 0;
    /* look at the last byte of the candidate run p[i..i+n-1]: not a digit -> no run of n holds it,
     * skip past it; a digit -> walk back over the digits before it: all of them -> found, else the
     * next candidate starts after the last non-digit (about one byte looked at per n on text) */
    while (!found && i + n <= len) {
        Py_ssize_t j = i + n - 1;
        if (p[j] < '0' || p[j] > '9') {
            i = j + 1;
            continue;
        }
        Py_ssize_t k = j;
        while (k > i && p[k - 1] >= '0' && p[k - 1] <= '9') k--;
        if (k == i)
            found = 1;
        else
            i = k;
    }
    PyBuffer_Release(&view);
    return PyBool_FromLong(found);
}

/* ------------------------------------------------------------------------------------------ */
/* parse_fields                                                                                 */
/* ------------------------------------------------------------------------------------------ */

enum { K_TEXT = 0, K_CALL = 1, K_DATE = 2, K_TIME = 3, K_DATETIME = 4, K_MEDIA = 5 };

static PyObject *SubformRowType = NULL, *MediaRefType = NULL, *text_of_fn = NULL, *str_value = NULL;

static PyObject *setup_parse(PyObject *self, PyObject *args) {
    PyObject *a, *b, *c;
    if (!PyArg_ParseTuple(args, "OOO:setup_parse", &a, &b, &c)) return NULL;
    Py_INCREF(a);
    Py_INCREF(b);
    Py_INCREF(c);
    Py_XSETREF(SubformRowType, a);
    Py_XSETREF(MediaRefType, b);
    Py_XSETREF(text_of_fn, c);
    Py_RETURN_NONE;
}

static inline int is_space(unsigned char c) {
    /* str.isspace() over ASCII */
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static inline int dig(const char *p, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 1;
}

/* A date, time or date-time of the exact ISO shape the Python fast path accepts (ASCII, no blanks
 * around), made here; NULL without an error for anything else (the Python converter decides). */
static PyObject *iso_temporal(PyObject *t, int kind) {
    if (!PyUnicode_IS_ASCII(t)) return NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(t);
    const char *p = (const char *)PyUnicode_1BYTE_DATA(t);
    int y, mo, d, h, mi, sec = 0;
    PyObject *v = NULL;
    if (kind == K_DATE) {
        if (n != 10 || p[4] != '-' || p[7] != '-' || !dig(p, 4, &y) || !dig(p + 5, 2, &mo) || !dig(p + 8, 2, &d))
            return NULL;
        v = PyDate_FromDate(y, mo, d);
    } else if (kind == K_TIME) {
        if ((n != 5 && n != 8) || p[2] != ':' || !dig(p, 2, &h) || !dig(p + 3, 2, &mi)) return NULL;
        if (n == 8 && (p[5] != ':' || !dig(p + 6, 2, &sec))) return NULL;
        v = PyTime_FromTime(h, mi, sec, 0);
    } else {
        if ((n != 16 && n != 19) || p[4] != '-' || p[7] != '-' || (p[10] != ' ' && p[10] != 'T') || p[13] != ':'
            || !dig(p, 4, &y) || !dig(p + 5, 2, &mo) || !dig(p + 8, 2, &d) || !dig(p + 11, 2, &h)
            || !dig(p + 14, 2, &mi))
            return NULL;
        if (n == 19 && (p[16] != ':' || !dig(p + 17, 2, &sec))) return NULL;
        v = PyDateTime_FromDateAndTime(y, mo, d, h, mi, sec, 0);
    }
    if (v == NULL) PyErr_Clear(); /* out of range: the Python converter says what it is */
    return v;
}

/* One-name media value (no comma), ASCII: the stripped name in a 1-tuple, or () when blank. */
static PyObject *one_media(PyObject *t) {
    if (!PyUnicode_IS_ASCII(t)) return NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(t);
    const char *p = (const char *)PyUnicode_1BYTE_DATA(t);
    if (memchr(p, ',', (size_t)n) != NULL) return NULL;
    Py_ssize_t a = 0, z = n;
    while (a < z && is_space((unsigned char)p[a])) a++;
    while (z > a && is_space((unsigned char)p[z - 1])) z--;
    if (a == z) return PyTuple_New(0);
    PyObject *name = (a == 0 && z == n) ? (Py_INCREF(t), t) : PyUnicode_Substring(t, a, z);
    if (name == NULL) return NULL;
    PyObject *tup = PyTuple_Pack(1, name);
    Py_DECREF(name);
    return tup;
}

/* The served text of a cell and the dict handed to converters (borrowed or NULL), as
 * parse_submission reads them. Returns a new reference to the text (Py_None allowed), or NULL
 * with an error set; *dict_cell gets the cell when it is a dict. */
static PyObject *cell_text(PyObject *cell, PyObject **dict_cell) {
    *dict_cell = NULL;
    PyObject *v = cell;
    if (cell != NULL && PyDict_CheckExact(cell)) {
        *dict_cell = cell;
        v = PyDict_GetItemWithError(cell, str_value);
        if (v == NULL && PyErr_Occurred()) return NULL;
    }
    if (v == NULL || v == Py_None) Py_RETURN_NONE;
    if (PyUnicode_CheckExact(v)) return Py_NewRef(v);
    if (PyList_Check(v) || PyDict_Check(v)) Py_RETURN_NONE;
    return PyObject_CallOneArg(text_of_fn, v);
}

/* The typed value of a text for a converter kind (new reference), NULL with an error set. */
static PyObject *typed(PyObject *t, PyObject *dict_cell, int kind, PyObject *conv, PyObject *bools) {
    if (kind == K_TEXT) return Py_NewRef(t);
    if (t != Py_None && (kind == K_DATE || kind == K_TIME || kind == K_DATETIME)) {
        PyObject *v = iso_temporal(t, kind);
        if (v != NULL) return v;
    } else if (t != Py_None && kind == K_MEDIA) {
        PyObject *v = one_media(t);
        if (v != NULL || PyErr_Occurred()) return v;
    }
    PyObject *argv[3] = {t, dict_cell ? dict_cell : Py_None, bools};
    return PyObject_Vectorcall(conv, argv, 3, NULL);
}

/* MediaRef objects for the names of a media value, appended to ``media``. */
static int add_media(PyObject *media, PyObject *val, PyObject *form_id, PyObject *sid, PyObject *field,
                     PyObject *subform, Py_ssize_t row) {
    if (!PyTuple_Check(val)) return 0;
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(val); k++) {
        PyObject *ref;
        if (subform == NULL) {
            PyObject *argv[4] = {form_id, sid, field, PyTuple_GET_ITEM(val, k)};
            ref = PyObject_Vectorcall(MediaRefType, argv, 4, NULL);
        } else {
            PyObject *r = PyLong_FromSsize_t(row);
            if (r == NULL) return -1;
            PyObject *argv[6] = {form_id, sid, field, PyTuple_GET_ITEM(val, k), subform, r};
            ref = PyObject_Vectorcall(MediaRefType, argv, 6, NULL);
            Py_DECREF(r);
        }
        if (ref == NULL) return -1;
        int e = PyList_Append(media, ref);
        Py_DECREF(ref);
        if (e < 0) return -1;
    }
    return 0;
}

/* top: tuple of (name, kind, conv, is_media, underscored, kids); kids: None or a tuple of
 * (name, kind, conv, is_media). Returns 1 done, 0 = let Python do it, -1 error. */
static int parse_into(PyObject *top, PyObject *cells, int flat, PyObject *bools, PyObject *form_id, PyObject *sid,
                      PyObject *values, PyObject *text, PyObject *subforms, PyObject *media) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(top); i++) {
        PyObject *spec = PyTuple_GET_ITEM(top, i);
        PyObject *name = PyTuple_GET_ITEM(spec, 0);
        int kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(spec, 1));
        PyObject *conv = PyTuple_GET_ITEM(spec, 2);
        int is_media = PyObject_IsTrue(PyTuple_GET_ITEM(spec, 3));
        int underscored = PyObject_IsTrue(PyTuple_GET_ITEM(spec, 4));
        PyObject *kids = PyTuple_GET_ITEM(spec, 5);
        PyObject *cell = NULL;
        if (!(flat && underscored)) {
            cell = PyDict_GetItemWithError(cells, name);
            if (cell == NULL && PyErr_Occurred()) return -1;
        }
        if (cell != NULL && !PyUnicode_CheckExact(cell) && !PyDict_CheckExact(cell) && cell != Py_None
            && !(kids != Py_None && PyList_CheckExact(cell)))
            return 0;
        if (kids != Py_None) {
            PyObject *raw_rows = cell;
            if (raw_rows != NULL && PyDict_CheckExact(raw_rows)) {
                raw_rows = PyDict_GetItemWithError(raw_rows, str_value);
                if (raw_rows == NULL) return PyErr_Occurred() ? -1 : 0;
            }
            PyObject *rows = PyList_New(0);
            if (rows == NULL) return -1;
            int ok = 1;
            if (raw_rows == NULL || raw_rows == Py_None
                || (PyUnicode_CheckExact(raw_rows) && PyUnicode_GET_LENGTH(raw_rows) == 0)) {
                /* no rows */
            } else if (!PyList_CheckExact(raw_rows)) {
                ok = 0;
            } else {
                for (Py_ssize_t r = 0; ok == 1 && r < PyList_GET_SIZE(raw_rows); r++) {
                    PyObject *raw_row = PyList_GET_ITEM(raw_rows, r);
                    if (!PyDict_CheckExact(raw_row)) { ok = 0; break; }
                    PyObject *rv = PyDict_New(), *rt = PyDict_New();
                    if (rv == NULL || rt == NULL) { Py_XDECREF(rv); Py_XDECREF(rt); ok = -1; break; }
                    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(kids); k++) {
                        PyObject *kspec = PyTuple_GET_ITEM(kids, k);
                        PyObject *cname = PyTuple_GET_ITEM(kspec, 0);
                        int ckind = (int)PyLong_AsLong(PyTuple_GET_ITEM(kspec, 1));
                        PyObject *c = PyDict_GetItemWithError(raw_row, cname);
                        if (c == NULL && PyErr_Occurred()) { ok = -1; break; }
                        if (c != NULL && !PyUnicode_CheckExact(c) && !PyDict_CheckExact(c) && c != Py_None) {
                            ok = 0;
                            break;
                        }
                        PyObject *dc;
                        PyObject *t = cell_text(c, &dc);
                        if (t == NULL) { ok = -1; break; }
                        PyObject *val = NULL;
                        if (PyDict_SetItem(rt, cname, t) < 0
                            || (val = typed(t, dc, ckind, PyTuple_GET_ITEM(kspec, 2), bools)) == NULL
                            || PyDict_SetItem(rv, cname, val) < 0) {
                            Py_DECREF(t);
                            Py_XDECREF(val);
                            ok = -1;
                            break;
                        }
                        Py_DECREF(t);
                        int c_media = PyObject_IsTrue(PyTuple_GET_ITEM(kspec, 3));
                        if (c_media && PyObject_IsTrue(val)
                            && add_media(media, val, form_id, sid, cname, name, r) < 0) {
                            Py_DECREF(val);
                            ok = -1;
                            break;
                        }
                        Py_DECREF(val);
                    }
                    if (ok == 1) {
                        PyObject *idx = PyLong_FromSsize_t(r);
                        PyObject *row = NULL;
                        if (idx != NULL) {
                            PyObject *argv[3] = {idx, rv, rt};
                            row = PyObject_Vectorcall(SubformRowType, argv, 3, NULL);
                            Py_DECREF(idx);
                        }
                        if (row == NULL || PyList_Append(rows, row) < 0) ok = -1;
                        Py_XDECREF(row);
                    }
                    Py_DECREF(rv);
                    Py_DECREF(rt);
                }
            }
            if (ok == 1 && PyDict_SetItem(subforms, name, rows) < 0) ok = -1;
            Py_DECREF(rows);
            if (ok != 1) return ok;
            continue;
        }
        PyObject *dc;
        PyObject *t = cell_text(cell, &dc);
        if (t == NULL) return -1;
        if (PyDict_SetItem(text, name, t) < 0) { Py_DECREF(t); return -1; }
        PyObject *val = typed(t, dc, kind, conv, bools);
        Py_DECREF(t);
        if (val == NULL) return -1;
        if (PyDict_SetItem(values, name, val) < 0) { Py_DECREF(val); return -1; }
        if (is_media && PyObject_IsTrue(val) && add_media(media, val, form_id, sid, name, NULL, 0) < 0) {
            Py_DECREF(val);
            return -1;
        }
        Py_DECREF(val);
    }
    return 1;
}

static PyObject *parse_fields(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "parse_fields(top, cells, flat, bools, form_id, sid)");
        return NULL;
    }
    if (SubformRowType == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "setup_parse() was not called");
        return NULL;
    }
    PyObject *top = args[0], *cells = args[1], *bools = args[3], *form_id = args[4], *sid = args[5];
    int flat = PyObject_IsTrue(args[2]);
    if (!PyTuple_Check(top) || !PyDict_CheckExact(cells)) Py_RETURN_NONE;
    PyObject *values = PyDict_New(), *text = PyDict_New(), *subforms = PyDict_New(), *media = PyList_New(0);
    if (values && text && subforms && media) {
        int r = parse_into(top, cells, flat, bools, form_id, sid, values, text, subforms, media);
        if (r == 1) return Py_BuildValue("(NNNN)", values, text, subforms, media);
        if (r == 0 && !PyErr_Occurred()) {
            Py_DECREF(values);
            Py_DECREF(text);
            Py_DECREF(subforms);
            Py_DECREF(media);
            Py_RETURN_NONE;
        }
    }
    Py_XDECREF(values);
    Py_XDECREF(text);
    Py_XDECREF(subforms);
    Py_XDECREF(media);
    return NULL;
}

static PyMethodDef methods[] = {
    {"setup_parse", setup_parse, METH_VARARGS, "setup_parse(SubformRow, MediaRef, text_of): the classes parse_fields makes."},
    {"parse_fields", (PyCFunction)(void (*)(void))parse_fields, METH_FASTCALL,
     "parse_fields(top, cells, flat, bools, form_id, sid) -> (values, text, subforms, media) or None."},
    {"copy_block", copy_block, METH_VARARGS,
     "copy_block(rows, cols, mode, slow, decimal_type) -> bytes: bulk-load text of rows (see the module)."},
    {"digit_run", digit_run, METH_VARARGS, "digit_run(data, n) -> bool: a run of n or more ASCII digits?"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups",
                                    "Optional C versions of hot loops (see _speedups.c).", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__speedups(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return NULL;
    str_value = PyUnicode_InternFromString("value");
    if (str_value == NULL) return NULL;
    return PyModule_Create(&module);
}
