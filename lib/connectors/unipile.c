/*
 * unipile.c -- the connector for Unipile's messaging API v1: one linked
 * account (`account_id`) of WhatsApp, LinkedIn, Telegram, ... with two
 * streams.  See ../shared/reference/facebook-unipile.md §B.
 *
 *   chats     GET /api/v1/chats, newest activity first: each chat is a
 *             conversation row, and its attendees (GET
 *             /api/v1/chats/{id}/attendees) are contacts.
 *   messages  GET /api/v1/messages, newest first, filtered with `after`.
 *
 * Both are keyset walks of the engine (walk.c) on (timestamp, id): floor,
 * top, cold start, and a walk cut short that goes on below what it stored
 * (Unipile lists below a time with `before`).  Unipile's pagination
 * cursors point further back and live for one pass only.  The API key
 * travels in the X-API-KEY header, never in a URL, so the URLs in errors
 * and logs hold no secret.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "connector.h"

#define DEFAULT_PAGE	100
#define DEFAULT_LOOKBACK 3600

static const char *const uni_streams[] = { "chats", "messages", NULL };

static const struct sync_keydef uni_keys[] = {
	{ "account_id", SYNC_KEY_STRING, 1, 0, 0, NULL },
	{ "streams", SYNC_KEY_STRLIST, 0, 0, 0, uni_streams },
	{ "page_size", SYNC_KEY_INT, 0, 1, 250, NULL },
	SYNC_KEYS_WALK,
	{ NULL, SYNC_KEY_STRING, 0, 0, 0, NULL }
};

/* One walk of a stream, newest first. */
struct walk {
	struct sync_walk sw;		/* the engine's walk */
	char		*cursor;	/* Unipile cursor of the next page */
};

struct uni {
	char		*api;		/* base URL ending in /api/v1 */
	const char	*account;	/* borrowed from the configuration */
	char		 limit[16];
	long long	 lookback;
	struct walk	 w;
};

static enum sync_rc
nomem(struct sync_err *err)
{
	return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
}

static void
walk_reset(struct uni *p)
{
	free(p->w.cursor);
	sync_walk_release(&p->w.sw);
	memset(&p->w, 0, sizeof(p->w));
}

static enum sync_rc
uni_check(struct sync_source_cfg *src, struct sync_err *err)
{
	const char *a = sync_cfg_str(src, "account_id");

	if (a == NULL || *a == '\0')
		return sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG,
		    "source '%s': 'account_id' is empty", src->name);
	return SYNC_OK;
}

/*
 * The type ("errors/..."), title and detail of a Unipile error body, as
 * bounded printable copies, redacted before they are cut (title and
 * detail may be NULL: not wanted).  Returns 0 when the body has no type.
 */
static int
error_body(const struct sync_http_resp *r, char *type, size_t nt, char *title,
    size_t nti, char *detail, size_t nd)
{
	cJSON *root;
	const cJSON *v;

	type[0] = '\0';
	if (title != NULL)
		title[0] = '\0';
	if (detail != NULL)
		detail[0] = '\0';
	if (r->body.data == NULL || r->body.len == 0 ||
	    (root = cJSON_ParseWithLength(r->body.data, r->body.len)) == NULL)
		return 0;
	if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(root, "type")))
		sync_redact_excerpt(type, nt, v->valuestring);
	if (title != NULL && cJSON_IsString(v =
	    cJSON_GetObjectItemCaseSensitive(root, "title")))
		sync_redact_excerpt(title, nti, v->valuestring);
	if (detail != NULL && cJSON_IsString(v =
	    cJSON_GetObjectItemCaseSensitive(root, "detail")))
		sync_redact_excerpt(detail, nd, v->valuestring);
	cJSON_Delete(root);
	return type[0] != '\0';
}

/*
 * Retried answers (429, 5xx) keep their status, but their error message
 * names Unipile's error type too: "HTTP 503 errors/no_client_session".
 */
static enum sync_http_verdict
uni_classify(struct sync_http *h, const struct sync_http_resp *r, double *wait,
    char *why, size_t n)
{
	char type[80];

	(void)h;
	(void)wait;
	if ((r->status == 429 || r->status == 408 || r->status >= 500) &&
	    error_body(r, type, sizeof(type), NULL, 0, NULL, 0))
		snprintf(why, n, "HTTP %ld %s", r->status, type);
	return SYNC_HTTP_DEFAULT;
}

