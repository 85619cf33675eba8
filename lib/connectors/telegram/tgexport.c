/*
 * tgexport.c -- Telegram Desktop's machine-readable exports (result.json),
 * read as a stream in bounded memory, and mapped to our rows so that they
 * land on the same keys as what the TDLib side of telegram.c writes.
 *
 * The format, as checked in the writer, Telegram/SourceFiles/export/
 * output/export_output_json.cpp of telegramdesktop/tdesktop (upstream of
 * 2021, and current copies of 2025 in materialgram/materialgram and
 * rabbitGramDesktop), and the reference §B.3:
 *
 * - A single-chat export is one chat object {"name", "type", "id",
 *   "messages": [...]}; a full export is one object with "about",
 *   "personal_information", "profile_pictures", "stories", "contacts"
 *   {"about", "list"}, "frequent_contacts", "sessions", "web_sessions",
 *   "other_data", "chats" and "left_chats" {"about", "list": [chat...]}.
 *   JsonWriter::writeDialogStart() writes a chat's "name" (not for
 *   saved_messages, replies and verification_codes), "type", "id" and then
 *   "messages", always last: keys after "messages" are skipped here.
 * - Chat types: personal_chat, bot_chat, saved_messages, replies,
 *   verification_codes, private_group, private_supergroup,
 *   public_supergroup, private_channel, public_channel.  The id is the bare
 *   peer id (PeerToBareId).  replies and verification_codes are users
 *   (DialogTypeFromUser() in export_data_types.cpp: user.isReplies), so
 *   their TDLib chat id is the user id, like a personal chat's.
 * - A message: "id", "type" (message, service; unsupported with no other
 *   key), "date" (QDateTime::toString(Qt::ISODate) of local time, no
 *   offset), "date_unixtime" (a string), "edited"/"edited_unixtime", then
 *   "from"/"from_id" ("user<N>", "channel<N>", "chat<N>"; exports of 2020
 *   and before wrote a bare number) or, for service messages,
 *   "actor"/"actor_id" and "action"; media keys ("photo" with
 *   "photo_file_size", "width", "height"; "file" with "file_name",
 *   "file_size", "media_type", "mime_type", "duration_seconds";
 *   "contact_information", "location_information", "place_name", "poll",
 *   "game_title", "invoice_information", "todo_list", ...); "text" (a
 *   string, or an array of strings and {type, text, ...}) and
 *   "text_entities" (always an array of {type, text, ...}).  Dice and
 *   stories are not exported ("#TODO dice" in ParseMedia()).
 * - A file not saved is a string in place of its path: "(File not
 *   included. ...)", "(File exceeds maximum size. ...)", "(File
 *   unavailable, ...)"; a saved one is a relative path ("photos/...").
 * - SerializeString() writes control characters as "\xHH", which is not
 *   JSON (tdesktop issue #27571: "\x01" in inline button data): they are
 *   rewritten as \u00HH here, and counted as sanitised.
 *
 * TDLib's ids (td/telegram/DialogId.h, MessageId.h): a chat id is the user
 * id, -(basic group id), or -1000000000000 - (channel id); a message id is
 * the server id << 20 (SERVER_ID_SHIFT).  User ids go up to 2^40 - 1
 * (UserId.h), basic groups to 999999999999, channels below 10^12 - 2^31,
 * or in [10^12 + 2^31 + 1, 3 * 10^12] for monoforums (ChannelId.h).
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "connector.h"
#include "tgexport.h"

#define TGX_BUFSZ	(256 * 1024)	/* fread() buffer */
#define TGX_HEADER_MAX	(1024 * 1024)	/* a chat's keys before "messages" */
#define TGX_KEY_MAX	256		/* longer keys are nobody's */
#define TGX_FRAMES	8

#define ZERO_CHANNEL_ID	(-1000000000000LL)
#define MAX_USER_ID	((1LL << 40) - 1)
#define MAX_CHAT_ID	999999999999LL
#define MAX_CHANNEL_ID	(1000000000000LL - (1LL << 31))	/* exclusive */
#define MIN_MONOFORUM_ID (1000000000000LL + (1LL << 31) + 1)
#define MAX_MONOFORUM_ID 3000000000000LL
#define SERVER_SHIFT	20

/* The levels above the objects the caller gets. */
enum tgx_frame {
	FR_TOP,		/* the export: an object */
	FR_WRAP,	/* "chats", "left_chats", "contacts": an object */
	FR_LIST,	/* their "list": an array */
	FR_CHAT,	/* a chat of a list: an object */
	FR_MSGS		/* a chat's "messages": an array */
};

struct tgx_level {
	enum tgx_frame	 kind;
	int		 contacts;	/* WRAP, LIST: of contacts, not chats */
	int		 more;		/* an item came: ',' or the end next */
	int		 sent;		/* TOP, CHAT: CHAT was returned (its
					   later keys are skipped) */
	int		 done;		/* TOP, CHAT: its messages are over */
	long		 line;		/* where it began */
	char		 key[16];	/* WRAP, LIST: its key */
};

struct sync_tgx {
	FILE		*fp;
	int		 own;		/* fp is ours to close */
	char		*name;		/* for errors */
	char		*dir;		/* the export's directory (absolute),
					   its files' base; NULL: unknown */
	unsigned char	*buf;
	size_t		 len, pos;
	int		 eof;
	int		 rd_errno;	/* of a failed fread() */
	long		 line;
	struct tgx_level lv[TGX_FRAMES];
	int		 nlv;
	int		 started;
	int		 finished;
	int		 seen;		/* a key that makes it an export */
	int		 pending_end;	/* CHAT_END is the next item */
	char		 key[TGX_KEY_MAX + 1];	/* the last key, raw */
	size_t		 keylen;
	int		 keylong;
	struct sync_buf	 obj;		/* the object's text */
	struct sync_buf	 hdr;		/* the current chat's keys */
	int		 hdr_top;	/* ... which are the top level's */
	long		 hdr_xesc;
	long		 xesc;		/* "\x" escapes met in the object */
	cJSON		*json;		/* the last item's object */
	cJSON		*chat;		/* the current chat's header */
	int		 chat_over;	/* CHAT_END returned: chat goes next */
	long long	 chat_id;
	char		 chat_type[32];
	char		 chat_label[128];
	long		 sanitized;
	enum sync_rc	 fail_rc;	/* an error, repeated */
	char		 fail[512];
	/* the senders already in the current contacts batch */
	struct sync_strmap senders;
	/* the users with a row of their own (SELF, contacts.list) */
	struct sync_strmap known;
	const struct sync_batch *senders_batch;
	long		 senders_rows;
};

