/*
 * batch.c -- the rows of one page as PostgreSQL COPY text (the text
 * format), ready for the store.  No libpq here: only bytes.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "internal.h"

void
sync_batch_init(struct sync_batch *b, enum sync_entity e)
{
	memset(b, 0, sizeof(*b));
	b->entity = e;
}

static void
free_rows(struct sync_batch *b)
{
	long i;

	for (i = 0; b->rows != NULL && i < b->nrows; i++) {
		free(b->rows[i].external_id);
		free(b->rows[i].conversation_id);
		free(b->rows[i].sender_id);
		free(b->rows[i].provider_id);
	}
}

void
sync_batch_release(struct sync_batch *b)
{
	if (b->entity == SYNC_ENT_MESSAGE)
		free_rows(b);
	free(b->rows);
	b->rows = NULL;
	b->rowcap = 0;
	sync_buf_release(&b->copy);
	sync_buf_release(&b->att);
}

void
sync_batch_filter(struct sync_batch *b, const unsigned char *keep)
{
	size_t to = 0, shift;
	long i, n = 0;

	/* Lines only move towards the start: compact in place. */
	for (i = 0; i < b->nrows; i++) {
		struct sync_msgrow *r = &b->rows[i];
		size_t len = r->end - r->line;

		if (!keep[i]) {
			free(r->external_id);
			free(r->conversation_id);
			free(r->sender_id);
			free(r->provider_id);
			if (r->track != SYNC_TRACK_NONE)
				b->ntrack--;
			continue;
		}
		shift = r->line - to;
		memmove(b->copy.data + to, b->copy.data + r->line, len);
		r->line -= shift;
		r->rest -= shift;
		r->end -= shift;
		to += len;
		b->rows[n++] = *r;
	}
	b->copy.len = to;
	if (b->copy.data != NULL)
		b->copy.data[to] = '\0';
	b->nrows = n;
}

/* Appends s escaped for COPY text (backslash, newline, CR, tab). */
int
sync_copy_text(struct sync_buf *o, const char *s)
{
	const char *p, *run;

	for (p = run = s; *p != '\0'; p++) {
		const char *esc;

		/* Most text has nothing to escape: skip to what has. */
		p += strcspn(p, "\\\n\r\t");
		if (*p == '\0')
			break;
		switch (*p) {
		case '\\':	esc = "\\\\"; break;
		case '\n':	esc = "\\n"; break;
		case '\r':	esc = "\\r"; break;
		case '\t':	esc = "\\t"; break;
		default:	continue;
		}
		if (sync_buf_add(o, run, (size_t)(p - run)) == -1 ||
		    sync_buf_add(o, esc, 2) == -1)
			return -1;
		run = p + 1;
	}
	return sync_buf_add(o, run, (size_t)(p - run));
}

/* Appends one field, escaped for COPY text; NULL becomes \N. */
static int
field(struct sync_batch *b, const char *s, int first)
{
	struct sync_buf *o = &b->copy;

	if (!first && sync_buf_add(o, "\t", 1) == -1)
		return -1;
	if (s == NULL)
		return sync_buf_add(o, "\\N", 2);
	return sync_copy_text(o, s);
}

static int
field_long(struct sync_batch *b, long long v)
{
	char n[32];

	if (v < 0)
		return field(b, NULL, 0);
	snprintf(n, sizeof(n), "%lld", v);
	return field(b, n, 0);
}

static int
field_bool(struct sync_batch *b, int v)
{
	return field(b, v < 0 ? NULL : v ? "t" : "f", 0);
}

/* A timestamp, normalised; one that cannot be read is stored as NULL. */
static int
field_time(struct sync_batch *b, const char *s)
{
	char t[64];

	if (s == NULL || *s == '\0')
		return field(b, NULL, 0);
	if (sync_time_normalize(s, t, sizeof(t)) == -1) {
		b->sanitized++;
		return field(b, NULL, 0);
	}
	return field(b, t, 0);
}

/* JSON as sync_json_print() prints it, written straight as a COPY field. */
static int
field_json(struct sync_batch *b, const cJSON *j)
{
	if (j == NULL || cJSON_IsNull(j))
		return field(b, NULL, 0);
	if (sync_buf_add(&b->copy, "\t", 1) == -1)
		return -1;
	return sync_json_copy(&b->copy, j);
}

static int
row_start(struct sync_batch *b)
{
	char n[24];

	snprintf(n, sizeof(n), "%ld", b->nrows);
	return field(b, n, 1);
}

