/*
 * telegram.c -- the connector for a Telegram user account, through TDLib's
 * JSON interface (tdjson.c), and for Telegram Desktop's exports
 * (tgexport.c).  See ../shared/reference/smseagle-telegram.md §B.
 *
 *   chats     every chat of the main and archive lists (TDLib's loadChats
 *             until its 404) as a conversation, and as contacts every
 *             user TDLib tells of (updateUser) and the address book
 *             (getContacts), side rows of the page.
 *   messages  per chat, getChatHistory newest first: incr-sync down to the
 *             chat's cursor, full-sync down to the beginning.
 *
 * Message ids only grow within a chat (§B.4), so each chat has an id
 * cursor.  They are kept together as the stream's cursor, a map
 *
 *	me:<own user id> <chat id>:<message id> ...
 *
 * sorted by chat id, merged chat by chat (cursor_max), so that full-sync
 * and incr-sync never move one back.  The ids are account-relative: the
 * `me` entry makes a session signed in as somebody else an error rather
 * than a silent mix.  A chat's cursor moves only on the page that ends its
 * walk down to it, as the walk runs newest first.
 *
 * full-sync walks the chats in id order; its checkpoint "C:L:T" says chat C
 * is stored from T (its newest when the walk began) down to L, so a resumed
 * walk continues below L ("C:0:0": chat C is done).  TDLib may return fewer
 * messages than asked for: only an empty page ends a walk.
 *
 * TDLib keeps its session and database in tdlib_dir, which one process at a
 * time may use: a pass that finds it in use is skipped, like one that finds
 * the source's lock taken.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "connector.h"
#include "tgexport.h"
#include "tdjson.h"

#define TG_SERVER_SHIFT	1048576LL	/* TDLib id = server id << 20 */
#define TG_DEFAULT_PAGE	100
#define TG_IMPORT_PAGE	1000		/* export messages per transaction */
#define TG_CLOSE_WAIT	10.0
#define TG_CATCH_UP_EVERY 300.0	/* s: full-sync catches up inside a chat */

static const char *const tg_streams[] = { "chats", "messages", NULL };

static const struct sync_keydef tg_keys[] = {
	{ "tdlib_library", SYNC_KEY_STRING, 0, 0, 0, NULL },
	{ "tdlib_dir", SYNC_KEY_STRING, 1, 0, 0, NULL },
	{ "api_id", SYNC_KEY_INT, 1, 1, 2147483647, NULL },
	{ "api_hash_file", SYNC_KEY_SECRET_FILE, 0, 0, 0, NULL },
	{ "api_hash_env", SYNC_KEY_SECRET_ENV, 0, 0, 0, NULL },
	{ "chats", SYNC_KEY_STRLIST, 0, 0, 0, NULL },
	{ "streams", SYNC_KEY_STRLIST, 0, 0, 0, tg_streams },
	{ "page_size", SYNC_KEY_INT, 0, 1, 100, NULL },
	SYNC_KEY_COLD_START,
	{ NULL, SYNC_KEY_STRING, 0, 0, 0, NULL }
};

/* ---- the cursor map ----------------------------------------------------- */

/*
 * A chat's cursor: everything up to id is stored.  An incremental walk
 * that could not reach it (a deadline, a long flood wait) leaves a gap:
 * [low, top] is stored as well, and the next walk goes on below low.
 */
struct cmap_ent {
	long long	 chat;
	long long	 id;
	long long	 low, top;	/* 0, 0: no gap */
};

struct cmap {
	long long	 me;		/* 0: not known */
	struct cmap_ent	*v;
	size_t		 n, cap;
};

static void
cmap_release(struct cmap *m)
{
	free(m->v);
	memset(m, 0, sizeof(*m));
}

/* The entry of chat, or NULL. */
static struct cmap_ent *
cmap_find(const struct cmap *m, long long chat)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->v[mid].chat == chat)
			return &m->v[mid];
		if (m->v[mid].chat < chat)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static long long
cmap_get(const struct cmap *m, long long chat)
{
	const struct cmap_ent *e = cmap_find(m, chat);

	return e != NULL ? e->id : 0;
}

/* Closes e's gap if the cursor reached it. */
static void
cmap_close(struct cmap_ent *e)
{
	if (e->top > 0 && e->id >= e->low) {
		if (e->top > e->id)
			e->id = e->top;
		e->low = e->top = 0;
	}
}

/* Raises chat's cursor to id (never lowers it); -1 on ENOMEM. */
static int
cmap_raise(struct cmap *m, long long chat, long long id)
{
	struct cmap_ent *e = cmap_find(m, chat);
	size_t i;

	if (e != NULL) {
		if (id > e->id)
			e->id = id;
		cmap_close(e);
		return 0;
	}
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;
		struct cmap_ent *v = realloc(m->v, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		m->v = v;
		m->cap = cap;
	}
	for (i = m->n; i > 0 && m->v[i - 1].chat > chat; i--)
		m->v[i] = m->v[i - 1];
	m->v[i].chat = chat;
	m->v[i].id = id;
	m->v[i].low = m->v[i].top = 0;
	m->n++;
	return 0;
}

/* The gap of chat's cursor (*low, *top), or 0 if it has none. */
static int
cmap_gap(const struct cmap *m, long long chat, long long *low, long long *top)
{
	const struct cmap_ent *e = cmap_find(m, chat);

	if (e == NULL || e->top == 0)
		return 0;
	*low = e->low;
	*top = e->top;
	return 1;
}

/*
 * Records that [low, top] of chat is stored above its cursor.  Of two
 * gaps the one of the later walk wins: the higher top (it walked on from
 * the other's low), then the lower low.  -1 on ENOMEM.
 */
static int
cmap_set_gap(struct cmap *m, long long chat, long long low, long long top)
{
	struct cmap_ent *e;

	if (cmap_raise(m, chat, 0) == -1 || (e = cmap_find(m, chat)) == NULL)
		return -1;
	if (low <= 0 || top < low)
		return 0;
	if (e->id >= low) {		/* the cursor reaches it: no gap */
		if (top > e->id)
			e->id = top;
		return 0;
	}
	if (e->top == 0 || top > e->top || (top == e->top && low < e->low)) {
		e->low = low;
		e->top = top;
	}
	return 0;
}

/* Parses a stored map; -1 if s is not one (or ENOMEM). */
static int
cmap_parse(const char *s, struct cmap *m)
{
	memset(m, 0, sizeof(*m));
	while (s != NULL && *s != '\0') {
		long long a, b;
		char *end;

		while (*s == ' ')
			s++;
		if (*s == '\0')
			break;
		if (strncmp(s, "me:", 3) == 0) {
			errno = 0;
			a = strtoll(s + 3, &end, 10);
			if (errno != 0 || end == s + 3 || a <= 0)
				goto bad;
			m->me = a;
		} else {
			errno = 0;
			a = strtoll(s, &end, 10);
			if (errno != 0 || end == s || *end != ':')
				goto bad;
			s = end + 1;
			b = strtoll(s, &end, 10);
			if (errno != 0 || end == s || b < 0 || cmap_raise(m, a, b) == -1)
				goto bad;
			if (*end == '/') {
				long long lo, hi;

				s = end + 1;
				lo = strtoll(s, &end, 10);
				if (errno != 0 || end == s || *end != '/')
					goto bad;
				s = end + 1;
				hi = strtoll(s, &end, 10);
				if (errno != 0 || end == s ||
				    cmap_set_gap(m, a, lo, hi) == -1)
					goto bad;
			}
		}
		if (*end != ' ' && *end != '\0')
			goto bad;
		s = end;
	}
	return 0;
bad:
	cmap_release(m);
	return -1;
}

/* The stored form of m; the caller frees it (NULL on ENOMEM). */
static char *
cmap_format(const struct cmap *m)
{
	struct sync_buf b = SYNC_BUF_INIT(0);
	size_t i;
	int fail = 0;

	if (m->me != 0)
		fail |= sync_buf_addf(&b, "me:%lld", m->me);
	for (i = 0; i < m->n; i++) {
		fail |= sync_buf_addf(&b, "%s%lld:%lld", b.len ? " " : "",
		    m->v[i].chat, m->v[i].id);
		if (m->v[i].top > 0)
			fail |= sync_buf_addf(&b, "/%lld/%lld", m->v[i].low,
			    m->v[i].top);
	}
	if (fail || (b.data == NULL && sync_buf_add(&b, "", 0) == -1)) {
		sync_buf_release(&b);
		return NULL;
	}
	return b.data;
}

/*
 * The later of two maps, chat by chat (cursor_max).  An unreadable stored
 * map yields to the new one; the stored `me` wins (a mismatch is refused
 * before any page is written).
 */
static char *
tg_cursor_max(const char *a, const char *b)
{
	struct cmap x, y;
	char *r;
	size_t i;

	if (a == NULL || cmap_parse(a, &x) == -1)
		return b != NULL ? strdup(b) : NULL;
	if (b == NULL || cmap_parse(b, &y) == -1) {
		cmap_release(&x);
		return strdup(a);
	}
	if (x.me == 0)
		x.me = y.me;
	for (i = 0; i < y.n; i++)
		if (cmap_raise(&x, y.v[i].chat, y.v[i].id) == -1 ||
		    (y.v[i].top > 0 && cmap_set_gap(&x, y.v[i].chat, y.v[i].low,
		    y.v[i].top) == -1)) {
			cmap_release(&x);
			cmap_release(&y);
			return NULL;
		}
	r = cmap_format(&x);
	cmap_release(&x);
	cmap_release(&y);
	return r;
}

/* ---- the connector's state ---------------------------------------------- */

struct tg_chat {
	long long	 id;
	cJSON		*chat;		/* the latest chat object */
	long long	 last_id;	/* its last message, 0: none known */
	int64_t		 last_date;
	int		 archived;
	int		 listed;	/* in a chat list */
};

/* Where a walk over the chats is. */
struct tg_walk {
	int		 full;		/* down to the beginning, not the cursor */
	size_t		 pos;		/* next chat in tg.order */
	int		 in_chat;	/* a chat's walk is under way */
	long long	 chat;
	long long	 from;		/* from_message_id of the next page */
	long long	 top;		/* newest id of this walk */
	long long	 floor;		/* incr: stop at this id (0: none) */
	int64_t		 floor_date;	/* stop below this date (0: none) */
	long long	 below;		/* full: the cursor this walk must pass */
	int		 passed;	/* full: it passed it */
	int		 pages;		/* pages of this chat so far */
	int		 retried;	/* the empty-first-page retry was made */
	int		 bridge;	/* incr: walking down to a gap's top */
	long long	 gap_low;	/* ... then on from the gap's low */
	long long	 gap_floor;	/* ... down to the cursor */
};

struct tg {
	const struct sync_source_cfg *src;
	struct sync_td	*td;
	int		 lockfd;
	double		 timeout;
	struct sync_http *http;		/* the pass's (deadline), NULL: --login */
	char		*auth;		/* authorization state @type */
	unsigned	 auth_gen;	/* bumped on each change */
	const cJSON	*code_info;	/* of WaitCode (in last_auth) */
	cJSON		*last_auth;
	long long	 self;
	long long	 session_me;	/* import: the session's account, 0: none */
	struct tg_chat	*chats;
	size_t		 nchats, capchats;
	struct sync_strmap chat_index;	/* chat id -> its place in chats */
	cJSON		*users;		/* updateUser objects not yet written */
	/*
	 * What TDLib tells of during a pass, kept until the walk's last page
	 * (noted_changes) and no longer: as many as the pass brings.
	 */
	struct sync_strmap edited;	/* "chat:id" TDLib said changed */
	struct sync_strmap gone;	/* "chat:id" TDLib said deleted */
	int		 oom;		/* an update could not be kept */
	struct sync_strmap sender_chats; /* chats written as senders */
	struct cmap	 cur;
	int		 started;	/* the messages stream has begun */
	long long	*order;		/* the chats synced, by id */
	size_t		 norder;
	struct tg_walk	 w;		/* the pass's walk */
	struct tg_walk	 sw;		/* full-sync: catching up on the side */
	int		 sweeping;	/* sw is under way */
	int		 swept;		/* ... and ended since w's last page */
	double		 catch_up_at;	/* monotonic: catch up inside a chat */
	long		 page;
	long long	 cold_days;
	/* import */
	struct sync_tgx	*x;
	int		 x_done;
	long long	 x_chat;	/* chat whose messages are taken */
	int		 x_skip;	/* ... or skipped (not in `chats`) */
	/* media-sync: TDLib is opened when a file is first asked for */
	int		 media_tried;
	struct sync_err	 media_err;	/* ... and why that failed */
};

