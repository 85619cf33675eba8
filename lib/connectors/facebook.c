/*
 * facebook.c -- the connector for a Facebook Page's conversations through
 * the Graph API (Messenger, or Instagram through the Page): one stream,
 * "conversations", that walks /{page-id}/conversations newest first and,
 * for each conversation changed since the watermark, its messages newest
 * first.  See ../shared/reference/facebook-unipile.md §A.
 *
 * The walk is the engine's keyset walk (walk.c) over the conversations'
 * (updated_time, id): floor, top, cold start, and a walk cut short that is
 * continued.  Graph lists no conversations below a given time, so a walk
 * continued reads the listing again from the top and skips the messages
 * of the conversations an earlier pass stored.  Graph's paging cursors
 * live in memory for one pass only, and its `next` URLs (which carry the
 * token) are never used or logged: the next page is asked for with `after`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "connector.h"

#define PAGE_LIMIT	100	/* conversations or messages per request */
#define IG_READABLE	20	/* Instagram: messages readable per conversation */

static const char *const fb_streams[] = { "conversations", NULL };
static const char *const fb_platforms[] = { "messenger", "instagram", NULL };

static const struct sync_keydef fb_keys[] = {
	{ "page_id", SYNC_KEY_STRING, 1, 0, 0, NULL },
	{ "platform", SYNC_KEY_STRING, 0, 0, 0, NULL },
	{ "graph_version", SYNC_KEY_STRING, 0, 0, 0, NULL },
	{ "app_secret_file", SYNC_KEY_SECRET_FILE, 0, 0, 0, NULL },
	{ "app_secret_env", SYNC_KEY_SECRET_ENV, 0, 0, 0, NULL },
	SYNC_KEYS_WALK,
	{ NULL, SYNC_KEY_STRING, 0, 0, 0, NULL }
};

/* A conversation of the current listing page whose messages are due. */
struct due {
	char		*id;
	struct sync_mark mark;		/* (updated_time, id) */
	int		 stored;	/* its messages are in already */
	long long	 count;		/* message_count, -1 unknown */
	long		 unreadable;	/* listed without details (Instagram) */
	char		 oldest[40];	/* created_time of the oldest detailed */
};

struct fb {
	char		*base;		/* url + "/" + version */
	char		*page;		/* the page id, escaped */
	int		 instagram;
	char		*self;		/* who the Page is in messages: its id,
					   or its Instagram account's */
	long long	 lookback;

	/* The walk of this pass. */
	int		 started;
	struct sync_walk w;		/* the engine's walk of the listing */
	char		*conv_after;	/* Graph cursor of the next listing page */
	int		 conv_end;	/* no listing page left (or below floor) */
	struct due	*due;		/* conversations of the listing page */
	size_t		 ndue, idue;
	char		*msg_after;	/* cursor in due[idue]'s messages */
	struct sync_pager msg_pager;	/* of due[idue]'s messages */
	long		 unreadable;	/* Instagram messages beyond the limit */
};

static enum sync_rc
fb_check(struct sync_source_cfg *src, struct sync_err *err)
{
	const char *p = sync_cfg_str(src, "platform"), *v;
	size_t i;

	if (p != NULL) {
		for (i = 0; fb_platforms[i] != NULL && strcmp(fb_platforms[i], p) != 0;
		    i++)
			;
		if (fb_platforms[i] == NULL)
			return sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG,
			    "source '%s': 'platform' must be \"messenger\" or "
			    "\"instagram\", not \"%s\"", src->name, p);
	}
	if ((v = sync_cfg_str(src, "graph_version")) != NULL &&
	    (v[0] != 'v' || strspn(v + 1, "0123456789.") != strlen(v + 1) ||
	    v[1] == '\0'))
		return sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG,
		    "source '%s': 'graph_version' must look like \"v21.0\", not "
		    "\"%s\"", src->name, v);
	if (sync_cfg_str(src, "app_secret_file") != NULL &&
	    sync_cfg_str(src, "app_secret_env") != NULL)
		return sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG,
		    "source '%s': give 'app_secret_file' or 'app_secret_env', not "
		    "both", src->name);
	if ((v = sync_cfg_str(src, "page_id")) == NULL || *v == '\0')
		return sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG,
		    "source '%s': 'page_id' is empty", src->name);
	/* Instagram's platform terms forbid keeping its media: links only. */
	if (!src->media_set && p != NULL && strcmp(p, "instagram") == 0)
		src->media = SYNC_MEDIA_LINK;
	return SYNC_OK;
}

/* appsecret_proof: hex HMAC-SHA256 of the token keyed with the app secret. */
static char *
make_proof(const char *secret, const char *token)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int n = 0, i;
	char *hex;

	if (HMAC(EVP_sha256(), secret, (int)strlen(secret),
	    (const unsigned char *)token, strlen(token), mac, &n) == NULL ||
	    (hex = malloc(2 * n + 1)) == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		snprintf(hex + 2 * i, 3, "%02x", mac[i]);
	return hex;
}

