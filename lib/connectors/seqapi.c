/*
 * seqapi.c -- the connector for sequence-numbered sync backends:
 * GET /sync/{stream}/{integration_id}?since_seq=X&limit=N, rows in
 * ascending seq, latest_seq and has_more; /sync/status/{id} gives each
 * entity's latest seq, which is how a reset backend is noticed.
 * See ../shared/reference/seqapi.md.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "connector.h"

/* cJSON keeps numbers as doubles: seqs above 2^53 would lose digits. */
#define SEQ_MAX 9007199254740991LL

static const char *const seqapi_streams[] = {
	"conversations", "messages", "contacts", NULL
};

static const struct sync_keydef seqapi_keys[] = {
	{ "integration_id", SYNC_KEY_STRING, 1, 0, 0, NULL },
	{ "streams", SYNC_KEY_STRLIST, 0, 0, 0, seqapi_streams },
	{ "page_size", SYNC_KEY_INT_PER_STREAM, 0, 1, 10000, NULL },
	SYNC_KEY_GAP_WINDOW,
	{ NULL, SYNC_KEY_STRING, 0, 0, 0, NULL }
};

struct seqapi {
	char		*id_esc;		/* integration id, URL-escaped */
	long long	 latest[3];		/* from /sync/status, -1: unknown */
	size_t		 gap_next[3];		/* the next open gap to re-read */
	long long	 gap_from[3];		/* where its re-read goes on */
	int		 walked[3];		/* the walk after the gaps began */
	int		 reset[3];		/* --restart met a reset anchor */
};

static int
stream_index(const char *s)
{
	int i;

	for (i = 0; seqapi_streams[i] != NULL; i++)
		if (strcmp(seqapi_streams[i], s) == 0)
			return i;
	return -1;
}

static long
default_page_size(int i)
{
	static const long sizes[] = { 100, 1500, 500 };

	return i >= 0 && i < 3 ? sizes[i] : 500;
}

/* A JSON number that is a whole seq, or -1. */
static long long
json_seq(const cJSON *j)
{
	double d;

	if (!cJSON_IsNumber(j))
		return -1;
	d = j->valuedouble;
	if (!(d >= 0 && d <= (double)SEQ_MAX) || floor(d) != d)
		return -1;
	return (long long)d;
}

static enum sync_rc
seqapi_check(struct sync_source_cfg *src, struct sync_err *err)
{
	const char *id = sync_cfg_str(src, "integration_id");

	if (id == NULL || *id == '\0')
		return sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG,
		    "source '%s': 'integration_id' is empty", src->name);
	return SYNC_OK;
}

static enum sync_rc
seqapi_begin(struct sync_ctx *ctx, struct sync_err *err)
{
	struct seqapi *p;
	char path[512], *url = NULL;
	cJSON *root = NULL;
	enum sync_rc rc;
	int i;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_NETWORK, "out of memory");
	ctx->priv = p;
	for (i = 0; i < 3; i++)
		p->latest[i] = -1;
	if ((p->id_esc = sync_url_escape(sync_cfg_str(ctx->src, "integration_id"))) ==
	    NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_NETWORK, "out of memory");
	/* media-sync reads no stream: it has no use for the latest seqs. */
	if (ctx->opts != NULL && ctx->opts->cmd == SYNC_CMD_MEDIA)
		return SYNC_OK;

	/* The backend's latest seqs: a cursor above them means a reset. */
	snprintf(path, sizeof(path), "/sync/status/%s", p->id_esc);
	if ((rc = sync_url_build(ctx->src->url, path, NULL, &url, err)) != SYNC_OK)
		return rc;
	rc = sync_http_get_json(ctx->http, url, &root, NULL, err);
	if (rc == SYNC_OK && !cJSON_IsObject(root))
		rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "'%s': the status is not a JSON object", url);
	for (i = 0; rc == SYNC_OK && i < 3; i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, seqapi_streams[i]);

		if (v != NULL && !cJSON_IsNull(v) && (p->latest[i] = json_seq(v)) < 0)
			rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
			    "'%s': '%s' is not a sequence number", url,
			    seqapi_streams[i]);
	}
	cJSON_Delete(root);
	free(url);
	return rc;
}

static void
seqapi_end(struct sync_ctx *ctx)
{
	struct seqapi *p = ctx->priv;

	if (p == NULL)
		return;
	free(p->id_esc);
	free(p);
	ctx->priv = NULL;
}

