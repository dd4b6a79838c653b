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
 *       date-times of the exact ISO shapes, texts and ASCII media values are typed here; every
 *       other value goes through the field's Python converter. ``None`` when the submission has a
 *       shape the Python loop handles itself (errors included): the caller then runs it.
 *       ``setup_parse(SubformRow, MediaRef, text_of, Decimal)`` first.
 *
 *   submission_rows(spec, sid, meta, values, text, subforms) -> (parent, children)
 *       ``connectors.sql.schema.submission_rows`` once the plan is compiled (``_CompiledRows.c_spec``):
 *       the same row dicts, keys in the same order. Texts kept aside (``unparsed_text``), numbers and
 *       metadata times not seen before go through the Python helpers the spec names.
 *
 *   block_text(tspec, payloads, sids, entries, bools, mspec)
 *       -> (text per table part, media text, [positions left to Python], [entries written]) | None
 *       The bulk-load text of a ``SubmissionBlock`` (connectors.sql.schema.block_text): what
 *       parse_fields, submission_rows, media_row and copy_block make of its submissions and of
 *       the media index entries their references find, written straight from the payloads, with
 *       no record, row dict or typed value made where the text is the served one. A submission
 *       whose shape parse_fields would leave to Python is left to the caller (its position is
 *       returned); None when the block holds a submission twice.
 *
 * Tests compare them with the Python versions (tests/test_speedups.py,
 * tests/connectors/sql/test_sql_blocks.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>
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
        if (cap > PY_SSIZE_T_MAX / 2) {
            if (PyGILState_Check()) PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    /* raw allocator: raw_block_text writes without holding the interpreter lock */
    char *d = PyMem_RawRealloc(b->data, (size_t)cap);
    if (d == NULL) {
        if (PyGILState_Check()) PyErr_NoMemory();
        return -1;
    }
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

/* UTF-8 bytes with the format's escapes: backslash, newline, carriage return and tab (and NUL for
 * MySQL) become a backslash and a letter, as TextFormat.escape writes them. */
static int put_escaped_utf8(Buf *b, const char *u, Py_ssize_t n, int mode) {
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

/* The UTF-8 of ``s`` with the format's escapes. */
static int put_escaped(Buf *b, PyObject *s, int mode) {
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (u == NULL) return -1;
    return put_escaped_utf8(b, u, n, mode);
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

/* zero-padded decimal digits of 0 <= v < 10**width */
static inline void digits(char *out, int v, int width) {
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* "x<sep>yy<sep>zz": x zero-padded to ``wx`` digits (2 or 4), y and z to 2 */
static int put_three(Buf *b, int x, int wx, char sep, int y, int z) {
    char tmp[10];
    digits(tmp, x, wx);
    tmp[wx] = sep;
    digits(tmp + wx + 1, y, 2);
    tmp[wx + 3] = sep;
    digits(tmp + wx + 4, z, 2);
    return buf_put(b, tmp, wx + 6);
}

/* "HH:MM:SS" and ".ffffff" when there are microseconds, as time.isoformat() writes them */
static int put_fmt_time(Buf *b, int h, int m, int s, int us) {
    if (put_three(b, h, 2, ':', m, s) < 0) return -1;
    if (!us) return 0;
    char tmp[7];
    tmp[0] = '.';
    digits(tmp + 1, us, 6);
    return buf_put(b, tmp, 7);
}

/* "YYYY-MM-DD" as date.isoformat() writes it (years 1 to 9999) */
static int put_fmt_date(Buf *b, int y, int mo, int d) {
    return put_three(b, y, 4, '-', mo, d);
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
        char tmp[24];
        int i = 24;
        unsigned long long u = x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x;
        do {
            tmp[--i] = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        if (x < 0) tmp[--i] = '-';
        return buf_put(b, tmp + i, 24 - i);
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
    /* hold the lists and the items in use: a slow() call could change the lists under us */
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
            PyObject *col = Py_NewRef(PyList_GET_ITEM(cols, j));
            PyObject *v = PyDict_GetItemWithError(row, col);
            Py_DECREF(col);
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
    PyMem_RawFree(b.data);
    return out;
fail:
    Py_DECREF(rows);
    Py_DECREF(cols);
    PyMem_RawFree(b.data);
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

/* converter kinds (records._c_kind); typed() calls the converter of K_CALL, K_BOOL and K_GEO */
enum { K_TEXT = 0, K_CALL = 1, K_DATE = 2, K_TIME = 3, K_DATETIME = 4, K_MEDIA = 5, K_NUMBER = 6, K_BOOL = 7, K_GEO = 8 };

static PyObject *SubformRowType = NULL, *MediaRefType = NULL, *text_of_fn = NULL, *str_value = NULL,
                *DecimalType = NULL;

static PyObject *setup_parse(PyObject *self, PyObject *args) {
    PyObject *a, *b, *c, *d;
    if (!PyArg_ParseTuple(args, "OOOO:setup_parse", &a, &b, &c, &d)) return NULL;
    Py_INCREF(a);
    Py_INCREF(b);
    Py_INCREF(c);
    Py_INCREF(d);
    Py_XSETREF(SubformRowType, a);
    Py_XSETREF(MediaRefType, b);
    Py_XSETREF(text_of_fn, c);
    Py_XSETREF(DecimalType, d);
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

static int days_in(int y, int m) {
    static const int d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) return 29;
    return d[m - 1];
}

typedef struct {
    int y, mo, d, h, mi, s;
} Ymdhms;

/* An exact ISO date (K_DATE: YYYY-MM-DD), time (K_TIME: HH:MM[:SS]) or date-time (K_DATETIME: the
 * date, " " or "T", the time), ASCII, no blanks around, within the ranges datetime accepts: 1 and
 * its fields, 0 for any other text. */
static int iso_parts(const char *p, Py_ssize_t n, int kind, Ymdhms *v) {
    v->s = 0;
    if (kind == K_DATE) {
        if (n != 10 || p[4] != '-' || p[7] != '-' || !dig(p, 4, &v->y) || !dig(p + 5, 2, &v->mo)
            || !dig(p + 8, 2, &v->d))
            return 0;
    } else if (kind == K_TIME) {
        if ((n != 5 && n != 8) || p[2] != ':' || !dig(p, 2, &v->h) || !dig(p + 3, 2, &v->mi)) return 0;
        if (n == 8 && (p[5] != ':' || !dig(p + 6, 2, &v->s))) return 0;
        return v->h < 24 && v->mi < 60 && v->s < 60;
    } else {
        if ((n != 16 && n != 19) || p[4] != '-' || p[7] != '-' || (p[10] != ' ' && p[10] != 'T') || p[13] != ':'
            || !dig(p, 4, &v->y) || !dig(p + 5, 2, &v->mo) || !dig(p + 8, 2, &v->d) || !dig(p + 11, 2, &v->h)
            || !dig(p + 14, 2, &v->mi))
            return 0;
        if (n == 19 && (p[16] != ':' || !dig(p + 17, 2, &v->s))) return 0;
        if (v->h >= 24 || v->mi >= 60 || v->s >= 60) return 0;
    }
    return v->y >= 1 && v->mo >= 1 && v->mo <= 12 && v->d >= 1 && v->d <= days_in(v->y, v->mo);
}

/* A date, time or date-time of the exact ISO shape the Python fast path accepts (iso_parts), made
 * here; NULL without an error for anything else (the Python converter decides). */
static PyObject *iso_temporal(PyObject *t, int kind) {
    Ymdhms p;
    if (!PyUnicode_IS_ASCII(t)
        || !iso_parts((const char *)PyUnicode_1BYTE_DATA(t), PyUnicode_GET_LENGTH(t), kind, &p))
        return NULL;
    PyObject *v = kind == K_DATE ? PyDate_FromDate(p.y, p.mo, p.d)
                  : kind == K_TIME ? PyTime_FromTime(p.h, p.mi, p.s, 0)
                                   : PyDateTime_FromDateAndTime(p.y, p.mo, p.d, p.h, p.mi, p.s, 0);
    if (v == NULL) PyErr_Clear(); /* the Python converter says what it is */
    return v;
}

/* A media value, ASCII: the names between commas, blanks around each dropped, empty ones skipped,
 * in a tuple (() when blank), as _conv_media makes it; NULL without an error for non-ASCII. */
static PyObject *one_media(PyObject *t) {
    if (!PyUnicode_IS_ASCII(t)) return NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(t);
    const char *p = (const char *)PyUnicode_1BYTE_DATA(t);
    PyObject *out = PyTuple_New(0), *names = NULL;
    if (out == NULL) return NULL;
    Py_ssize_t start = 0;
    while (start <= n) {
        const char *comma = memchr(p + start, ',', (size_t)(n - start));
        Py_ssize_t end = comma ? comma - p : n;
        Py_ssize_t a = start, z = end;
        while (a < z && is_space((unsigned char)p[a])) a++;
        while (z > a && is_space((unsigned char)p[z - 1])) z--;
        if (a < z) {
            if (names == NULL && (names = PyList_New(0)) == NULL) goto fail;
            PyObject *name = (a == 0 && z == n) ? Py_NewRef(t) : PyUnicode_Substring(t, a, z);
            if (name == NULL || PyList_Append(names, name) < 0) {
                Py_XDECREF(name);
                goto fail;
            }
            Py_DECREF(name);
        }
        start = end + 1;
    }
    if (names != NULL) {
        Py_SETREF(out, PyList_AsTuple(names));
        Py_DECREF(names);
    }
    return out;
fail:
    Py_DECREF(out);
    Py_XDECREF(names);
    return NULL;
}

/* A number text that needs neither stripping nor the comma and blank rules (ASCII, no blank, no
 * comma): Decimal(text), as _conv_number would make it; NULL without an error for anything else,
 * a text Decimal refuses included (the Python converter decides). */
static PyObject *plain_number(PyObject *t) {
    if (!PyUnicode_IS_ASCII(t)) return NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(t);
    const char *p = (const char *)PyUnicode_1BYTE_DATA(t);
    if (n == 0) return NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i] == ',' || is_space((unsigned char)p[i])) return NULL;
    PyObject *v = PyObject_CallOneArg(DecimalType, t);
    if (v == NULL) PyErr_Clear();
    return v;
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
    } else if (t != Py_None && kind == K_NUMBER) {
        PyObject *v = plain_number(t);
        if (v != NULL) return v;
    }
    PyObject *argv[3] = {t, dict_cell ? dict_cell : Py_None, bools};
    return PyObject_Vectorcall(conv, argv, 3, NULL);
}

static PyObject *mediaref_names[6];

/* An instance of a frozen dataclass made as its __init__ makes it (every field set, in order, with
 * object.__setattr__), without running that Python code: for MediaRef, which has no
 * __post_init__. */
static PyObject *frozen_instance(PyObject *type, PyObject **names, PyObject **values, int n) {
    PyObject *obj = ((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, 0);
    if (obj == NULL) return NULL;
    for (int i = 0; i < n; i++) {
        if (PyObject_GenericSetAttr(obj, names[i], values[i]) < 0) {
            Py_DECREF(obj);
            return NULL;
        }
    }
    return obj;
}

/* MediaRef objects for the names of a media value, appended to ``media``. */
static int add_media(PyObject *media, PyObject *val, PyObject *form_id, PyObject *sid, PyObject *field,
                     PyObject *subform, Py_ssize_t row) {
    if (!PyTuple_Check(val)) return 0;
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(val); k++) {
        PyObject *ref;
        PyObject *r = subform == NULL ? Py_NewRef(Py_None) : PyLong_FromSsize_t(row);
        if (r == NULL) return -1;
        PyObject *argv[6] = {form_id, sid, field, PyTuple_GET_ITEM(val, k), subform ? subform : Py_None, r};
        ref = frozen_instance(MediaRefType, mediaref_names, argv, 6);
        Py_DECREF(r);
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

/* ------------------------------------------------------------------------------------------ */
/* submission_rows                                                                              */
/* ------------------------------------------------------------------------------------------ */

enum { C_TEXT = 0, C_NUMBER = 1, C_LAT = 2, C_LON = 3, C_BOOL = 4, C_DATE = 5, C_TIME = 6, C_DATETIME = 7,
       C_PASS = 8, C_CALL = 9 };

typedef struct {
    PyObject *keep;      /* _keep(unparsed, key, text) */
    PyObject *meta_time; /* parse_meta_time(text, unparsed, key) */
    PyObject *meta_cache; /* its dict of texts already read */
    PyObject *dumps;     /* _dumps(unparsed) */
    PyObject *geopoint;  /* the GeoPoint class */
    int bool_as_int;
    PyObject *decimal;   /* the Decimal class */
    int max_int_digits;  /* digits a numeric column holds before the point; < 0: always ask Python */
    int scale;           /* and after it */
} RowHelpers;

/* Whether the numeric column takes the Decimal ``v`` as it is: its plain text (str(v), as
 * -ddd[.ddd]) has at most max_int_digits digits before the point (leading zeros aside) and at most
 * scale after it. 0: unsure (exponent notation, NaN...), the Python function decides. */
static int number_fits(RowHelpers *h, PyObject *v) {
    if (h->max_int_digits < 0 || Py_TYPE(v) != (PyTypeObject *)h->decimal) return 0;
    PyObject *s = PyObject_Str(v);
    if (s == NULL) {
        PyErr_Clear();
        return 0;
    }
    int fits = 0;
    if (PyUnicode_IS_ASCII(s)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(s), i = 0;
        const char *p = (const char *)PyUnicode_1BYTE_DATA(s);
        if (i < n && p[i] == '-') i++;
        Py_ssize_t int_start = i;
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
        Py_ssize_t int_end = i, frac = 0;
        int ok = int_end > int_start;
        if (ok && i < n && p[i] == '.') {
            i++;
            while (i < n && p[i] >= '0' && p[i] <= '9') { i++; frac++; }
            ok = frac > 0;
        }
        if (ok && i == n) {
            Py_ssize_t z = int_start;
            while (z < int_end && p[z] == '0') z++;
            Py_ssize_t int_digits = int_end - z;
            if (int_digits == 0) int_digits = 1; /* a zero counts one digit: never less than Decimal's count */
            fits = int_digits <= h->max_int_digits && frac <= h->scale;
        }
    }
    Py_DECREF(s);
    return fits;
}

static PyObject *str_latitude = NULL, *str_longitude = NULL, *str_index = NULL, *str_values = NULL,
                *str_text = NULL;

static int keep_text(RowHelpers *h, PyObject *un, PyObject *name, PyObject *t) {
    if (t == Py_None) return 0;
    PyObject *argv[3] = {un, name, t};
    PyObject *r = PyObject_Vectorcall(h->keep, argv, 3, NULL);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

/* The cell of one column (new reference), as connectors.sql.schema._cell_fn's functions make it. */
static PyObject *cell_of(RowHelpers *h, int code, PyObject *name, PyObject *fn, PyObject *v, PyObject *t,
                         PyObject *un) {
    switch (code) {
    case C_TEXT:
        if (t == Py_None && v != Py_None && !PyTuple_Check(v)) return PyObject_Str(v);
        return Py_NewRef(t);
    case C_PASS:
        return Py_NewRef(t);
    case C_NUMBER:
        if (v == Py_None) {
            if (keep_text(h, un, name, t) < 0) return NULL;
            Py_RETURN_NONE;
        }
        if (number_fits(h, v)) return Py_NewRef(v);
        break; /* the Python function checks the Decimal against the column */
    case C_LAT:
    case C_LON:
        if (PyObject_TypeCheck(v, (PyTypeObject *)h->geopoint))
            return PyObject_GetAttr(v, code == C_LAT ? str_latitude : str_longitude);
        if (code == C_LAT && keep_text(h, un, name, t) < 0) return NULL;
        Py_RETURN_NONE;
    case C_BOOL:
        if (PyBool_Check(v)) return h->bool_as_int ? PyLong_FromLong(v == Py_True) : Py_NewRef(v);
        if (keep_text(h, un, name, t) < 0) return NULL;
        Py_RETURN_NONE;
    case C_DATE:
    case C_TIME:
    case C_DATETIME: {
        int ok = code == C_DATE ? (PyDate_Check(v) && !PyDateTime_Check(v))
                 : code == C_TIME ? PyTime_Check(v) : PyDateTime_Check(v);
        if (ok) return Py_NewRef(v);
        if (keep_text(h, un, name, t) < 0) return NULL;
        Py_RETURN_NONE;
    }
    default:
        break;
    }
    PyObject *argv[3] = {v, t, un};
    return PyObject_Vectorcall(fn, argv, 3, NULL);
}

/* The cell of a metadata column (new reference): the text, or for a time its value
 * (parse_meta_time, through its cache of texts already read). */
static PyObject *meta_value(RowHelpers *h, PyObject *t, PyObject *un, PyObject *mk, int is_time) {
    if (!is_time) return Py_NewRef(t);
    if (t != Py_None) {
        PyObject *cached = PyDict_GetItemWithError(h->meta_cache, t);
        if (cached != NULL) return Py_NewRef(cached);
        if (PyErr_Occurred()) return NULL;
        /* the exact ISO shapes: what datetime.fromisoformat reads them as */
        PyObject *v = PyUnicode_CheckExact(t) ? iso_temporal(t, K_DATETIME) : NULL;
        if (v != NULL) return v;
    }
    PyObject *argv[3] = {t, un, mk};
    Py_INCREF(t);
    PyObject *v = PyObject_Vectorcall(h->meta_time, argv, 3, NULL);
    Py_DECREF(t);
    return v;
}

static PyObject *get_or_none(PyObject *d, PyObject *k) {
    PyObject *v = PyDict_GetItemWithError(d, k);
    if (v == NULL && !PyErr_Occurred()) v = Py_None;
    return v; /* borrowed */
}

/* Fill the cells of cols (tuples of (part, column, field, code, fn)) into the row dict(s). */
static int fill_cells(RowHelpers *h, PyObject *cols, int single, PyObject *row, PyObject *parts_rows,
                      PyObject *values, PyObject *text, PyObject *un) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(cols); i++) {
        PyObject *c = PyTuple_GET_ITEM(cols, i);
        PyObject *part = PyTuple_GET_ITEM(c, 0), *col = PyTuple_GET_ITEM(c, 1), *name = PyTuple_GET_ITEM(c, 2);
        int code = (int)PyLong_AsLong(PyTuple_GET_ITEM(c, 3));
        PyObject *v = get_or_none(values, name), *t;
        if (v == NULL) return -1;
        t = get_or_none(text, name);
        if (t == NULL) return -1;
        Py_INCREF(v);
        Py_INCREF(t);
        PyObject *cell = cell_of(h, code, name, PyTuple_GET_ITEM(c, 4), v, t, un);
        Py_DECREF(v);
        Py_DECREF(t);
        if (cell == NULL) return -1;
        PyObject *target = single ? row : PyDict_GetItemWithError(parts_rows, part);
        int e = target == NULL ? -1 : PyDict_SetItem(target, col, cell);
        Py_DECREF(cell);
        if (e < 0) {
            if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, part);
            return -1;
        }
    }
    return 0;
}

static int set_unparsed(RowHelpers *h, PyObject *row, PyObject *col, PyObject *un) {
    if (PyDict_GET_SIZE(un) == 0) return PyDict_SetItem(row, col, Py_None);
    PyObject *s = PyObject_CallOneArg(h->dumps, un);
    if (s == NULL) return -1;
    int e = PyDict_SetItem(row, col, s);
    Py_DECREF(s);
    return e;
}

/* {part: {key: sid, [row_key: index]}} for every part of a table (a new dict) */
static PyObject *part_rows(PyObject *parts, PyObject *key, PyObject *sid, PyObject *row_key, PyObject *index) {
    PyObject *out = PyDict_New();
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(parts); i++) {
        PyObject *r = PyDict_New();
        if (r == NULL || PyDict_SetItem(r, key, sid) < 0 || (row_key != NULL && PyDict_SetItem(r, row_key, index) < 0)
            || PyDict_SetItem(out, PyTuple_GET_ITEM(parts, i), r) < 0) {
            Py_XDECREF(r);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(r);
    }
    return out;
}

static int rows_main(RowHelpers *h, PyObject *spec, PyObject *sid, PyObject *meta, PyObject *values, PyObject *text,
                     PyObject *parent) {
    /* spec: (parts, single, key, unparsed column, cols, meta specs) */
    PyObject *parts = PyTuple_GET_ITEM(spec, 0), *key = PyTuple_GET_ITEM(spec, 2);
    PyObject *unparsed_col = PyTuple_GET_ITEM(spec, 3), *cols = PyTuple_GET_ITEM(spec, 4);
    PyObject *metas = PyTuple_GET_ITEM(spec, 5);
    int single = PyObject_IsTrue(PyTuple_GET_ITEM(spec, 1));
    PyObject *first_name = PyTuple_GET_ITEM(parts, 0);
    int rc = -1;
    PyObject *un = PyDict_New(), *rows = part_rows(parts, key, sid, NULL, NULL);
    if (un == NULL || rows == NULL) goto done;
    PyObject *first = PyDict_GetItemWithError(rows, first_name);
    if (first == NULL) goto done;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(metas); i++) {
        PyObject *m = PyTuple_GET_ITEM(metas, i);
        PyObject *mk = PyTuple_GET_ITEM(m, 0), *col = PyTuple_GET_ITEM(m, 1);
        PyObject *t = get_or_none(meta, mk);
        if (t == NULL) goto done;
        PyObject *v = meta_value(h, t, un, mk, PyObject_IsTrue(PyTuple_GET_ITEM(m, 2)));
        if (v == NULL) goto done;
        int e = PyDict_SetItem(first, col, v);
        Py_DECREF(v);
        if (e < 0) goto done;
    }
    if (fill_cells(h, cols, single, first, rows, values, text, un) < 0) goto done;
    if (set_unparsed(h, first, unparsed_col, un) < 0) goto done;
    if (PyDict_Update(parent, rows) < 0) goto done;
    rc = 0;
done:
    Py_XDECREF(un);
    Py_XDECREF(rows);
    return rc;
}

/* append to list children[part], creating it */
static PyObject *child_list(PyObject *children, PyObject *part) {
    PyObject *lst = PyDict_GetItemWithError(children, part);
    if (lst != NULL || PyErr_Occurred()) return lst;
    lst = PyList_New(0);
    if (lst == NULL) return NULL;
    int e = PyDict_SetItem(children, part, lst);
    Py_DECREF(lst);
    return e < 0 ? NULL : lst;
}

static int rows_sub(RowHelpers *h, PyObject *spec, PyObject *sid, PyObject *subforms, PyObject *children) {
    /* spec: (sub-form name, parts, single, key, row key, unparsed column, cols) */
    PyObject *sf = PyTuple_GET_ITEM(spec, 0), *parts = PyTuple_GET_ITEM(spec, 1);
    int single = PyObject_IsTrue(PyTuple_GET_ITEM(spec, 2));
    PyObject *key = PyTuple_GET_ITEM(spec, 3), *row_key = PyTuple_GET_ITEM(spec, 4);
    PyObject *unparsed_col = PyTuple_GET_ITEM(spec, 5), *cols = PyTuple_GET_ITEM(spec, 6);
    PyObject *first_name = PyTuple_GET_ITEM(parts, 0);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(parts); i++)
        if (child_list(children, PyTuple_GET_ITEM(parts, i)) == NULL) return -1;
    PyObject *rows = PyDict_GetItemWithError(subforms, sf);
    if (rows == NULL) return PyErr_Occurred() ? -1 : 0;
    PyObject *it = PyObject_GetIter(rows);
    if (it == NULL) return -1;
    PyObject *row;
    int rc = 0;
    while (rc == 0 && (row = PyIter_Next(it)) != NULL) {
        PyObject *index = PyObject_GetAttr(row, str_index), *rv = PyObject_GetAttr(row, str_values);
        PyObject *rt = PyObject_GetAttr(row, str_text), *un = PyDict_New(), *prow = NULL;
        rc = -1;
        if (index && rv && rt && un && PyDict_Check(rv) && PyDict_Check(rt)
            && (prow = part_rows(parts, key, sid, row_key, index)) != NULL) {
            PyObject *first = PyDict_GetItemWithError(prow, first_name);
            if (first != NULL && fill_cells(h, cols, single, first, prow, rv, rt, un) == 0
                && set_unparsed(h, first, unparsed_col, un) == 0) {
                rc = 0;
                for (Py_ssize_t i = 0; rc == 0 && i < PyTuple_GET_SIZE(parts); i++) {
                    PyObject *p = PyTuple_GET_ITEM(parts, i);
                    PyObject *lst = PyDict_GetItemWithError(children, p), *r = PyDict_GetItemWithError(prow, p);
                    if (lst == NULL || r == NULL || PyList_Append(lst, r) < 0) rc = -1;
                }
            }
        } else if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "a sub-form row's values and text are not dicts");
        }
        Py_XDECREF(index);
        Py_XDECREF(rv);
        Py_XDECREF(rt);
        Py_XDECREF(un);
        Py_XDECREF(prow);
        Py_DECREF(row);
    }
    Py_DECREF(it);
    if (rc == 0 && PyErr_Occurred()) rc = -1;
    return rc;
}

