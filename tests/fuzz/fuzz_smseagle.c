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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fz_run(walks, data, size);
}
