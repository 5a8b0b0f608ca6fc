/* The pickle machine's data loop (`Machine._hot_python` and `Machine._full_batch` in machine.py), in C.
 *
 * Optional: machine.py imports it when it was built and falls back to the Python loop otherwise. It must
 * leave exactly the state the Python loop leaves (stack, metastack, memo, every Fresh, nested, fend, pos),
 * so it follows that loop branch by branch. Wherever it is unsure (a value that is not what the fast
 * branch expects, an argument that does not parse, an error) it stops before the opcode, with nothing of
 * that opcode done, and returns: the general loop then runs that opcode with every check and raises the
 * error itself. `Machine._absorb` (and so `_fresh`) is followed here too, the same steps in the same
 * order; it calls back into Python only for `Memo.put` and `Memo.tag`, where the Python loop calls them.
 *
 * Every read of the buffer is below `limit` (the end of the buffer or of the frame); the loop reads at
 * most `span` bytes per call, like the Python loop, so the general loop checks the memory bound between
 * runs. The GIL is held throughout.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

#define OFF 23
#define ARENA_MAX (1LL << (OFF - 1))

/* set by setup() */
static PyObject *FreshType, *PlainType, *BlobType, *TupleMarker, *PlainMarker, *Markers, *LimitExceeded, *MemoType;
static long long SharedWeights;
static PyObject *Zero;
static Py_ssize_t F_items, F_kind, F_plain, F_slot, F_weight;
static Py_ssize_t M_arena, M_dropped, M_far, M_objs, M_tags, M_tuples;
static PyObject *S_list, *S_dict, *S_buf, *S_pos, *S_lim, *S_fend, *S_base, *S_stack, *S_metastack, *S_memo,
    *S_nested, *S_at, *S_put, *S_tag, *S_frombytes;

#define SLOT(o, off) (*(PyObject **)((char *)(o) + (off)))

static int set_slot(PyObject *o, Py_ssize_t off, PyObject *value) {
    /* steals `value` */
    if (value == NULL) return -1;
    PyObject *old = SLOT(o, off);
    SLOT(o, off) = value;
    Py_XDECREF(old);
    return 0;
}

static int get_ll(PyObject *v, long long *out) {
    /* 0 and the value of an exact int that fits, -1 (no error set) otherwise */
    if (v == NULL || !PyLong_CheckExact(v)) return -1;
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (x == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return -1;
    }
    *out = x;
    return 0;
}

static inline int is_scalar_data(PyObject *o) {
    PyTypeObject *t = Py_TYPE(o);
    return t == &PyUnicode_Type || t == &PyLong_Type || t == &PyBytes_Type || t == &PyFloat_Type ||
           t == &PyBool_Type || o == Py_None || (PyObject *)t == BlobType;
}

static inline int is_scalar(PyObject *o) { return is_scalar_data(o) || (PyObject *)Py_TYPE(o) == PlainType; }

static inline int is_fresh(PyObject *o) { return (PyObject *)Py_TYPE(o) == FreshType; }

static int fresh_is_dict(PyObject *o) {
    PyObject *kind = SLOT(o, F_kind);
    if (kind == S_dict) return 1;
    if (kind == NULL || !PyUnicode_Check(kind)) return 0;
    return PyUnicode_CompareWithASCIIString(kind, "dict") == 0;
}

static inline uint32_t u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline PyObject *list_pop(PyObject *list) {
    /* the last item, owned by the caller; the list must not be empty */
    Py_ssize_t n = PyList_GET_SIZE(list);
    PyObject *item = PyList_GET_ITEM(list, n - 1);
    Py_SET_SIZE(list, n - 1);
    return item;
}

static int push(PyObject *list, PyObject *value) {
    /* steals `value` */
    if (value == NULL) return -1;
    int r = PyList_Append(list, value);
    Py_DECREF(value);
    return r;
}

/* UTF-8 as Python's decoder accepts it with errors="surrogatepass": encoded surrogates are valid too */
static int valid_utf8(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int more;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            more = 1;
        } else if (c == 0xE0) {
            more = 2;
            lo = 0xA0;
        } else if (c >= 0xE1 && c <= 0xEF) {
            more = 2;
        } else if (c == 0xF0) {
            more = 3;
            lo = 0x90;
        } else if (c >= 0xF1 && c <= 0xF3) {
            more = 3;
        } else if (c == 0xF4) {
            more = 3;
            hi = 0x8F;
        } else {
            return 0;
        }
        if (i + more >= n) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (int k = 2; k <= more; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return 0;
        i += more + 1;
    }
    return 1;
}

/* ------------------------------------------------------------------ the run's state */
/* a growing vector of memo tags */
typedef struct {
    long long *v;
    Py_ssize_t n, cap;
} Tags;

static int tags_add(Tags *t, long long v) {
    if (t->n == t->cap) {
        Py_ssize_t cap = t->cap ? t->cap * 2 : 1024;
        long long *p = PyMem_Realloc(t->v, cap * sizeof(long long));
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->v = p;
        t->cap = cap;
    }
    t->v[t->n++] = v;
    return 0;
}

typedef struct {
    PyObject *self, *memo, *tags, *objs, *arena, *tuples, *far;
    Py_buffer view;
    int have_view;
    long long *T;     /* the memo's tags (array('q')) while the buffer is held */
    Py_ssize_t nbase; /* how many */
    Tags pend;        /* tags appended since, not yet in the array */
    long long dropped; /* added to memo.dropped at the next sync */
    long long item_cap, nested_kept, max_weight, tuple_slots_max, max_line;
} St;

static int acquire(St *st) {
    if (PyObject_GetBuffer(st->tags, &st->view, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) return -1;
    if (st->view.itemsize != 8 || st->view.format == NULL || strcmp(st->view.format, "q") != 0) {
        PyBuffer_Release(&st->view);
        PyErr_SetString(PyExc_TypeError, "memo tags must be array('q')");
        return -1;
    }
    st->have_view = 1;
    st->T = (long long *)st->view.buf;
    st->nbase = st->view.len / 8;
    return 0;
}

/* Hand everything to the Python objects (before a callback, and at the end). */
static int memo_sync(St *st) {
    int r = 0;
    if (st->have_view) {
        PyBuffer_Release(&st->view);
        st->have_view = 0;
    }
    if (st->pend.n) {
        PyObject *data = PyBytes_FromStringAndSize((const char *)st->pend.v, st->pend.n * 8);
        PyObject *res = data ? PyObject_CallMethodOneArg(st->tags, S_frombytes, data) : NULL;
        Py_XDECREF(data);
        if (res == NULL) r = -1;
        Py_XDECREF(res);
        st->pend.n = 0;
    }
    if (st->dropped) {
        long long old;
        if (get_ll(SLOT(st->memo, M_dropped), &old) < 0) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "memo.dropped is not an int");
            return -1;
        }
        if (set_slot(st->memo, M_dropped, PyLong_FromLongLong(old + st->dropped)) < 0) return -1;
        st->dropped = 0;
    }
    return r;
}

static inline Py_ssize_t ntags(St *st) { return st->nbase + st->pend.n; }
static inline long long tag_get(St *st, Py_ssize_t i) { return i < st->nbase ? st->T[i] : st->pend.v[i - st->nbase]; }
static inline void tag_set(St *st, Py_ssize_t i, long long v) {
    if (i < st->nbase)
        st->T[i] = v;
    else
        st->pend.v[i - st->nbase] = v;
}

static int tag_push(St *st, long long v) { return tags_add(&st->pend, v); }

static int arena_add(St *st, const char *data, Py_ssize_t n, int is_bytes) {
    /* the memo's next tag: a constant in the arena */
    Py_ssize_t at = PyByteArray_GET_SIZE(st->arena);
    if (PyByteArray_Resize(st->arena, at + n) < 0) return -1;
    memcpy(PyByteArray_AS_STRING(st->arena) + at, data, n);
    return tag_push(st, (long long)at << OFF | (long long)n << 1 | is_bytes);
}

static int objs_add(St *st, PyObject *value) {
    /* the memo's next tag: an object */
    Py_ssize_t index = PyList_GET_SIZE(st->objs);
    if (PyList_Append(st->objs, value) < 0) return -1;
    return tag_push(st, -2 - (long long)index);
}