/*
 * An id that can be stored: present, not empty (every such row would land
 * on one), and short enough for the unique index (a btree entry holds
 * about 2.7 kB; a longer one would fail the whole page on every pass).
 */
static int
usable_id(const char *id)
{
	return id != NULL && *id != '\0' && strlen(id) <= SYNC_MAX_ID;
}

/*
 * The kind of a file of a message: the message's own type when it names a
 * file (image, audio, video, document, sticker, ...), else the file's MIME
 * type's (image/..., audio/..., video/...), else "document".
 */
static const char *
media_kind(const char *type, const char *mime)
{
	static const char *const kinds[] = { "image", "audio", "voice", "video",
	    "document", "sticker", "file", "gif", "ptt", NULL };
	static const char *const mimes[][2] = { { "image/", "image" },
	    { "audio/", "audio" }, { "video/", "video" } };
	size_t i;

	for (i = 0; type != NULL && kinds[i] != NULL; i++)
		if (strcmp(type, kinds[i]) == 0)
			return kinds[i];
	for (i = 0; mime != NULL && i < sizeof(mimes) / sizeof(mimes[0]); i++)
		if (strncmp(mime, mimes[i][0], strlen(mimes[i][0])) == 0)
			return mimes[i][1];
	return "document";
}

/* An id of a media entry as text: into num when it is a number. */
#define MEDIA_ID_LEN	40

/*
 * The files of a message (its `media` array, SPEC §9) into *att (the
 * caller frees *att and *ids; both NULL when it has none), their ids'
 * texts in *ids.  Entries without a usable id are left out and counted in
 * *bad.  -1 on ENOMEM.
 */
static int
media_of(const cJSON *media, const char *type, struct sync_attachment **att,
    char **ids, size_t *n, long *bad)
{
	const cJSON *f;
	size_t cap = (size_t)cJSON_GetArraySize(media);

	*att = NULL;
	*ids = NULL;
	*n = 0;
	if (cap == 0)
		return 0;
	if ((*att = calloc(cap, sizeof(**att))) == NULL ||
	    (*ids = calloc(cap, MEDIA_ID_LEN)) == NULL) {
		free(*att);
		*att = NULL;
		return -1;
	}
	cJSON_ArrayForEach(f, media) {
		struct sync_attachment *a = &(*att)[*n];
		char *num = *ids + *n * MEDIA_ID_LEN;

		if (!cJSON_IsObject(f) || !usable_id(a->external_id =
		    sync_json_str(f, "id", num, MEDIA_ID_LEN, bad))) {
			(*bad)++;
			continue;
		}
		a->mime_type = sync_json_str(f, "mime_type", NULL, 0, bad);
		a->kind = media_kind(type, a->mime_type);
		a->name = sync_json_str(f, "file_name", NULL, 0, bad);
		a->size = sync_json_int(f, "size");
		a->url = sync_json_str(f, "url", NULL, 0, bad);
		(*n)++;
	}
	return 0;
}