static enum sync_rc
nomem(struct sync_err *err)
{
	return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
}

static const char *
type_of(const cJSON *o)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "@type"));
}

static int
is_type(const cJSON *o, const char *t)
{
	const char *s = type_of(o);

	return s != NULL && strcmp(s, t) == 0;
}

/* Whether chat id is one the source syncs (`chats`, default all). */
static int
chat_wanted(const struct sync_source_cfg *src, long long id)
{
	const struct sync_value *v = NULL;
	char num[32];
	size_t i;

	for (i = 0; i < src->nvalues; i++)
		if (strcmp(src->values[i].def->name, "chats") == 0)
			v = &src->values[i];
	if (v == NULL || !v->set)
		return 1;
	snprintf(num, sizeof(num), "%lld", id);
	for (i = 0; i < v->nlist; i++)
		if (strcmp(v->list[i], num) == 0)
			return 1;
	return 0;
}

static struct tg_chat *
chat_get(struct tg *p, long long id, int create)
{
	char key[32];
	long long i;

	snprintf(key, sizeof(key), "%lld", id);
	if (sync_strmap_get(&p->chat_index, key, &i))
		return &p->chats[i];
	if (!create)
		return NULL;
	if (p->nchats == p->capchats) {
		size_t cap = p->capchats ? p->capchats * 2 : 64;
		struct tg_chat *v = realloc(p->chats, cap * sizeof(*v));

		if (v == NULL)
			return NULL;
		p->chats = v;
		p->capchats = cap;
	}
	if (sync_strmap_put(&p->chat_index, key, (long long)p->nchats) == -1)
		return NULL;
	memset(&p->chats[p->nchats], 0, sizeof(p->chats[0]));
	p->chats[p->nchats].id = id;
	return &p->chats[p->nchats++];
}

static void
chat_last(struct tg_chat *c, const cJSON *msg)
{
	long long id;

	if (msg == NULL || sync_json_id(msg, "id", &id) == -1 || id <= 0)
		return;
	/*
	 * A message not sent yet has a local id above the server message it
	 * follows: that one is the chat's last as far as cursors go.
	 */
	c->last_id = id - id % TG_SERVER_SHIFT;
	c->last_date = sync_json_int(msg, "date");
}

/* A chat position: in which list, and whether still in it. */
static void
chat_position(struct tg_chat *c, const cJSON *pos)
{
	const char *order = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(pos,
	    "order"));
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(pos, "list");
	int in = order != NULL && strcmp(order, "0") != 0;

	if (is_type(list, "chatListArchive"))
		c->archived = in;
	if (in)
		c->listed = 1;
}

/* Replaces (or sets) a field of the stored chat object. */
static void
chat_set(struct tg_chat *c, const char *key, const cJSON *v)
{
	cJSON *d;

	if (c->chat == NULL || v == NULL || (d = cJSON_Duplicate(v, 1)) == NULL)
		return;
	if (cJSON_HasObjectItem(c->chat, key))
		cJSON_ReplaceItemInObjectCaseSensitive(c->chat, key, d);
	else
		cJSON_AddItemToObject(c->chat, key, d);
}

/* TDLib's updates: the chat list, users, the authorization state. */
static void
on_update(void *arg, const cJSON *u)
{
	struct tg *p = arg;
	const char *t = type_of(u);
	const cJSON *x, *pos;
	struct tg_chat *c;
	long long id;

	if (t == NULL)
		return;
	if (strcmp(t, "updateAuthorizationState") == 0) {
		x = cJSON_GetObjectItemCaseSensitive(u, "authorization_state");
		if (type_of(x) == NULL)
			return;
		free(p->auth);
		p->auth = sync_strdup(type_of(x));
		cJSON_Delete(p->last_auth);
		p->last_auth = cJSON_Duplicate(x, 1);
		p->code_info = cJSON_GetObjectItemCaseSensitive(p->last_auth,
		    "code_info");
		p->auth_gen++;
	} else if (strcmp(t, "updateNewChat") == 0) {
		x = cJSON_GetObjectItemCaseSensitive(u, "chat");
		if (sync_json_id(x, "id", &id) == -1 || (c = chat_get(p, id, 1)) == NULL)
			return;
		cJSON_Delete(c->chat);
		c->chat = cJSON_Duplicate(x, 1);
		chat_last(c, cJSON_GetObjectItemCaseSensitive(x, "last_message"));
		cJSON_ArrayForEach(pos, cJSON_GetObjectItemCaseSensitive(x, "positions"))
			chat_position(c, pos);
	} else if (strncmp(t, "updateChat", 10) == 0) {
		if (sync_json_id(u, "chat_id", &id) == -1 ||
		    (c = chat_get(p, id, 0)) == NULL)
			return;
		if (strcmp(t, "updateChatLastMessage") == 0) {
			x = cJSON_GetObjectItemCaseSensitive(u, "last_message");
			chat_last(c, x);
			chat_set(c, "last_message", x);
			cJSON_ArrayForEach(pos, cJSON_GetObjectItemCaseSensitive(u,
			    "positions"))
				chat_position(c, pos);
		} else if (strcmp(t, "updateChatPosition") == 0)
			chat_position(c, cJSON_GetObjectItemCaseSensitive(u, "position"));
		else if (strcmp(t, "updateChatTitle") == 0)
			chat_set(c, "title", cJSON_GetObjectItemCaseSensitive(u, "title"));
		else if (strcmp(t, "updateChatReadInbox") == 0) {
			chat_set(c, "unread_count",
			    cJSON_GetObjectItemCaseSensitive(u, "unread_count"));
			chat_set(c, "last_read_inbox_message_id",
			    cJSON_GetObjectItemCaseSensitive(u,
			    "last_read_inbox_message_id"));
		}
	} else if (strcmp(t, "updateMessageEdited") == 0 ||
	    strcmp(t, "updateMessageContent") == 0) {
		long long mid;
		char key[48];

		if (sync_json_id(u, "chat_id", &id) == 0 &&
		    sync_json_id(u, "message_id", &mid) == 0 &&
		    mid % TG_SERVER_SHIFT == 0) {
			snprintf(key, sizeof(key), "%lld:%lld", id, mid);
			if (sync_strmap_put(&p->edited, key, 1) == -1)
				p->oom = 1;
		}
	} else if (strcmp(t, "updateDeleteMessages") == 0) {
		/* Only real deletions, not messages dropped from TDLib's cache. */
		if (sync_json_bool(u, "is_permanent") != 1 ||
		    sync_json_bool(u, "from_cache") == 1 ||
		    sync_json_id(u, "chat_id", &id) == -1)
			return;
		cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(u, "message_ids")) {
			char key[48];

			if (!cJSON_IsNumber(x))
				continue;
			snprintf(key, sizeof(key), "%lld:%.0f", id, x->valuedouble);
			if (sync_strmap_put(&p->gone, key, 1) == -1)
				p->oom = 1;
		}
	} else if (strcmp(t, "updateUser") == 0) {
		cJSON *d;

		x = cJSON_GetObjectItemCaseSensitive(u, "user");
		if (x == NULL)
			return;
		if ((p->users == NULL && (p->users = cJSON_CreateArray()) == NULL) ||
		    (d = cJSON_Duplicate(x, 1)) == NULL)
			p->oom = 1;
		else if (!cJSON_AddItemToArray(p->users, d)) {
			cJSON_Delete(d);
			p->oom = 1;
		}
	}
}

/* ---- requests ------------------------------------------------------------ */

/* A request {"@type": type}; NULL on ENOMEM. */
static cJSON *
request(const char *type)
{
	cJSON *r = cJSON_CreateObject();

	if (r != NULL && cJSON_AddStringToObject(r, "@type", type) == NULL) {
		cJSON_Delete(r);
		r = NULL;
	}
	return r;
}

/*
 * Adds an integer field as its digits: cJSON prints whole numbers from
 * 10^15 up in exponent form, which TDLib refuses.
 */
static int
add_id(cJSON *o, const char *key, long long v)
{
	char num[32];

	snprintf(num, sizeof(num), "%lld", v);
	return cJSON_AddRawToObject(o, key, num) != NULL ? 0 : -1;
}

/* Sends req (consumed) and waits for its answer (the caller frees it). */
static enum sync_rc
call(struct tg *p, cJSON *req, struct sync_counts *c, cJSON **ans,
    struct sync_err *err)
{
	double timeout = p->timeout;
	int by_deadline = 0;
	enum sync_rc rc;

	*ans = NULL;
	if (req == NULL)
		return nomem(err);
	/* A pass's request ends at its deadline (--max-runtime) too. */
	if (p->http != NULL &&
	    (timeout = sync_http_time_left(p->http, p->timeout, &by_deadline)) < 0) {
		cJSON_Delete(req);
		sync_http_note_cut(p->http);
		return sync_err_set(err, SYNC_EUNAVAIL, SYNC_ERR_NETWORK,
		    "source '%s': no time left for a TDLib request",
		    p->src->name);
	}
	if (c != NULL)
		c->api_calls++;
	rc = sync_td_call(p->td, req, timeout, ans, err);
	cJSON_Delete(req);
	if (rc != SYNC_OK && rc != SYNC_EINTR && by_deadline)
		sync_http_note_cut(p->http);
	return rc;
}

/* An error answer: its code (0 if the answer is no error) and message. */
static long
td_error(const cJSON *a, const char **msg)
{
	*msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "message"));
	if (*msg == NULL)
		*msg = "";
	if (!is_type(a, "error"))
		return 0;
	return (long)sync_json_int(a, "code");
}

/*
 * A flood wait: TDLib's 429 "Too Many Requests: retry after N", or the
 * MTProto form FLOOD_WAIT_N.  The wait in seconds, or -1 if a is none.
 */
static double
flood_wait(const cJSON *a)
{
	const char *msg, *s;
	long code = td_error(a, &msg);

	if ((s = strstr(msg, "retry after ")) != NULL)
		return strtod(s + 12, NULL);
	if ((s = strstr(msg, "FLOOD_WAIT_")) != NULL)
		return strtod(s + 11, NULL);
	return code == 429 ? 0 : -1;
}

/*
 * Sends req (a template, not consumed) until TDLib answers other than
 * with a flood wait or a transient error (406, 5xx), waiting between the
 * attempts by the engine's one retry policy, as for HTTP
 * (sync_http_retry(): a flood wait's own length, else backoff; a wait
 * longer than the pass can afford is a rate_limit error remembered by the
 * engine; no time left before the deadline is a clean stop).  On SYNC_OK, *ans is the answer, which may be an error of
 * another kind for the caller to judge.  Retries count in c; what names
 * the request in errors and logs.
 */
