/* media-sync -- see media-sync(1). */
#include "pass.h"

int
main(int argc, char **argv)
{
	return pass_main(SYNC_CMD_MEDIA, argc, argv);
}
