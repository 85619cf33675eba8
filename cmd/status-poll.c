/* status-poll -- see status-poll(1). */
#include "pass.h"

int
main(int argc, char **argv)
{
	return pass_main(SYNC_CMD_POLL, argc, argv);
}