/* A final non-2xx answer about `what` as ours (reference §B.6). */
static enum sync_rc
uni_fail(const struct sync_http_resp *r, const char *safe, const char *what,
    struct sync_err *err)
{
	char type[80], title[120], detail[200];

	if (!error_body(r, type, sizeof(type), title, sizeof(title), detail,
	    sizeof(detail))) {
		if (r->status == 404)
			return sync_err_set(err, SYNC_EDATA, SYNC_ERR_DATA,
			    "%s: not found: '%s': HTTP 404", what, safe);
		if (r->status == 400)
			return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
			    "%s: request refused: '%s': HTTP 400", what, safe);
		return sync_http_status_error(r, safe, err);
	}
	switch (r->status) {
	case 401:
	case 403:
		return sync_err_set(err, SYNC_EPERM, SYNC_ERR_AUTH,
		    "%s: credentials rejected: HTTP %ld %s (%s) at '%s'%s%s",
		    what, r->status, type, title, safe, detail[0] ? ": " : "",
		    detail);
	case 404:
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_DATA,
		    "%s: not found: HTTP 404 %s (%s) at '%s'%s%s", what, type,
		    title, safe, detail[0] ? ": " : "", detail);
	case 400:
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "%s: request refused: HTTP 400 %s (%s) at '%s'%s%s", what,
		    type, title, safe, detail[0] ? ": " : "", detail);
	default:
		return sync_err_set(err, SYNC_EUNAVAIL, SYNC_ERR_HTTP,
		    "%s: HTTP %ld %s (%s) at '%s'%s%s", what, r->status, type,
		    title, safe, detail[0] ? ": " : "", detail);
	}
}

/*
 * The API's base URL of a source's url (malloc'd; NULL on ENOMEM): the DSN
 * as given, or a URL that already ends in /api/v1.
 */
static char *
api_base(const char *url)
{
	struct sync_buf b = SYNC_BUF_INIT(0);
	size_t n = strlen(url);

	while (n > 0 && url[n - 1] == '/')
		n--;
	if (sync_buf_add(&b, url, n) == -1 || ((n < 7 ||
	    strcmp(b.data + n - 7, "/api/v1") != 0) &&
	    sync_buf_adds(&b, "/api/v1") == -1)) {
		sync_buf_release(&b);
		return NULL;
	}
	return b.data;
}

static enum sync_rc
uni_begin(struct sync_ctx *ctx, struct sync_err *err)
{
	struct uni *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return nomem(err);
	ctx->priv = p;
	p->account = sync_cfg_str(ctx->src, "account_id");
	p->lookback = sync_cfg_int(ctx->src, "lookback", DEFAULT_LOOKBACK);
	snprintf(p->limit, sizeof(p->limit), "%lld",
	    sync_cfg_int(ctx->src, "page_size", DEFAULT_PAGE));
	walk_reset(p);
	if ((p->api = api_base(ctx->src->url)) == NULL)
		return nomem(err);
	sync_http_set_classify(ctx->http, uni_classify);
	return SYNC_OK;
}

static void
uni_end(struct sync_ctx *ctx)
{
	struct uni *p = ctx->priv;

	if (p == NULL)
		return;
	walk_reset(p);
	free(p->api);
	free(p);
	ctx->priv = NULL;
}

/*
 * GETs one list page: path under the API with the query pairs q (NULL
 * terminated).  *root gets the answer (the caller deletes it), *items its
 * array and *next its cursor (the caller frees it; NULL on the last page).
 * what names the list in errors.  With missing_ok a 404 is an empty last
 * page.  The pager checks that the pagination moves on.
 */