/*
 * The proof, with an app secret: computed once at load time; the engine
 * masks it and sends it with the token (auth.proof_query).
 */
static enum sync_rc
fb_proof(const struct sync_source_cfg *src, char **out, struct sync_err *err)
{
	const char *secret = sync_cfg_str(src, "app_secret_file");

	if (secret == NULL)
		secret = sync_cfg_str(src, "app_secret_env");
	*out = NULL;
	if (secret != NULL && (*out = make_proof(secret, src->token)) == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_CONFIG, "out of memory");
	return SYNC_OK;
}

/*
 * Rate-limit codes (reference §A.6): the answer is HTTP 400 all the same.
 * 80000-80014 are the business use case limits (Pages, Instagram,
 * Messenger, ...).
 */
static int
rate_code(long long code)
{
	return code == 4 || code == 17 || code == 32 || code == 341 ||
	    code == 613 || (code >= 80000 && code <= 80014);
}

/* The longest estimated_time_to_regain_access in a usage header, seconds. */
static double
regain_wait(const char *hdr)
{
	cJSON *j, *obj, *e;
	double best = -1;

	if (hdr == NULL || (j = cJSON_Parse(hdr)) == NULL)
		return -1;
	cJSON_ArrayForEach(obj, j) {
		cJSON_ArrayForEach(e, obj) {
			const cJSON *t = cJSON_GetObjectItemCaseSensitive(e,
			    "estimated_time_to_regain_access");

			if (cJSON_IsNumber(t) && t->valuedouble * 60 > best)
				best = t->valuedouble * 60;
		}
	}
	cJSON_Delete(j);
	return best;
}

/* The error object of a Graph answer, parsed; the caller deletes *root. */
static const cJSON *
graph_error(const struct sync_http_resp *r, cJSON **root)
{
	const cJSON *e;

	*root = cJSON_ParseWithLength(r->body.data != NULL ? r->body.data : "",
	    r->body.len);
	e = cJSON_GetObjectItemCaseSensitive(*root, "error");
	return cJSON_IsObject(e) ? e : NULL;
}

/*
 * Graph says what its errors are by error.code, not by HTTP status.  An
 * HTTP 429 (what a proxy or gateway in front of the Graph API answers,
 * whatever its body) is the engine's: retried, its Retry-After honoured.
 */
static enum sync_http_verdict
fb_classify(struct sync_http *h, const struct sync_http_resp *r, double *wait,
    char *why, size_t n)
{
	const cJSON *e;
	cJSON *root;
	enum sync_http_verdict v;
	long long code;

	if (r->status < 400 || r->status >= 500)
		return SYNC_HTTP_DEFAULT;
	if ((e = graph_error(r, &root)) == NULL) {
		cJSON_Delete(root);
		return SYNC_HTTP_DEFAULT;
	}
	code = sync_json_int(e, "code");
	if (rate_code(code)) {
		double w = -1;

		/* Retry-After, when there is one, wins (the engine reads it). */
		if (r->status != 429 || sync_http_header(h, "retry-after") == NULL) {
			w = regain_wait(sync_http_header(h,
			    "x-business-use-case-usage"));
			if (w <= 0)
				w = regain_wait(sync_http_header(h, "x-app-usage"));
		}
		*wait = w;
		snprintf(why, n, "Graph error %lld (rate limit)", code);
		v = SYNC_HTTP_RATE_LIMIT;
	} else if (r->status == 429)
		v = SYNC_HTTP_DEFAULT;
	else if (code == 1 || code == 2 ||
	    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "is_transient"))) {
		snprintf(why, n, "Graph error %lld (temporary)", code);
		v = SYNC_HTTP_RETRY;
	} else
		v = SYNC_HTTP_FINAL;
	cJSON_Delete(root);
	return v;
}

/* A final Graph error as ours: a bad token is auth (77), and so on. */
static enum sync_rc
graph_fail(const struct sync_http_resp *r, const char *safe, struct sync_err *err)
{
	const cJSON *e, *m;
	cJSON *root;
	long long code, sub;
	enum sync_rc rc;
	char msg[200], subs[32] = "";

	if ((e = graph_error(r, &root)) == NULL) {
		cJSON_Delete(root);
		return sync_http_status_error(r, safe, err);
	}
	code = sync_json_int(e, "code");
	if ((sub = sync_json_int(e, "error_subcode")) > 0)
		snprintf(subs, sizeof(subs), " (subcode %lld)", sub);
	m = cJSON_GetObjectItemCaseSensitive(e, "message");
	/* Redacted before it is cut: a token Graph echoes is masked whole. */
	sync_redact_excerpt(msg, sizeof(msg), cJSON_IsString(m) ? m->valuestring :
	    NULL);
	cJSON_Delete(root);
	if (code == 190 || code == 102 || code == 10 || (code >= 200 && code < 300) ||
	    (code == 100 && strstr(msg, "appsecret_proof") != NULL))
		rc = sync_err_set(err, SYNC_EPERM, SYNC_ERR_AUTH,
		    "'%s': credentials rejected: Graph error %lld%s: %s", safe,
		    code, subs, msg);
	else if (rate_code(code))
		rc = sync_err_set(err, SYNC_ETEMP, SYNC_ERR_RATE_LIMIT,
		    "'%s': rate limited: Graph error %lld: %s", safe, code, msg);
	else
		rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "'%s': Graph error %lld%s: %s", safe, code, subs, msg);
	return rc;
}

