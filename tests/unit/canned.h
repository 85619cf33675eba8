/*
 * canned.h -- runs a connector's page reader over canned answers, with no
 * network and no database: a configuration from text, the engine's HTTP
 * client in canned mode (sync_http_new_canned(), lib/internal.h), and the
 * connector's begin/fetch/end called as the engine calls them.  Every page
 * is checked for what the store relies on (ct_check_page()).  Used by the
 * page-reader unit tests (tests/unit/test_<connector>.c) and the fuzz
 * targets (tests/fuzz/).
 *
 * Canned answers in one text (fuzz inputs, fixtures): answers separated by
 * a line "----"; an answer that starts with "HTTP " has a status line
 * ("HTTP 429"), header lines, an empty line and the body; any other is a
 * body answered with status 200.
 */
#ifndef CANNED_H
#define CANNED_H

#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "internal.h"

#define CT_UNUSED	__attribute__((unused))
#define CT_SEP		"\n----\n"

struct ct {
	struct sync_config *cfg;
	const struct sync_source_cfg *src;
	const struct sync_connector *conn;
	struct sync_opts opts;
	struct sync_ctx	 ctx;
	struct sync_counts counts;	/* source level */
	struct sync_counts scounts;	/* the streams' */
	int		 begun;
	int		 own_cfg;	/* ct_close() frees cfg */
	long		 rows;		/* rows of the pages ct_walk() read */
	long		 side_rows[2];	/* their contacts, conversations */
	long		 fetched;
	char		 bad[256];	/* the first broken rule, "" if none */
};

/* Loads a configuration from text; the caller frees *cfg. */
static CT_UNUSED enum sync_rc
ct_load(const char *text, struct sync_config **cfg, struct sync_err *err)
{
	char path[] = "/tmp/msgsync-canned-XXXXXX";
	struct sync_opts o;
	enum sync_rc rc;
	size_t n = strlen(text);
	int fd;

	*cfg = NULL;
	sync_err_clear(err);
	memset(&o, 0, sizeof(o));
	if ((fd = mkstemp(path)) == -1)
		return sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG, "mkstemp");
	if (fchmod(fd, 0600) == -1 || write(fd, text, n) != (ssize_t)n) {
		close(fd);
		unlink(path);
		return sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG, "write");
	}
	close(fd);
	o.config_path = path;
	o.max_runtime = -1;
	rc = sync_config_load(&o, cfg, err);
	unlink(path);
	if (rc == SYNC_OK) {
		/* Hostile pages make warnings by the thousand: errors only. */
		(*cfg)->log_level = LOG_ERR;
		sync_log_setup(*cfg, NULL);
	}
	return rc;
}

/*
 * Sets t up to run the first source of cfg (borrowed: it must outlive t)
 * with a canned HTTP client and no answers yet.
 */
static CT_UNUSED enum sync_rc
ct_init(struct ct *t, struct sync_config *cfg, struct sync_err *err)
{
	memset(t, 0, sizeof(*t));
	sync_err_clear(err);
	t->cfg = cfg;
	if (cfg->nsources == 0)
		return sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG, "no source");
	t->src = &cfg->sources[0];
	t->conn = t->src->conn;
	t->opts.max_runtime = -1;
	t->ctx.cfg = cfg;
	t->ctx.src = t->src;
	t->ctx.opts = &t->opts;
	t->ctx.source_counts = &t->counts;
	if ((t->ctx.http = sync_http_new_canned(cfg, t->src)) == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_NETWORK, "out of memory");
	sync_http_set_counts(t->ctx.http, &t->counts);
	return SYNC_OK;
}

/* ct_load() and ct_init(): t owns the configuration. */
static CT_UNUSED enum sync_rc
ct_open(struct ct *t, const char *text, struct sync_err *err)
{
	struct sync_config *cfg;
	enum sync_rc rc;

	memset(t, 0, sizeof(*t));
	if ((rc = ct_load(text, &cfg, err)) != SYNC_OK)
		return rc;
	rc = ct_init(t, cfg, err);
	t->own_cfg = 1;
	return rc;
}