static enum sync_rc
call_retry(struct tg *p, struct sync_ctx *ctx, const cJSON *req,
    struct sync_counts *c, const char *what, cJSON **ans, struct sync_err *err)
{
	long attempt;
	enum sync_rc rc;

	*ans = NULL;
	for (attempt = 0;; attempt++) {
		char who[160], why[300];
		const char *msg;
		double wait;
		long code;
		int flood;
		cJSON *a;

		if (attempt > 0 && c != NULL)
			c->retries++;
		if ((rc = call(p, cJSON_Duplicate(req, 1), c, &a, err)) != SYNC_OK)
			return rc;
		code = td_error(a, &msg);
		flood = (wait = flood_wait(a)) >= 0;
		if (code == 0 || (!flood && code != 406 && code < 500)) {
			*ans = a;
			return SYNC_OK;
		}
		snprintf(who, sizeof(who), "source '%s': %s", p->src->name, what);
		snprintf(why, sizeof(why), "%ld %s", code, msg);
		cJSON_Delete(a);
		if ((rc = sync_http_retry(ctx->http, attempt, flood, flood ? wait :
		    -1, who, why, flood ? SYNC_ETEMP : SYNC_EUNAVAIL, flood ?
		    SYNC_ERR_RATE_LIMIT : SYNC_ERR_NETWORK, err)) != SYNC_OK)
			return rc;
	}
}

/* ---- authorization ------------------------------------------------------- */

static enum sync_rc
lock_dir(struct tg *p, const char *dir, int *busy, struct sync_err *err)
{
	char path[4096];

	*busy = 0;
	if (mkdir(dir, 0700) == -1 && errno != EEXIST)
		return sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG, "source '%s': "
		    "tdlib_dir '%s': %s", p->src->name, dir, strerror(errno));
	snprintf(path, sizeof(path), "%s/msgsync.lock", dir);
	if ((p->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) == -1)
		return sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG, "source '%s': "
		    "tdlib_dir '%s': %s", p->src->name, dir, strerror(errno));
	if (flock(p->lockfd, LOCK_EX | LOCK_NB) == -1) {
		if (errno != EWOULDBLOCK)
			return sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG,
			    "source '%s': cannot lock '%s': %s", p->src->name, path,
			    strerror(errno));
		*busy = 1;
	}
	return SYNC_OK;
}

static cJSON *
tdlib_parameters(const struct tg *p)
{
	const struct sync_source_cfg *s = p->src;
	const char *hash = sync_cfg_str(s, "api_hash_file");
	cJSON *r = request("setTdlibParameters");

	if (hash == NULL)
		hash = sync_cfg_str(s, "api_hash_env");
	if (r == NULL ||
	    cJSON_AddBoolToObject(r, "use_test_dc", 0) == NULL ||
	    cJSON_AddStringToObject(r, "database_directory",
	    sync_cfg_str(s, "tdlib_dir")) == NULL ||
	    cJSON_AddStringToObject(r, "files_directory", "") == NULL ||
	    cJSON_AddStringToObject(r, "database_encryption_key", "") == NULL ||
	    cJSON_AddBoolToObject(r, "use_file_database", 0) == NULL ||
	    cJSON_AddBoolToObject(r, "use_chat_info_database", 1) == NULL ||
	    cJSON_AddBoolToObject(r, "use_message_database", 1) == NULL ||
	    cJSON_AddBoolToObject(r, "use_secret_chats", 0) == NULL ||
	    cJSON_AddNumberToObject(r, "api_id",
	    (double)sync_cfg_int(s, "api_id", 0)) == NULL ||
	    cJSON_AddStringToObject(r, "api_hash", hash != NULL ? hash : "") == NULL ||
	    cJSON_AddStringToObject(r, "system_language_code", "en") == NULL ||
	    cJSON_AddStringToObject(r, "device_model", "msgsync") == NULL ||
	    cJSON_AddStringToObject(r, "system_version", "") == NULL ||
	    cJSON_AddStringToObject(r, "application_version", SYNC_VERSION) == NULL) {
		cJSON_Delete(r);
		return NULL;
	}
	return r;
}

/* Waits until the authorization state changes from generation gen. */
static enum sync_rc
wait_auth(struct tg *p, unsigned gen, struct sync_err *err)
{
	double end = sync_now_mono() + p->timeout;
	enum sync_rc rc;

	while (p->auth_gen == gen) {
		if (sync_now_mono() >= end)
			return sync_err_set(err, SYNC_EUNAVAIL, SYNC_ERR_NETWORK,
			    "source '%s': TDLib did not move on from '%s' within "
			    "%.0f s", p->src->name, p->auth ? p->auth : "start",
			    p->timeout);
		if ((rc = sync_td_pump(p->td, end - sync_now_mono(), err)) != SYNC_OK)
			return rc;
	}
	return SYNC_OK;
}

/* How the login code was sent, for the prompt. */
static const char *
code_via(const cJSON *info)
{
	const char *t = type_of(cJSON_GetObjectItemCaseSensitive(info, "type"));

	if (t == NULL)
		return "Telegram";
	if (strcmp(t, "authenticationCodeTypeTelegramMessage") == 0)
		return "a Telegram message to your other sessions";
	if (strcmp(t, "authenticationCodeTypeSms") == 0)
		return "SMS";
	if (strcmp(t, "authenticationCodeTypeCall") == 0)
		return "a phone call";
	if (strcmp(t, "authenticationCodeTypeFragment") == 0)
		return "fragment.com";
	return "Telegram";
}

/*
 * Drives TDLib's authorization states to Ready.  Without ask (a cron
 * pass) a state that needs the operator is an auth error naming the
 * command that signs in; with it, the questions are asked.
 */
static enum sync_rc
authorize(struct tg *p, sync_prompt_fn ask, void *arg, struct sync_err *err)
{
	const struct sync_source_cfg *s = p->src;
	int sent_params = 0, tries = 0;
	enum sync_rc rc;
	cJSON *req, *a;

	/*
	 * A client says nothing before its first request.  (TDLib 1.8.67
	 * never answers a getOption without a name.)
	 */
	if ((req = request("getOption")) == NULL ||
	    cJSON_AddStringToObject(req, "name", "version") == NULL) {
		cJSON_Delete(req);
		return nomem(err);
	}
	if ((rc = call(p, req, NULL, &a, err)) != SYNC_OK)
		return rc;
	cJSON_Delete(a);
	for (;;) {
		const char *st = p->auth, *msg, *q;
		char answer[256], prompt[256];
		unsigned gen = p->auth_gen;
		long code;

		if (st == NULL) {
			if ((rc = wait_auth(p, gen, err)) != SYNC_OK)
				return rc;
			continue;
		}
		if (strcmp(st, "authorizationStateReady") == 0)
			return SYNC_OK;
		if (strcmp(st, "authorizationStateWaitTdlibParameters") == 0) {
			if (sent_params++)
				return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
				    "source '%s': TDLib asks for its parameters again",
				    s->name);
			if ((rc = call(p, tdlib_parameters(p), NULL, &a, err)) != SYNC_OK)
				return rc;
			if ((code = td_error(a, &msg)) != 0) {
				if (strstr(msg, "lock") != NULL || strstr(msg,
				    "already in use") != NULL)
					rc = sync_err_set(err, SYNC_ETEMP, SYNC_ERR_CONFIG,
					    "source '%s': TDLib's database in '%s' is in "
					    "use by another program: %s", s->name,
					    sync_cfg_str(s, "tdlib_dir"), msg);
				else
					rc = sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG,
					    "source '%s': TDLib refused its parameters "
					    "(api_id, api_hash, tdlib_dir): %ld %s",
					    s->name, code, msg);
				cJSON_Delete(a);
				return rc;
			}
			cJSON_Delete(a);
			if (p->auth_gen == gen && (rc = wait_auth(p, gen, err)) != SYNC_OK)
				return rc;
			continue;
		}
		if (strcmp(st, "authorizationStateWaitPhoneNumber") == 0 ||
		    strcmp(st, "authorizationStateWaitCode") == 0 ||
		    strcmp(st, "authorizationStateWaitPassword") == 0) {
			int secret = 0;

			if (ask == NULL)
				return sync_err_set(err, SYNC_EPERM, SYNC_ERR_AUTH,
				    "source '%s': the Telegram session in '%s' is not "
				    "signed in (TDLib state %s); sign in once with "
				    "'full-sync --source %s --login'", s->name,
				    sync_cfg_str(s, "tdlib_dir"), st + 18, s->name);
			if (tries++ >= 6)
				return sync_err_set(err, SYNC_EPERM, SYNC_ERR_AUTH,
				    "source '%s': sign-in failed: too many attempts",
				    s->name);
			if (strcmp(st, "authorizationStateWaitPhoneNumber") == 0) {
				snprintf(prompt, sizeof(prompt), "Phone number, in "
				    "international format (+15550001234): ");
				req = request("setAuthenticationPhoneNumber");
				q = "phone_number";
			} else if (strcmp(st, "authorizationStateWaitCode") == 0) {
				snprintf(prompt, sizeof(prompt), "Code sent by %s: ",
				    code_via(p->code_info));
				req = request("checkAuthenticationCode");
				q = "code";
			} else {
				const char *hint = cJSON_GetStringValue(
				    cJSON_GetObjectItemCaseSensitive(p->last_auth,
				    "password_hint"));

				snprintf(prompt, sizeof(prompt), "Two-step verification "
				    "password%s%s%s: ", hint && *hint ? " (hint: " : "",
				    hint && *hint ? hint : "", hint && *hint ? ")" : "");
				req = request("checkAuthenticationPassword");
				q = "password";
				secret = 1;
			}
			if (req == NULL)
				return nomem(err);
			if (ask(arg, prompt, secret, answer, sizeof(answer)) == -1) {
				cJSON_Delete(req);
				return sync_err_set(err, SYNC_EPERM, SYNC_ERR_AUTH,
				    "source '%s': sign-in abandoned (no answer)", s->name);
			}
			if (cJSON_AddStringToObject(req, q, answer) == NULL) {
				explicit_bzero(answer, sizeof(answer));
				cJSON_Delete(req);
				return nomem(err);
			}
			explicit_bzero(answer, sizeof(answer));
			rc = call(p, req, NULL, &a, err);
			if (rc != SYNC_OK)
				return rc;
			if ((code = td_error(a, &msg)) != 0)
				sync_log(LOG_WARNING, "source '%s': Telegram refused "
				    "that: %s", s->name, msg);
			cJSON_Delete(a);
			if (code == 0 && p->auth_gen == gen &&
			    (rc = wait_auth(p, gen, err)) != SYNC_OK)
				return rc;
			continue;
		}
		if (strcmp(st, "authorizationStateWaitOtherDeviceConfirmation") == 0 &&
		    ask != NULL) {
			const char *link = cJSON_GetStringValue(
			    cJSON_GetObjectItemCaseSensitive(p->last_auth, "link"));

			sync_log(LOG_NOTICE, "source '%s': confirm this sign-in in "
			    "another Telegram app: %s", s->name, link ? link : "");
			if ((rc = wait_auth(p, gen, err)) != SYNC_OK)
				return rc;
			continue;
		}
		if (strcmp(st, "authorizationStateClosed") == 0 ||
		    strcmp(st, "authorizationStateClosing") == 0 ||
		    strcmp(st, "authorizationStateLoggingOut") == 0)
			return sync_err_set(err, SYNC_EPERM, SYNC_ERR_AUTH,
			    "source '%s': the Telegram session was closed or logged "
			    "out (TDLib state %s); sign in again with 'full-sync "
			    "--source %s --login'", s->name, st + 18, s->name);
		return sync_err_set(err, SYNC_EPERM, SYNC_ERR_AUTH, "source '%s': "
		    "TDLib asks for %s, which msgsync cannot answer; finish the "
		    "sign-in of this account in a Telegram app, then run "
		    "'full-sync --source %s --login'", s->name, st + 18, s->name);
	}
}

