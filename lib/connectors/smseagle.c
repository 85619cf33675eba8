/*
 * smseagle.c -- the connector for SMSEagle hardware SMS gateways (APIv2):
 * GET {base}/messages/{folder}?id_from=N&limit=L, one stream per folder
 * with its own id cursor, and status-poll's lookups of pending outgoing
 * messages by id range.  See ../shared/reference/smseagle-telegram.md §A.
 *
 * Identity: the device keeps incoming messages in one id sequence and
 * outgoing ones (outbox, sent, error, delivered) in another, which they
 * keep when they move from the outbox to the sent items (Gammu's tables).
 * An outgoing message is therefore stored under its bare id (the one
 * POST /messages/sms answered with), an incoming one under "in:<id>", and
 * a message moving between folders stays one row.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "connector.h"

/* cJSON keeps numbers as doubles. */
#define ID_MAX		9007199254740991LL
#define DEFAULT_PAGE	500
#define DEFAULT_HORIZON	(72 * 3600)
/* A gap in a folder's ids up to this is never questioned (no request). */
#define OUTLIER_GAP	64

static const char *const smseagle_folders[] = {
	"inbox", "outbox", "sent", "error", "delivered", NULL
};

static const char *const smseagle_default[] = {
	"inbox", "outbox", "sent", "error", NULL
};

static const struct sync_keydef smseagle_keys[] = {
	{ "folders", SYNC_KEY_STRLIST, 0, 0, 0, smseagle_folders },
	SYNC_KEY_COLD_START,
	{ "page_size", SYNC_KEY_INT_PER_STREAM, 0, 1, 10000, NULL },
	{ "token_in", SYNC_KEY_STRING, 0, 0, 0, NULL },
	{ "tracking_horizon", SYNC_KEY_INT, 0, 60, 31536000, NULL },
	{ NULL, SYNC_KEY_STRING, 0, 0, 0, NULL }
};

/* The statuses after which nothing changes any more (reference §A.5). */
static const char *const final_statuses[] = {
	"delivery_ok", "delivery_failed", "sending_error", "error", NULL
};

struct smseagle {
	char		*api;		/* the API's base URL */
	long long	 walk_max[5];	/* full-sync --restart: highest id seen */
	char		*walk_fp[5];	/* and its fingerprint */
};

/* A row of a page, by id. */
struct row {
	long long	 id;
	const cJSON	*j;
	int		 outlier;	/* far beyond what the device holds */
};

static int
folder_index(const char *f)
{
	int i;

	for (i = 0; smseagle_folders[i] != NULL; i++)
		if (strcmp(smseagle_folders[i], f) == 0)
			return i;
	return -1;
}

/* A message id: a positive whole number, or a string holding one; else -1. */
static long long
json_id(const cJSON *o)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "id");
	double d;

	if (cJSON_IsString(v))
		return sync_cursor_int(v->valuestring) > 0 ? sync_cursor_int(v->valuestring) : -1;
	if (!cJSON_IsNumber(v))
		return -1;
	d = v->valuedouble;
	if (!(d >= 1 && d <= (double)ID_MAX) || floor(d) != d)
		return -1;
	return (long long)d;
}

/* A date field as UTC seconds; -1 when absent or unreadable. */
static int64_t
json_time(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	int64_t t;

	if (!cJSON_IsString(v) || sync_time_parse(v->valuestring, &t, NULL) == -1)
		return -1;
	return t;
}

/*
 * The validity of an outgoing message in seconds (reference §A.6: 5m ...
 * 4w), 0 for "max" (no limit), -1 when absent or not understood.
 */
static long long
validity_secs(const cJSON *o)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "validity");
	const char *s;
	char *end;
	long long n;

	if (!cJSON_IsString(v))
		return -1;
	s = v->valuestring;
	if (strcasecmp(s, "max") == 0)
		return 0;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno != 0 || end == s || n <= 0 || n > 1000000 || end[0] == '\0' ||
	    end[1] != '\0')
		return -1;
	switch (end[0]) {
	case 'm':	return n * 60;
	case 'h':	return n * 3600;
	case 'd':	return n * 86400;
	case 'w':	return n * 7 * 86400;
	default:	return -1;
	}
}

static int
is_final(const char *status)
{
	size_t i;

	for (i = 0; status != NULL && final_statuses[i] != NULL; i++)
		if (strcmp(final_statuses[i], status) == 0)
			return 1;
	return 0;
}

/*
 * When a message's id was given out (ids are handed out in this order):
 * an incoming one's receive date, an outgoing one's insert date, else the
 * other dates it has.
 */
static int64_t
assigned_at(const cJSON *row, int inbox)
{
	int64_t t;

	if (inbox)
		return (t = json_time(row, "receive_date")) >= 0 ? t :
		    json_time(row, "update_date");
	if ((t = json_time(row, "insert_date")) >= 0 ||
	    (t = json_time(row, "sending_date")) >= 0)
		return t;
	return json_time(row, "update_date");
}

/*
 * A folder's fingerprint: its NANCHOR highest messages, each as "id|when
 * its id was given out|hash of its number and text", ';'-separated, the
 * highest first.  A message never changes its number or text, so an id
 * that comes back with another fingerprint was given out again: the
 * device's ids restarted.
 */
#define NANCHOR	3

struct anchor {
	long long	 id;
	long long	 at;		/* UTC seconds, -1 unknown */
	char		 h[17];
};