/* A fixture file's text (the caller frees it), or NULL. */
static CT_UNUSED char *
ct_fixture(const char *path)
{
	struct sync_buf b = SYNC_BUF_INIT(0);
	char chunk[4096];
	size_t n;
	FILE *f;

	if ((f = fopen(path, "rb")) == NULL) {
		fprintf(stderr, "cannot open fixture %s\n", path);
		return NULL;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (sync_buf_add(&b, chunk, n) == -1)
			break;
	fclose(f);
	if (b.data == NULL && sync_buf_add(&b, "", 0) == -1)
		return NULL;
	return b.data;
}

/*
 * The n-th value of j in document order (j itself is 0), or NULL; *parent
 * gets its parent.
 */
static CT_UNUSED cJSON *
ct_node(cJSON *j, long *n, cJSON **parent)
{
	cJSON *c, *r;

	if ((*n)-- == 0)
		return j;
	for (c = j->child; c != NULL; c = c->next) {
		*parent = j;
		if ((r = ct_node(c, n, parent)) != NULL)
			return r;
	}
	return NULL;
}

/*
 * The i-th hostile variant of a valid page (the caller frees *out), or -1
 * when there are no more: the page cut short at eight points; a NUL byte,
 * a stray 0xff and a lone UTF-8 lead byte at seven points; nested 2000
 * deep (past cJSON's limit); and for each value in document order, that
 * value made a huge number, a negative one, an object, a string, null,
 * and an array 900 deep (within the limit).
 */
static CT_UNUSED int
ct_mutate(const char *valid, long i, char **out, size_t *outlen)
{
	static const char bytes[] = { '\0', (char)0xff, (char)0xc3 };
	size_t len = strlen(valid), k;
	struct sync_buf b = SYNC_BUF_INIT(0);
	cJSON *root, *node, *rep, *parent = NULL;
	long n;

	*out = NULL;
	*outlen = 0;
	if (i < 8) {			/* truncated */
		k = len * (size_t)i / 8;
		if (sync_buf_add(&b, valid, k) == -1)
			return -1;
		goto done;
	}
	i -= 8;
	if (i < 21) {			/* NUL, 0xff, a lone lead byte */
		k = len * (size_t)(i / 3 + 1) / 8;
		if (sync_buf_add(&b, valid, len) == -1)
			return -1;
		b.data[k] = bytes[i % 3];
		goto done;
	}
	i -= 21;
	if (i == 0) {			/* nested past the limit */
		for (k = 0; k < 2000; k++)
			if (sync_buf_add(&b, "[", 1) == -1)
				return -1;
		if (sync_buf_adds(&b, valid) == -1)
			return -1;
		for (k = 0; k < 2000; k++)
			if (sync_buf_add(&b, "]", 1) == -1)
				return -1;
		goto done;
	}
	i--;
	if ((root = cJSON_Parse(valid)) == NULL)
		return -1;
	n = i / 6 + 1;			/* not the root itself */
	if ((node = ct_node(root, &n, &parent)) == NULL) {
		cJSON_Delete(root);
		return -1;
	}
	switch (i % 6) {
	case 0:
		rep = cJSON_CreateRaw("123456789012345678901234567890");
		break;
	case 1:
		rep = cJSON_CreateRaw("-1e400");
		break;
	case 2:
		rep = cJSON_CreateObject();
		break;
	case 3:
		rep = cJSON_CreateString("\xe2\x80\xae" "x\\y\"z\t");
		break;
	case 4:
		rep = cJSON_CreateNull();
		break;
	default:
		if (sync_buf_add(&b, "", 0) == -1)
			return -1;
		for (k = 0; k < 900; k++)
			sync_buf_add(&b, "[", 1);
		for (k = 0; k < 900; k++)
			sync_buf_add(&b, "]", 1);
		rep = cJSON_CreateRaw(b.data);
		sync_buf_reset(&b);
		break;
	}
	if (rep == NULL || !cJSON_ReplaceItemViaPointer(parent, node, rep)) {
		cJSON_Delete(rep);
		cJSON_Delete(root);
		sync_buf_release(&b);
		return -1;
	}
	*out = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	sync_buf_release(&b);
	if (*out == NULL)
		return -1;
	*outlen = strlen(*out);
	return 0;
done:
	*outlen = b.len;
	*out = b.data;
	return 0;
}

/* Queues one answer with a body that is a C string. */
static CT_UNUSED int
ct_answer(struct ct *t, long status, const char *headers, const char *body)
{
	return sync_http_canned_add(t->ctx.http, status, headers, body,
	    strlen(body));
}

/* The first n-byte needle in s[0..len-1], or NULL (ct_find() is a GNU one). */
static CT_UNUSED const char *
ct_find(const char *s, size_t len, const char *needle, size_t n)
{
	size_t i;

	for (i = 0; n <= len && i <= len - n; i++)
		if (memcmp(s + i, needle, n) == 0)
			return s + i;
	return NULL;
}

/* Queues the answers of a canned text (see above); -1 on ENOMEM. */
static CT_UNUSED int
ct_answers(struct ct *t, const char *data, size_t len)
{
	const char *p = data, *end = data + len;

	for (;;) {
		const char *e = ct_find(p, (size_t)(end - p), CT_SEP, strlen(CT_SEP));
		const char *stop = e != NULL ? e : end, *body = p;
		char *hdr = NULL;
		long status = 200;
		int rc;

		if (stop - p >= 5 && memcmp(p, "HTTP ", 5) == 0) {
			const char *hs, *he, *d;

			/* Not strtol(): the data need not end in a NUL. */
			status = 0;
			for (d = p + 5; d < stop && *d >= '0' && *d <= '9' &&
			    status < 1000; d++)
				status = status * 10 + (*d - '0');
			if (status < 100 || status > 999)
				status = 200;
			hs = memchr(p, '\n', (size_t)(stop - p));
			hs = hs != NULL ? hs + 1 : stop;
			if (hs < stop && *hs == '\n')
				body = hs + 1;		/* no headers */
			else {
				he = ct_find(hs, (size_t)(stop - hs), "\n\n", 2);
				he = he != NULL ? he + 1 : stop;
				if ((hdr = strndup(hs, (size_t)(he - hs))) == NULL)
					return -1;
				body = he < stop ? he + 1 : stop;
			}
		}
		rc = sync_http_canned_add(t->ctx.http, status, hdr, body,
		    (size_t)(stop - body));
		free(hdr);
		if (rc == -1)
			return -1;
		if (e == NULL)
			return 0;
		p = e + strlen(CT_SEP);
	}
}

static CT_UNUSED enum sync_rc
ct_begin(struct ct *t, struct sync_err *err)
{
	sync_err_clear(err);
	t->begun = 1;
	if (t->conn->begin == NULL)
		return SYNC_OK;
	return t->conn->begin(&t->ctx, err);
}

/*
 * ct_open() of conf, then (with first, a 200 answer queued for begin()'s
 * own request) ct_begin(), as a page-reader test starts: 0, or -1 when
 * the source cannot be opened, -2 when begin() fails (each said on stderr).
 */
static CT_UNUSED int
ct_start(struct ct *t, const char *conf, const char *first)
{
	struct sync_err e;

	if (ct_open(t, conf, &e) != SYNC_OK) {
		fprintf(stderr, "  ct_open: %s\n", e.msg);
		return -1;
	}
	if (first != NULL)
		ct_answer(t, 200, NULL, first);
	if (ct_begin(t, &e) != SYNC_OK) {
		fprintf(stderr, "  ct_begin: %s\n", e.msg);
		return -2;
	}
	return 0;
}

/* Whether s[0..n-1] is valid UTF-8 (no overlongs, surrogates, > U+10FFFF). */
static CT_UNUSED int
ct_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0, k, len;
	unsigned long cp;

	while (i < n) {
		unsigned char c = s[i];

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		} else
			return 0;
		if (i + len > n)
			return 0;
		for (k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += len;
	}
	return 1;
}