/* `name(*args)` on a Python object (args[0]) that may read or change the memo: the tags go back to the
 * array first and the buffer is taken again after. */
static PyObject *callback(St *st, PyObject *name, PyObject *const *args, size_t nargs) {
    if (memo_sync(st) < 0) return NULL;
    PyObject *res = PyObject_VectorcallMethod(name, args, nargs, NULL);
    if (acquire(st) < 0) {
        Py_XDECREF(res);
        return NULL;
    }
    return res;
}

/* The text of a str constant as the Python loop decodes it (UTF-8, `surrogatepass`), new reference; NULL
 * without an error when it is not valid (the general loop raises there), with one on any other failure. */
static PyObject *decode_text(const char *s, Py_ssize_t n) {
    PyObject *v = PyUnicode_DecodeUTF8(s, n, "surrogatepass");
    if (v == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) PyErr_Clear();
    return v;
}

/* The constant an arena tag refers to, as `Memo.text` rebuilds it, new reference; NULL without an error
 * when the tag runs past the arena or the text is not valid, with one on any other failure. */
static PyObject *arena_value(St *st, long long tag) {
    long long at = tag >> OFF, n = (tag >> 1) & (ARENA_MAX - 1);
    if (at + n > PyByteArray_GET_SIZE(st->arena)) return NULL;
    const char *data = PyByteArray_AS_STRING(st->arena) + at;
    return tag & 1 ? PyBytes_FromStringAndSize(data, n) : decode_text(data, n);
}

/* The memo entry `index` as `Memo.get` gives it (a constant promoted from the arena as `Memo.text` does),
 * new reference; NULL without an error when the general loop must run the fetch (a missing entry). */
static PyObject *memo_get(St *st, long long index) {
    if (index >= 0 && index < ntags(st)) {
        long long tag = tag_get(st, index);
        if (tag < 0) {
            Py_ssize_t i = -2 - tag;
            if (i < 0 || i >= PyList_GET_SIZE(st->objs)) return NULL;
            PyObject *v = PyList_GET_ITEM(st->objs, i);
            Py_INCREF(v);
            return v;
        }
        PyObject *v = arena_value(st, tag);
        if (v == NULL) return NULL;
        Py_ssize_t slot = PyList_GET_SIZE(st->objs);
        if (PyList_Append(st->objs, v) < 0) {
            Py_DECREF(v);
            return NULL;
        }
        tag_set(st, index, -2 - (long long)slot);
        return v;
    }
    if (PyDict_GET_SIZE(st->far) == 0) return NULL;
    PyObject *key = PyLong_FromLongLong(index);
    if (key == NULL) return NULL;
    PyObject *v = PyDict_GetItemWithError(st->far, key);
    Py_DECREF(key);
    Py_XINCREF(v);
    return v;
}

/* A decimal memo index as int() reads the protocol 0 PUT and GET lines: digits only, -1 for anything
 * else (the general loop reads those). */
