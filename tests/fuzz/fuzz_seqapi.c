/* fuzz_seqapi -- the seqapi connector's page reader over fuzzed answers. */
#include "fuzz.h"

static const struct fz_walk walks[] = {
	{ "messages", SYNC_MODE_INCR, NULL },
	{ "conversations", SYNC_MODE_INCR, "5" },
	{ "contacts", SYNC_MODE_FULL, NULL },
	{ NULL, SYNC_MODE_INCR, NULL }
};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_setup("sources = ( { name = \"wa\"; type = \"seqapi\";\n"
	    "  url = \"http://127.0.0.1:9\"; integration_id = \"i/1\";\n"
	    "  token = \"fuzz-token\"; page_size = 3; } );\n");
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fz_run(walks, data, size);
}
