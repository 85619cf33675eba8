/* fuzz_unipile -- the Unipile connector's page reader over fuzzed answers. */
#include "fuzz.h"

static const struct fz_walk walks[] = {
	{ "chats", SYNC_MODE_INCR, NULL },
	{ "messages", SYNC_MODE_INCR, NULL },
	{ "messages", SYNC_MODE_FULL, NULL },
	{ NULL, SYNC_MODE_INCR, NULL }
};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_setup("sources = ( { name = \"uni\"; type = \"unipile\";\n"
	    "  url = \"http://127.0.0.1:9\"; token = \"fuzz-token\";\n"
	    "  account_id = \"acc1\"; page_size = 3; } );\n");
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fz_run(walks, data, size);
}
