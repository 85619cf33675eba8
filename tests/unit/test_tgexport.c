/*
 * test_tgexport -- the streaming reader of Telegram Desktop exports and its
 * rows (lib/connectors/telegram/tgexport.c): the fixtures item by item, hostile inputs, and a
 * generated export of 1,000,000 messages through a pipe in bounded memory.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "internal.h"
#include "tgexport.h"
#include "t.h"

/*
 * The reference's two exports (../shared/reference/fixtures/telegram), and
 * one constructed here for the other chat types, media, contacts, an older
 * export's message and "\x" escapes.  The items' lines are checked.
 */
#define FIXTURES	"tests/fixtures/telegram/"
#define SINGLE		FIXTURES "tdesktop_export_single_chat_result.json"
#define FULL		FIXTURES "tdesktop_export_full_result.json"
#define MORE		FIXTURES "tdesktop_export_more.json"
#define SELF_ID		5123456789LL

#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN	1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN	1
#endif
#endif

/* ---- helpers ------------------------------------------------------------ */

/* A reader over a string (fmemopen), named name in errors. */
struct mem {
	FILE		*fp;
	struct sync_tgx	*x;
};

static int
mem_open(struct mem *m, const char *text, size_t n, const char *name)
{
	struct sync_err err = { 0 };

	m->x = NULL;
	if ((m->fp = fmemopen((void *)(uintptr_t)text, n, "r")) == NULL)
		return -1;
	if ((m->x = sync_tgx_open_stream(m->fp, name, &err)) == NULL) {
		fclose(m->fp);
		return -1;
	}
	return 0;
}

static void
mem_close(struct mem *m)
{
	sync_tgx_free(m->x);
	if (m->fp != NULL)
		fclose(m->fp);
	m->fp = NULL;
	m->x = NULL;
}

/*
 * Reads text to its end: SYNC_OK if it all reads, else the error (in err).
 * *nmsg gets the number of messages read, *fixed the characters replaced.
 */
static enum sync_rc
read_all(const char *text, size_t n, struct sync_err *err, long *nmsg,
    long *fixed)
{
	struct sync_tgx_item it;
	struct mem m;
	enum sync_rc rc;

	memset(err, 0, sizeof(*err));
	*nmsg = *fixed = 0;
	if (mem_open(&m, text, n, "t.json") == -1)
		return SYNC_ENOMEM;
	while ((rc = sync_tgx_next(m.x, &it, err)) == SYNC_OK &&
	    it.kind != SYNC_TGX_EOF)
		if (it.kind == SYNC_TGX_MESSAGE)
			(*nmsg)++;
	*fixed = sync_tgx_sanitized(m.x);
	if (rc != SYNC_OK) {
		/* The error again, not a crash nor another item. */
		struct sync_err again = { 0 };

		CHECK(sync_tgx_next(m.x, &it, &again) == rc);
		CHECK(strcmp(again.msg, err->msg) == 0);
	}
	mem_close(&m);
	return rc;
}

/* Expects text to fail with an error that begins with prefix and has sub. */
#define CHECK_FAILS(text, prefix, sub) do {				\
	struct sync_err t_e;						\
	long t_n, t_f;							\
	enum sync_rc t_rc = read_all((text), strlen(text), &t_e, &t_n,	\
	    &t_f);							\
	CHECK(t_rc == SYNC_EDATA);					\
	CHECK(t_e.kind == SYNC_ERR_DATA);				\
	if (strncmp(t_e.msg, (prefix), strlen(prefix)) != 0 ||		\
	    strstr(t_e.msg, (sub)) == NULL) {				\
		t_fail++;						\
		fprintf(stderr, "%s:%d: error \"%s\" lacks \"%s\" or "	\
		    "\"%s\"\n", __FILE__, __LINE__, t_e.msg, (prefix),	\
		    (sub));						\
	} else								\
		t_pass++;						\
} while (0)

/*
 * Field col (0: ord) of row `row` of a batch's COPY text, still escaped,
 * into out; NULL for \N or no such field.
 */
static const char *
field(const struct sync_batch *b, long row, int col, char *out, size_t n)
{
	const char *p = b->copy.data, *e;
	long i;
	int c;

	if (p == NULL)
		return NULL;
	for (i = 0; i < row; i++) {
		if ((p = strchr(p, '\n')) == NULL)
			return NULL;
		p++;
	}
	for (c = 0; c < col; c++) {
		if ((p = strpbrk(p, "\t\n")) == NULL || *p == '\n')
			return NULL;
		p++;
	}
	e = p + strcspn(p, "\t\n");
	if ((size_t)(e - p) >= n || (e - p == 2 && strncmp(p, "\\N", 2) == 0))
		return NULL;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
	return out;
}

/* Whether field col of row `row` has sub. */
static int
field_has(const struct sync_batch *b, long row, int col, const char *sub)
{
	char buf[8192];
	const char *f = field(b, row, col, buf, sizeof(buf));

	return f != NULL && strstr(f, sub) != NULL;
}

/* Message columns (batch.c): the line after ord. */
enum {
	M_EXT = 1, M_CONV, M_SENDER, M_DIR, M_KIND, M_BODY, M_SENT, M_EDITED,
	M_STATUS, M_STATUS_AT, M_VALIDITY, M_FOLDER, M_ATT, M_RAW
};
enum { C_EXT = 1, C_NAME, C_PHONE, C_USER, C_RAW };
enum {
	V_EXT = 1, V_TITLE, V_KIND, V_READ, V_UNREAD, V_LAST, V_ARCHIVED, V_RAW
};

#define CHECK_FIELD(b, row, col, want) do {				\
	char t_buf[8192];						\
	const char *t_got = field((b), (row), (col), t_buf,		\
	    sizeof(t_buf));						\
	const char *t_want = (want);					\
	if ((t_got == NULL && t_want == NULL) || (t_got != NULL &&	\
	    t_want != NULL && strcmp(t_got, t_want) == 0))		\
		t_pass++;						\
	else {								\
		t_fail++;						\
		fprintf(stderr, "%s:%d: row %ld col %d: \"%s\" != "	\
		    "\"%s\"\n", __FILE__, __LINE__, (long)(row), (col),	\
		    t_got ? t_got : "(null)", t_want ? t_want : "(null)"); \
	}								\
} while (0)

static char *
slurp(const char *path, size_t *n)
{
	FILE *fp = fopen(path, "rb");
	char *s = NULL;
	long len;

	if (fp == NULL)
		return NULL;
	if (fseek(fp, 0, SEEK_END) == 0 && (len = ftell(fp)) >= 0 &&
	    fseek(fp, 0, SEEK_SET) == 0 &&
	    (s = malloc((size_t)len + 1)) != NULL) {
		*n = fread(s, 1, (size_t)len, fp);
		s[*n] = '\0';
	}
	fclose(fp);
	return s;
}

struct want {
	enum sync_tgx_kind kind;
	long		 line;
	long long	 chat_id;
	long long	 id;		/* a message's export id */
};

/* Reads path and checks its items against w (ending with EOF). */
static void
check_items(const char *path, const struct want *w, long long self,
    struct sync_batch *msgs, struct sync_batch *contacts,
    struct sync_batch *convs, long *skipped)
{
	struct sync_tgx_item it;
	struct sync_err err = { 0 };
	struct sync_tgx *x;
	int i = 0, r;

	*skipped = 0;
	x = sync_tgx_open(path, &err);
	CHECK(x != NULL);
	if (x == NULL)
		return;
	for (;;) {
		long long tid, id;

		if (sync_tgx_next(x, &it, &err) != SYNC_OK) {
			fprintf(stderr, "%s: %s\n", path, err.msg);
			CHECK(0);
			break;
		}
		if (it.kind != w[i].kind || it.line != w[i].line ||
		    (it.kind != SYNC_TGX_SELF && it.kind != SYNC_TGX_CONTACT &&
		    it.kind != SYNC_TGX_EOF && it.chat_id != w[i].chat_id)) {
			fprintf(stderr, "%s: item %d: kind %d line %ld chat "
			    "%lld, wanted kind %d line %ld chat %lld\n", path,
			    i, it.kind, it.line, it.chat_id, w[i].kind,
			    w[i].line, w[i].chat_id);
			CHECK(0);
		} else
			t_pass++;
		switch (it.kind) {
		case SYNC_TGX_EOF:
			break;
		case SYNC_TGX_SELF:
		case SYNC_TGX_CONTACT:
			CHECK(it.json != NULL);
			if ((r = sync_tgx_add_contact(&it, contacts)) == 1)
				(*skipped)++;
			CHECK(r != -1);
			break;
		case SYNC_TGX_CHAT:
			CHECK(it.json != NULL && it.json == it.chat);
			CHECK(it.chat_type != NULL);
			if ((r = sync_tgx_add_chat(&it, convs)) == 1)
				(*skipped)++;
			CHECK(r != -1);
			break;
		case SYNC_TGX_MESSAGE:
			CHECK(it.chat != NULL);
			CHECK(sync_json_id(it.json, "id", &id) == 0 &&
			    id == w[i].id);
			r = sync_tgx_add_message(&it, self, msgs, contacts,
			    &tid);
			CHECK(r != -1);
			if (r == 1) {
				(*skipped)++;
				CHECK(tid == 0);
			} else
				CHECK(tid == id * 1048576);
			break;
		case SYNC_TGX_CHAT_END:
			CHECK(it.chat != NULL);
			break;
		}
		if (it.kind == SYNC_TGX_EOF || w[i].kind == SYNC_TGX_EOF)
			break;
		i++;
	}
	CHECK(w[i].kind == SYNC_TGX_EOF && it.kind == SYNC_TGX_EOF);
	/* The end stays the end. */
	CHECK(sync_tgx_next(x, &it, &err) == SYNC_OK &&
	    it.kind == SYNC_TGX_EOF);
	sync_tgx_free(x);
}