static enum sync_rc graph_get(struct sync_ctx *, const char *, const char **,
		    cJSON **, long *, struct sync_err *);

/*
 * On Instagram the Page writes as its Instagram account: its id, from
 * /{page-id}?fields=instagram_business_account, tells our messages apart.
 */
static enum sync_rc
learn_self(struct sync_ctx *ctx, struct sync_err *err)
{
	struct fb *p = ctx->priv;
	const char *q[] = { "fields", "instagram_business_account", NULL };
	struct sync_buf path = SYNC_BUF_INIT(0);
	cJSON *root = NULL;
	const cJSON *id;
	enum sync_rc rc;

	if (sync_buf_addf(&path, "/%s", p->page) == -1)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
	rc = graph_get(ctx, path.data, q, &root, NULL, err);
	sync_buf_release(&path);
	if (rc != SYNC_OK)
		return rc;
	id = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root,
	    "instagram_business_account"), "id");
	if (cJSON_IsString(id)) {
		free(p->self);
		if ((p->self = strdup(id->valuestring)) == NULL)
			rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA,
			    "out of memory");
	} else
		sync_log(LOG_WARNING, "source '%s': page '%s' names no Instagram "
		    "account: the Page's own messages cannot be told apart",
		    ctx->src->name, sync_cfg_str(ctx->src, "page_id"));
	cJSON_Delete(root);
	return rc;
}

static enum sync_rc
fb_begin(struct sync_ctx *ctx, struct sync_err *err)
{
	struct fb *p;
	struct sync_buf b = SYNC_BUF_INIT(0);
	const char *ver = sync_cfg_str(ctx->src, "graph_version");
	const char *plat = sync_cfg_str(ctx->src, "platform");

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_NETWORK, "out of memory");
	ctx->priv = p;
	p->instagram = plat != NULL && strcmp(plat, "instagram") == 0;
	p->lookback = sync_cfg_int(ctx->src, "lookback", 300);
	if (sync_buf_addf(&b, "/%s", ver != NULL ? ver : "v21.0") == -1 ||
	    (p->page = sync_url_escape(sync_cfg_str(ctx->src, "page_id"))) == NULL)
		goto nomem;
	p->base = b.data;
	sync_http_set_classify(ctx->http, fb_classify);
	if ((p->self = strdup(sync_cfg_str(ctx->src, "page_id"))) == NULL)
		goto nomem;
	if (p->instagram)
		return learn_self(ctx, err);
	return SYNC_OK;
nomem:
	return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_NETWORK, "out of memory");
}

static void
due_clear(struct fb *p)
{
	size_t i;

	for (i = 0; i < p->ndue; i++)
		free(p->due[i].id);
	free(p->due);
	p->due = NULL;
	p->ndue = p->idue = 0;
}

static void
fb_end(struct sync_ctx *ctx)
{
	struct fb *p = ctx->priv;

	if (p == NULL)
		return;
	due_clear(p);
	sync_walk_release(&p->w);
	sync_pager_reset(&p->msg_pager);
	free(p->conv_after);
	free(p->msg_after);
	free(p->base);
	free(p->page);
	free(p->self);
	free(p);
	ctx->priv = NULL;
}

/*
 * GETs path (under the version) with query pairs q; *json gets the
 * answer.  The engine adds the token and the proof (auth).
 */
static enum sync_rc
graph_get(struct sync_ctx *ctx, const char *path, const char **q, cJSON **json,
    long *sanitized, struct sync_err *err)
{
	struct fb *p = ctx->priv;
	struct sync_http_resp r = { 0, SYNC_BUF_INIT(0) };
	struct sync_buf full = SYNC_BUF_INIT(0);
	char *url = NULL;
	enum sync_rc rc;

	*json = NULL;
	if (sync_buf_addf(&full, "%s%s", p->base, path) == -1) {
		rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_NETWORK, "out of memory");
		goto out;
	}
	if ((rc = sync_url_build(ctx->src->url, full.data, q, &url, err)) != SYNC_OK ||
	    (rc = sync_http_get(ctx->http, url, &r, err)) != SYNC_OK)
		goto out;
	if (r.status < 200 || r.status > 299)
		rc = graph_fail(&r, url, err);
	else if ((rc = sync_http_parse_json(&r, url, json, sanitized, err)) ==
	    SYNC_OK && !cJSON_IsObject(*json)) {
		cJSON_Delete(*json);
		*json = NULL;
		rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "'%s': the answer is not a JSON object", url);
	}
