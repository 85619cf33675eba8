/* incr-sync -- see incr-sync(1). */
#include "pass.h"

int
main(int argc, char **argv)
{
	return pass_main(SYNC_CMD_INCR, argc, argv);
}