static enum sync_rc
uni_list(struct sync_ctx *ctx, const char *path, const char *const *q,
    const char *what, struct sync_pager *pager, int missing_ok, cJSON **root,
    const cJSON **items, char **next, long *sanitized, struct sync_err *err)
{
	struct uni *p = ctx->priv;
	struct sync_http_resp r = { 0, SYNC_BUF_INIT(0) };
	const cJSON *cur;
	char *url = NULL;
	enum sync_rc rc;

	*root = NULL;
	*items = NULL;
	*next = NULL;
	if ((rc = sync_url_build(p->api, path, q, &url, err)) != SYNC_OK ||
	    (rc = sync_http_get(ctx->http, url, &r, err)) != SYNC_OK)
		goto out;
	if (r.status == 404 && missing_ok)
		goto out;
	if (r.status < 200 || r.status > 299) {
		rc = uni_fail(&r, url, what, err);
		goto out;
	}
	if ((rc = sync_http_parse_json(&r, url, root, sanitized, err)) !=
	    SYNC_OK)
		goto out;
	*items = cJSON_GetObjectItemCaseSensitive(*root, "items");
	if (!cJSON_IsObject(*root) || !cJSON_IsArray(*items)) {
		rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "%s: the answer has no 'items' array ('%s')", what, url);
		goto out;
	}
	cur = cJSON_GetObjectItemCaseSensitive(*root, "cursor");
	if (cur == NULL || cJSON_IsNull(cur))
		goto out;
	if (!cJSON_IsString(cur) || cur->valuestring[0] == '\0') {
		rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "%s: the answer's 'cursor' is neither null nor a cursor "
		    "('%s')", what, url);
		goto out;
	}
	if ((*next = strdup(cur->valuestring)) == NULL)
		rc = nomem(err);
	else if (pager != NULL && (rc = sync_pager_next(pager, what, *next,
	    (long)cJSON_GetArraySize(*items), err)) != SYNC_OK) {
		free(*next);
		*next = NULL;
	}
out:
	if (rc != SYNC_OK) {
		cJSON_Delete(*root);
		*root = NULL;
		*items = NULL;
	}
	sync_buf_release(&r.body);
	free(url);
	return rc;
}

/* A 0/1 flag: 1 when set, 0 when clear, -1 when absent or not a flag. */
static int
json_flag(const cJSON *o, const char *key)
{
	long long v = sync_json_int(o, key);

	return v < 0 ? -1 : v != 0;
}

/* The instant of a mark in milliseconds. */
static int64_t
mark_ms(const struct sync_mark *m)
{
	return m->t * 1000 + m->us / 1000;
}

/*
 * Formats ms as Unipile's before/after want it, exactly
 * YYYY-MM-DDTHH:MM:SS.mmmZ (anything else is a 400); "" before 1970.
 */
static void
format_ms(int64_t ms, char *out, size_t n)
{
	char t[32];
	size_t len;

	out[0] = '\0';
	if (ms < 0)
		return;
	sync_time_format((time_t)(ms / 1000), t, sizeof(t));
	if ((len = strlen(t)) < 2)
		return;
	t[len - 1] = '\0';		/* the Z goes after the fraction */
	snprintf(out, n, "%s.%03dZ", t, (int)(ms % 1000));
}

/*
 * The phone number in an attendee's provider id: a WhatsApp id
 * ("48600100200@s.whatsapp.net", whose digits the engine reads) or a
 * number written with its "+".  Other providers' numeric ids are not
 * phones.
 */
static const char *
phone_of(const char *pid)
{
	const char *at;

	if (pid == NULL || pid[0] == '+')
		return pid;
	at = strchr(pid, '@');
	return at != NULL && pid[0] >= '0' && pid[0] <= '9' &&
	    (strcmp(at, "@s.whatsapp.net") == 0 ||
	    strcmp(at, "@c.us") == 0) ? pid : NULL;
}

/* Where a listed item stands in a walk. */
enum item {
	ITEM_BAD,		/* no usable id: reject it */
	ITEM_BELOW,		/* below the floor: the walk ends */
	ITEM_TAKE		/* take it; the walk's top follows it */
};

/*
 * The id (*id, its text in num when a number) and time (*when, *m when
 * *have_mark) of a listed item, and whether the walk takes it.
 */