/* Loads TDLib and signs in (ask: NULL in a pass). */
static enum sync_rc
tg_open(struct tg *p, const struct sync_config *cfg, int verbose, sync_prompt_fn ask,
    void *arg, char *skip, size_t skipn, struct sync_err *err)
{
	const struct sync_source_cfg *s = p->src;
	char version[64];
	enum sync_rc rc;
	int busy;

	p->timeout = sync_config_timeout(cfg);
	busy = 0;
	/* media-sync's begin took the lock already. */
	if (p->lockfd < 0 && (rc = lock_dir(p, sync_cfg_str(s, "tdlib_dir"), &busy,
	    err)) != SYNC_OK)
		return rc;
	if (busy) {
		if (skip == NULL)
			return sync_err_set(err, SYNC_ETEMP, SYNC_ERR_CONFIG,
			    "source '%s': the Telegram session in '%s' is in use by "
			    "another msgsync pass", s->name, sync_cfg_str(s, "tdlib_dir"));
		snprintf(skip, skipn, "the Telegram session in '%s' is in use by "
		    "another pass", sync_cfg_str(s, "tdlib_dir"));
		return SYNC_OK;
	}
	if ((p->td = sync_td_open(s->name, sync_cfg_str(s, "tdlib_library"),
	    verbose, on_update, p, version, sizeof(version), err)) == NULL)
		return err->rc;
	sync_log(LOG_DEBUG, "source '%s': TDLib %s from '%s'", s->name, version,
	    sync_td_path(p->td));
	return authorize(p, ask, arg, err);
}

/* The account's own user id (getMe). */
static enum sync_rc
get_me(struct tg *p, struct sync_counts *c, cJSON **me, struct sync_err *err)
{
	const char *msg;
	enum sync_rc rc;
	long code;
	cJSON *a;

	*me = NULL;
	if ((rc = call(p, request("getMe"), c, &a, err)) != SYNC_OK)
		return rc;
	if ((code = td_error(a, &msg)) != 0 || sync_json_id(a, "id", &p->self) == -1) {
		rc = sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL, "source '%s': "
		    "getMe: %s", p->src->name, code ? msg : "no user id");
		cJSON_Delete(a);
		return rc;
	}
	*me = a;
	return SYNC_OK;
}

/* Loads one chat list until TDLib's 404 ("all loaded"). */
static enum sync_rc
load_chats(struct tg *p, struct sync_ctx *ctx, const char *list,
    struct sync_err *err)
{
	cJSON *req = request("loadChats"), *l = request(list), *a;
	char what[64];
	enum sync_rc rc;
	int i;

	if (req == NULL || l == NULL) {
		cJSON_Delete(req);
		cJSON_Delete(l);
		return nomem(err);
	}
	cJSON_AddItemToObject(req, "chat_list", l);
	if (cJSON_AddNumberToObject(req, "limit", 100) == NULL) {
		cJSON_Delete(req);
		return nomem(err);
	}
	snprintf(what, sizeof(what), "loadChats (%s)", list);
	for (i = 0; i < 100000; i++) {
		const char *msg;
		long code;

		if ((rc = call_retry(p, ctx, req, ctx->source_counts, what, &a,
		    err)) != SYNC_OK)
			break;
		code = td_error(a, &msg);
		if (code == 404) {		/* all loaded */
			cJSON_Delete(a);
			break;
		}
		if (code != 0) {
			rc = sync_err_set(err, code == 401 ? SYNC_EPERM : SYNC_EDATA,
			    code == 401 ? SYNC_ERR_AUTH : SYNC_ERR_PROTOCOL,
			    "source '%s': %s: %ld %s", p->src->name, what, code, msg);
			cJSON_Delete(a);
			break;
		}
		cJSON_Delete(a);
	}
	cJSON_Delete(req);
	if (i == 100000)
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL, "source '%s': "
		    "loadChats never said that all chats are loaded", p->src->name);
	return rc;
}

/* ---- rows ---------------------------------------------------------------- */

static void
iso(int64_t t, char *out, size_t n)
{
	if (t <= 0) {
		out[0] = '\0';
		return;
	}
	sync_time_format((time_t)t, out, n);
}

/* A user as a contact row. */
static int
add_user(struct sync_batch *b, const cJSON *u)
{
	const cJSON *un = cJSON_GetObjectItemCaseSensitive(u, "usernames");
	const char *first, *last, *phone, *uname;
	char id[32], name[512];
	struct sync_contact c;
	long long uid;

	if (sync_json_id(u, "id", &uid) == -1)
		return 1;
	snprintf(id, sizeof(id), "%lld", uid);
	first = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(u, "first_name"));
	last = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(u, "last_name"));
	snprintf(name, sizeof(name), "%s%s%s", first ? first : "",
	    first && *first && last && *last ? " " : "", last ? last : "");
	phone = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(u, "phone_number"));
	uname = cJSON_GetStringValue(cJSON_GetArrayItem(
	    cJSON_GetObjectItemCaseSensitive(un, "active_usernames"), 0));
	if (uname == NULL)
		uname = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(u,
		    "username"));
	memset(&c, 0, sizeof(c));
	c.external_id = id;
	c.display_name = name[0] ? name : NULL;
	/* TDLib's numbers are international, without their '+'. */
	c.phone = phone != NULL && *phone != '\0' ? phone : NULL;
	c.phone_international = 1;
	c.username = uname != NULL && *uname ? uname : NULL;
	c.raw = u;
	return sync_batch_add_contact(b, &c) == -1 ? -1 : 0;
}

/* The users TDLib told of since the last page, as contact rows. */
static int
flush_users(struct tg *p, struct sync_batch *b)
{
	const cJSON *u;

	cJSON_ArrayForEach(u, p->users)
		if (add_user(b, u) == -1)
			return -1;
	cJSON_Delete(p->users);
	p->users = NULL;
	return 0;
}

static const char *
chat_kind(const cJSON *chat)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(chat, "type");
	const char *s = type_of(t);

	if (s == NULL)
		return NULL;
	if (strcmp(s, "chatTypePrivate") == 0)
		return "private";
	if (strcmp(s, "chatTypeBasicGroup") == 0)
		return "basic_group";
	if (strcmp(s, "chatTypeSupergroup") == 0)
		return sync_json_bool(t, "is_channel") == 1 ? "channel" : "supergroup";
	if (strcmp(s, "chatTypeSecret") == 0)
		return "secret";
	return NULL;
}

/* A chat as a conversation row. */
static int
add_chat(struct sync_batch *b, const struct tg_chat *c)
{
	struct sync_conversation v;
	char id[32], when[40];
	cJSON *raw;
	long long unread;
	int rc, marked;

	if (c->chat == NULL)
		return 0;
	snprintf(id, sizeof(id), "%lld", c->id);
	/* The last message changes with every message: it is not kept twice. */
	if ((raw = cJSON_Duplicate(c->chat, 1)) == NULL)
		return -1;
	cJSON_DeleteItemFromObjectCaseSensitive(raw, "last_message");
	unread = sync_json_int(c->chat, "unread_count");
	marked = sync_json_bool(c->chat, "is_marked_as_unread");
	iso(c->last_date, when, sizeof(when));
	memset(&v, 0, sizeof(v));
	v.external_id = id;
	v.title = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c->chat, "title"));
	v.kind = chat_kind(c->chat);
	v.unread_count = unread;
	v.is_read = unread < 0 ? -1 : unread == 0 && marked != 1;
	v.last_message_at = when[0] ? when : NULL;
	v.archived = c->archived;
	v.raw = raw;
	rc = sync_batch_add_conversation(b, &v) == -1 ? -1 : 0;
	cJSON_Delete(raw);
	return rc;
}

/* Content types with a file: our kind, the media key, its file key. */
static const struct {
	const char	*type, *kind, *media, *file;
} media_types[] = {
	{ "messagePhoto", "photo", "photo", NULL },
	{ "messageVideo", "video", "video", "video" },
	{ "messageDocument", "document", "document", "document" },
	{ "messageAudio", "audio", "audio", "audio" },
	{ "messageVoiceNote", "voice_note", "voice_note", "voice" },
	{ "messageVideoNote", "video_note", "video_note", "video" },
	{ "messageAnimation", "animation", "animation", "animation" },
	{ "messageSticker", "sticker", "sticker", "sticker" },
	{ NULL, NULL, NULL, NULL }
};

/* messageChatAddMembers -> chat_add_members */
static void
snake(const char *type, char *out, size_t n)
{
	size_t i = 0;

	if (strncmp(type, "message", 7) == 0)
		type += 7;
	for (; *type != '\0' && i + 2 < n; type++) {
		if (isupper((unsigned char)*type)) {
			if (i > 0)
				out[i++] = '_';
			out[i++] = (char)tolower((unsigned char)*type);
		} else
			out[i++] = *type;
	}
	out[i] = '\0';
}

static void
add_num(cJSON *o, const char *key, const cJSON *from, const char *fkey)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(from, fkey);

	if (cJSON_IsNumber(v) && v->valuedouble > 0)
		cJSON_AddNumberToObject(o, key, v->valuedouble);
}

static void
add_str(cJSON *o, const char *key, const cJSON *from, const char *fkey)
{
	const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(from, fkey));

	if (v != NULL && *v != '\0')
		cJSON_AddStringToObject(o, key, v);
}

/* A TDLib file's size and remote id into o. */
static void
add_file(cJSON *o, const cJSON *f)
{
	const cJSON *remote = cJSON_GetObjectItemCaseSensitive(f, "remote");

	if (f == NULL)
		return;
	if (sync_json_int(f, "size") > 0)
		add_num(o, "size", f, "size");
	else
		add_num(o, "size", f, "expected_size");
	add_str(o, "remote_id", remote, "id");
}

/*
 * The kind of a message's content, its text (or caption), and its file
 * (*att, the caller frees it; NULL for none).
 */
static const char *
content(const cJSON *ct, char *kind, size_t kn, const char **body, cJSON **att)
{
	const char *t = type_of(ct);
	const cJSON *m, *f;
	cJSON *a, *o;
	size_t i;

	*att = NULL;
	*body = NULL;
	if (t == NULL) {
		snprintf(kind, kn, "unsupported");
		return kind;
	}
	f = cJSON_GetObjectItemCaseSensitive(ct, "text");
	if (f == NULL)
		f = cJSON_GetObjectItemCaseSensitive(ct, "caption");
	*body = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f, "text"));
	if (*body != NULL && **body == '\0')
		*body = NULL;
	if (strcmp(t, "messageText") == 0) {
		snprintf(kind, kn, "text");
		return kind;
	}
	snake(t, kind, kn);
	for (i = 0; media_types[i].type != NULL; i++)
		if (strcmp(media_types[i].type, t) == 0)
			break;
	if (media_types[i].type == NULL)
		return kind;
	snprintf(kind, kn, "%s", media_types[i].kind);
	m = cJSON_GetObjectItemCaseSensitive(ct, media_types[i].media);
	if ((a = cJSON_CreateArray()) == NULL || (o = cJSON_CreateObject()) == NULL) {
		cJSON_Delete(a);
		return kind;
	}
	cJSON_AddItemToArray(a, o);
	cJSON_AddStringToObject(o, "kind", kind);
	add_str(o, "file_name", m, "file_name");
	add_str(o, "mime_type", m, "mime_type");
	add_num(o, "duration", m, "duration");
	if (media_types[i].file == NULL) {
		/* A photo: its largest size. */
		const cJSON *sizes = cJSON_GetObjectItemCaseSensitive(m, "sizes");
		const cJSON *big = cJSON_GetArrayItem(sizes, cJSON_GetArraySize(sizes) - 1);

		add_num(o, "width", big, "width");
		add_num(o, "height", big, "height");
		add_file(o, cJSON_GetObjectItemCaseSensitive(big, "photo"));
	} else {
		add_num(o, "width", m, "width");
		add_num(o, "height", m, "height");
		if (strcmp(media_types[i].kind, "video_note") == 0) {
			add_num(o, "width", m, "length");
			add_num(o, "height", m, "length");
		}
		add_file(o, cJSON_GetObjectItemCaseSensitive(m, media_types[i].file));
	}
	*att = a;
	return kind;
}