out:
	sync_buf_release(&r.body);
	sync_buf_release(&full);
	free(url);
	return rc;
}

/*
 * The cursor of the next page, or NULL at the end (no `next`).  A cursor
 * seen before in the pagination, or endless empty pages, are a protocol
 * error, not an endless walk (the pager's).
 */
static enum sync_rc
next_cursor(const cJSON *root, struct sync_pager *pager, char **out,
    const char *what, struct sync_err *err)
{
	const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
	enum sync_rc rc;

	const cJSON *pg = cJSON_GetObjectItemCaseSensitive(root, "paging");
	const cJSON *cur = cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(pg, "cursors"), "after");

	*out = NULL;
	if (cJSON_GetObjectItemCaseSensitive(pg, "next") == NULL)
		return SYNC_OK;
	if (!cJSON_IsString(cur) || cur->valuestring[0] == '\0')
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "%s: a page with 'next' but no 'after' cursor", what);
	if ((rc = sync_pager_next(pager, what, cur->valuestring,
	    (long)cJSON_GetArraySize(data), err)) != SYNC_OK)
		return rc;
	if ((*out = strdup(cur->valuestring)) == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
	return SYNC_OK;
}

/* A person of participants/from/to as a contact row of page. */
static int
add_person(struct sync_page *page, const cJSON *u)
{
	struct sync_batch *b = &page->side[0];
	struct sync_contact k;
	const char *why;
	char num[40];
	long bad = 0;

	if (!cJSON_IsObject(u))
		return 0;
	memset(&k, 0, sizeof(k));
	k.external_id = sync_json_str(u, "id", num, sizeof(num), &bad);
	k.display_name = sync_json_str(u, "name", NULL, 0, &bad);
	k.username = sync_json_str(u, "username", NULL, 0, &bad);
	if (k.display_name == NULL)
		k.display_name = k.username;
	k.raw = u;
	if ((why = sync_id_problem(u, "id")) != NULL || k.external_id == NULL)
		return sync_page_reject(page, NULL, "id", why != NULL ? why :
		    "not a usable id", u);
	b->sanitized += bad;
	return sync_batch_add_contact(b, &k);
}

/* The conversation's title: the names of the people in it but the Page. */
static char *
title_of(const cJSON *conv, const char *page)
{
	const cJSON *u, *list = cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(conv, "participants"), "data");
	struct sync_buf b = SYNC_BUF_INIT(0);
	long bad = 0;

	cJSON_ArrayForEach(u, list) {
		const char *id = sync_json_str(u, "id", NULL, 0, &bad);
		const char *name = sync_json_str(u, "name", NULL, 0, &bad);

		if (name == NULL)
			name = sync_json_str(u, "username", NULL, 0, &bad);
		if (name == NULL || (id != NULL && strcmp(id, page) == 0))
			continue;
		if (sync_buf_addf(&b, "%s%s", b.len ? ", " : "", name) == -1) {
			sync_buf_release(&b);
			return NULL;
		}
	}
	return b.data;
}

/*
 * One page of the conversation listing: the conversations at or above the
 * floor become rows (with their participants) and are queued for their
 * messages; one below it ends the walk.
 */