static PyObject *submission_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    /* spec: (main spec, sub-form specs, (keep, meta_time, meta cache, dumps, GeoPoint, bool_as_int,
     * Decimal, digits before the point or -1, digits after it)) */
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "submission_rows(spec, sid, meta, values, text, subforms)");
        return NULL;
    }
    PyObject *spec = args[0], *sid = args[1], *meta = args[2], *values = args[3], *text = args[4], *subforms = args[5];
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 3 || !PyDict_Check(meta) || !PyDict_Check(values)
        || !PyDict_Check(text) || !PyDict_Check(subforms)) {
        PyErr_SetString(PyExc_TypeError, "submission_rows: a compiled spec and dicts expected");
        return NULL;
    }
    PyObject *hs = PyTuple_GET_ITEM(spec, 2);
    if (!PyTuple_Check(hs) || PyTuple_GET_SIZE(hs) != 9) {
        PyErr_SetString(PyExc_TypeError, "submission_rows: the spec's helpers are 9");
        return NULL;
    }
    RowHelpers h = {PyTuple_GET_ITEM(hs, 0), PyTuple_GET_ITEM(hs, 1), PyTuple_GET_ITEM(hs, 2),
                    PyTuple_GET_ITEM(hs, 3), PyTuple_GET_ITEM(hs, 4), PyObject_IsTrue(PyTuple_GET_ITEM(hs, 5)),
                    PyTuple_GET_ITEM(hs, 6), (int)PyLong_AsLong(PyTuple_GET_ITEM(hs, 7)),
                    (int)PyLong_AsLong(PyTuple_GET_ITEM(hs, 8))};
    PyObject *parent = PyDict_New(), *children = PyDict_New();
    if (parent == NULL || children == NULL) goto fail;
    if (rows_main(&h, PyTuple_GET_ITEM(spec, 0), sid, meta, values, text, parent) < 0) goto fail;
    PyObject *subs = PyTuple_GET_ITEM(spec, 1);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(subs); i++)
        if (rows_sub(&h, PyTuple_GET_ITEM(subs, i), sid, subforms, children) < 0) goto fail;
    return Py_BuildValue("(NN)", parent, children);
fail:
    Py_XDECREF(parent);
    Py_XDECREF(children);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* media_refs, submissions_text: the same work without the canonical containers                 */
/* ------------------------------------------------------------------------------------------ */

/* Whether parse_into would type these cells itself (1) or leave them to Python (0, or -1 with an
 * error): the same shape checks, in the same order, nothing made. */
static int parse_shape_ok(PyObject *top, PyObject *cells, int flat) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(top); i++) {
        PyObject *spec = PyTuple_GET_ITEM(top, i);
        PyObject *kids = PyTuple_GET_ITEM(spec, 5);
        PyObject *cell = NULL;
        if (!(flat && PyObject_IsTrue(PyTuple_GET_ITEM(spec, 4)))) {
            cell = PyDict_GetItemWithError(cells, PyTuple_GET_ITEM(spec, 0));
            if (cell == NULL && PyErr_Occurred()) return -1;
        }
        if (cell != NULL && !PyUnicode_CheckExact(cell) && !PyDict_CheckExact(cell) && cell != Py_None
            && !(kids != Py_None && PyList_CheckExact(cell)))
            return 0;
        if (kids == Py_None) continue;
        PyObject *raw_rows = cell;
        if (raw_rows != NULL && PyDict_CheckExact(raw_rows)) {
            raw_rows = PyDict_GetItemWithError(raw_rows, str_value);
            if (raw_rows == NULL) return PyErr_Occurred() ? -1 : 0;
        }
        if (raw_rows == NULL || raw_rows == Py_None
            || (PyUnicode_CheckExact(raw_rows) && PyUnicode_GET_LENGTH(raw_rows) == 0))
            continue;
        if (!PyList_CheckExact(raw_rows)) return 0;
        for (Py_ssize_t r = 0; r < PyList_GET_SIZE(raw_rows); r++) {
            PyObject *raw_row = PyList_GET_ITEM(raw_rows, r);
            if (!PyDict_CheckExact(raw_row)) return 0;
            for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(kids); k++) {
                PyObject *c = PyDict_GetItemWithError(raw_row, PyTuple_GET_ITEM(PyTuple_GET_ITEM(kids, k), 0));
                if (c == NULL && PyErr_Occurred()) return -1;
                if (c != NULL && !PyUnicode_CheckExact(c) && !PyDict_CheckExact(c) && c != Py_None) return 0;
            }
        }
    }
    return 1;
}

/* The rows of a sub-form cell that parse_shape_ok accepted (borrowed; NULL: none). */
static PyObject *subform_list(PyObject *cell) {
    if (cell != NULL && PyDict_CheckExact(cell)) cell = PyDict_GetItem(cell, str_value);
    return (cell != NULL && PyList_CheckExact(cell)) ? cell : NULL;
}

/* The typed value of a cell of one field (new reference): what parse_into stores for it. */
static PyObject *cell_value(PyObject *cell, int kind, PyObject *conv, PyObject *bools, PyObject **text) {
    PyObject *dc;
    PyObject *t = cell_text(cell, &dc);
    if (t == NULL) return NULL;
    PyObject *v = typed(t, dc, kind, conv, bools);
    if (v == NULL) {
        Py_DECREF(t);
        return NULL;
    }
    *text = t;
    return v;
}

typedef struct {
    RowHelpers h;
    int mode;
    PyObject *slow, *decimal;
    Buf *out;  /* one per table part */
} TextJob;

/* Whether the number text p[:n] is one whose Decimal writes back as that text itself and fits the
 * numeric column: ASCII -?(0|[1-9][0-9]*)(.[0-9]+)?, not so small that str(Decimal) would switch
 * to exponent notation (adjusted exponent below -6), at most max_int_digits digits before the
 * point and scale after it (number_fits' rule for that Decimal). */
static int plain_decimal_fits(RowHelpers *h, const char *p, Py_ssize_t n) {
    Py_ssize_t i = 0;
    if (i < n && p[i] == '-') i++;
    Py_ssize_t int_start = i;
    while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    Py_ssize_t int_digits = i - int_start, frac = 0, lead_zeros = 0;
    if (int_digits == 0 || (int_digits > 1 && p[int_start] == '0')) return 0;
    int zero_int = p[int_start] == '0';
    if (i < n && p[i] == '.') {
        i++;
        Py_ssize_t f0 = i;
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
        frac = i - f0;
        if (frac == 0) return 0;
        while (lead_zeros < frac && p[f0 + lead_zeros] == '0') lead_zeros++;
    }
    if (i != n) return 0;
    /* adjusted exponent of 0.000ddd is -(zeros + 1); of an all-zero fraction, -frac */
    if (zero_int && frac > 0 && (lead_zeros == frac ? frac : lead_zeros + 1) > 6) return 0;
    return int_digits <= h->max_int_digits && frac <= h->scale;
}

/* "\t" and the bulk-load text of one cell (stolen reference) into part ``part`` */
static int put_cell(TextJob *j, Py_ssize_t part, PyObject *cell) {
    if (cell == NULL) return -1;
    int r = buf_byte(&j->out[part], '\t') < 0 ? -1 : put_value(&j->out[part], cell, j->mode, j->slow, j->decimal);
    Py_DECREF(cell);
    return r;
}

/* The cells of ``cols`` for one row: cols are (part, field, rule code, fn, kind, conv, present),
 * present: 0 the field is not in the definition, 1 its cell is read from ``src``, 2 the same except
 * in the flat shape (an underscored name). What parse_into types and cell_of makes of it, with
 * three shortcuts that write the same text: a text column takes the served text whenever there is
 * one (cell_of's rule) without typing it, a plain number that fits is written as served
 * (plain_decimal_fits), and the two columns of a geolocation share one typing. */
static int text_cells(TextJob *j, PyObject *cols, PyObject *src, int flat, PyObject *bools, PyObject *un) {
    PyObject *last = NULL, *last_v = NULL, *last_t = NULL; /* the field typed for the previous column */
    int rc = -1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(cols); i++) {
        PyObject *c = PyTuple_GET_ITEM(cols, i);
        Py_ssize_t part = PyLong_AsSsize_t(PyTuple_GET_ITEM(c, 0));
        PyObject *name = PyTuple_GET_ITEM(c, 1);
        int code = (int)PyLong_AsLong(PyTuple_GET_ITEM(c, 2));
        int kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(c, 4));
        int present = (int)PyLong_AsLong(PyTuple_GET_ITEM(c, 6));
        PyObject *v, *t, *dc = NULL, *cell = NULL;
        if (last != NULL && name == last) {
            v = Py_NewRef(last_v);
            t = Py_NewRef(last_t);
        } else {
            if (present == 1 || (present == 2 && !flat)) {
                cell = PyDict_GetItemWithError(src, name);
                if (cell == NULL && PyErr_Occurred()) goto done;
                Py_XINCREF(cell);
                t = cell_text(cell, &dc);
                if (t == NULL) {
                    Py_XDECREF(cell);
                    goto done;
                }
            } else {
                t = Py_NewRef(Py_None);
            }
            if (t != Py_None && (code == C_TEXT || code == C_PASS)) {
                Py_XDECREF(cell);
                if (put_cell(j, part, t) < 0) goto done;
                continue;
            }
            if (code == C_NUMBER && kind == K_NUMBER && j->h.max_int_digits >= 0 && PyUnicode_CheckExact(t)
                && PyUnicode_IS_ASCII(t)
                && plain_decimal_fits(&j->h, (const char *)PyUnicode_1BYTE_DATA(t), PyUnicode_GET_LENGTH(t))) {
                Py_XDECREF(cell);
                if (put_cell(j, part, t) < 0) goto done;
                continue;
            }
            v = present == 0 ? Py_NewRef(Py_None) : typed(t, dc, kind, PyTuple_GET_ITEM(c, 5), bools);
            Py_XDECREF(cell);
            if (v == NULL) {
                Py_DECREF(t);
                goto done;
            }
            Py_XSETREF(last_v, Py_NewRef(v));
            Py_XSETREF(last_t, Py_NewRef(t));
            last = name;
        }
        PyObject *out = cell_of(&j->h, code, name, PyTuple_GET_ITEM(c, 3), v, t, un);
        Py_DECREF(v);
        Py_DECREF(t);
        if (put_cell(j, part, out) < 0) goto done;
    }
    rc = 0;
