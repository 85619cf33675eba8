/*
 * fake_tdjson.c -- a fake libtdjson.so for msgsync's telegram tests: the
 * five functions of TDLib's JSON interface (td_json_client.h, TDLib
 * 1.8.67) serving a scenario file instead of Telegram.  Protocol notes:
 * shared/reference/smseagle-telegram.md §B.1 and §B.4.
 *
 * It imitates, with the texts and order of the real 1.8.67 where that can
 * be asked offline:
 *  - one td_receive() queue for all clients, "@client_id" on everything,
 *    "@extra" (any JSON value) echoed; silence until a client's first
 *    request, then updateOption "version" and WaitTdlibParameters;
 *    td_receive() sleeps at most 1 s per call;
 *  - TDLib's request parsing: int32/int53 fields take a JSON integer or a
 *    string of one, never 1.0 or 1e+15 ("Can't parse as an integer
 *    string"); absent or null means 0, false or ""; "Failed to parse
 *    request as JSON object: ..." for bad JSON, "Failed to parse JSON
 *    object as TDLib request: ..." for a bad field or an unknown class
 *    (every method not served below); 400 "Initialization parameters are
 *    needed: call setTdlibParameters first", then 401 "Unauthorized" until
 *    Ready; 400 "Invalid TDLib instance specified"; 500 "Request aborted"
 *    once closing, to every later request;
 *  - the login flow of TDLib >= 1.8.6 (flat setTdlibParameters, checked
 *    like 1.8.67), state updates before the "ok" that caused them; close:
 *    ok, Closing, Closed; logOut: LoggingOut, ok, Closed; the session is
 *    the file <database_directory>/fake-session;
 *  - loadChats (updateNewChat; 404 "Not Found" once all are sent),
 *    getChats (loads what it lists), getChat, getChatHistory (TDLib's
 *    checks; from_message_id excluded at offset 0, -offset newer ones
 *    otherwise; total_count is the number returned), getMessage, getMe,
 *    getUser, getContacts (users: updateUser for the ones not told of
 *    yet, then their ids), openChat, closeChat, getOption, setOption, setLogStream,
 *    setLogVerbosityLevel, getAuthorizationState, downloadFile (the file
 *    of a scenario message, written under database_directory/files: see
 *    m_download_file());
 *  - integers of 1e15 and more go out as digits (cJSON prints 1e+15).
 * It does not imitate: the network, file downloads in parts, sending, secret chats, folders,
 * topics, options other than "version" and "my_id" (setOption accepts
 * anything), updates other than the ones above, only_local, log output.
 * td_execute() serves getOption "version", setLogVerbosityLevel and
 * setLogStream only.
 *
 * FAKE_TDJSON_SCENARIO names the scenario, a JSON object read by each
 * td_create_client_id() (and by td_execute() for "version"); unset or
 * unreadable means an account without data.  Keys, all optional:
 *   version            "1.8.67"
 *   auth               {"code": "12345", "password": null, "phone": null};
 *                      a password adds WaitPassword, a phone refuses others
 *   me, users          user objects, sent as updateUser just before Ready
 *   contacts           user objects of the address book, told of (updateUser)
 *                      only when getContacts loads them, unless in users
 *   chats              [{"chat": {chat object with "id"}, "archived": false,
 *                      "messages": [message objects, any order]}]; the fake
 *                      computes last_message and positions and fills in a
 *                      missing message chat_id
 *   load_chats_page    most chats one loadChats sends (default: its limit)
 *   page_max           most messages one getChatHistory returns (100)
 *   first_page         most returned by a chat's first getChatHistory from
 *                      message 0 (1: TDLib's documented short first page)
 *   empty_first        chat ids whose first such call returns none
 *   latency            seconds a getChatHistory's "messages" answer takes
 *                      (0): queued at once, td_receive() hands it out only
 *                      then, while other objects, of any client, go ahead
 *   faults             [{"method", "after": 0, "count": 1 (-1: for ever),
 *                      "code": 429, "message": "Too Many Requests: retry
 *                      after 1", "chat_id": null}]: a client's matching
 *                      calls number after+1 .. after+count fail so;
 *                      with "pause_file": PATH they are not failed but
 *                      held (the whole library with them) until PATH
 *                      exists, then served: a test kills the client or
 *                      stops its database at a known call; with
 *                      "bad_message": true they are served, and the next
 *                      answer with messages has its middle one's "id"
 *                      replaced by {"unexpected": "object"}
 *   hang               methods never answered (close aborts them)
 *   updates_on_ready   objects sent once, right after Ready
 *   live               [{"after": N, "chat_id": id, "messages": [...]}]:
 *                      at the client's N-th getChatHistory call, before it
 *                      is answered, these messages arrive in that chat,
 *                      with updateChatLastMessage, as messages arrive
 *                      while a client runs
 *   split_chat_updates true: updateNewChat without last_message and
 *                      positions, which follow in updateChatLastMessage or
 *                      updateChatPosition, as TDLib may send them
 * FAKE_TDJSON_LOG names a file that gets a line per request to td_send()
 * or td_execute(): {"client":N,"request":{...}}; N is 0 for td_execute(),
 * and a request that is not JSON is logged as null with its text in "raw".
 *
 * One mutex guards everything; td_receive() waits on a condition variable,
 * so td_send() from another thread wakes it, and at most until the first
 * delayed answer is due.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#define FAKE_VERSION	"1.8.67"
#define PARSE_PREFIX	"Failed to parse JSON object as TDLib request: "
#define MAX_SCENARIO	(256L * 1024 * 1024)
#define MAX_HISTORY	100

int		td_create_client_id(void);
void		td_send(int, const char *);
const char	*td_receive(double);
const char	*td_execute(const char *);
void		td_set_log_message_callback(int, void (*)(int, const char *));

enum state {
	ST_NEW,			/* no request yet: silent */
	ST_WAIT_PARAMS,
	ST_WAIT_PHONE,
	ST_WAIT_CODE,
	ST_WAIT_PASSWORD,
	ST_READY,
	ST_CLOSED
};

enum gate {
	GATE_ANY,		/* any state */
	GATE_INIT,		/* after setTdlibParameters */
	GATE_READY		/* after authorizationStateReady */
};

struct fmsg {
	int64_t		 id;
	const cJSON	*json;		/* in the scenario tree */
};

struct fchat {
	int64_t		 id;
	const cJSON	*json;		/* the "chat" object, in the scenario */
	int		 archived;
	size_t		 index;		/* place in its list */
	struct fmsg	*msgs;		/* newest first */
	size_t		 nmsgs;
	int		 known;		/* updateNewChat sent */
	int		 listed;	/* sent by loadChats/getChats */
	int		 had_newest;	/* a getChatHistory from message 0 came */
	int		 empty_first;
};

struct fault {
	const char	*method;	/* in the scenario tree */
	long		 after, count, seen;
	int		 has_chat;
	int64_t		 chat_id;
	int		 code;
	const char	*message;
	const char	*pause_file;	/* hold, don't fail, until it exists */
	int		 bad_message;	/* serve, with one message's id broken */
};

struct client {
	int		 id;
	enum state	 state;
	cJSON		*scen;		/* owned; the const pointers below are in it */
	const char	*version;
	const char	*code, *password, *phone_want;
	const cJSON	*me, *users, *on_ready, *hang;
	const cJSON	*contacts;	/* the address book (user objects) */
	int		 contacts_told;	/* their updateUser were sent */
	struct fchat	*chats;
	size_t		 nchats;
	long		 load_page;	/* 0: no cap */
	long		 page_max, first_page;
	double		 latency;	/* s: getChatHistory answers' delay */
	int		 split;
	struct fault	*faults;
	size_t		 nfaults;
	long		 history_calls;	/* getChatHistory calls so far */
	char		*dbdir;
	char		*phone;
	cJSON		*hung;		/* [{"e": @extra} or {}] of unanswered requests */
	const char	*method;	/* the request being served */
	enum gate	 gate;
	struct client	*next;
};

struct qent {
	char		*text;
	struct timespec	 due;		/* CLOCK_REALTIME; 0: at once */
	struct qent	*next;
};

struct method {
	const char	*name;
	void		(*run)(struct client *, const cJSON *);
	enum gate	 gate;
};

static pthread_mutex_t	 mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	 cv = PTHREAD_COND_INITIALIZER;
static struct qent	*q_head, *q_tail;
static struct client	*clients;
static int		 last_id;
static char		*recv_buf, *exec_buf;	/* what td_receive/td_execute returned */
static int		 log_level;
static int		 corrupt_next;	/* a "bad_message" fault fired */
static double		 emit_delay;	/* s: what emit() queues is due then */
static void		(*log_cb)(int, const char *);

/* ---- JSON helpers ---- */

static const char *
type_name(const cJSON *v)
{
	if (cJSON_IsBool(v))
		return "Boolean";
	if (cJSON_IsNumber(v) || cJSON_IsRaw(v))
		return "Number";
	if (cJSON_IsString(v))
		return "String";
	if (cJSON_IsArray(v))
		return "Array";
	if (cJSON_IsObject(v))
		return "Object";
	return "Null";
}