/* Bytes that stop the scan of a string, and of the rest of a value. */
static const unsigned char str_stop[256] = {
	['"'] = 1, ['\\'] = 1, ['\n'] = 1
};
static const unsigned char val_stop[256] = {
	['{'] = 1, ['}'] = 1, ['['] = 1, [']'] = 1, ['"'] = 1, ['\n'] = 1
};
/* The bytes of numbers, true, false and null. */
static const unsigned char lit_char[256] = {
	['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
	['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['+'] = 1, ['-'] = 1,
	['.'] = 1, ['e'] = 1, ['E'] = 1, ['t'] = 1, ['r'] = 1, ['u'] = 1,
	['f'] = 1, ['a'] = 1, ['l'] = 1, ['s'] = 1, ['n'] = 1
};

/* ---- errors ------------------------------------------------------------- */

/*
 * Sets a data error "NAME:LINE: why" and keeps it for the calls that
 * follow.  Returns SYNC_EDATA.
 */
static enum sync_rc
tgx_fail(struct sync_tgx *r, struct sync_err *err, long line, const char *fmt,
    ...) __attribute__((format(printf, 4, 5)));

static enum sync_rc
tgx_fail(struct sync_tgx *r, struct sync_err *err, long line, const char *fmt,
    ...)
{
	char why[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(r->fail, sizeof(r->fail), "%s:%ld: %s", r->name, line, why);
	r->fail_rc = SYNC_EDATA;
	return sync_err_set(err, SYNC_EDATA, SYNC_ERR_DATA, "%s", r->fail);
}

static enum sync_rc
tgx_nomem(struct sync_tgx *r, struct sync_err *err)
{
	snprintf(r->fail, sizeof(r->fail), "%s: out of memory", r->name);
	r->fail_rc = SYNC_ENOMEM;
	return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "%s", r->fail);
}

static enum sync_rc
tgx_read_error(struct sync_tgx *r, struct sync_err *err)
{
	snprintf(r->fail, sizeof(r->fail), "%s:%ld: cannot read: %s", r->name,
	    r->line, strerror(r->rd_errno));
	r->fail_rc = SYNC_EDATA;
	return sync_err_set(err, SYNC_EDATA, SYNC_ERR_DATA, "%s", r->fail);
}

/*
 * What the scanner is in, for errors: "chat 'Ops team'", "'chats'", "the
 * export".  Returns out.
 */
static const char *
where(const struct sync_tgx *r, char *out, size_t n)
{
	int i;

	for (i = r->nlv - 1; i >= 0; i--) {
		const struct tgx_level *l = &r->lv[i];

		switch (l->kind) {
		case FR_MSGS:
			continue;
		case FR_CHAT:
			if (l->sent)
				snprintf(out, n, "chat '%s'", r->chat_label);
			else
				snprintf(out, n, "the chat that begins on "
				    "line %ld", l->line);
			return out;
		case FR_LIST:
		case FR_WRAP:
			snprintf(out, n, "'%s'", l->key);
			return out;
		case FR_TOP:
			if (l->sent && !l->done)
				snprintf(out, n, "chat '%s'", r->chat_label);
			else
				snprintf(out, n, "the export");
			return out;
		}
	}
	snprintf(out, n, "the export");
	return out;
}

/* ---- input -------------------------------------------------------------- */

/* Refills the buffer once it is used up: 1 data, 0 end of file, -1 error. */
static int
refill(struct sync_tgx *r)
{
	if (r->pos < r->len)
		return 1;
	if (r->eof)
		return 0;
	r->pos = 0;
	errno = 0;
	r->len = fread(r->buf, 1, TGX_BUFSZ, r->fp);
	if (r->len == 0) {
		r->rd_errno = errno != 0 ? errno : EIO;
		r->eof = 1;
		return ferror(r->fp) ? -1 : 0;
	}
	return 1;
}

/* Skips white space: the next byte (not consumed), -1 at the end, -2 error. */
static int
peek_ws(struct sync_tgx *r)
{
	int rc;

	for (;;) {
		while (r->pos < r->len) {
			unsigned char c = r->buf[r->pos];

			if (c == '\n')
				r->line++;
			else if (c != ' ' && c != '\t' && c != '\r')
				return c;
			r->pos++;
		}
		if ((rc = refill(r)) <= 0)
			return rc == 0 ? -1 : -2;
	}
}

/* An error for what peek_ws() returned at the end of the file, or -2. */
static enum sync_rc
eof_error(struct sync_tgx *r, int c, struct sync_err *err)
{
	char w[200];

	if (c == -2)
		return tgx_read_error(r, err);
	return tgx_fail(r, err, r->line, "unexpected end of file inside %s",
	    where(r, w, sizeof(w)));
}

/*
 * Reads the key (a string) at the reader's position into r->key, raw (its
 * escapes as they are), without the quotes; r->keylong is set if it is
 * longer than TGX_KEY_MAX.
 */
static enum sync_rc
read_key(struct sync_tgx *r, struct sync_err *err)
{
	char w[200];
	int esc = 0, rc;

	r->keylen = 0;
	r->keylong = 0;
	r->pos++;			/* the quote */
	for (;;) {
		unsigned char c;

		if (r->pos == r->len && (rc = refill(r)) <= 0) {
			if (rc < 0)
				return tgx_read_error(r, err);
			return tgx_fail(r, err, r->line, "unexpected end of "
			    "file inside a key in %s", where(r, w, sizeof(w)));
		}
		c = r->buf[r->pos++];
		if (c == '\n')
			r->line++;
		if (!esc && c == '"')
			break;
		esc = !esc && c == '\\';
		if (r->keylen < TGX_KEY_MAX)
			r->key[r->keylen++] = (char)c;
		else
			r->keylong = 1;
	}
	r->key[r->keylen] = '\0';
	return SYNC_OK;
}

static int
key_is(const struct sync_tgx *r, const char *k)
{
	return !r->keylong && strcmp(r->key, k) == 0;
}

/* The last key for an error: printable ASCII, the rest as '?'. */
static const char *
key_shown(const struct sync_tgx *r, char *out, size_t n)
{
	size_t i;

	for (i = 0; i + 1 < n && r->key[i] != '\0'; i++) {
		char c = r->key[i];

		out[i] = c >= 0x20 && c < 0x7f ? c : '?';
	}
	out[i] = '\0';
	return out;
}

/* ---- values ------------------------------------------------------------- */

enum tgx_cap {
	CAP_SKIP,	/* nothing is kept */
	CAP_DROP,	/* kept, or dropped (out back to mark) if too long */
	CAP_KEEP	/* kept; too long is an error */
};

struct tgx_scan {
	struct sync_buf	*out;
	enum tgx_cap	 mode;
	size_t		 mark;
	size_t		 limit;
	const char	*what;		/* "a message", for errors */
	long		 line;		/* where the value began */
};

/* Appends n bytes at s to what a scan keeps: 0, 1 too long, -1 ENOMEM. */
static int
scan_keep(struct tgx_scan *s, const unsigned char *p, size_t n)
{
	if (s->mode == CAP_SKIP || n == 0)
		return 0;
	if (s->out->len + n > s->limit) {
		if (s->mode == CAP_KEEP)
			return 1;
		s->out->len = s->mark;
		s->out->data[s->mark] = '\0';
		s->mode = CAP_SKIP;
		return 0;
	}
	return sync_buf_add(s->out, p, n);
}

static enum sync_rc
scan_flush(struct sync_tgx *r, struct tgx_scan *s, const unsigned char *from,
    const unsigned char *to, struct sync_err *err)
{
	char w[200];

	switch (scan_keep(s, from, (size_t)(to - from))) {
	case 0:
		return SYNC_OK;
	case 1:
		return tgx_fail(r, err, s->line, "%s in %s is larger than %d "
		    "MiB", s->what, where(r, w, sizeof(w)),
		    SYNC_TGX_MAX_OBJECT >> 20);
	default:
		return tgx_nomem(r, err);
	}
}

/* The end of the file inside a value (in a string if instr). */
static enum sync_rc
scan_eof(struct sync_tgx *r, const struct tgx_scan *s, int instr,
    struct sync_err *err)
{
	char w[200];

	return tgx_fail(r, err, r->line, "unexpected end of file inside %s%s "
	    "(begun on line %ld) in %s", instr ? "a string in " : "", s->what,
	    s->line, where(r, w, sizeof(w)));
}

/*
 * Scans the JSON value that begins at the reader's position (white space
 * skipped), keeping its text as s says, and leaves the reader after it.
 * It checks strings, escapes and the nesting of brackets, no more: what is
 * kept is parsed later, what is skipped is not parsed at all.  Counts the
 * "\x" escapes it meets in r->xesc.
 */
static enum sync_rc
scan_value(struct sync_tgx *r, struct tgx_scan *s, struct sync_err *err)
{
	unsigned char open[SYNC_TGX_MAX_DEPTH];	/* '{' or '[' by level */
	const unsigned char *p, *end, *start;
	int depth = 0, instr = 0, esc = 0, lit = 0, rc;
	enum sync_rc src;
	char w[200];
	unsigned char c;

	p = start = r->buf + r->pos;
	end = r->buf + r->len;
	c = *p;
	if (c == '"') {
		instr = 1;
		p++;
	} else if (c == '{' || c == '[') {
		open[depth++] = c;
		p++;
	} else if (lit_char[c])
		lit = 1;
	else if (c >= 0x20 && c < 0x7f)
		return tgx_fail(r, err, r->line, "unexpected '%c' in %s", c,
		    where(r, w, sizeof(w)));
	else
		return tgx_fail(r, err, r->line, "unexpected byte 0x%02x in %s",
		    c, where(r, w, sizeof(w)));
	for (;;) {
		if (p == end) {
			if ((src = scan_flush(r, s, start, p, err)) != SYNC_OK)
				return src;
			r->pos = r->len;
			if ((rc = refill(r)) < 0)
				return tgx_read_error(r, err);
			if (rc == 0) {
				if (lit)	/* the end is checked later */
					return SYNC_OK;
				return scan_eof(r, s, instr, err);
			}
			p = start = r->buf;
			end = r->buf + r->len;
		}
		if (lit) {
			while (p < end && lit_char[*p])
				p++;
			if (p < end)
				goto done;
			continue;
		}
		if (instr) {
			if (esc) {
				esc = 0;
				if (*p == 'x')
					r->xesc++;
				else if (*p == '\n')
					r->line++;
				p++;
				continue;
			}
			while (p < end && !str_stop[*p])
				p++;
			if (p == end)
				continue;
			c = *p++;
			if (c == '"') {
				instr = 0;
				if (depth == 0)
					goto done;
			} else if (c == '\\')
				esc = 1;
			else
				r->line++;
			continue;
		}
		while (p < end && !val_stop[*p])
			p++;
		if (p == end)
			continue;
		c = *p++;
		switch (c) {
		case '"':
			instr = 1;
			break;
		case '\n':
			r->line++;
			break;
		case '{':
		case '[':
			if (depth == SYNC_TGX_MAX_DEPTH)
				return tgx_fail(r, err, r->line, "%s (begun "
				    "on line %ld) in %s nests deeper than %d "
				    "levels", s->what, s->line,
				    where(r, w, sizeof(w)), SYNC_TGX_MAX_DEPTH);
			open[depth++] = c;
			break;
		default:			/* '}' or ']' */
			if (open[depth - 1] != (c == '}' ? '{' : '['))
				return tgx_fail(r, err, r->line, "'%c' closes "
				    "'%c' in %s (begun on line %ld) in %s", c,
				    open[depth - 1], s->what, s->line,
				    where(r, w, sizeof(w)));
			if (--depth == 0)
				goto done;
			break;
		}
	}
done:
	r->pos = (size_t)(p - r->buf);
	return scan_flush(r, s, start, p, err);
}

/* Skips the value at the reader's position. */
static enum sync_rc
skip_value(struct sync_tgx *r, struct sync_err *err)
{
	struct tgx_scan s = { NULL, CAP_SKIP, 0, 0, "a value", 0 };

	s.line = r->line;
	return scan_value(r, &s, err);
}

/*
 * Rewrites tdesktop's "\xHH" escapes in strings as "\u00HH" ("\x00" as
 * U+FFFD, as sync_json_sanitize() would).  Returns the number rewritten,
 * -1 on ENOMEM.
 */
static long
unescape_x(struct sync_buf *b)
{
	struct sync_buf out = SYNC_BUF_INIT(0);
	const char *p = b->data;
	size_t i, done = 0, n = b->len;
	int instr = 0;
	long count = 0;

	for (i = 0; i < n; i++) {
		char rep[8];

		if (p[i] == '"') {
			instr = !instr;
			continue;
		}
		if (!instr || p[i] != '\\' || i + 1 >= n)
			continue;
		if (p[i + 1] != 'x' || i + 3 >= n ||
		    !isxdigit((unsigned char)p[i + 2]) ||
		    !isxdigit((unsigned char)p[i + 3])) {
			i++;			/* some other escape */
			continue;
		}
		if (p[i + 2] == '0' && p[i + 3] == '0')
			memcpy(rep, "\\ufffd", 7);
		else
			snprintf(rep, sizeof(rep), "\\u00%c%c", p[i + 2],
			    p[i + 3]);
		if (sync_buf_add(&out, p + done, i - done) == -1 ||
		    sync_buf_add(&out, rep, 6) == -1) {
			sync_buf_release(&out);
			return -1;
		}
		count++;
		i += 3;
		done = i + 1;
	}
	if (count == 0)
		return 0;
	if (sync_buf_add(&out, p + done, n - done) == -1) {
		sync_buf_release(&out);
		return -1;
	}
	out.max = b->max;
	sync_buf_release(b);
	*b = out;
	return count;
}

/* A \uXXXX escape at p (n bytes): its value, or -1. */
static long
esc_u(const unsigned char *p, size_t n)
{
	long v = 0;
	size_t i;

	if (n < 6 || p[1] != 'u')
		return -1;
	for (i = 2; i < 6; i++) {
		if (!isxdigit(p[i]))
			return -1;
		v = v * 16 + (isdigit(p[i]) ? p[i] - '0' :
		    (p[i] | 0x20) - 'a' + 10);
	}
	return v;
}

/*
 * Whether the JSON text of n bytes at p is valid UTF-8 without NUL bytes,
 * \u0000 or \u escapes of surrogates: then sync_json_sanitize() would
 * change nothing, and is not run (it is the slowest part of reading an
 * export otherwise).  The rules are those of buf.c's utf8_seq(): no
 * overlong forms, no surrogates, nothing above U+10FFFF; any surrogate
 * escape, even of a valid pair, is left to the sanitiser.  Eight bytes at
 * a time for ASCII without backslashes.
 */
static int
clean_json(const unsigned char *p, size_t n)
{
	const uint64_t ones = 0x0101010101010101ULL;
	const uint64_t highs = 0x8080808080808080ULL;
	const uint64_t bslashes = 0x5c5c5c5c5c5c5c5cULL;
	size_t i = 0, k;
	uint64_t v, b;
	unsigned char c;
	long u;

	while (i < n) {
		if (n - i >= 8) {
			memcpy(&v, p + i, 8);
			b = v ^ bslashes;
			/* No high bit set, no zero byte, no backslash. */
			if (((v | ((v - ones) & ~v) | ((b - ones) & ~b)) &
			    highs) == 0) {
				i += 8;
				continue;
			}
		}
		c = p[i];
		if (c == 0)
			return 0;
		if (c == '\\') {
			u = esc_u(p + i, n - i);
			if (u == 0 || (u >= 0xd800 && u <= 0xdfff))
				return 0;
			i += 2;		/* the escaped byte: not a backslash */
			continue;
		}
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			k = 2;
		else if (c >= 0xe0 && c <= 0xef)
			k = 3;
		else if (c >= 0xf0 && c <= 0xf4)
			k = 4;
		else
			return 0;
		if (n - i < k || (p[i + 1] & 0xc0) != 0x80 ||
		    (k > 2 && (p[i + 2] & 0xc0) != 0x80) ||
		    (k > 3 && (p[i + 3] & 0xc0) != 0x80) ||
		    (c == 0xe0 && p[i + 1] < 0xa0) ||	/* overlong */
		    (c == 0xed && p[i + 1] > 0x9f) ||	/* surrogate */
		    (c == 0xf0 && p[i + 1] < 0x90) ||	/* overlong */
		    (c == 0xf4 && p[i + 1] > 0x8f))	/* > U+10FFFF */
			return 0;
		i += k;
	}
	return 1;
}

/*
 * Makes the text in b safe and parses it: b holds one object, which began
 * on line `line`, with xesc "\x" escapes.  *json gets the tree (the
 * caller's), *fixed the number of characters replaced.
 */
static enum sync_rc
parse_text(struct sync_tgx *r, struct sync_buf *b, long xesc, long line,
    const char *what, cJSON **json, long *fixed, struct sync_err *err)
{
	const char *end = NULL;
	long n = 0, k;
	char w[200];
	size_t i;

	*json = NULL;
	if (xesc > 0) {
		if ((n = unescape_x(b)) == -1)
			return tgx_nomem(r, err);
	}
	if (!clean_json((const unsigned char *)b->data, b->len)) {
		if ((k = sync_json_sanitize(b)) == -1)
			return tgx_nomem(r, err);
		n += k;
	}
	*fixed = n;
	r->sanitized += n;
	*json = cJSON_ParseWithLengthOpts(b->data, b->len, &end, 0);
	if (*json != NULL)
		return SYNC_OK;
	/* Where cJSON stopped: its line in the file. */
	if (end != NULL && end >= b->data && end <= b->data + b->len)
		for (i = 0; i < (size_t)(end - b->data); i++)
			if (b->data[i] == '\n')
				line++;
	return tgx_fail(r, err, line, "not valid JSON in %s in %s", what,
	    where(r, w, sizeof(w)));
}

/* ---- chats ------------------------------------------------------------ */

static const char *
str_of(const cJSON *o, const char *key)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static void
chat_release(struct sync_tgx *r)
{
	cJSON_Delete(r->chat);
	r->chat = NULL;
	r->chat_id = 0;
	r->chat_type[0] = '\0';
	r->chat_over = 0;		/* chat_label stays, for errors */
}

static void
item_chat(const struct sync_tgx *r, struct sync_tgx_item *it)
{
	it->chat_id = r->chat_id;
	it->chat_type = r->chat_type;
	it->chat = r->chat;
}

/* Starts a chat's header: the keys before "messages" go into r->hdr. */
static enum sync_rc
hdr_start(struct sync_tgx *r, struct sync_err *err)
{
	sync_buf_reset(&r->hdr);
	r->hdr_xesc = 0;
	if (sync_buf_add(&r->hdr, "{", 1) == -1)
		return tgx_nomem(r, err);
	return SYNC_OK;
}

/*
 * Adds the value at the reader's position to the header under the last
 * key: dropped (skipped) if it would take the header over TGX_HEADER_MAX.
 */
static enum sync_rc
hdr_add(struct sync_tgx *r, struct sync_err *err)
{
	struct tgx_scan s = { &r->hdr, CAP_DROP, 0, TGX_HEADER_MAX,
	    "a chat's key", 0 };
	enum sync_rc rc;

	if (r->keylong)
		return skip_value(r, err);
	s.mark = r->hdr.len;
	s.line = r->line;
	if ((r->hdr.len > 1 && sync_buf_add(&r->hdr, ",", 1) == -1) ||
	    sync_buf_add(&r->hdr, "\"", 1) == -1 ||
	    sync_buf_add(&r->hdr, r->key, r->keylen) == -1 ||
	    sync_buf_add(&r->hdr, "\":", 2) == -1)
		return tgx_nomem(r, err);
	r->xesc = 0;
	rc = scan_value(r, &s, err);
	r->hdr_xesc += r->xesc;
	return rc;
}

/*
 * The chat whose header r->hdr holds begins (level l, which began on
 * line): parses the header and returns the CHAT item.
 */
static enum sync_rc
chat_begin(struct sync_tgx *r, struct tgx_level *l, struct sync_tgx_item *it,
    struct sync_err *err)
{
	const char *type, *name;
	long long id = 0;
	enum sync_rc rc;
	long fixed;

	chat_release(r);
	if (sync_buf_add(&r->hdr, "}", 1) == -1)
		return tgx_nomem(r, err);
	if ((rc = parse_text(r, &r->hdr, r->hdr_xesc, l->line,
	    "the chat's keys before 'messages'", &r->chat, &fixed,
	    err)) != SYNC_OK)
		return rc;
	type = str_of(r->chat, "type");
	name = str_of(r->chat, "name");
	if (type != NULL && strlen(type) < sizeof(r->chat_type))
		snprintf(r->chat_type, sizeof(r->chat_type), "%s", type);
	if (sync_json_id(r->chat, "id", &id) == 0)
		r->chat_id = sync_tgx_chat_id(r->chat_type, id);
	if (name != NULL && *name != '\0')
		snprintf(r->chat_label, sizeof(r->chat_label), "%s", name);
	else
		snprintf(r->chat_label, sizeof(r->chat_label), "%s %lld",
		    r->chat_type[0] ? r->chat_type : "(no type)", id);
	l->sent = 1;
	it->kind = SYNC_TGX_CHAT;
	it->json = r->chat;
	it->line = l->line;
	it->sanitized = fixed;
	item_chat(r, it);
	return SYNC_OK;
}

/* ---- objects ------------------------------------------------------------ */

/*
 * Collects the object at the reader's position (a '{') and returns it as
 * an item of kind k.
 */
static enum sync_rc
object_item(struct sync_tgx *r, enum sync_tgx_kind k, const char *what,
    struct sync_tgx_item *it, struct sync_err *err)
{
	struct tgx_scan s = { &r->obj, CAP_KEEP, 0, SYNC_TGX_MAX_OBJECT, NULL,
	    0 };
	enum sync_rc rc;
	long fixed;

	s.what = what;
	s.line = r->line;
	sync_buf_reset(&r->obj);
	r->xesc = 0;
	if ((rc = scan_value(r, &s, err)) != SYNC_OK ||
	    (rc = parse_text(r, &r->obj, r->xesc, s.line, what,
	    &r->json, &fixed, err)) != SYNC_OK)
		return rc;
	it->kind = k;
	it->json = r->json;
	it->line = s.line;
	it->sanitized = fixed;
	if (k == SYNC_TGX_MESSAGE)
		item_chat(r, it);
	/* A buffer grown by one huge object is not kept for the small ones. */
	if (r->obj.cap > 4 * TGX_BUFSZ)
		sync_buf_release(&r->obj);
	return SYNC_OK;
}

/* ---- the structure ------------------------------------------------------ */

static struct tgx_level *
push(struct sync_tgx *r, enum tgx_frame kind, int contacts, const char *key)
{
	struct tgx_level *l = &r->lv[r->nlv++];

	memset(l, 0, sizeof(*l));
	l->kind = kind;
	l->contacts = contacts;
	l->line = r->line;
	if (key != NULL)
		snprintf(l->key, sizeof(l->key), "%s", key);
	r->pos++;			/* the '{' or '[' */
	return l;
}

/* The value of key r->key in object level l, which is at the reader. */
static enum sync_rc
on_key(struct sync_tgx *r, struct tgx_level *l, int c, struct sync_tgx_item *it,
    struct sync_err *err)
{
	char w[200];

	switch (l->kind) {
	case FR_TOP:
		if (l->sent)
			return skip_value(r, err);
		if (key_is(r, "messages")) {
			enum sync_rc rc;

			if (c != '[')
				return tgx_fail(r, err, r->line, "'messages' "
				    "is not an array in the export");
			r->seen = 1;
			if (!r->hdr_top && (rc = hdr_start(r, err)) != SYNC_OK)
				return rc;
			push(r, FR_MSGS, 0, NULL);
			return chat_begin(r, l, it, err);
		}
		if (key_is(r, "personal_information") && c == '{') {
			r->seen = 1;
			return object_item(r, SYNC_TGX_SELF,
			    "'personal_information'", it, err);
		}
		if ((key_is(r, "chats") || key_is(r, "left_chats") ||
		    key_is(r, "contacts")) && c == '{') {
			r->seen = 1;
			push(r, FR_WRAP, key_is(r, "contacts"), r->key);
			return SYNC_OK;
		}
		/*
		 * A single-chat export's keys (name, type, id) are kept, as
		 * long as no chat of a list has begun; the other keys of
		 * either kind of export are skipped.
		 */
		if (c == '{' || c == '[' || !r->hdr_top)
			return skip_value(r, err);
		return hdr_add(r, err);
	case FR_WRAP:
		if (key_is(r, "list") && c == '[') {
			push(r, FR_LIST, l->contacts, l->key);
			return SYNC_OK;
		}
		return skip_value(r, err);
	case FR_CHAT:
		if (l->sent)
			return skip_value(r, err);
		if (key_is(r, "messages")) {
			if (c != '[')
				return tgx_fail(r, err, r->line, "'messages' "
				    "is not an array in %s",
				    where(r, w, sizeof(w)));
			push(r, FR_MSGS, 0, NULL);
			return chat_begin(r, l, it, err);
		}
		return hdr_add(r, err);
	default:
		return skip_value(r, err);
	}
}

/* The next element of array level l, which is at the reader. */
static enum sync_rc
on_element(struct sync_tgx *r, struct tgx_level *l, int c,
    struct sync_tgx_item *it, struct sync_err *err)
{
	char w[200];

	if (l->kind == FR_MSGS) {
		if (c != '{')
			return tgx_fail(r, err, r->line, "expected a message "
			    "(an object) in %s", where(r, w, sizeof(w)));
		return object_item(r, SYNC_TGX_MESSAGE, "a message", it, err);
	}
	if (l->contacts) {
		if (c != '{')
			return skip_value(r, err);
		return object_item(r, SYNC_TGX_CONTACT, "a contact", it, err);
	}
	if (c != '{')
		return tgx_fail(r, err, r->line, "expected a chat (an object) "
		    "in %s", where(r, w, sizeof(w)));
	push(r, FR_CHAT, 0, NULL);
	r->hdr_top = 0;
	return hdr_start(r, err);
}

/* Object level l ends (its '}' is consumed). */
static enum sync_rc
on_close(struct sync_tgx *r, struct tgx_level *l, struct sync_tgx_item *it,
    struct sync_err *err)
{
	enum sync_rc rc = SYNC_OK;

	if (l->kind == FR_CHAT && !l->sent) {
		/* A chat without "messages": it begins and ends. */
		if ((rc = chat_begin(r, l, it, err)) == SYNC_OK)
			r->pending_end = 1;
	}
	r->nlv--;
	return rc;
}

/*
 * Outside the export's object: its '{' to begin with (after a UTF-8 byte
 * order mark, if any), the end of the file after it.  Sets *go if the
 * scanner goes on.
 */
static enum sync_rc
outside(struct sync_tgx *r, struct sync_tgx_item *it, int *go,
    struct sync_err *err)
{
	int c;

	*go = 0;
	if ((c = peek_ws(r)) == -2)
		return tgx_read_error(r, err);
	if (r->started) {
		if (c != -1)
			return tgx_fail(r, err, r->line, "unexpected data "
			    "after the end of the export");
		if (!r->seen)
			return tgx_fail(r, err, r->line, "not a Telegram "
			    "export: no 'messages', 'chats', 'contacts' or "
			    "'personal_information'");
		r->finished = 1;
		it->kind = SYNC_TGX_EOF;
		it->line = r->line;
		return SYNC_OK;
	}
	if (c == 0xef && r->len - r->pos >= 3 &&
	    memcmp(r->buf + r->pos, "\xef\xbb\xbf", 3) == 0) {
		r->pos += 3;
		c = peek_ws(r);
	}
	if (c == -2)
		return tgx_read_error(r, err);
	if (c == -1)
		return tgx_fail(r, err, r->line, "not a Telegram export: the "
		    "file is empty");
	if (c == '[')
		return tgx_fail(r, err, r->line, "not a Telegram export: an "
		    "array, not an object");
	if (c != '{')
		return tgx_fail(r, err, r->line, "not a Telegram export: not a "
		    "JSON object");
	r->started = 1;
	push(r, FR_TOP, 0, NULL);
	r->hdr_top = 1;
	*go = 1;
	return hdr_start(r, err);
}

/* The next element of array level l, or its end. */
static enum sync_rc
array_step(struct sync_tgx *r, struct tgx_level *l, int c,
    struct sync_tgx_item *it, struct sync_err *err)
{
	char w[200];

	if (c == ']') {
		r->pos++;
		r->nlv--;
		if (l->kind != FR_MSGS)
			return SYNC_OK;
		r->lv[r->nlv - 1].done = 1;
		it->kind = SYNC_TGX_CHAT_END;
		it->json = r->chat;
		it->line = r->line;
		item_chat(r, it);
		r->chat_over = 1;
		return SYNC_OK;
	}
	if (l->more) {
		if (c != ',')
			return tgx_fail(r, err, r->line, "expected ',' or ']' "
			    "after %s in %s", l->kind == FR_MSGS ? "a message" :
			    "an item", where(r, w, sizeof(w)));
		r->pos++;
		if ((c = peek_ws(r)) < 0)
			return eof_error(r, c, err);
	}
	l->more = 1;
	return on_element(r, l, c, it, err);
}

/* The next key and value of object level l, or its end. */
static enum sync_rc
object_step(struct sync_tgx *r, struct tgx_level *l, int c,
    struct sync_tgx_item *it, struct sync_err *err)
{
	char w[200], k[64];
	enum sync_rc rc;

	if (c == '}') {
		r->pos++;
		return on_close(r, l, it, err);
	}
	if (l->more) {
		if (c != ',')
			return tgx_fail(r, err, r->line, "expected ',' or '}' "
			    "in %s", where(r, w, sizeof(w)));
		r->pos++;
		if ((c = peek_ws(r)) < 0)
			return eof_error(r, c, err);
	}
	if (c != '"')
		return tgx_fail(r, err, r->line, "expected a key in %s",
		    where(r, w, sizeof(w)));
	if ((rc = read_key(r, err)) != SYNC_OK)
		return rc;
	if ((c = peek_ws(r)) < 0)
		return eof_error(r, c, err);
	if (c != ':')
		return tgx_fail(r, err, r->line, "expected ':' after '%s' in "
		    "%s", key_shown(r, k, sizeof(k)), where(r, w, sizeof(w)));
	r->pos++;
	if ((c = peek_ws(r)) < 0)
		return eof_error(r, c, err);
	l->more = 1;
	return on_key(r, l, c, it, err);
}

/* The next item, or the end: the scanner's main loop. */
static enum sync_rc
advance(struct sync_tgx *r, struct sync_tgx_item *it, struct sync_err *err)
{
	struct tgx_level *l;
	enum sync_rc rc;
	int c, go;

	for (;;) {
		if (r->nlv == 0) {
			if ((rc = outside(r, it, &go, err)) != SYNC_OK || !go)
				return rc;
			continue;
		}
		l = &r->lv[r->nlv - 1];
		if ((c = peek_ws(r)) < 0)
			return eof_error(r, c, err);
		if (l->kind == FR_MSGS || l->kind == FR_LIST)
			rc = array_step(r, l, c, it, err);
		else
			rc = object_step(r, l, c, it, err);
		if (rc != SYNC_OK || it->kind != SYNC_TGX_EOF)
			return rc;
	}
}

/* ---- the reader --------------------------------------------------------- */

struct sync_tgx *
sync_tgx_open_stream(FILE *fp, const char *name, struct sync_err *err)
{
	struct sync_tgx *r;

	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (r->buf = malloc(TGX_BUFSZ)) == NULL ||
	    (r->name = strdup(name)) == NULL) {
		if (r != NULL)
			free(r->buf);
		free(r);
		sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
		return NULL;
	}
	r->fp = fp;
	r->line = 1;
	return r;
}

/*
 * The absolute directory of the export at path (standard input: the
 * current one), whose files its messages name relative to it; NULL when
 * it cannot be told (or ENOMEM).
 */
static char *
export_dir(const char *path)
{
	char *abs, *slash;

	if ((abs = realpath(strcmp(path, "-") == 0 ? "." : path, NULL)) == NULL)
		return NULL;
	if (strcmp(path, "-") != 0 && (slash = strrchr(abs, '/')) != NULL)
		slash[slash == abs ? 1 : 0] = '\0';
	return abs;
}

struct sync_tgx *
sync_tgx_open(const char *path, struct sync_err *err)
{
	struct sync_tgx *r;
	FILE *fp;

	if (strcmp(path, "-") == 0) {
		if ((r = sync_tgx_open_stream(stdin, "(stdin)", err)) != NULL)
			r->dir = export_dir(path);
		return r;
	}
	if ((fp = fopen(path, "rb")) == NULL) {
		sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG, "cannot open "
		    "export '%s': %s", path, strerror(errno));
		return NULL;
	}
	if ((r = sync_tgx_open_stream(fp, path, err)) == NULL) {
		fclose(fp);
		return NULL;
	}
	r->own = 1;
	r->dir = export_dir(path);
	return r;
}