static long long line_index(const unsigned char *s, Py_ssize_t n) {
    if (n < 1 || n > 18) return -1;
    long long v = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* `int(line)` (base 10) or `int(line, 0)` of a protocol 0 line, new reference: plain decimals read here,
 * anything else by int() itself; NULL without an error when int() rejects it (the general loop raises). */
static PyObject *line_int(const unsigned char *line, Py_ssize_t n, int base) {
    int neg = n > 0 && line[0] == '-';
    Py_ssize_t k = n - neg;
    if (k >= 1 && (base == 10 || k == 1 || line[neg] != '0')) {
        long long x = line_index(line + neg, k);
        if (x >= 0) return PyLong_FromLongLong(neg ? -x : x);
    }
    PyObject *text = PyBytes_FromStringAndSize((const char *)line, n);
    if (text == NULL) return NULL;
    PyObject *value = base == 10 ? PyObject_CallOneArg((PyObject *)&PyLong_Type, text)
                                 : PyObject_CallFunction((PyObject *)&PyLong_Type, "Oi", text, base);
    Py_DECREF(text);
    if (value == NULL && PyErr_ExceptionMatches(PyExc_ValueError)) PyErr_Clear();
    return value;
}

/* ------------------------------------------------------------------ Machine._full_batch */
typedef struct {
    Py_ssize_t at, n;
} Piece;

typedef struct {
    Piece *p;
    Py_ssize_t n, cap;
} Pieces;

static int pieces_add(Pieces *ps, Py_ssize_t at, Py_ssize_t n) {
    if (ps->n == ps->cap) {
        Py_ssize_t cap = ps->cap ? ps->cap * 2 : 256;
        Piece *p = PyMem_Realloc(ps->p, cap * sizeof(Piece));
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        ps->p = p;
        ps->cap = cap;
    }
    ps->p[ps->n].at = at;
    ps->p[ps->n].n = n;
    ps->n++;
    return 0;
}

/* `_memo_store`: the length of a memo store of `index` at `pos`, 0 if none, -1 if of another index */
static int memo_store(const unsigned char *b, Py_ssize_t pos, Py_ssize_t limit, long long index) {
    if (pos >= limit) return 0;
    unsigned char op = b[pos];
    if (op == 0x94) return 1;
    if (op == 0x71) return pos + 2 <= limit && b[pos + 1] == index ? 2 : -1;
    if (op == 0x72) return pos + 5 <= limit && u32(b + pos + 1) == index ? 5 : -1;
    return 0;
}

typedef struct {
    PyObject *markers;  /* list: the objects the memo's new entries hold */
    PyObject *promoted; /* dict: memo index -> object slot of a constant promoted from the arena */
    Py_ssize_t slot;
} Batch;

/* `_batch_fetch`: 1 if the fetch at `pos` is of a constant (promoting an arena string), 0 if not, -1 on error */
static int batch_fetch(St *st, const unsigned char *b, Py_ssize_t pos, Batch *bt) {
    long long index = b[pos] == 0x68 ? b[pos + 1] : u32(b + pos + 1);
    if (index >= ntags(st)) return 0;
    long long tag = tag_get(st, index);
    if (tag < 0) {
        Py_ssize_t i = -2 - tag;
        if (i < 0 || i >= PyList_GET_SIZE(st->objs)) return 0;
        return is_scalar_data(PyList_GET_ITEM(st->objs, i));
    }
    PyObject *key = PyLong_FromLongLong(index);
    if (key == NULL) return -1;
    int seen = PyDict_Contains(bt->promoted, key);
    if (seen != 0) {
        Py_DECREF(key);
        return seen < 0 ? -1 : 1;
    }
    PyObject *v = arena_value(st, tag);
    if (v == NULL) {
        Py_DECREF(key);
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *slot = PyLong_FromSsize_t(bt->slot);
    int r = slot == NULL || push(bt->markers, v) < 0 || PyDict_SetItem(bt->promoted, key, slot) < 0 ? -1 : 1;
    Py_XDECREF(slot);
    Py_DECREF(key);
    bt->slot++;
    return r;
}

static int pieces_valid(const unsigned char *b, Pieces *ps) {
    for (Py_ssize_t i = 0; i < ps->n; i++)
        if (!valid_utf8(b + ps->p[i].at, ps->p[i].n)) return 0;
    return 1;
}

static PyObject *shared_marker(PyObject *shared, Py_ssize_t count) {
    /* plain_marker("list", count), once per count in a batch (borrowed from `shared`) */
    PyObject *key = PyLong_FromSsize_t(count);
    if (key == NULL) return NULL;
    PyObject *marker = PyDict_GetItemWithError(shared, key);
    if (marker == NULL && !PyErr_Occurred()) {
        marker = PyObject_CallFunction(PlainMarker, "On", S_list, count);
        if (marker != NULL) {
            int r = PyDict_SetItem(shared, key, marker);
            Py_DECREF(marker);
            if (r < 0) marker = NULL;
        }
    }
    Py_DECREF(key);
    return marker;
}

/* The batch `MARK <items> SETITEMS|APPENDS` from `pos` into `target`, which already keeps item_cap items:
 * where it ends (past the closing opcode), 0 when it is not one (nothing changed), -1 on an error. */
static Py_ssize_t full_batch_run(St *st, const unsigned char *b, Py_ssize_t pos, PyObject *target, Py_ssize_t lim,
                                 long long fend0, Tags *added, Pieces *pieces, Pieces *texts, Batch *bt,
                                 PyObject *shared, long long *fend_out, long long counts[4]) {
    unsigned char close = fresh_is_dict(target) ? 0x75 : 0x65;
    long long at = PyByteArray_GET_SIZE(st->arena);
    long long items = 0, weight = 0, lists = 0, pairs = 0;
    long long fend = fend0;
    Py_ssize_t limit = fend > lim ? lim : (Py_ssize_t)fend;
    Py_ssize_t next = ntags(st);
    for (;;) {
        if (pos + 9 >= limit) {
            if (pos == fend && pos + 9 <= lim && b[pos] == 0x95) {
                unsigned long long size = 0;
                for (int k = 8; k >= 1; k--) size = size << 8 | b[pos + k];
                if (size > (unsigned long long)(PY_SSIZE_T_MAX - pos - 9)) return 0;
                pos += 9;
                fend = pos + (long long)size;
                limit = fend > lim ? lim : (Py_ssize_t)fend;
                continue;
            }
            if (pos >= limit) return 0;
        }
        unsigned char op = b[pos];
        if (op == 0x8C || op == 0x58) {
            Py_ssize_t start = op == 0x8C ? pos + 2 : pos + 5;
            Py_ssize_t stop = start < limit ? start + (op == 0x8C ? b[pos + 1] : (Py_ssize_t)u32(b + pos + 1)) : limit;
            if (stop >= limit) return 0;
            int put = b[stop] == 0x94 ? 1 : memo_store(b, stop, limit, next + added->n);
            if (put < 0) return 0;
            if (put) {
                Py_ssize_t size = stop - start;
                if (size >= ARENA_MAX) return 0;
                if (tags_add(added, at << OFF | (long long)size << 1) < 0) return -1;
                at += size;
                if (pieces_add(pieces, start, size) < 0) return -1;
                stop += put;
            } else if (pieces_add(texts, start, stop - start) < 0) {
                return -1;
            }
            pos = stop;
        } else if (op == 0x4A || op == 0x4B || op == 0x4D) {
            pos += op == 0x4A ? 5 : op == 0x4B ? 2 : 3;
            unsigned char second = pos + 6 < limit ? b[pos] : 0;
            if (second == 0x4A || second == 0x4B || second == 0x4D) {
                Py_ssize_t stop = pos + (second == 0x4A ? 5 : second == 0x4B ? 2 : 3);
                if (b[stop] == 0x86) {
                    pos = stop + 1;
                    if (b[pos] == 0x94) {
                        if (tags_add(added, -2 - (long long)bt->slot) < 0) return -1;
                        bt->slot++;
                        if (PyList_Append(bt->markers, TupleMarker) < 0) return -1;
                        pairs++;
                        pos++;
                    }
                }
            }
        } else if (op == 0x5D) {
            int put = memo_store(b, pos + 1, limit, next + added->n);
            if (put <= 0) return 0;
            pos += 1 + put;
            if (tags_add(added, -2 - (long long)bt->slot) < 0) return -1;
            Py_ssize_t place = PyList_GET_SIZE(bt->markers);
            if (PyList_Append(bt->markers, Py_None) < 0) return -1;
            bt->slot++;
            long long count = 0;
            int fused = pos < limit && b[pos] == 0x28;
            if (fused) pos++;
            while (pos < limit) {
                unsigned char code = b[pos];
                Py_ssize_t width;
                if (code == 0x68 && pos + 2 <= limit) {
                    width = 2;
                    long long index = b[pos + 1];
                    long long tag = index < next ? tag_get(st, index) : 0;
                    int constant = 0;
                    if (tag < 0) {
                        Py_ssize_t i = -2 - tag;
                        if (i < 0 || i >= PyList_GET_SIZE(st->objs)) return 0;
                        constant = is_scalar_data(PyList_GET_ITEM(st->objs, i));
                    }
                    if (!constant) {
                        int got = batch_fetch(st, b, pos, bt);
                        if (got <= 0) return got;
                    }
                } else {
                    width = code == 0x68 || code == 0x4B ? 2 : code == 0x6A || code == 0x4A ? 5 : code == 0x4D ? 3 : 0;
                    if (!width || pos + width > limit) break;
                    if (code == 0x68 || code == 0x6A) {
                        int got = batch_fetch(st, b, pos, bt);
                        if (got <= 0) return got;
                    }
                }
                if (!fused) {
                    if (pos + width >= limit || b[pos + width] != 0x61) break;
                    pos++;
                }
                count++;
                pos += width;
            }
            if (fused && (pos >= limit || b[pos] != 0x65)) return 0;
            if (count > st->item_cap) return 0;
            pos += fused;
            PyObject *marker = shared_marker(shared, count);
            if (marker == NULL) return -1;
            Py_INCREF(marker);
            PyList_SetItem(bt->markers, place, marker); /* steals; replaces the None */
            lists++;
            weight += count;
        } else if (op == 0x68 || op == 0x6A) {
            Py_ssize_t width = op == 0x68 ? 2 : 5;
            if (pos + width > limit) return 0;
            int got = batch_fetch(st, b, pos, bt);
            if (got <= 0) return got;
            pos += width;
        } else if (op == close) {
            break;
        } else {
            return 0;
        }
        if (pos > limit) return 0;
        items++;
    }
    if (!pieces_valid(b, pieces) || !pieces_valid(b, texts)) return 0;
    counts[0] = items + weight;
    counts[1] = lists;
    counts[2] = pairs;
    *fend_out = fend;
    return pos + 1;
}

static Py_ssize_t full_batch(St *st, const unsigned char *b, Py_ssize_t pos, PyObject *target, Py_ssize_t lim) {
    long long fend0, target_weight, nested;
    PyObject *fendobj = PyObject_GetAttr(st->self, S_fend);
    int bad = get_ll(fendobj, &fend0);
    Py_XDECREF(fendobj);
    if (bad < 0 || get_ll(SLOT(target, F_weight), &target_weight) < 0) return PyErr_Occurred() ? -1 : 0;
    Tags added = {0};
    Pieces pieces = {0}, texts = {0};
    Batch bt = {PyList_New(0), PyDict_New(), PyList_GET_SIZE(st->objs)};
    PyObject *shared = PyDict_New();
    Py_ssize_t done = -1;
    long long fend = 0, counts[4] = {0};
    if (bt.markers == NULL || bt.promoted == NULL || shared == NULL) goto out;
    done = full_batch_run(st, b, pos, target, lim, fend0, &added, &pieces, &texts, &bt, shared, &fend, counts);
    if (done <= 0) goto out;
    if (target_weight + counts[0] > st->max_weight ||
        PyDict_GET_SIZE(st->tuples) + counts[2] > st->tuple_slots_max) {
        done = 0;
        goto out;
    }
    {
        PyObject *nestedobj = PyObject_GetAttr(st->self, S_nested);
        bad = get_ll(nestedobj, &nested);
        Py_XDECREF(nestedobj);
        if (bad < 0) {
            done = PyErr_Occurred() ? -1 : 0;
            goto out;
        }
    }
    /* commit: nothing below fails but on memory */
    {
        Py_ssize_t total = 0;
        for (Py_ssize_t i = 0; i < pieces.n; i++) total += pieces.p[i].n;
        Py_ssize_t at = PyByteArray_GET_SIZE(st->arena);
        if (PyByteArray_Resize(st->arena, at + total) < 0) goto fail;
        char *dst = PyByteArray_AS_STRING(st->arena) + at;
        for (Py_ssize_t i = 0; i < pieces.n; i++) {
            memcpy(dst, b + pieces.p[i].at, pieces.p[i].n);
            dst += pieces.p[i].n;
        }
        for (Py_ssize_t i = 0; i < added.n; i++)
            if (tag_push(st, added.v[i]) < 0) goto fail;
        Py_ssize_t size = PyList_GET_SIZE(st->objs);
        if (PyList_SetSlice(st->objs, size, size, bt.markers) < 0) goto fail;
        PyObject *key, *value;
        Py_ssize_t it = 0;
        while (PyDict_Next(bt.promoted, &it, &key, &value)) {
            long long index, held;
            if (get_ll(key, &index) < 0 || get_ll(value, &held) < 0) goto fail;
            tag_set(st, index, -2 - held);
        }
        st->dropped += counts[1] + counts[2];
        if (set_slot(target, F_weight, PyLong_FromLongLong(target_weight + counts[0])) < 0) goto fail;
        long long room = nested > st->nested_kept ? nested : st->nested_kept;
        long long grown = nested + counts[1] < room ? nested + counts[1] : room;
        PyObject *n = PyLong_FromLongLong(grown);
        if (n == NULL || PyObject_SetAttr(st->self, S_nested, n) < 0) {
            Py_XDECREF(n);
            goto fail;
        }
        Py_DECREF(n);
        PyObject *f = PyLong_FromLongLong(fend);
        if (f == NULL || PyObject_SetAttr(st->self, S_fend, f) < 0) {
            Py_XDECREF(f);
            goto fail;
        }
        Py_DECREF(f);
    }
    goto out;
fail:
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_SystemError, "pickle batch state");
    done = -1;
out:
    PyMem_Free(added.v);
    PyMem_Free(pieces.p);
    PyMem_Free(texts.p);
    Py_XDECREF(bt.markers);
    Py_XDECREF(bt.promoted);
    Py_XDECREF(shared);
    return done;
}

/* ------------------------------------------------------------------ Machine._hot_python */
static PyObject *new_fresh(PyObject *kind) {
    PyTypeObject *type = (PyTypeObject *)FreshType;
    PyObject *o = type->tp_alloc(type, 0);
    if (o == NULL) return NULL;
    Py_INCREF(kind);
    Py_INCREF(Py_True);
    if (set_slot(o, F_items, PyList_New(0)) < 0 || set_slot(o, F_kind, kind) < 0 ||
        set_slot(o, F_weight, PyLong_FromLong(0)) < 0 || set_slot(o, F_plain, Py_True) < 0 ||
        set_slot(o, F_slot, PyLong_FromLong(-1)) < 0) {
        Py_DECREF(o);
        return NULL;
    }
    return o;
}

static int data_error(void) {
    /* an error the general loop raises itself when it runs the opcode */
    return PyErr_ExceptionMatches(PyExc_ValueError) || PyErr_ExceptionMatches(PyExc_OverflowError);
}

static int set_ll_attr(PyObject *o, PyObject *name, long long v) {
    PyObject *n = PyLong_FromLongLong(v);
    if (n == NULL) return -1;
    int r = PyObject_SetAttr(o, name, n);
    Py_DECREF(n);
    return r;
}

/* Extend `kept` by what `_absorb` keeps of constants already weighed: the items (or pairs) up to the cap. */
static int keep_items(PyObject *kept, PyObject *items, int pairs, long long cap) {
    long long room = cap - PyList_GET_SIZE(kept);
    Py_ssize_t size = PyList_GET_SIZE(items);
    if (room <= 0) return 0;
    if (!pairs) {
        Py_ssize_t k = size < room ? size : (Py_ssize_t)room;
        Py_ssize_t n = PyList_GET_SIZE(kept);
        PyObject *head = PyList_GetSlice(items, 0, k);
        if (head == NULL) return -1;
        int r = PyList_SetSlice(kept, n, n, head);
        Py_DECREF(head);
        return r;
    }
    Py_ssize_t k = size / 2 < room ? size / 2 : (Py_ssize_t)room;
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *pair = PyTuple_Pack(2, PyList_GET_ITEM(items, 2 * i), PyList_GET_ITEM(items, 2 * i + 1));
        if (push(kept, pair) < 0) return -1;
    }
    return 0;
}