/* Whether s (n bytes) is an integer as TDLib reads one: no "-0", no "01". */
static int
int_literal(const char *s, size_t n)
{
	size_t i = 0;

	if (n > 0 && s[0] == '-')
		i++;
	if (i == n || (s[i] == '0' && (n - i > 1 || i == 1)))
		return 0;
	for (; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

/* Whether s (n bytes) is a number in strict JSON syntax. */
static int
json_number(const char *s, size_t n)
{
	size_t i = 0, d;

	if (i < n && s[i] == '-')
		i++;
	if (i < n && s[i] == '0')
		i++;
	else {
		for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			;
		if (i == d)
			return 0;
	}
	if (i < n && s[i] == '.') {
		for (d = ++i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			;
		if (i == d)
			return 0;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			;
		if (i == d)
			return 0;
	}
	return i == n;
}

struct span {
	const char	*p;
	size_t		 n;
};

/*
 * The number tokens of JSON text s, in document order: *out (the caller
 * frees it) gets *nout of them.  -1 when out of memory.
 */
static int
scan_numbers(const char *s, struct span **out, size_t *nout)
{
	struct span *v = NULL, *nv;
	size_t n = 0, cap = 0, i = 0, b;

	while (s[i] != '\0') {
		if (s[i] == '"') {
			for (i++; s[i] != '\0' && s[i] != '"'; i++)
				if (s[i] == '\\' && s[i + 1] != '\0')
					i++;
			if (s[i] != '\0')
				i++;
			continue;
		}
		if (s[i] != '-' && (s[i] < '0' || s[i] > '9')) {
			i++;
			continue;
		}
		for (b = i; s[i] != '\0' && strchr("0123456789+-.eE", s[i]); i++)
			;
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			if ((nv = realloc(v, cap * sizeof(*v))) == NULL) {
				free(v);
				return -1;
			}
			v = nv;
		}
		v[n].p = s + b;
		v[n++].n = i - b;
	}
	*out = v;
	*nout = n;
	return 0;
}

/*
 * Turns each number of the tree under parent whose token is not an integer
 * of at most 15 digits into a raw item holding the token, so that TDLib's
 * integer checks can see the text and "@extra" is echoed as sent.
 * 0, or -1 on a token that is not a JSON number, or on no memory.
 */
static int
keep_number_text(cJSON *parent, const struct span *sp, size_t n, size_t *k)
{
	cJSON *it, *next, *raw;
	char tok[64];
	size_t digits;

	for (it = parent->child; it != NULL; it = next) {
		next = it->next;
		if (cJSON_IsArray(it) || cJSON_IsObject(it)) {
			if (keep_number_text(it, sp, n, k) == -1)
				return -1;
			continue;
		}
		if (!cJSON_IsNumber(it))
			continue;
		if (*k >= n || sp[*k].n >= sizeof(tok) ||
		    !json_number(sp[*k].p, sp[*k].n))
			return -1;
		digits = sp[*k].n - (sp[*k].p[0] == '-');
		if (int_literal(sp[*k].p, sp[*k].n) && digits <= 15) {
			(*k)++;
			continue;
		}
		memcpy(tok, sp[*k].p, sp[*k].n);
		tok[sp[*k].n] = '\0';
		(*k)++;
		if ((raw = cJSON_CreateRaw(tok)) == NULL)
			return -1;
		raw->string = it->string;	/* the key moves over */
		raw->type |= it->type & cJSON_StringIsConst;
		it->string = NULL;
		cJSON_ReplaceItemViaPointer(parent, it, raw);
	}
	return 0;
}

/*
 * Parses a request.  Returns the object (the caller frees it), or NULL
 * with TDLib's complaint in why.
 */
static cJSON *
parse_request(const char *text, char *why, size_t wn)
{
	const char *end = NULL;
	struct span *sp = NULL;
	size_t nsp = 0, k = 0;
	cJSON *j;

	if (text == NULL)
		text = "";
	if ((j = cJSON_ParseWithOpts(text, &end, 1)) == NULL) {
		if (end == NULL || *end == '\0')
			snprintf(why, wn, "Failed to parse request as JSON "
			    "object: Unexpected string end");
		else if ((unsigned char)*end >= 0x20 && (unsigned char)*end < 0x7f)
			snprintf(why, wn, "Failed to parse request as JSON "
			    "object: Unexpected symbol '%c'", *end);
		else
			snprintf(why, wn, "Failed to parse request as JSON "
			    "object: Unexpected symbol with code %d",
			    (unsigned char)*end);
		return NULL;
	}
	if (!cJSON_IsObject(j)) {
		snprintf(why, wn, "Expected a JSON object");
		cJSON_Delete(j);
		return NULL;
	}
	if (scan_numbers(text, &sp, &nsp) == -1 ||
	    keep_number_text(j, sp, nsp, &k) == -1) {
		snprintf(why, wn, "Failed to parse request as JSON object: "
		    "Invalid number");
		cJSON_Delete(j);
		j = NULL;
	}
	free(sp);
	return j;
}

/* Integers of 1e15 and more as digits: cJSON would print 1e+15. */
static void
fix_numbers(cJSON *parent)
{
	cJSON *it, *next, *raw;
	char buf[32];
	double v;

	for (it = parent->child; it != NULL; it = next) {
		next = it->next;
		if (cJSON_IsArray(it) || cJSON_IsObject(it)) {
			fix_numbers(it);
			continue;
		}
		if (!cJSON_IsNumber(it))
			continue;
		v = it->valuedouble;
		if (!(v >= 1e15 || v <= -1e15) || !(v < 9.2e18 && v > -9.2e18) ||
		    (double)(long long)v != v)
			continue;
		snprintf(buf, sizeof(buf), "%lld", (long long)v);
		if ((raw = cJSON_CreateRaw(buf)) == NULL)
			continue;
		raw->string = it->string;
		raw->type |= it->type & cJSON_StringIsConst;
		it->string = NULL;
		cJSON_ReplaceItemViaPointer(parent, it, raw);
	}
}

/* Prints j for output (the caller frees the text); NULL on no memory. */
static char *
print_out(cJSON *j)
{
	fix_numbers(j);
	return cJSON_PrintUnformatted(j);
}

/*
 * Reads integer field key of o into *v as TDLib does (absent or null: 0).
 * 0, or -1 with the complaint in why.
 */
static int
get_int(const cJSON *o, const char *key, int64_t lo, int64_t hi, int64_t *v,
    char *why, size_t wn)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
	const char *s;
	long long r;
	char *end;

	*v = 0;
	if (x == NULL || cJSON_IsNull(x))
		return 0;
	if (cJSON_IsNumber(x)) {	/* an integer literal of <= 15 digits */
		if (x->valuedouble >= (double)lo && x->valuedouble <= (double)hi) {
			*v = (int64_t)x->valuedouble;
			return 0;
		}
		snprintf(why, wn, "Can't parse as an integer string \"%.0f\"",
		    x->valuedouble);
		return -1;
	}
	if (!cJSON_IsRaw(x) && !cJSON_IsString(x)) {
		snprintf(why, wn, "Expected String or Number, but receive %s",
		    type_name(x));
		return -1;
	}
	s = x->valuestring != NULL ? x->valuestring : "";
	if (int_literal(s, strlen(s))) {
		errno = 0;
		r = strtoll(s, &end, 10);
		if (errno == 0 && *end == '\0' && r >= lo && r <= hi) {
			*v = r;
			return 0;
		}
	}
	snprintf(why, wn, "Can't parse as an integer string \"%.100s\"", s);
	return -1;
}

static int
get_int32(const cJSON *o, const char *key, int64_t *v, char *why, size_t wn)
{
	return get_int(o, key, INT32_MIN, INT32_MAX, v, why, wn);
}

static int
get_int53(const cJSON *o, const char *key, int64_t *v, char *why, size_t wn)
{
	return get_int(o, key, INT64_MIN, INT64_MAX, v, why, wn);
}

/* A Bool field: true/false or a number (absent or null: false). */
static int
get_bool(const cJSON *o, const char *key, int *v, char *why, size_t wn)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);

	*v = 0;
	if (x == NULL || cJSON_IsNull(x))
		return 0;
	if (cJSON_IsBool(x)) {
		*v = cJSON_IsTrue(x);
		return 0;
	}
	if (cJSON_IsNumber(x)) {
		*v = x->valuedouble != 0;
		return 0;
	}
	snprintf(why, wn, "Expected Boolean, but receive %s", type_name(x));
	return -1;
}

/* A string field; *v points into o ("" when absent or null). */
static int
get_str(const cJSON *o, const char *key, const char **v, char *why, size_t wn)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);

	*v = "";
	if (x == NULL || cJSON_IsNull(x))
		return 0;
	if (cJSON_IsString(x)) {
		*v = x->valuestring;
		return 0;
	}
	snprintf(why, wn, "Expected String, but receive %s", type_name(x));
	return -1;
}

/* An object field: *v NULL when absent or null. */
static int
get_obj(const cJSON *o, const char *key, const cJSON **v, char *why, size_t wn)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);

	*v = NULL;
	if (x == NULL || cJSON_IsNull(x))
		return 0;
	if (!cJSON_IsObject(x)) {
		snprintf(why, wn, "Expected Object, but receive %s", type_name(x));
		return -1;
	}
	if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(x, "@type"))) {
		snprintf(why, wn, "Can't find field \"@type\"");
		return -1;
	}
	*v = x;
	return 0;
}

/* A whole number from the scenario, or def. */
static long
scen_long(const cJSON *o, const char *key, long def)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!cJSON_IsNumber(x) || !(x->valuedouble > -2e9 && x->valuedouble < 2e9))
		return def;
	return (long)x->valuedouble;
}

/* An array of the scenario, or NULL. */
static const cJSON *
scen_array(const cJSON *o, const char *key)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsArray(x) ? x : NULL;
}

/* An id from the scenario: 0, or -1 when x is no integer below 2^53. */
static int
scen_id(const cJSON *x, int64_t *v)
{
	if (!cJSON_IsNumber(x) || !(x->valuedouble > -9007199254740992.0 &&
	    x->valuedouble < 9007199254740992.0) ||
	    (double)(int64_t)x->valuedouble != x->valuedouble)
		return -1;
	*v = (int64_t)x->valuedouble;
	return 0;
}

/* ---- output ---- */

/* Queues an object for td_receive(); consumes j (and ignores no memory). */
static void
emit(int cid, cJSON *j)
{
	struct qent *e;
	char *text;

	if (j == NULL)
		return;
	cJSON_AddNumberToObject(j, "@client_id", cid);
	text = print_out(j);
	cJSON_Delete(j);
	if (text == NULL)
		return;
	if ((e = calloc(1, sizeof(*e))) == NULL) {
		cJSON_free(text);
		return;
	}
	e->text = text;
	if (emit_delay > 0) {
		long ns;

		clock_gettime(CLOCK_REALTIME, &e->due);
		ns = e->due.tv_nsec + (long)((emit_delay - (double)(long)emit_delay) * 1e9);
		e->due.tv_sec += (time_t)emit_delay + ns / 1000000000L;
		e->due.tv_nsec = ns % 1000000000L;
	}
	if (q_tail != NULL)
		q_tail->next = e;
	else
		q_head = e;
	q_tail = e;
	pthread_cond_broadcast(&cv);
}