enum sync_rc
sync_tgx_next(struct sync_tgx *r, struct sync_tgx_item *it,
    struct sync_err *err)
{
	memset(it, 0, sizeof(*it));
	it->kind = SYNC_TGX_EOF;
	it->reader = r;
	if (r->fail_rc != SYNC_OK)
		return sync_err_set(err, r->fail_rc, SYNC_ERR_DATA, "%s",
		    r->fail);
	cJSON_Delete(r->json);
	r->json = NULL;
	if (r->pending_end) {
		r->pending_end = 0;
		it->kind = SYNC_TGX_CHAT_END;
		it->json = r->chat;
		it->line = r->line;
		item_chat(r, it);
		r->chat_over = 1;
		return SYNC_OK;
	}
	if (r->chat_over)
		chat_release(r);
	if (r->finished) {
		it->line = r->line;
		return SYNC_OK;
	}
	return advance(r, it, err);
}

long
sync_tgx_sanitized(const struct sync_tgx *r)
{
	return r->sanitized;
}

void
sync_tgx_free(struct sync_tgx *r)
{
	if (r == NULL)
		return;
	if (r->own)
		fclose(r->fp);
	cJSON_Delete(r->json);
	cJSON_Delete(r->chat);
	sync_buf_release(&r->obj);
	sync_buf_release(&r->hdr);
	sync_strmap_clear(&r->senders);
	sync_strmap_clear(&r->known);
	free(r->buf);
	free(r->name);
	free(r->dir);
	free(r);
}