/* `Machine._absorb(target, items, pairs)`: `items` join `target` (its weight grows by them and what they
 * expand to, it stays plain while they are, the memo drops the plain ones it held), the same steps in the
 * same order, up to the LimitExceeded it raises past the expansion bound. */
static PyObject *marker_for(PyObject *kind, long long weight) {
    /* plain_marker(kind, weight), with its shared table read directly (borrowed or new: returns new) */
    if (weight >= 0 && weight < SharedWeights) {
        PyObject *table = PyDict_GetItemWithError(Markers, kind);
        if (table == NULL && PyErr_Occurred()) return NULL;
        if (table != NULL && PyList_CheckExact(table) && weight < PyList_GET_SIZE(table)) {
            PyObject *marker = PyList_GET_ITEM(table, weight);
            if (marker != Py_None) {
                Py_INCREF(marker);
                return marker;
            }
        }
    }
    return PyObject_CallFunction(PlainMarker, "OL", kind, weight);
}

static int absorb(St *st, PyObject *target, PyObject *items, int pairs, long long at) {
    long long slot, weight, nested;
    if (get_ll(SLOT(target, F_slot), &slot) < 0 || get_ll(SLOT(target, F_weight), &weight) < 0) goto bad;
    PyObject *objs = st->objs;
    if (slot < -1) { /* Memo.restore */
        Py_ssize_t index = -2 - slot;
        if (index >= 0 && index < PyList_GET_SIZE(objs) && Py_TYPE(PyList_GET_ITEM(objs, index)) == (PyTypeObject *)PlainType) {
            Py_INCREF(target);
            PyList_SetItem(objs, index, target);
            if (set_slot(target, F_slot, PyLong_FromSsize_t(index)) < 0) return -1;
            st->dropped--;
        }
    }
    int plain = SLOT(target, F_plain) == Py_True;
    if (SLOT(target, F_plain) != Py_True && SLOT(target, F_plain) != Py_False) goto bad;
    PyObject *nestedobj = PyObject_GetAttr(st->self, S_nested);
    int badnested = get_ll(nestedobj, &nested);
    Py_XDECREF(nestedobj);
    if (badnested < 0) goto bad;
    Py_ssize_t n = PyList_GET_SIZE(items);
    Py_ssize_t size = PyList_GET_SIZE(objs);
    weight += n;
    for (Py_ssize_t position = 0; position < n; position++) {
        PyObject *item = PyList_GET_ITEM(items, position);
        if (is_scalar_data(item)) continue;
        if (is_fresh(item)) {
            long long item_weight, index;
            if (get_ll(SLOT(item, F_weight), &item_weight) < 0 || get_ll(SLOT(item, F_slot), &index) < 0) goto bad;
            weight += item_weight;
            if (SLOT(item, F_plain) != Py_True) {
                if (SLOT(item, F_plain) != Py_False) goto bad;
                plain = 0;
                continue;
            }
            PyObject *marker = marker_for(SLOT(item, F_kind), item_weight);
            if (marker == NULL) return -1;
            if (index >= 0 && index < size && PyList_GET_ITEM(objs, index) == item) {
                Py_INCREF(marker);
                PyList_SetItem(objs, index, marker);
                if (set_slot(item, F_slot, PyLong_FromLongLong(-2 - index)) < 0) {
                    Py_DECREF(marker);
                    return -1;
                }
                st->dropped++;
            }
            if (nested < st->nested_kept) {
                nested++;
                Py_DECREF(marker);
            } else {
                PyList_SetItem(items, position, marker); /* past the bound, parents keep what it weighs */
            }
            continue;
        }
        if (PyTuple_CheckExact(item)) {
            PyObject *id = PyLong_FromVoidPtr(item);
            if (id == NULL) return -1;
            PyObject *where = PyDict_GetItemWithError(st->tuples, id);
            long long index = -1;
            if (where != NULL) {
                if (get_ll(where, &index) < 0) index = -1;
                if (PyDict_DelItem(st->tuples, id) < 0) {
                    Py_DECREF(id);
                    return -1;
                }
            }
            Py_DECREF(id);
            if (PyErr_Occurred()) return -1;
            int all = 1;
            for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(item) && all; i++) all = is_scalar(PyTuple_GET_ITEM(item, i));
            if (!all) {
                plain = 0;
            } else if (index >= 0 && index < PyList_GET_SIZE(objs) && PyList_GET_ITEM(objs, index) == item) {
                Py_INCREF(TupleMarker);
                PyList_SetItem(objs, index, TupleMarker);
                st->dropped++;
            }
        } else if ((PyObject *)Py_TYPE(item) == PlainType) {
            PyObject *w = PyObject_GetAttrString(item, "weight");
            long long item_weight;
            int badweight = get_ll(w, &item_weight);
            Py_XDECREF(w);
            if (badweight < 0) goto bad;
            weight += item_weight;
        } else {
            plain = 0; /* Memo.collapse of anything else: not plain data */
        }
    }
    if (set_ll_attr(st->self, S_nested, nested) < 0) return -1;
    if (weight > st->max_weight) {
        PyObject *message = PyUnicode_FromFormat(
            "container at %lld expands to more than %lld elements through shared references", at, st->max_weight);
        if (message == NULL) return -1;
        PyObject *exc = PyObject_CallFunction(LimitExceeded, "sO", "pickle-expansion", message);
        Py_DECREF(message);
        if (exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
        return -1;
    }
    if (set_slot(target, F_weight, PyLong_FromLongLong(weight)) < 0) return -1;
    PyObject *flag = plain ? Py_True : Py_False;
    Py_INCREF(flag);
    set_slot(target, F_plain, flag);
    PyObject *kept = SLOT(target, F_items);
    if (kept == NULL || !PyList_CheckExact(kept)) goto bad;
    return keep_items(kept, items, pairs, st->item_cap);
bad:
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "a container's bookkeeping is not what the machine writes");
    return -1;
}