static enum sync_rc
list_page(struct sync_ctx *ctx, struct sync_page *page, struct sync_err *err)
{
	struct fb *p = ctx->priv;
	struct sync_buf path = SYNC_BUF_INIT(0);
	char lim[16];
	const char *q[12];
	cJSON *root = NULL;
	const cJSON *data, *c;
	long sanitized = 0;
	size_t k = 0, cap;
	enum sync_rc rc;

	if (sync_buf_addf(&path, "/%s/conversations", p->page) == -1)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
	snprintf(lim, sizeof(lim), "%d", PAGE_LIMIT);
	q[k++] = "platform";
	q[k++] = p->instagram ? "instagram" : "messenger";
	q[k++] = "fields";
	q[k++] = "id,updated_time,message_count,unread_count,snippet,link,"
	    "participants,can_reply";
	q[k++] = "limit";
	q[k++] = lim;
	if (p->conv_after != NULL) {
		q[k++] = "after";
		q[k++] = p->conv_after;
	}
	q[k] = NULL;
	if ((rc = graph_get(ctx, path.data, q, &root, &sanitized, err)) != SYNC_OK)
		goto out;
	page->side[1].sanitized += sanitized;
	data = cJSON_GetObjectItemCaseSensitive(root, "data");
	if (!cJSON_IsArray(data)) {
		rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "conversations of page '%s': the answer has no 'data' array",
		    sync_cfg_str(ctx->src, "page_id"));
		goto out;
	}
	due_clear(p);
	cap = (size_t)cJSON_GetArraySize(data) + 1;
	if ((p->due = calloc(cap, sizeof(*p->due))) == NULL)
		goto nomem;
	cJSON_ArrayForEach(c, data) {
		struct sync_conversation cv;
		struct sync_mark m;
		const cJSON *u;
		const char *why;
		char *title;
		long bad = 0;
		long long unread;
		int r;

		page->fetched++;
		memset(&cv, 0, sizeof(cv));
		cv.external_id = cJSON_IsObject(c) ? sync_json_str(c, "id", NULL, 0,
		    &bad) : NULL;
		cv.last_message_at = sync_json_str(c, "updated_time", NULL, 0, &bad);
		if ((why = sync_id_problem(c, "id")) != NULL || cv.external_id == NULL ||
		    sync_mark_set(&m, cv.last_message_at, cv.external_id) == -1) {
			/* Not storable: no usable id, or no time to walk by. */
			if (why == NULL && cv.external_id == NULL)
				why = "not a usable id";
			if (sync_page_reject(page, NULL, why != NULL ? "id" :
			    "updated_time", why != NULL ? why : "not a timestamp",
			    c) == -1)
				goto nomem;
			continue;
		}
		/* Newest first: the first one below the floor ends the walk. */
		if (sync_walk_item(&p->w, &m) == SYNC_WALK_BELOW) {
			p->conv_end = 1;
			break;
		}
		unread = sync_json_int(c, "unread_count");
		cv.unread_count = unread;
		cv.is_read = unread < 0 ? -1 : unread == 0;
		cv.kind = p->instagram ? "instagram" : "messenger";
		cv.archived = -1;
		cv.raw = c;
		title = title_of(c, sync_cfg_str(ctx->src, "page_id"));
		cv.title = title;
		r = sync_batch_add_conversation(&page->side[1], &cv);
		free(title);
		if (r == -1)
			goto nomem;
		page->side[1].sanitized += bad;
		cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(
		    cJSON_GetObjectItemCaseSensitive(c, "participants"), "data"))
			if (add_person(page, u) == -1)
				goto nomem;
		/*
		 * A walk continued: a conversation that an earlier pass of
		 * it stored, and unchanged since, had its messages read then.
		 */
		if ((p->due[p->ndue].id = strdup(cv.external_id)) == NULL)
			goto nomem;
		p->due[p->ndue].stored = sync_walk_stored(&p->w, &m);
		p->due[p->ndue].count = sync_json_int(c, "message_count");
		p->due[p->ndue++].mark = m;
	}
	if (!p->conv_end) {
		char *next = NULL;

		if ((rc = next_cursor(root, &p->w.pager, &next, "conversations",
		    err)) != SYNC_OK)
			goto out;
		free(p->conv_after);
		p->conv_after = next;
		if (next == NULL)
			p->conv_end = 1;
	}
	if (p->conv_end)
		sync_walk_listed(&p->w);	/* Graph: no listing below a time */
	goto out;
nomem:
	rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
out:
	cJSON_Delete(root);
	sync_buf_release(&path);
	return rc;
}

/*
 * Tells the engine what the walk of conversation d learnt (SPEC §6
 * coverage): the Graph API's message_count, and on Instagram, which
 * details only the newest IG_READABLE messages, how many it will not give
 * and from when on it gives them.  A listing read to its end (not stopped
 * at the walk's floor) counts them; else message_count says how many.
 */
static int
history(const struct fb *p, struct sync_page *page, const struct due *d,
    int ended)
{
	struct sync_history h;

	memset(&h, 0, sizeof(h));
	h.conversation = d->id;
	h.upstream_count = d->count;
	h.unrecoverable = h.gaps = -1;
	if (p->instagram && !ended) {
		h.unrecoverable = d->unreadable;
		h.listable_from = d->unreadable > 0 && d->oldest[0] != '\0' ?
		    d->oldest : "";
	} else if (p->instagram && d->count > IG_READABLE)
		h.unrecoverable = d->count - IG_READABLE;
	return sync_page_history(page, &h);
}

/* ---- attachments (SPEC §9) ------------------------------------------------ */

/* The files of one message: att[] and the strings they point into. */
struct fb_atts {
	struct sync_attachment *a;
	char		(*ids)[40];	/* an index, or a numeric id */
	size_t		 n;
};

static void
atts_release(struct fb_atts *x)
{
	free(x->a);
	free(x->ids);
	memset(x, 0, sizeof(*x));
}

/* An attachment's link: the image's, the video's, else the file's. */
static const char *
att_url(const cJSON *a)
{
	const char *u;

	if ((u = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(a, "image_data"), "url"))) != NULL ||
	    (u = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(a, "video_data"), "url"))) != NULL ||
	    (u = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a,
	    "file_url"))) != NULL)
		return *u != '\0' ? u : NULL;
	return NULL;
}