/* Adds the row read at seq pos to the page; *skip: it is not stored. */
static int
add_row(struct sync_page *page, int idx, const cJSON *row, const char *pos,
    time_t since, int *skip)
{
	const char *why;
	struct sync_batch *b = &page->batch;
	char idn[40], cid[40], sid[40];
	long bad = 0;
	int rc;

	*skip = 0;
	if (idx == 0) {
		struct sync_conversation c;
		long long unread = sync_json_int(row, "unread_count");

		memset(&c, 0, sizeof(c));
		c.external_id = sync_json_str(row, "id", idn, sizeof(idn), &bad);
		c.title = sync_json_str(row, "title", NULL, 0, &bad);
		c.kind = sync_json_str(row, "type", NULL, 0, &bad);
		c.unread_count = unread;
		c.is_read = unread < 0 ? -1 : unread == 0;
		c.last_message_at = sync_json_str(row, "last_message_at", NULL, 0, &bad);
		c.archived = sync_json_bool(row, "archived");
		c.raw = row;
		if (!usable_id(c.external_id))
			goto noid;
		rc = sync_batch_add_conversation(b, &c);
	} else if (idx == 1) {
		struct sync_message m;
		int from_me = sync_json_bool(row, "from_me");

		memset(&m, 0, sizeof(m));
		m.external_id = sync_json_str(row, "id", idn, sizeof(idn), &bad);
		m.conversation_id = sync_json_str(row, "conversation_id", cid, sizeof(cid), &bad);
		m.sender_id = sync_json_str(row, "sender_id", sid, sizeof(sid), &bad);
		m.direction = from_me < 0 ? NULL : from_me ? "out" : "in";
		m.kind = sync_json_str(row, "type", NULL, 0, &bad);
		m.body = sync_json_str(row, "body", NULL, 0, &bad);
		m.sent_at = sync_json_str(row, "sent_at", NULL, 0, &bad);
		m.edited_at = sync_json_str(row, "edited_at", NULL, 0, &bad);
		m.status = sync_json_str(row, "status", NULL, 0, &bad);
		m.deleted = sync_json_bool(row, "deleted") == 1;
		m.deleted_at = m.deleted ? sync_json_str(row, "updated_at", NULL, 0, &bad) : NULL;
		m.attachments = cJSON_GetObjectItemCaseSensitive(row, "media");
		if (m.attachments != NULL && !cJSON_IsArray(m.attachments)) {
			bad++;
			m.attachments = NULL;
		}
		m.raw = row;
		if (!usable_id(m.external_id))
			goto noid;
		if (since > 0 && m.sent_at != NULL) {
			int64_t t;

			if (sync_time_parse(m.sent_at, &t, NULL) == 0 && t < since) {
				*skip = 1;
				return 0;
			}
		}
		if (m.attachments != NULL) {
			struct sync_attachment *att;
			char *ids;

			if (media_of(m.attachments, m.kind, &att, &ids, &m.natt,
			    &bad) == -1)
				return -1;
			m.att = att;
			rc = sync_batch_add_message(b, &m);
			free(att);
			free(ids);
		} else
			rc = sync_batch_add_message(b, &m);
	} else {
		struct sync_contact k;
		const char *name;

		memset(&k, 0, sizeof(k));
		k.external_id = sync_json_str(row, "id", idn, sizeof(idn), &bad);
		name = sync_json_str(row, "name", NULL, 0, &bad);
		if (name == NULL || *name == '\0')
			name = sync_json_str(row, "push_name", NULL, 0, &bad);
		k.display_name = name;
		k.phone = sync_json_str(row, "phone", cid, sizeof(cid), &bad);
		/* WhatsApp numbers: international, often without their '+'. */
		k.phone_international = 1;
		k.raw = row;
		if (!usable_id(k.external_id))
			goto noid;
		rc = sync_batch_add_contact(b, &k);
	}
	b->sanitized += bad;
	return rc;
noid:
	/* A row without a usable id cannot be stored: the engine's to judge. */
	*skip = 1;
	why = sync_id_problem(row, "id");
	return sync_page_reject(page, pos, "id", why != NULL ? why :
	    "not a usable id", row);
}

/*
 * The anchor kept beside the cursor (SPEC §7.7): "SEQ:ID", the seq and id
 * of the last row a page stored.  A healthy backend never gives that seq to
 * another row (an updated row takes a new seq; the old one vanishes), so a
 * different id there means the backend was reset or re-created.  0 and
 * *seq, *id (borrowed from fp) when fp is one.
 */
static int
anchor_parse(const char *fp, long long *seq, const char **id)
{
	const char *c;
	char n[24];

	if (fp == NULL || (c = strchr(fp, ':')) == NULL || c == fp ||
	    (size_t)(c - fp) >= sizeof(n))
		return -1;
	memcpy(n, fp, (size_t)(c - fp));
	n[c - fp] = '\0';
	if ((*seq = sync_cursor_int(n)) <= 0)
		return -1;
	*id = c + 1;
	return 0;
}

/* The row's id for an anchor (into buf), NULL if it has none. */
static const char *
anchor_id(const cJSON *row, char *buf, size_t n)
{
	long bad = 0;
	const char *id = sync_json_str(row, "id", buf, n, &bad);

	return usable_id(id) ? id : NULL;
}

/*
 * GETs the page of stream idx after qsince and checks its shape: *rows,
 * *has_more and *latest (-2: absent) point into *root (the caller frees it
 * and *url).
 */