static void
anchor_of(long long id, const cJSON *row, int inbox, struct anchor *a)
{
	char num[40];
	const char *s;
	long bad = 0;
	uint64_t h = SYNC_HASH_INIT;

	a->id = id;
	a->at = (long long)assigned_at(row, inbox);
	if ((s = sync_json_str(row, "number", num, sizeof(num), &bad)) != NULL)
		h = sync_hash(h, s, strlen(s));
	h = sync_hash(h, "\n", 1);
	if ((s = sync_json_str(row, "text", num, sizeof(num), &bad)) != NULL)
		h = sync_hash(h, s, strlen(s));
	sync_hash_hex(h, a->h);
}

/* Parses a fingerprint into v (at most NANCHOR); returns how many. */
static size_t
anchors_parse(const char *fp, struct anchor *v)
{
	size_t n = 0;
	int used;

	while (fp != NULL && n < NANCHOR && sscanf(fp, "%lld|%lld|%16[0-9a-f]%n",
	    &v[n].id, &v[n].at, v[n].h, &used) == 3) {
		n++;
		fp += used;
		if (*fp != ';')
			break;
		fp++;
	}
	return n;
}

static int
anchor_cmp(const void *a, const void *b)
{
	const struct anchor *x = a, *y = b;

	return x->id > y->id ? -1 : x->id < y->id;	/* highest first */
}

/*
 * The fingerprint after a page: the highest of the old anchors and the
 * page's rows (sorted by id, at least one).  The caller frees it.
 */
static char *
anchors_after(const char *old, const struct row *rows, size_t nrows, int inbox)
{
	struct anchor c[2 * NANCHOR], v[NANCHOR];
	struct sync_buf b = SYNC_BUF_INIT(0);
	size_t nc = 0, nv, i, k;

	for (i = 0; i < nrows && nc < NANCHOR; i++)
		anchor_of(rows[nrows - 1 - i].id, rows[nrows - 1 - i].j, inbox,
		    &c[nc++]);
	nv = anchors_parse(old, v);
	for (i = 0; i < nv; i++) {
		for (k = 0; k < nc && c[k].id != v[i].id; k++)
			;
		if (k == nc)
			c[nc++] = v[i];		/* the page's version wins */
	}
	qsort(c, nc, sizeof(*c), anchor_cmp);
	if (sync_buf_adds(&b, "") == -1)
		return NULL;
	for (k = 0; k < nc && k < NANCHOR; k++)
		if (sync_buf_addf(&b, "%s%lld|%lld|%s", k ? ";" : "", c[k].id, c[k].at,
		    c[k].h) == -1) {
			sync_buf_release(&b);
			return NULL;
		}
	return b.data;
}

static enum sync_rc
smseagle_check(struct sync_source_cfg *src, struct sync_err *err)
{
	const char *t = sync_cfg_str(src, "token_in");

	if (t != NULL && strcmp(t, "header") != 0 && strcmp(t, "query") != 0)
		return sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG,
		    "source '%s': 'token_in' must be \"header\" or \"query\", not "
		    "\"%s\"", src->name, t);
	return SYNC_OK;
}

static enum sync_rc
smseagle_begin(struct sync_ctx *ctx, struct sync_err *err)
{
	struct smseagle *p;
	struct sync_buf b = SYNC_BUF_INIT(0);
	const char *url = ctx->src->url;
	size_t n = strlen(url);

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_NETWORK, "out of memory");
	ctx->priv = p;
	/*
	 * The configured URL decides the base path: ".../api/v2" or
	 * ".../index.php/api/v2" as given, a bare device URL gets "/api/v2".
	 */
	while (n > 0 && url[n - 1] == '/')
		n--;
	if (sync_buf_add(&b, url, n) == -1 || (strstr(b.data, "/api/v2") == NULL &&
	    sync_buf_adds(&b, "/api/v2") == -1)) {
		sync_buf_release(&b);
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_NETWORK, "out of memory");
	}
	p->api = b.data;
	return SYNC_OK;
}

static void
smseagle_end(struct sync_ctx *ctx)
{
	struct smseagle *p = ctx->priv;
	int i;

	if (p == NULL)
		return;
	for (i = 0; i < 5; i++)
		free(p->walk_fp[i]);
	free(p->api);
	free(p);
	ctx->priv = NULL;
}

/* "Resource(s) not found", in any case. */
static int
says_not_found(const char *s)
{
	for (; *s != '\0'; s++)
		if (strncasecmp(s, "not found", 9) == 0)
			return 1;
	return 0;
}

/* What one request asks a folder for; 0: not asked. */
struct query {
	long long	 id_from, id_to, limit;
	time_t		 date_from;
};

/*
 * GETs messages/{folder} for qr.  *rows gets the answer's array (the
 * caller frees it with cJSON_Delete()); a 404 "Resource(s) not found", the
 * device's way of saying that nothing matched, is an empty array.
 */