/* An attachment's id, or (none) its index i, into buf. */
static const char *
att_id(const cJSON *a, size_t i, char *buf, size_t n)
{
	const char *id;
	long bad = 0;

	if ((id = sync_json_str(a, "id", buf, n, &bad)) != NULL && *id != '\0')
		return id;
	snprintf(buf, n, "%zu", i);
	return buf;
}

/* Its kind: a sticker, an image, a video, an audio file, else a file. */
static const char *
att_kind(const cJSON *a, const char *mime)
{
	const cJSON *img = cJSON_GetObjectItemCaseSensitive(a, "image_data");

	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(img, "render_as_sticker")))
		return "sticker";
	if (img != NULL || (mime != NULL && strncmp(mime, "image/", 6) == 0))
		return "image";
	if (cJSON_GetObjectItemCaseSensitive(a, "video_data") != NULL ||
	    (mime != NULL && strncmp(mime, "video/", 6) == 0))
		return "video";
	if (mime != NULL && strncmp(mime, "audio/", 6) == 0)
		return "audio";
	return "file";
}

/*
 * Graph's attachments.data of a message as x (SPEC §9): the attachment's
 * id (else its index), kind, mime_type, name, size and link as received
 * (the engine drops its credentials and reads its oe= expiry).  One with
 * no link at all (a template, a share) is no file.  -1 on ENOMEM.
 */
static int
fb_attachments(const cJSON *data, struct fb_atts *x)
{
	const cJSON *a;
	size_t n = (size_t)cJSON_GetArraySize(data), i = 0;

	memset(x, 0, sizeof(*x));
	if (!cJSON_IsArray(data) || n == 0)
		return 0;
	if ((x->a = calloc(n, sizeof(*x->a))) == NULL ||
	    (x->ids = calloc(n, sizeof(*x->ids))) == NULL) {
		atts_release(x);
		return -1;
	}
	cJSON_ArrayForEach(a, data) {
		struct sync_attachment *t = &x->a[x->n];
		long bad = 0;
		long long size;
		const cJSON *sz;

		if (!cJSON_IsObject(a)) {
			i++;
			continue;
		}
		t->external_id = att_id(a, i++, x->ids[x->n], sizeof(x->ids[0]));
		t->mime_type = sync_json_str(a, "mime_type", NULL, 0, &bad);
		t->name = sync_json_str(a, "name", NULL, 0, &bad);
		t->kind = att_kind(a, t->mime_type);
		sz = cJSON_GetObjectItemCaseSensitive(a, "size");
		size = cJSON_IsString(sz) ? strtoll(sz->valuestring, NULL, 10) :
		    sync_json_int(a, "size");
		t->size = size > 0 ? size : -1;
		if ((t->url = att_url(a)) == NULL)
			t->unavailable = "no file behind the attachment upstream";
		x->n++;
	}
	return 0;
}