static enum item
walk_item(struct walk *w, const cJSON *o, char *num, size_t n, const char **id,
    const char **when, struct sync_mark *m, int *have_mark, long *bad)
{
	*id = cJSON_IsObject(o) ? sync_json_str(o, "id", num, n, bad) : NULL;
	if (*id == NULL || **id == '\0' || strlen(*id) > SYNC_MAX_ID)
		return ITEM_BAD;
	*when = sync_json_str(o, "timestamp", NULL, 0, bad);
	*have_mark = sync_mark_set(m, *when, *id) == 0;
	if (!*have_mark)
		return ITEM_TAKE;
	return sync_walk_item(&w->sw, m) == SYNC_WALK_BELOW ? ITEM_BELOW :
	    ITEM_TAKE;
}

/*
 * The end of a listing page (next: its cursor, NULL on the last page;
 * ended: an item below the floor ended it): the walk goes on, starts a
 * new listing, or is complete.
 */
static enum sync_rc
walk_page(struct walk *w, struct sync_page *page, char **next, int ended,
    struct sync_err *err)
{
	int complete = 0;

	free(w->cursor);
	w->cursor = NULL;
	if (!ended && *next != NULL) {
		w->cursor = *next;
		*next = NULL;
	} else
		complete = !sync_walk_listed(&w->sw);
	return sync_walk_save(&w->sw, page, complete, err);
}

/* Rejects item o of page, which has no usable id (sync_page_reject()). */
static int
reject_item(struct sync_page *page, const cJSON *o)
{
	const char *why = sync_id_problem(o, "id");

	return sync_page_reject(page, NULL, "id", why != NULL ? why :
	    "not a usable id", o);
}

/* An attendee as a contact row of page. */
static int
add_attendee(struct sync_page *page, const cJSON *a)
{
	struct sync_batch *b = &page->side[0];
	struct sync_contact k;
	const cJSON *spec;
	char num[40];
	const char *pid;
	long bad = 0;

	if (!cJSON_IsObject(a))
		return reject_item(page, a);
	memset(&k, 0, sizeof(k));
	k.external_id = sync_json_str(a, "id", num, sizeof(num), &bad);
	if (k.external_id == NULL || *k.external_id == '\0' ||
	    strlen(k.external_id) > SYNC_MAX_ID)
		return reject_item(page, a);
	k.display_name = sync_json_str(a, "name", NULL, 0, &bad);
	pid = sync_json_str(a, "provider_id", NULL, 0, &bad);
	/* Instagram's handle is in its specifics; elsewhere the provider id. */
	spec = cJSON_GetObjectItemCaseSensitive(a, "specifics");
	k.username = cJSON_IsObject(spec) ? sync_json_str(spec,
	    "public_identifier", NULL, 0, &bad) : NULL;
	if (k.username == NULL)
		k.username = pid;
	k.phone = phone_of(pid);
	k.raw = a;
	b->sanitized += bad;
	return sync_batch_add_contact(b, &k);
}

/* The attendees of chat id, all their pages, as contacts of page. */
static enum sync_rc
chat_attendees(struct sync_ctx *ctx, const char *id, struct sync_page *page,
    struct sync_err *err)
{
	struct sync_buf path = SYNC_BUF_INIT(0), what = SYNC_BUF_INIT(0);
	struct sync_pager pager = { NULL, 0, 0, 0, NULL };
	char *esc = sync_url_escape(id), *cur = NULL, *next = NULL;
	const char *q[4];
	cJSON *root = NULL;
	const cJSON *items, *a;
	long sanitized = 0;
	enum sync_rc rc = SYNC_OK;

	if (esc == NULL ||
	    sync_buf_addf(&path, "/chats/%s/attendees", esc) == -1 ||
	    sync_buf_addf(&what, "cannot list the attendees of chat '%s'",
	    id) == -1)
		goto nomem;
	do {
		q[0] = cur != NULL ? "cursor" : NULL;
		q[1] = cur;
		q[2] = NULL;
		if ((rc = uni_list(ctx, path.data, q, what.data, &pager, 1, &root,
		    &items, &next, &sanitized, err)) != SYNC_OK)
			goto out;
		page->side[0].sanitized += sanitized;
		if (root == NULL) {
			/* The chat went away since it was listed. */
			sync_log(LOG_NOTICE, "source '%s': chat '%s' vanished "
			    "while it was synced (HTTP 404 on its attendees)",
			    ctx->src->name, id);
			break;
		}
		cJSON_ArrayForEach(a, items)
			if (add_attendee(page, a) == -1)
				goto nomem;
		cJSON_Delete(root);
		root = NULL;
		free(cur);
		cur = next;
		next = NULL;
	} while (cur != NULL);
	goto out;
nomem:
	rc = nomem(err);
out:
	cJSON_Delete(root);
	sync_pager_reset(&pager);
	sync_buf_release(&path);
	sync_buf_release(&what);
	free(esc);
	free(cur);
	free(next);
	return rc;
}