static enum sync_rc
get_page(struct sync_ctx *ctx, struct sync_stream *st, struct sync_page *page,
    long long qsince, long long limit, cJSON **root, cJSON **rows,
    int *has_more, long long *latest, char **url, struct sync_err *err)
{
	struct seqapi *p = ctx->priv;
	char path[600], since_s[24], limit_s[24];
	const char *q[5];
	cJSON *latest_j, *more_j;
	long long total;
	long sanitized = 0;
	enum sync_rc rc;

	snprintf(path, sizeof(path), "/sync/%s/%s", st->name, p->id_esc);
	snprintf(since_s, sizeof(since_s), "%lld", qsince);
	snprintf(limit_s, sizeof(limit_s), "%lld", limit);
	q[0] = "since_seq";
	q[1] = since_s;
	q[2] = "limit";
	q[3] = limit_s;
	q[4] = NULL;
	if ((rc = sync_url_build(ctx->src->url, path, q, url, err)) != SYNC_OK)
		return rc;
	if ((rc = sync_http_get_json(ctx->http, *url, root, &sanitized, err)) !=
	    SYNC_OK)
		return rc;
	page->batch.sanitized += sanitized;
	*rows = cJSON_GetObjectItemCaseSensitive(*root, st->name);
	latest_j = cJSON_GetObjectItemCaseSensitive(*root, "latest_seq");
	more_j = cJSON_GetObjectItemCaseSensitive(*root, "has_more");
	if (!cJSON_IsObject(*root) || !cJSON_IsArray(*rows))
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "'%s': the page has no '%s' array", *url, st->name);
	if (more_j != NULL && !cJSON_IsBool(more_j))
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "'%s': 'has_more' is not a boolean", *url);
	*has_more = cJSON_IsTrue(more_j);
	/* The rows after since_seq, this page's included: for the progress. */
	if ((total = json_seq(cJSON_GetObjectItemCaseSensitive(*root,
	    "total_count"))) >= 0)
		sync_progress_left(st, total);
	*latest = latest_j != NULL ? json_seq(latest_j) : -2;
	if (*latest == -1)
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "'%s': 'latest_seq' is not a sequence number", *url);
	return SYNC_OK;
}

/* The seq of row number n (from 1) of a page, above prev, or an error. */
static enum sync_rc
row_seq(const cJSON *row, int n, long long prev, const char *url,
    long long *seq, struct sync_err *err)
{
	if (!cJSON_IsObject(row) ||
	    (*seq = json_seq(cJSON_GetObjectItemCaseSensitive(row, "seq"))) < 0)
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "'%s': row %d has no valid 'seq'", url, n);
	if (*seq <= prev)
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "'%s': row %d has seq %lld, not above %lld (rows must "
		    "come in ascending seq after since_seq)", url, n, *seq, prev);
	return SYNC_OK;
}

/*
 * After the n rows of a page asked after since, the last at seq last: its
 * latest_seq must agree, and a page that has more must advance.
 */
static enum sync_rc
page_end(const char *url, int n, long long latest, long long last,
    int has_more, long long since, struct sync_err *err)
{
	if (n > 0 && latest >= 0 && latest != last)
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "'%s': latest_seq %lld disagrees with the last row's seq %lld",
		    url, latest, last);
	if (has_more && last <= since)
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "'%s': pagination does not advance (has_more is true but "
		    "latest_seq stays at %lld)", url, since);
	return SYNC_OK;
}

/* Adds the row at seq to the page (stored, or rejected). */
static enum sync_rc
take_row(struct sync_page *page, int idx, const cJSON *row, long long seq,
    time_t since, struct sync_err *err)
{
	char seq_s[24];
	int skip;

	snprintf(seq_s, sizeof(seq_s), "%lld", seq);
	if (add_row(page, idx, row, seq_s, since, &skip) == -1 ||
	    (!skip && sync_page_stored(page, seq_s) == -1))
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA,
		    "out of memory building a batch");
	return SYNC_OK;
}

/*
 * Re-reads open gaps (gaps.c) up to the cursor: one page from just below
 * the next one, asking for as many rows as there are positions up to one
 * past the furthest gap that fits in page_size, so that neighbouring gaps
 * share a request.  Only rows inside those gaps are stored (every other row
 * there was stored when the gap was found: the same seq is the same
 * version); the page tells the engine what it read and, as missing, every
 * position it did not store, and the engine closes, keeps or reports the
 * gaps.  The cursor stays.
 */