/* Our attachment kinds of the content types with a file (SPEC §9). */
static const char *
file_kind(const char *kind)
{
	return strcmp(kind, "voice_note") == 0 ? "voice" : kind;
}

/* The TDLib file object of content ct, and its media object (*media). */
static const cJSON *
content_file(const cJSON *ct, const cJSON **media, size_t *which)
{
	const char *t = type_of(ct);
	const cJSON *m, *sizes;
	size_t i;

	if (t == NULL)
		return NULL;
	for (i = 0; media_types[i].type != NULL; i++)
		if (strcmp(media_types[i].type, t) == 0)
			break;
	if (media_types[i].type == NULL)
		return NULL;
	m = cJSON_GetObjectItemCaseSensitive(ct, media_types[i].media);
	*media = m;
	*which = i;
	if (media_types[i].file != NULL)
		return cJSON_GetObjectItemCaseSensitive(m, media_types[i].file);
	/* A photo: its largest size. */
	sizes = cJSON_GetObjectItemCaseSensitive(m, "sizes");
	return cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(sizes,
	    cJSON_GetArraySize(sizes) - 1), "photo");
}

int
sync_tg_content_file(const cJSON *ct, struct sync_attachment *a,
    long long *file_id)
{
	const cJSON *m = NULL, *f;
	const char *uid;
	long long size;
	size_t i = 0;

	memset(a, 0, sizeof(*a));
	*file_id = 0;
	if ((f = content_file(ct, &m, &i)) == NULL || !cJSON_IsObject(f))
		return 0;
	uid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(f, "remote"), "unique_id"));
	a->external_id = uid != NULL && *uid != '\0' ? uid : "0";
	a->kind = file_kind(media_types[i].kind);
	a->mime_type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m,
	    "mime_type"));
	if (a->mime_type == NULL && media_types[i].file == NULL)
		a->mime_type = "image/jpeg";	/* Telegram's photos */
	a->name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m,
	    "file_name"));
	if (a->name != NULL && *a->name == '\0')
		a->name = NULL;
	if ((size = sync_json_int(f, "size")) <= 0)
		size = sync_json_int(f, "expected_size");
	a->size = size > 0 ? size : -1;
	if (sync_json_id(f, "id", file_id) == -1)
		*file_id = 0;
	return 1;
}

/*
 * A TDLib message as a row of pg; 1 if it is skipped (local), or rejected
 * (no usable id: sync_page_reject()).
 */
static int
add_message(struct sync_page *pg, long long chat, const cJSON *m)
{
	struct sync_batch *b = &pg->batch;
	const cJSON *sender = cJSON_GetObjectItemCaseSensitive(m, "sender_id");
	char ext[64], conv[32], sid[32], kind[64], sent[40], edited[40];
	struct sync_message v;
	struct sync_attachment file;
	const char *body;
	cJSON *att;
	long long id, who, fid;
	int rc;

	if (sync_json_id(m, "id", &id) == -1 || id <= 0)
		return sync_page_reject(pg, NULL, "id", "not a positive whole number",
		    m) == -1 ? -1 : 1;
	if (id % TG_SERVER_SHIFT != 0)
		return 1;	/* a local message, not (yet) on the server */
	snprintf(ext, sizeof(ext), "%lld:%lld", chat, id);
	snprintf(conv, sizeof(conv), "%lld", chat);
	sid[0] = '\0';
	if ((is_type(sender, "messageSenderUser") &&
	    sync_json_id(sender, "user_id", &who) == 0) ||
	    (is_type(sender, "messageSenderChat") &&
	    sync_json_id(sender, "chat_id", &who) == 0))
		snprintf(sid, sizeof(sid), "%lld", who);
	content(cJSON_GetObjectItemCaseSensitive(m, "content"), kind, sizeof(kind),
	    &body, &att);
	iso(sync_json_int(m, "date"), sent, sizeof(sent));
	iso(sync_json_int(m, "edit_date"), edited, sizeof(edited));
	memset(&v, 0, sizeof(v));
	v.external_id = ext;
	v.conversation_id = conv;
	v.sender_id = sid[0] ? sid : NULL;
	v.direction = sync_json_bool(m, "is_outgoing") == 1 ? "out" : "in";
	v.kind = kind;
	v.body = body;
	v.sent_at = sent[0] ? sent : NULL;
	v.edited_at = edited[0] ? edited : NULL;
	v.attachments = att;
	v.raw = m;
	v.track = SYNC_TRACK_NONE;
	if (sync_tg_content_file(cJSON_GetObjectItemCaseSensitive(m, "content"),
	    &file, &fid)) {
		v.att = &file;
		v.natt = 1;
	}
	rc = sync_batch_add_message(b, &v) == -1 ? -1 : 0;
	cJSON_Delete(att);
	return rc;
}

/*
 * A message sent on behalf of a chat (a channel's posts, an anonymous
 * admin): that chat, when known, as a contact with its title, so that the
 * sender has a name.  Once per chat and pass.
 */
static int
add_sender_chat(struct tg *p, struct sync_batch *b, const cJSON *m)
{
	const cJSON *sender = cJSON_GetObjectItemCaseSensitive(m, "sender_id");
	struct sync_contact v;
	struct tg_chat *c;
	char id[32];
	long long who, seen;

	if (!is_type(sender, "messageSenderChat") ||
	    sync_json_id(sender, "chat_id", &who) == -1 ||
	    (c = chat_get(p, who, 0)) == NULL || c->chat == NULL)
		return 0;
	snprintf(id, sizeof(id), "%lld", who);
	if (sync_strmap_get(&p->sender_chats, id, &seen))
		return 0;
	if (sync_strmap_put(&p->sender_chats, id, 1) == -1)
		return -1;
	memset(&v, 0, sizeof(v));
	v.external_id = id;
	v.display_name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c->chat,
	    "title"));
	return sync_batch_add_contact(b, &v) == -1 ? -1 : 0;
}

/* ---- the connector ------------------------------------------------------- */

static enum sync_rc
tg_check(struct sync_source_cfg *src, struct sync_err *err)
{
	const char *hf = sync_cfg_str(src, "api_hash_file"),
	    *he = sync_cfg_str(src, "api_hash_env");
	const struct sync_value *v = NULL;
	size_t i, k;

	if ((hf != NULL) == (he != NULL) && (hf != NULL || !src->secrets_optional))
		return sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG, "source '%s' "
		    "needs exactly one of 'api_hash_file', 'api_hash_env' (from "
		    "my.telegram.org)", src->name);
	for (i = 0; i < src->nvalues; i++)
		if (strcmp(src->values[i].def->name, "chats") == 0)
			v = &src->values[i];
	for (i = 0; v != NULL && i < v->nlist; i++) {
		const char *s = v->list[i];

		for (k = s[0] == '-' ? 1 : 0; isdigit((unsigned char)s[k]); k++)
			;
		if (s[k] != '\0' || k == 0 || (s[0] == '-' && k == 1))
			return sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG,
			    "source '%s': 'chats' entry '%s' is not a TDLib chat id "
			    "(e.g. \"-1001234567890\")", src->name, s);
	}
	return SYNC_OK;
}

static void
tg_release(struct tg *p)
{
	size_t i;

	if (p == NULL)
		return;
	sync_td_free(p->td, TG_CLOSE_WAIT);
	if (p->lockfd >= 0)
		close(p->lockfd);
	for (i = 0; i < p->nchats; i++)
		cJSON_Delete(p->chats[i].chat);
	free(p->chats);
	sync_strmap_clear(&p->chat_index);
	cJSON_Delete(p->users);
	sync_strmap_clear(&p->edited);
	sync_strmap_clear(&p->gone);
	sync_strmap_clear(&p->sender_chats);
	cJSON_Delete(p->last_auth);
	free(p->auth);
	free(p->order);
	cmap_release(&p->cur);
	sync_tgx_free(p->x);
	free(p);
}

static void
tg_end(struct sync_ctx *ctx)
{
	tg_release(ctx->priv);
	ctx->priv = NULL;
}

/*
 * An import needs no TDLib, but a signed-in session knows whose account
 * this is, which a one-chat export does not say: when tdlib_dir exists,
 * the session is asked (getMe, never prompting) and let go at once.  No
 * library, no session or one in use leave it to the stored `me`.
 */
static enum sync_rc
session_me(struct tg *p, struct sync_ctx *ctx, struct sync_err *err)
{
	const char *dir = sync_cfg_str(p->src, "tdlib_dir");
	char skip[160] = "";
	struct sync_err e;
	struct stat sb;
	cJSON *me = NULL;
	enum sync_rc rc;

	if (dir == NULL || stat(dir, &sb) == -1 || !S_ISDIR(sb.st_mode))
		return SYNC_OK;
	memset(&e, 0, sizeof(e));
	if ((rc = tg_open(p, ctx->cfg, ctx->opts->verbose, NULL, NULL, skip,
	    sizeof(skip), &e)) == SYNC_OK && skip[0] == '\0')
		rc = get_me(p, ctx->source_counts, &me, &e);
	if (rc == SYNC_OK && skip[0] == '\0') {
		p->session_me = p->self;
		sync_log(LOG_INFO, "source '%s': the Telegram session is user %lld's",
		    p->src->name, p->session_me);
	} else
		sync_log(LOG_INFO, "source '%s': whose account this is comes from "
		    "the stored cursors, not the Telegram session: %s",
		    p->src->name, skip[0] != '\0' ? skip : e.msg);
	cJSON_Delete(me);
	sync_td_free(p->td, TG_CLOSE_WAIT);
	p->td = NULL;
	if (p->lockfd >= 0)
		close(p->lockfd);
	p->lockfd = -1;
	p->self = 0;
	cJSON_Delete(p->users);		/* an import writes no TDLib users */
	p->users = NULL;
	if (rc == SYNC_ENOMEM || p->oom)
		return nomem(err);
	return SYNC_OK;
}

static enum sync_rc
tg_begin(struct sync_ctx *ctx, struct sync_err *err)
{
	struct tg *p;
	enum sync_rc rc;
	cJSON *me;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return nomem(err);
	ctx->priv = p;
	p->src = ctx->src;
	p->http = ctx->http;
	p->lockfd = -1;
	p->cold_days = sync_cfg_int(ctx->src, "cold_start_days", 7);
	/*
	 * media-sync opens TDLib only for a file it must ask for: an export's
	 * files are read from disk, with no session at all.
	 */
	if (ctx->opts->cmd == SYNC_CMD_MEDIA) {
		int busy;

		if ((rc = lock_dir(p, sync_cfg_str(ctx->src, "tdlib_dir"), &busy,
		    err)) != SYNC_OK)
			return rc;
		if (busy)
			snprintf(ctx->skip, sizeof(ctx->skip), "the Telegram session "
			    "in '%s' is in use by another pass",
			    sync_cfg_str(ctx->src, "tdlib_dir"));
		return SYNC_OK;
	}
	if (ctx->opts->import != NULL) {
		/* An export needs neither TDLib nor its session. */
		if ((p->x = sync_tgx_open(ctx->opts->import, err)) == NULL)
			return err->rc;
		return session_me(p, ctx, err);
	}
	if ((rc = tg_open(p, ctx->cfg, ctx->opts->verbose, NULL, NULL, ctx->skip,
	    sizeof(ctx->skip), err)) != SYNC_OK || ctx->skip[0] != '\0')
		return rc;
	if ((rc = get_me(p, ctx->source_counts, &me, err)) != SYNC_OK)
		return rc;
	cJSON_Delete(me);
	if ((rc = load_chats(p, ctx, "chatListMain", err)) != SYNC_OK ||
	    (rc = load_chats(p, ctx, "chatListArchive", err)) != SYNC_OK)
		return rc;
	return SYNC_OK;
}

