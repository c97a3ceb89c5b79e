/* eventstore._speedups: the redaction pre-check in one pass over the text, and the
 * stored timestamp form.
 *
 * Why C: every append runs ``Redactor._clean`` on the canonical JSON of every payload,
 * to skip the full redaction walk when no builtin rule can fire. In Python that is a
 * dozen substring searches, a ``lower()`` copy and a regex per event, about 9 us per KB
 * (17 us in the append loop, where caches are cold): a quarter of an append's own CPU.
 * One pass that tests one bit per position (the pair of bytes there) does the same
 * in about 1 us.
 *
 * Semantics (held to the Python version by tests/unit/test_redact_fastpath.py):
 *   clean(text) is True exactly when no ``hint`` occurs in text, not both "@" and "://"
 *   occur, and no ``keyword`` occurs in text.lower().
 * Only ASCII text is handled here (``lower`` is then byte-wise and ``casefold`` equals
 * it); for any other text ``ascii_clean`` returns None and the caller takes the Python
 * path, which casefolds. The literals come from eventstore/redact.py through
 * ``configure``, so this file holds no second copy of them.
 *
 * Optional: the package builds and works without it (setuptools marks it optional).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdio.h>
#include <string.h>

#define MAX_LITERALS 64
#define MAX_LEN 64

typedef struct {
    unsigned char text[MAX_LEN];
    Py_ssize_t len;
} Literal;

/* hints are matched as written, keywords against the lowered text (stored lowered) */
static Literal hints[MAX_LITERALS];
static Literal keywords[MAX_LITERALS];
static int n_hints = 0, n_keywords = 0;
/* first byte -> bit set of literals starting with it (64 literals at most) */
static unsigned long long hint_first[256];
static unsigned long long keyword_first[256];
/* bit (b0 | b1 << 8) is set when some literal starts with the bytes b0 b1 (keywords in
 * every case): the scan tests one bit per position and looks closer only on a hit, a few
 * per cent of positions in prose */
static unsigned long long bigram[65536 / 64];
static int configured = 0;

static inline void
set_bigram(unsigned char a, unsigned char b)
{
    unsigned int key = (unsigned int)a | ((unsigned int)b << 8);
    bigram[key >> 6] |= 1ULL << (key & 63);
}

static inline unsigned char
upper(unsigned char c)
{
    return (c >= 'a' && c <= 'z') ? (unsigned char)(c - 32) : c;
}

static int
load(PyObject *seq, Literal *out, int *count, unsigned long long *first, int lower,
     const char *what)
{
    PyObject *fast = PySequence_Fast(seq, "literals must be a sequence of str");
    if (fast == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > MAX_LITERALS) {
        PyErr_Format(PyExc_ValueError, "at most %d %s", MAX_LITERALS, what);
        Py_DECREF(fast);
        return -1;
    }
    memset(first, 0, 256 * sizeof(unsigned long long));
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyUnicode_Check(item) || !PyUnicode_IS_ASCII(item)) {
            PyErr_Format(PyExc_ValueError, "%s must be ASCII str", what);
            Py_DECREF(fast);
            return -1;
        }
        Py_ssize_t len = PyUnicode_GET_LENGTH(item);
        if (len < 2 || len > MAX_LEN) {
            PyErr_Format(PyExc_ValueError, "%s must be 2 to %d characters", what, MAX_LEN);
            Py_DECREF(fast);
            return -1;
        }
        const unsigned char *src = PyUnicode_1BYTE_DATA(item);
        for (Py_ssize_t j = 0; j < len; j++) {
            unsigned char c = src[j];
            out[i].text[j] = (lower && c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
        }
        out[i].len = len;
        first[out[i].text[0]] |= 1ULL << i;
        unsigned char a = out[i].text[0], b = out[i].text[1];
        set_bigram(a, b);
        if (lower) {  /* stored lowered: the text may have either case */
            set_bigram(upper(a), b);
            set_bigram(a, upper(b));
            set_bigram(upper(a), upper(b));
        }
    }
    *count = (int)n;
    Py_DECREF(fast);
    return 0;
}

static PyObject *
configure(PyObject *self, PyObject *args)
{
    PyObject *h, *k;
    if (!PyArg_ParseTuple(args, "OO:configure", &h, &k)) {
        return NULL;
    }
    configured = 0;
    memset(bigram, 0, sizeof(bigram));
    if (load(h, hints, &n_hints, hint_first, 0, "hints") < 0 ||
        load(k, keywords, &n_keywords, keyword_first, 1, "keywords") < 0) {
        return NULL;
    }
    configured = 1;
    Py_RETURN_NONE;
}