/* Adds a copy of the "@extra" of req (if it has one) to j. */
static void
add_extra(cJSON *j, const cJSON *req)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(req, "@extra");

	if (j != NULL && x != NULL)
		cJSON_AddItemToObject(j, "@extra", cJSON_Duplicate(x, 1));
}

/* Queues answer j (consumed) to req for client cid. */
static void
answer(int cid, const cJSON *req, cJSON *j)
{
	cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, "messages");
	int n = cJSON_GetArraySize(ms);

	if (corrupt_next && n > 0) {
		cJSON *bad = cJSON_CreateObject();

		cJSON_AddStringToObject(bad, "unexpected", "object");
		cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetArrayItem(ms, n / 2),
		    "id", bad);
		corrupt_next = 0;
	}
	add_extra(j, req);
	emit(cid, j);
}

static cJSON *
typed(const char *type)
{
	cJSON *j = cJSON_CreateObject();

	cJSON_AddStringToObject(j, "@type", type);
	return j;
}

static cJSON *
option_string(const char *value)
{
	cJSON *j = typed("optionValueString");

	cJSON_AddStringToObject(j, "value", value);
	return j;
}

static cJSON *
error_object(int code, const char *msg)
{
	cJSON *j = typed("error");

	cJSON_AddNumberToObject(j, "code", code);
	cJSON_AddStringToObject(j, "message", msg);
	return j;
}

static void
answer_error(int cid, const cJSON *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
answer_error(int cid, const cJSON *req, int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	answer(cid, req, error_object(code, msg));
}

static void
answer_ok(const struct client *c, const cJSON *req)
{
	answer(c->id, req, typed("ok"));
}

/* ---- the request log ---- */

/* Appends {"client":cid,"request":req} (or the raw text) to FAKE_TDJSON_LOG. */
static void
log_request(int cid, const cJSON *req, const char *raw)
{
	const char *path = getenv("FAKE_TDJSON_LOG");
	char safe[4096], *text, *line;
	size_t n, i, off;
	ssize_t w;
	cJSON *j;
	int fd;

	if (path == NULL || *path == '\0' || (j = cJSON_CreateObject()) == NULL)
		return;
	cJSON_AddNumberToObject(j, "client", cid);
	if (req != NULL)
		cJSON_AddItemToObject(j, "request", cJSON_Duplicate(req, 1));
	else {
		/* Keep the line valid UTF-8 whatever was sent. */
		for (i = 0; raw != NULL && raw[i] != '\0' && i < sizeof(safe) - 1; i++)
			safe[i] = (unsigned char)raw[i] < 0x80 ? raw[i] : '?';
		safe[i] = '\0';
		cJSON_AddNullToObject(j, "request");
		cJSON_AddStringToObject(j, "raw", safe);
	}
	text = print_out(j);
	cJSON_Delete(j);
	if (text == NULL)
		return;
	n = strlen(text);
	if ((line = malloc(n + 2)) != NULL) {
		memcpy(line, text, n);
		line[n++] = '\n';
		line[n] = '\0';
		/* One write per line: the kernel has it even after kill -9. */
		if ((fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
		    0644)) != -1) {
			for (off = 0; off < n;) {
				w = write(fd, line + off, n - off);
				if (w < 0 && errno == EINTR)
					continue;
				if (w <= 0)
					break;
				off += (size_t)w;
			}
			close(fd);
		}
		free(line);
	}
	cJSON_free(text);
}

/* ---- the scenario ---- */

static int
msg_cmp(const void *a, const void *b)
{
	const struct fmsg *x = a, *y = b;

	return x->id < y->id ? 1 : x->id > y->id ? -1 : 0;
}

/* Reads file path whole; the caller frees the text.  NULL with errno. */
static char *
read_file(const char *path, size_t *len)
{
	size_t n = 0, cap = 0, r;
	char *buf = NULL, *nb;
	FILE *f;

	if ((f = fopen(path, "rb")) == NULL)
		return NULL;
	errno = 0;
	for (;;) {
		if (cap - n < 4096) {
			if (cap > (size_t)MAX_SCENARIO) {
				errno = EFBIG;
				goto fail;
			}
			cap = cap ? 2 * cap : 65536;
			if ((nb = realloc(buf, cap + 1)) == NULL)
				goto fail;
			buf = nb;
		}
		r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0)
			break;
	}
	if (ferror(f)) {
		if (errno == 0)
			errno = EIO;
		goto fail;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
fail:
	free(buf);
	fclose(f);
	return NULL;
}

/*
 * Loads the scenario into c (which owns it thereafter).  Returns 0, or -1
 * when out of memory; problems with the file go to warn and leave an
 * empty scenario.
 */
static int
load_scenario(struct client *c, char *warn, size_t wn)
{
	const char *path = getenv("FAKE_TDJSON_SCENARIO");
	const cJSON *a, *auth, *e, *m, *x;
	struct fchat *ch;
	size_t len, i, k, nmain = 0, narch = 0;
	char *text;
	int64_t id;

	if (path != NULL && *path != '\0') {
		if ((text = read_file(path, &len)) == NULL)
			snprintf(warn, wn, "fake tdjson: cannot read scenario "
			    "'%s': %s", path, strerror(errno));
		else {
			c->scen = cJSON_ParseWithLength(text, len);
			free(text);
			if (c->scen == NULL || !cJSON_IsObject(c->scen)) {
				snprintf(warn, wn, "fake tdjson: scenario '%s' "
				    "is not a JSON object", path);
				cJSON_Delete(c->scen);
				c->scen = NULL;
			}
		}
	}
	if (c->scen == NULL && (c->scen = cJSON_CreateObject()) == NULL)
		return -1;
	c->version = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c->scen,
	    "version"));
	if (c->version == NULL)
		c->version = FAKE_VERSION;
	auth = cJSON_GetObjectItemCaseSensitive(c->scen, "auth");
	c->code = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(auth,
	    "code"));
	if (c->code == NULL)
		c->code = "12345";
	c->password = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(auth,
	    "password"));
	c->phone_want = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(auth,
	    "phone"));
	c->me = cJSON_GetObjectItemCaseSensitive(c->scen, "me");
	if (!cJSON_IsObject(c->me))
		c->me = NULL;
	c->users = scen_array(c->scen, "users");
	c->contacts = scen_array(c->scen, "contacts");
	c->on_ready = scen_array(c->scen, "updates_on_ready");
	c->hang = scen_array(c->scen, "hang");
	c->load_page = scen_long(c->scen, "load_chats_page", 0);
	c->page_max = scen_long(c->scen, "page_max", MAX_HISTORY);
	c->first_page = scen_long(c->scen, "first_page", 1);
	x = cJSON_GetObjectItemCaseSensitive(c->scen, "latency");
	c->latency = cJSON_IsNumber(x) && x->valuedouble > 0 &&
	    x->valuedouble < 3600 ? x->valuedouble : 0;
	c->split = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c->scen,
	    "split_chat_updates"));

	a = scen_array(c->scen, "chats");
	if (cJSON_GetArraySize(a) > 0 &&
	    (c->chats = calloc((size_t)cJSON_GetArraySize(a), sizeof(*c->chats))) == NULL)
		return -1;
	cJSON_ArrayForEach(e, a) {
		x = cJSON_GetObjectItemCaseSensitive(e, "chat");
		if (!cJSON_IsObject(x) ||
		    scen_id(cJSON_GetObjectItemCaseSensitive(x, "id"), &id) == -1)
			continue;
		ch = &c->chats[c->nchats++];
		ch->id = id;
		ch->json = x;
		ch->archived = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e,
		    "archived"));
		ch->index = ch->archived ? narch++ : nmain++;
		m = scen_array(e, "messages");
		if (cJSON_GetArraySize(m) > 0 && (ch->msgs = calloc(
		    (size_t)cJSON_GetArraySize(m), sizeof(*ch->msgs))) == NULL)
			return -1;
		cJSON_ArrayForEach(x, m)
			if (cJSON_IsObject(x) && scen_id(cJSON_GetObjectItemCaseSensitive(x,
			    "id"), &id) == 0) {
				ch->msgs[ch->nmsgs].id = id;
				ch->msgs[ch->nmsgs++].json = x;
			}
		if (ch->nmsgs > 1)
			qsort(ch->msgs, ch->nmsgs, sizeof(*ch->msgs), msg_cmp);
		for (i = k = 0; i < ch->nmsgs; i++)	/* one message per id */
			if (k == 0 || ch->msgs[k - 1].id != ch->msgs[i].id)
				ch->msgs[k++] = ch->msgs[i];
		ch->nmsgs = k;
	}
	cJSON_ArrayForEach(x, scen_array(c->scen, "empty_first"))
		if (scen_id(x, &id) == 0)
			for (i = 0; i < c->nchats; i++)
				if (c->chats[i].id == id)
					c->chats[i].empty_first = 1;

	a = scen_array(c->scen, "faults");
	if (cJSON_GetArraySize(a) > 0 &&
	    (c->faults = calloc((size_t)cJSON_GetArraySize(a), sizeof(*c->faults))) == NULL)
		return -1;
	cJSON_ArrayForEach(e, a) {
		struct fault *f = &c->faults[c->nfaults];

		if ((f->method = cJSON_GetStringValue(
		    cJSON_GetObjectItemCaseSensitive(e, "method"))) == NULL)
			continue;
		f->after = scen_long(e, "after", 0);
		f->count = scen_long(e, "count", 1);
		f->code = (int)scen_long(e, "code", 429);
		f->message = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e,
		    "message"));
		if (f->message == NULL)
			f->message = f->code == 429 ?
			    "Too Many Requests: retry after 1" : "Fault injected";
		f->has_chat = scen_id(cJSON_GetObjectItemCaseSensitive(e, "chat_id"),
		    &f->chat_id) == 0;
		f->pause_file = cJSON_GetStringValue(
		    cJSON_GetObjectItemCaseSensitive(e, "pause_file"));
		f->bad_message = cJSON_IsTrue(
		    cJSON_GetObjectItemCaseSensitive(e, "bad_message"));
		c->nfaults++;
	}
	return 0;
}

