/* /init for the bare-boot baseline: the kernel reached userspace, so end
 * the VM at once (reboot=t with -no-reboot makes QEMU exit). */
#include <sys/reboot.h>
#include <unistd.h>

int main(void)
{
	reboot(RB_AUTOBOOT);
	return 0;
}