/*
 * The address book (getContacts), so that contacts never chatted with
 * are stored too: TDLib names its users by id, having told of each one
 * (updateUser) first, so they are in p->users unless written earlier in
 * the pass; those are asked for again (getUser) into b.
 */
static enum sync_rc
address_book(struct sync_ctx *ctx, struct tg *p, struct sync_stream *st,
    struct sync_batch *b, struct sync_err *err)
{
	struct sync_strmap told = { NULL, NULL, 0, 0 };
	cJSON *req = request("getContacts"), *a = NULL, *u;
	const cJSON *x;
	const char *msg;
	char key[32];
	enum sync_rc rc;
	long long id, v;
	long code;

	if (req == NULL)
		return nomem(err);
	rc = call_retry(p, ctx, req, st->counts, "getContacts", &a, err);
	cJSON_Delete(req);
	if (rc != SYNC_OK)
		return rc;
	if ((code = td_error(a, &msg)) != 0) {
		rc = sync_err_set(err, code == 401 ? SYNC_EPERM : SYNC_EDATA,
		    code == 401 ? SYNC_ERR_AUTH : SYNC_ERR_PROTOCOL, "source '%s': "
		    "getContacts: %ld %s", p->src->name, code, msg);
		goto out;
	}
	cJSON_ArrayForEach(x, p->users)
		if (sync_json_id(x, "id", &id) == 0) {
			snprintf(key, sizeof(key), "%lld", id);
			if (sync_strmap_put(&told, key, 1) == -1) {
				rc = nomem(err);
				goto out;
			}
		}
	cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(a, "user_ids")) {
		/* int53: a JSON number. */
		if (!cJSON_IsNumber(x) || x->valuedouble <= 0 ||
		    x->valuedouble > 9007199254740992.0)
			continue;
		id = (long long)x->valuedouble;
		snprintf(key, sizeof(key), "%lld", id);
		if (sync_strmap_get(&told, key, &v))
			continue;
		if ((req = request("getUser")) == NULL ||
		    add_id(req, "user_id", id) == -1) {
			cJSON_Delete(req);
			rc = nomem(err);
			goto out;
		}
		rc = call_retry(p, ctx, req, st->counts, "getUser", &u, err);
		cJSON_Delete(req);
		if (rc != SYNC_OK)
			goto out;
		/* One gone since (deleted account): nothing to write. */
		if (td_error(u, &msg) == 0 && add_user(b, u) == -1) {
			cJSON_Delete(u);
			rc = nomem(err);
			goto out;
		}
		cJSON_Delete(u);
	}
out:
	sync_strmap_clear(&told);
	cJSON_Delete(a);
	return rc;
}

/*
 * The chats stream: every chat in one page, with every user TDLib told
 * of and the address book as contact rows.
 */
static enum sync_rc
fetch_chats(struct sync_ctx *ctx, struct tg *p, struct sync_stream *st,
    struct sync_page *pg, struct sync_err *err)
{
	enum sync_rc rc;
	size_t i;

	sync_batch_init(&pg->batch, SYNC_ENT_CONVERSATION);
	pg->done = 1;
	if (p->x != NULL)
		return SYNC_OK;
	for (i = 0; i < p->nchats; i++) {
		if (!chat_wanted(p->src, p->chats[i].id))
			continue;
		pg->fetched++;
		if (add_chat(&pg->batch, &p->chats[i]) == -1)
			return nomem(err);
	}
	if ((rc = address_book(ctx, p, st, &pg->side[0], err)) != SYNC_OK)
		return rc;
	return flush_users(p, &pg->side[0]) == -1 ? nomem(err) : SYNC_OK;
}

static int
cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return x < y ? -1 : x > y;
}

/*
 * The first page of the messages stream: the stored map (and whose it
 * is), the chats in order, and where a resumed full walk continues.
 */
static enum sync_rc
walk_start(struct tg *p, struct sync_stream *st, struct sync_err *err)
{
	struct tg_walk *w = &p->w;
	long long c = 0, l = 0, t = 0;
	size_t i;

	p->started = 1;
	w->full = st->mode == SYNC_MODE_FULL;
	p->sw.full = 0;
	p->catch_up_at = sync_now_mono() + TG_CATCH_UP_EVERY;
	if (st->state.cursor != NULL && cmap_parse(st->state.cursor, &p->cur) == -1)
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL, "source '%s': "
		    "stream 'messages': the stored cursor is not a chat map "
		    "(\"me:ID CHAT:MESSAGE ...\")", p->src->name);
	if (p->x == NULL) {
		if (p->cur.me != 0 && p->cur.me != p->self)
			return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
			    "source '%s': the Telegram session is signed in as user "
			    "%lld, but this source's cursors belong to user %lld "
			    "(message ids are per account); give another account "
			    "its own source name", p->src->name, p->self, p->cur.me);
		p->cur.me = p->self;
	} else if (p->session_me != 0) {
		/* A one-chat export does not say whose it is: the session does. */
		if (p->cur.me != 0 && p->cur.me != p->session_me)
			return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL,
			    "source '%s': the Telegram session is signed in as user "
			    "%lld, but this source's cursors belong to user %lld "
			    "(message ids are per account)", p->src->name,
			    p->session_me, p->cur.me);
		p->self = p->cur.me = p->session_me;
	} else
		p->self = p->cur.me;	/* ... nor, without one, the cursors */
	if ((p->order = calloc(p->nchats + 1, sizeof(*p->order))) == NULL)
		return nomem(err);
	for (i = 0; i < p->nchats; i++)
		if (chat_wanted(p->src, p->chats[i].id))
			p->order[p->norder++] = p->chats[i].id;
	qsort(p->order, p->norder, sizeof(*p->order), cmp_ll);
	if (st->mode != SYNC_MODE_FULL || st->from == NULL)
		return SYNC_OK;
	if (sscanf(st->from, "%lld:%lld:%lld", &c, &l, &t) != 3)
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_PROTOCOL, "source '%s': "
		    "stream 'messages': unreadable checkpoint '%s' (full-sync "
		    "--restart starts over)", p->src->name, st->from);
	while (w->pos < p->norder && p->order[w->pos] < c)
		w->pos++;
	w->chat = c;			/* the chats up to c are done */
	if (w->pos < p->norder && p->order[w->pos] == c) {
		if (l == 0)
			w->pos++;		/* that chat is done */
		else {
			w->in_chat = 1;
			w->chat = c;
			w->from = l;
			w->top = t;
			w->below = cmap_get(&p->cur, c);
			w->passed = w->below == 0 || w->below >= l;
			w->pages = 1;
			w->floor_date = st->since;
		}
	}
	return SYNC_OK;
}

/* Continues walk w below a gap's low, down to the cursor (or window). */
static void
gap_resume(const struct tg *p, struct tg_walk *w, long long low, long long top,
    long long cursor)
{
	w->bridge = 0;
	w->from = low;
	if (top > w->top)
		w->top = top;
	w->floor = cursor;
	w->floor_date = cursor > 0 ? 0 :
	    time(NULL) - (time_t)(p->cold_days * 86400);
}

/* Decides how walk w goes through chat c; 0 if it needs no request. */
static int
chat_begin(struct tg *p, struct tg_walk *w, struct sync_stream *st,
    const struct tg_chat *c)
{
	long long have = cmap_get(&p->cur, c->id), glow, gtop;

	memset(&w->in_chat, 0, sizeof(*w) - offsetof(struct tg_walk, in_chat));
	w->chat = c->id;
	if (w->full) {
		/* Walked even when TDLib knows no last message. */
		w->below = have;
		w->passed = have == 0;
		w->floor_date = st->since;
		if (st->since > 0 && c->last_date > 0 && c->last_date < st->since)
			return 0;
	} else if (cmap_gap(&p->cur, c->id, &glow, &gtop)) {
		/* An earlier walk stopped short: new messages, then the rest. */
		if (c->last_id > gtop) {
			w->bridge = 1;
			w->floor = gtop;
			w->gap_low = glow;
			w->gap_floor = have;
		} else
			gap_resume(p, w, glow, gtop, have);
	} else if (c->last_id <= 0) {
		return 0;		/* empty, or nothing known */
	} else if (have > 0) {
		if (c->last_id <= have)
			return 0;	/* nothing new */
		w->floor = have;
	} else {
		/* A chat without a cursor: its cold-start window. */
		w->floor_date = time(NULL) - (time_t)(p->cold_days * 86400);
		if (c->last_date > 0 && c->last_date < w->floor_date) {
			/* Nothing in the window: continue from its newest. */
			if (cmap_raise(&p->cur, c->id, c->last_id) == -1)
				return -1;
			return 0;
		}
	}
	w->in_chat = 1;
	return 1;
}

/* One getChatHistory page of w's chat into *ans (NULL: the chat is gone). */
static enum sync_rc
history(struct tg *p, struct tg_walk *w, struct sync_ctx *ctx,
    struct sync_stream *st, cJSON **ans, struct sync_err *err)
{
	cJSON *req = request("getChatHistory"), *a;
	const char *msg;
	char what[64];
	enum sync_rc rc;
	long code;

	*ans = NULL;
	if (req == NULL || add_id(req, "chat_id", w->chat) == -1 ||
	    add_id(req, "from_message_id", w->from) == -1 ||
	    cJSON_AddNumberToObject(req, "offset", 0) == NULL ||
	    cJSON_AddNumberToObject(req, "limit", (double)sync_cfg_int(p->src,
	    "page_size", TG_DEFAULT_PAGE)) == NULL ||
	    cJSON_AddBoolToObject(req, "only_local", 0) == NULL) {
		cJSON_Delete(req);
		return nomem(err);
	}
	snprintf(what, sizeof(what), "chat %lld: getChatHistory", w->chat);
	rc = call_retry(p, ctx, req, st->counts, what, &a, err);
	cJSON_Delete(req);
	if (rc != SYNC_OK)
		return rc;
	if ((code = td_error(a, &msg)) == 0) {
		*ans = a;
		return SYNC_OK;
	}
	if (code == 400 && strstr(msg, "not found") != NULL) {
		/* Left or deleted since the list was loaded. */
		sync_log(LOG_WARNING, "source '%s': chat %lld: %s; skipped",
		    p->src->name, w->chat, msg);
		cJSON_Delete(a);
		return SYNC_OK;
	}
	rc = sync_err_set(err, code == 401 ? SYNC_EPERM : SYNC_EDATA,
	    code == 401 ? SYNC_ERR_AUTH : SYNC_ERR_PROTOCOL, "source '%s': %s: "
	    "%ld %s", p->src->name, what, code, msg);
	cJSON_Delete(a);
	return rc;
}

/* The page's cursor and checkpoint, from the walk. */
static enum sync_rc
page_position(struct tg *p, struct sync_stream *st, struct sync_page *pg,
    struct sync_err *err)
{
	struct tg_walk *w = &p->w;
	char cp[96];