static PyObject *hot(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "hot(machine, item_cap, nested_kept, max_weight, tuple_slots, span, max_line)");
        return NULL;
    }
    if (FreshType == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "setup() was not called");
        return NULL;
    }
    St st = {0};
    long long span;
    long long *bounds[] = {&st.item_cap, &st.nested_kept, &st.max_weight, &st.tuple_slots_max, &span, &st.max_line};
    for (int i = 0; i < 6; i++) {
        if (get_ll(args[i + 1], bounds[i]) < 0) {
            PyErr_SetString(PyExc_TypeError, "bounds must be ints");
            return NULL;
        }
    }
    PyObject *self = st.self = args[0];
    PyObject *bufobj = NULL, *stack = NULL, *metastack = NULL, *memo = NULL, *result = NULL;
    long long pos = 0, first = 0, lim = 0, fend = 0, base = 0;
    bufobj = PyObject_GetAttr(self, S_buf);
    if (bufobj == NULL) return NULL;
    if (!PyBytes_CheckExact(bufobj)) {
        Py_DECREF(bufobj);
        return PyLong_FromLong(0);
    }
    {
        PyObject *o;
        PyObject *names[] = {S_pos, S_lim, S_fend, S_base};
        long long *outs[] = {&pos, &lim, &fend, &base};
        for (int i = 0; i < 4; i++) {
            o = PyObject_GetAttr(self, names[i]);
            int bad = get_ll(o, outs[i]);
            Py_XDECREF(o);
            if (bad < 0) {
                Py_DECREF(bufobj);
                return PyErr_Occurred() ? NULL : PyLong_FromLong(0);
            }
        }
    }
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(bufobj);
    if (lim > PyBytes_GET_SIZE(bufobj) || pos < 0 || pos > lim) {
        Py_DECREF(bufobj);
        return PyLong_FromLong(0);
    }
    first = pos;
    stack = PyObject_GetAttr(self, S_stack);
    metastack = PyObject_GetAttr(self, S_metastack);
    memo = st.memo = PyObject_GetAttr(self, S_memo);
    if (stack == NULL || metastack == NULL || memo == NULL) goto leave;
    if (!PyList_CheckExact(stack) || !PyList_CheckExact(metastack) || (PyObject *)Py_TYPE(memo) != MemoType) {
        result = PyLong_FromLong(0);
        goto leave;
    }
    {
        PyObject *tags = SLOT(memo, M_tags), *objs = SLOT(memo, M_objs), *arena = SLOT(memo, M_arena);
        PyObject *tuples = SLOT(memo, M_tuples), *far = SLOT(memo, M_far);
        if (tags == NULL || objs == NULL || !PyList_CheckExact(objs) || arena == NULL ||
            !PyByteArray_CheckExact(arena) || tuples == NULL || !PyDict_CheckExact(tuples) || far == NULL ||
            !PyDict_CheckExact(far)) {
            result = PyLong_FromLong(0);
            goto leave;
        }
        Py_INCREF(tags);
        Py_INCREF(objs);
        Py_INCREF(arena);
        Py_INCREF(tuples);
        Py_INCREF(far);
        st.tags = tags;
        st.objs = objs;
        st.arena = arena;
        st.tuples = tuples;
        st.far = far;
    }
    if (acquire(&st) < 0) goto leave;

    Py_ssize_t limit = fend > lim ? (Py_ssize_t)lim : (Py_ssize_t)fend;
    Py_ssize_t end = limit - 9; /* every fixed-size argument of an opcode starting before `end` ends by `limit` */
    if (end > pos + span) end = pos + span;
    int dense = PyDict_GET_SIZE(st.far) == 0;
    PyObject *value;

    while (pos < end) {
        unsigned char op = b[pos];
        switch (op) {
        case 0x8C: { /* SHORT_BINUNICODE, with the MEMOIZE and the dict entry's number after it */
            Py_ssize_t stop = pos + 2 + b[pos + 1];
            if (stop >= limit) goto done;
            Py_ssize_t n = stop - pos - 2;
            value = decode_text((const char *)b + pos + 2, n);
            if (value == NULL) {
                if (PyErr_Occurred()) goto error;
                goto done;
            }
            if (push(stack, value) < 0) goto error;
            if (b[stop] == 0x94 && dense) {
                if (arena_add(&st, (const char *)b + pos + 2, n, 0) < 0) goto error;
                stop++;
            }
            pos = stop;
            if (pos < end && b[pos] == 0x4A) {
                if (push(stack, PyLong_FromLong((int32_t)u32(b + pos + 1))) < 0) goto error;
                pos += 5;
            }
            break;
        }
        case 0x94:
        case 0x72:
        case 0x71:
        case 0x70: { /* MEMOIZE, LONG_BINPUT, BINPUT, PUT */
            long long index;
            PyObject *big = NULL;
            Py_ssize_t step;
            if (op == 0x94) {
                index = dense ? ntags(&st) : ntags(&st) + PyDict_GET_SIZE(st.far);
                step = 1;
            } else if (op == 0x72) {
                index = u32(b + pos + 1);
                step = 5;
            } else if (op == 0x71) {
                index = b[pos + 1];
                step = 2;
            } else {
                const unsigned char *nl = memchr(b + pos + 1, '\n', limit - pos - 1);
                if (nl == NULL || nl - (b + pos) > st.max_line) goto done;
                PyObject *number = line_int(b + pos + 1, nl - (b + pos + 1), 10);
                if (number == NULL) {
                    if (PyErr_Occurred()) goto error;
                    goto done;
                }
                int negative = PyObject_RichCompareBool(number, Zero, Py_LT);
                if (negative != 0) { /* a negative index is the general loop's error */
                    Py_DECREF(number);
                    if (negative < 0) goto error;
                    goto done;
                }
                if (get_ll(number, &index) < 0) {
                    big = number; /* past 2**63: a far entry, stored by Memo.put */
                    index = -1;
                } else {
                    Py_DECREF(number);
                }
                step = nl + 1 - (b + pos);
            }
            Py_ssize_t size = PyList_GET_SIZE(stack);
            if (size == 0) {
                Py_XDECREF(big);
                goto done;
            }
            value = PyList_GET_ITEM(stack, size - 1);
            pos += step;
            PyTypeObject *kind = Py_TYPE(value);
            long long slot = 0;
            if (!dense || index != ntags(&st)) {
                PyObject *pyindex = big != NULL ? big : PyLong_FromLongLong(index);
                if (pyindex == NULL) goto error;
                Py_INCREF(value);
                PyObject *cargs[] = {memo, pyindex, value};
                PyObject *r = callback(&st, S_put, cargs, 3);
                Py_DECREF(value);
                Py_DECREF(pyindex);
                if (r == NULL) goto error;
                Py_DECREF(r);
                dense = PyDict_GET_SIZE(st.far) == 0;
            } else if (kind == &PyUnicode_Type && PyUnicode_IS_ASCII(value) &&
                       PyUnicode_GET_LENGTH(value) < ARENA_MAX) {
                if (arena_add(&st, (const char *)PyUnicode_1BYTE_DATA(value), PyUnicode_GET_LENGTH(value), 0) < 0)
                    goto error;
            } else if (kind == &PyUnicode_Type) {
                PyObject *raw = PyUnicode_AsEncodedString(value, "utf-8", "surrogatepass");
                if (raw == NULL) goto error;
                Py_ssize_t n = PyBytes_GET_SIZE(raw);
                int r = n < ARENA_MAX ? arena_add(&st, PyBytes_AS_STRING(raw), n, 0) : 0;
                Py_DECREF(raw);
                if (r < 0) goto error;
                if (n >= ARENA_MAX) goto tag;
            } else if (kind == &PyBytes_Type && PyBytes_GET_SIZE(value) < ARENA_MAX) {
                if (arena_add(&st, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), 1) < 0) goto error;
            } else if ((PyObject *)kind == FreshType && get_ll(SLOT(value, F_slot), &slot) == 0 && slot == -1) {
                Py_ssize_t at = PyList_GET_SIZE(st.objs);
                if (set_slot(value, F_slot, PyLong_FromSsize_t(at)) < 0 || objs_add(&st, value) < 0) goto error;
            } else if (kind == &PyTuple_Type && PyDict_GET_SIZE(st.tuples) < st.tuple_slots_max) {
                Py_ssize_t at = PyList_GET_SIZE(st.objs);
                PyObject *id = PyLong_FromVoidPtr(value);
                PyObject *where = PyLong_FromSsize_t(at);
                int r = id == NULL || where == NULL || PyDict_SetItem(st.tuples, id, where) < 0;
                Py_XDECREF(id);
                Py_XDECREF(where);
                if (r || objs_add(&st, value) < 0) goto error;
            } else if (kind != &PyUnicode_Type && kind != &PyBytes_Type && (PyObject *)kind != FreshType &&
                       kind != &PyTuple_Type && (PyObject *)kind != PlainType) {
                if (objs_add(&st, value) < 0) goto error;
            } else {
            tag: {
                /* tags.append(memo.tag(value)) */
                Py_INCREF(value);
                PyObject *cargs[] = {memo, value};
                PyObject *r = callback(&st, S_tag, cargs, 2);
                Py_DECREF(value);
                if (r == NULL) goto error;
                long long t;
                int bad = get_ll(r, &t);
                Py_DECREF(r);
                if (bad < 0) {
                    PyErr_SetString(PyExc_TypeError, "Memo.tag gave no int");
                    goto error;
                }
                if (tag_push(&st, t) < 0) goto error;
            }
            }
            break;
        }
        case 0x58: { /* BINUNICODE, with the BINPUT or LONG_BINPUT of the next index after it */
            Py_ssize_t size = u32(b + pos + 1);
            Py_ssize_t stop = pos + 5 + size;
            if (stop > limit) goto done;
            value = decode_text((const char *)b + pos + 5, size);
            if (value == NULL) {
                if (PyErr_Occurred()) goto error;
                goto done;
            }
            if (push(stack, value) < 0) goto error;
            Py_ssize_t start = pos + 5;
            pos = stop;
            if (dense && stop + 5 <= limit && size < ARENA_MAX) {
                unsigned char put = b[stop];
                if (put == 0x72) {
                    if (u32(b + stop + 1) == ntags(&st)) {
                        if (arena_add(&st, (const char *)b + start, size, 0) < 0) goto error;
                        pos = stop + 5;
                    }
                } else if (put == 0x71 && b[stop + 1] == ntags(&st)) {
                    if (arena_add(&st, (const char *)b + start, size, 0) < 0) goto error;
                    pos = stop + 2;
                }
            }
            break;
        }
        case 0x4B: /* BININT1 */
            if (push(stack, PyLong_FromLong(b[pos + 1])) < 0) goto error;
            pos += 2;
            break;
        case 0x4A: /* BININT */
            if (push(stack, PyLong_FromLong((int32_t)u32(b + pos + 1))) < 0) goto error;
            pos += 5;
            break;
        case 0x5D:
        case 0x7D: { /* EMPTY_LIST, EMPTY_DICT, with the MEMOIZE and MARK after them */
            value = new_fresh(op == 0x5D ? S_list : S_dict);
            if (push(stack, value) < 0) goto error; /* `value` stays alive on the stack */
            pos++;
            if (b[pos] == 0x94 && dense) {
                Py_ssize_t at = PyList_GET_SIZE(st.objs);
                if (set_slot(value, F_slot, PyLong_FromSsize_t(at)) < 0 || objs_add(&st, value) < 0) goto error;
                pos++;
                if (b[pos] == 0x28) {
                    if (PyList_Append(metastack, stack) < 0) goto error;
                    Py_DECREF(stack);
                    stack = PyList_New(0);
                    if (stack == NULL) goto error;
                    pos++;
                    if (op == 0x5D) {
                        /* `BINGET* APPENDS`: a short list of memoised constants */
                        while (pos < end && b[pos] == 0x68) {
                            PyObject *item = memo_get(&st, b[pos + 1]);
                            if (item == NULL) {
                                if (PyErr_Occurred()) goto error;
                                goto done;
                            }
                            if (push(stack, item) < 0) goto error;
                            pos += 2;
                        }
                        Py_ssize_t n = PyList_GET_SIZE(stack);
                        if (pos < end && b[pos] == 0x65 && n <= st.item_cap) {
                            int constants = 1;
                            for (Py_ssize_t i = 0; i < n && constants; i++)
                                constants = is_scalar_data(PyList_GET_ITEM(stack, i));
                            if (constants) {
                                Py_INCREF(stack);
                                if (set_slot(value, F_weight, PyLong_FromSsize_t(n)) < 0 ||
                                    set_slot(value, F_items, stack) < 0)
                                    goto error;
                                Py_DECREF(stack);
                                stack = list_pop(metastack);
                                pos++;
                            }
                        }
                    }
                }
            }
            break;
        }
        case 0x61:
        case 0x73: { /* APPEND, SETITEM */
            Py_ssize_t width = op == 0x61 ? 2 : 3;
            Py_ssize_t n = PyList_GET_SIZE(stack);
            if (n < width) goto done;
            PyObject *target = PyList_GET_ITEM(stack, n - width);
            if (!is_fresh(target) || fresh_is_dict(target) != (op == 0x73)) goto done;
            PyObject *item = PyList_GET_ITEM(stack, n - 1);
            PyObject *kept = SLOT(target, F_items);
            long long slot, weight;
            if (get_ll(SLOT(target, F_slot), &slot) < 0 || get_ll(SLOT(target, F_weight), &weight) < 0 ||
                kept == NULL || !PyList_CheckExact(kept))
                goto done;
            if (slot >= -1 && weight < st.max_weight - 1 && (op == 0x61 || is_scalar_data(PyList_GET_ITEM(stack, n - 2)))) {
                int constant = is_scalar_data(item);
                if (PyTuple_CheckExact(item)) {
                    int all = 1;
                    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(item) && all; i++)
                        all = is_scalar(PyTuple_GET_ITEM(item, i));
                    if (all) {
                        constant = 1;
                        PyObject *id = PyLong_FromVoidPtr(item);
                        if (id == NULL) goto error;
                        PyObject *index = PyDict_GetItemWithError(st.tuples, id);
                        long long i = -1;
                        if (index != NULL) {
                            get_ll(index, &i);
                            if (PyDict_DelItem(st.tuples, id) < 0) {
                                Py_DECREF(id);
                                goto error;
                            }
                        }
                        Py_DECREF(id);
                        if (PyErr_Occurred()) goto error;
                        if (i >= 0 && i < PyList_GET_SIZE(st.objs) && PyList_GET_ITEM(st.objs, i) == item) {
                            Py_INCREF(TupleMarker);
                            PyList_SetItem(st.objs, i, TupleMarker);
                            st.dropped++;
                        }
                    }
                }
                if (constant) {
                    Py_INCREF(target); /* the pops below may leave the stack its only holder */
                    PyObject *last = list_pop(stack);
                    int r;
                    if (op == 0x61) {
                        r = set_slot(target, F_weight, PyLong_FromLongLong(weight + 1));
                        if (r == 0 && PyList_GET_SIZE(kept) < st.item_cap) r = PyList_Append(kept, last);
                        Py_DECREF(last);
                    } else {
                        PyObject *key = list_pop(stack);
                        r = set_slot(target, F_weight, PyLong_FromLongLong(weight + 2));
                        if (r == 0 && PyList_GET_SIZE(kept) < st.item_cap) r = push(kept, PyTuple_Pack(2, key, last));
                        Py_DECREF(key);
                        Py_DECREF(last);
                    }
                    Py_DECREF(target);
                    if (r < 0) goto error;
                    pos++;
                    break;
                }
            }
            if (set_ll_attr(self, S_at, base + pos) < 0) goto error;
            PyObject *items = PyList_GetSlice(stack, n - width + 1, n);
            if (items == NULL) goto error;
            Py_INCREF(target);
            if (PyList_SetSlice(stack, n - width + 1, n, NULL) < 0) {
                Py_DECREF(items);
                Py_DECREF(target);
                goto error;
            }
            int r = absorb(&st, target, items, op == 0x73, base + pos);
            Py_DECREF(items);
            Py_DECREF(target);
            if (r < 0) goto error;
            pos++;
            break;
        }
        case 0x68: { /* BINGET */
            PyObject *item = memo_get(&st, b[pos + 1]);
            if (item == NULL) {
                if (PyErr_Occurred()) goto error;
                goto done;
            }
            if (push(stack, item) < 0) goto error;
            pos += 2;
            break;
        }
        case 0x65:
        case 0x75: { /* APPENDS, SETITEMS */
            Py_ssize_t depth = PyList_GET_SIZE(metastack);
            if (depth == 0) goto done;
            PyObject *below = PyList_GET_ITEM(metastack, depth - 1);
            if (!PyList_CheckExact(below) || PyList_GET_SIZE(below) == 0) goto done;
            PyObject *target = PyList_GET_ITEM(below, PyList_GET_SIZE(below) - 1);
            long long slot, weight;
            if (!is_fresh(target) || fresh_is_dict(target) != (op == 0x75) || get_ll(SLOT(target, F_slot), &slot) < 0 ||
                slot < -1 || get_ll(SLOT(target, F_weight), &weight) < 0)
                goto done;
            Py_ssize_t size = PyList_GET_SIZE(stack);
            int constants = 1;
            for (Py_ssize_t i = 0; i < size && constants; i++) constants = is_scalar_data(PyList_GET_ITEM(stack, i));
            if (!constants) {
                if (set_ll_attr(self, S_at, base + pos) < 0) goto error;
                if (absorb(&st, target, stack, op == 0x75, base + pos) < 0) goto error;
            } else {
                if (weight + size > st.max_weight) goto done;
                PyObject *kept = SLOT(target, F_items);
                if (kept == NULL || !PyList_CheckExact(kept)) goto done;
                if (set_slot(target, F_weight, PyLong_FromLongLong(weight + size)) < 0) goto error;
                if (keep_items(kept, stack, op == 0x75, st.item_cap) < 0) goto error;
            }
            Py_DECREF(stack);
            stack = list_pop(metastack);
            pos++;
            break;
        }
        case 0x6A: { /* LONG_BINGET */
            PyObject *item = memo_get(&st, u32(b + pos + 1));
            if (item == NULL) {
                if (PyErr_Occurred()) goto error;
                goto done;
            }
            if (push(stack, item) < 0) goto error;
            pos += 5;
            break;
        }
        case 0x28: { /* MARK, and the batch of items after it when its container is full */
            Py_ssize_t n = PyList_GET_SIZE(stack);
            if (n && dense) {
                PyObject *target = PyList_GET_ITEM(stack, n - 1);
                long long slot;
                if (is_fresh(target) && get_ll(SLOT(target, F_slot), &slot) == 0 && slot >= -1) {
                    PyObject *kept = SLOT(target, F_items);
                    if (kept != NULL && PyList_CheckExact(kept) && PyList_GET_SIZE(kept) >= st.item_cap) {
                        Py_ssize_t got = full_batch(&st, b, pos + 1, target, (Py_ssize_t)lim);
                        if (got < 0) goto error;
                        if (got) {
                            pos = got;
                            break;
                        }
                    }
                }
            }
            if (PyList_Append(metastack, stack) < 0) goto error;
            Py_DECREF(stack);
            stack = PyList_New(0);
            if (stack == NULL) goto error;
            pos++;
            break;
        }
        case 0x49:
        case 0x67:
        case 0x56:
        case 0x46: { /* INT, GET, UNICODE, FLOAT: protocol 0 text lines */
            const unsigned char *nl = memchr(b + pos + 1, '\n', limit - pos - 1);
            if (nl == NULL || nl - (b + pos) > st.max_line) goto done;
            const unsigned char *line = b + pos + 1;
            Py_ssize_t n = nl - line;
            if (op == 0x56) {
                value = PyUnicode_DecodeRawUnicodeEscape((const char *)line, n, NULL);
                if (value == NULL) {
                    if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                        PyErr_Clear();
                        goto done;
                    }
                    goto error;
                }
            } else if (op == 0x67) {
                long long index;
                PyObject *number = line_int(line, n, 10);
                if (number == NULL) {
                    if (PyErr_Occurred()) goto error;
                    goto done;
                }
                if (get_ll(number, &index) == 0) {
                    value = memo_get(&st, index);
                } else { /* past 2**63: only a far entry */
                    value = PyDict_GetItemWithError(st.far, number);
                    Py_XINCREF(value);
                }
                Py_DECREF(number);
                if (value == NULL) {
                    if (PyErr_Occurred()) goto error;
                    goto done;
                }
            } else if (op == 0x49) {
                if (n == 2 && line[0] == '0' && (line[1] == '0' || line[1] == '1')) {
                    value = line[1] == '1' ? Py_True : Py_False;
                    Py_INCREF(value);
                } else {
                    value = line_int(line, n, 0);
                    if (value == NULL) {
                        if (PyErr_Occurred()) goto error;
                        goto done;
                    }
                }
            } else {
                PyObject *text = PyBytes_FromStringAndSize((const char *)line, n);
                if (text == NULL) goto error;
                value = PyObject_CallOneArg((PyObject *)&PyFloat_Type, text);
                Py_DECREF(text);
                if (value == NULL) {
                    if (data_error()) {
                        PyErr_Clear();
                        goto done;
                    }
                    goto error;
                }
            }
            if (push(stack, value) < 0) goto error;
            pos = nl + 1 - b;
            break;
        }
        case 0x64:
        case 0x6C: { /* DICT, LIST: a container from the items since MARK (protocols 0, 1) */
            if (PyList_GET_SIZE(metastack) == 0) goto done;
            PyObject *items = stack;
            stack = list_pop(metastack);
            PyObject *kind = op == 0x64 ? S_dict : S_list;
            if (set_ll_attr(self, S_at, base + pos) < 0) {
                Py_DECREF(items);
                goto error;
            }
            value = new_fresh(kind); /* `_fresh(kind, items)` */
            if (value != NULL && PyList_GET_SIZE(items) && absorb(&st, value, items, op == 0x64, base + pos) < 0)
                Py_CLEAR(value);
            Py_DECREF(items);
            if (push(stack, value) < 0) goto error;
            pos++;
            break;
        }
        case 0x86: { /* TUPLE2 */
            Py_ssize_t n = PyList_GET_SIZE(stack);
            if (n < 2) goto done;
            value = PyTuple_Pack(2, PyList_GET_ITEM(stack, n - 2), PyList_GET_ITEM(stack, n - 1));
            if (value == NULL) goto error;
            Py_DECREF(list_pop(stack));
            PyList_SetItem(stack, n - 2, value);
            pos++;
            break;
        }
        case 0x87: { /* TUPLE3 */
            Py_ssize_t n = PyList_GET_SIZE(stack);
            if (n < 3) goto done;
            value = PyTuple_Pack(3, PyList_GET_ITEM(stack, n - 3), PyList_GET_ITEM(stack, n - 2),
                                 PyList_GET_ITEM(stack, n - 1));
            if (value == NULL) goto error;
            Py_DECREF(list_pop(stack));
            Py_DECREF(list_pop(stack));
            PyList_SetItem(stack, n - 3, value);
            pos++;
            break;
        }
        case 0x4D: /* BININT2 */
            if (push(stack, PyLong_FromLong(b[pos + 1] | b[pos + 2] << 8)) < 0) goto error;
            pos += 3;
            break;
        case 0x4E: /* NONE */
            Py_INCREF(Py_None);
            if (push(stack, Py_None) < 0) goto error;
            pos++;
            break;
        case 0x47: { /* BINFLOAT */
#if PY_VERSION_HEX >= 0x030B0000
            double x = PyFloat_Unpack8((const char *)b + pos + 1, 0);
#else
            double x = _PyFloat_Unpack8(b + pos + 1, 0);
#endif
            if (x == -1.0 && PyErr_Occurred()) goto error;
            if (push(stack, PyFloat_FromDouble(x)) < 0) goto error;
            pos += 9;
            break;
        }
        case 0x85: { /* TUPLE1 */
            Py_ssize_t n = PyList_GET_SIZE(stack);
            if (n < 1) goto done;
            value = PyTuple_Pack(1, PyList_GET_ITEM(stack, n - 1));
            if (value == NULL) goto error;
            PyList_SetItem(stack, n - 1, value);
            pos++;
            break;
        }
        case 0x29: /* EMPTY_TUPLE */
            if (push(stack, PyTuple_New(0)) < 0) goto error;
            pos++;
            break;
        case 0x88:
        case 0x89: /* NEWTRUE, NEWFALSE */
            value = op == 0x88 ? Py_True : Py_False;
            Py_INCREF(value);
            if (push(stack, value) < 0) goto error;
            pos++;
            break;
        case 0x43: { /* SHORT_BINBYTES */
            Py_ssize_t stop = pos + 2 + b[pos + 1];
            if (stop > limit) goto done;
            if (push(stack, PyBytes_FromStringAndSize((const char *)b + pos + 2, stop - pos - 2)) < 0) goto error;
            pos = stop;
            break;
        }
        case 0x74: { /* TUPLE */
            if (PyList_GET_SIZE(metastack) == 0) goto done;
            value = PyList_AsTuple(stack);
            if (value == NULL) goto error;
            Py_DECREF(stack);
            stack = list_pop(metastack);
            if (push(stack, value) < 0) goto error;
            pos++;
            break;
        }
        default:
            goto done;
        }
    }