/* Drops the scenario of c: a closed client only says "Request aborted". */
static void
client_drop_scenario(struct client *c)
{
	size_t i;

	for (i = 0; i < c->nchats; i++)
		free(c->chats[i].msgs);
	free(c->chats);
	c->chats = NULL;
	c->nchats = 0;
	free(c->faults);
	c->faults = NULL;
	c->nfaults = 0;
	c->me = c->users = c->on_ready = c->hang = NULL;
	c->version = c->code = c->password = c->phone_want = NULL;
	cJSON_Delete(c->scen);
	c->scen = NULL;
}

static void
client_free(struct client *c)
{
	if (c == NULL)
		return;
	client_drop_scenario(c);
	free(c->dbdir);
	free(c->phone);
	cJSON_Delete(c->hung);
	free(c);
}

static struct client *
find_client(int id)
{
	struct client *c;

	for (c = clients; c != NULL; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

static struct fchat *
find_chat(struct client *c, int64_t id)
{
	size_t i;

	for (i = 0; i < c->nchats; i++)
		if (c->chats[i].id == id)
			return &c->chats[i];
	return NULL;
}

/* ---- objects sent ---- */

/*
 * A copy of object o, "@type" first (type when o has none), without the
 * member named skip1 or skip2 (NULL: none).
 */
static cJSON *
typed_copy(const cJSON *o, const char *type, const char *skip1,
    const char *skip2)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "@type"), *x;
	cJSON *j;

	j = typed(cJSON_IsString(t) ? t->valuestring : type);
	cJSON_ArrayForEach(x, o) {
		if (x->string == NULL || strcmp(x->string, "@type") == 0 ||
		    (skip1 != NULL && strcmp(x->string, skip1) == 0) ||
		    (skip2 != NULL && strcmp(x->string, skip2) == 0))
			continue;
		cJSON_AddItemToObject(j, x->string, cJSON_Duplicate(x, 1));
	}
	return j;
}

/* A copy of message m of chat ch, with chat_id filled in. */
static cJSON *
message_object(const struct fchat *ch, const struct fmsg *m)
{
	cJSON *j = typed_copy(m->json, "message", NULL, NULL);

	if (j != NULL && cJSON_GetObjectItemCaseSensitive(j, "chat_id") == NULL)
		cJSON_AddNumberToObject(j, "chat_id", (double)ch->id);
	return j;
}

static cJSON *
last_message(const struct fchat *ch)
{
	return ch->nmsgs > 0 ? message_object(ch, &ch->msgs[0]) : cJSON_CreateNull();
}

/* The chatPosition of ch in its list. */
static cJSON *
position_object(const struct fchat *ch)
{
	cJSON *j = typed("chatPosition"), *l;
	char order[32];

	l = typed(ch->archived ? "chatListArchive" : "chatListMain");
	cJSON_AddItemToObject(j, "list", l);
	snprintf(order, sizeof(order), "%lld",
	    7000000000000000000LL - (long long)ch->index * 4294967296LL);
	cJSON_AddStringToObject(j, "order", order);
	cJSON_AddFalseToObject(j, "is_pinned");
	cJSON_AddNullToObject(j, "source");
	return j;
}

static cJSON *
positions(const struct fchat *ch, int with)
{
	cJSON *a = cJSON_CreateArray();

	if (with)
		cJSON_AddItemToArray(a, position_object(ch));
	return a;
}

/* A copy of the chat, with last_message and positions as asked. */
static cJSON *
chat_object(const struct fchat *ch, int with_last, int with_pos)
{
	cJSON *j = typed_copy(ch->json, "chat", "last_message", "positions");

	if (j == NULL)
		return NULL;
	cJSON_AddItemToObject(j, "last_message", with_last ? last_message(ch) :
	    cJSON_CreateNull());
	cJSON_AddItemToObject(j, "positions", positions(ch, with_pos));
	return j;
}

static void
emit_position(struct client *c, const struct fchat *ch)
{
	cJSON *u = typed("updateChatPosition");

	cJSON_AddNumberToObject(u, "chat_id", (double)ch->id);
	cJSON_AddItemToObject(u, "position", position_object(ch));
	emit(c->id, u);
}

/*
 * Sends updateNewChat for ch unless the client has it already (TDLib: it
 * is "guaranteed to come before the chat identifier is returned to the
 * application").  With split_chat_updates, last_message and positions
 * follow in updateChatLastMessage or updateChatPosition.
 */
static void
ensure_known(struct client *c, struct fchat *ch)
{
	cJSON *u;

	if (ch->known)
		return;
	ch->known = 1;
	u = typed("updateNewChat");
	cJSON_AddItemToObject(u, "chat", c->split ? chat_object(ch, 0, 0) :
	    chat_object(ch, 1, ch->listed));
	emit(c->id, u);
	if (!c->split)
		return;
	if (ch->nmsgs > 0) {
		u = typed("updateChatLastMessage");
		cJSON_AddNumberToObject(u, "chat_id", (double)ch->id);
		cJSON_AddItemToObject(u, "last_message", last_message(ch));
		cJSON_AddItemToObject(u, "positions", positions(ch, ch->listed));
		emit(c->id, u);
	} else if (ch->listed)
		emit_position(c, ch);
}

/* Puts ch into its chat list for the client, with the updates TDLib sends. */
static void
list_chat(struct client *c, struct fchat *ch)
{
	if (ch->listed)
		return;
	ch->listed = 1;
	if (ch->known)
		emit_position(c, ch);
	else
		ensure_known(c, ch);
}

static cJSON *
state_object(const struct client *c)
{
	const char *p;
	cJSON *j, *ci, *t;
	char digits[64];
	size_t n = 0;

	switch (c->state) {
	case ST_NEW:
	case ST_WAIT_PARAMS:
		return typed("authorizationStateWaitTdlibParameters");
	case ST_WAIT_PHONE:
		return typed("authorizationStateWaitPhoneNumber");
	case ST_WAIT_CODE:
		for (p = c->phone; p != NULL && *p != '\0' && n < sizeof(digits) - 1; p++)
			if (*p >= '0' && *p <= '9')
				digits[n++] = *p;
		digits[n] = '\0';
		j = typed("authorizationStateWaitCode");
		ci = typed("authenticationCodeInfo");
		cJSON_AddStringToObject(ci, "phone_number", digits);
		t = typed("authenticationCodeTypeTelegramMessage");
		cJSON_AddNumberToObject(t, "length", (double)strlen(c->code));
		cJSON_AddItemToObject(ci, "type", t);
		t = typed("authenticationCodeTypeSms");
		cJSON_AddNumberToObject(t, "length", (double)strlen(c->code));
		cJSON_AddItemToObject(ci, "next_type", t);
		cJSON_AddNumberToObject(ci, "timeout", 60);
		cJSON_AddItemToObject(j, "code_info", ci);
		return j;
	case ST_WAIT_PASSWORD:
		j = typed("authorizationStateWaitPassword");
		cJSON_AddStringToObject(j, "password_hint", "");
		cJSON_AddFalseToObject(j, "has_recovery_email_address");
		cJSON_AddFalseToObject(j, "has_passport_data");
		cJSON_AddStringToObject(j, "recovery_email_address_pattern", "");
		return j;
	case ST_READY:
		return typed("authorizationStateReady");
	case ST_CLOSED:
		break;
	}
	return typed("authorizationStateClosed");
}

static void
emit_state(struct client *c, cJSON *st)
{
	cJSON *u = typed("updateAuthorizationState");

	cJSON_AddItemToObject(u, "authorization_state", st);
	emit(c->id, u);
}

static void
set_state(struct client *c, enum state s)
{
	c->state = s;
	emit_state(c, state_object(c));
}

static int
digits_equal(const char *a, const char *b)
{
	for (;;) {
		while (*a != '\0' && (*a < '0' || *a > '9'))
			a++;
		while (*b != '\0' && (*b < '0' || *b > '9'))
			b++;
		if (*a != *b)
			return 0;
		if (*a == '\0')
			return 1;
		a++;
		b++;
	}
}

/* "<database_directory>/fake-session" into buf; -1 if it does not fit. */
static int
session_path(const struct client *c, char *buf, size_t n)
{
	int r = snprintf(buf, n, "%s/fake-session", c->dbdir);

	return r < 0 || (size_t)r >= n ? -1 : 0;
}

/* Logged in: the users, then authorizationStateReady, then the extras. */
static void
become_ready(struct client *c, int login)
{
	const cJSON *x;
	char path[4096];
	int64_t me_id = 0, id;
	ssize_t w;
	cJSON *u;
	int fd;

	/* The session; any content will do, a short write included. */
	if (login && session_path(c, path, sizeof(path)) == 0 &&
	    (fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) != -1) {
		w = c->phone != NULL ? write(fd, c->phone, strlen(c->phone)) : 0;
		(void)w;
		close(fd);
	}
	if (c->me != NULL) {
		scen_id(cJSON_GetObjectItemCaseSensitive(c->me, "id"), &me_id);
		u = typed("updateUser");
		cJSON_AddItemToObject(u, "user", cJSON_Duplicate(c->me, 1));
		emit(c->id, u);
	}
	cJSON_ArrayForEach(x, c->users) {
		if (!cJSON_IsObject(x) || (c->me != NULL &&
		    scen_id(cJSON_GetObjectItemCaseSensitive(x, "id"), &id) == 0 &&
		    id == me_id))
			continue;
		u = typed("updateUser");
		cJSON_AddItemToObject(u, "user", cJSON_Duplicate(x, 1));
		emit(c->id, u);
	}
	set_state(c, ST_READY);
	cJSON_ArrayForEach(x, c->on_ready)
		if (cJSON_IsObject(x))
			emit(c->id, cJSON_Duplicate(x, 1));
}