/* Notes the first broken rule. */
static CT_UNUSED void
ct_bad(struct ct *t, const char *what, const char *batch)
{
	if (t->bad[0] == '\0')
		snprintf(t->bad, sizeof(t->bad), "%s%s%s", what,
		    batch != NULL ? " in " : "", batch != NULL ? batch : "");
}

/* A batch is COPY text the store takes: one line per row, no NUL, UTF-8. */
static CT_UNUSED void
ct_check_batch(struct ct *t, const struct sync_batch *b, const char *name)
{
	size_t i, lines = 0;
	long r;

	if (b->copy.len > 0 && (b->copy.data == NULL ||
	    strlen(b->copy.data) != b->copy.len))
		ct_bad(t, "a NUL byte in the COPY text", name);
	for (i = 0; i < b->copy.len && b->copy.data != NULL; i++)
		lines += b->copy.data[i] == '\n';
	if ((long)lines != b->nrows)
		ct_bad(t, "COPY lines and rows differ", name);
	if (b->copy.len > 0 && b->copy.data[b->copy.len - 1] != '\n')
		ct_bad(t, "the COPY text does not end a line", name);
	if (b->copy.data != NULL && !ct_utf8((const unsigned char *)b->copy.data,
	    b->copy.len))
		ct_bad(t, "invalid UTF-8 in the COPY text", name);
	/* A line is "ord, external_id, ...": the id is there, not empty. */
	for (i = 0; b->copy.data != NULL && i < b->copy.len; i++) {
		const char *l = b->copy.data + i, *id = strchr(l, '\t');

		if (id == NULL || id[1] == '\t' || id[1] == '\n' ||
		    strncmp(id + 1, "\\N\t", 3) == 0)
			ct_bad(t, "a row without an external id", name);
		if ((l = strchr(l, '\n')) == NULL)
			break;
		i = (size_t)(l - b->copy.data);
	}
	if (b->entity != SYNC_ENT_MESSAGE)
		return;
	for (r = 0; r < b->nrows; r++) {
		const struct sync_msgrow *m = &b->rows[r];

		if (m->external_id == NULL || m->external_id[0] == '\0' ||
		    strlen(m->external_id) > SYNC_MAX_ID)
			ct_bad(t, "a message row without a usable id", name);
		if (m->line > m->rest || m->rest > m->end || m->end > b->copy.len ||
		    (r > 0 && m->line != b->rows[r - 1].end))
			ct_bad(t, "a message row's offsets are wrong", name);
	}
}