/* ---- the fixtures ------------------------------------------------------- */

#define OPS	(-1001234567890LL)
#define ANN	6987654321LL

static void
test_single(void)
{
	static const struct want w[] = {
		{ SYNC_TGX_CHAT, 1, OPS, 0 },
		{ SYNC_TGX_MESSAGE, 6, OPS, 59626 },
		{ SYNC_TGX_MESSAGE, 20, OPS, 59627 },
		{ SYNC_TGX_MESSAGE, 45, OPS, 59628 },
		{ SYNC_TGX_MESSAGE, 73, OPS, 59629 },
		{ SYNC_TGX_MESSAGE, 91, OPS, 59631 },
		{ SYNC_TGX_CHAT_END, 105, OPS, 0 },
		{ SYNC_TGX_EOF, 107, 0, 0 }
	};
	struct sync_batch m, c, v;
	long skipped;

	sync_batch_init(&m, SYNC_ENT_MESSAGE);
	sync_batch_init(&c, SYNC_ENT_CONTACT);
	sync_batch_init(&v, SYNC_ENT_CONVERSATION);
	check_items(SINGLE, w, 0, &m, &c, &v, &skipped);
	CHECK(skipped == 0);
	CHECK(m.nrows == 5 && v.nrows == 1);
	/* The service message: its actor is the sender, no text. */
	CHECK_FIELD(&m, 0, M_EXT, "-1001234567890:62522392576");
	CHECK_FIELD(&m, 0, M_CONV, "-1001234567890");
	CHECK_FIELD(&m, 0, M_SENDER, "6987654321");
	CHECK_FIELD(&m, 0, M_DIR, "in");
	CHECK_FIELD(&m, 0, M_KIND, "service");
	CHECK_FIELD(&m, 0, M_BODY, NULL);
	CHECK_FIELD(&m, 0, M_SENT, "2024-06-23T08:08:20Z");
	CHECK_FIELD(&m, 0, M_EDITED, NULL);
	CHECK_FIELD(&m, 0, M_ATT, NULL);
	/* A text array: its parts in order. */
	CHECK_FIELD(&m, 1, M_EXT, "-1001234567890:62523441152");
	CHECK_FIELD(&m, 1, M_KIND, "text");
	CHECK_FIELD(&m, 1, M_BODY, "see https://example.org/runbook");
	/* Edited; from self, but self is not known in a group: in. */
	CHECK_FIELD(&m, 2, M_SENDER, "5123456789");
	CHECK_FIELD(&m, 2, M_DIR, "in");
	CHECK_FIELD(&m, 2, M_BODY, "starting deploy of build 12");
	CHECK_FIELD(&m, 2, M_SENT, "2024-06-23T08:11:40Z");
	CHECK_FIELD(&m, 2, M_EDITED, "2024-06-23T08:11:50Z");
	CHECK_FIELD(&m, 2, M_STATUS, NULL);
	CHECK_FIELD(&m, 2, M_FOLDER, NULL);
	/* A photo with a caption. */
	CHECK_FIELD(&m, 3, M_KIND, "photo");
	CHECK_FIELD(&m, 3, M_BODY, "deploy done ✅");
	CHECK_FIELD(&m, 3, M_ATT, "[{\"kind\":\"photo\",\"width\":1280,"
	    "\"height\":720,"
	    "\"path\":\"photos/photo_1@23-06-2024_10-27-00.jpg\"}]");
	/* A voice message whose file was not exported. */
	CHECK_FIELD(&m, 4, M_EXT, "-1001234567890:62527635456");
	CHECK_FIELD(&m, 4, M_KIND, "voice_note");
	CHECK_FIELD(&m, 4, M_BODY, NULL);
	CHECK_FIELD(&m, 4, M_SENDER, "4098765432");
	CHECK_FIELD(&m, 4, M_ATT, "[{\"kind\":\"voice_note\",\"mime_type\":"
	    "\"audio/ogg\",\"duration\":4,\"missing\":true}]");
	CHECK(field_has(&m, 4, M_RAW, "\"media_type\":\"voice_message\""));
	/*
	 * Their files (SPEC §9): the photo's absolute path under the export's
	 * directory; the voice note not exported is unavailable.
	 */
	CHECK(m.natt == 2);
	{
		char *dir = realpath(FIXTURES, NULL), want[4096];
		const char *a = m.att.data != NULL ? m.att.data : "";

		snprintf(want, sizeof(want), "\t-1001234567890:62525538304\t0\t"
		    "photo\timage/jpeg\t\\N\t\\N\t\\N\t\\N\tf\t%s/photos/"
		    "photo_1@23-06-2024_10-27-00.jpg\t\\N\t\\N\n", dir != NULL ?
		    dir : "?");
		CHECK(strstr(a, want) != NULL);
		if (strstr(a, want) == NULL)
			fprintf(stderr, "  %s\n  want %s\n", a, want);
		CHECK(strstr(a, "\t-1001234567890:62527635456\t0\tvoice\t"
		    "audio/ogg\t") != NULL);
		CHECK(strstr(a, "\tnot included in the export\n") != NULL);
		free(dir);
	}
	/* The senders, each once: Ann (3 times), Me, Bob. */
	CHECK(c.nrows == 3);
	CHECK_FIELD(&c, 0, C_EXT, "6987654321");
	CHECK_FIELD(&c, 0, C_NAME, "Ann Example");
	CHECK_FIELD(&c, 0, C_PHONE, NULL);
	CHECK_FIELD(&c, 1, C_EXT, "5123456789");
	CHECK_FIELD(&c, 2, C_NAME, "Bob Example");
	/* The chat. */
	CHECK_FIELD(&v, 0, V_EXT, "-1001234567890");
	CHECK_FIELD(&v, 0, V_TITLE, "Ops team");
	CHECK_FIELD(&v, 0, V_KIND, "supergroup");
	CHECK_FIELD(&v, 0, V_READ, NULL);
	CHECK_FIELD(&v, 0, V_UNREAD, NULL);
	CHECK_FIELD(&v, 0, V_LAST, NULL);
	CHECK_FIELD(&v, 0, V_ARCHIVED, NULL);
	CHECK_FIELD(&v, 0, V_RAW, NULL);
	sync_batch_release(&m);
	sync_batch_release(&c);
	sync_batch_release(&v);

	/* With self known, self's message is out. */
	sync_batch_init(&m, SYNC_ENT_MESSAGE);
	sync_batch_init(&c, SYNC_ENT_CONTACT);
	sync_batch_init(&v, SYNC_ENT_CONVERSATION);
	check_items(SINGLE, w, SELF_ID, &m, &c, &v, &skipped);
	CHECK_FIELD(&m, 1, M_DIR, "in");
	CHECK_FIELD(&m, 2, M_DIR, "out");
	sync_batch_release(&m);
	sync_batch_release(&c);
	sync_batch_release(&v);
}