done:
    Py_XDECREF(last_v);
    Py_XDECREF(last_t);
    return rc;
}

static int put_unparsed(TextJob *j, Py_ssize_t part, PyObject *un) {
    if (PyDict_GET_SIZE(un) == 0) return put_cell(j, part, Py_NewRef(Py_None));
    return put_cell(j, part, PyObject_CallOneArg(j->h.dumps, un));
}

/* the start of a row in parts first..first+n-1: the key (and the row index) */
static int start_rows(TextJob *j, Py_ssize_t first, Py_ssize_t n, PyObject *sid, Py_ssize_t index) {
    for (Py_ssize_t p = first; p < first + n; p++) {
        if (put_value(&j->out[p], sid, j->mode, j->slow, j->decimal) < 0) return -1;
        if (index >= 0) {
            PyObject *ix = PyLong_FromSsize_t(index);
            if (put_cell(j, p, ix) < 0) return -1;
        }
    }
    return 0;
}

static int end_rows(TextJob *j, Py_ssize_t first, Py_ssize_t n) {
    for (Py_ssize_t p = first; p < first + n; p++)
        if (buf_byte(&j->out[p], '\n') < 0) return -1;
    return 0;
}

/* The text of one submission whose shape parse_shape_ok accepted: 1 written, 0 left to Python (a
 * metadata value that is not a str), -1 error. tspec: (top, main, subs, ...):
 * main = (parts, meta specs (meta key, its flat-shape key, is time), cols); subs: (name,
 * underscored, first part, parts, cols). */
static int one_text(TextJob *j, PyObject *main, PyObject *subs, PyObject *sid, PyObject *payload, PyObject *cells,
                    int flat, PyObject *bools) {
    Py_ssize_t nparts = PyLong_AsSsize_t(PyTuple_GET_ITEM(main, 0));
    PyObject *metas = PyTuple_GET_ITEM(main, 1);
    int rc = -1;
    PyObject *un = PyDict_New();
    if (un == NULL || start_rows(j, 0, nparts, sid, -1) < 0) goto done;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(metas); i++) {
        PyObject *m = PyTuple_GET_ITEM(metas, i);
        PyObject *mk = PyTuple_GET_ITEM(m, 0);
        PyObject *t = get_or_none(payload, PyTuple_GET_ITEM(m, flat ? 1 : 0));
        if (t == NULL) goto done;
        if (t != Py_None && !PyUnicode_CheckExact(t)) { /* parse_submission normalises it: Python's */
            rc = 0;
            goto done;
        }
        if (put_cell(j, 0, meta_value(&j->h, t, un, mk, PyObject_IsTrue(PyTuple_GET_ITEM(m, 2)))) < 0) goto done;
    }
    if (text_cells(j, PyTuple_GET_ITEM(main, 2), cells, flat, bools, un) < 0) goto done;
    if (put_unparsed(j, 0, un) < 0 || end_rows(j, 0, nparts) < 0) goto done;
    for (Py_ssize_t s = 0; s < PyTuple_GET_SIZE(subs); s++) {
        PyObject *sf = PyTuple_GET_ITEM(subs, s);
        PyObject *cell = NULL;
        if (!(flat && PyObject_IsTrue(PyTuple_GET_ITEM(sf, 1)))) cell = PyDict_GetItem(cells, PyTuple_GET_ITEM(sf, 0));
        PyObject *rows = subform_list(cell);
        if (rows == NULL) continue;
        Py_ssize_t first = PyLong_AsSsize_t(PyTuple_GET_ITEM(sf, 2)), n = PyLong_AsSsize_t(PyTuple_GET_ITEM(sf, 3));
        PyObject *cols = PyTuple_GET_ITEM(sf, 4);
        Py_INCREF(rows);
        for (Py_ssize_t r = 0; r < PyList_GET_SIZE(rows); r++) {
            PyObject *raw_row = Py_NewRef(PyList_GET_ITEM(rows, r));
            PyDict_Clear(un);
            int e = start_rows(j, first, n, sid, r) < 0 || text_cells(j, cols, raw_row, 0, bools, un) < 0
                    || put_unparsed(j, first, un) < 0 || end_rows(j, first, n) < 0;
            Py_DECREF(raw_row);
            if (e) {
                Py_DECREF(rows);
                goto done;
            }
        }
        Py_DECREF(rows);
    }
    rc = 1;
done:
    Py_XDECREF(un);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Raw JSON lines: a validating parser into a tape of tokens, no Python object made           */
/* ------------------------------------------------------------------------------------------ */

/* The archive's JSON lines are read here without decoding them into Python objects (line_heads,
 * and block_text for payloads handed over as bytes). The parser accepts a subset of
 * what json.loads accepts and reads it the same way: RFC 8259 JSON in strict UTF-8 (no lone
 * surrogates, escaped or not), JSON whitespace, at most JMAX_DEPTH levels of nesting. Anything
 * else (NaN, Infinity, a lone surrogate escape, invalid UTF-8, deeper documents, invalid JSON)
 * is "not handled": the caller hands the line to the Python path, which decodes it with
 * exporter.fastjson and so reads it, or fails on it, exactly as before. Duplicate keys: the last
 * one wins, as in a dict. Tokens need no lock: the parser runs with the interpreter released. */

enum { J_OBJ = 1, J_ARR, J_STR, J_NUM, J_TRUE, J_FALSE, J_NULL };
#define JMAX_DEPTH 64

typedef struct {
    const char *s;  /* J_STR: its UTF-8, escapes decoded (in the line or the tape's arena); J_NUM: its text */
    uint32_t len;   /* bytes of s; J_OBJ with a key index: the index's size */
    uint32_t end;   /* the token after this value and everything in it */
    uint32_t n;     /* J_OBJ: members; J_ARR: items */
    uint32_t index; /* J_OBJ: 1 + where its key index starts in slots, 0: none made */
    uint8_t type;
    uint8_t flag;   /* J_STR: had escapes; J_NUM: an integer (no fraction, no exponent) */
} JTok;

typedef struct {
    JTok *t;
    uint32_t n, cap;
    char *arena; /* decoded strings that had escapes; sized to the line before parsing, never moved */
    size_t used, acap;
    uint32_t *slots; /* key indexes of objects of many members (token of the key + 1, 0 empty) */
    size_t sused, scap;
} JTape;

static void jtape_free(JTape *tp) {
    PyMem_RawFree(tp->t);
    PyMem_RawFree(tp->arena);
    PyMem_RawFree(tp->slots);
    memset(tp, 0, sizeof *tp);
}

/* 0: a byte that may stand in a string as is; 1 '"', 2 '\\', 3 control, 4 not ASCII */
static unsigned char jclass[256];

static void jclass_init(void) {
    for (int c = 0; c < 256; c++) jclass[c] = c < 0x20 ? 3 : c >= 0x80 ? 4 : c == '"' ? 1 : c == '\\' ? 2 : 0;
}

static inline const unsigned char *jws(const unsigned char *p, const unsigned char *e) {
    while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

/* bytes of the strict UTF-8 sequence at p (2 to 4), 0 if invalid (overlong, surrogate, > U+10FFFF) */
static inline int utf8_seq(const unsigned char *p, const unsigned char *e) {
    unsigned char c = p[0];
    Py_ssize_t left = e - p;
    if (c >= 0xC2 && c <= 0xDF) return left >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (left < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && p[1] < 0xA0) return 0; /* overlong */
        if (c == 0xED && p[1] >= 0xA0) return 0; /* surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (left < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && p[1] < 0x90) return 0;
        if (c == 0xF4 && p[1] >= 0x90) return 0;
        return 4;
    }
    return 0;
}

static inline int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static inline int hex4(const unsigned char *p) {
    int a = hexval(p[0]), b = hexval(p[1]), c = hexval(p[2]), d = hexval(p[3]);
    return (a | b | c | d) < 0 ? -1 : (a << 12) | (b << 8) | (c << 4) | d;
}

static inline char *put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | (cp >> 6));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | (cp >> 12));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | (cp >> 18));
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    return o;
}

/* The string whose content (escapes checked already) is p..q, decoded into o: its length, or -1
 * for a lone surrogate (json.loads makes a str that has no UTF-8 form: Python's path). */
static Py_ssize_t jdecode(const unsigned char *p, const unsigned char *q, char *o) {
    char *start = o;
    while (p < q) {
        if (*p != '\\') {
            *o++ = (char)*p++;
            continue;
        }
        unsigned char x = p[1];
        p += 2;
        switch (x) {
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'r': *o++ = '\r'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'u': {
            uint32_t cp = (uint32_t)hex4(p);
            p += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return -1;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (q - p < 6 || p[0] != '\\' || p[1] != 'u') return -1;
                int lo = hex4(p + 2);
                if (lo < 0xDC00 || lo > 0xDFFF) return -1;
                cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
                p += 6;
            }
            o = put_utf8(o, cp);
            break;
        }
        default: *o++ = (char)x; break; /* " \ / */
        }
    }
    return o - start;
}

static int jpush(JTape *tp) {
    if (tp->n == tp->cap) {
        uint32_t cap = tp->cap ? tp->cap * 2 : 256;
        JTok *t = PyMem_RawRealloc(tp->t, (size_t)cap * sizeof(JTok));
        if (t == NULL) return -1;
        tp->t = t;
        tp->cap = cap;
    }
    tp->n++;
    return 0;
}

/* a string token from p (just after its opening quote): the byte after its closing quote, or NULL
 * (not handled) */
static const unsigned char *jstring(JTape *tp, JTok *tok, const unsigned char *p, const unsigned char *e) {
    const unsigned char *start = p;
    int esc = 0;
    for (;;) {
        while (p + 4 <= e && !jclass[p[0]] && !jclass[p[1]] && !jclass[p[2]] && !jclass[p[3]]) p += 4;
        while (p < e && !jclass[*p]) p++;
        if (p >= e) return NULL;
        unsigned char c = *p;
        if (c == '"') break;
        if (c == '\\') {
            if (p + 1 >= e) return NULL;
            unsigned char x = p[1];
            if (x == 'u') {
                if (e - p < 6 || hex4(p + 2) < 0) return NULL;
                p += 6;
            } else if (x == '"' || x == '\\' || x == '/' || x == 'b' || x == 'f' || x == 'n' || x == 'r' || x == 't') {
                p += 2;
            } else {
                return NULL;
            }
            esc = 1;
            continue;
        }
        if (c < 0x20) return NULL;
        int k = utf8_seq(p, e);
        if (!k) return NULL;
        p += k;
    }
    tok->type = J_STR;
    tok->flag = (uint8_t)esc;
    if (!esc) {
        tok->s = (const char *)start;
        tok->len = (uint32_t)(p - start);
    } else {
        char *o = tp->arena + tp->used;
        Py_ssize_t n = jdecode(start, p, o);
        if (n < 0) return NULL;
        tok->s = o;
        tok->len = (uint32_t)n;
        tp->used += (size_t)n;
    }
    return p + 1;
}

static inline int is_digit(unsigned char c) {
    return c >= '0' && c <= '9';
}

static const unsigned char *jnumber(JTok *tok, const unsigned char *p, const unsigned char *e) {
    const unsigned char *s = p;
    int is_int = 1;
    if (p < e && *p == '-') p++;
    if (p >= e) return NULL;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < e && is_digit(*p)) p++;
    } else {
        return NULL;
    }
    if (p < e && *p == '.') {
        p++;
        is_int = 0;
        if (p >= e || !is_digit(*p)) return NULL;
        while (p < e && is_digit(*p)) p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        is_int = 0;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || !is_digit(*p)) return NULL;
        while (p < e && is_digit(*p)) p++;
    }
    tok->type = J_NUM;
    tok->s = (const char *)s;
    tok->len = (uint32_t)(p - s);
    tok->flag = (uint8_t)is_int;
    return p;
}

/* one value at *pp: 1 parsed, 0 not handled, -1 no memory */
static int jvalue(JTape *tp, const unsigned char **pp, const unsigned char *e, int depth) {
    const unsigned char *p = jws(*pp, e);
    if (p >= e) return 0;
    uint32_t me = tp->n;
    if (jpush(tp) < 0) return -1;
    JTok *t = &tp->t[me];
    t->n = 0;
    t->index = 0;
    t->flag = 0;
    t->s = NULL;
    t->len = 0;
    unsigned char c = *p;
    if (c == '{' || c == '[') {
        if (depth >= JMAX_DEPTH) return 0;
        uint32_t n = 0;
        unsigned char close = c == '{' ? '}' : ']';
        p = jws(p + 1, e);
        if (p < e && *p == close) {
            p++;
        } else {
            for (;;) {
                if (c == '{') {
                    if (p >= e || *p != '"') return 0;
                    uint32_t k = tp->n;
                    if (jpush(tp) < 0) return -1;
                    tp->t[k].n = 0;
                    tp->t[k].index = 0;
                    p = jstring(tp, &tp->t[k], p + 1, e);
                    if (p == NULL) return 0;
                    tp->t[k].end = k + 1;
                    p = jws(p, e);
                    if (p >= e || *p != ':') return 0;
                    p++;
                }
                int r = jvalue(tp, &p, e, depth + 1);
                if (r <= 0) return r;
                n++;
                p = jws(p, e);
                if (p < e && *p == ',') {
                    p = jws(p + 1, e);
                    continue;
                }
                if (p < e && *p == close) {
                    p++;
                    break;
                }
                return 0;
            }
        }
        t = &tp->t[me];
        t->type = c == '{' ? J_OBJ : J_ARR;
        t->n = n;
    } else if (c == '"') {
        p = jstring(tp, t, p + 1, e);
        if (p == NULL) return 0;
    } else if (c == 't' || c == 'f' || c == 'n') {
        const char *word = c == 't' ? "true" : c == 'f' ? "false" : "null";
        size_t wn = strlen(word);
        if ((size_t)(e - p) < wn || memcmp(p, word, wn) != 0) return 0;
        p += wn;
        t->type = c == 't' ? J_TRUE : c == 'f' ? J_FALSE : J_NULL;
    } else {
        p = jnumber(t, p, e);
        if (p == NULL) return 0;
    }
    tp->t[me].end = tp->n;
    *pp = p;
    return 1;
}

/* Parse one line (a whole document and JSON whitespace around it) into the tape: 1 parsed,
 * 0 not handled, -1 no memory. */
static int jparse(JTape *tp, const char *data, Py_ssize_t len) {
    tp->n = 0;
    tp->used = 0;
    tp->sused = 0;
    if (len >= (Py_ssize_t)UINT32_MAX / 2) return 0;
    if ((size_t)len > tp->acap) {
        char *a = PyMem_RawRealloc(tp->arena, (size_t)len + 64);
        if (a == NULL) return -1;
        tp->arena = a;
        tp->acap = (size_t)len + 64;
    }
    const unsigned char *p = (const unsigned char *)data, *e = p + len;
    int r = jvalue(tp, &p, e, 0);
    if (r <= 0) return r;
    return jws(p, e) == e ? 1 : 0;
}