/*
 * The rules of a fetch's outcome: an error has a message; a page's rows
 * are no more than the items it read, its batches are storable, and the
 * positions it returns can be merged with cursor_max().
 */
static CT_UNUSED void
ct_check_page(struct ct *t, const struct sync_page *pg, enum sync_rc rc,
    const struct sync_err *err)
{
	if (rc != SYNC_OK) {
		if (err->rc == SYNC_OK || err->msg[0] == '\0')
			ct_bad(t, "an error without a message", NULL);
		return;
	}
	ct_check_batch(t, &pg->batch, "batch");
	ct_check_batch(t, &pg->side[0], "contacts");
	ct_check_batch(t, &pg->side[1], "conversations");
	if (pg->batch.nrows > pg->fetched)
		ct_bad(t, "more rows than items fetched", NULL);
	if (pg->fetched < 0)
		ct_bad(t, "a negative count of items fetched", NULL);
	if (pg->cursor != NULL && t->conn->cursor_max != NULL) {
		char *m = t->conn->cursor_max(pg->cursor, pg->cursor);

		if (m == NULL || strcmp(m, pg->cursor) != 0)
			ct_bad(t, "cursor_max(c, c) is not c", NULL);
		free(m);
	}
}

/*
 * Fetches one page of st into pg (which the caller releases) and checks it.
 */
static CT_UNUSED enum sync_rc
ct_fetch(struct ct *t, struct sync_stream *st, struct sync_page *pg,
    struct sync_err *err)
{
	enum sync_rc rc;

	sync_err_clear(err);
	memset(pg, 0, sizeof(*pg));
	sync_batch_init(&pg->side[0], SYNC_ENT_CONTACT);
	sync_batch_init(&pg->side[1], SYNC_ENT_CONVERSATION);
	st->from = st->mode == SYNC_MODE_FULL ? st->state.checkpoint :
	    st->state.cursor;
	sync_http_set_counts(t->ctx.http, st->counts);
	rc = t->conn->fetch(&t->ctx, st, pg, err);
	sync_http_set_counts(t->ctx.http, &t->counts);
	ct_check_page(t, pg, rc, err);
	return rc;
}

/* Takes over the page's positions as the engine does (s takes *p). */
static CT_UNUSED void
ct_take(char **s, char **p)
{
	if (*p == NULL)
		return;
	free(*s);
	*s = *p;
	*p = NULL;
}

/*
 * Walks stream `name` in mode from a stored cursor (NULL: none) for at
 * most maxpages pages, as the engine does (each page starts where the last
 * one ended).  Adds to t->rows and t->fetched.  *cursor (may be NULL)
 * gets the cursor at the end (the caller frees it).
 */