static int
row_end(struct sync_batch *b)
{
	if (sync_buf_add(&b->copy, "\n", 1) == -1)
		return -1;
	b->nrows++;
	return 0;
}

/* identity.default_calling_code, set once before a pass's threads start. */
static long calling_code;

void
sync_batch_calling_code(long cc)
{
	calling_code = cc;
}

/*
 * A contact's phone goes to the store in E.164 when it can be read as a
 * number (with the configured calling code), else as given, without the
 * spaces around it: a later calling code may still make it one.
 */
int
sync_batch_add_contact(struct sync_batch *b, const struct sync_contact *c)
{
	char e164[20], plus[40], *trim = NULL;
	const char *phone = NULL, *in = c->phone;
	size_t len;
	int r;

	/* International digits without their '+' (TDLib, WhatsApp). */
	if (in != NULL && c->phone_international) {
		in += strspn(in, " \t");
		if (*in >= '1' && *in <= '9' && strlen(in) < sizeof(plus) - 1) {
			snprintf(plus, sizeof(plus), "+%s", in);
			in = plus;
		}
	}
	if (c->phone != NULL) {
		if (sync_phone_e164(in, calling_code, e164, sizeof(e164)) == 0)
			phone = e164;
		else {
			phone = c->phone + strspn(c->phone, " \t\r\n");
			len = strlen(phone);
			while (len > 0 && isspace((unsigned char)phone[len - 1]))
				len--;
			if (len == 0)
				phone = NULL;
			else if ((trim = strndup(phone, len)) == NULL)
				return -1;
			else
				phone = trim;
		}
	}
	r = row_start(b) == -1 || field(b, c->external_id, 0) == -1 ||
	    field(b, c->display_name, 0) == -1 || field(b, phone, 0) == -1 ||
	    field(b, c->username, 0) == -1 || field_json(b, c->raw) == -1;
	free(trim);
	if (r)
		return -1;
	return row_end(b);
}

int
sync_batch_add_conversation(struct sync_batch *b, const struct sync_conversation *c)
{
	if (row_start(b) == -1 || field(b, c->external_id, 0) == -1 ||
	    field(b, c->title, 0) == -1 || field(b, c->kind, 0) == -1 ||
	    field_bool(b, c->is_read) == -1 ||
	    field_long(b, c->unread_count > 2147483647LL ? -1 : c->unread_count) == -1 ||
	    field_time(b, c->last_message_at) == -1 ||
	    field_bool(b, c->archived) == -1 || field_json(b, c->raw) == -1)
		return -1;
	return row_end(b);
}

/* One field of an attachment line (b->att), escaped; NULL becomes \N. */
static int
att_field(struct sync_buf *o, const char *s)
{
	if (sync_buf_add(o, "\t", 1) == -1)
		return -1;
	if (s == NULL)
		return sync_buf_add(o, "\\N", 2);
	return sync_copy_text(o, s);
}

/*
 * The attachment lines of message m, row ord (SPEC §9): "ord, message
 * external id, external_id, kind, mime_type, name, size, url (without its
 * credentials), url_expires_at, link_stripped, local_path, content
 * (bytea), unavailable".  One without an external id is not a file the
 * store can name: it is left out, counted as sanitized.
 */
static int
add_attachments(struct sync_batch *b, long ord, const struct sync_message *m)
{
	static const char hex[] = "0123456789abcdef";
	struct sync_buf *o = &b->att;
	size_t i, k;

	for (i = 0; i < m->natt; i++) {
		const struct sync_attachment *a = &m->att[i];
		char n[32], t[64], *url = NULL;
		const char *exp = a->url_expires_at;
		long long shown = -1;
		int stripped = 0, r;

		if (a->external_id == NULL || *a->external_id == '\0' ||
		    strlen(a->external_id) > SYNC_MAX_ID) {
			b->sanitized++;
			continue;
		}
		if (a->url != NULL && (url = sync_link_clean(a->url, &stripped,
		    &shown)) == NULL)
			return -1;
		if (exp != NULL && sync_time_normalize(exp, t, sizeof(t)) == -1)
			exp = NULL;
		if (exp == NULL && shown > 0) {
			sync_time_format((time_t)shown, t, sizeof(t));
			exp = t;
		}
		snprintf(n, sizeof(n), "%ld", ord);
		r = sync_buf_adds(o, n) == -1 ||
		    att_field(o, m->external_id) == -1 ||
		    att_field(o, a->external_id) == -1 ||
		    att_field(o, a->kind) == -1 || att_field(o, a->mime_type) == -1 ||
		    att_field(o, a->name) == -1;
		snprintf(n, sizeof(n), "%lld", a->size);
		r = r || att_field(o, a->size > 0 ? n : NULL) == -1 ||
		    att_field(o, url) == -1 ||
		    att_field(o, exp != NULL ? (exp == t ? t : exp) : NULL) == -1 ||
		    att_field(o, stripped ? "t" : "f") == -1 ||
		    att_field(o, a->path) == -1;
		free(url);
		if (r)
			return -1;
		if (a->data != NULL) {
			const unsigned char *d = a->data;

			if (sync_buf_adds(o, "\t\\\\x") == -1)
				return -1;
			for (k = 0; k < a->len; k++) {
				char h[2] = { hex[d[k] >> 4], hex[d[k] & 15] };

				if (sync_buf_add(o, h, 2) == -1)
					return -1;
			}
		} else if (att_field(o, NULL) == -1)
			return -1;
		if (att_field(o, a->unavailable) == -1 || sync_buf_add(o, "\n", 1) == -1)
			return -1;
		b->natt++;
	}
	return 0;
}