static void
test_full(void)
{
	static const struct want w[] = {
		{ SYNC_TGX_SELF, 3, 0, 0 },
		{ SYNC_TGX_CHAT, 13, ANN, 0 },
		{ SYNC_TGX_MESSAGE, 18, ANN, 1523 },
		{ SYNC_TGX_MESSAGE, 33, ANN, 1524 },
		{ SYNC_TGX_CHAT_END, 49, ANN, 0 },
		{ SYNC_TGX_CHAT, 51, OPS, 0 },
		{ SYNC_TGX_MESSAGE, 56, OPS, 59626 },
		{ SYNC_TGX_MESSAGE, 70, OPS, 59627 },
		{ SYNC_TGX_MESSAGE, 95, OPS, 59628 },
		{ SYNC_TGX_MESSAGE, 123, OPS, 59629 },
		{ SYNC_TGX_MESSAGE, 141, OPS, 59631 },
		{ SYNC_TGX_CHAT_END, 155, OPS, 0 },
		{ SYNC_TGX_EOF, 164, 0, 0 }
	};
	struct sync_batch m, c, v;
	long skipped;

	sync_batch_init(&m, SYNC_ENT_MESSAGE);
	sync_batch_init(&c, SYNC_ENT_CONTACT);
	sync_batch_init(&v, SYNC_ENT_CONVERSATION);
	/* Without self: in a personal chat, what the peer did not send is
	   out. */
	check_items(FULL, w, 0, &m, &c, &v, &skipped);
	CHECK(skipped == 0);
	CHECK(m.nrows == 7);
	CHECK_FIELD(&m, 0, M_EXT, "6987654321:1596981248");
	CHECK_FIELD(&m, 0, M_CONV, "6987654321");
	CHECK_FIELD(&m, 0, M_DIR, "in");
	CHECK_FIELD(&m, 0, M_BODY, "are you around?");
	CHECK_FIELD(&m, 0, M_SENT, "2024-06-23T08:23:10Z");
	CHECK_FIELD(&m, 1, M_EXT, "6987654321:1598029824");
	CHECK_FIELD(&m, 1, M_DIR, "out");
	CHECK_FIELD(&m, 1, M_SENDER, "5123456789");
	CHECK_FIELD(&m, 4, M_DIR, "in");	/* self's, in a group */
	/* Self, then the other senders: self's own row is not replaced by
	   one with a name only. */
	CHECK_FIELD(&c, 0, C_EXT, "5123456789");
	CHECK_FIELD(&c, 0, C_NAME, "Me Myself");
	CHECK_FIELD(&c, 0, C_PHONE, "+15550001234");
	CHECK_FIELD(&c, 0, C_USER, "me_myself");
	CHECK(field_has(&c, 0, C_RAW, "\"user_id\":5123456789"));
	CHECK_FIELD(&c, 1, C_EXT, "6987654321");
	CHECK_FIELD(&c, 1, C_RAW, NULL);		/* a sender */
	CHECK_FIELD(&c, 2, C_EXT, "4098765432");
	CHECK(c.nrows == 3);
	CHECK(v.nrows == 2);
	CHECK_FIELD(&v, 0, V_EXT, "6987654321");
	CHECK_FIELD(&v, 0, V_TITLE, "Ann Example");
	CHECK_FIELD(&v, 0, V_KIND, "private");
	CHECK_FIELD(&v, 1, V_KIND, "supergroup");
	sync_batch_release(&m);
	sync_batch_release(&c);
	sync_batch_release(&v);

	sync_batch_init(&m, SYNC_ENT_MESSAGE);
	sync_batch_init(&c, SYNC_ENT_CONTACT);
	sync_batch_init(&v, SYNC_ENT_CONVERSATION);
	check_items(FULL, w, SELF_ID, &m, &c, &v, &skipped);
	CHECK_FIELD(&m, 0, M_DIR, "in");
	CHECK_FIELD(&m, 1, M_DIR, "out");
	CHECK_FIELD(&m, 4, M_DIR, "out");
	sync_batch_release(&m);
	sync_batch_release(&c);
	sync_batch_release(&v);
}

#define FAMILY	(-4012345678LL)
#define NEWS	(-1001500000001LL)
#define OLD	(-1001300000002LL)

/* More chat types, media, contacts, an older export's message, "\x". */
static void
test_more(void)
{
	static const struct want w[] = {
		{ SYNC_TGX_SELF, 3, 0, 0 },
		{ SYNC_TGX_CONTACT, 21, 0, 0 },
		{ SYNC_TGX_CONTACT, 29, 0, 0 },
		{ SYNC_TGX_CONTACT, 36, 0, 0 },
		{ SYNC_TGX_CHAT, 69, SELF_ID, 0 },
		{ SYNC_TGX_MESSAGE, 73, SELF_ID, 900 },
		{ SYNC_TGX_CHAT_END, 89, SELF_ID, 0 },
		{ SYNC_TGX_CHAT, 91, FAMILY, 0 },
		{ SYNC_TGX_MESSAGE, 96, FAMILY, 1001 },
		{ SYNC_TGX_MESSAGE, 111, FAMILY, 1002 },
		{ SYNC_TGX_MESSAGE, 126, FAMILY, 1003 },
		{ SYNC_TGX_MESSAGE, 144, FAMILY, 1004 },
		{ SYNC_TGX_MESSAGE, 159, FAMILY, 1005 },
		{ SYNC_TGX_MESSAGE, 175, FAMILY, 1006 },
		{ SYNC_TGX_MESSAGE, 190, FAMILY, 1007 },
		{ SYNC_TGX_CHAT_END, 212, FAMILY, 0 },
		{ SYNC_TGX_CHAT, 214, NEWS, 0 },
		{ SYNC_TGX_MESSAGE, 219, NEWS, 11 },
		{ SYNC_TGX_MESSAGE, 254, NEWS, 12 },
		{ SYNC_TGX_MESSAGE, 258, NEWS, 13 },
		{ SYNC_TGX_CHAT_END, 277, NEWS, 0 },
		{ SYNC_TGX_CHAT, 282, 1271266957LL, 0 },
		{ SYNC_TGX_CHAT_END, 285, 1271266957LL, 0 },
		{ SYNC_TGX_CHAT, 287, 7000000001LL, 0 },
		{ SYNC_TGX_CHAT_END, 291, 7000000001LL, 0 },
		{ SYNC_TGX_CHAT, 292, 0, 0 },
		{ SYNC_TGX_MESSAGE, 297, 0, 1 },
		{ SYNC_TGX_CHAT_END, 305, 0, 0 },
		{ SYNC_TGX_CHAT, 312, OLD, 0 },
		{ SYNC_TGX_MESSAGE, 317, OLD, 5 },
		{ SYNC_TGX_CHAT_END, 332, OLD, 0 },
		{ SYNC_TGX_EOF, 343, 0, 0 }
	};
	struct sync_batch m, c, v;
	long skipped;

	/* The older message's date is local time: here, UTC+2. */
	setenv("TZ", "UTC-2", 1);
	tzset();
	sync_batch_init(&m, SYNC_ENT_MESSAGE);
	sync_batch_init(&c, SYNC_ENT_CONTACT);
	sync_batch_init(&v, SYNC_ENT_CONVERSATION);
	check_items(MORE, w, SELF_ID, &m, &c, &v, &skipped);
	/* Skipped: 2 contacts without a user id, a chat and a message of an
	   unknown type. */
	CHECK(skipped == 4);
	/* Contacts: self, Ann; then the senders. */
	CHECK_FIELD(&c, 0, C_EXT, "5123456789");
	CHECK_FIELD(&c, 1, C_EXT, "6987654321");
	CHECK_FIELD(&c, 1, C_NAME, "Ann Example");
	CHECK_FIELD(&c, 1, C_PHONE, "+442079460958");
	CHECK_FIELD(&c, 1, C_USER, NULL);
	/* Of the senders, only the channel has no row of its own. */
	CHECK_FIELD(&c, 2, C_EXT, "-1001500000001");
	CHECK_FIELD(&c, 2, C_NAME, "News");
	CHECK(c.nrows == 3);
	/* Saved messages: out, "Saved Messages". */
	CHECK_FIELD(&v, 0, V_EXT, "5123456789");
	CHECK_FIELD(&v, 0, V_TITLE, "Saved Messages");
	CHECK_FIELD(&v, 0, V_KIND, "private");
	CHECK_FIELD(&m, 0, M_EXT, "5123456789:943718400");
	CHECK_FIELD(&m, 0, M_DIR, "out");
	CHECK_FIELD(&m, 0, M_BODY, "note to self");
	/* A basic group. */
	CHECK_FIELD(&v, 1, V_EXT, "-4012345678");
	CHECK_FIELD(&v, 1, V_KIND, "basic_group");
	CHECK_FIELD(&m, 1, M_EXT, "-4012345678:1049624576");
	CHECK_FIELD(&m, 1, M_KIND, "service");
	CHECK_FIELD(&m, 1, M_DIR, "out");		/* self's actor */
	CHECK_FIELD(&m, 1, M_SENDER, "5123456789");
	/* "\x07" is U+0007, "\x00" U+FFFD (COPY escapes neither). */
	CHECK_FIELD(&m, 2, M_BODY, "bell\x07 and \xef\xbf\xbd done");
	CHECK(field_has(&m, 2, M_RAW,
	    "\"text\":\"bell\\\\u0007 and \xef\xbf\xbd done\""));
	CHECK_FIELD(&m, 3, M_KIND, "sticker");
	CHECK_FIELD(&m, 3, M_BODY, NULL);
	CHECK_FIELD(&m, 3, M_ATT, "[{\"kind\":\"sticker\",\"file_name\":"
	    "\"sticker.webp\",\"width\":512,\"height\":512,\"size\":24576,"
	    "\"path\":\"stickers/sticker.webp\"}]");
	CHECK_FIELD(&m, 4, M_KIND, "contact");
	CHECK_FIELD(&m, 4, M_ATT, NULL);
	CHECK_FIELD(&m, 5, M_KIND, "venue");
	CHECK_FIELD(&m, 6, M_KIND, "location");
	CHECK_FIELD(&m, 7, M_KIND, "poll");
	CHECK_FIELD(&m, 7, M_DIR, "out");
	/* A channel: its own posts have the channel as sender. */
	CHECK_FIELD(&v, 2, V_EXT, "-1001500000001");
	CHECK_FIELD(&v, 2, V_KIND, "channel");
	CHECK_FIELD(&m, 8, M_EXT, "-1001500000001:11534336");
	CHECK_FIELD(&m, 8, M_SENDER, "-1001500000001");
	CHECK_FIELD(&m, 8, M_KIND, "video");
	CHECK_FIELD(&m, 8, M_BODY, "Breaking: a clip");
	CHECK_FIELD(&m, 8, M_ATT, "[{\"kind\":\"video\",\"file_name\":"
	    "\"clip.mp4\",\"mime_type\":\"video/mp4\",\"duration\":31,"
	    "\"width\":1920,\"height\":1080,\"size\":1048576,"
	    "\"path\":\"video_files/clip.mp4\"}]");
	CHECK_FIELD(&m, 9, M_KIND, "unsupported");
	CHECK_FIELD(&m, 9, M_SENT, NULL);
	CHECK_FIELD(&m, 9, M_SENDER, NULL);
	CHECK_FIELD(&m, 9, M_ATT, NULL);
	CHECK_FIELD(&m, 10, M_KIND, "document");
	CHECK_FIELD(&m, 10, M_ATT, "[{\"kind\":\"document\",\"file_name\":"
	    "\"report.pdf\",\"mime_type\":\"application/pdf\","
	    "\"size\":73400320,\"missing\":true}]");
	/* Replies is a user chat; a chat without messages is a chat. */
	CHECK_FIELD(&v, 3, V_EXT, "1271266957");
	CHECK_FIELD(&v, 3, V_TITLE, "Replies");
	CHECK_FIELD(&v, 3, V_KIND, "private");
	CHECK_FIELD(&v, 4, V_EXT, "7000000001");
	CHECK_FIELD(&v, 4, V_TITLE, "Quiet");
	/* A left supergroup, in an older export's form: local date, a
	   numeric from_id, no text_entities. */
	CHECK_FIELD(&v, 5, V_EXT, "-1001300000002");
	CHECK(v.nrows == 6);
	CHECK_FIELD(&m, 11, M_EXT, "-1001300000002:5242880");
	CHECK_FIELD(&m, 11, M_SENDER, "6987654321");
	CHECK_FIELD(&m, 11, M_BODY, "old style");
	CHECK_FIELD(&m, 11, M_SENT, "2019-05-31T19:28:30Z");
	CHECK_FIELD(&m, 11, M_EDITED, "2019-05-31T19:30:00Z");
	CHECK(m.nrows == 12);
	sync_batch_release(&m);
	sync_batch_release(&c);
	sync_batch_release(&v);
	setenv("TZ", "UTC0", 1);
	tzset();
}