/*
 * s in lower case (ASCII letters; other bytes as they are) in out, or
 * NULL when it does not fit whole: a cut could split a UTF-8 character.
 */
static const char *
lower(const char *s, char *out, size_t n)
{
	size_t i;

	if (strlen(s) >= n)
		return NULL;
	for (i = 0; s[i] != '\0'; i++)
		out[i] = (char)tolower((unsigned char)s[i]);
	out[i] = '\0';
	return out;
}

/* A chat as a conversation row (reference §B.2). */
static int
add_chat(struct sync_batch *b, const cJSON *c, const char *id, const char *when)
{
	static const char *const kinds[] = { "direct", "group", "channel" };
	struct sync_conversation cv;
	char kind[32];
	const char *at;
	long long type, unread_count;
	int unread;
	long bad = 0;

	memset(&cv, 0, sizeof(cv));
	cv.external_id = id;
	cv.title = sync_json_str(c, "name", NULL, 0, &bad);
	type = sync_json_int(c, "type");
	if (type >= 0 && type <= 2)
		cv.kind = kinds[type];
	else if ((at = sync_json_str(c, "account_type", NULL, 0, &bad)) !=
	    NULL)
		/* An unknown chat type: the provider says more than nothing. */
		cv.kind = lower(at, kind, sizeof(kind));
	unread_count = sync_json_int(c, "unread_count");
	unread = json_flag(c, "unread");
	cv.unread_count = unread_count;
	/* `unread`, where the provider has it, says more than a count. */
	cv.is_read = unread >= 0 ? !unread : unread_count < 0 ? -1 :
	    unread_count == 0;
	cv.last_message_at = when;
	cv.archived = json_flag(c, "archived");
	cv.raw = c;
	b->sanitized += bad;
	return sync_batch_add_conversation(b, &cv);
}

/*
 * The chats stream: one listing page, its chats as conversations and
 * their attendees as contacts, down to the floor.
 */
static enum sync_rc
chats_fetch(struct sync_ctx *ctx, struct sync_page *page, struct sync_err *err)
{
	struct uni *p = ctx->priv;
	struct walk *w = &p->w;
	struct sync_buf what = SYNC_BUF_INIT(0);
	const char *q[10];
	cJSON *root = NULL;
	const cJSON *items, *c;
	char *next = NULL, before[32];
	long sanitized = 0;
	size_t k = 0;
	int ended = 0;
	enum sync_rc rc;

	if (sync_buf_addf(&what, "cannot list the chats of account '%s'",
	    p->account) == -1)
		return nomem(err);
	q[k++] = "account_id";
	q[k++] = p->account;
	q[k++] = "limit";
	q[k++] = p->limit;
	if (w->sw.have_before) {
		/* Exclusive: the boundary millisecond is asked for again. */
		format_ms(mark_ms(&w->sw.before) + 1, before, sizeof(before));
		q[k++] = "before";
		q[k++] = before;
	}
	if (w->cursor != NULL) {
		q[k++] = "cursor";
		q[k++] = w->cursor;
	}
	q[k] = NULL;
	if ((rc = uni_list(ctx, "/chats", q, what.data, &w->sw.pager, 0, &root,
	    &items, &next, &sanitized, err)) != SYNC_OK)
		goto out;
	page->side[1].sanitized += sanitized;
	cJSON_ArrayForEach(c, items) {
		struct sync_mark m;
		const char *id, *when;
		char num[40];
		long bad = 0;
		int have_mark;
		enum item it;

		page->fetched++;
		/* Newest activity first: one below the floor ends the walk. */
		if ((it = walk_item(w, c, num, sizeof(num), &id, &when, &m,
		    &have_mark, &bad)) == ITEM_BAD) {
			if (reject_item(page, c) == -1) {
				rc = nomem(err);
				goto out;
			}
			continue;
		}
		if (it == ITEM_BELOW) {
			ended = 1;
			break;
		}
		page->side[1].sanitized += bad;
		if (add_chat(&page->side[1], c, id, when) == -1) {
			rc = nomem(err);
			goto out;
		}
		if ((rc = chat_attendees(ctx, id, page, err)) != SYNC_OK)
			goto out;
		if (have_mark)
			sync_walk_reached(&w->sw, &m);
	}
	rc = walk_page(w, page, &next, ended, err);
out:
	cJSON_Delete(root);
	free(next);
	sync_buf_release(&what);
	return rc;
}