static inline uint32_t jhash(const char *s, uint32_t n) {
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* members of an object beyond which lookups go through a key index */
#define JINDEX_FROM 12

static int jindex(JTape *tp, uint32_t obj) {
    JTok *o = &tp->t[obj];
    uint32_t size = 32;
    while (size < 2 * o->n) size *= 2;
    if (tp->sused + size > tp->scap) {
        size_t cap = tp->scap ? tp->scap : 1024;
        while (cap < tp->sused + size) cap *= 2;
        uint32_t *s = PyMem_RawRealloc(tp->slots, cap * sizeof(uint32_t));
        if (s == NULL) return -1;
        tp->slots = s;
        tp->scap = cap;
    }
    uint32_t *slots = tp->slots + tp->sused;
    memset(slots, 0, size * sizeof(uint32_t));
    uint32_t k = obj + 1;
    for (uint32_t i = 0; i < o->n; i++) {
        JTok *kt = &tp->t[k];
        uint32_t at = jhash(kt->s, kt->len) & (size - 1);
        while (slots[at]) {
            JTok *other = &tp->t[slots[at] - 1];
            if (other->len == kt->len && memcmp(other->s, kt->s, kt->len) == 0) break; /* the later one wins */
            at = (at + 1) & (size - 1);
        }
        slots[at] = k + 1;
        k = tp->t[k + 1].end;
    }
    o = &tp->t[obj];
    o->index = (uint32_t)tp->sused + 1;
    o->len = size;
    tp->sused += size;
    return 0;
}

/* The value token of member ``key`` (UTF-8, hash h) of object ``obj``: 0 when there is none (token
 * 0 is never a member's value), (uint32_t)-1 when out of memory. */
static uint32_t jget(JTape *tp, uint32_t obj, const char *key, uint32_t klen, uint32_t h) {
    JTok *o = &tp->t[obj];
    if (o->n < JINDEX_FROM) {
        uint32_t found = 0, k = obj + 1;
        for (uint32_t i = 0; i < o->n; i++) {
            JTok *kt = &tp->t[k];
            if (kt->len == klen && memcmp(kt->s, key, klen) == 0) found = k + 1;
            k = tp->t[k + 1].end;
        }
        return found;
    }
    if (o->index == 0 && jindex(tp, obj) < 0) return (uint32_t)-1;
    o = &tp->t[obj];
    uint32_t size = o->len, *slots = tp->slots + (o->index - 1);
    for (uint32_t at = h & (size - 1);; at = (at + 1) & (size - 1)) {
        uint32_t k = slots[at];
        if (k == 0) return 0;
        JTok *kt = &tp->t[k - 1];
        if (kt->len == klen && memcmp(kt->s, key, klen) == 0) return k;
    }
}

/* a key known by its UTF-8 and hash */
typedef struct {
    const char *s;
    uint32_t len, hash;
} JKey;

static int jkey_of(JKey *k, PyObject *str) {
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(str, &n);
    if (u == NULL || n >= (Py_ssize_t)UINT32_MAX) return -1;
    k->s = u;
    k->len = (uint32_t)n;
    k->hash = jhash(u, (uint32_t)n);
    return 0;
}

static inline uint32_t jlook(JTape *tp, uint32_t obj, const JKey *k) {
    return jget(tp, obj, k->s, k->len, k->hash);
}

static inline int ws_only(const char *s, Py_ssize_t n) {
    /* bytes.strip() empty: ASCII whitespace of bytes.isspace() */
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(c == ' ' || (c >= '\t' && c <= '\r'))) return 0;
    }
    return 1;
}

/* The text str() gives of an id value (a str, or an integer as JSON writes it, "-0" aside),
 * through *s and *n: 1, or 0 for anything else (null, "", other numbers, true...). */
static int jid_text(JTape *tp, uint32_t v, const char **s, uint32_t *n) {
    if (v == 0 || v == (uint32_t)-1) return 0;
    JTok *t = &tp->t[v];
    if ((t->type == J_STR && t->len > 0) || (t->type == J_NUM && t->flag && !(t->len == 2 && t->s[0] == '-'))) {
        *s = t->s;
        *n = t->len;
        return 1;
    }
    return 0;
}

/* one line's parse results, kept while the interpreter is released */
typedef struct {
    int state;           /* 0 blank, 1 read, 2 left to Python */
    const char *a, *b;   /* the id's and the time's text (b NULL: no time) */
    uint32_t an, bn;
    int a_moved, b_moved; /* the text is in the arena (escapes): copied aside */
} Head;

static JKey k_fields, k_id, k__id, k_update_time, k__update_time, k_create_time, k__create_time, k_submission_id,
    k_boolean, k_value, k_subform, k_row, k_field, k_name, k_content_type, k_size, k_sha256;

/* a text the parser decoded into the tape's arena (which the next line reuses), copied into
 * ``aside``: *s becomes its offset there and *moved is set. 0, or -1 out of memory. */
static int set_aside(JTape *tp, Buf *aside, const char **s, uint32_t n, int *moved) {
    if (*s == NULL || *s < tp->arena || *s >= tp->arena + tp->acap) return 0;
    Py_ssize_t off = aside->len;
    if (buf_put(aside, *s, n) < 0) return -1;
    *s = (const char *)(intptr_t)off;
    *moved = 1;
    return 0;
}

/* The shape of the parsed submission in the tape (records._is_flat): 1 flat, 0 nested, -1 out of
 * memory; *fields gets its "fields" member (0: none) and *id its id's (0: none). */
static int jshape(JTape *tp, uint32_t *fields, uint32_t *id) {
    uint32_t f = jlook(tp, 0, &k_fields), uid = jlook(tp, 0, &k__id), nid = jlook(tp, 0, &k_id);
    if (f == (uint32_t)-1 || uid == (uint32_t)-1 || nid == (uint32_t)-1) return -1;
    int flat = f == 0 && (uid != 0 || nid == 0);
    *fields = f;
    *id = flat ? uid : nid;
    return flat;
}

/* heads: read the id and update time (submissions) or the submission id (media index) of each
 * line, with the interpreter released; texts that had escapes are copied into ``aside``. */
static int heads_scan(JTape *tp, const char **data, Py_ssize_t *lens, Py_ssize_t n, int media, Head *out, Buf *aside) {
    for (Py_ssize_t i = 0; i < n; i++) {
        Head *h = &out[i];
        memset(h, 0, sizeof *h);
        if (ws_only(data[i], lens[i])) continue;
        h->state = 2;
        int r = jparse(tp, data[i], lens[i]);
        if (r < 0) return -1;
        if (r == 0 || tp->t[0].type != J_OBJ) continue;
        const char *s = NULL;
        uint32_t sn = 0;
        if (media) {
            if (!jid_text(tp, jlook(tp, 0, &k_submission_id), &s, &sn)) continue;
            h->a = s;
            h->an = sn;
        } else {
            uint32_t f, id;
            int flat = jshape(tp, &f, &id);
            if (flat < 0) return -1;
            if (!jid_text(tp, id, &s, &sn)) continue;
            h->a = s;
            h->an = sn;
            /* _s(update_time) or _s(create_time): a str or null each, else Python's */
            uint32_t u = jlook(tp, 0, flat ? &k__update_time : &k_update_time);
            uint32_t c = jlook(tp, 0, flat ? &k__create_time : &k_create_time);
            if (u == (uint32_t)-1 || c == (uint32_t)-1) return -1;
            JTok *ut = u ? &tp->t[u] : NULL, *ct = c ? &tp->t[c] : NULL;
            if ((ut && ut->type != J_STR && ut->type != J_NULL) || (ct && ct->type != J_STR && ct->type != J_NULL))
                continue;
            JTok *pick = (ut && ut->type == J_STR && ut->len > 0) ? ut : (ct && ct->type == J_STR) ? ct : NULL;
            if (pick) {
                h->b = pick->s;
                h->bn = pick->len;
            }
        }
        if (set_aside(tp, aside, &h->a, h->an, &h->a_moved) < 0 || set_aside(tp, aside, &h->b, h->bn, &h->b_moved) < 0)
            return -1;
        h->state = 1;
    }
    return 0;
}

/* line_heads(lines, media) -> list: per line False (blank), None (left to Python: decode it), or
 * for submissions (id, update time or None) as exporter.records.submission_id and
 * submission_update_time read them, for media index lines the submission id str() makes of it. */
static PyObject *line_heads(PyObject *self, PyObject *args) {
    PyObject *lines;
    int media;
    if (!PyArg_ParseTuple(args, "O!p:line_heads", &PyList_Type, &lines, &media)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(lines);
    const char **data = PyMem_Calloc((size_t)n + 1, sizeof(char *));
    Py_ssize_t *lens = PyMem_Calloc((size_t)n + 1, sizeof(Py_ssize_t));
    Head *heads = PyMem_Calloc((size_t)n + 1, sizeof(Head));
    PyObject *out = NULL;
    JTape tp = {0};
    Buf aside = {NULL, 0, 0};
    if (data == NULL || lens == NULL || heads == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_INCREF(lines); /* its items stay alive while the lock is released */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        if (!PyBytes_Check(line)) {
            Py_DECREF(lines);
            PyErr_SetString(PyExc_TypeError, "line_heads takes a list of bytes");
            goto done;
        }
        data[i] = PyBytes_AS_STRING(line);
        lens[i] = PyBytes_GET_SIZE(line);
    }
    int r;
    Py_BEGIN_ALLOW_THREADS
    r = heads_scan(&tp, data, lens, n, media, heads, &aside);
    Py_END_ALLOW_THREADS
    if (r < 0) {
        Py_DECREF(lines);
        PyErr_NoMemory();
        goto done;
    }
    out = PyList_New(n);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        Head *h = &heads[i];
        PyObject *item;
        if (h->state != 1) {
            item = Py_NewRef(h->state == 0 ? Py_False : Py_None);
        } else {
            const char *a = h->a_moved ? aside.data + (intptr_t)h->a : h->a;
            PyObject *sid = PyUnicode_DecodeUTF8(a, h->an, NULL);
            if (media) {
                item = sid;
            } else {
                PyObject *ut = Py_None;
                if (sid != NULL && h->b != NULL)
                    ut = PyUnicode_DecodeUTF8(h->b_moved ? aside.data + (intptr_t)h->b : h->b, h->bn, NULL);
                else
                    Py_INCREF(ut);
                item = (sid && ut) ? PyTuple_Pack(2, sid, ut) : NULL;
                Py_XDECREF(sid);
                Py_XDECREF(ut);
            }
        }
        if (item == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, item);
    }
    Py_DECREF(lines);
done:
    PyMem_Free(data);
    PyMem_Free(lens);
    PyMem_Free(heads);
    PyMem_RawFree(aside.data);
    jtape_free(&tp);
    return out;
}

/* SHA-256 (FIPS 180-4), for the media table's keys */
typedef struct {
    uint32_t h[8];
    unsigned char block[64];
    size_t used;
    uint64_t bits;
} Sha256;

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha_block(Sha256 *c, const unsigned char *p) {
    uint32_t w[64], a[8];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(a, c->h, sizeof a);
    uint32_t A = a[0], B = a[1], C = a[2], D = a[3], E = a[4], F = a[5], G = a[6], H = a[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = H + (ROR(E, 6) ^ ROR(E, 11) ^ ROR(E, 25)) + ((E & F) ^ (~E & G)) + sha_k[i] + w[i];
        uint32_t t2 = (ROR(A, 2) ^ ROR(A, 13) ^ ROR(A, 22)) + ((A & B) ^ (A & C) ^ (B & C));
        H = G;
        G = F;
        F = E;
        E = D + t1;
        D = C;
        C = B;
        B = A;
        A = t1 + t2;
    }
    c->h[0] += A;
    c->h[1] += B;
    c->h[2] += C;
    c->h[3] += D;
    c->h[4] += E;
    c->h[5] += F;
    c->h[6] += G;
    c->h[7] += H;
}

static void sha_init(Sha256 *c) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof h0);
    c->used = 0;
    c->bits = 0;
}

static void sha_update(Sha256 *c, const void *data, size_t n) {
    const unsigned char *p = data;
    c->bits += (uint64_t)n * 8;
    while (n > 0) {
        size_t take = 64 - c->used < n ? 64 - c->used : n;
        memcpy(c->block + c->used, p, take);
        c->used += take;
        p += take;
        n -= take;
        if (c->used == 64) {
            sha_block(c, c->block);
            c->used = 0;
        }
    }
}

static void sha_hex(Sha256 *c, char out[64]) {
    uint64_t bits = c->bits;
    unsigned char pad[72] = {0x80};
    size_t padlen = (c->used < 56 ? 56 : 120) - c->used;
    for (int i = 0; i < 8; i++) pad[padlen + i] = (unsigned char)(bits >> (56 - 8 * i));
    sha_update(c, pad, padlen + 8);
    static const char hexd[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        unsigned char byte = (unsigned char)(c->h[i / 4] >> (24 - 8 * (i % 4)));
        out[2 * i] = hexd[byte >> 4];
        out[2 * i + 1] = hexd[byte & 15];
    }
}

/* One media reference met while walking a submission's media fields. */
typedef struct {
    PyObject *subform; /* borrowed: the sub-form field name, or NULL */
    Py_ssize_t row;
    PyObject *field;   /* borrowed */
    PyObject *name;    /* owned */
} Ref;

typedef struct {
    Ref *items;
    Py_ssize_t n, cap;
} Refs;

static void refs_clear(Refs *r) {
    for (Py_ssize_t i = 0; i < r->n; i++) Py_DECREF(r->items[i].name);
    r->n = 0;
}

/* add the names of a media value, each (sub-form, row, field, name) once (_unique_media) */
static int refs_add(Refs *r, PyObject *val, PyObject *subform, Py_ssize_t row, PyObject *field) {
    if (!PyTuple_Check(val)) return 0;
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(val); k++) {
        PyObject *name = PyTuple_GET_ITEM(val, k);
        int dup = 0;
        for (Py_ssize_t i = 0; i < r->n && !dup; i++) {
            Ref *o = &r->items[i];
            if (o->row != row || (o->subform == NULL) != (subform == NULL)) continue;
            int same = (subform == NULL || PyObject_RichCompareBool(o->subform, subform, Py_EQ))
                       && PyObject_RichCompareBool(o->field, field, Py_EQ)
                       && PyObject_RichCompareBool(o->name, name, Py_EQ);
            if (PyErr_Occurred()) return -1;
            dup = same;
        }
        if (dup) continue;
        if (r->n == r->cap) {
            Py_ssize_t cap = r->cap ? 2 * r->cap : 8;
            Ref *items = PyMem_Realloc(r->items, (size_t)cap * sizeof(Ref));
            if (items == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            r->items = items;
            r->cap = cap;
        }
        r->items[r->n++] = (Ref){subform, row, field, Py_NewRef(name)};
    }
    return 0;
}

/* The media references of one submission (shape already checked), in parse_fields' order. */
static int media_walk(Refs *refs, PyObject *top, PyObject *cells, int flat, PyObject *bools) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(top); i++) {
        PyObject *spec = PyTuple_GET_ITEM(top, i);
        PyObject *name = PyTuple_GET_ITEM(spec, 0), *kids = PyTuple_GET_ITEM(spec, 5);
        int is_media = PyObject_IsTrue(PyTuple_GET_ITEM(spec, 3));
        if (!is_media && kids == Py_None) continue;
        PyObject *cell = NULL;
        if (!(flat && PyObject_IsTrue(PyTuple_GET_ITEM(spec, 4)))) cell = PyDict_GetItem(cells, name);
        if (kids == Py_None) {
            PyObject *t, *val = cell_value(cell, (int)PyLong_AsLong(PyTuple_GET_ITEM(spec, 1)),
                                           PyTuple_GET_ITEM(spec, 2), bools, &t);
            if (val == NULL) return -1;
            Py_DECREF(t);
            int e = PyObject_IsTrue(val) ? refs_add(refs, val, NULL, -1, name) : 0;
            Py_DECREF(val);
            if (e < 0) return -1;
            continue;
        }
        PyObject *rows = subform_list(cell);
        if (rows == NULL) continue;
        for (Py_ssize_t r = 0; r < PyList_GET_SIZE(rows); r++) {
            PyObject *raw_row = PyList_GET_ITEM(rows, r);
            for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(kids); k++) {
                PyObject *kspec = PyTuple_GET_ITEM(kids, k);
                if (!PyObject_IsTrue(PyTuple_GET_ITEM(kspec, 3))) continue;
                PyObject *cname = PyTuple_GET_ITEM(kspec, 0);
                PyObject *t, *val = cell_value(PyDict_GetItem(raw_row, cname),
                                               (int)PyLong_AsLong(PyTuple_GET_ITEM(kspec, 1)),
                                               PyTuple_GET_ITEM(kspec, 2), bools, &t);
                if (val == NULL) return -1;
                Py_DECREF(t);
                int e = PyObject_IsTrue(val) ? refs_add(refs, val, name, r, cname) : 0;
                Py_DECREF(val);
                if (e < 0) return -1;
            }
        }
    }
    return 0;
}

static PyObject *str_subform = NULL, *str_row = NULL, *str_field = NULL, *str_name = NULL, *str_content_type = NULL,
                *str_size = NULL, *str_sha256 = NULL, *str_fields = NULL, *str_id = NULL, *str__id = NULL;

/* the index entry of a reference: the last one with its (sub-form, row, field, name), borrowed */
static PyObject *entry_of(PyObject *entries, Ref *ref, PyObject *row) {
    for (Py_ssize_t i = PyList_GET_SIZE(entries) - 1; i >= 0; i--) {
        PyObject *e = PyList_GET_ITEM(entries, i);
        if (!PyDict_Check(e)) continue;
        PyObject *vals[4] = {get_or_none(e, str_subform), get_or_none(e, str_row), get_or_none(e, str_field),
                             get_or_none(e, str_name)};
        PyObject *want[4] = {ref->subform ? ref->subform : Py_None, row, ref->field, ref->name};
        int same = 1;
        for (int k = 0; k < 4 && same; k++) {
            if (vals[k] == NULL) return NULL;
            same = PyObject_RichCompareBool(vals[k], want[k], Py_EQ);
            if (same < 0) return NULL;
        }
        if (same) return e;
    }
    return Py_None;
}