/* Mapping without a reader: ids, peers, hand-made items. */
static void
test_ids(void)
{
	struct sync_tgx_item it;
	struct sync_batch m, c;
	cJSON *j;
	long long tid;

	CHECK(sync_tgx_chat_id("personal_chat", 42) == 42);
	CHECK(sync_tgx_chat_id("bot_chat", 42) == 42);
	CHECK(sync_tgx_chat_id("saved_messages", 42) == 42);
	CHECK(sync_tgx_chat_id("private_group", 42) == -42);
	CHECK(sync_tgx_chat_id("private_supergroup", 1234567890) == OPS);
	CHECK(sync_tgx_chat_id("public_supergroup", 1) == -1000000000001LL);
	CHECK(sync_tgx_chat_id("private_channel", 1) == -1000000000001LL);
	CHECK(sync_tgx_chat_id("public_channel", 1) == -1000000000001LL);
	CHECK(sync_tgx_chat_id("replies", 1271266957) == 1271266957);
	CHECK(sync_tgx_chat_id("secret", 1) == 0);
	CHECK(sync_tgx_chat_id(NULL, 1) == 0);
	CHECK(sync_tgx_chat_id("personal_chat", 0) == 0);
	CHECK(sync_tgx_chat_id("private_group", 1000000000000LL) == 0);
	CHECK(sync_tgx_chat_id("personal_chat", 1LL << 40) == 0);
	CHECK(sync_tgx_chat_id("private_channel", 999999999999LL) == 0);
	CHECK(sync_tgx_chat_id("private_channel",
	    1000000000000LL - (1LL << 31) - 1) == -1997852516351LL);
	CHECK(sync_tgx_chat_id("private_channel", 3000000000000LL) ==
	    -4000000000000LL);

	j = cJSON_Parse("[\"user12\",\"channel34\",\"chat56\",78,\"user\","
	    "\"userx\",\"bot9\",-5,1.5,\"user99999999999999999999\",null]");
	CHECK(sync_tgx_peer_id(cJSON_GetArrayItem(j, 0)) == 12);
	CHECK(sync_tgx_peer_id(cJSON_GetArrayItem(j, 1)) == -1000000000034LL);
	CHECK(sync_tgx_peer_id(cJSON_GetArrayItem(j, 2)) == -56);
	CHECK(sync_tgx_peer_id(cJSON_GetArrayItem(j, 3)) == 78);
	CHECK(sync_tgx_peer_id(cJSON_GetArrayItem(j, 4)) == 0);
	CHECK(sync_tgx_peer_id(cJSON_GetArrayItem(j, 5)) == 0);
	CHECK(sync_tgx_peer_id(cJSON_GetArrayItem(j, 6)) == 0);
	CHECK(sync_tgx_peer_id(cJSON_GetArrayItem(j, 7)) == 0);
	CHECK(sync_tgx_peer_id(cJSON_GetArrayItem(j, 8)) == 0);
	CHECK(sync_tgx_peer_id(cJSON_GetArrayItem(j, 9)) == 0);
	CHECK(sync_tgx_peer_id(cJSON_GetArrayItem(j, 10)) == 0);
	CHECK(sync_tgx_peer_id(NULL) == 0);
	cJSON_Delete(j);

	/* An item without a reader; a message without an id; a bot chat. */
	sync_batch_init(&m, SYNC_ENT_MESSAGE);
	sync_batch_init(&c, SYNC_ENT_CONTACT);
	memset(&it, 0, sizeof(it));
	it.kind = SYNC_TGX_MESSAGE;
	it.chat_id = 777;
	it.chat_type = "bot_chat";
	it.json = cJSON_Parse("{\"type\":\"message\",\"text\":\"x\"}");
	CHECK(sync_tgx_add_message(&it, 0, &m, &c, &tid) == 1 && tid == 0);
	cJSON_Delete(it.json);
	it.json = cJSON_Parse("{\"id\":3,\"type\":\"message\",\"from\":\"Me\","
	    "\"from_id\":\"user5\",\"text\":\"/start\",\"text_entities\":"
	    "[{\"type\":\"bot_command\",\"text\":\"/start\"}]}");
	CHECK(sync_tgx_add_message(&it, 0, &m, &c, NULL) == 0);
	CHECK(sync_tgx_add_message(&it, 0, &m, &c, NULL) == 0);
	CHECK_FIELD(&m, 0, M_DIR, "out");	/* not the bot */
	CHECK_FIELD(&m, 0, M_BODY, "/start");
	CHECK(c.nrows == 2);			/* no reader: no memory */
	cJSON_Delete(it.json);
	it.json = cJSON_Parse("{\"id\":4,\"type\":\"message\",\"from\":\"Bot\","
	    "\"from_id\":\"user777\",\"text\":\"\",\"text_entities\":[],"
	    "\"file\":\"files/a.bin\"}");
	CHECK(sync_tgx_add_message(&it, 0, &m, &c, NULL) == 0);
	CHECK_FIELD(&m, 2, M_DIR, "in");
	CHECK_FIELD(&m, 2, M_KIND, "document");
	CHECK_FIELD(&m, 2, M_ATT, "[{\"kind\":\"document\",\"path\":"
	    "\"files/a.bin\"}]");
	cJSON_Delete(it.json);
	it.chat_id = 0;
	CHECK(sync_tgx_add_chat(&it, &c) == 1);
	it.json = cJSON_Parse("{\"first_name\":\"X\"}");
	CHECK(sync_tgx_add_contact(&it, &c) == 1);
	cJSON_Delete(it.json);
	sync_batch_release(&m);
	sync_batch_release(&c);
}