/* One page of a due conversation's messages, newest first, down to the floor. */
static enum sync_rc
messages_page(struct sync_ctx *ctx, struct sync_page *page, struct sync_err *err)
{
	struct fb *p = ctx->priv;
	struct due *d = &p->due[p->idue];
	const char *page_id = sync_cfg_str(ctx->src, "page_id");
	struct sync_buf path = SYNC_BUF_INIT(0);
	char lim[16];
	const char *q[10];
	cJSON *root = NULL;
	const cJSON *data, *mj;
	int ended = 0;
	long sanitized = 0;
	size_t k = 0;
	enum sync_rc rc;
	char *esc = sync_url_escape(d->id), *next = NULL;

	if (esc == NULL || sync_buf_addf(&path, "/%s/messages", esc) == -1) {
		free(esc);
		sync_buf_release(&path);
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
	}
	free(esc);
	snprintf(lim, sizeof(lim), "%d", PAGE_LIMIT);
	q[k++] = "fields";
	q[k++] = "id,created_time,from,to,message,attachments,tags";
	q[k++] = "limit";
	q[k++] = lim;
	if (p->msg_after != NULL) {
		q[k++] = "after";
		q[k++] = p->msg_after;
	}
	q[k] = NULL;
	sync_batch_init(&page->batch, SYNC_ENT_MESSAGE);
	if ((rc = graph_get(ctx, path.data, q, &root, &sanitized, err)) != SYNC_OK)
		goto out;
	page->batch.sanitized += sanitized;
	data = cJSON_GetObjectItemCaseSensitive(root, "data");
	if (!cJSON_IsArray(data)) {
		rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
		    "messages of conversation '%s': the answer has no 'data' array",
		    d->id);
		goto out;
	}
	cJSON_ArrayForEach(mj, data) {
		struct sync_message m;
		struct sync_mark mm;
		const cJSON *from, *att;
		struct fb_atts files;
		const char *why;
		char num[40];
		long bad = 0;
		int r;

		page->fetched++;
		memset(&m, 0, sizeof(m));
		m.external_id = cJSON_IsObject(mj) ? sync_json_str(mj, "id", NULL, 0,
		    &bad) : NULL;
		m.sent_at = cJSON_IsObject(mj) ? sync_json_str(mj, "created_time",
		    NULL, 0, &bad) : NULL;
		/* Not storable: no usable id, or no time to walk by. */
		if ((why = sync_id_problem(mj, "id")) != NULL || m.external_id == NULL ||
		    sync_mark_set(&mm, m.sent_at, m.external_id) == -1) {
			if (why == NULL && m.external_id == NULL)
				why = "not a usable id";
			if (sync_page_reject(page, NULL, why != NULL ? "id" :
			    "created_time", why != NULL ? why : "not a timestamp",
			    mj) == -1) {
				rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA,
				    "out of memory");
				goto out;
			}
			continue;
		}
		if (sync_walk_older(&p->w, &mm)) {
			ended = 1;
			break;
		}
		/*
		 * Instagram lists every message but details only the newest
		 * 20 of a conversation: the others come with their id and
		 * time alone, and cannot be stored.
		 */
		if ((from = cJSON_GetObjectItemCaseSensitive(mj, "from")) == NULL) {
			p->unreadable++;
			d->unreadable++;
			continue;
		}
		snprintf(d->oldest, sizeof(d->oldest), "%s", m.sent_at);
		m.conversation_id = d->id;
		m.sender_id = sync_json_str(from, "id", num, sizeof(num), &bad);
		m.direction = m.sender_id != NULL && (strcmp(m.sender_id, page_id) == 0 ||
		    strcmp(m.sender_id, p->self) == 0) ? "out" : "in";
		m.kind = "message";
		m.body = sync_json_str(mj, "message", NULL, 0, &bad);
		att = cJSON_GetObjectItemCaseSensitive(
		    cJSON_GetObjectItemCaseSensitive(mj, "attachments"), "data");
		m.attachments = cJSON_IsArray(att) ? att : NULL;
		m.raw = mj;
		page->batch.sanitized += bad;
		if ((r = fb_attachments(att, &files)) == 0) {
			m.att = files.a;
			m.natt = files.n;
			r = sync_batch_add_message(&page->batch, &m);
			atts_release(&files);
		}
		if (r == -1) {
			rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA,
			    "out of memory");
			goto out;
		}
	}
	if (!ended && (rc = next_cursor(root, &p->msg_pager, &next, "messages",
	    err)) != SYNC_OK)
		goto out;
	free(p->msg_after);
	p->msg_after = next;
	if (next == NULL) {
		/* This conversation is done: what its walk learnt of it. */
		if (history(p, page, d, ended) == -1) {
			rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA,
			    "out of memory");
			goto out;
		}
		sync_walk_reached(&p->w, &d->mark);
		sync_pager_reset(&p->msg_pager);
		p->idue++;
	}
out:
	cJSON_Delete(root);
	sync_buf_release(&path);
	return rc;
}

static enum sync_rc
fb_fetch(struct sync_ctx *ctx, struct sync_stream *st, struct sync_page *page,
    struct sync_err *err)
{
	struct fb *p = ctx->priv;
	enum sync_rc rc;
	int complete;

	sync_batch_init(&page->batch, SYNC_ENT_MESSAGE);
	if (!p->started) {
		p->started = 1;
		sync_walk_begin(&p->w, ctx, st, p->lookback, 0);
		p->msg_pager.stream = st->name;
	}
	/* Conversations whose messages an earlier pass stored: passed. */
	while (p->idue < p->ndue && p->due[p->idue].stored)
		sync_walk_reached(&p->w, &p->due[p->idue++].mark);
	if (p->idue < p->ndue) {
		if ((rc = messages_page(ctx, page, err)) != SYNC_OK)
			return rc;
	} else if (!p->conv_end) {
		if ((rc = list_page(ctx, page, err)) != SYNC_OK)
			return rc;
	}
	while (p->idue < p->ndue && p->due[p->idue].stored)
		sync_walk_reached(&p->w, &p->due[p->idue++].mark);
	/* The walk is complete: now, and only now, the watermark. */
	complete = p->conv_end && p->idue >= p->ndue;
	if ((rc = sync_walk_save(&p->w, page, complete, err)) != SYNC_OK)
		return rc;
	if (complete && p->unreadable > 0) {
		st->counts->gaps += p->unreadable;
		sync_log(LOG_WARNING, "source '%s': %ld message(s) could "
		    "not be read: Instagram details only the newest %d of a "
		    "conversation (sync more often, or use webhooks)",
		    ctx->src->name, p->unreadable, IG_READABLE);
	}
	return SYNC_OK;
}

/*
 * Whether a Graph error says the object asked for is gone for good: 803
 * (no such object), subcode 33 (does not exist) or 2018001 (no matching
 * message), or 100 saying it was deleted (Instagram's older messages).
 * why gets Graph's words (redacted).
 */
