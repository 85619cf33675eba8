/* fuzz_facebook -- the Facebook Graph connector's page reader. */
#include "fuzz.h"

static const struct fz_walk walks[] = {
	{ "conversations", SYNC_MODE_INCR, NULL },
	{ "conversations", SYNC_MODE_FULL, NULL },
	{ NULL, SYNC_MODE_INCR, NULL }
};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_setup("sources = ( { name = \"fb\"; type = \"facebook\";\n"
	    "  url = \"http://127.0.0.1:9\"; token = \"fuzz-token\";\n"
	    "  page_id = \"1000\"; } );\n");
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fz_run(walks, data, size);
}