/* The senders of one batch are added once; a new batch starts afresh. */
static void
test_senders(void)
{
	static const char text[] =
	    "{\"name\":\"G\",\"type\":\"private_group\",\"id\":9,"
	    "\"messages\":["
	    "{\"id\":1,\"from\":\"A\",\"from_id\":\"user1\"},"
	    "{\"id\":2,\"from\":\"A\",\"from_id\":\"user1\"},"
	    "{\"id\":3,\"from\":\"A2\",\"from_id\":\"user1\"},"
	    "{\"id\":4,\"from\":null,\"from_id\":\"user2\"},"
	    "{\"id\":5,\"from\":\"A2\",\"from_id\":\"user1\"}"
	    "]}";
	struct sync_tgx_item it;
	struct sync_err err = { 0 };
	struct sync_batch m, c;
	struct mem mm;
	long n = 0;

	CHECK(mem_open(&mm, text, strlen(text), "s.json") == 0);
	sync_batch_init(&m, SYNC_ENT_MESSAGE);
	sync_batch_init(&c, SYNC_ENT_CONTACT);
	while (sync_tgx_next(mm.x, &it, &err) == SYNC_OK &&
	    it.kind != SYNC_TGX_EOF) {
		if (it.kind != SYNC_TGX_MESSAGE)
			continue;
		if (++n == 5) {
			/* A new page: the same sender again. */
			CHECK(c.nrows == 2);
			sync_batch_release(&c);
			sync_batch_init(&c, SYNC_ENT_CONTACT);
		}
		CHECK(sync_tgx_add_message(&it, 0, &m, &c, NULL) == 0);
	}
	CHECK(n == 5 && err.rc == SYNC_OK);
	CHECK(c.nrows == 1);
	CHECK_FIELD(&c, 0, C_NAME, "A2");
	CHECK_FIELD(&m, 3, M_SENDER, "2");	/* a deleted account: no name */
	sync_batch_release(&m);
	sync_batch_release(&c);
	mem_close(&mm);
}

/* ---- hostile inputs --------------------------------------------------- */

static void
test_malformed(void)
{
	char *single, *s;
	size_t n;
	long nmsg, fixed;
	struct sync_err e;

	single = slurp(SINGLE, &n);
	CHECK(single != NULL);
	if (single == NULL)
		return;
	s = strdup(single);

	/* Truncated in a message (the third, which begins on line 45). */
	s[strstr(single, "\"reply_to_message_id\": 59627") - single] = '\0';
	CHECK_FAILS(s, "t.json:54: ", "unexpected end of file inside a message "
	    "(begun on line 45) in chat 'Ops team'");
	/* ... in a string. */
	memcpy(s, single, n + 1);
	s[strstr(single, "starting deploy") - single + 5] = '\0';
	CHECK_FAILS(s, "t.json:56: ", "unexpected end of file inside a string "
	    "in a message (begun on line 45) in chat 'Ops team'");
	/* ... between messages. */
	memcpy(s, single, n + 1);
	s[strstr(single, "    {\n      \"id\": 59628") - single] = '\0';
	CHECK_FAILS(s, "t.json:45: ", "unexpected end of file inside chat "
	    "'Ops team'");
	/* ... in the chat's keys. */
	memcpy(s, single, n + 1);
	s[strstr(single, "\"id\": 1234567890") - single] = '\0';
	CHECK_FAILS(s, "t.json:4: ", "unexpected end of file inside the "
	    "export");
	/* Garbage between messages. */
	memcpy(s, single, n + 1);
	memcpy(strstr(s, "    },\n    {\n      \"id\": 59629") + 5, ";", 1);
	CHECK_FAILS(s, "t.json:72: ", "expected ',' or ']' after a message in "
	    "chat 'Ops team'");
	/* Garbage inside a message: cJSON's place, on its line. */
	memcpy(s, single, n + 1);
	memcpy(strstr(s, "\"width\": 1280"), "\"width\"= 1280", 13);
	CHECK_FAILS(s, "t.json:81: ", "not valid JSON in a message in chat "
	    "'Ops team'");
	/* A bracket that closes the wrong thing. */
	memcpy(s, single, n + 1);
	memcpy(strstr(s, "\"Bob Example\"\n      ]") + 20, "}", 1);
	CHECK_FAILS(s, "t.json:16: ", "'}' closes '[' in a message (begun on "
	    "line 6) in chat 'Ops team'");
	/* A chat header that is not JSON. */
	memcpy(s, single, n + 1);
	memcpy(strstr(s, "1234567890"), "12-4567890", 10);
	CHECK_FAILS(s, "t.json:1: ", "not valid JSON in the chat's keys before "
	    "'messages' in the export");
	/* ... or not even a number. */
	memcpy(s, single, n + 1);
	memcpy(strstr(s, "1234567890"), "12345678x0", 10);
	CHECK_FAILS(s, "t.json:4: ", "expected ',' or '}' in the export");
	free(s);
	free(single);

	/* Not exports. */
	CHECK_FAILS("", "t.json:1: ", "not a Telegram export: the file is "
	    "empty");
	CHECK_FAILS("\n\n  ", "t.json:3: ", "the file is empty");
	CHECK_FAILS("\n[{\"id\": 1}]", "t.json:2: ", "not a Telegram export: "
	    "an array, not an object");
	CHECK_FAILS("\"result\"", "t.json:1: ", "not a JSON object");
	CHECK_FAILS("{\"about\": \"x\",\n \"list\": [1, 2]\n}\n", "t.json:4: ",
	    "not a Telegram export: no 'messages', 'chats'");
	CHECK_FAILS("{\"name\": \"x\", \"messages\": 3}", "t.json:1: ",
	    "'messages' is not an array");
	CHECK_FAILS("{\"chats\": {\"list\": [1]}}", "t.json:1: ",
	    "expected a chat (an object) in 'chats'");
	CHECK_FAILS("{\"name\": \"x\", \"type\": \"personal_chat\", "
	    "\"id\": 1,\n\"messages\": [1]}", "t.json:2: ", "expected a "
	    "message (an object) in chat 'x'");
	CHECK_FAILS("{\"messages\": []} x", "t.json:1: ", "unexpected data "
	    "after the end of the export");
	CHECK_FAILS("{\"messages\": []}{}", "t.json:1: ", "after the end");
	CHECK_FAILS("{\"about\" \"x\"}", "t.json:1: ", "expected ':' after "
	    "'about' in the export");
	CHECK_FAILS("{\"about\": \"x\" \"chats\": {}}", "t.json:1: ",
	    "expected ',' or '}' in the export");
	CHECK_FAILS("{\"about\": \"x\",}", "t.json:1: ", "expected a key in "
	    "the export");
	CHECK_FAILS("{\"chats\": {\"list\": [{\"name\": \"a\"\n\"id\": 1}]}}",
	    "t.json:2: ", "expected ',' or '}' in the chat that begins on "
	    "line 1");
	CHECK_FAILS("{\"about\": }", "t.json:1: ", "unexpected '}' in the "
	    "export");
	CHECK_FAILS("{\"about\": \x01}", "t.json:1: ", "unexpected byte 0x01");
	CHECK_FAILS("{\"contacts\": {\"list\": [{\"user_id\": 1,\n"
	    "\"first_name\": \"A", "t.json:2: ", "unexpected end of file "
	    "inside a string in a contact (begun on line 1) in 'contacts'");
	CHECK_FAILS("{\"sessions\": {\"list\": [{\"a\": [}]}", "t.json:1: ",
	    "'}' closes '['");

	/* Still exports: a BOM, keys with escapes, values of any kind. */
	CHECK(read_all("\xef\xbb\xbf{\"messages\": []}", 19, &e, &nmsg,
	    &fixed) == SYNC_OK);
	s = "{\"a\\\"b\": [\"]\", {\"}\": \"\\\\\"}], \"n\": -1.5e3, "
	    "\"t\": true, \"f\": false, \"z\": null, "
	    "\"name\": \"\\\"q\\\"\", \"type\": \"bot_chat\", \"id\": 5, "
	    "\"messages\": [{\"id\": 1}], \"after\": "
	    "{\"messages\": [{\"id\": 2}]}}";
	CHECK(read_all(s, strlen(s), &e, &nmsg, &fixed) == SYNC_OK &&
	    nmsg == 1);
}