/* Closing or logging out: pending requests fail, then Closed. */
static void
finish(struct client *c)
{
	const cJSON *h, *x;
	cJSON *e;

	cJSON_ArrayForEach(h, c->hung) {
		e = error_object(500, "Request aborted");
		if ((x = cJSON_GetObjectItemCaseSensitive(h, "e")) != NULL)
			cJSON_AddItemToObject(e, "@extra", cJSON_Duplicate(x, 1));
		emit(c->id, e);
	}
	cJSON_Delete(c->hung);
	c->hung = NULL;
	set_state(c, ST_CLOSED);
	client_drop_scenario(c);
}

/*
 * Whether request req may be served now.  If not, it has been answered
 * (state, fault) or parked (hang).
 */
static int
admit(struct client *c, const cJSON *req)
{
	struct fault *f, *hit;
	const cJSON *x;
	char why[256];
	int64_t chat;
	size_t i;

	if (c->gate != GATE_ANY && c->state == ST_WAIT_PARAMS) {
		answer_error(c->id, req, 400, "Initialization parameters are "
		    "needed: call setTdlibParameters first");
		return 0;
	}
	if (c->gate == GATE_READY && c->state != ST_READY) {
		answer_error(c->id, req, 401, "Unauthorized");
		return 0;
	}
	/* Every rule counts the call; the first one in its range fires. */
	for (i = 0, hit = NULL; i < c->nfaults; i++) {
		f = &c->faults[i];
		if (strcmp(f->method, c->method) != 0)
			continue;
		if (f->has_chat && (get_int53(req, "chat_id", &chat, why,
		    sizeof(why)) == -1 || chat != f->chat_id))
			continue;
		f->seen++;
		if (hit == NULL && f->seen > f->after && (f->count < 0 ||
		    f->seen <= f->after + f->count))
			hit = f;
	}
	if (hit != NULL && hit->pause_file != NULL) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		/* The lock stays held: nothing moves until the file exists. */
		while (access(hit->pause_file, F_OK) != 0)
			nanosleep(&ts, NULL);
		hit = NULL;
	}
	if (hit != NULL && hit->bad_message) {
		corrupt_next = 1;
		hit = NULL;
	}
	if (hit != NULL) {
		answer_error(c->id, req, hit->code, "%s", hit->message);
		return 0;
	}
	cJSON_ArrayForEach(x, c->hang)
		if (cJSON_IsString(x) && strcmp(x->valuestring, c->method) == 0) {
			const cJSON *e = cJSON_GetObjectItemCaseSensitive(req,
			    "@extra");
			cJSON *h = cJSON_CreateObject();

			if (e != NULL)
				cJSON_AddItemToObject(h, "e", cJSON_Duplicate(e, 1));
			if (c->hung == NULL)
				c->hung = cJSON_CreateArray();
			if (!cJSON_AddItemToArray(c->hung, h))
				cJSON_Delete(h);
			return 0;
		}
	return 1;
}

/* Lets the "live" messages due after the client's history_calls arrive. */
static void
arrive_live(struct client *c)
{
	const cJSON *e, *x;
	struct fchat *ch;
	int64_t chat, id;
	size_t i, k;

	cJSON_ArrayForEach(e, scen_array(c->scen, "live")) {
		if (scen_long(e, "after", 0) != c->history_calls ||
		    scen_id(cJSON_GetObjectItemCaseSensitive(e, "chat_id"), &chat) == -1)
			continue;
		for (i = 0, ch = NULL; i < c->nchats; i++)
			if (c->chats[i].id == chat)
				ch = &c->chats[i];
		if (ch == NULL)
			continue;
		cJSON_ArrayForEach(x, scen_array(e, "messages")) {
			struct fmsg *v;

			if (!cJSON_IsObject(x) || scen_id(
			    cJSON_GetObjectItemCaseSensitive(x, "id"), &id) == -1)
				continue;
			if ((v = realloc(ch->msgs, (ch->nmsgs + 1) * sizeof(*v))) == NULL)
				return;
			ch->msgs = v;
			for (k = ch->nmsgs; k > 0 && ch->msgs[k - 1].id < id; k--)
				ch->msgs[k] = ch->msgs[k - 1];
			ch->msgs[k].id = id;
			ch->msgs[k].json = x;
			ch->nmsgs++;
		}
		if (ch->known) {
			cJSON *u = typed("updateChatLastMessage");

			cJSON_AddNumberToObject(u, "chat_id", (double)ch->id);
			cJSON_AddItemToObject(u, "last_message", last_message(ch));
			cJSON_AddItemToObject(u, "positions", positions(ch, ch->listed));
			emit(c->id, u);
		}
	}
}

/* ---- the methods ---- */

static void
m_get_option(struct client *c, const cJSON *req)
{
	const char *name;
	char why[256], buf[32];
	int64_t id;
	cJSON *j;

	if (get_str(req, "name", &name, why, sizeof(why)) == -1) {
		answer_error(c->id, req, 400, PARSE_PREFIX "%s", why);
		return;
	}
	if (!admit(c, req))
		return;
	if (strcmp(name, "version") == 0)
		j = option_string(c->version);
	else if (strcmp(name, "my_id") == 0 && c->state == ST_READY &&
	    c->me != NULL &&
	    scen_id(cJSON_GetObjectItemCaseSensitive(c->me, "id"), &id) == 0) {
		snprintf(buf, sizeof(buf), "%lld", (long long)id);
		j = typed("optionValueInteger");
		cJSON_AddStringToObject(j, "value", buf);	/* int64 */
	} else
		j = typed("optionValueEmpty");
	answer(c->id, req, j);
}

/* setOption, setLogStream, setLogVerbosityLevel: checked, then ok. */
static void
m_ok(struct client *c, const cJSON *req)
{
	const cJSON *o;
	const char *s;
	char why[256];
	int64_t v;
	int r = 0;

	if (strcmp(c->method, "setOption") == 0)
		r = get_str(req, "name", &s, why, sizeof(why)) == -1 ||
		    get_obj(req, "value", &o, why, sizeof(why)) == -1;
	else if (strcmp(c->method, "setLogStream") == 0)
		r = get_obj(req, "log_stream", &o, why, sizeof(why)) == -1;
	else
		r = get_int32(req, "new_verbosity_level", &v, why, sizeof(why)) == -1;
	if (r) {
		answer_error(c->id, req, 400, PARSE_PREFIX "%s", why);
		return;
	}
	if (admit(c, req))
		answer_ok(c, req);
}

static void
m_get_authorization_state(struct client *c, const cJSON *req)
{
	if (admit(c, req))
		answer(c->id, req, state_object(c));
}