done:
    if (memo_sync(&st) < 0) goto error;
    if (set_ll_attr(self, S_pos, pos) < 0 || PyObject_SetAttr(self, S_stack, stack) < 0) goto leave;
    result = PyLong_FromLongLong(pos - first);
    goto leave;
error: {
    /* what the Python loop leaves when an opcode raises: `at` and `pos` past it, the stack as it is */
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    memo_sync(&st);
    PyErr_Clear();
    set_ll_attr(self, S_at, base + pos);
    set_ll_attr(self, S_pos, pos + 1);
    if (stack != NULL) PyObject_SetAttr(self, S_stack, stack);
    PyErr_Clear();
    PyErr_Restore(type, exc, tb);
}
leave:
    if (st.have_view) PyBuffer_Release(&st.view);
    PyMem_Free(st.pend.v);
    Py_XDECREF(st.tags);
    Py_XDECREF(st.objs);
    Py_XDECREF(st.arena);
    Py_XDECREF(st.tuples);
    Py_XDECREF(st.far);
    Py_XDECREF(bufobj);
    Py_XDECREF(stack);
    Py_XDECREF(metastack);
    Py_XDECREF(memo);
    return result;
}

/* ------------------------------------------------------------------ setup */
static int member_offset(PyObject *type, const char *name, Py_ssize_t *out) {
    PyObject *descr = PyObject_GetAttrString(type, name);
    if (descr == NULL) return -1;
    if (!Py_IS_TYPE(descr, &PyMemberDescr_Type) || ((PyMemberDescrObject *)descr)->d_member->type != T_OBJECT_EX) {
        Py_DECREF(descr);
        PyErr_Format(PyExc_TypeError, "%s is not a __slots__ member", name);
        return -1;
    }
    *out = ((PyMemberDescrObject *)descr)->d_member->offset;
    Py_DECREF(descr);
    return 0;
}