	if ((pg->cursor = cmap_format(&p->cur)) == NULL)
		return nomem(err);
	/* Not a full walk, or one that has not reached its first chat. */
	if (st->mode != SYNC_MODE_FULL || (!w->in_chat && w->chat == 0 &&
	    w->pos == 0))
		return SYNC_OK;
	if (w->in_chat)
		snprintf(cp, sizeof(cp), "%lld:%lld:%lld", w->chat, w->from, w->top);
	else
		snprintf(cp, sizeof(cp), "%lld:0:0", w->chat);
	if ((pg->checkpoint = strdup(cp)) == NULL)
		return nomem(err);
	return SYNC_OK;
}

/* Splits a noted "chat:id" key; 0 if it is a chat the source syncs. */
static int
noted_key(const struct tg *p, const char *key, long long *chat, long long *id)
{
	if (sscanf(key, "%lld:%lld", chat, id) != 2)
		return -1;
	return chat_wanted(p->src, *chat) ? 0 : -1;
}

/*
 * What TDLib told of during the pass, on the walk's last page: messages
 * edited (asked for again with getMessage, as their updates carry only
 * part of them) and messages deleted for good (marked, not removed).
 * TDLib tells of these only for messages it knows, and for supergroups
 * and channels only while they are open: this catches what it can, and
 * full-sync catches every edit.
 */
static enum sync_rc
noted_changes(struct sync_ctx *ctx, struct tg *p, struct sync_stream *st,
    struct sync_page *pg, struct sync_err *err)
{
	long long chat, id, v;
	enum sync_rc rc;
	size_t i;

	if (p->edited.n > 0 || p->gone.n > 0)
		sync_log(LOG_INFO, "source '%s': TDLib told of %zu edited and %zu "
		    "deleted messages during this pass", p->src->name,
		    p->edited.n, p->gone.n);
	for (i = 0; i < p->edited.cap; i++) {
		cJSON *req, *a;
		const char *msg;

		/* Deleted since: nothing to ask for. */
		if (p->edited.keys[i] == NULL ||
		    sync_strmap_get(&p->gone, p->edited.keys[i], &v) ||
		    noted_key(p, p->edited.keys[i], &chat, &id) == -1)
			continue;
		if ((req = request("getMessage")) == NULL ||
		    add_id(req, "chat_id", chat) == -1 ||
		    add_id(req, "message_id", id) == -1) {
			cJSON_Delete(req);
			return nomem(err);
		}
		rc = call_retry(p, ctx, req, st->counts, "getMessage", &a, err);
		cJSON_Delete(req);
		if (rc != SYNC_OK)
			return rc;
		/* Gone since (not found): its deletion is told of, or was. */
		if (td_error(a, &msg) == 0) {
			pg->fetched++;
			if (add_message(pg, chat, a) == -1) {
				cJSON_Delete(a);
				return nomem(err);
			}
		}
		cJSON_Delete(a);
	}
	sync_strmap_clear(&p->edited);
	if (p->gone.n > 0 && (pg->deleted = calloc(p->gone.n,
	    sizeof(*pg->deleted))) == NULL)
		return nomem(err);
	for (i = 0; i < p->gone.cap; i++) {
		if (p->gone.keys[i] == NULL ||
		    noted_key(p, p->gone.keys[i], &chat, &id) == -1)
			continue;
		if ((pg->deleted[pg->ndeleted] = strdup(p->gone.keys[i])) == NULL)
			return nomem(err);
		pg->ndeleted++;
	}
	sync_strmap_clear(&p->gone);
	return SYNC_OK;
}

/*
 * Tells the engine what a chat's walk learnt of its history (walked: a
 * full walk of it ended, at its start or the window's floor); -1 on ENOMEM.
 */
static int
chat_history(struct sync_page *pg, long long chat, int reached_start, int gap,
    int walked)
{
	struct sync_history h;
	char conv[24];

	snprintf(conv, sizeof(conv), "%lld", chat);
	memset(&h, 0, sizeof(h));
	h.conversation = conv;
	h.reached_start = reached_start;
	h.walked = walked;
	h.upstream_count = h.unrecoverable = -1;
	h.gaps = gap ? 1 : 0;
	return sync_page_history(pg, &h);
}

/* One page of walk w, which is in a chat, into pg. */
static enum sync_rc
walk_page(struct tg *p, struct tg_walk *w, struct sync_ctx *ctx,
    struct sync_stream *st, struct sync_page *pg, struct sync_err *err)
{
	struct tg_chat *c = chat_get(p, w->chat, 0);
	const cJSON *m, *msgs;
	enum sync_rc rc;
	cJSON *ans = NULL;
	long long glow, gtop;
	int n = 0, end = 0, gap;

	if ((rc = history(p, w, ctx, st, &ans, err)) != SYNC_OK)
		return rc;
	if (ans == NULL) {
		w->in_chat = 0;
		return SYNC_OK;
	}
	msgs = cJSON_GetObjectItemCaseSensitive(ans, "messages");
	cJSON_ArrayForEach(m, msgs) {
		long long id;
		int64_t date;

		if (cJSON_IsNull(m))
			continue;
		n++;
		pg->fetched++;
		if (sync_json_id(m, "id", &id) == -1) {
			/* Not skipped: the engine's bad-row policy decides. */
			if (sync_page_reject(pg, NULL, "id", "not a whole number",
			    m) == -1) {
				cJSON_Delete(ans);
				return nomem(err);
			}
			continue;
		}
		if (w->from == 0 || id < w->from)
			w->from = id;
		/* A local message (not sent yet) is no cursor. */
		if (id > w->top && id % TG_SERVER_SHIFT == 0)
			w->top = id;
		date = sync_json_int(m, "date");
		if (w->bridge && id <= w->floor) {
			/* Up to the gap: on below it (this page's rest is older). */
			gap_resume(p, w, w->gap_low, w->floor, w->gap_floor);
			w->pages++;
			goto page;
		}
		if (w->floor > 0 && id <= w->floor) {
			end = 1;	/* stored before */
			continue;
		}
		if (w->below > 0 && id <= w->below)
			w->passed = 1;
		if (w->floor_date > 0 && date >= 0 && date < w->floor_date) {
			end = 1;
			continue;
		}
		if (add_message(pg, w->chat, m) == -1 ||
		    add_sender_chat(p, &pg->side[0], m) == -1) {
			cJSON_Delete(ans);
			return nomem(err);
		}
	}
	cJSON_Delete(ans);
	ans = NULL;
	if (n == 0 && w->pages == 0 && c != NULL && c->last_id > w->floor) {
		/* A chat never opened may answer its first call with nothing. */
		if (!w->retried) {
			w->retried = 1;
			return SYNC_OK;
		}
		sync_log(LOG_WARNING, "source '%s': chat %lld: TDLib returned no "
		    "history although its last message is %lld; it is asked "
		    "again next pass", p->src->name, w->chat, c->last_id);
		st->counts->gaps++;
		w->in_chat = 0;
		return SYNC_OK;
	}
	w->pages++;
	if (n == 0)
		end = 1;		/* only an empty page ends a walk */
	if (!end && !w->full && !w->bridge && w->top > 0 &&
	    cmap_set_gap(&p->cur, w->chat, w->from, w->top) == -1)
		return nomem(err);	/* an interrupted walk goes on from here */
	if (end) {
		w->in_chat = 0;
		/* The walk reached what was stored, the window, or the start. */
		if ((!w->full || w->passed || n == 0 || w->below == 0) &&
		    w->top > 0 && cmap_raise(&p->cur, w->chat, w->top) == -1)
			return nomem(err);
	} else if (w->full && w->passed && w->top > 0 &&
	    cmap_raise(&p->cur, w->chat, w->top) == -1)
		return nomem(err);
	/*
	 * What the walk learnt of the chat (SPEC §6 coverage): an empty page
	 * is the start of its history; a gap of its cursor is a known
	 * missing range.
	 */
	gap = cmap_gap(&p->cur, w->chat, &glow, &gtop);
	if ((end || gap) && chat_history(pg, w->chat, end && n == 0, gap,
	    end && w->full) == -1)
		return nomem(err);
page:
	cJSON_Delete(ans);
	if (w->pages == 1 && c != NULL && add_chat(&pg->side[1], c) == -1)
		return nomem(err);
	return SYNC_OK;
}

/*
 * Moves walk w to its next chat that needs a request; 0 when it has none
 * left.  A catch-up walk (sw) takes only the chats with a cursor and newer
 * messages, or with a gap, and not the one the full walk is in.
 */
static int
walk_next(struct tg *p, struct tg_walk *w, struct sync_stream *st)
{
	while (!w->in_chat) {
		struct tg_chat *c;
		long long have, low, top;

		if (w->pos >= p->norder)
			return 0;
		if ((c = chat_get(p, p->order[w->pos++], 0)) == NULL)
			continue;
		if (w == &p->sw && ((p->w.in_chat && p->w.chat == c->id) ||
		    (!cmap_gap(&p->cur, c->id, &low, &top) &&
		    ((have = cmap_get(&p->cur, c->id)) == 0 || c->last_id <= have))))
			continue;
		if (chat_begin(p, w, st, c) == -1)
			return -1;
	}
	return 1;
}

/*
 * The messages stream from TDLib: one page of one chat per call.  A
 * full-sync holds TDLib's session for as long as it walks, and incr-sync
 * cannot run meanwhile: so between two chats, and every
 * TG_CATCH_UP_EVERY seconds within a long one, it catches up first on the
 * chats that got new messages, down to their cursors, as incr-sync would.
 */
static enum sync_rc
fetch_history(struct sync_ctx *ctx, struct tg *p, struct sync_stream *st,
    struct sync_page *pg, struct sync_err *err)
{
	struct tg_walk *w = &p->w;
	enum sync_rc rc;
	int r;

	sync_batch_init(&pg->batch, SYNC_ENT_MESSAGE);
	if (w->full && !p->sweeping && !p->swept &&
	    (!w->in_chat || sync_now_mono() >= p->catch_up_at)) {
		p->sweeping = 1;
		p->sw.pos = 0;
		p->sw.in_chat = 0;
	}
	if (p->sweeping) {
		if ((r = walk_next(p, &p->sw, st)) == -1)
			return nomem(err);
		if (r == 1) {
			if ((rc = walk_page(p, &p->sw, ctx, st, pg, err)) != SYNC_OK)
				return rc;
			goto out;
		}
		p->sweeping = 0;
		p->swept = 1;
		p->catch_up_at = sync_now_mono() + TG_CATCH_UP_EVERY;
	}
	p->swept = 0;
	if ((r = walk_next(p, w, st)) == -1)
		return nomem(err);
	if (r == 0) {
		pg->done = 1;
		w->chat = p->norder > 0 ? p->order[p->norder - 1] : 0;
		sync_progress_steps(st, "chats", (long long)p->norder,
		    (long long)p->norder);
		if ((rc = noted_changes(ctx, p, st, pg, err)) != SYNC_OK)
			return rc;
		return page_position(p, st, pg, err);
	}
	if ((rc = walk_page(p, w, ctx, st, pg, err)) != SYNC_OK)
		return rc;
	/* The chat list is the measure: chats done of the chats walked. */
	sync_progress_steps(st, "chats", (long long)(w->pos - (w->in_chat &&
	    w->pos > 0 ? 1 : 0)), (long long)p->norder);
out:
	if (flush_users(p, &pg->side[0]) == -1)
		return nomem(err);
	return page_position(p, st, pg, err);
}

/* The messages stream from an export: up to TG_IMPORT_PAGE messages. */
static enum sync_rc
fetch_import(struct tg *p, const char *path, struct sync_page *pg,
    struct sync_err *err)
{
	struct sync_tgx_item it;
	enum sync_rc rc;
	long n = 0;
	int r;