/* One attachment's texts for its row (numbers written as text). */
struct att_text {
	char		 id[40];
	char		 expires[32];
};

/*
 * The kind of an attachment by its variant (reference §B.3): img, video,
 * audio, file, linkedin_post, video_meeting; a sticker, a GIF and a
 * voice note by their flags.
 */
static const char *
att_kind(const cJSON *a, char *buf, size_t n)
{
	long bad = 0;
	const char *type = sync_json_str(a, "type", NULL, 0, &bad);

	if (type == NULL)
		return "file";
	if (strcmp(type, "img") == 0)
		return sync_json_bool(a, "sticker") == 1 ? "sticker" : "image";
	if (strcmp(type, "video") == 0)
		return sync_json_bool(a, "gif") == 1 ? "gif" : "video";
	if (strcmp(type, "audio") == 0)
		return sync_json_bool(a, "voice_note") == 1 ? "voice" : "audio";
	return lower(type, buf, n) != NULL ? buf : "file";
}

/*
 * The files of a message (its `attachments`, SPEC §9) into *att and
 * their texts into *tx (the caller frees both; NULL when it has none).
 * Attachments without a usable id are left out and counted in *bad.  -1
 * on ENOMEM.
 */
static int
attachments_of(const cJSON *arr, struct sync_attachment **att,
    struct att_text **tx, char (**kinds)[32], size_t *n, long *bad)
{
	size_t cap = (size_t)cJSON_GetArraySize(arr);
	const cJSON *a;

	*att = NULL;
	*tx = NULL;
	*kinds = NULL;
	*n = 0;
	if (cap == 0)
		return 0;
	if ((*att = calloc(cap, sizeof(**att))) == NULL ||
	    (*tx = calloc(cap, sizeof(**tx))) == NULL ||
	    (*kinds = calloc(cap, sizeof(**kinds))) == NULL) {
		free(*att);
		free(*tx);
		*att = NULL;
		*tx = NULL;
		return -1;
	}
	cJSON_ArrayForEach(a, arr) {
		struct sync_attachment *f = &(*att)[*n];
		struct att_text *t = &(*tx)[*n];
		const cJSON *v;

		if (!cJSON_IsObject(a) || (f->external_id = sync_json_str(a, "id",
		    t->id, sizeof(t->id), bad)) == NULL ||
		    *f->external_id == '\0' || strlen(f->external_id) > SYNC_MAX_ID) {
			(*bad)++;
			continue;
		}
		f->kind = att_kind(a, (*kinds)[*n], sizeof((*kinds)[*n]));
		f->mime_type = sync_json_str(a, "mimetype", NULL, 0, bad);
		f->name = sync_json_str(a, "file_name", NULL, 0, bad);
		/* Webhooks send sizes as strings (reference §B.3). */
		v = cJSON_GetObjectItemCaseSensitive(a, "file_size");
		f->size = cJSON_IsString(v) ? sync_cursor_int(v->valuestring) :
		    sync_json_int(a, "file_size");
		if (f->size < 0)
			f->size = -1;
		f->url = sync_json_str(a, "url", NULL, 0, bad);
		/* Milliseconds since the epoch (or, as given, a timestamp). */
		v = cJSON_GetObjectItemCaseSensitive(a, "url_expires_at");
		if (cJSON_IsNumber(v) && v->valuedouble > 0 &&
		    v->valuedouble < 1e15) {
			sync_time_format((time_t)(v->valuedouble / 1000), t->expires,
			    sizeof(t->expires));
			f->url_expires_at = t->expires;
		} else if (cJSON_IsString(v))
			f->url_expires_at = v->valuestring;
		if (sync_json_bool(a, "unavailable") == 1)
			f->unavailable = "the provider marks it unavailable";
		(*n)++;
	}
	return 0;
}