static enum sync_rc
get_folder(struct sync_ctx *ctx, const char *folder, const struct query *qr,
    cJSON **rows, long *sanitized, struct sync_err *err)
{
	static const char *const names[] = { "id_from", "id_to", "limit" };
	struct smseagle *p = ctx->priv;
	struct sync_http_resp r = { 0, SYNC_BUF_INIT(0) };
	char path[64], num[3][24], date[32], *url = NULL;
	const char *q[11];
	const long long v[3] = { qr->id_from, qr->id_to, qr->limit };
	const cJSON *msg;
	enum sync_rc rc;
	size_t n = 0;
	int i;

	for (i = 0; i < 3; i++)
		if (v[i] > 0) {
			snprintf(num[i], sizeof(num[i]), "%lld", v[i]);
			q[n++] = names[i];
			q[n++] = num[i];
		}
	if (qr->date_from > 0) {
		sync_time_format(qr->date_from, date, sizeof(date));
		q[n++] = "date_from";
		q[n++] = date;
	}
	/* MMS parts come only when asked for (reference §A.3). */
	q[n++] = "attachments";
	q[n++] = "1";
	q[n] = NULL;
	*rows = NULL;
	snprintf(path, sizeof(path), "/messages/%s", folder);
	if ((rc = sync_url_build(p->api, path, q, &url, err)) != SYNC_OK ||
	    (rc = sync_http_get(ctx->http, url, &r, err)) != SYNC_OK)
		goto out;
	if (r.status == 404) {
		cJSON *j = NULL;
		struct sync_err e2;

		sync_err_clear(&e2);
		if (sync_http_parse_json(&r, url, &j, NULL, &e2) == SYNC_OK &&
		    cJSON_IsObject(j) &&
		    cJSON_IsString(msg = cJSON_GetObjectItemCaseSensitive(j, "message")) &&
		    says_not_found(msg->valuestring)) {
			cJSON_Delete(j);
			if ((*rows = cJSON_CreateArray()) == NULL)
				rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA,
				    "out of memory");
			goto out;
		}
		cJSON_Delete(j);
		rc = sync_http_status_error(&r, url, err);
		goto out;
	}
	if (r.status < 200 || r.status > 299) {
		rc = sync_http_status_error(&r, url, err);
		goto out;
	}
	if ((rc = sync_http_parse_json(&r, url, rows, sanitized, err)) != SYNC_OK)
		goto out;
	if (!cJSON_IsArray(*rows)) {
		cJSON_Delete(*rows);
		*rows = NULL;
		rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "'%s': the answer is not an array of messages", url);
	}
out:
	sync_buf_release(&r.body);
	free(url);
	return rc;
}

/*
 * How many messages the device holds in all (GET /messages/count: inbox,
 * outbox, sent and error), in *held; -1 when it does not say (the request
 * failed, or no count is a number), which is logged, not an error: the
 * pass goes on, taking ids as they come.
 */
static enum sync_rc
device_holds(struct sync_ctx *ctx, long long *held, struct sync_err *err)
{
	static const char *const keys[] = { "inbox", "outbox", "sent", "error",
	    NULL };
	struct smseagle *p = ctx->priv;
	char *url = NULL;
	cJSON *j = NULL;
	const cJSON *v;
	struct sync_err e;
	enum sync_rc rc;
	long long n;
	size_t i;

	*held = -1;
	sync_err_clear(&e);
	if ((rc = sync_url_build(p->api, "/messages/count", NULL, &url, err)) !=
	    SYNC_OK)
		goto out;
	if (sync_http_get_json(ctx->http, url, &j, NULL, &e) != SYNC_OK) {
		if (e.rc == SYNC_ENOMEM || e.rc == SYNC_EINTR) {
			rc = sync_err_set(err, e.rc, e.kind, "%s", e.msg);
			goto out;
		}
		sync_log(LOG_NOTICE, "source '%s': cannot tell how many messages the "
		    "device holds (%s): message ids taken as they come",
		    ctx->src->name, e.msg);
		goto out;
	}
	for (i = 0; keys[i] != NULL; i++) {
		v = cJSON_GetObjectItemCaseSensitive(j, keys[i]);
		n = cJSON_IsString(v) ? sync_cursor_int(v->valuestring) :
		    cJSON_IsNumber(v) && v->valuedouble >= 0 &&
		    v->valuedouble <= (double)ID_MAX ? (long long)v->valuedouble : -1;
		if (n >= 0)
			*held = (*held < 0 ? 0 : *held) + n;
	}
	if (*held < 0)
		sync_log(LOG_NOTICE, "source '%s': '%s' holds no message count: "
		    "message ids taken as they come", ctx->src->name, url);
out:
	cJSON_Delete(j);
	free(url);
	return rc;
}

/*
 * For the progress display only: how many messages folder holds from
 * date_from (0: all), by GET /messages/count/{folder} (reference §A.8),
 * told to the engine as what the walk has left.  A device that cannot say
 * leaves the total unknown; only an interruption or ENOMEM is an error.
 */
static enum sync_rc
progress_total(struct sync_ctx *ctx, struct sync_stream *st, const char *folder,
    time_t date_from, struct sync_err *err)
{
	struct smseagle *p = ctx->priv;
	char path[64], date[32], *url = NULL;
	const char *q[3] = { NULL, NULL, NULL };
	cJSON *j = NULL;
	const cJSON *v;
	struct sync_err e;
	enum sync_rc rc;
	long long n;

	sync_err_clear(&e);
	if (date_from > 0) {
		sync_time_format(date_from, date, sizeof(date));
		q[0] = "date_from";
		q[1] = date;
	}
	snprintf(path, sizeof(path), "/messages/count/%s", folder);
	if ((rc = sync_url_build(p->api, path, q, &url, err)) != SYNC_OK)
		return rc;
	if (sync_http_get_json(ctx->http, url, &j, NULL, &e) != SYNC_OK) {
		if (e.rc == SYNC_ENOMEM || e.rc == SYNC_EINTR)
			rc = sync_err_set(err, e.rc, e.kind, "%s", e.msg);
		goto out;
	}
	v = cJSON_GetObjectItemCaseSensitive(j, folder);
	n = cJSON_IsString(v) ? sync_cursor_int(v->valuestring) :
	    cJSON_IsNumber(v) && v->valuedouble >= 0 &&
	    v->valuedouble <= (double)ID_MAX ? (long long)v->valuedouble : -1;
	if (n >= 0)
		sync_progress_left(st, n);
out:
	cJSON_Delete(j);
	free(url);
	return rc;
}

