#ifndef LATENTWATCH_FUZZ_DRIVER_H
#define LATENTWATCH_FUZZ_DRIVER_H
#include <stddef.h>
#include <stdint.h>

/* What latentwatch-fuzz's main.swift runs: hands the arguments to libFuzzer (LLVMFuzzerRunDriver) when the
   executable is linked with -sanitize=fuzzer (SwiftPM names the Swift entry point <module>_main and makes it the
   program's main, so libFuzzer's own main is not linked), or, in an ordinary build, runs each file or directory
   named on the command line through the target once (a replay of a corpus or of a crashing input). */
int lw_fuzz_run(int argc, char **argv);

/* Defined in Swift (Sources/latentwatch-fuzz/main.swift): one input of the target chosen by LW_FUZZ_TARGET. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