/* ---- ids ---------------------------------------------------------------- */

static int
channel_ok(long long id)
{
	return (id > 0 && id < MAX_CHANNEL_ID) ||
	    (id >= MIN_MONOFORUM_ID && id <= MAX_MONOFORUM_ID);
}

long long
sync_tgx_chat_id(const char *type, long long id)
{
	static const char *const users[] = { "personal_chat", "bot_chat",
	    "saved_messages", "replies", "verification_codes", NULL };
	static const char *const channels[] = { "private_supergroup",
	    "public_supergroup", "private_channel", "public_channel", NULL };
	size_t i;

	if (type == NULL || id <= 0)
		return 0;
	for (i = 0; users[i] != NULL; i++)
		if (strcmp(type, users[i]) == 0)
			return id <= MAX_USER_ID ? id : 0;
	if (strcmp(type, "private_group") == 0)
		return id <= MAX_CHAT_ID ? -id : 0;
	for (i = 0; channels[i] != NULL; i++)
		if (strcmp(type, channels[i]) == 0)
			return channel_ok(id) ? ZERO_CHANNEL_ID - id : 0;
	return 0;
}

long long
sync_tgx_peer_id(const cJSON *v)
{
	static const char *const peers[] = { "user", "channel", "chat" };
	const char *s;
	char *end;
	long long n;
	size_t i, k;

	if (cJSON_IsNumber(v)) {
		if (v->valuedouble >= 1 &&
		    v->valuedouble <= (double)MAX_USER_ID &&
		    (double)(long long)v->valuedouble == v->valuedouble)
			return (long long)v->valuedouble;
		return 0;
	}
	if ((s = cJSON_GetStringValue(v)) == NULL)
		return 0;
	for (i = 0; i < sizeof(peers) / sizeof(peers[0]); i++) {
		k = strlen(peers[i]);
		if (strncmp(s, peers[i], k) != 0 ||
		    !isdigit((unsigned char)s[k]))
			continue;
		errno = 0;
		n = strtoll(s + k, &end, 10);
		if (errno != 0 || *end != '\0' || n <= 0)
			return 0;
		if (i == 0)
			return n <= MAX_USER_ID ? n : 0;
		if (i == 1)
			return channel_ok(n) ? ZERO_CHANNEL_ID - n : 0;
		return n <= MAX_CHAT_ID ? -n : 0;
	}
	return 0;
}