static int
row_cmp(const void *a, const void *b)
{
	const struct row *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

/*
 * The rows of an answer in id order (the device promises none); rows
 * without a usable id are rejected (sync_page_reject()).  The caller frees
 * *out.
 */
static int
sorted_rows(const cJSON *rows, struct row **out, size_t *n, struct sync_page *page)
{
	const cJSON *r;
	size_t cap = (size_t)cJSON_GetArraySize(rows) + 1, k = 0;

	*n = 0;
	if ((*out = calloc(cap, sizeof(**out))) == NULL)
		return -1;
	cJSON_ArrayForEach(r, rows) {
		long long id = cJSON_IsObject(r) ? json_id(r) : -1;

		if (id < 0) {
			const char *why = sync_id_problem(r, "id");

			if (sync_page_reject(page, NULL, "id", why != NULL ? why :
			    "not a positive whole number", r) == -1)
				return -1;
			continue;
		}
		(*out)[k].id = id;
		(*out)[k++].j = r;
	}
	qsort(*out, k, sizeof(**out), row_cmp);
	*n = k;
	return 0;
}

/*
 * The folder a message is stored as being in.  The error and delivered
 * folders may be views of the sent items by status, so a sent message can
 * be read from two folders: it is filed by its status, whichever folder it
 * was read from, so that reading both does not rewrite it back and forth.
 */
static const char *
stored_folder(const char *folder, const cJSON *row)
{
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(row, "status");

	if (strcmp(folder, "inbox") == 0 || strcmp(folder, "outbox") == 0)
		return folder;
	if (cJSON_IsString(st) && (strcmp(st->valuestring, "sending_error") == 0 ||
	    strcmp(st->valuestring, "error") == 0))
		return "error";
	return "sent";
}

/* A base64 digit's value (also the URL-safe alphabet's), -1 if none. */
static int
b64_value(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

/*
 * Decodes base64 s (white space ignored, padding optional) into *out
 * (malloc'd; the caller frees it) and *len.  0; -1 when s is not base64
 * (why says what is wrong); -2 on ENOMEM.
 */
static int
b64_decode(const char *s, unsigned char **out, size_t *len, const char **why)
{
	size_t n = strlen(s), k = 0, nd = 0, pad = 0;
	unsigned long acc = 0;
	int bits = 0, v;
	unsigned char *o;

	*out = NULL;
	*len = 0;
	if ((o = malloc(n / 4 * 3 + 3)) == NULL)
		return -2;
	for (; *s != '\0'; s++) {
		if (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')
			continue;
		if (*s == '=') {
			pad++;
			continue;
		}
		if (pad > 0 || (v = b64_value((unsigned char)*s)) < 0) {
			*why = pad > 0 ? "data after its padding" :
			    "a character outside the base64 alphabet";
			free(o);
			return -1;
		}
		nd++;
		acc = (acc << 6 | (unsigned long)v) & 0xffffff;
		if ((bits += 6) >= 8) {
			bits -= 8;
			o[k++] = (unsigned char)(acc >> bits);
		}
	}
	if (nd % 4 == 1 || pad > 2 || (pad > 0 && (nd + pad) % 4 != 0)) {
		*why = "its length is not that of base64";
		free(o);
		return -1;
	}
	*out = o;
	*len = k;
	return 0;
}

/* The kind of an MMS part by its content type. */
static const char *
part_kind(const char *type)
{
	static const char *const kinds[][2] = { { "image/", "image" },
	    { "audio/", "audio" }, { "video/", "video" }, { "text/", "text" } };
	size_t i;

	for (i = 0; type != NULL && i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strncasecmp(type, kinds[i][0], strlen(kinds[i][0])) == 0)
			return kinds[i][1];
	return "file";
}

/* The parts of one MMS (SPEC §9): decoded bytes, held for a batch row. */
struct mms {
	struct sync_attachment *a;
	unsigned char	**data;
	char		(*idx)[24];
	char		(*why)[160];
	size_t		 n;
	cJSON		*raw;		/* the row keeping references, or NULL */
};

static void
mms_release(struct mms *mm)
{
	size_t i;

	for (i = 0; mm->data != NULL && i < mm->n; i++)
		free(mm->data[i]);
	free(mm->a);
	free(mm->data);
	free(mm->idx);
	free(mm->why);
	cJSON_Delete(mm->raw);
	memset(mm, 0, sizeof(*mm));
}

/*
 * The parts of the MMS row (its `attachments`: {name, content_type,
 * content in base64}) into mm: attachment i has external id "i", the
 * decoded bytes inline, or is unavailable when its content is not base64.
 * Under media = "download" the bytes go to the store, and the message's
 * raw (mm->raw, a copy of row) keeps a reference instead of each decoded
 * content: {"msgsync_attachment": "i", "bytes": N}.  -1 on ENOMEM.
 */
static int
mms_parts(struct sync_ctx *ctx, const cJSON *row, const cJSON *att,
    struct mms *mm, long *bad)
{
	size_t cap = (size_t)cJSON_GetArraySize(att), i = 0;
	const cJSON *p;
	cJSON *copy = NULL, *parts = NULL;
	int refs = 0;

	memset(mm, 0, sizeof(*mm));
	if (cap == 0)
		return 0;
	if ((mm->a = calloc(cap, sizeof(*mm->a))) == NULL ||
	    (mm->data = calloc(cap, sizeof(*mm->data))) == NULL ||
	    (mm->idx = calloc(cap, sizeof(*mm->idx))) == NULL ||
	    (mm->why = calloc(cap, sizeof(*mm->why))) == NULL)
		goto nomem;
	cJSON_ArrayForEach(p, att) {
		struct sync_attachment *a = &mm->a[i];
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(p, "content");
		const char *why = NULL;
		int r;

		snprintf(mm->idx[i], sizeof(mm->idx[i]), "%zu", i);
		a->external_id = mm->idx[i];
		a->size = -1;
		if (cJSON_IsObject(p)) {
			a->name = sync_json_str(p, "name", NULL, 0, bad);
			a->mime_type = sync_json_str(p, "content_type", NULL, 0, bad);
		}
		a->kind = part_kind(a->mime_type);
		if (!cJSON_IsString(c))
			why = "the device sent no content for it";
		else if ((r = b64_decode(c->valuestring, &mm->data[i],
		    &a->len, &why)) == -2)
			goto nomem;
		else if (r == 0) {
			a->data = mm->data[i];
			a->size = (long long)a->len;
		}
		if (why != NULL) {
			snprintf(mm->why[i], sizeof(mm->why[i]),
			    "its content is not valid base64 (%s)", why);
			a->unavailable = mm->why[i];
		} else
			refs++;
		i++;
	}
	mm->n = i;
	if (refs == 0 || ctx->src->media != SYNC_MEDIA_DOWNLOAD)
		return 0;
	/* The row as stored keeps references, not the bytes (a copy). */
	if ((copy = cJSON_Duplicate(row, 1)) == NULL)
		goto nomem;
	parts = cJSON_GetObjectItemCaseSensitive(copy, "attachments");
	for (i = 0; i < mm->n; i++) {
		cJSON *part = cJSON_GetArrayItem(parts, (int)i), *ref;
		char n[32];

		if (mm->a[i].data == NULL)
			continue;	/* the original stays: nothing is lost */
		snprintf(n, sizeof(n), "%zu", mm->a[i].len);
		if ((ref = cJSON_CreateObject()) == NULL ||
		    cJSON_AddStringToObject(ref, "msgsync_attachment",
		    mm->idx[i]) == NULL ||
		    cJSON_AddNumberToObject(ref, "bytes", (double)mm->a[i].len) ==
		    NULL || !cJSON_ReplaceItemInObjectCaseSensitive(part, "content",
		    ref)) {
			cJSON_Delete(ref);
			goto nomem;
		}
	}
	mm->raw = copy;
	return 0;
nomem:
	cJSON_Delete(copy);
	mms_release(mm);
	return -1;
}

/* Appends one message row of folder to b. */
static int
add_message(struct sync_ctx *ctx, struct sync_batch *b, const char *folder,
    long long id, const cJSON *row)
{
	struct sync_message m;
	int inbox = strcmp(folder, "inbox") == 0, r;
	char ext[32], num[40], vexp[32], text[40];
	const cJSON *att;
	struct mms mm;
	long bad = 0;
	int64_t base, t;
	long long validity;

	memset(&m, 0, sizeof(m));
	memset(&mm, 0, sizeof(mm));
	snprintf(ext, sizeof(ext), inbox ? "in:%lld" : "%lld", id);
	m.external_id = ext;
	m.conversation_id = sync_json_str(row, "number", num, sizeof(num), &bad);
	m.sender_id = inbox ? m.conversation_id : NULL;
	m.direction = inbox ? "in" : "out";
	att = cJSON_GetObjectItemCaseSensitive(row, "attachments");
	if (att != NULL && !cJSON_IsNull(att) && !cJSON_IsArray(att)) {
		bad++;
		att = NULL;
	}
	m.attachments = cJSON_GetArraySize(att) > 0 ? att : NULL;
	m.kind = m.attachments != NULL ? "mms" : "sms";
	m.body = sync_json_str(row, "text", text, sizeof(text), &bad);
	m.folder = stored_folder(folder, row);
	m.raw = row;
	if (m.attachments != NULL) {
		if (mms_parts(ctx, row, m.attachments, &mm, &bad) == -1)
			return -1;
		m.att = mm.a;
		m.natt = mm.n;
		if (mm.raw != NULL) {
			m.raw = mm.raw;
			m.attachments = cJSON_GetObjectItemCaseSensitive(mm.raw,
			    "attachments");
		}
	}
	if (inbox) {
		m.sent_at = sync_json_str(row, "receive_date", NULL, 0, &bad);
		if (m.sent_at == NULL)
			m.sent_at = sync_json_str(row, "update_date", NULL, 0, &bad);
		goto add;
	}
	m.sent_at = sync_json_str(row, "sending_date", NULL, 0, &bad);
	if (m.sent_at == NULL)
		m.sent_at = sync_json_str(row, "insert_date", NULL, 0, &bad);
	m.status = sync_json_str(row, "status", NULL, 0, &bad);
	m.status_at = sync_json_str(row, "delivery_date", NULL, 0, &bad);
	if (m.status_at == NULL)
		m.status_at = sync_json_str(row, "update_date", NULL, 0, &bad);

	/* Its validity runs from when it was sent (or queued). */
	if ((base = json_time(row, "sending_date")) < 0 &&
	    (base = json_time(row, "insert_date")) < 0)
		base = json_time(row, "update_date");
	validity = validity_secs(row);
	if (base >= 0 && validity > 0) {
		sync_time_format((time_t)(base + validity), vexp, sizeof(vexp));
		m.validity_expires_at = vexp;
	}
	if (is_final(m.status))
		m.track = SYNC_TRACK_FINAL;
	else {
		/*
		 * Followed until its validity ends; without one ("max", or none
		 * we understand) for the tracking horizon, since delivery
		 * reports still arrive.
		 */
		m.track = SYNC_TRACK_PENDING;
		t = base >= 0 ? base : (int64_t)time(NULL);
		m.track_until = t + (validity > 0 ? validity :
		    sync_cfg_int(ctx->src, "tracking_horizon", DEFAULT_HORIZON));
	}
add:
	b->sanitized += bad;
	r = sync_batch_add_message(b, &m);
	mms_release(&mm);
	return r;
}

static enum sync_rc
restarted_err(struct sync_ctx *ctx, const char *folder, long long cursor,
    struct sync_err *err)
{
	return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
	    "source '%s': folder '%s': the device's message ids restarted below "
	    "our cursor %lld (its database was restored or replaced); refusing to "
	    "skip its new messages.  If it is a new device or database, give it a "
	    "new source name; 'full-sync --restart --source %s' takes it up under "
	    "this name", ctx->src->name, folder, cursor, ctx->src->name);
}

/*
 * SPEC §7.7: have the device's ids restarted below our cursor (its
 * database restored or replaced)?  Asked on the first page of every
 * incremental pass: when nothing lies above the cursor a restart would
 * make us skip its new messages without a word, and when something does
 * its new ids may already have passed the cursor.  The folder's highest messages as stored (its
 * fingerprint) must still be there unchanged: one that comes back
 * different was given its id again.  If none of them is left (deleted, or
 * restored away), no message at or below the cursor may be as young as
 * the highest of them.
 */
static enum sync_rc
check_restart(struct sync_ctx *ctx, struct sync_stream *st, struct sync_err *err)
{
	const char *folder = st->name;
	int inbox = strcmp(folder, "inbox") == 0;
	struct anchor v[NANCHOR], now;
	struct query qr;
	cJSON *rows = NULL;
	const cJSON *r;
	size_t n, k, same = 0;
	enum sync_rc rc;

	if ((n = anchors_parse(st->state.fingerprint, v)) == 0)
		return SYNC_OK;
	memset(&qr, 0, sizeof(qr));
	qr.id_from = v[n - 1].id;
	qr.id_to = v[0].id;
	qr.limit = sync_cfg_stream_int(ctx->src, "page_size", folder, DEFAULT_PAGE);
	if ((rc = get_folder(ctx, folder, &qr, &rows, NULL, err)) != SYNC_OK)
		return rc;
	cJSON_ArrayForEach(r, rows) {
		long long id = cJSON_IsObject(r) ? json_id(r) : -1;

		for (k = 0; k < n && v[k].id != id; k++)
			;
		if (k == n)
			continue;
		anchor_of(id, r, inbox, &now);
		if (now.at != v[k].at || strcmp(now.h, v[k].h) != 0) {
			cJSON_Delete(rows);
			goto restarted;
		}
		same++;
	}
	cJSON_Delete(rows);
	rows = NULL;
	if (same > 0 || v[0].at < 0)
		return SYNC_OK;

	qr.id_from = 1;
	qr.date_from = (time_t)v[0].at;
	if ((rc = get_folder(ctx, folder, &qr, &rows, NULL, err)) != SYNC_OK)
		return rc;
	cJSON_ArrayForEach(r, rows) {
		long long id = cJSON_IsObject(r) ? json_id(r) : -1;

		if (id > 0 && id <= v[0].id && assigned_at(r, inbox) >= v[0].at) {
			cJSON_Delete(rows);
			goto restarted;
		}
	}
	cJSON_Delete(rows);
	sync_log(LOG_INFO, "source '%s': folder '%s': the newest messages we stored "
	    "(ids %lld to %lld) are no longer on the device (deleted?)",
	    ctx->src->name, folder, v[n - 1].id, v[0].id);
	return SYNC_OK;
restarted:
	return restarted_err(ctx, folder, v[0].id, err);
}

/*
 * The first page of an incremental pass starts at the folder's lowest
 * anchor, so that the anchors come back with it at no request of their
 * own: one that comes back different was given its id again, also when
 * the device's new ids have already passed the cursor.  Removes the rows
 * at or below the cursor from rows; *checked: an anchor was found (else
 * check_restart() must look further).
 */
static enum sync_rc
check_anchors(struct sync_ctx *ctx, const char *folder, int inbox,
    const struct anchor *v, size_t nv, long long cursor, struct row *rows,
    size_t *n, struct sync_page *page, int *checked, struct sync_err *err)
{
	struct anchor now;
	size_t i, k, old;

	*checked = 0;
	for (old = 0; old < *n && rows[old].id <= cursor; old++) {
		for (k = 0; k < nv && v[k].id != rows[old].id; k++)
			;
		if (k == nv)
			continue;
		anchor_of(rows[old].id, rows[old].j, inbox, &now);
		if (now.at != v[k].at || strcmp(now.h, v[k].h) != 0)
			return restarted_err(ctx, folder, v[0].id, err);
		*checked = 1;
	}
	for (i = old; i < *n; i++)
		rows[i - old] = rows[i];
	*n -= old;
	page->fetched -= (long)old;
	return SYNC_OK;
}

static enum sync_rc
smseagle_fetch(struct sync_ctx *ctx, struct sync_stream *st, struct sync_page *page,
    struct sync_err *err)
{
	struct smseagle *p = ctx->priv;
	const char *folder = st->name;
	int fi = folder_index(folder), inbox = fi == 0;
	struct query qr;
	struct row *rows = NULL;
	cJSON *arr = NULL;
	long long cursor, from, limit, last, days, prev, held = -2;
	long sanitized = 0;
	size_t n = 0, i, k, nout = 0, nav;
	struct anchor av[NANCHOR];
	int checked = 0;
	enum sync_rc rc;

	if (fi < 0)
		return sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG,
		    "no folder '%s'", folder);
	sync_batch_init(&page->batch, SYNC_ENT_MESSAGE);
	cursor = sync_cursor_int(st->state.cursor);
	from = sync_cursor_int(st->from);
	if (cursor < 0 || from < 0)
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "folder '%s': the stored position '%s' is not a message id",
		    folder, cursor < 0 ? st->state.cursor : st->from);
	if (st->first && st->mode == SYNC_MODE_FULL && st->restart) {
		p->walk_max[fi] = 0;
		free(p->walk_fp[fi]);
		p->walk_fp[fi] = NULL;
	}

	limit = sync_cfg_stream_int(ctx->src, "page_size", folder, DEFAULT_PAGE);
	memset(&qr, 0, sizeof(qr));
	qr.id_from = from + 1;
	qr.limit = limit;
	if (st->first && st->mode == SYNC_MODE_INCR && fi != 1 &&
	    (nav = anchors_parse(st->state.fingerprint, av)) > 0 &&
	    av[nav - 1].id >= 1 && av[0].id <= from) {
		qr.id_from = av[nav - 1].id;
		qr.limit = limit + (long long)nav;
	} else
		nav = 0;
	if (st->mode == SYNC_MODE_FULL && st->since > 0)
		qr.date_from = st->since;
	else if (st->mode == SYNC_MODE_INCR && st->state.cursor == NULL &&
	    (days = sync_cfg_int(ctx->src, "cold_start_days", 7)) > 0)
		/* A folder's first incremental pass reads the recent days only. */
		qr.date_from = time(NULL) - (time_t)(days * 86400);
	/* A walk from the start: the folder's count is how much there is. */
	if (st->first && from == 0 && sync_progress_wanted(st) &&
	    (rc = progress_total(ctx, st, folder, qr.date_from, err)) != SYNC_OK)
		goto out;
	if ((rc = get_folder(ctx, folder, &qr, &arr, &sanitized, err)) != SYNC_OK)
		goto out;
	page->batch.sanitized += sanitized;
	page->fetched = cJSON_GetArraySize(arr);
	if (sorted_rows(arr, &rows, &n, page) == -1)
		goto nomem;
	if (nav > 0 && (rc = check_anchors(ctx, folder, inbox, av, nav, from, rows,
	    &n, page, &checked, err)) != SYNC_OK)
		goto out;

	/*
	 * SPEC §7.7: an outlier is stored but moves nothing.  A row is one
	 * when more ids lie between it and the id below it (the page's
	 * previous row, else the position the walk goes on from; the first
	 * row of a walk from the start has none) than OUTLIER_GAP and than
	 * the messages the device holds in all: the ids in between would all
	 * have been given out and deleted.  The rows above it are measured
	 * from it, so one that follows it in line takes the cursor past it.
	 */
	last = from;
	prev = from > 0 ? from : -1;
	for (i = 0; i < n; i++) {
		if (add_message(ctx, &page->batch, folder, rows[i].id, rows[i].j) == -1)
			goto nomem;
		if (prev >= 0 && rows[i].id - prev > OUTLIER_GAP) {
			if (held == -2 && (rc = device_holds(ctx, &held, err)) !=
			    SYNC_OK)
				goto out;
			if (held >= 0 && rows[i].id - prev > held) {
				sync_log(LOG_WARNING, "source '%s': folder '%s': "
				    "message id %lld is %lld above the id below it "
				    "(%lld), more than the %lld messages the device "
				    "holds: stored, but the cursor stays below it",
				    ctx->src->name, folder, rows[i].id,
				    rows[i].id - prev, prev, held);
				rows[i].outlier = 1;
				nout++;
			}
		}
		prev = rows[i].id;
		if (!rows[i].outlier && rows[i].id > last)
			last = rows[i].id;
	}
	st->counts->outliers += (long long)nout;
	/* The rest of the data: what places the cursor and the fingerprint. */
	for (i = 0, k = 0; i < n; i++)
		if (!rows[i].outlier)
			rows[k++] = rows[i];
	n = k;
	/* A device that ignores id_from would hand out the same page forever. */
	if (page->fetched >= limit && last <= from && nout == 0) {
		rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "folder '%s': pagination does not advance: a full page of %ld "
		    "messages, none above id %lld (does the device ignore id_from?)",
		    folder, page->fetched, from);
		goto out;
	}
	page->done = cJSON_GetArraySize(arr) < qr.limit || last <= from;
	/*
	 * Also when the first page has rows above the cursor: a device
	 * re-created whose new ids already passed it (one request more, on
	 * a pass that has something new; issue 12).
	 */
	if (st->first && st->mode == SYNC_MODE_INCR && fi != 1 && !checked &&
	    (rc = check_restart(ctx, st, err)) != SYNC_OK)
		goto out;
	if (last > from) {
		const char *base = st->mode == SYNC_MODE_FULL && st->restart ?
		    p->walk_fp[fi] : st->state.fingerprint;

		if ((page->cursor = sync_cursor_from_int(last)) == NULL ||
		    (page->fingerprint = anchors_after(base, rows, n, inbox)) == NULL)
			goto nomem;
		if (p->walk_max[fi] < last) {
			p->walk_max[fi] = last;
			free(p->walk_fp[fi]);
			if ((p->walk_fp[fi] = strdup(page->fingerprint)) == NULL)
				goto nomem;
		}
	}
	if (st->mode == SYNC_MODE_FULL) {
		if ((page->checkpoint = sync_cursor_from_int(last)) == NULL)
			goto nomem;
		if (st->restart && page->done) {
			/* A walk from the start replaces the cursor it ends at. */
			free(page->cursor);
			free(page->fingerprint);
			page->fingerprint = sync_strdup(p->walk_fp[fi]);
			if ((page->cursor = sync_cursor_from_int(p->walk_max[fi])) == NULL ||
			    (p->walk_fp[fi] != NULL && page->fingerprint == NULL))
				goto nomem;
			page->force = 1;
		}
	}
	goto out;