static enum sync_rc
reread_gaps(struct sync_ctx *ctx, struct sync_stream *st, struct sync_page *page,
    int idx, long long cursor, struct sync_err *err)
{
	struct seqapi *p = ctx->priv;
	const struct sync_gap *g = &st->gaps[p->gap_next[idx]];
	cJSON *root = NULL, *rows, *row;
	char *url = NULL;
	long long from, prev, to, seq, latest, last, ps, limit;
	size_t k = p->gap_next[idx];
	int has_more, n = 0, past = 0;
	enum sync_rc rc;

	from = g->lo - 1 > p->gap_from[idx] ? g->lo - 1 : p->gap_from[idx];
	ps = sync_cfg_stream_int(ctx->src, "page_size", st->name,
	    default_page_size(idx));
	limit = g->hi - from + 1;
	while (k + 1 < st->ngaps && st->gaps[k + 1].hi - from + 1 <= ps)
		limit = st->gaps[++k].hi - from + 1;
	if (limit > ps)
		limit = ps;
	k = p->gap_next[idx];
	if ((rc = get_page(ctx, st, page, from, limit, &root, &rows, &has_more,
	    &latest, &url, err)) != SYNC_OK)
		goto out;
	prev = last = from;
	cJSON_ArrayForEach(row, rows) {
		if ((rc = row_seq(row, ++n, last, url, &seq, err)) != SYNC_OK)
			goto out;
		last = seq;
		if (seq > cursor) {
			past = 1;	/* the walk's, not a gap's */
			continue;
		}
		while (k < st->ngaps && st->gaps[k].hi < seq)
			k++;
		if (k == st->ngaps || st->gaps[k].lo > seq)
			continue;	/* stored already */
		if (seq != prev + 1 && sync_page_missing(page, prev + 1, seq - 1) == -1)
			goto nomem;
		prev = seq;
		page->fetched++;
		if ((rc = take_row(page, idx, row, seq, 0, err)) != SYNC_OK)
			goto out;
	}
	if ((rc = page_end(url, n, latest, last, has_more, from, err)) != SYNC_OK)
		goto out;
	/* Read up to the cursor, or up to its last row when more follow. */
	to = past || !has_more ? cursor : last;
	if (to > prev && sync_page_missing(page, prev + 1, to) == -1)
		goto nomem;
	page->read_from = from;
	page->read_to = to;
	/* A page that got nowhere (the gap lies above the cursor): skip it. */
	if (to <= from)
		p->gap_next[idx]++;
	p->gap_from[idx] = to;
	while (p->gap_next[idx] < st->ngaps && st->gaps[p->gap_next[idx]].hi <= to)
		p->gap_next[idx]++;
	goto out;
nomem:
	rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
out:
	cJSON_Delete(root);
	free(url);
	return rc;
}

static enum sync_rc
seqapi_fetch(struct sync_ctx *ctx, struct sync_stream *st, struct sync_page *page,
    struct sync_err *err)
{
	static const enum sync_entity ent[3] = { SYNC_ENT_CONVERSATION,
	    SYNC_ENT_MESSAGE, SYNC_ENT_CONTACT };
	struct seqapi *p = ctx->priv;
	const char *name = ctx->src->name, *aid = NULL, *id;
	char *url = NULL, idbuf[40], *fp;
	cJSON *root = NULL, *rows, *row, *lastrow = NULL;
	long long since, qsince, cursor, prev, last, latest = -2, seq, limit, aseq = 0;
	int idx = stream_index(st->name), has_more, nrows = 0, first;
	enum sync_rc rc = SYNC_OK;