/* ---- rows --------------------------------------------------------------- */

/*
 * The rows, made to land on what telegram.c's TDLib side writes:
 *
 * - message: external_id "<chat id>:<message id>" and conversation_id
 *   "<chat id>" in TDLib's ids; sender_id the peer of from_id (actor_id for
 *   service messages); direction "out" when the sender is self, in saved
 *   messages, or (self unknown) when anybody but the peer sent it in a
 *   chat with one user.  kind: TDLib's content type in snake case, as the
 *   TDLib side names it: photo, video, document, audio, voice_note,
 *   video_note, animation, sticker; contact, venue, location, poll,
 *   checklist, game, invoice, giveaway, giveaway_winners, paid_media;
 *   "text"; "service" and "unsupported" for those types (the TDLib side
 *   has a kind per service action: those names differ).  attachments only
 *   for the kinds with a file, as on the TDLib side, with its keys
 *   (kind, file_name, mime_type, duration, width, height, size) where the
 *   export has them, plus "path" or "missing": true.  raw: the export's
 *   object.  A time is date_unixtime (or date, local time).
 * - a sender: a contact with an id and a name, unless it had a row of its
 *   own (SELF, contacts.list).
 * - a chat: its conversation with the kind of the TDLib side (private,
 *   basic_group, supergroup, channel; replies and verification_codes are
 *   private chats with a user), the rest unknown (-1, NULL).
 * - SELF and contacts.list: a contact with user_id, "first last", the
 *   phone (made E.164 by the batch), the username without its '@'.
 */