static PyObject *setup(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *fresh, *plain, *blob, *marker, *plain_marker, *markers, *limit, *memo;
    int off;
    long long arena_max, shared;
    if (!PyArg_ParseTuple(args, "O!O!O!OOO!LOO!iL", &PyType_Type, &fresh, &PyType_Type, &plain, &PyType_Type, &blob,
                          &marker, &plain_marker, &PyDict_Type, &markers, &shared, &limit, &PyType_Type, &memo, &off,
                          &arena_max))
        return NULL;
    if (off != OFF || arena_max != ARENA_MAX) {
        PyErr_SetString(PyExc_ValueError, "the memo's tag layout is not the one this module was built for");
        return NULL;
    }
    if (member_offset(fresh, "items", &F_items) < 0 || member_offset(fresh, "kind", &F_kind) < 0 ||
        member_offset(fresh, "plain", &F_plain) < 0 || member_offset(fresh, "slot", &F_slot) < 0 ||
        member_offset(fresh, "weight", &F_weight) < 0 || member_offset(memo, "arena", &M_arena) < 0 ||
        member_offset(memo, "dropped", &M_dropped) < 0 || member_offset(memo, "far", &M_far) < 0 ||
        member_offset(memo, "objs", &M_objs) < 0 || member_offset(memo, "tags", &M_tags) < 0 ||
        member_offset(memo, "tuples", &M_tuples) < 0)
        return NULL;
    Py_INCREF(fresh);
    Py_INCREF(plain);
    Py_INCREF(blob);
    Py_INCREF(marker);
    Py_INCREF(plain_marker);
    Py_XSETREF(FreshType, fresh);
    Py_XSETREF(PlainType, plain);
    Py_XSETREF(BlobType, blob);
    Py_XSETREF(TupleMarker, marker);
    Py_XSETREF(PlainMarker, plain_marker);
    Py_INCREF(markers);
    Py_XSETREF(Markers, markers);
    Py_INCREF(limit);
    Py_XSETREF(LimitExceeded, limit);
    SharedWeights = shared;
    Py_INCREF(memo);
    Py_XSETREF(MemoType, memo);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS, "setup(Fresh, Plain, Blob, tuple_marker, plain_marker, MARKERS, SHARED_WEIGHTS, LimitExceeded, Memo, OFF, ARENA_MAX)"},
    {"hot", (PyCFunction)(void (*)(void))hot, METH_FASTCALL,
     "hot(machine, item_cap, nested_kept, max_weight, tuple_slots_max, span, max_line) -> bytes read"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "_hot", "The pickle machine's data loop in C.", -1,
                                       methods};

PyMODINIT_FUNC PyInit__hot(void) {
    PyObject **names[] = {&S_list, &S_dict, &S_buf, &S_pos, &S_lim, &S_fend, &S_base, &S_stack, &S_metastack,
                          &S_memo, &S_nested, &S_at, &S_put, &S_tag, &S_frombytes};
    const char *texts[] = {"list", "dict", "buf", "pos", "lim", "fend", "base", "stack", "metastack",
                           "memo", "nested", "at", "put", "tag", "frombytes"};
    Zero = PyLong_FromLong(0);
    if (Zero == NULL) return NULL;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        *names[i] = PyUnicode_InternFromString(texts[i]);
        if (*names[i] == NULL) return NULL;
    }
    return PyModule_Create(&moduledef);
}