/* mkdir -p; 0 or -1 with errno. */
static int
make_dirs(const char *path)
{
	char buf[4096], *p;
	struct stat st;
	size_t n = strlen(path);

	if (n >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, n + 1);
	for (p = buf + 1; *p != '\0'; p++)
		if (*p == '/') {
			*p = '\0';
			if (mkdir(buf, 0700) == -1 && errno != EEXIST)
				return -1;
			*p = '/';
		}
	if (mkdir(buf, 0700) == -1 && errno != EEXIST)
		return -1;
	if (stat(buf, &st) == -1)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

static void
m_set_tdlib_parameters(struct client *c, const cJSON *req)
{
	static const char *const bools[] = { "use_test_dc", "use_file_database",
	    "use_chat_info_database", "use_message_database",
	    "use_secret_chats", NULL };
	static const char *const strs[] = { "files_directory",
	    "database_encryption_key", "system_version", NULL };
	const char *dir, *hash, *lang, *model, *appver, *s;
	char why[256], path[4096];
	int64_t api_id;
	size_t i;
	int b;

	for (i = 0; bools[i] != NULL; i++)
		if (get_bool(req, bools[i], &b, why, sizeof(why)) == -1)
			goto bad;
	for (i = 0; strs[i] != NULL; i++)
		if (get_str(req, strs[i], &s, why, sizeof(why)) == -1)
			goto bad;
	if (get_str(req, "database_directory", &dir, why, sizeof(why)) == -1 ||
	    get_int32(req, "api_id", &api_id, why, sizeof(why)) == -1 ||
	    get_str(req, "api_hash", &hash, why, sizeof(why)) == -1 ||
	    get_str(req, "system_language_code", &lang, why, sizeof(why)) == -1 ||
	    get_str(req, "device_model", &model, why, sizeof(why)) == -1 ||
	    get_str(req, "application_version", &appver, why, sizeof(why)) == -1)
		goto bad;
	if (!admit(c, req))
		return;
	if (c->state != ST_WAIT_PARAMS) {
		answer_error(c->id, req, 400, "Unexpected setTdlibParameters");
		return;
	}
	/* The checks and texts of TDLib 1.8.67, in its order. */
	if (api_id <= 0) {
		answer_error(c->id, req, 400, "Valid api_id must be provided. "
		    "Can be obtained at https://my.telegram.org");
		return;
	}
	if (*hash == '\0') {
		answer_error(c->id, req, 400, "Valid api_hash must be provided. "
		    "Can be obtained at https://my.telegram.org");
		return;
	}
	if (*lang == '\0') {
		answer_error(c->id, req, 400, "System language code must be "
		    "non-empty");
		return;
	}
	if (*model == '\0') {
		answer_error(c->id, req, 400, "Device model must be non-empty");
		return;
	}
	if (*appver == '\0') {
		answer_error(c->id, req, 400, "Application version must be "
		    "non-empty");
		return;
	}
	/* TDLib would use the working directory; the fake insists. */
	if (*dir == '\0') {
		answer_error(c->id, req, 400, "Valid database_directory must be "
		    "provided");
		return;
	}
	if (make_dirs(dir) == -1) {
		answer_error(c->id, req, 400, "Can't init database in the "
		    "directory \"%s\": %s", dir, strerror(errno));
		return;
	}
	free(c->dbdir);
	if ((c->dbdir = strdup(dir)) == NULL) {
		answer_error(c->id, req, 500, "Out of memory");
		return;
	}
	if (session_path(c, path, sizeof(path)) == 0 && access(path, F_OK) == 0)
		become_ready(c, 0);
	else
		set_state(c, ST_WAIT_PHONE);
	answer_ok(c, req);
	return;
bad:
	answer_error(c->id, req, 400, PARSE_PREFIX "%s", why);
}

static void
m_set_phone(struct client *c, const cJSON *req)
{
	const cJSON *settings;
	const char *phone;
	char why[256];

	if (get_str(req, "phone_number", &phone, why, sizeof(why)) == -1 ||
	    get_obj(req, "settings", &settings, why, sizeof(why)) == -1) {
		answer_error(c->id, req, 400, PARSE_PREFIX "%s", why);
		return;
	}
	if (!admit(c, req))
		return;
	if (c->state != ST_WAIT_PHONE && c->state != ST_WAIT_CODE &&
	    c->state != ST_WAIT_PASSWORD) {
		answer_error(c->id, req, 400, "Call to "
		    "setAuthenticationPhoneNumber unexpected");
		return;
	}
	if (*phone == '\0') {
		answer_error(c->id, req, 400, "Phone number must be non-empty");
		return;
	}
	if (c->phone_want != NULL && !digits_equal(phone, c->phone_want)) {
		answer_error(c->id, req, 400, "PHONE_NUMBER_INVALID");
		return;
	}
	free(c->phone);
	if ((c->phone = strdup(phone)) == NULL) {
		answer_error(c->id, req, 500, "Out of memory");
		return;
	}
	set_state(c, ST_WAIT_CODE);
	answer_ok(c, req);
}

static void
m_check_code(struct client *c, const cJSON *req)
{
	const char *code;
	char why[256];

	if (get_str(req, "code", &code, why, sizeof(why)) == -1) {
		answer_error(c->id, req, 400, PARSE_PREFIX "%s", why);
		return;
	}
	if (!admit(c, req))
		return;
	if (c->state != ST_WAIT_CODE) {
		answer_error(c->id, req, 400, "Call to checkAuthenticationCode "
		    "unexpected");
		return;
	}
	if (strcmp(code, c->code) != 0) {
		answer_error(c->id, req, 400, "PHONE_CODE_INVALID");
		return;
	}
	if (c->password != NULL)
		set_state(c, ST_WAIT_PASSWORD);
	else
		become_ready(c, 1);
	answer_ok(c, req);
}

static void
m_check_password(struct client *c, const cJSON *req)
{
	const char *password;
	char why[256];

	if (get_str(req, "password", &password, why, sizeof(why)) == -1) {
		answer_error(c->id, req, 400, PARSE_PREFIX "%s", why);
		return;
	}
	if (!admit(c, req))
		return;
	if (c->state != ST_WAIT_PASSWORD) {
		answer_error(c->id, req, 400, "Call to "
		    "checkAuthenticationPassword unexpected");
		return;
	}
	if (c->password == NULL || strcmp(password, c->password) != 0) {
		answer_error(c->id, req, 400, "PASSWORD_HASH_INVALID");
		return;
	}
	become_ready(c, 1);
	answer_ok(c, req);
}

static void
m_close(struct client *c, const cJSON *req)
{
	if (!admit(c, req))
		return;
	answer_ok(c, req);
	emit_state(c, typed("authorizationStateClosing"));
	finish(c);
}

static void
m_log_out(struct client *c, const cJSON *req)
{
	char path[4096];

	if (!admit(c, req))
		return;
	if (c->dbdir != NULL && session_path(c, path, sizeof(path)) == 0)
		unlink(path);
	emit_state(c, typed("authorizationStateLoggingOut"));
	answer_ok(c, req);
	finish(c);
}

static void
m_get_me(struct client *c, const cJSON *req)
{
	if (!admit(c, req))
		return;
	if (c->me == NULL)
		answer_error(c->id, req, 404, "Not Found");
	else
		answer(c->id, req, cJSON_Duplicate(c->me, 1));
}

static void
m_get_user(struct client *c, const cJSON *req)
{
	const cJSON *x;
	char why[256];
	int64_t want, id;

	if (get_int53(req, "user_id", &want, why, sizeof(why)) == -1) {
		answer_error(c->id, req, 400, PARSE_PREFIX "%s", why);
		return;
	}
	if (!admit(c, req))
		return;
	if (c->me != NULL && scen_id(cJSON_GetObjectItemCaseSensitive(c->me,
	    "id"), &id) == 0 && id == want) {
		answer(c->id, req, cJSON_Duplicate(c->me, 1));
		return;
	}
	cJSON_ArrayForEach(x, c->users)
		if (scen_id(cJSON_GetObjectItemCaseSensitive(x, "id"), &id) == 0 &&
		    id == want) {
			answer(c->id, req, cJSON_Duplicate(x, 1));
			return;
		}
	cJSON_ArrayForEach(x, c->contacts)
		if (scen_id(cJSON_GetObjectItemCaseSensitive(x, "id"), &id) == 0 &&
		    id == want) {
			answer(c->id, req, cJSON_Duplicate(x, 1));
			return;
		}
	answer_error(c->id, req, 400, "User not found");
}

/* Whether user id was told of at Ready (me or users). */
static int
user_known(const struct client *c, int64_t want)
{
	const cJSON *x;
	int64_t id;

	if (c->me != NULL && scen_id(cJSON_GetObjectItemCaseSensitive(c->me,
	    "id"), &id) == 0 && id == want)
		return 1;
	cJSON_ArrayForEach(x, c->users)
		if (scen_id(cJSON_GetObjectItemCaseSensitive(x, "id"), &id) == 0 &&
		    id == want)
			return 1;
	return 0;
}

/*
 * getContacts: TDLib tells of every user (updateUser) before it names
 * one, so the address book's users not told of yet come first.
 */
static void
m_get_contacts(struct client *c, const cJSON *req)
{
	const cJSON *x;
	cJSON *r, *ids, *u;
	int64_t id;
	int n = 0;

	if (!admit(c, req))
		return;
	r = typed("users");
	ids = cJSON_CreateArray();
	cJSON_ArrayForEach(x, c->contacts) {
		if (!cJSON_IsObject(x) ||
		    scen_id(cJSON_GetObjectItemCaseSensitive(x, "id"), &id) == -1)
			continue;
		if (!c->contacts_told && !user_known(c, id)) {
			u = typed("updateUser");
			cJSON_AddItemToObject(u, "user", cJSON_Duplicate(x, 1));
			emit(c->id, u);
		}
		cJSON_AddItemToArray(ids, cJSON_CreateNumber((double)id));
		n++;
	}
	c->contacts_told = 1;
	cJSON_AddNumberToObject(r, "total_count", n);
	cJSON_AddItemToObject(r, "user_ids", ids);
	answer(c->id, req, r);
}

/*
 * The chat_list field: 0 main, 1 archive, 2 another list; -1 (answered)
 * when it is not a chat list.
 */
static int
chat_list(struct client *c, const cJSON *req)
{
	const cJSON *l;
	const char *t;
	char why[256];

	if (get_obj(req, "chat_list", &l, why, sizeof(why)) == -1) {
		answer_error(c->id, req, 400, PARSE_PREFIX "%s", why);
		return -1;
	}
	if (l == NULL)
		return 0;
	t = cJSON_GetObjectItemCaseSensitive(l, "@type")->valuestring;
	if (strcmp(t, "chatListMain") == 0)
		return 0;
	if (strcmp(t, "chatListArchive") == 0)
		return 1;
	if (strcmp(t, "chatListFolder") == 0)
		return 2;
	answer_error(c->id, req, 400, PARSE_PREFIX "Unknown class \"%s\"", t);
	return -1;
}

/* Lists up to n more chats of list; returns how many it listed. */
static size_t
load_chats(struct client *c, int list, size_t n)
{
	size_t i, done = 0;

	for (i = 0; i < c->nchats && done < n; i++)
		if (c->chats[i].archived == list && !c->chats[i].listed) {
			list_chat(c, &c->chats[i]);
			done++;
		}
	return done;
}

static size_t
unlisted(const struct client *c, int list)
{
	size_t i, n = 0;

	for (i = 0; i < c->nchats; i++)
		if (c->chats[i].archived == list && !c->chats[i].listed)
			n++;
	return n;
}

static void
m_load_chats(struct client *c, const cJSON *req)
{
	char why[256];
	int64_t limit;
	size_t n;
	int list;

	if ((list = chat_list(c, req)) == -1)
		return;
	if (get_int32(req, "limit", &limit, why, sizeof(why)) == -1) {
		answer_error(c->id, req, 400, PARSE_PREFIX "%s", why);
		return;
	}
	if (!admit(c, req))
		return;
	if (limit <= 0) {
		answer_error(c->id, req, 400, "Parameter limit must be positive");
		return;
	}
	if (list == 2) {
		answer_error(c->id, req, 400, "Chat list not found");
		return;
	}
	if (unlisted(c, list) == 0) {
		answer_error(c->id, req, 404, "Not Found");	/* all loaded */
		return;
	}
	n = (size_t)limit;
	if (c->load_page > 0 && n > (size_t)c->load_page)
		n = (size_t)c->load_page;
	load_chats(c, list, n);
	answer_ok(c, req);
}

static void
m_get_chats(struct client *c, const cJSON *req)
{
	cJSON *j, *ids;
	char why[256];
	int64_t limit;
	size_t i, have = 0, total = 0;
	int list;

	if ((list = chat_list(c, req)) == -1)
		return;
	if (get_int32(req, "limit", &limit, why, sizeof(why)) == -1) {
		answer_error(c->id, req, 400, PARSE_PREFIX "%s", why);
		return;
	}
	if (!admit(c, req))
		return;
	if (limit <= 0) {
		answer_error(c->id, req, 400, "Parameter limit must be positive");
		return;
	}
	if (list == 2) {
		answer_error(c->id, req, 400, "Chat list not found");
		return;
	}
	for (i = 0; i < c->nchats; i++)
		if (c->chats[i].archived == list) {
			total++;
			have += c->chats[i].listed;
		}
	/* Like TDLib, getChats loads what it is asked to list. */
	if (have < (size_t)limit)
		load_chats(c, list, (size_t)limit - have);
	j = typed("chats");
	cJSON_AddNumberToObject(j, "total_count", (double)total);
	ids = cJSON_AddArrayToObject(j, "chat_ids");
	for (i = have = 0; i < c->nchats && have < (size_t)limit; i++)
		if (c->chats[i].archived == list && c->chats[i].listed) {
			cJSON_AddItemToArray(ids, cJSON_CreateNumber(
			    (double)c->chats[i].id));
			have++;
		}
	answer(c->id, req, j);
}

/* The chat_id field, as a chat of the scenario; NULL when answered. */
static struct fchat *
req_chat(struct client *c, const cJSON *req, int admitted)
{
	struct fchat *ch;
	char why[256];
	int64_t id;

	if (get_int53(req, "chat_id", &id, why, sizeof(why)) == -1) {
		answer_error(c->id, req, 400, PARSE_PREFIX "%s", why);
		return NULL;
	}
	if (!admitted && !admit(c, req))
		return NULL;
	if ((ch = find_chat(c, id)) == NULL) {
		answer_error(c->id, req, 400, "Chat not found");
		return NULL;
	}
	ensure_known(c, ch);
	return ch;
}

static void
m_get_chat(struct client *c, const cJSON *req)
{
	struct fchat *ch;

	if ((ch = req_chat(c, req, 0)) != NULL)
		answer(c->id, req, chat_object(ch, 1, ch->listed));
}

/* openChat, closeChat. */
static void
m_chat_ok(struct client *c, const cJSON *req)
{
	if (req_chat(c, req, 0) != NULL)
		answer_ok(c, req);
}

static void
m_get_chat_history(struct client *c, const cJSON *req)
{
	int64_t chat_id, from, offset, limit;
	size_t lo, hi, mid, i0, n;
	long start, end, cnt;
	struct fchat *ch;
	char why[256];
	cJSON *j, *a;
	int only_local;

	if (get_int53(req, "chat_id", &chat_id, why, sizeof(why)) == -1 ||
	    get_int53(req, "from_message_id", &from, why, sizeof(why)) == -1 ||
	    get_int32(req, "offset", &offset, why, sizeof(why)) == -1 ||
	    get_int32(req, "limit", &limit, why, sizeof(why)) == -1 ||
	    get_bool(req, "only_local", &only_local, why, sizeof(why)) == -1) {
		answer_error(c->id, req, 400, PARSE_PREFIX "%s", why);
		return;
	}
	if (!admit(c, req))
		return;
	c->history_calls++;
	arrive_live(c);
	/* MessagesManager::get_dialog_history's checks, in its order. */
	if (limit <= 0) {
		answer_error(c->id, req, 400, "Parameter limit must be positive");
		return;
	}
	if (limit > MAX_HISTORY)
		limit = MAX_HISTORY;
	if (offset > 0) {
		answer_error(c->id, req, 400, "Parameter offset must be "
		    "non-positive");
		return;
	}
	if (offset <= -MAX_HISTORY) {
		answer_error(c->id, req, 400, "Parameter offset must be greater "
		    "than -100");
		return;
	}
	if (offset < -limit) {
		answer_error(c->id, req, 400, "Parameter offset must be greater "
		    "than or equal to -limit");
		return;
	}
	if (from < 0) {
		answer_error(c->id, req, 400, "Invalid value of parameter "
		    "from_message_id specified");
		return;
	}
	if ((ch = req_chat(c, req, 1)) == NULL)
		return;
	n = ch->nmsgs;
	/* i0: how many messages have id >= from (none when from is 0). */
	i0 = 0;
	if (from != 0) {
		for (lo = 0, hi = n; lo < hi;) {
			mid = lo + (hi - lo) / 2;
			if (ch->msgs[mid].id >= from)
				lo = mid + 1;
			else
				hi = mid;
		}
		i0 = lo;
	}
	/*
	 * The window of messages.getHistory(offset_id, add_offset): limit
	 * messages from -offset places above the first one older than from;
	 * what lies beyond the newest end is lost, not shifted.
	 */
	start = (long)i0 + (long)offset;
	end = start + (long)limit;
	if (start < 0)
		start = 0;
	if (end > (long)n)
		end = (long)n;
	cnt = end > start ? end - start : 0;
	if (cnt > c->page_max)
		cnt = c->page_max > 0 ? c->page_max : 0;
	if (from == 0 && !ch->had_newest) {
		/* The first call gives what TDLib has in memory: the last message. */
		ch->had_newest = 1;
		if (ch->empty_first)
			cnt = 0;
		else if (cnt > c->first_page)
			cnt = c->first_page > 0 ? c->first_page : 0;
	}
	j = typed("messages");
	cJSON_AddNumberToObject(j, "total_count", (double)cnt);	/* as TDLib */
	a = cJSON_AddArrayToObject(j, "messages");
	for (; cnt > 0; cnt--, start++)
		cJSON_AddItemToArray(a, message_object(ch, &ch->msgs[start]));
	emit_delay = c->latency;
	answer(c->id, req, j);
	emit_delay = 0;
}

static void
m_get_message(struct client *c, const cJSON *req)
{
	struct fchat *ch;
	char why[256];
	int64_t id;
	size_t i;

	if (get_int53(req, "message_id", &id, why, sizeof(why)) == -1) {
		answer_error(c->id, req, 400, PARSE_PREFIX "%s", why);
		return;
	}
	if ((ch = req_chat(c, req, 0)) == NULL)
		return;
	for (i = 0; i < ch->nmsgs; i++)
		if (ch->msgs[i].id == id) {
			answer(c->id, req, message_object(ch, &ch->msgs[i]));
			return;
		}
	answer_error(c->id, req, 404, "Not Found");
}

/* The file object with TDLib id fid in j (a message's content), or NULL. */
static const cJSON *
file_in(const cJSON *j, int64_t fid)
{
	const cJSON *x, *f;
	int64_t id;

	if (j == NULL)
		return NULL;
	if (cJSON_IsObject(j) && scen_id(cJSON_GetObjectItemCaseSensitive(j,
	    "id"), &id) == 0 && id == fid) {
		const char *t = cJSON_GetStringValue(
		    cJSON_GetObjectItemCaseSensitive(j, "@type"));

		if (t != NULL && strcmp(t, "file") == 0)
			return j;
	}
	cJSON_ArrayForEach(x, j)
		if ((cJSON_IsObject(x) || cJSON_IsArray(x)) &&
		    (f = file_in(x, fid)) != NULL)
			return f;
	return NULL;
}

/*
 * downloadFile {file_id, priority 1..32, synchronous}: the file of a
 * scenario message (a "file" object with that id in its content) written
 * to <database_directory>/files/<id>.bin, its bytes the file's
 * "fake_content_hex" (hex digits), else its size (or expected_size) bytes
 * (i * 7 + id) % 251; the answer is the file, downloaded (local.path,
 * is_downloading_completed).  An unknown id: 400 "Invalid file
 * identifier"; a file with "fake_gone": true, 404 "Not Found" (gone from
 * Telegram's servers).  Synchronous or not, the answer waits for the whole
 * file.
 */
static void
m_download_file(struct client *c, const cJSON *req)
{
	const cJSON *f = NULL, *fc;
	struct fchat *ch;
	char why[256], path[4096];
	int64_t fid, prio, n, i;
	cJSON *out, *local;
	FILE *fp;
	size_t k;
	int sync;

	if (!admit(c, req))
		return;
	if (get_int53(req, "file_id", &fid, why, sizeof(why)) == -1 ||
	    get_int32(req, "priority", &prio, why, sizeof(why)) == -1 ||
	    get_bool(req, "synchronous", &sync, why, sizeof(why)) == -1) {
		answer_error(c->id, req, 400, PARSE_PREFIX "%s", why);
		return;
	}
	if (prio < 1 || prio > 32) {
		answer_error(c->id, req, 400, "Download priority must be between "
		    "1 and 32");
		return;
	}
	for (ch = c->chats; f == NULL && ch < c->chats + c->nchats; ch++)
		for (k = 0; f == NULL && k < ch->nmsgs; k++)
			f = file_in(cJSON_GetObjectItemCaseSensitive(ch->msgs[k].json,
			    "content"), fid);
	if (fid <= 0 || f == NULL) {
		answer_error(c->id, req, 400, "Invalid file identifier");
		return;
	}
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(f, "fake_gone"))) {
		answer_error(c->id, req, 404, "Not Found");
		return;
	}
	fc = cJSON_GetObjectItemCaseSensitive(f, "fake_content_hex");
	if (cJSON_IsString(fc))
		n = (int64_t)strlen(fc->valuestring) / 2;
	else if ((n = (int64_t)cJSON_GetNumberValue(
	    cJSON_GetObjectItemCaseSensitive(f, "size"))) <= 0)
		n = (int64_t)cJSON_GetNumberValue(
		    cJSON_GetObjectItemCaseSensitive(f, "expected_size"));
	if (n < 0 || n > 64L * 1024 * 1024)
		n = 0;
	snprintf(path, sizeof(path), "%s/files", c->dbdir != NULL ? c->dbdir : ".");
	if (make_dirs(path) == -1) {
		answer_error(c->id, req, 500, "Can't create the files directory");
		return;
	}
	snprintf(path, sizeof(path), "%s/files/%lld.bin", c->dbdir != NULL ?
	    c->dbdir : ".", (long long)fid);
	if ((fp = fopen(path, "wb")) == NULL) {
		answer_error(c->id, req, 500, "Can't open the file for writing");
		return;
	}
	if (cJSON_IsString(fc))
		for (i = 0; i < n; i++) {
			unsigned x = 0;

			sscanf(fc->valuestring + 2 * i, "%2x", &x);
			putc((int)x, fp);
		}
	else
		for (i = 0; i < n; i++)
			putc((int)((i * 7 + fid) % 251), fp);
	if (fclose(fp) == EOF) {
		answer_error(c->id, req, 500, "Can't write the file");
		return;
	}
	out = cJSON_Duplicate(f, 1);
	cJSON_DeleteItemFromObjectCaseSensitive(out, "fake_content_hex");
	cJSON_DeleteItemFromObjectCaseSensitive(out, "fake_gone");
	cJSON_DeleteItemFromObjectCaseSensitive(out, "size");
	cJSON_AddNumberToObject(out, "size", (double)n);
	cJSON_DeleteItemFromObjectCaseSensitive(out, "local");
	local = cJSON_AddObjectToObject(out, "local");
	cJSON_AddStringToObject(local, "@type", "localFile");
	cJSON_AddStringToObject(local, "path", path);
	cJSON_AddTrueToObject(local, "can_be_downloaded");
	cJSON_AddTrueToObject(local, "can_be_deleted");
	cJSON_AddFalseToObject(local, "is_downloading_active");
	cJSON_AddTrueToObject(local, "is_downloading_completed");
	cJSON_AddNumberToObject(local, "download_offset", 0);
	cJSON_AddNumberToObject(local, "downloaded_prefix_size", (double)n);
	cJSON_AddNumberToObject(local, "downloaded_size", (double)n);
	(void)sync;
	answer(c->id, req, out);
}