/* Invalid UTF-8 and NUL bytes in strings are replaced, not errors. */
static void
test_sanitize(void)
{
	static const char text[] =
	    "{\"name\": \"N\xff\", \"type\": \"personal_chat\", \"id\": 1,\n"
	    "\"messages\": [\n"
	    "{\"id\": 1, \"type\": \"message\", "
	    "\"text\": \"a\0b\xc3\x28z\\u0000\\ud800!\"}\n]}";
	struct sync_tgx_item it;
	struct sync_err err = { 0 };
	struct sync_batch m, c;
	struct mem mm;

	CHECK(mem_open(&mm, text, sizeof(text) - 1, "u.json") == 0);
	CHECK(sync_tgx_next(mm.x, &it, &err) == SYNC_OK &&
	    it.kind == SYNC_TGX_CHAT);
	CHECK(it.sanitized == 1);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(it.json, "name")),
	    "N\xef\xbf\xbd");
	CHECK_STR(it.chat_type, "personal_chat");
	CHECK(sync_tgx_next(mm.x, &it, &err) == SYNC_OK &&
	    it.kind == SYNC_TGX_MESSAGE && it.line == 3);
	CHECK(it.sanitized == 4);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(it.json, "text")),
	    "a\xef\xbf\xbd" "b\xef\xbf\xbd(z\xef\xbf\xbd\xef\xbf\xbd!");
	sync_batch_init(&m, SYNC_ENT_MESSAGE);
	sync_batch_init(&c, SYNC_ENT_CONTACT);
	CHECK(sync_tgx_add_message(&it, 0, &m, &c, NULL) == 0);
	CHECK_FIELD(&m, 0, M_BODY, "a\xef\xbf\xbd" "b\xef\xbf\xbd(z\xef\xbf\xbd"
	    "\xef\xbf\xbd!");
	sync_batch_release(&m);
	sync_batch_release(&c);
	CHECK(sync_tgx_next(mm.x, &it, &err) == SYNC_OK &&
	    it.kind == SYNC_TGX_CHAT_END);
	CHECK(sync_tgx_next(mm.x, &it, &err) == SYNC_OK &&
	    it.kind == SYNC_TGX_EOF);
	CHECK(sync_tgx_sanitized(mm.x) == 5);
	mem_close(&mm);
	/* NUL outside strings, in the structure: an error. */
	CHECK_FAILS("{\"messages\": [\0]}", "t.json:1: ", "unexpected end of "
	    "file");	/* strlen() stops at the NUL */
	{
		static const char nul[] = "{\"messages\":\n[\0]}";
		long nm, fx;

		CHECK(read_all(nul, sizeof(nul) - 1, &err, &nm, &fx) ==
		    SYNC_EDATA);
		CHECK(strstr(err.msg, "u.json") == NULL &&
		    strncmp(err.msg, "t.json:2: expected a message", 28) == 0);
	}
}

/*
 * The reader skips sync_json_sanitize() for text that it would not change:
 * random strings of valid and invalid pieces, each read as a message and
 * compared with the sanitiser run on the message's text itself.
 */
static void
test_sanitize_random(void)
{
	static const char *const pieces[] = {
		"a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xff",
		"\xc3", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
		"\xc0\xaf", "\x80", "\\u0000", "\\ud800", "\\udfff",
		"\\ud83d\\ude00", "\\\\", "\\\\u0000", "\\n", "\\\"", "\\u00e9",
		"\\u2028", "\\x01", "\\x00", "12345678", "\t"
	};
	const size_t np = sizeof(pieces) / sizeof(pieces[0]);
	struct sync_buf text = SYNC_BUF_INIT(0), msg = SYNC_BUF_INIT(0);
	unsigned seed = 12345;
	int round, i, bad = 0;

	for (round = 0; round < 3000; round++) {
		struct sync_tgx_item it;
		struct sync_err err = { 0 };
		struct mem mm;
		cJSON *j;
		long want;
		int valid, n;

		seed = seed * 1103515245 + 12345;
		n = 1 + (int)(seed >> 16) % 12;

		sync_buf_reset(&msg);
		sync_buf_adds(&msg, "{\"id\": 1, \"text\": \"");
		for (i = 0; i < n; i++) {
			seed = seed * 1103515245 + 12345;
			sync_buf_adds(&msg, pieces[(seed >> 16) % np]);
		}
		sync_buf_adds(&msg, "\"}");
		/* A NUL now and then, which strings cannot carry. */
		if (round % 7 == 0)
			msg.data[msg.len - 3] = '\0';
		sync_buf_reset(&text);
		sync_buf_adds(&text, "{\"messages\": [");
		sync_buf_add(&text, msg.data, msg.len);
		sync_buf_adds(&text, "]}");
		/* What the sanitiser makes of it ("\x" aside: the reader's). */
		if (strstr(msg.data, "\\x") != NULL)
			continue;
		want = sync_json_sanitize(&msg);
		/* Even sanitised, a backslash before a NUL is not JSON. */
		j = cJSON_ParseWithLength(msg.data, msg.len);
		valid = j != NULL;
		cJSON_Delete(j);
		if (mem_open(&mm, text.data, text.len, "r.json") == -1)
			break;
		if (!valid ? sync_tgx_next(mm.x, &it, &err) != SYNC_OK ||
		    sync_tgx_next(mm.x, &it, &err) != SYNC_EDATA :
		    sync_tgx_next(mm.x, &it, &err) != SYNC_OK ||
		    sync_tgx_next(mm.x, &it, &err) != SYNC_OK ||
		    it.kind != SYNC_TGX_MESSAGE || it.sanitized != want) {
			if (bad++ < 3)
				fprintf(stderr, "sanitize: %s: %ld replaced, "
				    "wanted %ld (%s)\n", msg.data, it.sanitized,
				    want, err.msg);
		}
		mem_close(&mm);
	}
	CHECK(bad == 0 && round == 3000);
	sync_buf_release(&text);
	sync_buf_release(&msg);
}

/* Nesting: up to SYNC_TGX_MAX_DEPTH in a message, not one level more. */
static void
test_nesting(void)
{
	struct sync_buf b = SYNC_BUF_INIT(0);
	struct sync_err e;
	long nmsg, fixed;
	int i;

	for (int depth = SYNC_TGX_MAX_DEPTH; depth <= SYNC_TGX_MAX_DEPTH + 1;
	    depth++) {
		sync_buf_reset(&b);
		sync_buf_adds(&b, "{\"name\": \"Deep\", \"type\": "
		    "\"private_group\", \"id\": 1, \"messages\": [\n"
		    "{\"id\": 1, \"x\":\n");
		for (i = 1; i < depth; i++)
			sync_buf_adds(&b, i % 2 ? "[\n" : "{\"k\":\n");
		for (i = depth - 1; i >= 1; i--)
			sync_buf_adds(&b, i % 2 ? "]" : "}");
		sync_buf_adds(&b, "}]}");
		if (depth == SYNC_TGX_MAX_DEPTH) {
			CHECK(read_all(b.data, b.len, &e, &nmsg, &fixed) ==
			    SYNC_OK && nmsg == 1);
		} else {
			char want[128];

			/* The '[' or '{' of level 513 is on line 514. */
			snprintf(want, sizeof(want), "t.json:%d: ", depth + 1);
			CHECK_FAILS(b.data, want, "a message (begun on line "
			    "2) in chat 'Deep' nests deeper than 512 levels");
		}
	}
	/* Skipped values nest as deep as they like... no: as deep too. */
	sync_buf_reset(&b);
	sync_buf_adds(&b, "{\"other_data\": ");
	for (i = 0; i < 100000; i++)
		sync_buf_adds(&b, "[");
	CHECK_FAILS(b.data, "t.json:1: ", "a value (begun on line 1) in the "
	    "export nests deeper than 512 levels");
	sync_buf_release(&b);
}

/* ---- streams through a pipe ------------------------------------------- */

/* A writer of generated text into a pipe, in a thread. */
struct gen {
	int		 fd;		/* the pipe's write end */
	long		 nchats;
	long		 per_chat;	/* messages */
	size_t		 big;		/* bytes of the string of one key */
	int		 big_in_message;	/* ... in a message */
	unsigned long long written;
	int		 failed;
	char		*buf;
	size_t		 len, cap;
};

static void
gen_flush(struct gen *g)
{
	size_t off = 0;

	while (off < g->len && !g->failed) {
		ssize_t k = write(g->fd, g->buf + off, g->len - off);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			g->failed = 1;	/* the reader stopped: EPIPE */
			break;
		}
		off += (size_t)k;
	}
	g->written += g->len;
	g->len = 0;
}

static void
gen_add(struct gen *g, const char *s, size_t n)
{
	if (g->len + n > g->cap)
		gen_flush(g);
	if (n > g->cap) {		/* not in this generator */
		g->failed = 1;
		return;
	}
	memcpy(g->buf + g->len, s, n);
	g->len += n;
}

#define GEN_S(g, s) gen_add((g), (s), sizeof(s) - 1)

static void
gen_num(struct gen *g, unsigned long long v)
{
	char d[24];
	int i = (int)sizeof(d);

	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	gen_add(g, d + i, sizeof(d) - (size_t)i);
}

/* n bytes of 'a' (a string's body, not held anywhere whole). */
static void
gen_fill(struct gen *g, size_t n)
{
	while (n > 0 && !g->failed) {
		size_t k = n < 4096 ? n : 4096;

		if (g->len + k > g->cap)
			gen_flush(g);
		memset(g->buf + g->len, 'a', k);
		g->len += k;
		n -= k;
	}
}