/* the UTF-8 of a str (NULL without an error when it has lone surrogates: the caller gives up) */
static const char *utf8_or_null(PyObject *s, Py_ssize_t *n) {
    const char *u = PyUnicode_AsUTF8AndSize(s, n);
    if (u == NULL && PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) PyErr_Clear();
    return u;
}

/* The media table's key of one reference (connectors.sql.schema.media_key), its parts as UTF-8
 * (sub NULL: a field of the form): ``<form>/<submission>/`` and 16 hex digits of the sha256 of the
 * parts joined by U+001F when short_key, else the whole sha256. */
static int put_media_key(Buf *out, int short_key, const char *fid, Py_ssize_t fn, const char *sid, Py_ssize_t sn,
                         const char *sub, Py_ssize_t subn, Py_ssize_t row, const char *field, Py_ssize_t fieldn,
                         const char *name, Py_ssize_t namen) {
    Sha256 c;
    sha_init(&c);
    sha_update(&c, fid, (size_t)fn);
    sha_update(&c, "\x1f", 1);
    sha_update(&c, sid, (size_t)sn);
    sha_update(&c, "\x1f", 1);
    if (sub) sha_update(&c, sub, (size_t)subn);
    sha_update(&c, "\x1f", 1);
    if (sub) {
        char tmp[32];
        int len = snprintf(tmp, sizeof tmp, "%zd", row);
        sha_update(&c, tmp, (size_t)len);
    }
    sha_update(&c, "\x1f", 1);
    sha_update(&c, field, (size_t)fieldn);
    sha_update(&c, "\x1f", 1);
    sha_update(&c, name, (size_t)namen);
    char hex[64];
    sha_hex(&c, hex);
    if (!short_key) return buf_put(out, hex, 64);
    if (buf_put(out, fid, fn) < 0 || buf_byte(out, '/') < 0 || buf_put(out, sid, sn) < 0 || buf_byte(out, '/') < 0)
        return -1;
    return buf_put(out, hex, 16);
}

/* The media table lines of one submission's references found in its index entries, as
 * connectors.sql.schema.media_row and copy_bytes write them. 1 done, 0 leave it to Python. */
static int media_lines(TextJob *j, Buf *out, Refs *refs, PyObject *entries, PyObject *form_id, PyObject *sid,
                       Py_ssize_t key_len, PyObject *default_type, PyObject *matched) {
    Py_ssize_t nf, ns;
    const char *uf = utf8_or_null(form_id, &nf), *us = uf ? utf8_or_null(sid, &ns) : NULL;
    if (us == NULL) return PyErr_Occurred() ? -1 : 0;
    int short_key = PyUnicode_GET_LENGTH(form_id) + PyUnicode_GET_LENGTH(sid) + 18 <= key_len
                    && PyUnicode_IS_ASCII(form_id) && PyUnicode_IS_ASCII(sid);
    for (Py_ssize_t i = 0; i < refs->n; i++) {
        Ref *ref = &refs->items[i];
        PyObject *row = ref->subform ? PyLong_FromSsize_t(ref->row) : Py_NewRef(Py_None);
        if (row == NULL) return -1;
        PyObject *e = entry_of(entries, ref, row);
        if (e == NULL || e == Py_None) {
            Py_DECREF(row);
            if (e == NULL) return -1;
            continue; /* referenced but never downloaded */
        }
        Py_ssize_t nsub = 0, nfield, nname;
        const char *usub = ref->subform ? utf8_or_null(ref->subform, &nsub) : NULL;
        const char *ufield = (usub || !ref->subform) ? utf8_or_null(ref->field, &nfield) : NULL;
        const char *uname = ufield ? utf8_or_null(ref->name, &nname) : NULL;
        if (uname == NULL) goto give_up;
        if (put_media_key(out, short_key, uf, nf, us, ns, usub, nsub, ref->row, ufield, nfield, uname, nname) < 0)
            goto fail;
        PyObject *ct = get_or_none(e, str_content_type), *size = get_or_none(e, str_size),
                 *sha = get_or_none(e, str_sha256);
        if (ct == NULL || size == NULL || sha == NULL) goto fail;
        int truthy = PyObject_IsTrue(ct);
        if (truthy < 0) goto fail;
        PyObject *cells[10] = {form_id, sid, ref->field, ref->subform ? ref->subform : Py_None, row, ref->name,
                               truthy ? ct : default_type, size, sha, Py_None};
        for (int k = 0; k < 10; k++) {
            Py_INCREF(cells[k]);
            int r = buf_byte(out, '\t') < 0 ? -1 : put_value(out, cells[k], j->mode, j->slow, j->decimal);
            Py_DECREF(cells[k]);
            if (r < 0) goto fail;
        }
        if (buf_byte(out, '\n') < 0 || PyList_Append(matched, e) < 0) goto fail;
        Py_DECREF(row);
        continue;
    give_up:
        Py_DECREF(row);
        return PyErr_Occurred() ? -1 : 0;
    fail:
        Py_DECREF(row);
        return -1;
    }
    return 1;
}

/* Whether a served submission is one block_text may write itself: a dict whose id is a usable
 * str and whose cells parse_into types (one_text checks the metadata). Sets *cells and *flat. 1 yes,
 * 0 no, -1 error. */
static int block_item_ok(PyObject *payload, PyObject *sid, PyObject *top, Py_ssize_t id_len, PyObject *empty,
                         PyObject **cells, int *flat) {
    if (!PyDict_CheckExact(payload) || !PyUnicode_CheckExact(sid) || PyUnicode_GET_LENGTH(sid) == 0
        || PyUnicode_GET_LENGTH(sid) > id_len)
        return 0;
    int has_fields = PyDict_Contains(payload, str_fields), has_uid = PyDict_Contains(payload, str__id),
        has_id = PyDict_Contains(payload, str_id);
    if (has_fields < 0 || has_uid < 0 || has_id < 0) return -1;
    *flat = !has_fields && (has_uid || !has_id);
    if (*flat) {
        *cells = payload;
    } else {
        PyObject *c = PyDict_GetItemWithError(payload, str_fields);
        if (c == NULL && PyErr_Occurred()) return -1;
        if (c == NULL || c == Py_None) c = empty;
        if (!PyDict_CheckExact(c)) return 0;
        *cells = c;
    }
    return parse_shape_ok(top, *cells, *flat);
}

/* ------------------------------------------------------------------------------------------ */
/* block_text of payloads handed over as the archive's lines (bytes)                          */
/* ------------------------------------------------------------------------------------------ */

/* What block_text writes for a submission given as its JSON line, read with the tape parser
 * above: the same lines, byte for byte, as for the decoded payload. Values are typed here
 * wherever the outcome is certain (the texts, plain numbers, exact ISO dates and times,
 * checkboxes, plain decimal coordinates, media names); in the first pass, with the interpreter
 * released, a submission needing anything else (a converter of Python's, a text kept aside in
 * unparsed_text) is put off to a second pass, which runs those steps through the same Python
 * functions. A shape the decoded path itself would leave to Python (non-text values, a missing
 * id...) is left to Python here too: the records' path then decodes the line. */

#define R_LEFT 0     /* left to Python (the records' path) */
#define R_DONE 1
#define R_LATER 2    /* needs the interpreter: the second pass */

typedef struct {
    Py_ssize_t part;
    PyObject *name, *fn, *conv;
    JKey key;
    int code, kind, present;
} RCol;

typedef struct {
    PyObject *name;
    JKey key;
    int kind, is_media, underscored, subform;
    Py_ssize_t kids, nkids; /* the sub-form's fields in RSpec.kids */
} RTop;

typedef struct {
    JKey key, flat_key;
    PyObject *mk;
    int is_time;
} RMeta;

typedef struct {
    JKey key;
    int underscored;
    Py_ssize_t first, nparts, cols, ncols; /* its columns in RSpec.cols */
} RSub;

typedef struct {
    RTop *top, *kids;
    RMeta *metas;
    RCol *cols; /* the form's columns, then each sub-form's */
    RSub *subs;
    Py_ssize_t ntop, nkids, nmetas, ncols, nmain, nsubs, main_parts;
    const char *true_s, *false_s; /* the checkbox texts (NULL: None) */
    Py_ssize_t true_n, false_n;
    int ok; /* every converter is one written here or through typed(): raw lines may be written */
} RSpec;

static void rspec_free(RSpec *s) {
    PyMem_Free(s->top);
    PyMem_Free(s->kids);
    PyMem_Free(s->metas);
    PyMem_Free(s->cols);
    PyMem_Free(s->subs);
}

static int long_at(PyObject *t, Py_ssize_t i, int *out) {
    long v = PyLong_AsLong(PyTuple_GET_ITEM(t, i));
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = (int)v;
    return 0;
}

/* one column tuple (part, name, code, fn, kind, conv, present) */
static int rcol_of(RCol *c, PyObject *t, int *ok) {
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 7) {
        PyErr_SetString(PyExc_TypeError, "block_text: a column spec has 7 items");
        return -1;
    }
    c->part = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 0));
    c->name = PyTuple_GET_ITEM(t, 1);
    c->fn = PyTuple_GET_ITEM(t, 3);
    c->conv = PyTuple_GET_ITEM(t, 5);
    if ((c->part == -1 && PyErr_Occurred()) || long_at(t, 2, &c->code) < 0 || long_at(t, 4, &c->kind) < 0
        || long_at(t, 6, &c->present) < 0)
        return -1;
    if (jkey_of(&c->key, c->name) < 0) {
        PyErr_Clear(); /* a name without UTF-8 form: no raw line of this form is written here */
        *ok = 0;
        c->key.s = "";
        c->key.len = c->key.hash = 0;
    }
    if (c->present && c->kind == K_CALL) *ok = 0; /* a converter this file does not know */
    return 0;
}

static int rkey_of(JKey *k, PyObject *name, int *ok) {
    if (!PyUnicode_Check(name) || jkey_of(k, name) < 0) {
        PyErr_Clear();
        *ok = 0;
        k->s = "";
        k->len = k->hash = 0;
    }
    return 0;
}

/* The raw-line spec of a block_text spec (borrowed references into it), made while holding the
 * interpreter. */
static int rspec_make(RSpec *s, PyObject *tspec, PyObject *bools) {
    memset(s, 0, sizeof *s);
    s->ok = 1;
    PyObject *top = PyTuple_GET_ITEM(tspec, 0), *main = PyTuple_GET_ITEM(tspec, 1), *subs = PyTuple_GET_ITEM(tspec, 2);
    PyObject *metas = PyTuple_GET_ITEM(main, 1), *main_cols = PyTuple_GET_ITEM(main, 2);
    s->main_parts = PyLong_AsSsize_t(PyTuple_GET_ITEM(main, 0));
    s->ntop = PyTuple_GET_SIZE(top);
    for (Py_ssize_t i = 0; i < s->ntop; i++) {
        PyObject *kids = PyTuple_GET_ITEM(PyTuple_GET_ITEM(top, i), 5);
        if (kids != Py_None) s->nkids += PyTuple_GET_SIZE(kids);
    }
    s->nmetas = PyTuple_GET_SIZE(metas);
    s->nmain = PyTuple_GET_SIZE(main_cols);
    s->nsubs = PyTuple_GET_SIZE(subs);
    s->ncols = s->nmain;
    for (Py_ssize_t i = 0; i < s->nsubs; i++) s->ncols += PyTuple_GET_SIZE(PyTuple_GET_ITEM(PyTuple_GET_ITEM(subs, i), 4));
    s->top = PyMem_Calloc((size_t)s->ntop + 1, sizeof(RTop));
    s->kids = PyMem_Calloc((size_t)s->nkids + 1, sizeof(RTop));
    s->metas = PyMem_Calloc((size_t)s->nmetas + 1, sizeof(RMeta));
    s->cols = PyMem_Calloc((size_t)s->ncols + 1, sizeof(RCol));
    s->subs = PyMem_Calloc((size_t)s->nsubs + 1, sizeof(RSub));
    if (!s->top || !s->kids || !s->metas || !s->cols || !s->subs) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < s->ntop; i++) {
        PyObject *t = PyTuple_GET_ITEM(top, i);
        RTop *f = &s->top[i];
        f->name = PyTuple_GET_ITEM(t, 0);
        if (long_at(t, 1, &f->kind) < 0) return -1;
        f->is_media = PyObject_IsTrue(PyTuple_GET_ITEM(t, 3));
        f->underscored = PyObject_IsTrue(PyTuple_GET_ITEM(t, 4));
        rkey_of(&f->key, f->name, &s->ok);
        PyObject *kids = PyTuple_GET_ITEM(t, 5);
        if (kids == Py_None) continue;
        f->subform = 1;
        f->kids = k;
        f->nkids = PyTuple_GET_SIZE(kids);
        for (Py_ssize_t j = 0; j < f->nkids; j++, k++) {
            PyObject *kt = PyTuple_GET_ITEM(kids, j);
            RTop *c = &s->kids[k];
            c->name = PyTuple_GET_ITEM(kt, 0);
            if (long_at(kt, 1, &c->kind) < 0) return -1;
            c->is_media = PyObject_IsTrue(PyTuple_GET_ITEM(kt, 3));
            rkey_of(&c->key, c->name, &s->ok);
        }
    }
    for (Py_ssize_t i = 0; i < s->nmetas; i++) {
        PyObject *t = PyTuple_GET_ITEM(metas, i);
        RMeta *m = &s->metas[i];
        m->mk = PyTuple_GET_ITEM(t, 0);
        m->is_time = PyObject_IsTrue(PyTuple_GET_ITEM(t, 2));
        rkey_of(&m->key, m->mk, &s->ok);
        rkey_of(&m->flat_key, PyTuple_GET_ITEM(t, 1), &s->ok);
    }
    for (Py_ssize_t i = 0; i < s->nmain; i++)
        if (rcol_of(&s->cols[i], PyTuple_GET_ITEM(main_cols, i), &s->ok) < 0) return -1;
    Py_ssize_t c = s->nmain;
    for (Py_ssize_t i = 0; i < s->nsubs; i++) {
        PyObject *t = PyTuple_GET_ITEM(subs, i), *cols = PyTuple_GET_ITEM(t, 4);
        RSub *sf = &s->subs[i];
        rkey_of(&sf->key, PyTuple_GET_ITEM(t, 0), &s->ok);
        sf->underscored = PyObject_IsTrue(PyTuple_GET_ITEM(t, 1));
        sf->first = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 2));
        sf->nparts = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 3));
        sf->cols = c;
        sf->ncols = PyTuple_GET_SIZE(cols);
        for (Py_ssize_t j = 0; j < sf->ncols; j++, c++)
            if (rcol_of(&s->cols[c], PyTuple_GET_ITEM(cols, j), &s->ok) < 0) return -1;
    }
    if (PyErr_Occurred()) return -1;
    if (bools != Py_None) {
        if (!PyTuple_Check(bools) || PyTuple_GET_SIZE(bools) != 2) {
            s->ok = 0;
        } else {
            for (int b = 0; b < 2; b++) {
                PyObject *v = PyTuple_GET_ITEM(bools, b);
                const char **to = b ? &s->false_s : &s->true_s;
                Py_ssize_t *n = b ? &s->false_n : &s->true_n;
                if (v == Py_None) continue;
                if (!PyUnicode_Check(v) || (*to = PyUnicode_AsUTF8AndSize(v, n)) == NULL) {
                    PyErr_Clear();
                    s->ok = 0;
                }
            }
        }
    }
    return 0;
}

/* ---- one raw submission -------------------------------------------------------------------- */

typedef struct {
    const char *line;
    Py_ssize_t len;
    const char *sid; /* UTF-8 */
    Py_ssize_t sid_n;
    int short_key;
    Py_ssize_t ents, nents; /* its index lines in RJob.ent_data */
    int state; /* R_LEFT, R_DONE, R_LATER, or -1 not a raw line */
} RItem;

typedef struct {
    TextJob *j;
    RSpec *s;
    PyObject *bools, *form_id, *default_type;
    const char *fid, *default_ct;
    Py_ssize_t fid_n, default_ct_n;
    JTape tp, te;
    Buf aside;            /* strings of the index entries of the submission in hand */
    const char **ent_data;
    Py_ssize_t *ent_len;
    Py_ssize_t nparts;    /* table parts in all */
    long long media_n, media_bytes;
} RJob;