/* The keys of a message that its row is made of. */
enum {
	K_ID, K_TYPE, K_DATE, K_DATE_UNIX, K_EDITED, K_EDITED_UNIX, K_FROM,
	K_FROM_ID, K_ACTOR, K_ACTOR_ID, K_PHOTO, K_PHOTO_SIZE, K_FILE,
	K_FILE_NAME, K_FILE_SIZE, K_MEDIA_TYPE, K_MIME_TYPE, K_DURATION,
	K_WIDTH, K_HEIGHT, K_TEXT, K_TEXT_ENTITIES,
	/* media without a file, by precedence (place_name: a venue, which
	   has a location too) */
	K_CONTACT, K_VENUE, K_LOCATION, K_POLL, K_TODO, K_GAME, K_INVOICE,
	K_GIVEAWAY, K_GIVEAWAY_RESULTS, K_PAID_MEDIA,
	K_N
};

static const char *const msg_keys[K_N] = {
	"id", "type", "date", "date_unixtime", "edited", "edited_unixtime",
	"from", "from_id", "actor", "actor_id", "photo", "photo_file_size",
	"file", "file_name", "file_size", "media_type", "mime_type",
	"duration_seconds", "width", "height", "text", "text_entities",
	"contact_information", "place_name", "location_information", "poll",
	"todo_list", "game_title", "invoice_information",
	"giveaway_information", "giveaway_results", "paid_stars_amount"
};

/* Their kinds (TDLib's content types, snake case). */
static const char *const other_kinds[K_N - K_CONTACT] = {
	"contact", "venue", "location", "poll", "checklist", "game", "invoice",
	"giveaway", "giveaway_winners", "paid_media"
};

/* media_type -> kind. */
static const struct {
	const char	*media_type, *kind;
} doc_kinds[] = {
	{ "sticker", "sticker" },
	{ "video_message", "video_note" },
	{ "voice_message", "voice_note" },
	{ "animation", "animation" },
	{ "video_file", "video" },
	{ "audio_file", "audio" },
	{ NULL, NULL }
};

/*
 * The values of a message's keys (NULL: absent), in one pass over its
 * members rather than a walk of them for each key.  The first of a key
 * that comes twice wins, as cJSON_GetObjectItem() has it.
 */
static void
msg_collect(const cJSON *m, const cJSON *k[K_N])
{
	const cJSON *e;
	int i;

	memset(k, 0, K_N * sizeof(k[0]));
	cJSON_ArrayForEach(e, m) {
		const char *s = e->string;

		if (s == NULL)
			continue;
		for (i = 0; i < K_N; i++) {
			if (s[0] != msg_keys[i][0] ||
			    strcmp(s, msg_keys[i]) != 0)
				continue;
			if (k[i] == NULL)
				k[i] = e;
			break;
		}
	}
}