static int
graph_gone(const struct sync_http_resp *r, char *why, size_t n)
{
	const cJSON *e;
	cJSON *root;
	long long code, sub;
	char msg[80];
	int gone;

	if ((e = graph_error(r, &root)) == NULL) {
		cJSON_Delete(root);
		return r->status == 404 || r->status == 410;
	}
	code = sync_json_int(e, "code");
	sub = sync_json_int(e, "error_subcode");
	sync_redact_excerpt(msg, sizeof(msg), cJSON_GetStringValue(
	    cJSON_GetObjectItemCaseSensitive(e, "message")));
	cJSON_Delete(root);
	gone = code == 803 || sub == 33 || sub == 2018001 || (code == 100 &&
	    strstr(msg, "appsecret_proof") == NULL && (strstr(msg, "deleted") !=
	    NULL || strstr(msg, "does not exist") != NULL));
	snprintf(why, n, "Graph error %lld: %s", code, msg);
	return gone;
}

/* The expiry of a Facebook CDN link (oe=<hex Unix time>), or NULL. */
static char *
oe_expiry(const char *url)
{
	const char *q = strchr(url, '?'), *v;
	char t[64], *end;
	unsigned long long e;

	for (v = q; v != NULL; v = strchr(v + 1, '&'))
		if (strncmp(v + 1, "oe=", 3) == 0)
			break;
	if (v == NULL)
		return NULL;
	e = strtoull(v + 4, &end, 16);
	if (end == v + 4 || (*end != '\0' && *end != '&') || e == 0 ||
	    e > 253402300799ULL)
		return NULL;
	sync_time_format((time_t)e, t, sizeof(t));
	return strdup(t);
}

/*
 * media-sync: a fresh read of the message (GET /{message-id}?fields=
 * attachments, with the source's token and proof) and the link of the
 * same attachment (by id, else by index).  A message Graph says is gone,
 * or that no longer has the attachment, never gives it again.
 */
static enum sync_rc
fb_media_refresh(struct sync_ctx *ctx, const struct sync_media_item *it,
    struct sync_media_link *out, struct sync_err *err)
{
	struct fb *p = ctx->priv;
	const char *q[] = { "fields", "attachments", NULL };
	struct sync_http_resp r = { 0, SYNC_BUF_INIT(0) };
	struct sync_buf full = SYNC_BUF_INIT(0);
	struct fb_atts files;
	cJSON *root = NULL;
	char *esc = NULL, *url = NULL, why[120];
	const char *link = NULL;
	enum sync_rc rc;
	size_t i;

	memset(&files, 0, sizeof(files));
	if ((esc = sync_url_escape(it->message_id)) == NULL ||
	    sync_buf_addf(&full, "%s/%s", p->base, esc) == -1) {
		rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
		goto out;
	}
	if ((rc = sync_url_build(ctx->src->url, full.data, q, &url, err)) != SYNC_OK ||
	    (rc = sync_http_get(ctx->http, url, &r, err)) != SYNC_OK)
		goto out;
	if (r.status < 200 || r.status > 299) {
		if (graph_gone(&r, why, sizeof(why)))
			snprintf(out->unavailable, sizeof(out->unavailable),
			    "the message is gone upstream (%s)", why);
		else
			rc = graph_fail(&r, url, err);
		goto out;
	}
	if ((rc = sync_http_parse_json(&r, url, &root, NULL, err)) != SYNC_OK)
		goto out;
	if (fb_attachments(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(root, "attachments"), "data"),
	    &files) == -1) {
		rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
		goto out;
	}
	for (i = 0; i < files.n; i++)
		if (strcmp(files.a[i].external_id, it->external_id) == 0)
			break;
	if (i == files.n)
		snprintf(out->unavailable, sizeof(out->unavailable),
		    "the attachment is gone from the message upstream");
	else if ((link = files.a[i].url) == NULL)
		snprintf(out->unavailable, sizeof(out->unavailable), "%s",
		    files.a[i].unavailable);
	else if ((out->url = strdup(link)) == NULL)
		rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
	else
		out->expires_at = oe_expiry(link);
out:
	atts_release(&files);
	cJSON_Delete(root);
	sync_buf_release(&r.body);
	sync_buf_release(&full);
	free(esc);
	free(url);
	return rc;
}

const struct sync_connector sync_facebook_connector = {
	.type = "facebook",
	.default_url = "https://graph.facebook.com",
	.keys = fb_keys,
	.auth = { .query = "access_token", .proof_query = "appsecret_proof" },
	.all_streams = fb_streams,
	.default_streams = fb_streams,
	.check = fb_check,
	.begin = fb_begin,
	.fetch = fb_fetch,
	.cursor_max = sync_walk_max,
	.end = fb_end,
	.proof = fb_proof,
	.media_refresh = fb_media_refresh,
	.no_poll_reason = "source type 'facebook' reports delivery in its "
	    "messages; there is nothing to poll",
};