/* the code point of the (valid) UTF-8 sequence at p, and its length in *k */
static inline Py_UCS4 utf8_cp(const unsigned char *p, int *k) {
    if (*p < 0x80) { *k = 1; return *p; }
    if (*p < 0xE0) { *k = 2; return ((Py_UCS4)(p[0] & 0x1F) << 6) | (p[1] & 0x3F); }
    if (*p < 0xF0) { *k = 3; return ((Py_UCS4)(p[0] & 0x0F) << 12) | ((Py_UCS4)(p[1] & 0x3F) << 6) | (p[2] & 0x3F); }
    *k = 4;
    return ((Py_UCS4)(p[0] & 0x07) << 18) | ((Py_UCS4)(p[1] & 0x3F) << 12) | ((Py_UCS4)(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
}

/* Python's str.strip() of UTF-8 text: *s, *n narrowed (Py_UNICODE_ISSPACE at both ends) */
static void u_strip(const char **s, uint32_t *n) {
    const unsigned char *p = (const unsigned char *)*s, *e = p + *n;
    int k;
    while (p < e && Py_UNICODE_ISSPACE(utf8_cp(p, &k))) p += k;
    while (e > p) {
        const unsigned char *q = e - 1;
        while (q > p && (*q & 0xC0) == 0x80) q--;
        if (!Py_UNICODE_ISSPACE(utf8_cp(q, &k))) break;
        e = q;
    }
    *s = (const char *)p;
    *n = (uint32_t)(e - p);
}

/* a JSON string's text: a string without escapes has no byte the formats escape */
static inline int put_jstr(Buf *b, const char *s, uint32_t n, int esc, int mode) {
    return esc ? put_escaped_utf8(b, s, n, mode) : buf_put(b, s, n);
}

/* The served text of a cell (cell_text): s NULL for None. */
typedef struct {
    const char *s;
    uint32_t len;
    int esc, has_bool, bool_v;
} RCell;

/* 1, or R_LEFT for a value str() would make a text of (a number, a boolean), -1 no memory */
static int raw_cell(JTape *tp, uint32_t tok, RCell *c, int want_bool) {
    memset(c, 0, sizeof *c);
    if (tok == 0) return 1;
    JTok *t = &tp->t[tok];
    if (t->type == J_OBJ) {
        if (want_bool) {
            uint32_t b = jlook(tp, tok, &k_boolean);
            if (b == (uint32_t)-1) return -1;
            if (b && (tp->t[b].type == J_TRUE || tp->t[b].type == J_FALSE)) {
                c->has_bool = 1;
                c->bool_v = tp->t[b].type == J_TRUE;
            }
        }
        uint32_t v = jlook(tp, tok, &k_value);
        if (v == (uint32_t)-1) return -1;
        if (v == 0) return 1;
        t = &tp->t[v];
    }
    switch (t->type) {
    case J_STR:
        c->s = t->s;
        c->len = t->len;
        c->esc = t->flag;
        return 1;
    case J_NULL:
    case J_ARR:
    case J_OBJ:
        return 1;
    default:
        return R_LEFT;
    }
}

/* the typed value of a cell, where it is certain */
enum { V_NONE, V_BOOL, V_DATE, V_TIME, V_DATETIME, V_GEO, V_OTHER, V_UNSURE };

typedef struct {
    int kind, b;
    Ymdhms t; /* V_DATE, V_TIME, V_DATETIME */
    char lat[48], lon[48];
    int lat_n, lon_n;
} RVal;

/* repr(float(t)) of a coordinate text -?digits[.digits] that float() reads exactly back (at most
 * 15 significant digits) and that repr writes in fixed notation, when within +-limit: 1 and the
 * text in out, 0 out of range, -1 another text (Python's) */
static int raw_coord(const char *p, uint32_t n, int limit, char *out, int *out_n) {
    uint32_t i = 0;
    int neg = 0;
    if (i < n && p[i] == '-') { neg = 1; i++; }
    uint32_t is = i;
    while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    uint32_t ie = i, fs = i, fe = i;
    if (ie == is) return -1;
    if (i < n && p[i] == '.') {
        fs = ++i;
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
        fe = i;
        if (fe == fs) return -1;
    }
    if (i != n) return -1;
    while (is < ie - 1 && p[is] == '0') is++;   /* leading zeros of the integer part */
    while (fe > fs && p[fe - 1] == '0') fe--;   /* trailing zeros of the fraction */
    int int_zero = ie - is == 1 && p[is] == '0';
    /* significant digits */
    uint32_t sig;
    if (!int_zero) {
        sig = (ie - is) + (fe - fs);
    } else {
        uint32_t z = fs;
        while (z < fe && p[z] == '0') z++;
        if (z == fe) { /* zero */
            sig = 0;
        } else {
            if (z - fs >= 4) return -1; /* below 1e-4: repr switches to exponent notation */
            sig = fe - z;
        }
    }
    if (sig > 15 || ie - is > 3) return -1;
    int iv = 0;
    for (uint32_t k = is; k < ie; k++) iv = iv * 10 + (p[k] - '0');
    if (iv > limit || (iv == limit && fe > fs)) return 0;
    int o = 0;
    if (neg) out[o++] = '-';
    memcpy(out + o, p + is, ie - is);
    o += (int)(ie - is);
    out[o++] = '.';
    if (fe > fs) {
        memcpy(out + o, p + fs, fe - fs);
        o += (int)(fe - fs);
    } else {
        out[o++] = '0';
    }
    *out_n = o;
    return 1;
}

static int ascii_lower_in(const char *s, uint32_t n, const char *const *words) {
    char low[8];
    if (n > 5) return 0;
    for (uint32_t i = 0; i < n; i++) {
        char c = s[i];
        if ((unsigned char)c >= 0x80) return 0;
        low[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    for (int w = 0; words[w]; w++)
        if (strlen(words[w]) == n && memcmp(words[w], low, n) == 0) return 1;
    return 0;
}

static const char *const bool_true[] = {"1", "true", "yes", "oui", "on", "vrai", "x", NULL};
static const char *const bool_false[] = {"0", "false", "no", "non", "off", "faux", "", NULL};

/* The typed value of a cell where certain (what typed() makes of it): V_UNSURE otherwise. */
static void raw_typed(RJob *r, RCell *c, int kind, RVal *v) {
    v->kind = V_UNSURE;
    if (kind == K_BOOL && c->has_bool) {
        v->kind = V_BOOL;
        v->b = c->bool_v;
        return;
    }
    if (c->s == NULL) { /* every converter makes None of None */
        v->kind = V_NONE;
        return;
    }
    const char *s = c->s;
    uint32_t n = c->len;
    switch (kind) {
    case K_TEXT:
    case K_MEDIA:
        v->kind = V_OTHER; /* a str or a tuple: what counts is the text */
        return;
    case K_NUMBER:
        u_strip(&s, &n);
        if (n == 0) v->kind = V_NONE;
        return; /* a number text is checked by the number column itself */
    case K_DATE:
    case K_TIME:
    case K_DATETIME: {
        u_strip(&s, &n);
        if (n == 0) v->kind = V_NONE;
        else if (iso_parts(s, n, kind, &v->t)) v->kind = kind == K_DATE ? V_DATE : kind == K_TIME ? V_TIME : V_DATETIME;
        return;
    }
    case K_BOOL: {
        u_strip(&s, &n);
        RSpec *sp = r->s;
        if (sp->true_s != NULL && (Py_ssize_t)n == sp->true_n && memcmp(s, sp->true_s, n) == 0) {
            v->kind = V_BOOL;
            v->b = 1;
        } else if (sp->false_s != NULL && (Py_ssize_t)n == sp->false_n && memcmp(s, sp->false_s, n) == 0) {
            v->kind = V_BOOL;
            v->b = 0;
        } else if (ascii_lower_in(s, n, bool_true)) {
            v->kind = V_BOOL;
            v->b = 1;
        } else if (ascii_lower_in(s, n, bool_false)) {
            v->kind = V_BOOL;
            v->b = 0;
        } else {
            v->kind = V_NONE; /* no other text lowers to one of the words (U+212A aside, a "k") */
        }
        return;
    }
    case K_GEO: {
        u_strip(&s, &n);
        if (n == 0) {
            v->kind = V_NONE;
            return;
        }
        for (uint32_t i = 0; i < n; i++)
            if ((unsigned char)s[i] >= 0x80) return; /* other blanks and digits: Python's */
        /* parts[0] and parts[1] of t.replace(";", ",").split(","), each stripped */
        uint32_t a = 0;
        while (a < n && s[a] != ',' && s[a] != ';') a++;
        if (a == n) {
            v->kind = V_NONE; /* one part */
            return;
        }
        uint32_t b = a + 1;
        while (b < n && s[b] != ',' && s[b] != ';') b++;
        const char *p0 = s, *p1 = s + a + 1;
        uint32_t n0 = a, n1 = b - a - 1;
        u_strip(&p0, &n0);
        u_strip(&p1, &n1);
        if (n0 == 0) {
            v->kind = V_NONE;
            return;
        }
        int la = raw_coord(p0, n0, 90, v->lat, &v->lat_n), lo = raw_coord(p1, n1, 180, v->lon, &v->lon_n);
        if (la < 0 || lo < 0) return;
        v->kind = la && lo ? V_GEO : V_NONE;
        return;
    }
    default:
        return;
    }
}

static int put_bool(Buf *b, RJob *r, int v) {
    if (r->j->h.bool_as_int) return buf_byte(b, v ? '1' : '0');
    return buf_byte(b, r->j->mode == 0 ? (v ? 't' : 'f') : (v ? '1' : '0'));
}

static int put_rval(Buf *b, RJob *r, RVal *v) {
    switch (v->kind) {
    case V_DATE:
        return put_fmt_date(b, v->t.y, v->t.mo, v->t.d);
    case V_TIME:
        return put_fmt_time(b, v->t.h, v->t.mi, v->t.s, 0);
    case V_DATETIME:
        if (put_fmt_date(b, v->t.y, v->t.mo, v->t.d) < 0 || buf_byte(b, r->j->mode == 0 ? 'T' : ' ') < 0) return -1;
        return put_fmt_time(b, v->t.h, v->t.mi, v->t.s, 0);
    default:
        return -1;
    }
}

/* Whether _keep would keep the text (a text that is not blank): keeping needs the interpreter */
static int keeps(RCell *c) {
    if (c->s == NULL) return 0;
    const char *s = c->s;
    uint32_t n = c->len;
    u_strip(&s, &n);
    return n > 0;
}

/* One column's cell, "\t" first: what text_cells writes. R_DONE, R_LATER (allow_py 0), R_LEFT, -1 */
static int raw_col(RJob *r, RCol *c, uint32_t src, int has_src, int flat, PyObject **un, int allow_py) {
    JTape *tp = &r->tp;
    Buf *out = &r->j->out[c->part];
    RCell cell;
    memset(&cell, 0, sizeof cell);
    int present = c->present == 1 || (c->present == 2 && !flat);
    if (present && has_src) {
        uint32_t tok = jlook(tp, src, &c->key);
        if (tok == (uint32_t)-1) return -1;
        int k = raw_cell(tp, tok, &cell, c->kind == K_BOOL);
        if (k != 1) return k;
    }
    if (buf_byte(out, '\t') < 0) return -1;
    if (cell.s != NULL && (c->code == C_TEXT || c->code == C_PASS)) return put_jstr(out, cell.s, cell.len, cell.esc, r->j->mode) < 0 ? -1 : R_DONE;
    if (c->code == C_NUMBER && c->kind == K_NUMBER && cell.s != NULL && r->j->h.max_int_digits >= 0
        && plain_decimal_fits(&r->j->h, cell.s, cell.len))
        return buf_put(out, cell.s, cell.len) < 0 ? -1 : R_DONE;
    RVal v;
    if (!present) {
        v.kind = V_NONE;
    } else {
        raw_typed(r, &cell, c->kind, &v);
    }
    if (v.kind != V_UNSURE) {
        int null = 0, keep = 0;
        switch (c->code) {
        case C_TEXT: /* the text is None here */
            if (v.kind == V_BOOL) return buf_put(out, v.b ? "True" : "False", v.b ? 4 : 5) < 0 ? -1 : R_DONE;
            if (v.kind == V_NONE || v.kind == V_OTHER) null = 1;
            break;
        case C_PASS:
            null = 1;
            break;
        case C_NUMBER:
            if (v.kind == V_NONE) null = keep = 1;
            break;
        case C_LAT:
        case C_LON:
            if (v.kind == V_GEO)
                return buf_put(out, c->code == C_LAT ? v.lat : v.lon, c->code == C_LAT ? v.lat_n : v.lon_n) < 0 ? -1 : R_DONE;
            null = 1;
            keep = c->code == C_LAT;
            break;
        case C_BOOL:
            if (v.kind == V_BOOL) return put_bool(out, r, v.b) < 0 ? -1 : R_DONE;
            null = keep = 1;
            break;
        case C_DATE:
        case C_TIME:
        case C_DATETIME: {
            int want = c->code == C_DATE ? V_DATE : c->code == C_TIME ? V_TIME : V_DATETIME;
            if (v.kind == want) return put_rval(out, r, &v) < 0 ? -1 : R_DONE;
            null = keep = 1;
            break;
        }
        default:
            break;
        }
        if (null && !(keep && keeps(&cell))) return buf_put(out, "\\N", 2) < 0 ? -1 : R_DONE;
    }
    if (!allow_py) return R_LATER;
    /* the column's own path: typed(), cell_of() on the cell's text */
    PyObject *t = cell.s ? PyUnicode_DecodeUTF8(cell.s, cell.len, NULL) : Py_NewRef(Py_None), *dc = NULL, *val = NULL;
    int rc = -1;
    if (t == NULL) return -1;
    if (*un == NULL && (*un = PyDict_New()) == NULL) goto done;
    if (cell.has_bool && (dc = Py_BuildValue("{sO}", "boolean", cell.bool_v ? Py_True : Py_False)) == NULL) goto done;
    val = present ? typed(t, dc, c->kind, c->conv, r->bools) : Py_NewRef(Py_None);
    if (val == NULL) goto done;
    PyObject *o = cell_of(&r->j->h, c->code, c->name, c->fn, val, t, *un);
    if (o == NULL) goto done;
    rc = put_value(out, o, r->j->mode, r->j->slow, r->j->decimal) < 0 ? -1 : R_DONE;
    Py_DECREF(o);
done:
    Py_DECREF(t);
    Py_XDECREF(dc);
    Py_XDECREF(val);
    return rc;
}

static int raw_unparsed(RJob *r, Py_ssize_t part, PyObject *un) {
    if (un == NULL || PyDict_GET_SIZE(un) == 0) return buf_put(&r->j->out[part], "\t\\N", 3);
    return put_cell(r->j, part, PyObject_CallOneArg(r->j->h.dumps, un));
}

static int raw_start_rows(RJob *r, RItem *it, Py_ssize_t first, Py_ssize_t n, Py_ssize_t index) {
    for (Py_ssize_t p = first; p < first + n; p++) {
        Buf *b = &r->j->out[p];
        if (put_escaped_utf8(b, it->sid, it->sid_n, r->j->mode) < 0) return -1;
        if (index >= 0) {
            char tmp[24];
            int k = snprintf(tmp, sizeof tmp, "\t%zd", index);
            if (buf_put(b, tmp, k) < 0) return -1;
        }
    }
    return 0;
}

/* the metadata cells (one_text): R_DONE, R_LEFT, R_LATER, -1 */
static int raw_metas(RJob *r, int flat, PyObject **un, int allow_py) {
    JTape *tp = &r->tp;
    Buf *out = &r->j->out[0];
    for (Py_ssize_t i = 0; i < r->s->nmetas; i++) {
        RMeta *m = &r->s->metas[i];
        uint32_t tok = jlook(tp, 0, flat ? &m->flat_key : &m->key);
        if (tok == (uint32_t)-1) return -1;
        JTok *t = tok ? &tp->t[tok] : NULL;
        if (t != NULL && t->type != J_STR && t->type != J_NULL) return R_LEFT; /* normalised by Python */
        if (buf_byte(out, '\t') < 0) return -1;
        if (t == NULL || t->type == J_NULL) {
            if (buf_put(out, "\\N", 2) < 0) return -1;
            continue;
        }
        if (!m->is_time) {
            if (put_jstr(out, t->s, t->len, t->flag, r->j->mode) < 0) return -1;
            continue;
        }
        RVal v;
        const char *s = t->s;
        uint32_t n = t->len;
        if (iso_parts(s, n, K_DATETIME, &v.t)) { /* iso_temporal's shapes: what fromisoformat reads */
            if (put_rval(out, r, (v.kind = V_DATETIME, &v)) < 0) return -1;
            continue;
        }
        u_strip(&s, &n);
        if (n == 0) { /* blank: None, nothing kept */
            if (buf_put(out, "\\N", 2) < 0) return -1;
            continue;
        }
        if (!allow_py) return R_LATER;
        if (*un == NULL && (*un = PyDict_New()) == NULL) return -1;
        PyObject *text = PyUnicode_DecodeUTF8(t->s, t->len, NULL);
        if (text == NULL) return -1;
        PyObject *val = meta_value(&r->j->h, text, *un, m->mk, 1);
        Py_DECREF(text);
        if (val == NULL) return -1;
        int e = put_value(out, val, r->j->mode, r->j->slow, r->j->decimal);
        Py_DECREF(val);
        if (e < 0) return -1;
    }
    return R_DONE;
}

/* parse_shape_ok on the tape: R_DONE when the decoded path would type every cell itself */
static int raw_shape_ok(RJob *r, uint32_t src, int has_src, int flat) {
    JTape *tp = &r->tp;
    for (Py_ssize_t i = 0; i < r->s->ntop; i++) {
        RTop *f = &r->s->top[i];
        uint32_t cell = 0;
        if (has_src && !(flat && f->underscored)) {
            cell = jlook(tp, src, &f->key);
            if (cell == (uint32_t)-1) return -1;
        }
        int ty = cell ? tp->t[cell].type : 0;
        if (cell && ty != J_STR && ty != J_OBJ && ty != J_NULL && !(f->subform && ty == J_ARR)) return R_LEFT;
        if (!f->subform) continue;
        uint32_t rows = cell;
        if (rows && ty == J_OBJ) {
            rows = jlook(tp, cell, &k_value);
            if (rows == (uint32_t)-1) return -1;
            if (rows == 0) return R_LEFT;
        }
        if (rows == 0 || tp->t[rows].type == J_NULL || (tp->t[rows].type == J_STR && tp->t[rows].len == 0)) continue;
        if (tp->t[rows].type != J_ARR) return R_LEFT;
        for (uint32_t row = rows + 1; row < tp->t[rows].end; row = tp->t[row].end) {
            if (tp->t[row].type != J_OBJ) return R_LEFT;
            for (Py_ssize_t k = 0; k < f->nkids; k++) {
                uint32_t c = jlook(tp, row, &r->s->kids[f->kids + k].key);
                if (c == (uint32_t)-1) return -1;
                int ct = c ? tp->t[c].type : 0;
                if (c && ct != J_STR && ct != J_OBJ && ct != J_NULL) return R_LEFT;
            }
        }
    }
    return R_DONE;
}

/* the rows of a sub-form cell that raw_shape_ok accepted: the array token, 0 none, (uint32_t)-1
 * out of memory */
static uint32_t raw_subform_rows(JTape *tp, uint32_t cell) {
    if (cell && tp->t[cell].type == J_OBJ) cell = jlook(tp, cell, &k_value);
    if (cell == (uint32_t)-1) return cell;
    return (cell && tp->t[cell].type == J_ARR) ? cell : 0;
}

/* ---- media --------------------------------------------------------------------------------- */

typedef struct {
    RTop *subform; /* NULL: a field of the form */
    RTop *field;
    Py_ssize_t row;
    const char *name;
    uint32_t name_n;
} RRef;

typedef struct {
    RRef *items;
    Py_ssize_t n, cap;
} RRefs;

static int same_bytes(const char *a, uint32_t an, const char *b, uint32_t bn) {
    return an == bn && memcmp(a, b, an) == 0;
}

/* the names of a media value (_conv_media), each (sub-form, row, field, name) once */
static int rrefs_add(RRefs *refs, RCell *c, RTop *subform, Py_ssize_t row, RTop *field) {
    if (c->s == NULL) return 0;
    const char *s = c->s;
    uint32_t n = c->len, start = 0;
    while (start <= n) {
        const char *comma = memchr(s + start, ',', n - start);
        uint32_t end = comma ? (uint32_t)(comma - s) : n;
        const char *a = s + start;
        uint32_t an = end - start;
        u_strip(&a, &an);
        start = end + 1;
        if (an == 0) continue;
        int dup = 0;
        for (Py_ssize_t i = 0; i < refs->n && !dup; i++) {
            RRef *o = &refs->items[i];
            dup = o->row == row && (o->subform == NULL) == (subform == NULL)
                  && (subform == NULL || same_bytes(o->subform->key.s, o->subform->key.len, subform->key.s, subform->key.len))
                  && same_bytes(o->field->key.s, o->field->key.len, field->key.s, field->key.len)
                  && same_bytes(o->name, o->name_n, a, an);
        }
        if (dup) continue;
        if (refs->n == refs->cap) {
            Py_ssize_t cap = refs->cap ? 2 * refs->cap : 8;
            RRef *items = PyMem_RawRealloc(refs->items, (size_t)cap * sizeof(RRef));
            if (items == NULL) return -1;
            refs->items = items;
            refs->cap = cap;
        }
        refs->items[refs->n++] = (RRef){subform, field, row, a, an};
    }
    return 0;
}

/* media_walk on the tape: R_DONE, R_LEFT, -1 */
static int raw_media_walk(RJob *r, RRefs *refs, uint32_t src, int has_src, int flat) {
    JTape *tp = &r->tp;
    for (Py_ssize_t i = 0; i < r->s->ntop; i++) {
        RTop *f = &r->s->top[i];
        if (!f->is_media && !f->subform) continue;
        uint32_t cell = 0;
        if (has_src && !(flat && f->underscored)) cell = jlook(tp, src, &f->key);
        if (cell == (uint32_t)-1) return -1;
        RCell c;
        if (!f->subform) {
            int k = raw_cell(tp, cell, &c, 0);
            if (k != 1) return k;
            if (rrefs_add(refs, &c, NULL, -1, f) < 0) return -1;
            continue;
        }
        uint32_t rows = raw_subform_rows(tp, cell);
        if (rows == (uint32_t)-1) return -1;
        if (rows == 0) continue;
        Py_ssize_t index = 0;
        for (uint32_t row = rows + 1; row < tp->t[rows].end; row = tp->t[row].end, index++) {
            for (Py_ssize_t k = 0; k < f->nkids; k++) {
                RTop *kid = &r->s->kids[f->kids + k];
                if (!kid->is_media) continue;
                uint32_t ct = jlook(tp, row, &kid->key);
                if (ct == (uint32_t)-1) return -1;
                int e = raw_cell(tp, ct, &c, 0);
                if (e != 1) return e;
                if (rrefs_add(refs, &c, f, index, kid) < 0) return -1;
            }
        }
    }
    return R_DONE;
}

/* one index entry, read for matching and writing */
enum { E_NONE, E_STR, E_INT, E_NEVER };

typedef struct {
    int sub_k, row_k, field_k, name_k, ct_k, size_k, sha_k;
    Py_ssize_t sub, field, name, ct, size, sha; /* offsets in RJob.aside (E_STR, E_INT: the text) */
    uint32_t sub_n, field_n, name_n, ct_n, size_n, sha_n;
    int ct_esc, sha_esc;
    long long row, size_v;
} REnt;

/* a member's value: E_NONE (missing, null), E_STR (copied aside), E_INT (an integer of 18 digits
 * at most, its text aside), E_NEVER (anything no str, None or int equals), -2 (a value Python
 * would compare or write otherwise: float, true, false, longer integers), -1 no memory */
static int ent_value(RJob *r, uint32_t obj, const JKey *key, Py_ssize_t *off, uint32_t *n, int *esc, long long *iv) {
    JTape *te = &r->te;
    uint32_t tok = jlook(te, obj, key);
    if (tok == (uint32_t)-1) return -1;
    if (tok == 0 || te->t[tok].type == J_NULL) return E_NONE;
    JTok *t = &te->t[tok];
    if (t->type == J_STR || (t->type == J_NUM && t->flag)) {
        if (t->type == J_NUM) {
            if (t->len > 18 || (t->len == 2 && t->s[0] == '-')) return -2; /* big, or -0 */
            long long v = 0;
            for (uint32_t i = t->s[0] == '-'; i < t->len; i++) v = v * 10 + (t->s[i] - '0');
            *iv = t->s[0] == '-' ? -v : v;
        }
        *off = r->aside.len;
        *n = t->len;
        if (esc) *esc = t->type == J_STR && t->flag;
        if (buf_put(&r->aside, t->s, t->len) < 0) return -1;
        return t->type == J_STR ? E_STR : E_INT;
    }
    if (t->type == J_ARR || t->type == J_OBJ) return E_NEVER;
    return -2;
}

/* The media lines of one submission (media_lines): R_DONE, R_LEFT, -1 */
static int raw_media_lines(RJob *r, RItem *it, RRefs *refs, Buf *out, long long *count, long long *bytes) {
    if (refs->n == 0) return R_DONE;
    r->aside.len = 0;
    REnt *ents = PyMem_RawCalloc((size_t)it->nents + 1, sizeof(REnt));
    if (ents == NULL) return -1;
    int rc = -1;
    for (Py_ssize_t e = 0; e < it->nents; e++) {
        REnt *x = &ents[e];
        int p = jparse(&r->te, r->ent_data[it->ents + e], r->ent_len[it->ents + e]);
        if (p < 0) goto done;
        if (p == 0) {
            rc = R_LEFT;
            goto done;
        }
        if (r->te.t[0].type != J_OBJ) { /* not a dict: never matched */
            x->field_k = E_NEVER;
            continue;
        }
        long long dummy = 0;
        Py_ssize_t row_off;
        uint32_t row_n;
        if ((x->sub_k = ent_value(r, 0, &k_subform, &x->sub, &x->sub_n, NULL, &dummy)) == -1
            || (x->row_k = ent_value(r, 0, &k_row, &row_off, &row_n, NULL, &x->row)) == -1
            || (x->field_k = ent_value(r, 0, &k_field, &x->field, &x->field_n, NULL, &dummy)) == -1
            || (x->name_k = ent_value(r, 0, &k_name, &x->name, &x->name_n, NULL, &dummy)) == -1
            || (x->ct_k = ent_value(r, 0, &k_content_type, &x->ct, &x->ct_n, &x->ct_esc, &dummy)) == -1
            || (x->size_k = ent_value(r, 0, &k_size, &x->size, &x->size_n, NULL, &x->size_v)) == -1
            || (x->sha_k = ent_value(r, 0, &k_sha256, &x->sha, &x->sha_n, &x->sha_esc, &dummy)) == -1)
            goto done;
        if (x->row_k == -2) { /* a float or a boolean row equals an int in Python */
            rc = R_LEFT;
            goto done;
        }
        if (x->sub_k == -2) x->sub_k = E_NEVER; /* numbers and booleans equal no str and not None */
        if (x->field_k != E_STR) x->field_k = E_NEVER;
        if (x->name_k != E_STR) x->name_k = E_NEVER;
        if (x->sub_k == E_INT) x->sub_k = E_NEVER;
    }
    int mode = r->j->mode;
    for (Py_ssize_t i = 0; i < refs->n; i++) {
        RRef *ref = &refs->items[i];
        REnt *m = NULL;
        for (Py_ssize_t e = it->nents - 1; e >= 0 && m == NULL; e--) { /* the last one of its key */
            REnt *x = &ents[e];
            if (x->field_k != E_STR || x->name_k != E_STR) continue;
            if (ref->subform == NULL ? x->sub_k != E_NONE
                                     : (x->sub_k != E_STR || !same_bytes(r->aside.data + x->sub, x->sub_n,
                                                                           ref->subform->key.s, ref->subform->key.len)))
                continue;
            if (ref->subform == NULL ? x->row_k != E_NONE : (x->row_k != E_INT || x->row != ref->row)) continue;
            if (!same_bytes(r->aside.data + x->field, x->field_n, ref->field->key.s, ref->field->key.len)
                || !same_bytes(r->aside.data + x->name, x->name_n, ref->name, ref->name_n))
                continue;
            m = x;
        }
        if (m == NULL) continue; /* referenced but never downloaded */
        if (m->ct_k < 0 || m->ct_k == E_NEVER || m->ct_k == E_INT || m->size_k < 0 || m->size_k == E_NEVER
            || m->size_k == E_STR || m->sha_k < 0 || m->sha_k == E_NEVER || m->sha_k == E_INT) {
            rc = R_LEFT; /* written or counted otherwise by Python */
            goto done;
        }
        if (put_media_key(out, it->short_key, r->fid, r->fid_n, it->sid, it->sid_n,
                          ref->subform ? ref->subform->key.s : NULL, ref->subform ? ref->subform->key.len : 0, ref->row,
                          ref->field->key.s, ref->field->key.len, ref->name, ref->name_n) < 0)
            goto done;
        char rowtxt[24];
        int rown = ref->subform ? snprintf(rowtxt, sizeof rowtxt, "%zd", ref->row) : 0;
        const char *aside = r->aside.data;
        if (buf_byte(out, '\t') < 0 || put_escaped_utf8(out, r->fid, r->fid_n, mode) < 0 || buf_byte(out, '\t') < 0
            || put_escaped_utf8(out, it->sid, it->sid_n, mode) < 0 || buf_byte(out, '\t') < 0
            || put_escaped_utf8(out, ref->field->key.s, ref->field->key.len, mode) < 0 || buf_byte(out, '\t') < 0)
            goto done;
        if (ref->subform) {
            if (put_escaped_utf8(out, ref->subform->key.s, ref->subform->key.len, mode) < 0 || buf_byte(out, '\t') < 0
                || buf_put(out, rowtxt, rown) < 0)
                goto done;
        } else if (buf_put(out, "\\N\t\\N", 5) < 0) {
            goto done;
        }
        if (buf_byte(out, '\t') < 0 || put_jstr(out, ref->name, ref->name_n, 1, mode) < 0 || buf_byte(out, '\t') < 0)
            goto done;
        int e;
        if (m->ct_k == E_STR && m->ct_n > 0)
            e = put_jstr(out, aside + m->ct, m->ct_n, m->ct_esc, mode);
        else
            e = put_escaped_utf8(out, r->default_ct, r->default_ct_n, mode);
        if (e < 0 || buf_byte(out, '\t') < 0) goto done;
        if (m->size_k == E_NONE) {
            if (buf_put(out, "\\N", 2) < 0) goto done;
        } else if (buf_put(out, aside + m->size, m->size_n) < 0) {
            goto done;
        }
        if (buf_byte(out, '\t') < 0) goto done;
        if (m->sha_k == E_NONE) {
            if (buf_put(out, "\\N", 2) < 0) goto done;
        } else if (put_jstr(out, aside + m->sha, m->sha_n, m->sha_esc, mode) < 0) {
            goto done;
        }
        if (buf_put(out, "\t\\N\n", 4) < 0) goto done;
        (*count)++;
        if (m->size_k == E_INT) *bytes += m->size_v;
    }
    rc = R_DONE;
done:
    PyMem_RawFree(ents);
    return rc;
}

/* One submission given as its line: R_DONE written, R_LEFT to Python, R_LATER (allow_py 0:
 * needs the interpreter), -1 error (no memory when allow_py is 0). On anything but R_DONE its
 * lines are taken back. */
static int raw_item(RJob *r, RItem *it, Buf *media, Py_ssize_t *mark, int allow_py) {
    TextJob *j = r->j;
    JTape *tp = &r->tp;
    Py_ssize_t nparts = r->s->main_parts, total = r->nparts;
    RSpec *s = r->s;
    for (Py_ssize_t p = 0; p < total; p++) mark[p] = j->out[p].len;
    Py_ssize_t media_mark = media->len;
    long long count = 0, bytes = 0;
    PyObject *un = NULL;
    RRefs refs = {NULL, 0, 0};
    int rc = jparse(tp, it->line, it->len);
    if (rc <= 0) {
        rc = rc < 0 ? -1 : R_LEFT;
        goto done;
    }
    rc = R_LEFT;
    if (tp->t[0].type != J_OBJ) goto done;
    uint32_t f, id;
    int flat = jshape(tp, &f, &id), has_src = 1;
    if (flat < 0) {
        rc = -1;
        goto done;
    }
    uint32_t src = 0;
    if (!flat) {
        if (f == 0 || tp->t[f].type == J_NULL) has_src = 0;
        else if (tp->t[f].type == J_OBJ) src = f;
        else goto done;
    }
    if ((rc = raw_shape_ok(r, src, has_src, flat)) != R_DONE) goto done;
    if ((rc = raw_start_rows(r, it, 0, nparts, -1)) < 0) goto done;
    if ((rc = raw_metas(r, flat, &un, allow_py)) != R_DONE) goto done;
    for (Py_ssize_t c = 0; c < s->nmain; c++)
        if ((rc = raw_col(r, &s->cols[c], src, has_src, flat, &un, allow_py)) != R_DONE) goto done;
    if ((rc = raw_unparsed(r, 0, un)) < 0) goto done;
    for (Py_ssize_t p = 0; p < nparts; p++)
        if (buf_byte(&j->out[p], '\n') < 0) { rc = -1; goto done; }
    for (Py_ssize_t i = 0; i < s->nsubs; i++) {
        RSub *sf = &s->subs[i];
        uint32_t cell = 0;
        if (has_src && !(flat && sf->underscored)) cell = jlook(tp, src, &sf->key);
        if (cell == (uint32_t)-1) { rc = -1; goto done; }
        uint32_t rows = raw_subform_rows(tp, cell);
        if (rows == (uint32_t)-1) { rc = -1; goto done; }
        if (rows == 0) continue;
        Py_ssize_t index = 0;
        for (uint32_t row = rows + 1; row < tp->t[rows].end; row = tp->t[row].end, index++) {
            Py_CLEAR(un);
            if ((rc = raw_start_rows(r, it, sf->first, sf->nparts, index)) < 0) goto done;
            for (Py_ssize_t c = 0; c < sf->ncols; c++)
                if ((rc = raw_col(r, &s->cols[sf->cols + c], row, 1, 0, &un, allow_py)) != R_DONE) goto done;
            if ((rc = raw_unparsed(r, sf->first, un)) < 0) goto done;
            for (Py_ssize_t p = sf->first; p < sf->first + sf->nparts; p++)
                if (buf_byte(&j->out[p], '\n') < 0) { rc = -1; goto done; }
        }
    }
    if (it->nents > 0) {
        if ((rc = raw_media_walk(r, &refs, src, has_src, flat)) != R_DONE) goto done;
        if ((rc = raw_media_lines(r, it, &refs, media, &count, &bytes)) != R_DONE) goto done;
    }
    rc = R_DONE;
done:
    Py_XDECREF(un);
    PyMem_RawFree(refs.items);
    if (rc != R_DONE) {
        for (Py_ssize_t p = 0; p < total; p++) j->out[p].len = mark[p];
        media->len = media_mark;
    } else {
        r->media_n += count;
        r->media_bytes += bytes;
    }
    return rc;
}

/* lines written in the first pass, in the second, left to Python: counted for the tests */
static long long raw_counts[3];

static PyObject *raw_stats(PyObject *self, PyObject *args) {
    int reset = 0;
    if (!PyArg_ParseTuple(args, "|p:raw_stats", &reset)) return NULL;
    PyObject *out = Py_BuildValue("(LLL)", raw_counts[0], raw_counts[1], raw_counts[2]);
    if (reset) memset(raw_counts, 0, sizeof raw_counts);
    return out;
}

/* block_text(tspec, payloads, sids, entries, bools, mspec)
 *   -> (bytes per part, media bytes, [positions left to Python], media rows written, their bytes) | None
 * A payload is a dict (decoded) or bytes (the archive's line); its entries, dicts or lines alike. */
static PyObject *block_text(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "block_text(tspec, payloads, sids, entries, bools, mspec)");
        return NULL;
    }
    PyObject *tspec = args[0], *payloads = args[1], *sids = args[2], *entries = args[3], *bools = args[4];
    PyObject *mspec = args[5];
    if (!PyTuple_Check(tspec) || PyTuple_GET_SIZE(tspec) != 8 || !PyList_CheckExact(payloads)
        || !PyList_CheckExact(sids) || !PyList_CheckExact(entries) || PyList_GET_SIZE(sids) != PyList_GET_SIZE(payloads)
        || PyList_GET_SIZE(entries) != PyList_GET_SIZE(payloads) || !PyTuple_Check(mspec) || PyTuple_GET_SIZE(mspec) != 4) {
        PyErr_SetString(PyExc_TypeError, "block_text: a compiled spec, three lists of one length, a media spec");
        return NULL;
    }
    PyObject *top = PyTuple_GET_ITEM(tspec, 0), *main = PyTuple_GET_ITEM(tspec, 1), *subs = PyTuple_GET_ITEM(tspec, 2);
    PyObject *hs = PyTuple_GET_ITEM(tspec, 3);
    Py_ssize_t nparts = PyLong_AsSsize_t(PyTuple_GET_ITEM(tspec, 4));
    PyObject *form_id = PyTuple_GET_ITEM(mspec, 0), *default_type = PyTuple_GET_ITEM(mspec, 3);
    Py_ssize_t key_len = PyLong_AsSsize_t(PyTuple_GET_ITEM(mspec, 1)), id_len = PyLong_AsSsize_t(PyTuple_GET_ITEM(mspec, 2));
    if (nparts <= 0 || PyErr_Occurred() || !PyTuple_Check(hs) || PyTuple_GET_SIZE(hs) != 9
        || !PyUnicode_CheckExact(form_id) || !PyUnicode_CheckExact(default_type)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "block_text: a bad spec");
        return NULL;
    }
    /* the same submission twice: the caller's general path keeps its last version */
    PyObject *seen = PySet_New(sids);
    if (seen == NULL) return NULL;
    Py_ssize_t distinct = PySet_GET_SIZE(seen);
    Py_DECREF(seen);
    Py_ssize_t n = PyList_GET_SIZE(payloads);
    if (distinct != n) Py_RETURN_NONE;

    TextJob j = {{PyTuple_GET_ITEM(hs, 0), PyTuple_GET_ITEM(hs, 1), PyTuple_GET_ITEM(hs, 2), PyTuple_GET_ITEM(hs, 3),
                  PyTuple_GET_ITEM(hs, 4), PyObject_IsTrue(PyTuple_GET_ITEM(hs, 5)), PyTuple_GET_ITEM(hs, 6),
                  (int)PyLong_AsLong(PyTuple_GET_ITEM(hs, 7)), (int)PyLong_AsLong(PyTuple_GET_ITEM(hs, 8))},
                 (int)PyLong_AsLong(PyTuple_GET_ITEM(tspec, 5)), PyTuple_GET_ITEM(tspec, 6),
                 PyTuple_GET_ITEM(tspec, 7), NULL};
    if (j.mode != 0 && j.mode != 1) {
        PyErr_SetString(PyExc_ValueError, "mode is 0 (PostgreSQL COPY) or 1 (MySQL LOAD DATA)");
        return NULL;
    }
    Buf media = {NULL, 0, 0};
    Refs refs = {NULL, 0, 0};
    RSpec spec;
    memset(&spec, 0, sizeof spec);
    RJob r;
    memset(&r, 0, sizeof r);
    RItem *items = PyMem_Calloc((size_t)n + 1, sizeof(RItem));
    j.out = PyMem_Calloc((size_t)nparts, sizeof(Buf));
    Py_ssize_t *mark = PyMem_Calloc((size_t)nparts, sizeof(Py_ssize_t));
    PyObject *left = PyList_New(0), *matched = PyList_New(0), *empty = PyDict_New(), *result = NULL;
    if (items == NULL || j.out == NULL || mark == NULL || left == NULL || matched == NULL || empty == NULL) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto done;
    }
    Py_INCREF(payloads);
    Py_INCREF(sids);
    Py_INCREF(entries);

    /* the lines: read without the interpreter first, those needing it after */
    Py_ssize_t n_raw = 0, n_ents = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        items[i].state = -1;
        if (!PyBytes_CheckExact(PyList_GET_ITEM(payloads, i))) continue;
        items[i].state = 3; /* to do */
        n_raw++;
        PyObject *ents = PyList_GET_ITEM(entries, i);
        if (PyList_CheckExact(ents)) n_ents += PyList_GET_SIZE(ents);
    }
    if (n_raw > 0) {
        if (rspec_make(&spec, tspec, bools) < 0) goto undo;
        r.j = &j;
        r.nparts = nparts;
        r.s = &spec;
        r.bools = bools;
        r.form_id = form_id;
        r.default_type = default_type;
        r.ent_data = PyMem_Calloc((size_t)n_ents + 1, sizeof(char *));
        r.ent_len = PyMem_Calloc((size_t)n_ents + 1, sizeof(Py_ssize_t));
        if (r.ent_data == NULL || r.ent_len == NULL) {
            PyErr_NoMemory();
            goto undo;
        }
        r.fid = utf8_or_null(form_id, &r.fid_n);
        r.default_ct = utf8_or_null(default_type, &r.default_ct_n);
        if (PyErr_Occurred()) goto undo;
        Py_ssize_t e_at = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            RItem *it = &items[i];
            if (it->state != 3) continue;
            PyObject *line = PyList_GET_ITEM(payloads, i), *sid = PyList_GET_ITEM(sids, i);
            PyObject *ents = PyList_GET_ITEM(entries, i);
            it->state = R_LEFT;
            if (!spec.ok || r.fid == NULL || r.default_ct == NULL || !PyUnicode_CheckExact(sid)
                || PyUnicode_GET_LENGTH(sid) == 0 || PyUnicode_GET_LENGTH(sid) > id_len)
                continue;
            if ((it->sid = utf8_or_null(sid, &it->sid_n)) == NULL) {
                if (PyErr_Occurred()) goto undo;
                continue;
            }
            it->line = PyBytes_AS_STRING(line);
            it->len = PyBytes_GET_SIZE(line);
            it->short_key = PyUnicode_GET_LENGTH(form_id) + PyUnicode_GET_LENGTH(sid) + 18 <= key_len
                            && PyUnicode_IS_ASCII(form_id) && PyUnicode_IS_ASCII(sid);
            it->ents = e_at;
            it->nents = 0;
            if (ents != Py_None) {
                if (!PyList_CheckExact(ents)) continue;
                int all_lines = 1;
                for (Py_ssize_t k = 0; k < PyList_GET_SIZE(ents) && all_lines; k++) {
                    PyObject *e = PyList_GET_ITEM(ents, k);
                    if (!PyBytes_CheckExact(e)) {
                        all_lines = 0;
                        break;
                    }
                    r.ent_data[e_at + k] = PyBytes_AS_STRING(e);
                    r.ent_len[e_at + k] = PyBytes_GET_SIZE(e);
                }
                if (!all_lines) continue; /* decoded entries: the records' path */
                it->nents = PyList_GET_SIZE(ents);
                e_at += it->nents;
            }
            it->state = 3;
        }
        int failed = 0;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n && !failed; i++) {
            RItem *it = &items[i];
            if (it->state != 3) continue;
            int st = raw_item(&r, it, &media, mark, 0);
            if (st < 0) failed = 1;
            else it->state = st;
        }
        Py_END_ALLOW_THREADS
        if (failed) {
            PyErr_NoMemory();
            goto undo;
        }
    }

    for (Py_ssize_t i = 0; i < n; i++) {
        RItem *it = &items[i];
        int ok;
        if (it->state == R_DONE) {
            raw_counts[0]++;
            continue;
        }
        if (it->state == R_LEFT) {
            raw_counts[2]++;
            ok = 0;
        } else if (it->state == R_LATER) {
            ok = raw_item(&r, it, &media, mark, 1);
            if (ok == R_LATER) {
                PyErr_SetString(PyExc_SystemError, "block_text: a line still put off with the interpreter held");
                ok = -1;
            }
            raw_counts[ok == R_DONE ? 1 : 2] += ok >= 0;
        } else {
            if (i % 16 == 15) {
                /* a moment for the thread sending the previous batch: it needs the interpreter after
                 * each answer from the server, and a whole block takes milliseconds */
                Py_BEGIN_ALLOW_THREADS
                Py_END_ALLOW_THREADS
            }
            PyObject *payload = Py_NewRef(PyList_GET_ITEM(payloads, i)), *sid = Py_NewRef(PyList_GET_ITEM(sids, i));
            PyObject *ents = Py_NewRef(PyList_GET_ITEM(entries, i)), *cells = NULL;
            int flat = 0;
            ok = block_item_ok(payload, sid, top, id_len, empty, &cells, &flat);
            if (ok == 1 && ents != Py_None) {
                if (!PyList_CheckExact(ents)) ok = 0;
                for (Py_ssize_t k = 0; ok == 1 && k < PyList_GET_SIZE(ents); k++)
                    if (!PyDict_Check(PyList_GET_ITEM(ents, k))) ok = 0; /* lines: the records' path */
            }
            if (ok == 1) {
                Py_INCREF(cells);
                for (Py_ssize_t p = 0; p < nparts; p++) mark[p] = j.out[p].len;
                Py_ssize_t media_mark = media.len, matched_mark = PyList_GET_SIZE(matched);
                ok = one_text(&j, main, subs, sid, payload, cells, flat, bools);
                if (ok == 1 && ents != Py_None && PyList_GET_SIZE(ents) > 0) {
                    refs_clear(&refs);
                    ok = media_walk(&refs, top, cells, flat, bools) < 0
                             ? -1 : media_lines(&j, &media, &refs, ents, form_id, sid, key_len, default_type, matched);
                }
                if (ok != 1) { /* undo this submission's lines: Python writes it (0) or the call fails (-1) */
                    for (Py_ssize_t p = 0; p < nparts; p++) j.out[p].len = mark[p];
                    media.len = media_mark;
                    if (PyList_SetSlice(matched, matched_mark, PyList_GET_SIZE(matched), NULL) < 0) ok = -1;
                }
                Py_DECREF(cells);
            }
            Py_DECREF(payload);
            Py_DECREF(sid);
            Py_DECREF(ents);
        }
        if (ok == 0) {
            PyObject *pos = PyLong_FromSsize_t(i);
            if (pos == NULL || PyList_Append(left, pos) < 0) ok = -1;
            Py_XDECREF(pos);
        }
        if (ok < 0) break;
    }
