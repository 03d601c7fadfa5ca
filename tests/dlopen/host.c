// SPDX-License-Identifier: MIT
/*
 * The host side of the dlopen test: links nothing of mrkey (nor of any
 * allocator), loads each plug-in named on the command line the way
 * libibverbs loads a provider (dlopen(RTLD_NOW)), and runs its entry
 * point. Exits nonzero if any plug-in fails to load or to run.
 */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	int i, failed = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s PLUGIN.so...\n", argv[0]);
		return 2;
	}
	for (i = 1; i < argc; i++) {
		void *h = dlopen(argv[i], RTLD_NOW | RTLD_LOCAL);
		int (*run)(void);
		int ret;

		if (!h) {
			fprintf(stderr, "dlopen-host: %s\n", dlerror());
			failed = 1;
			continue;
		}
		*(void **)&run = dlsym(h, "mrkey_plugin_run");
		if (!run) {
			fprintf(stderr, "dlopen-host: %s: no entry point: %s\n",
				argv[i], dlerror());
			failed = 1;
			continue;
		}
		ret = run();
		printf("dlopen-host: %s: %s\n", argv[i], ret ? "FAILED" : "ok");
		if (ret)
			failed = 1;
		/*
		 * No dlclose(): liburcu-bp, which the plug-in pulls in, keeps
		 * a call_rcu thread that must not lose its code.
		 */
	}
	return failed;
}