/* A whole number above 0 (a number, or its decimal string), else 0. */
static long long
num_of(const cJSON *v)
{
	char *end;
	long long n;

	if (cJSON_IsNumber(v))
		return v->valuedouble >= 1 &&
		    v->valuedouble < 9007199254740992.0 ?
		    (long long)v->valuedouble : 0;
	if (!cJSON_IsString(v) || !isdigit((unsigned char)v->valuestring[0]))
		return 0;
	errno = 0;
	n = strtoll(v->valuestring, &end, 10);
	return errno == 0 && *end == '\0' ? n : 0;
}

/*
 * A message's time: unix (Unix seconds, a string or a number) if there is
 * one, else local, the exporting machine's local time without an offset
 * (older exports): it is read as this process's local time (mktime()),
 * the best guess there is.  out gets RFC 3339 UTC, or "" if neither.
 */
static void
msg_time(const cJSON *unix_time, const cJSON *local, char *out, size_t n)
{
	struct tm tm;
	long long t;
	const char *s;
	int len = 0;
	time_t tt;

	out[0] = '\0';
	if ((t = num_of(unix_time)) > 0) {
		sync_time_format((time_t)t, out, n);
		return;
	}
	if ((s = cJSON_GetStringValue(local)) == NULL)
		return;
	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
	    &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &len) != 6 ||
	    s[len] != '\0' || tm.tm_year < 1970 || tm.tm_mon < 1 ||
	    tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	tm.tm_isdst = -1;
	if ((tt = mktime(&tm)) == (time_t)-1)
		return;
	sync_time_format(tt, out, n);
}

/*
 * The text of a message into b: the text fields of text_entities, else of
 * text (a string, or an array of strings and objects with a text).
 */
static int
msg_body(const cJSON *k[K_N], struct sync_buf *b)
{
	const cJSON *e;

	if (cJSON_IsArray(k[K_TEXT_ENTITIES])) {
		cJSON_ArrayForEach(e, k[K_TEXT_ENTITIES]) {
			const char *s = str_of(e, "text");

			if (s != NULL && sync_buf_adds(b, s) == -1)
				return -1;
		}
		if (b->len > 0)
			return 0;
	}
	if (cJSON_IsString(k[K_TEXT]))
		return sync_buf_adds(b, k[K_TEXT]->valuestring);
	if (cJSON_IsArray(k[K_TEXT]))
		cJSON_ArrayForEach(e, k[K_TEXT]) {
			const char *s = cJSON_IsString(e) ? e->valuestring :
			    str_of(e, "text");

			if (s != NULL && sync_buf_adds(b, s) == -1)
				return -1;
		}
	return 0;
}

static int
add_num(cJSON *o, const char *key, const cJSON *v)
{
	long long n = num_of(v);

	if (n > 0 && cJSON_AddNumberToObject(o, key, (double)n) == NULL)
		return -1;
	return 0;
}

static int
add_str(cJSON *o, const char *key, const cJSON *v)
{
	const char *s = cJSON_GetStringValue(v);

	if (s != NULL && *s != '\0' &&
	    cJSON_AddStringToObject(o, key, s) == NULL)
		return -1;
	return 0;
}

/*
 * The kind of a message of type "message", and for those with a file (as
 * on the TDLib side: photo, video, document, audio, voice_note, video_note,
 * animation, sticker) its attachment list, *att (the caller's; NULL:
 * none): the keys the TDLib side writes too, where the export has them,
 * and the file's relative path, or "missing" when it was not exported.
 * -1 on ENOMEM.
 */
static int
msg_media(const cJSON *k[K_N], const char **kind, cJSON **att)
{
	const cJSON *file = k[K_FILE], *size = k[K_FILE_SIZE];
	const char *path, *mt;
	cJSON *a, *o;
	int i;

	*att = NULL;
	*kind = "text";
	if (k[K_PHOTO] != NULL) {
		*kind = "photo";
		file = k[K_PHOTO];
		size = k[K_PHOTO_SIZE];
	} else if (k[K_FILE] != NULL || k[K_MEDIA_TYPE] != NULL) {
		*kind = "document";
		if ((mt = cJSON_GetStringValue(k[K_MEDIA_TYPE])) != NULL)
			for (i = 0; doc_kinds[i].media_type != NULL; i++)
				if (strcmp(mt, doc_kinds[i].media_type) == 0)
					*kind = doc_kinds[i].kind;
	} else {
		for (i = K_CONTACT; i < K_N; i++)
			if (k[i] != NULL) {
				*kind = other_kinds[i - K_CONTACT];
				break;
			}
		return 0;
	}
	if ((a = cJSON_CreateArray()) == NULL)
		return -1;
	if ((o = cJSON_CreateObject()) == NULL || !cJSON_AddItemToArray(a, o)) {
		cJSON_Delete(o);
		cJSON_Delete(a);
		return -1;
	}
	path = cJSON_GetStringValue(file);
	if (cJSON_AddStringToObject(o, "kind", *kind) == NULL ||
	    add_str(o, "file_name", k[K_FILE_NAME]) == -1 ||
	    add_str(o, "mime_type", k[K_MIME_TYPE]) == -1 ||
	    add_num(o, "duration", k[K_DURATION]) == -1 ||
	    add_num(o, "width", k[K_WIDTH]) == -1 ||
	    add_num(o, "height", k[K_HEIGHT]) == -1 ||
	    add_num(o, "size", size) == -1 ||
	    /* A file not saved: "(File not included. ...)" and the like. */
	    (path != NULL && *path == '(' ?
	    cJSON_AddTrueToObject(o, "missing") == NULL :
	    path != NULL && *path != '\0' ?
	    cJSON_AddStringToObject(o, "path", path) == NULL : 0)) {
		cJSON_Delete(a);
		return -1;
	}
	*att = a;
	return 0;
}

/*
 * The file of a message with one (msg_media()'s kinds) as *a (SPEC §9):
 * external id "0" (an export names no file ids), the file's absolute path
 * under the export's directory (dir; a relative path that leaves it is
 * none), or, for a file the export did not save ("(File not included.
 * ...)" and the like), why it is unavailable.  *path is the caller's
 * (NULL: none).  0 if the message has no file, 1 if it has, -1 on ENOMEM.
 */
static int
msg_file(const cJSON *k[K_N], const char *kind, const char *dir,
    struct sync_attachment *a, char **path)
{
	const cJSON *file = k[K_PHOTO] != NULL ? k[K_PHOTO] : k[K_FILE];
	const cJSON *size = k[K_PHOTO] != NULL ? k[K_PHOTO_SIZE] : k[K_FILE_SIZE];
	const char *rel = cJSON_GetStringValue(file), *s;
	struct sync_buf b = SYNC_BUF_INIT(0);

	*path = NULL;
	memset(a, 0, sizeof(*a));
	if (rel == NULL || *rel == '\0')
		return 0;
	a->external_id = "0";
	a->kind = strcmp(kind, "voice_note") == 0 ? "voice" : kind;
	a->mime_type = cJSON_GetStringValue(k[K_MIME_TYPE]);
	a->name = cJSON_GetStringValue(k[K_FILE_NAME]);
	if (a->mime_type == NULL && k[K_PHOTO] != NULL)
		a->mime_type = "image/jpeg";	/* tdesktop saves photos as JPEG */
	a->size = num_of(size) > 0 ? num_of(size) : -1;
	if (*rel == '(') {
		a->unavailable = strncmp(rel, "(File not included.", 19) == 0 ?
		    "not included in the export" : "not saved in the export";
		return 1;
	}
	/* Inside the export's directory only. */
	for (s = rel; s != NULL; s = strchr(s, '/')) {
		if (*s == '/')
			s++;
		if (strncmp(s, "..", 2) == 0 && (s[2] == '/' || s[2] == '\0'))
			break;
	}
	if (dir == NULL || *rel == '/' || s != NULL) {
		a->unavailable = dir == NULL ? "the export's directory is unknown" :
		    "not a file inside the export's directory";
		return 1;
	}
	if (sync_buf_addf(&b, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" :
	    "/", rel) == -1) {
		sync_buf_release(&b);
		return -1;
	}
	a->path = *path = b.data;
	return 1;
}