	if (idx < 0)
		return sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG,
		    "no stream '%s'", st->name);
	sync_batch_init(&page->batch, ent[idx]);
	cursor = sync_cursor_int(st->state.cursor);
	since = sync_cursor_int(st->from);
	if (cursor < 0 || since < 0)
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "stream '%s': the stored position '%s' is not a sequence "
		    "number", st->name, cursor < 0 ? st->state.cursor : st->from);
	first = !p->walked[idx];

	/*
	 * SPEC §7.7: a backend whose latest seq is below our cursor was reset
	 * or restored.  Continuing would silently skip everything until its
	 * new seqs pass the old cursor.  Only a full walk started afresh
	 * (full-sync --restart) may re-read it and replace the cursor.
	 */
	if (first && p->latest[idx] >= 0 && cursor > p->latest[idx] &&
	    !(st->mode == SYNC_MODE_FULL && st->restart))
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "stream '%s': the backend's latest seq %lld is below our "
		    "cursor %lld: it was reset or restored; refusing to skip its "
		    "new rows (check it, then run full-sync --restart --source %s)",
		    st->name, p->latest[idx], cursor, name);

	/* The open gaps first, before the walk (an incremental pass's). */
	if (first && st->mode == SYNC_MODE_INCR && p->gap_next[idx] < st->ngaps)
		return reread_gaps(ctx, st, page, idx, cursor, err);
	p->walked[idx] = 1;

	/*
	 * The backend's status, read at begin, has nothing after since: the
	 * first page would come back empty, so it is not asked for (a pass
	 * with nothing new costs one request per source, not one per stream).
	 * A row added since the status was read is the next pass's.
	 */
	if (first && p->latest[idx] >= 0 && since >= p->latest[idx]) {
		prev = last = since;
		has_more = 0;
		goto walked;
	}

	/*
	 * The anchor: an incremental walk starts one seq early, so that the
	 * row at the cursor comes back with the first page (no request of its
	 * own) and shows whether it is still the row stored there.
	 */
	limit = sync_cfg_stream_int(ctx->src, "page_size", st->name,
	    default_page_size(idx));
	if (anchor_parse(st->state.fingerprint, &aseq, &aid) != 0)
		aseq = 0;
	qsince = since;
	if (first && st->mode == SYNC_MODE_INCR && aseq > 0 && aseq == cursor &&
	    since == cursor) {
		qsince = since - 1;
		limit++;
	}
	if ((rc = get_page(ctx, st, page, qsince, limit, &root, &rows, &has_more,
	    &latest, &url, err)) != SYNC_OK)
		goto out;

	prev = last = qsince;
	cJSON_ArrayForEach(row, rows) {
		if ((rc = row_seq(row, ++nrows, last, url, &seq, err)) != SYNC_OK)
			goto out;
		last = seq;
		if (aseq > 0 && seq == aseq && ((id = anchor_id(row, idbuf,
		    sizeof(idbuf))) == NULL || strcmp(id, aid) != 0)) {
			if (st->mode == SYNC_MODE_FULL && st->restart)
				p->reset[idx] = 1;
			else {
				rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
				    "stream '%s': the row at seq %lld is '%.64s', not "
				    "'%.64s' as when it was stored: the backend was "
				    "reset or re-created and its new seqs passed our "
				    "cursor %lld; refusing to follow it (check it, then "
				    "run full-sync --restart --source %s)", st->name,
				    seq, id != NULL ? id : "(no id)", aid, cursor, name);
				goto out;
			}
		}
		if (seq <= since)	/* the anchor, stored already */
			continue;
		if (seq != (prev > since ? prev : since) + 1) {
			st->counts->gaps++;
			if (sync_page_missing(page, (prev > since ? prev : since) + 1,
			    seq - 1) == -1)
				goto nomem;
		}
		prev = seq;
		lastrow = row;
		page->fetched++;
		if ((rc = take_row(page, idx, row, seq, st->since, err)) != SYNC_OK)
			goto out;
	}
	if (prev < since)
		prev = since;
walked:
	if ((rc = page_end(url, nrows, latest, last, has_more, since, err)) !=
	    SYNC_OK)
		goto out;
	last = prev;
	/* What the page read, for the gaps (gaps.c). */
	if (last > since) {
		page->read_from = since;
		page->read_to = last;
	}
	page->done = !has_more;
	if (st->mode == SYNC_MODE_FULL) {
		/* Only reached on a reset backend with --restart (see above). */
		int reset = (p->latest[idx] >= 0 && cursor > p->latest[idx]) ||
		    p->reset[idx];

		if ((page->checkpoint = sync_cursor_from_int(last)) == NULL)
			goto nomem;
		if (!reset)
			page->cursor = sync_cursor_from_int(last > cursor ? last : cursor);
		else if (page->done) {
			/* The restarted walk is complete: it replaces the cursor. */
			page->cursor = sync_cursor_from_int(last);
			page->force = 1;
		} else
			goto out;
	} else
		page->cursor = sync_cursor_from_int(last);
	if (page->cursor == NULL)
		goto nomem;
	/* The new anchor, with the cursor it describes (the engine pairs them). */
	if (lastrow != NULL && (page->force || last >= cursor) &&
	    (id = anchor_id(lastrow, idbuf, sizeof(idbuf))) != NULL) {
		size_t n = strlen(id) + 24;

		if ((fp = malloc(n)) == NULL)
			goto nomem;
		snprintf(fp, n, "%lld:%s", last, id);
		if (st->state.fingerprint != NULL &&
		    strcmp(fp, st->state.fingerprint) == 0)
			free(fp);
		else
			page->fingerprint = fp;
	}
	goto out;
