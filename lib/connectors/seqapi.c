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
	{ NULL, SYNC_KEY_STRING, 0, 0, 0, NULL }
};

struct seqapi {
	char		*id_esc;		/* integration id, URL-escaped */
	long long	 latest[3];		/* from /sync/status, -1: unknown */
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

static enum sync_rc
seqapi_fetch(struct sync_ctx *ctx, struct sync_stream *st, struct sync_page *page,
    struct sync_err *err)
{
	static const enum sync_entity ent[3] = { SYNC_ENT_CONVERSATION,
	    SYNC_ENT_MESSAGE, SYNC_ENT_CONTACT };
	struct seqapi *p = ctx->priv;
	const char *name = ctx->src->name;
	char path[600], since_s[24], limit_s[24], seq_s[24], *url = NULL;
	const char *q[5];
	cJSON *root = NULL, *rows, *row, *latest_j, *more_j;
	long long since, cursor, prev, last, latest, seq, limit, total;
	long sanitized = 0;
	int idx = stream_index(st->name), has_more, skip, nrows = 0;
	enum sync_rc rc;

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

	/*
	 * SPEC §7.7: a backend whose latest seq is below our cursor was reset
	 * or restored.  Continuing would silently skip everything until its
	 * new seqs pass the old cursor.  Only a full walk started afresh
	 * (full-sync --restart) may re-read it and replace the cursor.
	 */
	if (st->first && p->latest[idx] >= 0 && cursor > p->latest[idx] &&
	    !(st->mode == SYNC_MODE_FULL && st->restart))
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "stream '%s': the backend's latest seq %lld is below our "
		    "cursor %lld: it was reset or restored; refusing to skip its "
		    "new rows (check it, then run full-sync --restart --source %s)",
		    st->name, p->latest[idx], cursor, name);

	/*
	 * The backend's status, read at begin, has nothing after since: the
	 * first page would come back empty, so it is not asked for (a pass
	 * with nothing new costs one request per source, not one per stream).
	 * A row added since the status was read is the next pass's.
	 */
	if (st->first && p->latest[idx] >= 0 && since >= p->latest[idx]) {
		prev = since;
		has_more = 0;
		goto walked;
	}

	limit = sync_cfg_stream_int(ctx->src, "page_size", st->name,
	    default_page_size(idx));
	snprintf(path, sizeof(path), "/sync/%s/%s", st->name, p->id_esc);
	snprintf(since_s, sizeof(since_s), "%lld", since);
	snprintf(limit_s, sizeof(limit_s), "%lld", limit);
	q[0] = "since_seq";
	q[1] = since_s;
	q[2] = "limit";
	q[3] = limit_s;
	q[4] = NULL;
	if ((rc = sync_url_build(ctx->src->url, path, q, &url, err)) != SYNC_OK)
		return rc;
	if ((rc = sync_http_get_json(ctx->http, url, &root, &sanitized, err)) !=
	    SYNC_OK)
		goto out;
	page->batch.sanitized += sanitized;

	rows = cJSON_GetObjectItemCaseSensitive(root, st->name);
	latest_j = cJSON_GetObjectItemCaseSensitive(root, "latest_seq");
	more_j = cJSON_GetObjectItemCaseSensitive(root, "has_more");
	if (!cJSON_IsObject(root) || !cJSON_IsArray(rows)) {
		rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "'%s': the page has no '%s' array", url, st->name);
		goto out;
	}
	if (more_j != NULL && !cJSON_IsBool(more_j)) {
		rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "'%s': 'has_more' is not a boolean", url);
		goto out;
	}
	has_more = cJSON_IsTrue(more_j);
	/* The rows after since_seq, this page's included: for the progress. */
	if ((total = json_seq(cJSON_GetObjectItemCaseSensitive(root,
	    "total_count"))) >= 0)
		sync_progress_left(st, total);
	latest = latest_j != NULL ? json_seq(latest_j) : -2;
	if (latest == -1) {
		rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "'%s': 'latest_seq' is not a sequence number", url);
		goto out;
	}

	prev = since;
	cJSON_ArrayForEach(row, rows) {
		nrows++;
		if (!cJSON_IsObject(row) ||
		    (seq = json_seq(cJSON_GetObjectItemCaseSensitive(row, "seq"))) < 0) {
			rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
			    "'%s': row %d has no valid 'seq'", url, nrows);
			goto out;
		}
		if (seq <= prev) {
			rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
			    "'%s': row %d has seq %lld, not above %lld (rows must "
			    "come in ascending seq after since_seq)", url, nrows, seq,
			    prev);
			goto out;
		}
		if (seq != prev + 1)
			st->counts->gaps++;
		prev = seq;
		snprintf(seq_s, sizeof(seq_s), "%lld", seq);
		if (add_row(page, idx, row, seq_s, st->since, &skip) == -1 ||
		    (!skip && sync_page_stored(page, seq_s) == -1)) {
			rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA,
			    "out of memory building a batch");
			goto out;
		}
	}
walked:
	last = prev;
	page->fetched = nrows;
	if (nrows > 0 && latest >= 0 && latest != last) {
		rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "'%s': latest_seq %lld disagrees with the last row's seq %lld",
		    url, latest, last);
		goto out;
	}
	if (has_more && last <= since) {
		rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "'%s': pagination does not advance (has_more is true but "
		    "latest_seq stays at %lld)", url, since);
		goto out;
	}
	page->done = !has_more;
	if (st->mode == SYNC_MODE_FULL) {
		/* Only reached on a reset backend with --restart (see above). */
		int reset = p->latest[idx] >= 0 && cursor > p->latest[idx];

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
	goto out;
nomem:
	rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
out:
	cJSON_Delete(root);
	free(url);
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
	.flags = SYNC_CONN_ROW_POSITIONS,
};