/*
 * Adds the sender (peer, with a name) to contacts, unless the same one is
 * already there: the reader remembers the senders of the batch it was
 * last given, and forgets them when given another one or an emptied one.
 * Nor for a user who had a row of their own (SELF, contacts.list), with a
 * phone and all, which a row with a name only would replace.
 */
static int
add_sender(struct sync_tgx *r, struct sync_batch *cb, long long peer,
    const char *name)
{
	struct sync_contact c;
	char id[32];
	long long h, old;

	snprintf(id, sizeof(id), "%lld", peer);
	h = (long long)sync_hash(SYNC_HASH_INIT, name, strlen(name));
	if (r != NULL && sync_strmap_get(&r->known, id, &old))
		return 0;
	if (r != NULL) {
		if (r->senders_batch != cb || cb->nrows == 0 ||
		    cb->nrows < r->senders_rows) {
			sync_strmap_clear(&r->senders);
			r->senders_batch = cb;
		}
		if (sync_strmap_get(&r->senders, id, &old) && old == h) {
			r->senders_rows = cb->nrows;
			return 0;
		}
	}
	memset(&c, 0, sizeof(c));
	c.external_id = id;
	c.display_name = name;
	if (sync_batch_add_contact(cb, &c) == -1)
		return -1;
	if (r != NULL) {
		r->senders_rows = cb->nrows;
		if (sync_strmap_put(&r->senders, id, h) == -1)
			return -1;
	}
	return 0;
}

int
sync_tgx_add_message(const struct sync_tgx_item *it, long long self,
    struct sync_batch *mb, struct sync_batch *cb, long long *tdlib_id)
{
	const cJSON *k[K_N], *from, *name;
	const char *type, *kind, *sender, *ct = it->chat_type;
	char ext[64], conv[32], sid[32], sent[40], edited[40];
	struct sync_buf body = SYNC_BUF_INIT(0);
	struct sync_message v;
	struct sync_attachment file;
	cJSON *att = NULL;
	char *path = NULL;
	long long id, peer;
	int service, rc = -1, r;

	if (tdlib_id != NULL)
		*tdlib_id = 0;
	if (ct == NULL)
		ct = "";
	if (!cJSON_IsObject(it->json) || it->chat_id == 0)
		return 1;
	msg_collect(it->json, k);
	if ((id = num_of(k[K_ID])) <= 0 || id > (INT64_MAX >> SERVER_SHIFT))
		return 1;
	id <<= SERVER_SHIFT;
	if ((type = cJSON_GetStringValue(k[K_TYPE])) == NULL)
		type = "message";
	service = strcmp(type, "service") == 0;
	/* A service message's sender is its actor (a few have from_id). */
	from = k[service ? K_ACTOR_ID : K_FROM_ID];
	name = k[service ? K_ACTOR : K_FROM];
	if (from == NULL) {
		from = k[service ? K_FROM_ID : K_ACTOR_ID];
		name = k[service ? K_FROM : K_ACTOR];
	}
	peer = sync_tgx_peer_id(from);
	sender = cJSON_GetStringValue(name);
	snprintf(ext, sizeof(ext), "%lld:%lld", it->chat_id, id);
	snprintf(conv, sizeof(conv), "%lld", it->chat_id);
	snprintf(sid, sizeof(sid), "%lld", peer);
	msg_time(k[K_DATE_UNIX], k[K_DATE], sent, sizeof(sent));
	msg_time(k[K_EDITED_UNIX], k[K_EDITED], edited, sizeof(edited));
	if (service)
		kind = "service";
	else if (strcmp(type, "unsupported") == 0)
		kind = "unsupported";
	else if (msg_media(k, &kind, &att) == -1)
		goto out;
	if (msg_body(k, &body) == -1)
		goto out;
	memset(&v, 0, sizeof(v));
	v.external_id = ext;
	v.conversation_id = conv;
	v.sender_id = peer != 0 ? sid : NULL;
	/*
	 * Out: from self; in saved messages; without self, in a chat with
	 * one user, from anybody else than the user.
	 */
	if (strcmp(ct, "saved_messages") == 0)
		v.direction = "out";
	else if (self != 0)
		v.direction = peer == self ? "out" : "in";
	else if (strcmp(ct, "personal_chat") == 0 ||
	    strcmp(ct, "bot_chat") == 0 ||
	    strcmp(ct, "verification_codes") == 0)
		v.direction = peer != 0 && peer != it->chat_id ? "out" : "in";
	else
		v.direction = "in";
	v.kind = kind;
	v.body = body.len > 0 ? body.data : NULL;
	v.sent_at = sent[0] ? sent : NULL;
	v.edited_at = edited[0] ? edited : NULL;
	v.attachments = att;
	v.raw = it->json;
	v.track = SYNC_TRACK_NONE;
	if (att != NULL && (r = msg_file(k, kind, it->reader != NULL ?
	    it->reader->dir : NULL, &file, &path)) != 0) {
		if (r == -1)
			goto out;
		v.att = &file;
		v.natt = 1;
	}
	if (sync_batch_add_message(mb, &v) == -1)
		goto out;
	if (peer != 0 && sender != NULL && *sender != '\0' && cb != NULL &&
	    add_sender(it->reader, cb, peer, sender) == -1)
		goto out;
	if (tdlib_id != NULL)
		*tdlib_id = id;
	rc = 0;
out:
	cJSON_Delete(att);
	free(path);
	sync_buf_release(&body);
	return rc;
}

int
sync_tgx_add_chat(const struct sync_tgx_item *it, struct sync_batch *b)
{
	static const struct {
		const char	*type, *kind, *title;
	} kinds[] = {
		{ "personal_chat", "private", NULL },
		{ "bot_chat", "private", NULL },
		{ "saved_messages", "private", "Saved Messages" },
		{ "replies", "private", "Replies" },
		{ "verification_codes", "private", "Verification Codes" },
		{ "private_group", "basic_group", NULL },
		{ "private_supergroup", "supergroup", NULL },
		{ "public_supergroup", "supergroup", NULL },
		{ "private_channel", "channel", NULL },
		{ "public_channel", "channel", NULL },
		{ NULL, NULL, NULL }
	};
	struct sync_conversation c;
	const char *type = it->chat_type != NULL ? it->chat_type : "";
	char id[32];
	size_t i;

	if (it->chat_id == 0)
		return 1;
	for (i = 0; kinds[i].type != NULL; i++)
		if (strcmp(kinds[i].type, type) == 0)
			break;
	snprintf(id, sizeof(id), "%lld", it->chat_id);
	memset(&c, 0, sizeof(c));
	c.external_id = id;
	c.title = str_of(it->chat, "name");
	if (c.title == NULL || *c.title == '\0')
		c.title = kinds[i].title;
	c.kind = kinds[i].kind;
	c.is_read = -1;
	c.unread_count = -1;
	c.archived = -1;
	return sync_batch_add_conversation(b, &c) == -1 ? -1 : 0;
}

int
sync_tgx_add_contact(const struct sync_tgx_item *it, struct sync_batch *b)
{
	const cJSON *o = it->json;
	const char *first, *last, *user;
	struct sync_contact c;
	char id[32], name[512];
	long long uid;

	if (!cJSON_IsObject(o) || sync_json_id(o, "user_id", &uid) == -1 ||
	    uid <= 0)
		return 1;
	first = str_of(o, "first_name");
	last = str_of(o, "last_name");
	snprintf(name, sizeof(name), "%s%s%s", first != NULL ? first : "",
	    first != NULL && *first && last != NULL && *last ? " " : "",
	    last != NULL ? last : "");
	if ((user = str_of(o, "username")) != NULL && *user == '@')
		user++;
	snprintf(id, sizeof(id), "%lld", uid);
	memset(&c, 0, sizeof(c));
	c.external_id = id;
	c.display_name = name[0] ? name : NULL;
	c.phone = str_of(o, "phone_number");	/* made E.164 by the batch */
	c.username = user != NULL && *user ? user : NULL;
	c.raw = o;
	if (sync_batch_add_contact(b, &c) == -1 || (it->reader != NULL &&
	    sync_strmap_put(&it->reader->known, id, 1) == -1))
		return -1;
	return 0;
}