	sync_batch_init(&pg->batch, SYNC_ENT_MESSAGE);
	while (n < TG_IMPORT_PAGE) {
		long long id;

		if ((rc = sync_tgx_next(p->x, &it, err)) != SYNC_OK)
			return rc;
		pg->batch.sanitized += it.sanitized;
		switch (it.kind) {
		case SYNC_TGX_EOF:
			pg->done = 1;
			goto out;
		case SYNC_TGX_SELF:
			if (sync_json_id(it.json, "user_id", &id) == 0) {
				if (p->cur.me != 0 && p->cur.me != id)
					return sync_err_set(err, SYNC_EDATA,
					    SYNC_ERR_PROTOCOL, "source '%s': '%s' is "
					    "the export of user %lld, but this "
					    "source's cursors belong to user %lld "
					    "(message ids are per account)",
					    p->src->name, path, id, p->cur.me);
				p->self = p->cur.me = id;
			}
			if (sync_tgx_add_contact(&it, &pg->side[0]) == -1)
				return nomem(err);
			break;
		case SYNC_TGX_CONTACT:
			if (sync_tgx_add_contact(&it, &pg->side[0]) == -1)
				return nomem(err);
			break;
		case SYNC_TGX_CHAT:
			p->x_chat = it.chat_id;
			p->x_skip = it.chat_id == 0 || !chat_wanted(p->src, it.chat_id);
			if (!p->x_skip && sync_tgx_add_chat(&it, &pg->side[1]) == -1)
				return nomem(err);
			break;
		case SYNC_TGX_MESSAGE:
			if (p->x_skip)
				break;
			n++;
			pg->fetched++;
			r = sync_tgx_add_message(&it, p->self, &pg->batch,
			    &pg->side[0], &id);
			/* A message of the export without a usable id. */
			if (r == -1 || (r == 1 && it.chat_id != 0 &&
			    sync_page_reject(pg, NULL, "id",
			    "not a positive message id", it.json) == -1))
				return nomem(err);
			if (r == 0 && cmap_raise(&p->cur, it.chat_id, id) == -1)
				return nomem(err);
			break;
		case SYNC_TGX_CHAT_END:
			break;
		}
	}
out:
	if ((pg->cursor = cmap_format(&p->cur)) == NULL)
		return nomem(err);
	return SYNC_OK;
}

static enum sync_rc
tg_fetch(struct sync_ctx *ctx, struct sync_stream *st, struct sync_page *pg,
    struct sync_err *err)
{
	struct tg *p = ctx->priv;
	enum sync_rc rc;

	if (strcmp(st->name, "chats") == 0)
		rc = fetch_chats(ctx, p, st, pg, err);
	else if (!p->started && (rc = walk_start(p, st, err)) != SYNC_OK)
		return rc;
	else if (p->x != NULL)
		rc = fetch_import(p, ctx->opts->import, pg, err);
	else
		rc = fetch_history(ctx, p, st, pg, err);
	/* An update TDLib told of and that could not be kept is not lost quietly. */
	if (rc == SYNC_OK && p->oom)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of "
		    "memory keeping TDLib's updates");
	return rc;
}

/* ---- media-sync (SPEC §9) ----------------------------------------------- */

/*
 * downloadFile of TDLib file fid (synchronous: TDLib answers when the
 * file is complete).  0: *ans is TDLib's answer (a file or an error).
 * The answer may take longer than a request: http.timeout plus a second
 * per DL_RATE bytes the file is said to have (size, -1 unknown), within
 * the pass's deadline all the same.
 */
#define DL_RATE		(256.0 * 1024)

static enum sync_rc
download(struct tg *p, struct sync_ctx *ctx, long long fid, long long size,
    cJSON **ans, struct sync_err *err)
{
	cJSON *req = request("downloadFile");
	double timeout = p->timeout;
	char what[64];
	enum sync_rc rc;

	if (req == NULL || add_id(req, "file_id", fid) == -1 ||
	    cJSON_AddNumberToObject(req, "priority", 1) == NULL ||
	    cJSON_AddNumberToObject(req, "offset", 0) == NULL ||
	    cJSON_AddNumberToObject(req, "limit", 0) == NULL ||
	    cJSON_AddBoolToObject(req, "synchronous", 1) == NULL) {
		cJSON_Delete(req);
		return nomem(err);
	}
	snprintf(what, sizeof(what), "downloadFile %lld", fid);
	if (size > 0)
		p->timeout += (double)size / DL_RATE;
	rc = call_retry(p, ctx, req, ctx->source_counts, what, ans, err);
	p->timeout = timeout;
	cJSON_Delete(req);
	return rc;
}

/* A TDLib file downloaded: its local path into out (1), else 0. */
static int
downloaded(const cJSON *f, struct sync_media_link *out)
{
	const cJSON *local = cJSON_GetObjectItemCaseSensitive(f, "local");
	const char *path = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
	    local, "path"));

	if (!is_type(f, "file") || sync_json_bool(local,
	    "is_downloading_completed") != 1 || path == NULL || *path == '\0')
		return 0;
	return (out->path = strdup(path)) != NULL ? 1 : -1;
}

/* The file of message content ct that is attachment uid ("0": any). */
static long long
file_of(const cJSON *ct, const char *uid)
{
	struct sync_attachment a;
	long long fid;

	if (!sync_tg_content_file(ct, &a, &fid) || (strcmp(uid, "0") != 0 &&
	    strcmp(a.external_id, uid) != 0))
		return 0;
	return fid;
}

/*
 * media-sync: TDLib's downloadFile of the message's file, which answers
 * with the file on disk (local.path).  The file id in the stored message
 * may be stale (another session, a file reference expired): then the
 * message is read again (getMessage) and its file downloaded.  What TDLib
 * then refuses (the message or the file gone: 400, 404) never comes.
 */
static enum sync_rc
tg_media_refresh(struct sync_ctx *ctx, const struct sync_media_item *it,
    struct sync_media_link *out, struct sync_err *err)
{
	struct tg *p = ctx->priv;
	cJSON *a = NULL, *req = NULL;
	const char *msg;
	char what[96];
	long long chat, id, fid;
	long code;
	enum sync_rc rc;
	int r;

	if (p == NULL)
		return nomem(err);
	if (!p->media_tried) {
		cJSON *me = NULL;

		p->media_tried = 1;
		if (tg_open(p, ctx->cfg, ctx->opts->verbose, NULL, NULL, NULL, 0,
		    &p->media_err) == SYNC_OK && get_me(p, ctx->source_counts, &me,
		    &p->media_err) == SYNC_OK)
			(void)(load_chats(p, ctx, "chatListMain", &p->media_err) ==
			    SYNC_OK && load_chats(p, ctx, "chatListArchive",
			    &p->media_err) == SYNC_OK);
		cJSON_Delete(me);
	}
	if (p->media_err.rc != SYNC_OK) {
		*err = p->media_err;
		return err->rc;
	}
	if (sscanf(it->message_id, "%lld:%lld", &chat, &id) != 2 || id <= 0)
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_DATA, "source '%s': "
		    "message '%s' is no TDLib message", ctx->src->name,
		    it->message_id);
	/* The file id the message had when it was stored. */
	if ((fid = file_of(cJSON_GetObjectItemCaseSensitive(it->raw, "content"),
	    it->external_id)) > 0) {
		if ((rc = download(p, ctx, fid, it->size, &a, err)) != SYNC_OK)
			return rc;
		if ((r = downloaded(a, out)) != 0) {
			cJSON_Delete(a);
			return r == -1 ? nomem(err) : SYNC_OK;
		}
		code = td_error(a, &msg);
		if (code != 0 && code != 400 && code != 404)
			goto fail;
		cJSON_Delete(a);
		a = NULL;
	}
	/* Stale, or none: the message as it is now. */
	if ((req = request("getMessage")) == NULL ||
	    add_id(req, "chat_id", chat) == -1 ||
	    add_id(req, "message_id", id) == -1) {
		cJSON_Delete(req);
		return nomem(err);
	}
	snprintf(what, sizeof(what), "getMessage %lld:%lld", chat, id);
	rc = call_retry(p, ctx, req, ctx->source_counts, what, &a, err);
	cJSON_Delete(req);
	if (rc != SYNC_OK)
		return rc;
	if ((code = td_error(a, &msg)) == 400 || code == 404) {
		snprintf(out->unavailable, sizeof(out->unavailable), "the message is "
		    "gone upstream (TDLib: %ld %.120s)", code, msg);
		cJSON_Delete(a);
		return SYNC_OK;
	}
	if (code != 0)
		goto fail;
	fid = file_of(cJSON_GetObjectItemCaseSensitive(a, "content"),
	    it->external_id);
	cJSON_Delete(a);
	a = NULL;
	if (fid <= 0) {
		snprintf(out->unavailable, sizeof(out->unavailable), "the file is "
		    "gone from the message upstream");
		return SYNC_OK;
	}
	if ((rc = download(p, ctx, fid, it->size, &a, err)) != SYNC_OK)
		return rc;
	if ((r = downloaded(a, out)) != 0) {
		cJSON_Delete(a);
		return r == -1 ? nomem(err) : SYNC_OK;
	}
	if ((code = td_error(a, &msg)) == 400 || code == 404) {
		snprintf(out->unavailable, sizeof(out->unavailable), "TDLib will not "
		    "give the file: %ld %.120s", code, msg);
		cJSON_Delete(a);
		return SYNC_OK;
	}
	if (code == 0) {
		cJSON_Delete(a);
		return sync_err_set(err, SYNC_ETEMP, SYNC_ERR_NETWORK, "source '%s': "
		    "message %s: TDLib did not complete the download",
		    ctx->src->name, it->message_id);
	}
fail:
	rc = sync_err_set(err, code == 401 ? SYNC_EPERM : SYNC_EDATA,
	    code == 401 ? SYNC_ERR_AUTH : SYNC_ERR_PROTOCOL, "source '%s': message "
	    "%s: downloadFile: %ld %s", ctx->src->name, it->message_id, code, msg);
	cJSON_Delete(a);
	return rc;
}

static enum sync_rc
tg_login(const struct sync_config *cfg, const struct sync_source_cfg *src,
    sync_prompt_fn ask, void *arg, struct sync_err *err)
{
	struct tg *p;
	enum sync_rc rc;
	cJSON *me = NULL;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return nomem(err);
	p->src = src;
	p->lockfd = -1;
	if ((rc = tg_open(p, cfg, 0, ask, arg, NULL, 0, err)) == SYNC_OK &&
	    (rc = get_me(p, NULL, &me, err)) == SYNC_OK) {
		const char *first = cJSON_GetStringValue(
		    cJSON_GetObjectItemCaseSensitive(me, "first_name"));

		sync_log(LOG_NOTICE, "source '%s': signed in to Telegram as %s "
		    "(user %lld); the session is kept in '%s'", src->name,
		    first != NULL ? first : "?", p->self,
		    sync_cfg_str(src, "tdlib_dir"));
	}
	cJSON_Delete(me);
	tg_release(p);
	return rc;
}

const struct sync_connector sync_telegram_connector = {
	.type = "telegram",
	.keys = tg_keys,
	.all_streams = tg_streams,
	.default_streams = tg_streams,
	.check = tg_check,
	.begin = tg_begin,
	.fetch = tg_fetch,
	.cursor_max = tg_cursor_max,
	.end = tg_end,
	.no_poll_reason = "Telegram messages have no delivery status to poll",
	.flags = SYNC_CONN_NO_URL | SYNC_CONN_NO_TOKEN | SYNC_CONN_CONV_WALKS,
	.import_stream = "messages",
	.login = tg_login,
	.media_refresh = tg_media_refresh,
};