static inline unsigned char
low(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* Does a literal of ``set`` (candidates ``bits``) start at s[i]? */
static inline int
match_at(const unsigned char *s, Py_ssize_t n, Py_ssize_t i, const Literal *set,
         unsigned long long bits, int lowered)
{
    while (bits) {
        int k = __builtin_ctzll(bits);
        bits &= bits - 1;
        const Literal *lit = &set[k];
        if (n - i < lit->len) {
            continue;
        }
        Py_ssize_t j = 1;
        if (lowered) {
            while (j < lit->len && low(s[i + j]) == lit->text[j]) {
                j++;
            }
        } else {
            while (j < lit->len && s[i + j] == lit->text[j]) {
                j++;
            }
        }
        if (j == lit->len) {
            return 1;
        }
    }
    return 0;
}

static PyObject *
ascii_clean(PyObject *self, PyObject *text)
{
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "ascii_clean() needs a str");
        return NULL;
    }
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "eventstore._speedups.configure() was not called");
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(text)) {
        Py_RETURN_NONE;
    }
    const unsigned char *s = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    for (Py_ssize_t i = 0; i + 1 < n; i++) {
        unsigned int key = (unsigned int)s[i] | ((unsigned int)s[i + 1] << 8);
        if (!(bigram[key >> 6] & (1ULL << (key & 63)))) {
            continue;
        }
        unsigned long long h = hint_first[s[i]];
        if (h && match_at(s, n, i, hints, h, 0)) {
            Py_RETURN_FALSE;
        }
        unsigned long long k = keyword_first[low(s[i])];
        if (k && match_at(s, n, i, keywords, k, 1)) {
            Py_RETURN_FALSE;
        }
    }
    /* a password in a URL needs both: "@" (memchr) first, it is the rarer */
    if (n >= 3 && memchr(s, '@', (size_t)n) != NULL) {
        const unsigned char *p = s, *end = s + n;
        while ((p = memchr(p, ':', (size_t)(end - p))) != NULL && end - p >= 3) {
            if (p[1] == '/' && p[2] == '/') {
                Py_RETURN_FALSE;
            }
            p++;
        }
    }
    Py_RETURN_TRUE;
}

/* format_utc(ts): eventstore.canonical.format_ts for the common case, an exact
 * ``datetime`` in ``datetime.UTC`` with a four-digit year; None for anything else, which
 * the Python version handles (naive, other zones, subclasses, years before 1000). */
static PyObject *
format_utc(PyObject *self, PyObject *ts)
{
    if (!PyDateTime_CheckExact(ts)) {
        Py_RETURN_NONE;
    }
    if (PyDateTime_DATE_GET_TZINFO(ts) != PyDateTime_TimeZone_UTC) {
        Py_RETURN_NONE;
    }
    int year = PyDateTime_GET_YEAR(ts);
    if (year < 1000) {
        Py_RETURN_NONE;
    }
    char buf[40];
    int n = snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", year,
                     PyDateTime_GET_MONTH(ts), PyDateTime_GET_DAY(ts),
                     PyDateTime_DATE_GET_HOUR(ts), PyDateTime_DATE_GET_MINUTE(ts),
                     PyDateTime_DATE_GET_SECOND(ts), PyDateTime_DATE_GET_MICROSECOND(ts));
    if (n < 0 || n >= (int)sizeof(buf)) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromStringAndSize(buf, n);
}

static PyMethodDef methods[] = {
    {"format_utc", format_utc, METH_O,
     "format_utc(ts) -> str | None: 'YYYY-MM-DDTHH:MM:SS.ffffffZ' for a datetime in "
     "datetime.UTC with a four-digit year; None otherwise."},
    {"configure", configure, METH_VARARGS,
     "configure(hints, keywords): the literals ascii_clean looks for."},
    {"ascii_clean", ascii_clean, METH_O,
     "ascii_clean(text) -> bool | None: True when no hint, no keyword (lowered) and not "
     "both '@' and '://' occur; None when text is not ASCII."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "eventstore._speedups",
    "Optional C helpers for the append path (see _speedups.c).", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return NULL;
    }
    return PyModule_Create(&module);
}