static const struct method methods[] = {
	{ "getOption", m_get_option, GATE_ANY },
	{ "setOption", m_ok, GATE_ANY },
	{ "setLogStream", m_ok, GATE_ANY },
	{ "setLogVerbosityLevel", m_ok, GATE_ANY },
	{ "getAuthorizationState", m_get_authorization_state, GATE_ANY },
	{ "setTdlibParameters", m_set_tdlib_parameters, GATE_ANY },
	{ "setAuthenticationPhoneNumber", m_set_phone, GATE_INIT },
	{ "checkAuthenticationCode", m_check_code, GATE_INIT },
	{ "checkAuthenticationPassword", m_check_password, GATE_INIT },
	{ "close", m_close, GATE_ANY },
	{ "logOut", m_log_out, GATE_INIT },
	{ "getMe", m_get_me, GATE_READY },
	{ "getUser", m_get_user, GATE_READY },
	{ "getContacts", m_get_contacts, GATE_READY },
	{ "loadChats", m_load_chats, GATE_READY },
	{ "getChats", m_get_chats, GATE_READY },
	{ "getChat", m_get_chat, GATE_READY },
	{ "openChat", m_chat_ok, GATE_READY },
	{ "closeChat", m_chat_ok, GATE_READY },
	{ "getChatHistory", m_get_chat_history, GATE_READY },
	{ "getMessage", m_get_message, GATE_READY },
	{ "downloadFile", m_download_file, GATE_READY },
	{ NULL, NULL, GATE_ANY }
};

