/* test_batch -- COPY text of a page's rows (lib/batch.c). */
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "internal.h"
#include "t.h"

static void
test_escaping(void)
{
	struct sync_batch b;
	struct sync_message m;
	cJSON *raw = cJSON_Parse("{\"id\":\"m1\",\"body\":\"a\\tb\\\\c\"}");

	sync_batch_init(&b, SYNC_ENT_MESSAGE);
	memset(&m, 0, sizeof(m));
	m.external_id = "m1";
	m.body = "line1\nline2\ttab\\back\rcr";
	m.direction = "sideways";		/* not in/out: NULL */
	m.sent_at = "2026-11-22T12:00:00+02:00";
	m.edited_at = "not a date";		/* sanitised to NULL */
	m.raw = raw;
	CHECK(sync_batch_add_message(&b, &m) == 0);
	CHECK(b.nrows == 1);
	CHECK(b.sanitized == 1);
	CHECK(strstr(b.copy.data, "line1\\nline2\\ttab\\\\back\\rcr") != NULL);
	CHECK(strstr(b.copy.data, "2026-11-22T10:00:00Z\t\\N\t") != NULL);
	CHECK(strncmp(b.copy.data, "0\tm1\t\\N\t\\N\t\\N\t", 14) == 0);
	/* The raw JSON's own backslashes are escaped for COPY once more. */
	CHECK(strstr(b.copy.data, "\"a\\\\tb\\\\\\\\c\"") != NULL);
	CHECK(b.copy.data[b.copy.len - 1] == '\n');
	sync_batch_release(&b);
	CHECK(b.copy.data == NULL && b.copy.len == 0 && b.rows == NULL);
	cJSON_Delete(raw);
}

/* The row hash tells changed rows from unchanged ones. */
static void
test_rows(void)
{
	struct sync_batch b;
	struct sync_message m;
	char h0[17];

	sync_batch_init(&b, SYNC_ENT_MESSAGE);
	memset(&m, 0, sizeof(m));
	m.external_id = "m1";
	m.conversation_id = "c\t1";
	m.body = "hello";
	CHECK(sync_batch_add_message(&b, &m) == 0);
	CHECK(sync_batch_add_message(&b, &m) == 0);
	m.body = "hello!";
	CHECK(sync_batch_add_message(&b, &m) == 0);
	CHECK(b.nrows == 3);
	CHECK_STR(b.rows[0].external_id, "m1");
	CHECK_STR(b.rows[0].conversation_id, "c\t1");	/* unescaped */
	CHECK(b.rows[0].sender_id == NULL);
	CHECK(strcmp(b.rows[0].hash, b.rows[1].hash) == 0);
	CHECK(strcmp(b.rows[0].hash, b.rows[2].hash) != 0);
	CHECK(strlen(b.rows[0].hash) == 16);
	/*
	 * Lines are contiguous, each ends with its hash, its provider id
	 * (none: \N) and a newline.
	 */
	CHECK(b.rows[0].line == 0 && b.rows[1].line == b.rows[0].end);
	CHECK(b.rows[2].end == b.copy.len);
	memcpy(h0, b.copy.data + b.rows[0].end - 20, 16);
	h0[16] = '\0';
	CHECK_STR(h0, b.rows[0].hash);
	CHECK(strncmp(b.copy.data + b.rows[0].end - 4, "\t\\N\n", 4) == 0);
	CHECK(b.rows[0].provider_id == NULL);
	CHECK(strncmp(b.copy.data + b.rows[0].rest, "\\N\t\\N\thello\t", 12) == 0);
	/* A deleted message without a time: the store's time, a stable hash. */
	m.deleted = 1;
	CHECK(sync_batch_add_message(&b, &m) == 0);
	CHECK(sync_batch_add_message(&b, &m) == 0);
	CHECK(strstr(b.copy.data + b.rows[3].rest, "\tnow\t") != NULL);
	CHECK(strcmp(b.rows[3].hash, b.rows[4].hash) == 0);
	/* The keys count too: another conversation is another hash. */
	m.conversation_id = "c2";
	CHECK(sync_batch_add_message(&b, &m) == 0);
	CHECK(strcmp(b.rows[4].hash, b.rows[5].hash) != 0);
	/* The provider identity is carried, not hashed; empty is none. */
	m.provider_id = "p\t1";
	CHECK(sync_batch_add_message(&b, &m) == 0);
	CHECK_STR(b.rows[6].provider_id, "p\t1");
	CHECK(strcmp(b.rows[5].hash, b.rows[6].hash) == 0);
	CHECK(strncmp(b.copy.data + b.rows[6].end - 6, "\tp\\t1\n", 6) == 0);
	m.provider_id = "";
	CHECK(sync_batch_add_message(&b, &m) == 0);
	CHECK(b.rows[7].provider_id == NULL);
	sync_batch_release(&b);
}