/*
 * Appends one message row.  Its provider_id names the item: a copy that
 * Unipile re-ingests under a new id, and a message that page overlaps or
 * the lookback deliver again, stay one row (the store's, SPEC §7.10).
 */
static int
add_message(struct sync_batch *b, const cJSON *mj, const char *id,
    const char *when)
{
	struct sync_message m;
	const cJSON *att;
	const char *pid, *type;
	char num[40], kind[32];
	long bad = 0;
	int sender, seen, delivered, r;

	pid = sync_json_str(mj, "provider_id", num, sizeof(num), &bad);
	memset(&m, 0, sizeof(m));
	m.external_id = id;
	m.provider_id = pid;
	m.conversation_id = sync_json_str(mj, "chat_id", NULL, 0, &bad);
	m.sender_id = sync_json_str(mj, "sender_attendee_id", NULL, 0, &bad);
	sender = json_flag(mj, "is_sender");
	m.direction = sender < 0 ? NULL : sender ? "out" : "in";
	if (json_flag(mj, "is_event") == 1)
		m.kind = "event";
	else if ((type = sync_json_str(mj, "message_type", NULL, 0, &bad)) ==
	    NULL || *type == '\0' || (m.kind = lower(type, kind,
	    sizeof(kind))) == NULL)
		m.kind = "message";
	m.body = sync_json_str(mj, "text", NULL, 0, &bad);
	m.sent_at = when;
	/* Unipile flags edits but keeps no time of them: raw has the flag. */
	seen = json_flag(mj, "seen");
	delivered = json_flag(mj, "delivered");
	m.status = seen == 1 ? "seen" : delivered == 1 ? "delivered" : NULL;
	att = cJSON_GetObjectItemCaseSensitive(mj, "attachments");
	if (cJSON_IsArray(att) && cJSON_GetArraySize(att) > 0)
		m.attachments = att;
	m.deleted = json_flag(mj, "deleted") == 1;
	m.raw = mj;
	if (m.attachments != NULL) {
		struct sync_attachment *a;
		struct att_text *tx;
		char (*kinds)[32];

		if (attachments_of(m.attachments, &a, &tx, &kinds, &m.natt,
		    &bad) == -1)
			return -1;
		m.att = a;
		b->sanitized += bad;
		r = sync_batch_add_message(b, &m);
		free(a);
		free(tx);
		free(kinds);
		return r;
	}
	b->sanitized += bad;
	return sync_batch_add_message(b, &m);
}

/*
 * The messages stream: one page of /messages, newest first, above the
 * floor.  A full walk checkpoints the oldest message of each page and, when
 * resumed, goes on just before it.
 */
static enum sync_rc
messages_fetch(struct sync_ctx *ctx, struct sync_page *page,
    struct sync_err *err)
{
	struct uni *p = ctx->priv;
	struct walk *w = &p->w;
	struct sync_buf what = SYNC_BUF_INIT(0);
	const char *q[14];
	cJSON *root = NULL;
	const cJSON *items, *mj;
	char *next = NULL, after[32], before[32];
	long sanitized = 0;
	size_t k = 0;
	int ended = 0;
	enum sync_rc rc;