undo:
    Py_DECREF(payloads);
    Py_DECREF(sids);
    Py_DECREF(entries);
    if (PyErr_Occurred()) goto done;
    /* media rows written and their bytes: the sizes of the entries written that are integers
     * (exporter.model.counted_bytes) */
    PyObject *bytes = PyLong_FromLongLong(r.media_bytes);
    for (Py_ssize_t k = 0; bytes != NULL && k < PyList_GET_SIZE(matched); k++) {
        PyObject *size = get_or_none(PyList_GET_ITEM(matched, k), str_size);
        if (size == NULL)
            Py_CLEAR(bytes);
        else if (PyLong_CheckExact(size))
            Py_SETREF(bytes, PyNumber_Add(bytes, size));
    }
    if (bytes == NULL) goto done;
    PyObject *parts = PyTuple_New(nparts);
    if (parts == NULL) {
        Py_DECREF(bytes);
        goto done;
    }
    for (Py_ssize_t p = 0; p < nparts; p++) {
        PyObject *b = PyBytes_FromStringAndSize(j.out[p].data ? j.out[p].data : "", j.out[p].len);
        if (b == NULL) {
            Py_DECREF(parts);
            Py_DECREF(bytes);
            goto done;
        }
        PyTuple_SET_ITEM(parts, p, b);
    }
    result = Py_BuildValue("(Ny#OnN)", parts, media.data ? media.data : "", media.len, left,
                           (Py_ssize_t)(PyList_GET_SIZE(matched) + r.media_n), bytes);