nomem:
	rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
out:
	free(rows);
	cJSON_Delete(arr);
	return rc;
}

/* A pending message, by its id on the device. */
struct want {
	long long	 id;
	struct sync_pending *p;
};

static int
want_cmp(const void *a, const void *b)
{
	const struct want *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

static int
want_find(const void *key, const void *elem)
{
	long long k = *(const long long *)key, id = ((const struct want *)elem)->id;

	return k < id ? -1 : k > id;
}

/*
 * Looks the pending messages w[0..n-1] (sorted by id) that are to be
 * asked of `folder` up there, in as few requests as the API allows: one
 * id_from/id_to range for as many ids as one page spans.
 */
static enum sync_rc
poll_folder(struct sync_ctx *ctx, const char *folder, struct want *w, size_t n,
    struct sync_batch *b, struct sync_err *err)
{
	long long span = sync_cfg_stream_int(ctx->src, "page_size", folder,
	    DEFAULT_PAGE);
	struct query qr;
	size_t i = 0, j;
	enum sync_rc rc;

	memset(&qr, 0, sizeof(qr));
	while (i < n) {
		cJSON *arr = NULL;
		const cJSON *r;
		long sanitized = 0;

		for (j = i + 1; j < n && w[j].id - w[i].id < span; j++)
			;
		qr.id_from = w[i].id;
		qr.id_to = w[j - 1].id;
		qr.limit = w[j - 1].id - w[i].id + 1;
		if ((rc = get_folder(ctx, folder, &qr, &arr, &sanitized, err)) != SYNC_OK)
			return rc;
		b->sanitized += sanitized;
		cJSON_ArrayForEach(r, arr) {
			long long id = cJSON_IsObject(r) ? json_id(r) : -1;
			struct want *hit = id > 0 ? bsearch(&id, w + i, j - i,
			    sizeof(*w), want_find) : NULL;
			long before;

			if (hit == NULL || hit->p->found)
				continue;
			before = b->ntrack;
			if (add_message(ctx, b, folder, id, r) == -1) {
				cJSON_Delete(arr);
				return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA,
				    "out of memory");
			}
			hit->p->found = 1;
			hit->p->row = b->nrows - 1;
			hit->p->track = b->ntrack > before ?
			    b->rows[b->nrows - 1].track : SYNC_TRACK_PENDING;
		}
		cJSON_Delete(arr);
		i = j;
	}
	return SYNC_OK;
}