/* Rows that cannot be stored: what is wrong with their id, and their record. */
static void
test_reject(void)
{
	struct sync_page pg;
	struct sync_strmap open;
	cJSON *o = cJSON_Parse("[{\"id\":{\"a\":1}},{\"id\":\"\"},{\"x\":1},"
	    "{\"id\":null},{\"id\":[1]},{\"id\":true},{\"id\":\"ok\"},{\"id\":7},7]");
	char *big = malloc(SYNC_MAX_ID + 20), *txt;
	cJSON *b;

	CHECK(o != NULL && big != NULL);
	if (o == NULL || big == NULL)
		return;
	memset(big, 'x', SYNC_MAX_ID + 1);
	big[SYNC_MAX_ID + 1] = '\0';
	CHECK_STR(sync_id_problem(cJSON_GetArrayItem(o, 0), "id"),
	    "an object, not a string or number");
	CHECK_STR(sync_id_problem(cJSON_GetArrayItem(o, 1), "id"), "empty");
	CHECK_STR(sync_id_problem(cJSON_GetArrayItem(o, 2), "id"), "missing");
	CHECK_STR(sync_id_problem(cJSON_GetArrayItem(o, 3), "id"), "null");
	CHECK(strstr(sync_id_problem(cJSON_GetArrayItem(o, 4), "id"), "array") != NULL);
	CHECK(strstr(sync_id_problem(cJSON_GetArrayItem(o, 5), "id"), "boolean") != NULL);
	CHECK(sync_id_problem(cJSON_GetArrayItem(o, 6), "id") == NULL);
	CHECK(sync_id_problem(cJSON_GetArrayItem(o, 7), "id") == NULL);
	CHECK_STR(sync_id_problem(cJSON_GetArrayItem(o, 8), "id"),
	    "the row is not an object");
	b = cJSON_CreateObject();
	cJSON_AddStringToObject(b, "id", big);
	CHECK(strstr(sync_id_problem(b, "id"), "longer than 1024") != NULL);

	memset(&pg, 0, sizeof(pg));
	memset(&open, 0, sizeof(open));
	CHECK(sync_page_reject(&pg, "42", "id", "an object, not a string or number",
	    cJSON_GetArrayItem(o, 0)) == 0);
	CHECK(sync_page_reject(&pg, NULL, "id", "empty", cJSON_GetArrayItem(o, 1)) == 0);
	CHECK(pg.nrejects == 2);
	CHECK_STR(pg.rejects[0].position, "42");
	CHECK_STR(pg.rejects[0].reason, "field 'id': an object, not a string or number");
	CHECK_STR(pg.rejects[0].raw, "{\"id\":{\"a\":1}}");
	CHECK(pg.rejects[1].position == NULL);		/* the engine's to fill */
	/* Stored positions matter only where rows were rejected before. */
	CHECK(sync_page_stored(&pg, "42") == 0 && pg.nresolves == 0);
	CHECK(sync_strmap_put(&open, "42", 1) == 0);
	pg.open = &open;
	CHECK(sync_page_stored(&pg, "41") == 0 && pg.nresolves == 0);
	CHECK(sync_page_stored(&pg, "42") == 0 && pg.nresolves == 1);
	txt = pg.resolves[0];
	CHECK_STR(txt, "42");
	sync_page_release(&pg);
	CHECK(pg.nrejects == 0 && pg.rejects == NULL && pg.resolves == NULL);
	sync_strmap_clear(&open);
	cJSON_Delete(b);
	cJSON_Delete(o);
	free(big);
}

/*
 * The engine writes a contact's phone in E.164 when it reads as one, with
 * the calling code; international digits without their '+' when the
 * connector says they are (TDLib, WhatsApp); else the phone as given.
 */
static void
test_phones(void)
{
	static const struct {
		const char	*in;
		int		 intl;
		long		 cc;
		const char	*want;
	} c[] = {
		{ "15550009876", 1, 0, "\t+15550009876\t" },
		{ " 49 151 1234567", 1, 48, "\t+491511234567\t" },
		{ "+48 600-100-200", 0, 0, "\t+48600100200\t" },
		{ "48600100200@s.whatsapp.net", 0, 0, "\t+48600100200\t" },
		{ "600100200", 0, 48, "\t+48600100200\t" },
		{ " 600100200 ", 0, 0, "\t600100200\t" },
		{ "1234567", 1, 0, "\t1234567\t" },
	};
	struct sync_batch b;
	struct sync_contact k;
	size_t i;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		sync_batch_init(&b, SYNC_ENT_CONTACT);
		memset(&k, 0, sizeof(k));
		k.external_id = "k1";
		k.phone = c[i].in;
		k.phone_international = c[i].intl;
		sync_batch_calling_code(c[i].cc);
		CHECK(sync_batch_add_contact(&b, &k) == 0);
		CHECK(b.copy.data != NULL && strstr(b.copy.data, c[i].want) != NULL);
		if (b.copy.data == NULL || strstr(b.copy.data, c[i].want) == NULL)
			fprintf(stderr, "  phone '%s': %s\n", c[i].in,
			    b.copy.data != NULL ? b.copy.data : "(none)");
		sync_batch_release(&b);
	}
	sync_batch_calling_code(0);
}

int
main(void)
{
	test_phones();
	test_escaping();
	test_rows();
	test_reject();
	return t_done("test_batch");
}