static CT_UNUSED enum sync_rc
ct_walk(struct ct *t, const char *name, enum sync_mode mode, const char *from,
    int maxpages, char **cursor, struct sync_err *err)
{
	struct sync_stream st;
	struct sync_page pg;
	enum sync_rc rc = SYNC_OK;
	int i;

	memset(&st, 0, sizeof(st));
	st.name = name;
	st.mode = mode;
	st.first = 1;
	st.counts = &t->scounts;
	if (from != NULL && (st.state.cursor = strdup(from)) == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
	for (i = 0; i < maxpages; i++) {
		int done;

		rc = ct_fetch(t, &st, &pg, err);
		if (rc == SYNC_OK) {
			t->rows += pg.batch.nrows;
			t->side_rows[0] += pg.side[0].nrows;
			t->side_rows[1] += pg.side[1].nrows;
			t->fetched += pg.fetched;
		}
		done = pg.done;
		ct_take(&st.state.cursor, &pg.cursor);
		ct_take(&st.state.checkpoint, &pg.checkpoint);
		ct_take(&st.state.fingerprint, &pg.fingerprint);
		sync_page_release(&pg);
		if (rc != SYNC_OK || done)
			break;
		st.first = 0;
	}
	if (cursor != NULL) {
		*cursor = st.state.cursor;
		st.state.cursor = NULL;
	}
	free(st.state.cursor);
	free(st.state.checkpoint);
	free(st.state.fingerprint);
	return rc;
}

/*
 * status-poll: asks the connector's poll() about the pending messages ids
 * (last seen in folders[i], NULL: unknown), n of them at most 16, and
 * checks what it returns: a storable batch, each found message pointing
 * at its own row.  *found gets how many were found.
 */
static CT_UNUSED enum sync_rc
ct_poll(struct ct *t, const char *const *ids, const char *const *folders,
    size_t n, long *found, struct sync_err *err)
{
	struct sync_pending v[16];
	struct sync_pending_list l;
	struct sync_batch b;
	enum sync_rc rc;
	size_t i;

	*found = 0;
	sync_err_clear(err);
	if (n > 16 || t->conn->poll == NULL)
		return sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG, "no poll");
	memset(v, 0, sizeof(v));
	for (i = 0; i < n; i++) {
		v[i].external_id = (char *)ids[i];
		v[i].folder = (char *)folders[i];
		v[i].claimed = 1;
		v[i].row = -1;
	}
	l.v = v;
	l.n = n;
	sync_batch_init(&b, SYNC_ENT_MESSAGE);
	rc = t->conn->poll(&t->ctx, &l, &b, err);
	if (rc != SYNC_OK) {
		if (err->msg[0] == '\0')
			ct_bad(t, "an error without a message", NULL);
	} else {
		ct_check_batch(t, &b, "poll");
		for (i = 0; i < n; i++) {
			if (!v[i].found)
				continue;
			(*found)++;
			if (v[i].row < 0 || v[i].row >= b.nrows ||
			    strcmp(b.rows[v[i].row].external_id, ids[i]) != 0)
				ct_bad(t, "a found message is not its row", "poll");
		}
		if (b.nrows > (long)n)
			ct_bad(t, "more rows than pending messages", "poll");
	}
	sync_batch_release(&b);
	return rc;
}

/* Ends the pass (if begun) and frees everything; NULL-safe on a zeroed t. */
static CT_UNUSED void
ct_close(struct ct *t)
{
	if (t->begun && t->conn != NULL && t->conn->end != NULL)
		t->conn->end(&t->ctx);
	sync_http_free(t->ctx.http);
	if (t->own_cfg)
		sync_config_free(t->cfg);
	memset(t, 0, sizeof(*t));
}

/*
 * Runs stream `name` (mode, stored cursor from) of cfg's first source over
 * every hostile variant of page (ct_mutate()), each answered after the
 * answers in pre (NULL-terminated: what begin() and earlier pages ask
 * for).  Each run must end in an error with a message or in pages that
 * pass ct_check_page(); the variants that do not are printed.  Returns
 * how many broke a rule; *runs gets how many variants ran, *errors how
 * many ended in an error.
 */
static CT_UNUSED long
ct_hostile(struct sync_config *cfg, const char *const *pre, const char *name,
    enum sync_mode mode, const char *from, const char *page, long *runs,
    long *errors)
{
	struct sync_err err;
	struct ct t;
	char *body;
	size_t len, k;
	long i, broken = 0;

	*runs = *errors = 0;
	for (i = 0; ct_mutate(page, i, &body, &len) == 0; i++) {
		enum sync_rc rc;

		if (ct_init(&t, cfg, &err) != SYNC_OK) {
			free(body);
			return broken + 1;
		}
		for (k = 0; pre != NULL && pre[k] != NULL; k++)
			ct_answer(&t, 200, NULL, pre[k]);
		sync_http_canned_add(t.ctx.http, 200, NULL, body, len);
		if ((rc = ct_begin(&t, &err)) == SYNC_OK)
			rc = ct_walk(&t, name, mode, from, 4, NULL, &err);
		(*runs)++;
		if (rc != SYNC_OK) {
			(*errors)++;
			if (err.msg[0] == '\0')
				ct_bad(&t, "an error without a message", NULL);
		}
		if (t.bad[0] != '\0') {
			fprintf(stderr, "  %s: variant %ld: %s\n", name, i, t.bad);
			broken++;
		}
		ct_close(&t);
		free(body);
	}
	return broken;
}

#endif /* CANNED_H */