/* One message: a photo, a text with a bold part, or a plain text. */
static void
gen_message(struct gen *g, unsigned long long id)
{
	GEN_S(g, "\n     {\n      \"id\": ");
	gen_num(g, id);
	GEN_S(g, ",\n      \"type\": \"message\",\n"
	    "      \"date\": \"2024-06-23T10:23:10\",\n"
	    "      \"date_unixtime\": \"");
	gen_num(g, 1719130990ULL + id);
	GEN_S(g, "\",\n      \"from\": \"Member ");
	gen_num(g, id % 97);
	GEN_S(g, "\",\n      \"from_id\": \"user");
	gen_num(g, 7000000000ULL + id % 97);
	if (id % 10 == 0) {
		GEN_S(g, "\",\n      \"photo\": \"photos/photo_");
		gen_num(g, id);
		GEN_S(g, ".jpg\",\n      \"photo_file_size\": 84211,\n"
		    "      \"width\": 1280,\n      \"height\": 720");
		GEN_S(g, ",\n      \"text\": \"\",\n"
		    "      \"text_entities\": []\n     }");
		return;
	}
	if (id % 10 == 5) {
		GEN_S(g, "\",\n      \"text\": [\n"
		    "       \"message \",\n       {\n"
		    "        \"type\": \"bold\",\n"
		    "        \"text\": \"");
		gen_num(g, id);
		GEN_S(g, "\"\n       }\n      ],\n"
		    "      \"text_entities\": [\n       {\n"
		    "        \"type\": \"plain\",\n"
		    "        \"text\": \"message \"\n       },\n"
		    "       {\n        \"type\": \"bold\",\n"
		    "        \"text\": \"");
		gen_num(g, id);
		GEN_S(g, "\"\n       }\n      ]");
	} else {
		GEN_S(g, "\",\n      \"text\": \"caf\xc3\xa9 at 9? "
		    "\\\"sure\\\" \\u00e9\\n\",\n"
		    "      \"text_entities\": [\n       {\n"
		    "        \"type\": \"plain\",\n"
		    "        \"text\": \"caf\xc3\xa9 at 9? "
		    "\\\"sure\\\" \\u00e9\\n\"\n       }\n      ]");
	}
	if (g->big_in_message && id == 2) {
		GEN_S(g, ",\n      \"blob\": \"");
		gen_fill(g, g->big);
		GEN_S(g, "\"");
	}
	GEN_S(g, "\n     }");
}

/*
 * A full export as tdesktop writes it: personal information, skipped keys
 * (one with a string of g->big bytes), contacts, chats of g->per_chat
 * messages with ids 1, 2, ... across all chats.
 */
static void *
gen_run(void *arg)
{
	struct gen *g = arg;
	unsigned long long id = 0;
	long ci, mi;

	GEN_S(g, "{\n \"about\": \"Here is the data you requested.\",\n"
	    " \"personal_information\": {\n  \"user_id\": 5123456789,\n"
	    "  \"first_name\": \"Me\",\n  \"last_name\": \"Myself\",\n"
	    "  \"phone_number\": \"+1 555 000 1234\",\n"
	    "  \"username\": \"@me_myself\"\n },\n"
	    " \"contacts\": {\n  \"about\": \"Contacts.\",\n  \"list\": [\n"
	    "   {\n    \"user_id\": 6987654321,\n    \"first_name\": \"Ann\",\n"
	    "    \"last_name\": \"Example\",\n"
	    "    \"phone_number\": \"+44 20 7946 0958\"\n   }\n  ]\n },\n"
	    " \"other_data\": {\n  \"about\": \"Other data.\",\n"
	    "  \"blob\": \"");
	if (!g->big_in_message)
		gen_fill(g, g->big);
	GEN_S(g, "\"\n },\n \"chats\": {\n  \"about\": \"Chats.\",\n"
	    "  \"list\": [");
	for (ci = 0; ci < g->nchats && !g->failed; ci++) {
		if (ci > 0)
			GEN_S(g, ",");
		GEN_S(g, "\n   {\n    \"name\": \"Chat ");
		gen_num(g, (unsigned long long)ci);
		GEN_S(g, "\",\n    \"type\": \"private_supergroup\",\n"
		    "    \"id\": ");
		gen_num(g, 1000000000ULL + (unsigned long long)ci);
		GEN_S(g, ",\n    \"messages\": [");
		for (mi = 0; mi < g->per_chat && !g->failed; mi++) {
			id++;
			if (mi > 0)
				GEN_S(g, ",");
			gen_message(g, id);
		}
		GEN_S(g, "\n    ]\n   }");
	}
	GEN_S(g, "\n  ]\n },\n \"left_chats\": {\n  \"about\": \"Left.\",\n"
	    "  \"list\": []\n }\n}\n");
	gen_flush(g);
	close(g->fd);
	return NULL;
}

struct pipe_run {
	struct gen	 g;
	pthread_t	 th;
	int		 rfd;
	char		 path[32];
};

static int
pipe_start(struct pipe_run *p, long nchats, long per_chat, size_t big,
    int big_in_message)
{
	int fds[2];

	memset(p, 0, sizeof(*p));
	if (pipe(fds) == -1)
		return -1;
	p->rfd = fds[0];
	p->g.fd = fds[1];
	p->g.nchats = nchats;
	p->g.per_chat = per_chat;
	p->g.big = big;
	p->g.big_in_message = big_in_message;
	p->g.cap = 1 << 20;
	if ((p->g.buf = malloc(p->g.cap)) == NULL)
		return -1;
	snprintf(p->path, sizeof(p->path), "/dev/fd/%d", p->rfd);
	if (pthread_create(&p->th, NULL, gen_run, &p->g) != 0)
		return -1;
	return 0;
}

/* After the reader is freed: unblocks and joins the writer. */
static void
pipe_finish(struct pipe_run *p)
{
	close(p->rfd);
	pthread_join(p->th, NULL);
	free(p->g.buf);
}

static long
maxrss_kb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/*
 * 1,000,000 messages (about 400 MB) through a pipe: each arrives once, in
 * order, in bounded memory.  A 20 MB key the reader skips, too.  One
 * message in ten becomes a row, in pages of 100 (batch.c's COPY text costs
 * more than the reading: TGX_ROWS_EVERY=1 makes a row of each).
 */
static void
test_stream(void)
{
	long nchats = 8, per_chat = 125000, chats = 0, ends = 0, nmsg = 0;
	struct sync_tgx_item it;
	struct sync_err err = { 0 };
	struct sync_batch m, c;
	struct pipe_run p;
	struct sync_tgx *x;
	struct timespec t0, t1;
	long long expect = 1, id, tid, self = 0;
	double secs, mb, in_next = 0;
	const char *env;
	long rss, every = 10;

	if ((env = getenv("TGX_STREAM_MESSAGES")) != NULL)
		per_chat = strtol(env, NULL, 10) / nchats;
	/* TGX_ROWS_EVERY=1: every message a row; 0: none. */
	if (getenv("TGX_ROWS_EVERY") != NULL)
		every = strtol(getenv("TGX_ROWS_EVERY"), NULL, 10);
#ifdef T_ASAN
	if (env == NULL)
		per_chat /= 5;		/* the sanitizers are slow */
#endif
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK(pipe_start(&p, nchats, per_chat, 20u << 20, 0) == 0);
	x = sync_tgx_open(p.path, &err);
	CHECK(x != NULL);
	sync_batch_init(&m, SYNC_ENT_MESSAGE);
	sync_batch_init(&c, SYNC_ENT_CONTACT);
	for (;;) {
		struct timespec a, b;
		enum sync_rc rc;

		clock_gettime(CLOCK_MONOTONIC, &a);
		rc = x != NULL ? sync_tgx_next(x, &it, &err) : SYNC_ENOMEM;
		clock_gettime(CLOCK_MONOTONIC, &b);
		in_next += (double)(b.tv_sec - a.tv_sec) +
		    (b.tv_nsec - a.tv_nsec) / 1e9;
		if (rc != SYNC_OK || it.kind == SYNC_TGX_EOF)
			break;
		switch (it.kind) {
		case SYNC_TGX_SELF:
			CHECK(sync_json_id(it.json, "user_id", &self) == 0);
			break;
		case SYNC_TGX_CHAT:
			CHECK(it.chat_id == -1001000000000LL - chats);
			chats++;
			break;
		case SYNC_TGX_CHAT_END:
			ends++;
			break;
		case SYNC_TGX_MESSAGE:
			if (sync_json_id(it.json, "id", &id) != 0 ||
			    id != expect) {
				CHECK(0);
				fprintf(stderr, "message %lld, wanted %lld\n",
				    id, expect);
				expect = id;
			}
			expect++;
			nmsg++;
			if (every <= 0 || id % every != 0)
				break;
			if (sync_tgx_add_message(&it, self, &m, &c,
			    &tid) != 0 || tid != id << 20)
				CHECK(0);
			if (m.nrows == 100) {
				sync_batch_release(&m);
				sync_batch_release(&c);
				sync_batch_init(&m, SYNC_ENT_MESSAGE);
				sync_batch_init(&c, SYNC_ENT_CONTACT);
			}
			break;
		default:
			break;
		}
	}
	if (err.rc != SYNC_OK)
		fprintf(stderr, "stream: %s\n", err.msg);
	CHECK(err.rc == SYNC_OK && it.kind == SYNC_TGX_EOF);
	CHECK(self == SELF_ID);
	CHECK(nmsg == nchats * per_chat && chats == nchats && ends == nchats);
	CHECK(x == NULL || sync_tgx_sanitized(x) == 0);
	sync_tgx_free(x);
	sync_batch_release(&m);
	sync_batch_release(&c);
	pipe_finish(&p);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) +
	    (t1.tv_nsec - t0.tv_nsec) / 1e9;
	mb = (double)p.g.written / 1e6;
	rss = maxrss_kb();
	printf("test_tgexport: %ld messages, %.0f MB through a pipe in %.2f s "
	    "(%.0f MB/s, a row for one message in %ld); in sync_tgx_next() "
	    "%.2f s: %.0f MB/s; peak RSS %.1f MB\n", nmsg, mb, secs, mb / secs,
	    every, in_next, mb / in_next, rss / 1024.0);