/*
 * status-poll.  A message is asked of the folder it was last seen in
 * first; one that has left the outbox is looked for in the sent items,
 * and one found in neither in the error folder.
 */
static enum sync_rc
smseagle_poll(struct sync_ctx *ctx, struct sync_pending_list *l,
    struct sync_batch *b, struct sync_err *err)
{
	static const char *const order[] = { "outbox", "sent", "error" };
	struct want *w;
	size_t i, n, round;
	enum sync_rc rc = SYNC_OK;

	if ((w = calloc(l->n + 1, sizeof(*w))) == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
	for (i = 0; i < l->n; i++) {
		l->v[i].found = 0;
		l->v[i].track = SYNC_TRACK_NONE;
		l->v[i].row = -1;
	}
	for (round = 0; round < 3 && rc == SYNC_OK; round++) {
		for (i = 0, n = 0; i < l->n; i++) {
			struct sync_pending *p = &l->v[i];
			int from_outbox = p->folder != NULL &&
			    strcmp(p->folder, "outbox") == 0;
			size_t first = from_outbox ? 0 : 1;
			long long id = sync_cursor_int(p->external_id);

			if (p->found || id <= 0 || round < first)
				continue;
			w[n].id = id;
			w[n++].p = p;
		}
		if (n == 0)
			continue;
		qsort(w, n, sizeof(*w), want_cmp);
		rc = poll_folder(ctx, order[round], w, n, b, err);
	}
	free(w);
	return rc;
}

const struct sync_connector sync_smseagle_connector = {
	.type = "smseagle",
	.keys = smseagle_keys,
	.auth = { .header = "access-token", .query = "access_token",
	    .choice = "token_in" },
	.all_streams = smseagle_folders,
	.default_streams = smseagle_default,
	.check = smseagle_check,
	.begin = smseagle_begin,
	.fetch = smseagle_fetch,
	.cursor_max = sync_cursor_max_int,
	.end = smseagle_end,
	.poll = smseagle_poll,
	/* A message goes from outbox to sent (or error, delivered). */
	.flags = SYNC_CONN_MOVES,
};