done:
    if (j.out != NULL)
        for (Py_ssize_t p = 0; p < nparts; p++) PyMem_RawFree(j.out[p].data);
    PyMem_Free(j.out);
    PyMem_Free(mark);
    PyMem_Free(items);
    PyMem_RawFree(media.data);
    refs_clear(&refs);
    PyMem_Free(refs.items);
    rspec_free(&spec);
    PyMem_Free(r.ent_data);
    PyMem_Free(r.ent_len);
    PyMem_RawFree(r.aside.data);
    jtape_free(&r.tp);
    jtape_free(&r.te);
    Py_XDECREF(left);
    Py_XDECREF(matched);
    Py_XDECREF(empty);
    return result;
}

static PyMethodDef methods[] = {
    {"submission_rows", (PyCFunction)(void (*)(void))submission_rows, METH_FASTCALL,
     "submission_rows(spec, sid, meta, values, text, subforms) -> (parent rows, children rows)."},
    {"block_text", (PyCFunction)(void (*)(void))block_text, METH_FASTCALL,
     "block_text(tspec, payloads, sids, entries, bools, mspec) -> (part texts, media text, left, entries) or None."},
    {"setup_parse", setup_parse, METH_VARARGS, "setup_parse(SubformRow, MediaRef, text_of, Decimal): what parse_fields makes and calls."},
    {"parse_fields", (PyCFunction)(void (*)(void))parse_fields, METH_FASTCALL,
     "parse_fields(top, cells, flat, bools, form_id, sid) -> (values, text, subforms, media) or None."},
    {"copy_block", copy_block, METH_VARARGS,
     "copy_block(rows, cols, mode, slow, decimal_type) -> bytes: bulk-load text of rows (see the module)."},
    {"digit_run", digit_run, METH_VARARGS, "digit_run(data, n) -> bool: a run of n or more ASCII digits?"},
    {"raw_stats", raw_stats, METH_VARARGS,
     "raw_stats(reset=False) -> lines block_text wrote in its first pass, in its second, left to Python."},
    {"line_heads", line_heads, METH_VARARGS,
     "line_heads(lines, media) -> [False | None | (id, update time) | submission id]: see the module."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups",
                                    "Optional C versions of hot loops (see _speedups.c).", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__speedups(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return NULL;
    str_value = PyUnicode_InternFromString("value");
    str_latitude = PyUnicode_InternFromString("latitude");
    str_longitude = PyUnicode_InternFromString("longitude");
    str_index = PyUnicode_InternFromString("index");
    str_values = PyUnicode_InternFromString("values");
    str_text = PyUnicode_InternFromString("text");
    if (!str_value || !str_latitude || !str_longitude || !str_index || !str_values || !str_text) return NULL;
    PyObject **strs[10] = {&str_subform, &str_row, &str_field, &str_name, &str_content_type, &str_size,
                           &str_sha256, &str_fields, &str_id, &str__id};
    const char *texts[10] = {"subform", "row", "field", "name", "content_type", "size", "sha256", "fields", "id",
                             "_id"};
    for (int i = 0; i < 10; i++)
        if ((*strs[i] = PyUnicode_InternFromString(texts[i])) == NULL) return NULL;
    jclass_init();
    struct { JKey *k; const char *s; } keys[17] = {{&k_fields, "fields"}, {&k_id, "id"}, {&k__id, "_id"},
        {&k_update_time, "update_time"}, {&k__update_time, "_update_time"}, {&k_create_time, "create_time"},
        {&k__create_time, "_create_time"}, {&k_submission_id, "submission_id"}, {&k_boolean, "boolean"},
        {&k_value, "value"}, {&k_subform, "subform"}, {&k_row, "row"}, {&k_field, "field"}, {&k_name, "name"},
        {&k_content_type, "content_type"}, {&k_size, "size"}, {&k_sha256, "sha256"}};
    for (int i = 0; i < 17; i++) {
        PyObject *str = PyUnicode_InternFromString(keys[i].s); /* kept: the key points into it */
        if (str == NULL || jkey_of(keys[i].k, str) < 0) return NULL;
    }
    const char *ref_fields[6] = {"form_id", "submission_id", "field", "name", "subform", "row"};
    for (int i = 0; i < 6; i++)
        if ((mediaref_names[i] = PyUnicode_InternFromString(ref_fields[i])) == NULL) return NULL;
    return PyModule_Create(&module);
}