static const struct method *
find_method(const char *name)
{
	const struct method *m;

	for (m = methods; m->name != NULL; m++)
		if (strcmp(m->name, name) == 0)
			return m;
	return NULL;
}

/* The "@type" of req, or NULL with the complaint in why. */
static const char *
request_type(const cJSON *req, char *why, size_t wn)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(req, "@type");

	if (t == NULL || cJSON_IsNull(t)) {
		snprintf(why, wn, PARSE_PREFIX "Can't find field \"@type\"");
		return NULL;
	}
	if (!cJSON_IsString(t)) {
		snprintf(why, wn, PARSE_PREFIX "Expected String, but receive %s",
		    type_name(t));
		return NULL;
	}
	return t->valuestring;
}

/* ---- the interface ---- */

int
td_create_client_id(void)
{
	void (*cb)(int, const char *);
	char warn[512] = "";
	struct client *c;
	int id;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return 0;
	if (load_scenario(c, warn, sizeof(warn)) == -1) {
		client_free(c);
		return 0;
	}
	pthread_mutex_lock(&mu);
	c->id = id = ++last_id;
	c->next = clients;
	clients = c;
	cb = log_level >= 1 ? log_cb : NULL;
	pthread_mutex_unlock(&mu);
	if (cb != NULL && warn[0] != '\0')
		cb(1, warn);
	return id;
}

void
td_send(int client_id, const char *request)
{
	const struct method *m;
	const char *type;
	struct client *c;
	char why[512];
	cJSON *req;

	pthread_mutex_lock(&mu);
	req = parse_request(request, why, sizeof(why));
	log_request(client_id, req, request);
	if ((c = find_client(client_id)) == NULL)
		answer_error(client_id, req, 400, "Invalid TDLib instance specified");
	else if (c->state == ST_CLOSED)
		answer_error(c->id, req, 500, "Request aborted");
	else {
		if (c->state == ST_NEW) {
			cJSON *u = typed("updateOption");

			cJSON_AddStringToObject(u, "name", "version");
			cJSON_AddItemToObject(u, "value", option_string(c->version));
			emit(c->id, u);
			set_state(c, ST_WAIT_PARAMS);
		}
		if (req == NULL)
			emit(c->id, error_object(400, why));
		else if ((type = request_type(req, why, sizeof(why))) == NULL)
			answer(c->id, req, error_object(400, why));
		else if ((m = find_method(type)) == NULL)
			answer_error(c->id, req, 400, PARSE_PREFIX
			    "Unknown class \"%.100s\"", type);
		else {
			c->method = m->name;
			c->gate = m->gate;
			m->run(c, req);
			c->method = NULL;
		}
	}
	cJSON_Delete(req);
	pthread_mutex_unlock(&mu);
}

/* a <= b */
static int
ts_le(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec ||
	    (a->tv_sec == b->tv_sec && a->tv_nsec <= b->tv_nsec);
}

/*
 * Unlinks and returns the first queued object due at now, or NULL; *next
 * is then the earliest due time of the others (tv_sec -1: none).
 */
static struct qent *
q_take(const struct timespec *now, struct timespec *next)
{
	struct qent *e, *prev = NULL;

	next->tv_sec = -1;
	next->tv_nsec = 0;
	for (e = q_head; e != NULL; prev = e, e = e->next) {
		if (ts_le(&e->due, now)) {
			if (prev != NULL)
				prev->next = e->next;
			else
				q_head = e->next;
			if (q_tail == e)
				q_tail = prev;
			e->next = NULL;
			return e;
		}
		if (next->tv_sec == -1 || ts_le(&e->due, next))
			*next = e->due;
	}
	return NULL;
}

const char *
td_receive(double timeout)
{
	struct timespec end, now, next;
	struct qent *e;
	long ns;

	pthread_mutex_lock(&mu);
	cJSON_free(recv_buf);
	recv_buf = NULL;
	clock_gettime(CLOCK_REALTIME, &now);
	end = now;
	if (timeout > 0) {	/* also false for NaN */
		if (timeout > 1.0)
			timeout = 1.0;
		ns = end.tv_nsec + (long)(timeout * 1e9);
		end.tv_sec += ns / 1000000000L;
		end.tv_nsec = ns % 1000000000L;
	}
	while ((e = q_take(&now, &next)) == NULL && !ts_le(&end, &now)) {
		/* Until something is queued or due, or the time is up. */
		if (next.tv_sec == -1 || ts_le(&end, &next))
			next = end;
		pthread_cond_timedwait(&cv, &mu, &next);
		clock_gettime(CLOCK_REALTIME, &now);
	}
	if (e != NULL) {
		recv_buf = e->text;
		free(e);
	}
	pthread_mutex_unlock(&mu);
	return recv_buf;
}

/* The "version" of the scenario (in buf), or the default. */
static const char *
scenario_version(char *buf, size_t n)
{
	const char *path = getenv("FAKE_TDJSON_SCENARIO"), *v;
	char *text;
	size_t len;
	cJSON *j;

	snprintf(buf, n, "%s", FAKE_VERSION);
	if (path == NULL || *path == '\0' || (text = read_file(path, &len)) == NULL)
		return buf;
	j = cJSON_ParseWithLength(text, len);
	free(text);
	if ((v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j,
	    "version"))) != NULL)
		snprintf(buf, n, "%s", v);
	cJSON_Delete(j);
	return buf;
}

/* The answer to synchronous request req; NULL on no memory. */
static cJSON *
execute(const cJSON *req)
{
	const char *type, *name;
	char why[256], msg[512];
	int64_t v;

	if ((type = request_type(req, msg, sizeof(msg))) == NULL)
		return error_object(400, msg);
	if (strcmp(type, "getOption") == 0) {
		if (get_str(req, "name", &name, why, sizeof(why)) == -1)
			goto bad;
		if (strcmp(name, "version") != 0)
			return error_object(400, "The option can't be get "
			    "synchronously");
		return option_string(scenario_version(msg, sizeof(msg)));
	}
	if (strcmp(type, "setLogVerbosityLevel") == 0) {
		if (get_int32(req, "new_verbosity_level", &v, why,
		    sizeof(why)) == -1)
			goto bad;
		return typed("ok");
	}
	if (strcmp(type, "setLogStream") == 0) {
		if (get_obj(req, "log_stream", &req, why, sizeof(why)) == -1)
			goto bad;
		return typed("ok");
	}
	if (find_method(type) != NULL)
		return error_object(400, "The method can't be executed "
		    "synchronously");
	snprintf(msg, sizeof(msg), PARSE_PREFIX "Unknown class \"%.100s\"", type);
	return error_object(400, msg);
bad:
	snprintf(msg, sizeof(msg), PARSE_PREFIX "%s", why);
	return error_object(400, msg);
}

const char *
td_execute(const char *request)
{
	char why[512];
	cJSON *req, *ans;

	pthread_mutex_lock(&mu);
	cJSON_free(exec_buf);
	exec_buf = NULL;
	req = parse_request(request, why, sizeof(why));
	log_request(0, req, request);
	ans = req != NULL ? execute(req) : error_object(400, why);
	if (ans != NULL) {
		add_extra(ans, req);
		exec_buf = print_out(ans);
	}
	cJSON_Delete(ans);
	cJSON_Delete(req);
	pthread_mutex_unlock(&mu);
	return exec_buf;
}

void
td_set_log_message_callback(int max_verbosity_level,
    void (*cb)(int verbosity_level, const char *message))
{
	pthread_mutex_lock(&mu);
	log_level = max_verbosity_level;
	log_cb = cb;
	pthread_mutex_unlock(&mu);
}

/* At unload, so that valgrind sees nothing left over. */
__attribute__((destructor)) static void
fake_fini(void)
{
	struct client *c;
	struct qent *e;

	while ((c = clients) != NULL) {
		clients = c->next;
		client_free(c);
	}
	while ((e = q_head) != NULL) {
		q_head = e->next;
		cJSON_free(e->text);
		free(e);
	}
	q_tail = NULL;
	cJSON_free(recv_buf);
	cJSON_free(exec_buf);
	recv_buf = exec_buf = NULL;
}