	if (sync_buf_addf(&what, "cannot list the messages of account '%s'",
	    p->account) == -1)
		return nomem(err);
	q[k++] = "account_id";
	q[k++] = p->account;
	q[k++] = "limit";
	q[k++] = p->limit;
	/* Unipile's `after` and `before` are exclusive: the boundary ms again. */
	if (w->sw.have_floor) {
		format_ms(mark_ms(&w->sw.floor) - 1, after, sizeof(after));
		if (after[0] != '\0') {
			q[k++] = "after";
			q[k++] = after;
		}
	}
	if (w->sw.have_before) {
		format_ms(mark_ms(&w->sw.before) + 1, before, sizeof(before));
		q[k++] = "before";
		q[k++] = before;
	}
	if (w->cursor != NULL) {
		q[k++] = "cursor";
		q[k++] = w->cursor;
	}
	q[k] = NULL;
	if ((rc = uni_list(ctx, "/messages", q, what.data, &w->sw.pager, 0,
	    &root, &items, &next, &sanitized, err)) != SYNC_OK)
		goto out;
	page->batch.sanitized += sanitized;
	/*
	 * A new incoming message makes its conversation unread; not so the
	 * history a first or full walk brings in, whose read state is the
	 * chats stream's to say.
	 */
	page->batch.unread_on_new = w->sw.from_mark;
	cJSON_ArrayForEach(mj, items) {
		struct sync_mark m;
		const char *id, *when;
		char num[40];
		long bad = 0;
		int have_mark;
		enum item it;

		page->fetched++;
		/* An API that ignored `after` would walk on below it. */
		if ((it = walk_item(w, mj, num, sizeof(num), &id, &when, &m,
		    &have_mark, &bad)) == ITEM_BAD) {
			if (reject_item(page, mj) == -1) {
				rc = nomem(err);
				goto out;
			}
			continue;
		}
		page->batch.sanitized += bad;
		if (it == ITEM_BELOW) {
			ended = 1;
			break;
		}
		if (add_message(&page->batch, mj, id, when) == -1) {
			rc = nomem(err);
			goto out;
		}
		if (have_mark)
			sync_walk_reached(&w->sw, &m);
	}
	rc = walk_page(w, page, &next, ended, err);
out:
	cJSON_Delete(root);
	free(next);
	sync_buf_release(&what);
	return rc;
}

/* Where a stream's walk starts: the engine's walk (Unipile lists `before`). */
static void
walk_start(struct sync_ctx *ctx, struct sync_stream *st)
{
	struct uni *p = ctx->priv;

	walk_reset(p);
	sync_walk_begin(&p->w.sw, ctx, st, p->lookback, 1);
}

static enum sync_rc
uni_fetch(struct sync_ctx *ctx, struct sync_stream *st, struct sync_page *page,
    struct sync_err *err)
{
	int messages = strcmp(st->name, "messages") == 0;

	sync_batch_init(&page->batch, SYNC_ENT_MESSAGE);
	if (!messages && strcmp(st->name, "chats") != 0)
		return sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG,
		    "no stream '%s'", st->name);
	if (st->first)
		walk_start(ctx, st);
	return messages ? messages_fetch(ctx, page, err) :
	    chats_fetch(ctx, page, err);
}

/*
 * media-sync: the bytes of attachment it come from Unipile's attachment
 * endpoint (reference §B.3), GET {api}/messages/{message_id}/attachments/
 * {attachment_id}: on the source's own origin, so the engine sends the
 * X-API-KEY with it.  No request here.
 */
static enum sync_rc
uni_media_refresh(struct sync_ctx *ctx, const struct sync_media_item *it,
    struct sync_media_link *out, struct sync_err *err)
{
	struct sync_buf path = SYNC_BUF_INIT(0);
	char *api = api_base(ctx->src->url), *mid = sync_url_escape(it->message_id);
	char *aid = sync_url_escape(it->external_id);
	enum sync_rc rc;

	if (api == NULL || mid == NULL || aid == NULL ||
	    sync_buf_addf(&path, "/messages/%s/attachments/%s", mid, aid) == -1)
		rc = nomem(err);
	else
		rc = sync_url_build(api, path.data, NULL, &out->url, err);
	sync_buf_release(&path);
	free(api);
	free(mid);
	free(aid);
	return rc;
}

const struct sync_connector sync_unipile_connector = {
	.type = "unipile",
	.keys = uni_keys,
	.auth = { .header = "X-API-KEY" },
	.all_streams = uni_streams,
	.default_streams = uni_streams,
	.check = uni_check,
	.begin = uni_begin,
	.fetch = uni_fetch,
	.cursor_max = sync_walk_max,
	.end = uni_end,
	.no_poll_reason = "source type 'unipile' reports delivery in its "
	    "messages; there is nothing to poll",
	.media_refresh = uni_media_refresh,
};