/* A JSON field that may carry provider links: their credentials go. */
static int
field_json_links(struct sync_batch *b, const cJSON *j)
{
	size_t from = b->copy.len;

	if (field_json(b, j) == -1)
		return -1;
	sync_link_scrub(&b->copy, from);
	return 0;
}

int
sync_batch_add_message(struct sync_batch *b, const struct sync_message *m)
{
	static const char now[] = "now";
	const char *dir = m->direction, *deleted_at = NULL;
	const char *pid = m->provider_id != NULL && *m->provider_id != '\0' ?
	    m->provider_id : NULL;
	struct sync_msgrow *r;
	size_t line = b->copy.len, keys, rest;

	if (dir != NULL && strcmp(dir, "in") != 0 && strcmp(dir, "out") != 0)
		dir = NULL;
	if ((size_t)b->nrows == b->rowcap) {
		size_t ncap = b->rowcap ? b->rowcap * 2 : 256;
		struct sync_msgrow *nr = realloc(b->rows, ncap * sizeof(*nr));

		if (nr == NULL)
			return -1;
		b->rows = nr;
		b->rowcap = ncap;
	}
	/*
	 * A deletion keeps the upstream's time, else the time the store first
	 * sees it: PostgreSQL reads the input 'now' as the transaction's
	 * time, and the row's hash stays the same on every later pass.
	 */
	if (m->deleted) {
		char t[64];

		if (m->deleted_at != NULL && sync_time_normalize(m->deleted_at, t,
		    sizeof(t)) == 0)
			deleted_at = m->deleted_at;
		else
			deleted_at = now;
	}
	if (row_start(b) == -1)
		return -1;
	keys = b->copy.len + 1;			/* after the tab */
	if (field(b, m->external_id, 0) == -1 ||
	    field(b, m->conversation_id, 0) == -1 ||
	    field(b, m->sender_id, 0) == -1)
		return -1;
	rest = b->copy.len + 1;
	if (field(b, dir, 0) == -1 ||
	    field(b, m->kind, 0) == -1 || field(b, m->body, 0) == -1 ||
	    field_time(b, m->sent_at) == -1 || field_time(b, m->edited_at) == -1 ||
	    field(b, m->status, 0) == -1 || field_time(b, m->status_at) == -1 ||
	    field_time(b, m->validity_expires_at) == -1 ||
	    field(b, m->folder, 0) == -1 ||
	    (m->natt > 0 || (m->attachments != NULL &&
	    m->attachments->child != NULL) ?
	    field_json_links(b, m->attachments) == -1 ||
	    field_json_links(b, m->raw) == -1 :
	    field_json(b, m->attachments) == -1 || field_json(b, m->raw) == -1) ||
	    (deleted_at == now ?
	    field(b, now, 0) : field_time(b, deleted_at)) == -1)
		return -1;
	r = &b->rows[b->nrows];
	sync_hash_hex(sync_hash(SYNC_HASH_INIT, b->copy.data + keys,
	    b->copy.len - keys), r->hash);
	if (field(b, r->hash, 0) == -1 || field(b, pid, 0) == -1 ||
	    row_end(b) == -1)
		return -1;
	r->line = line;
	r->rest = rest;
	r->end = b->copy.len;
	r->track = m->track;
	r->track_until = m->track_until;
	r->incoming = dir != NULL && strcmp(dir, "in") == 0;
	r->deleted = m->deleted != 0;
	r->external_id = sync_strdup(m->external_id);
	r->conversation_id = sync_strdup(m->conversation_id);
	r->sender_id = sync_strdup(m->sender_id);
	r->provider_id = sync_strdup(pid);
	if (r->external_id == NULL || (m->conversation_id != NULL &&
	    r->conversation_id == NULL) || (m->sender_id != NULL &&
	    r->sender_id == NULL) || (pid != NULL && r->provider_id == NULL)) {
		free(r->external_id);
		free(r->conversation_id);
		free(r->sender_id);
		free(r->provider_id);
		b->nrows--;		/* row_end counted it */
		return -1;
	}
	if (m->track != SYNC_TRACK_NONE)
		b->ntrack++;
	if (m->natt > 0 && add_attachments(b, b->nrows - 1, m) == -1)
		return -1;
	return 0;
}