nomem:
	rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
out:
	cJSON_Delete(root);
	free(url);
	return rc;
}

/*
 * media-sync: a fresh link to file it, whose stored link lost its token
 * or stopped working.  The backend serves rows by seq only, so the message
 * is read again where it was stored: one row after since_seq = its seq -
 * 1.  An edited message took a new seq and is no longer there: the next
 * incremental pass stores it with its new links, and this attempt fails.
 */
static enum sync_rc
seqapi_media_refresh(struct sync_ctx *ctx, const struct sync_media_item *it,
    struct sync_media_link *out, struct sync_err *err)
{
	char *esc = NULL, *url = NULL, path[600], since_s[24], idbuf[40];
	const char *q[5], *id, *u;
	cJSON *root = NULL;
	const cJSON *rows, *row, *f, *hit = NULL;
	long long seq = json_seq(it->raw != NULL ?
	    cJSON_GetObjectItemCaseSensitive(it->raw, "seq") : NULL);
	long bad = 0;
	enum sync_rc rc;

	if (seq < 1)
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_DATA,
		    "message '%s': its stored row has no 'seq' to read it again "
		    "at", it->message_id);
	if ((esc = sync_url_escape(sync_cfg_str(ctx->src, "integration_id"))) ==
	    NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
	snprintf(path, sizeof(path), "/sync/messages/%s", esc);
	snprintf(since_s, sizeof(since_s), "%lld", seq - 1);
	q[0] = "since_seq";
	q[1] = since_s;
	q[2] = "limit";
	q[3] = "1";
	q[4] = NULL;
	if ((rc = sync_url_build(ctx->src->url, path, q, &url, err)) != SYNC_OK ||
	    (rc = sync_http_get_json(ctx->http, url, &root, NULL, err)) != SYNC_OK)
		goto out;
	rows = cJSON_GetObjectItemCaseSensitive(root, "messages");
	row = cJSON_IsArray(rows) ? cJSON_GetArrayItem(rows, 0) : NULL;
	id = cJSON_IsObject(row) ? sync_json_str(row, "id", idbuf, sizeof(idbuf),
	    &bad) : NULL;
	if (id == NULL || strcmp(id, it->message_id) != 0) {
		rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_DATA,
		    "message '%s': the message changed since its link was stored "
		    "(not at seq %lld any more): the next incremental pass brings "
		    "its new links", it->message_id, seq);
		goto out;
	}
	if (sync_json_bool(row, "deleted") == 1) {
		snprintf(out->unavailable, sizeof(out->unavailable),
		    "the message was deleted upstream");
		goto out;
	}
	cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(row, "media")) {
		const char *fid = cJSON_IsObject(f) ? sync_json_str(f, "id", idbuf,
		    sizeof(idbuf), &bad) : NULL;

		if (fid != NULL && strcmp(fid, it->external_id) == 0) {
			hit = f;
			break;
		}
	}
	if (hit == NULL) {
		rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_DATA,
		    "message '%s': the message changed since its link was stored "
		    "(file '%s' is no longer in it)", it->message_id,
		    it->external_id);
		goto out;
	}
	if ((u = sync_json_str(hit, "url", NULL, 0, &bad)) == NULL || *u == '\0') {
		rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_DATA,
		    "message '%s': file '%s' has no link", it->message_id,
		    it->external_id);
		goto out;
	}
	if ((out->url = strdup(u)) == NULL)
		rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
out:
	cJSON_Delete(root);
	free(url);
	free(esc);
	return rc;
}

const struct sync_connector sync_seqapi_connector = {
	.type = "seqapi",
	.keys = seqapi_keys,
	.auth = { .header = "Authorization", .prefix = "Bearer " },
	.all_streams = seqapi_streams,
	.default_streams = seqapi_streams,
	.check = seqapi_check,
	.begin = seqapi_begin,
	.fetch = seqapi_fetch,
	.cursor_max = sync_cursor_max_int,
	.end = seqapi_end,
	.no_poll_reason = "source type 'seqapi' has no delivery status to poll",
	.media_refresh = seqapi_media_refresh,
	.flags = SYNC_CONN_ROW_POSITIONS | SYNC_CONN_GAPS,
};
