/* fuzz_smseagle -- the SMSEagle connector's page reader over fuzzed answers. */
#include "fuzz.h"

static const struct fz_walk walks[] = {
	{ "inbox", SYNC_MODE_INCR, NULL },
	{ "sent", SYNC_MODE_INCR, "7" },
	{ "outbox", SYNC_MODE_FULL, NULL },
	{ NULL, SYNC_MODE_INCR, NULL }
};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_setup("sources = ( { name = \"sms\"; type = \"smseagle\";\n"
	    "  url = \"http://127.0.0.1:9\"; token = \"fuzz-token\";\n"
	    "  folders = [ \"inbox\", \"outbox\", \"sent\" ];\n"
	    "  page_size = 3; } );\n");
	return 0;
}

/* status-poll's lookups, after the walks, over what answers are left. */
static void
poll(struct ct *t)
{
	static const char *const ids[] = { "3", "1001", "x", "1197" };
	static const char *const folders[] = { "outbox", "sent", NULL, "error" };
	struct sync_err err;
	long found;

	ct_poll(t, ids, folders, 4, &found, &err);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fz_run_then(walks, poll, data, size);
}