/* ---- rows that cannot be stored (SPEC §7.9) ------------------------------ */

#define STR_(x)		#x
#define STR(x)		STR_(x)

const char *
sync_id_problem(const cJSON *o, const char *key)
{
	const cJSON *v;

	if (!cJSON_IsObject(o))
		return "the row is not an object";
	v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (v == NULL)
		return "missing";
	if (cJSON_IsNull(v))
		return "null";
	if (cJSON_IsObject(v))
		return "an object, not a string or number";
	if (cJSON_IsArray(v))
		return "an array, not a string or number";
	if (cJSON_IsBool(v))
		return "a boolean, not a string or number";
	if (cJSON_IsString(v)) {
		size_t n = strlen(v->valuestring);

		if (n == 0)
			return "empty";
		if (n > SYNC_MAX_ID)
			return "longer than " STR(SYNC_MAX_ID) " bytes";
		return NULL;
	}
	if (cJSON_IsNumber(v))
		return NULL;
	return "not a string or number";
}

int
sync_page_reject(struct sync_page *pg, const char *position, const char *field,
    const char *why, const cJSON *raw)
{
	struct sync_reject *v, *r;
	struct sync_buf reason = SYNC_BUF_INIT(0);
	char *text;

	if ((v = realloc(pg->rejects, (pg->nrejects + 1) * sizeof(*v))) == NULL)
		return -1;
	pg->rejects = v;
	r = &v[pg->nrejects];
	memset(r, 0, sizeof(*r));
	if (sync_buf_addf(&reason, "field '%s': %s", field != NULL ? field : "?",
	    why != NULL ? why : "unusable") == -1) {
		sync_buf_release(&reason);
		return -1;
	}
	text = raw != NULL ? sync_json_print(raw) : NULL;
	r->raw = sync_strdup(text != NULL ? text : "null");
	if (text != NULL)
		cJSON_free(text);
	r->reason = reason.data;
	r->position = sync_strdup(position);
	pg->nrejects++;		/* freed by the engine from here on */
	if (r->raw == NULL || r->reason == NULL || (position != NULL &&
	    r->position == NULL))
		return -1;
	return 0;
}

int
sync_page_stored(struct sync_page *pg, const char *position)
{
	char **v;
	long long one;

	if (pg->open == NULL || position == NULL ||
	    !sync_strmap_get(pg->open, position, &one))
		return 0;
	if ((v = realloc(pg->resolves, (pg->nresolves + 1) * sizeof(*v))) == NULL)
		return -1;
	pg->resolves = v;
	if ((v[pg->nresolves] = strdup(position)) == NULL)
		return -1;
	pg->nresolves++;
	return 0;
}

void
sync_page_release(struct sync_page *pg)
{
	size_t i;

	sync_batch_release(&pg->batch);
	sync_batch_release(&pg->side[0]);
	sync_batch_release(&pg->side[1]);
	while (pg->ndeleted > 0)
		free(pg->deleted[--pg->ndeleted]);
	free(pg->deleted);
	free(pg->cursor);
	free(pg->checkpoint);
	free(pg->fingerprint);
	free(pg->missing);

	for (i = 0; i < pg->nrejects; i++) {
		free(pg->rejects[i].position);
		free(pg->rejects[i].reason);
		free(pg->rejects[i].raw);
	}
	free(pg->rejects);
	for (i = 0; i < pg->nresolves; i++)
		free(pg->resolves[i]);
	free(pg->resolves);
	sync_page_history_release(pg);
	memset(pg, 0, sizeof(*pg));
}