#ifndef T_ASAN
	CHECK(rss < 64 * 1024);
#endif
}

/* An object over the cap: an error naming its line, not a 17 MB item. */
static void
test_cap(void)
{
	struct sync_tgx_item it;
	struct sync_err err = { 0 };
	struct pipe_run p;
	struct sync_tgx *x;
	long n = 0;

	CHECK(pipe_start(&p, 1, 3, SYNC_TGX_MAX_OBJECT + 1, 1) == 0);
	x = sync_tgx_open(p.path, &err);
	CHECK(x != NULL);
	while (x != NULL && sync_tgx_next(x, &it, &err) == SYNC_OK &&
	    it.kind != SYNC_TGX_EOF)
		n += it.kind == SYNC_TGX_MESSAGE;
	CHECK(n == 1);			/* the first; the second is too big */
	CHECK(err.rc == SYNC_EDATA);
	/* The second message begins on line 48 of the generated export. */
	CHECK(strncmp(err.msg, "/dev/fd/", 8) == 0 && strstr(err.msg, ":48: a "
	    "message in chat 'Chat 0' is larger than 16 MiB") != NULL);
	if (strstr(err.msg, ":48: ") == NULL)
		fprintf(stderr, "cap: %s\n", err.msg);
	sync_tgx_free(x);
	pipe_finish(&p);
}

/* Opening: a missing file; standard input. */
static void
test_open(void)
{
	static const char text[] = "{\"messages\": [{\"id\": 1}]}";
	struct sync_tgx_item it;
	struct sync_err err = { 0 };
	struct sync_tgx *x;
	int fds[2], saved;

	CHECK(sync_tgx_open("/nonexistent/result.json", &err) == NULL);
	CHECK(err.rc == SYNC_ECONFIG && err.kind == SYNC_ERR_CONFIG &&
	    strstr(err.msg, "cannot open export "
	    "'/nonexistent/result.json': ") != NULL);
	sync_tgx_free(NULL);

	memset(&err, 0, sizeof(err));
	CHECK(pipe(fds) == 0);
	CHECK(write(fds[1], text, sizeof(text) - 1) ==
	    (ssize_t)sizeof(text) - 1);
	close(fds[1]);
	saved = dup(0);
	dup2(fds[0], 0);
	close(fds[0]);
	x = sync_tgx_open("-", &err);
	CHECK(x != NULL);
	CHECK(sync_tgx_next(x, &it, &err) == SYNC_OK &&
	    it.kind == SYNC_TGX_CHAT);
	CHECK(it.chat_id == 0 && it.chat_type[0] == '\0');
	CHECK(sync_tgx_next(x, &it, &err) == SYNC_OK &&
	    it.kind == SYNC_TGX_MESSAGE);
	CHECK(sync_tgx_next(x, &it, &err) == SYNC_OK &&
	    it.kind == SYNC_TGX_CHAT_END);
	CHECK(sync_tgx_next(x, &it, &err) == SYNC_OK &&
	    it.kind == SYNC_TGX_EOF);
	sync_tgx_free(x);
	dup2(saved, 0);
	close(saved);
	clearerr(stdin);
}

/*
 * An export's files (SPEC §9): a path inside the export's directory is
 * the file there; one that leaves it, an absolute one, or a file not
 * saved is unavailable.
 */
static void
test_files(void)
{
	static const char text[] = "{\"name\":\"Ann\",\"type\":\"personal_chat\","
	    "\"id\":6987654321,\"messages\":["
	    "{\"id\":1,\"type\":\"message\",\"date_unixtime\":\"1704067200\","
	    "\"from_id\":\"user6987654321\",\"text\":\"\",\"file\":"
	    "\"files/ok.pdf\",\"file_name\":\"ok.pdf\",\"file_size\":3},"
	    "{\"id\":2,\"type\":\"message\",\"date_unixtime\":\"1704067201\","
	    "\"from_id\":\"user6987654321\",\"text\":\"\",\"file\":"
	    "\"files/../../secret\"},"
	    "{\"id\":3,\"type\":\"message\",\"date_unixtime\":\"1704067202\","
	    "\"from_id\":\"user6987654321\",\"text\":\"\",\"photo\":"
	    "\"/etc/passwd\"},"
	    "{\"id\":4,\"type\":\"message\",\"date_unixtime\":\"1704067203\","
	    "\"from_id\":\"user6987654321\",\"text\":\"\",\"file\":"
	    "\"(File exceeds maximum size. Change data exporting settings "
	    "to download.)\",\"media_type\":\"video_file\"},"
	    "{\"id\":5,\"type\":\"message\",\"date_unixtime\":\"1704067204\","
	    "\"from_id\":\"user6987654321\",\"text\":\"just text\"}]}";
	char dir[] = "/tmp/msgsync-tgx-XXXXXX", path[4096], want[4096];
	struct sync_tgx_item it;
	struct sync_err err = { 0 };
	struct sync_batch m;
	struct sync_tgx *x;
	char *real;
	const char *a;
	FILE *fp;

	if (mkdtemp(dir) == NULL) {
		CHECK(0);
		return;
	}
	snprintf(path, sizeof(path), "%s/result.json", dir);
	CHECK((fp = fopen(path, "w")) != NULL);
	if (fp == NULL)
		return;
	fputs(text, fp);
	fclose(fp);
	sync_batch_init(&m, SYNC_ENT_MESSAGE);
	CHECK((x = sync_tgx_open(path, &err)) != NULL);
	while (x != NULL && sync_tgx_next(x, &it, &err) == SYNC_OK &&
	    it.kind != SYNC_TGX_EOF)
		if (it.kind == SYNC_TGX_MESSAGE)
			CHECK(sync_tgx_add_message(&it, 0, &m, NULL, NULL) == 0);
	sync_tgx_free(x);
	CHECK(m.nrows == 5 && m.natt == 4);
	a = m.att.data != NULL ? m.att.data : "";
	real = realpath(dir, NULL);
	snprintf(want, sizeof(want), "\t0\tdocument\t\\N\tok.pdf\t3\t\\N\t\\N\tf\t"
	    "%s/files/ok.pdf\t\\N\t\\N\n", real != NULL ? real : dir);
	CHECK(strstr(a, want) != NULL);
	CHECK(strstr(a, ":2097152\t0\tdocument\t\\N\t\\N\t\\N\t\\N\t\\N\tf\t\\N\t"
	    "\\N\tnot a file inside the export's directory\n") != NULL);
	CHECK(strstr(a, ":3145728\t0\tphoto\timage/jpeg\t\\N\t\\N\t\\N\t\\N\tf\t"
	    "\\N\t\\N\tnot a file inside the export's directory\n") != NULL);
	CHECK(strstr(a, ":4194304\t0\tvideo\t\\N\t\\N\t\\N\t\\N\t\\N\tf\t\\N\t"
	    "\\N\tnot saved in the export\n") != NULL);
	CHECK(strstr(a, "secret") == NULL && strstr(a, "passwd") == NULL);
	if (m.natt != 4 || strstr(a, want) == NULL)
		fprintf(stderr, "  %s\n", a);
	sync_batch_release(&m);
	free(real);
	unlink(path);
	rmdir(dir);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	setenv("TZ", "UTC0", 1);
	tzset();
	/* First, while the process is small: its peak RSS is the stream's. */
	test_stream();
	test_single();
	test_full();
	test_more();
	test_ids();
	test_senders();
	test_malformed();
	test_sanitize();
	test_sanitize_random();
	test_nesting();
	test_cap();
	test_open();
	test_files();
	return t_done("test_tgexport");
}
